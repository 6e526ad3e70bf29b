//! Dense-vector index on qdrant-edge (in-process, on disk).
//!
//! Points are keyed by chunk id (UUID). The payload carries `doc_id`,
//! `collection`, `labels` and `tags` (keyword payload indexes) and `date`
//! (integer index), and every search passes the access filter to qdrant so
//! that only permitted points are scored. With `int8`, qdrant keeps a scalar
//! quantized copy of the vectors, searches it and rescores the oversampled
//! candidates with the full vectors. Writes, flushes and optimizations are serialized by one lock:
//! qdrant-edge's `flush` must not run concurrently with `update`.
//! `load` does not replay the WAL, so every write batch is flushed.

use docent_core::{AccessFilter, BackendError, BackendResult, IndexedChunk, LegHit, VectorIndex};
use parking_lot::Mutex;
use qdrant_edge::external::ordered_float::OrderedFloat;
use qdrant_edge::external::serde_json::json;
use qdrant_edge::{
    Condition, CountRequest, CreateIndex, Distance, EdgeConfig, EdgeOptimizersConfig, EdgeShard, EdgeVectorParams,
    FieldCondition, FieldIndexOperations, Filter, JsonPath, Match, NamedQuery, Payload, PayloadFieldSchema, PayloadOps,
    PayloadSchemaType, PointId, PointInsertOperations, PointOperations, PointStruct, QuantizationConfig,
    QuantizationSearchParams, QueryEnum, QueryRequest, Range, ScalarQuantizationConfig, ScalarType, ScoringQuery,
    SearchParams, SetPayloadOp, UpdateOperation, WithPayloadInterface, WithVector, DEFAULT_VECTOR_NAME,
};
use std::path::Path;
use uuid::Uuid;

const BACKEND: &str = "qdrant-edge";

fn err(e: impl std::error::Error + Send + Sync + 'static) -> BackendError {
    BackendError::backend(BACKEND, e)
}

fn key(s: &str) -> BackendResult<JsonPath> {
    s.parse()
        .map_err(|_| BackendError::invalid(BACKEND, format!("bad payload key {s}")))
}

fn to_point_id(id: Uuid) -> PointId {
    PointId::Uuid(qdrant_edge::external::uuid::Uuid::from_bytes(id.into_bytes()))
}

fn from_point_id(id: &PointId) -> Option<Uuid> {
    match id {
        PointId::Uuid(u) => Some(Uuid::from_bytes(*u.as_bytes())),
        PointId::NumId(_) => None,
    }
}

/// HNSW and quantization settings of the dense index.
#[derive(Debug, Clone, Copy)]
pub struct VectorSettings {
    pub m: usize,
    pub ef_construct: usize,
    pub ef_search: usize,
    /// Keep an int8 scalar-quantized copy, search it and rescore with the
    /// full vectors. Applies to segments built after it is set
    /// (`docent reindex` rebuilds all).
    pub int8: bool,
    /// Candidates taken from the quantized search per result, for rescoring.
    pub oversampling: f64,
    /// Segments larger than this (KiB of vectors) get an HNSW graph (and
    /// their quantized copy); smaller ones are searched exhaustively.
    /// `None`: qdrant's default (10,000 KiB, about 6,500 384-d vectors).
    pub indexing_threshold_kb: Option<usize>,
}

impl Default for VectorSettings {
    fn default() -> Self {
        Self {
            m: 16,
            ef_construct: 100,
            ef_search: 128,
            int8: false,
            oversampling: 2.0,
            indexing_threshold_kb: None,
        }
    }
}

pub struct EdgeVectorIndex {
    shard: EdgeShard,
    write: Mutex<()>,
    dim: usize,
    hnsw: VectorSettings,
}

impl EdgeVectorIndex {
    /// Opens or creates the shard in `dir` for vectors of `dim` dimensions.
    pub fn open(dir: &Path, dim: usize, hnsw: VectorSettings) -> BackendResult<Self> {
        std::fs::create_dir_all(dir).map_err(err)?;
        let hnsw_cfg = qdrant_edge::HnswIndexConfig {
            m: hnsw.m,
            ef_construct: hnsw.ef_construct,
            ..Default::default()
        };
        let mut builder = EdgeConfig::builder()
            .on_disk_payload(true)
            .vector(
                DEFAULT_VECTOR_NAME,
                EdgeVectorParams::builder(dim, Distance::Cosine).build(),
            )
            .hnsw_config(hnsw_cfg)
            .optimizers(EdgeOptimizersConfig {
                indexing_threshold: hnsw.indexing_threshold_kb,
                ..Default::default()
            });
        if hnsw.int8 {
            builder = builder.quantization_config(QuantizationConfig::from(ScalarQuantizationConfig {
                r#type: ScalarType::Int8,
                quantile: Some(0.99),
                always_ram: Some(true),
            }));
        }
        let config = builder.build();
        let shard = EdgeShard::load(dir, Some(config)).map_err(err)?;
        let me = Self {
            shard,
            write: Mutex::new(()),
            dim,
            hnsw,
        };
        let fields = [
            ("doc_id", PayloadSchemaType::Keyword),
            ("collection", PayloadSchemaType::Keyword),
            ("labels", PayloadSchemaType::Keyword),
            ("tags", PayloadSchemaType::Keyword),
            ("date", PayloadSchemaType::Integer),
        ];
        for (field, kind) in fields {
            me.shard
                .update(UpdateOperation::FieldIndexOperation(FieldIndexOperations::CreateIndex(
                    CreateIndex {
                        field_name: key(field)?,
                        field_schema: Some(PayloadFieldSchema::FieldType(kind)),
                    },
                )))
                .map_err(err)?;
        }
        Ok(me)
    }

    /// Builds the HNSW index for large segments (call after bulk loads).
    pub fn optimize(&self) -> BackendResult<()> {
        let _g = self.write.lock();
        self.shard.optimize().map_err(err)?;
        self.flush_shard()
    }

    fn filter(&self, f: &AccessFilter) -> BackendResult<Filter> {
        let mut must = vec![Condition::Field(FieldCondition::new_match(
            key("labels")?,
            Match::from(f.groups.clone()),
        ))];
        if !f.collections.is_empty() {
            must.push(Condition::Field(FieldCondition::new_match(
                key("collection")?,
                Match::from(f.collections.clone()),
            )));
        }
        if !f.doc_ids.is_empty() {
            must.push(Condition::Field(FieldCondition::new_match(
                key("doc_id")?,
                Match::from(f.doc_ids.iter().map(Uuid::to_string).collect::<Vec<_>>()),
            )));
        }
        if !f.tags.is_empty() {
            must.push(Condition::Field(FieldCondition::new_match(
                key("tags")?,
                Match::from(f.tags.clone()),
            )));
        }
        if f.date_from.is_some() || f.date_to.is_some() {
            let bound = |v: Option<i64>| v.map(|x| OrderedFloat(x as f64));
            must.push(Condition::Field(FieldCondition::new_range(
                key("date")?,
                Range {
                    gte: bound(f.date_from),
                    lte: bound(f.date_to),
                    lt: None,
                    gt: None,
                },
            )));
        }
        Ok(Filter {
            must: Some(must),
            ..Default::default()
        })
    }
}

impl EdgeVectorIndex {
    fn query(&self, vector: &[f32], filter: &AccessFilter, k: usize, exact: bool) -> BackendResult<Vec<LegHit>> {
        if filter.denies_everything() || k == 0 {
            return Ok(Vec::new());
        }
        if vector.len() != self.dim {
            return Err(BackendError::invalid(BACKEND, "query vector has the wrong dimension"));
        }
        let hits = self
            .shard
            .query(QueryRequest {
                prefetches: vec![],
                query: Some(ScoringQuery::Vector(QueryEnum::Nearest(NamedQuery {
                    query: vector.to_vec().into(),
                    using: None,
                }))),
                filter: Some(self.filter(filter)?),
                score_threshold: None,
                limit: k,
                offset: 0,
                params: Some(SearchParams {
                    hnsw_ef: Some(self.hnsw.ef_search),
                    exact,
                    quantization: self.hnsw.int8.then_some(QuantizationSearchParams {
                        ignore: exact,
                        rescore: Some(true),
                        oversampling: Some(self.hnsw.oversampling.max(1.0)),
                    }),
                    ..Default::default()
                }),
                with_vector: WithVector::Bool(false),
                with_payload: WithPayloadInterface::Bool(false),
            })
            .map_err(err)?;
        Ok(hits
            .iter()
            .filter_map(|p| {
                from_point_id(&p.id).map(|chunk_id| LegHit {
                    chunk_id,
                    score: p.score,
                })
            })
            .collect())
    }

    /// qdrant-edge's `flush` panics on an I/O error; report it as an error.
    fn flush_shard(&self) -> BackendResult<()> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.shard.flush())).map_err(|p| {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "flush panicked".to_owned());
            BackendError::backend(BACKEND, msg)
        })
    }
}

impl VectorIndex for EdgeVectorIndex {
    fn upsert(&self, chunks: &[IndexedChunk], vectors: &[Vec<f32>]) -> BackendResult<()> {
        if chunks.len() != vectors.len() {
            return Err(BackendError::invalid(BACKEND, "chunks and vectors differ in length"));
        }
        if chunks.is_empty() {
            return Ok(());
        }
        let mut points = Vec::with_capacity(chunks.len());
        for (c, v) in chunks.iter().zip(vectors) {
            if v.len() != self.dim {
                return Err(BackendError::invalid(
                    BACKEND,
                    format!("vector has {} dimensions, index has {}", v.len(), self.dim),
                ));
            }
            let payload = json!({
                "chunk_id": c.chunk_id.to_string(),
                "doc_id": c.doc_id.to_string(),
                "collection": c.collection,
                "labels": c.access,
                "tags": c.tags,
                "date": c.date,
            });
            points.push(PointStruct::new(to_point_id(c.chunk_id), v.clone(), payload).into());
        }
        let _g = self.write.lock();
        self.shard
            .update(UpdateOperation::PointOperation(PointOperations::UpsertPoints(
                PointInsertOperations::PointsList(points),
            )))
            .map_err(err)
    }

    fn delete_docs(&self, doc_ids: &[Uuid]) -> BackendResult<()> {
        if doc_ids.is_empty() {
            return Ok(());
        }
        let filter = Filter::new_must(Condition::Field(FieldCondition::new_match(
            key("doc_id")?,
            Match::from(doc_ids.iter().map(Uuid::to_string).collect::<Vec<_>>()),
        )));
        let _g = self.write.lock();
        self.shard
            .update(UpdateOperation::PointOperation(PointOperations::DeletePointsByFilter(
                filter,
            )))
            .map_err(err)
    }

    fn set_labels(&self, doc_id: Uuid, labels: &[String]) -> BackendResult<()> {
        let filter = Filter::new_must(Condition::Field(FieldCondition::new_match(
            key("doc_id")?,
            Match::from(vec![doc_id.to_string()]),
        )));
        let payload: Payload = qdrant_edge::external::serde_json::from_value(json!({ "labels": labels }))
            .map_err(|e| BackendError::invalid(BACKEND, format!("labels payload: {e}")))?;
        let _g = self.write.lock();
        self.shard
            .update(UpdateOperation::PayloadOperation(PayloadOps::SetPayload(
                SetPayloadOp {
                    payload,
                    points: None,
                    filter: Some(filter),
                    key: None,
                },
            )))
            .map_err(err)
    }

    fn search(&self, vector: &[f32], filter: &AccessFilter, k: usize) -> BackendResult<Vec<LegHit>> {
        self.query(vector, filter, k, false)
    }

    fn search_exact(&self, vector: &[f32], filter: &AccessFilter, k: usize) -> BackendResult<Vec<LegHit>> {
        self.query(vector, filter, k, true)
    }

    fn count(&self) -> BackendResult<u64> {
        let n = self
            .shard
            .count(CountRequest {
                filter: None,
                exact: true,
            })
            .map_err(err)?;
        Ok(n as u64)
    }

    fn chunk_ids(&self) -> BackendResult<Vec<Uuid>> {
        let mut out = Vec::new();
        let mut offset = None;
        loop {
            let (records, next) = self
                .shard
                .scroll(qdrant_edge::ScrollRequest {
                    offset,
                    limit: Some(1000),
                    filter: None,
                    with_payload: Some(WithPayloadInterface::Bool(false)),
                    with_vector: WithVector::Bool(false),
                    order_by: None,
                })
                .map_err(err)?;
            out.extend(records.iter().filter_map(|r| from_point_id(&r.id)));
            match next {
                Some(n) => offset = Some(n),
                None => break,
            }
        }
        Ok(out)
    }

    fn delete_chunks(&self, chunk_ids: &[Uuid]) -> BackendResult<()> {
        let ids: Vec<PointId> = chunk_ids.iter().copied().map(to_point_id).collect();
        let _g = self.write.lock();
        for batch in ids.chunks(1000) {
            self.shard
                .update(UpdateOperation::PointOperation(PointOperations::DeletePoints {
                    ids: batch.to_vec(),
                }))
                .map_err(err)?;
        }
        Ok(())
    }

    fn clear(&self) -> BackendResult<()> {
        self.delete_chunks(&self.chunk_ids()?)?;
        let _g = self.write.lock();
        self.flush_shard()
    }

    fn flush(&self) -> BackendResult<()> {
        let _g = self.write.lock();
        self.flush_shard()
    }

    fn maintain(&self) -> BackendResult<()> {
        self.optimize()
    }
}
