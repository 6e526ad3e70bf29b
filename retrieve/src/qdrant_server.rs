//! Dense-vector index on a Qdrant server, over gRPC (`qdrant-client`).
//!
//! The same contract as [`crate::vector::EdgeVectorIndex`]: points keyed by
//! chunk id (UUID), payload `doc_id`, `collection`, `labels`, `tags`
//! (keyword payload indexes) and `date` (integer index), and every search
//! carries the access filter into the server so that only permitted points
//! are scored. An empty group list or an empty date range returns nothing
//! without asking the server (fail closed).
//!
//! [`VectorIndex`] is synchronous and the client is async: the index owns a
//! small tokio runtime and runs each call as a task on it, waiting for the
//! answer on a std channel. That works from plain threads, from
//! `spawn_blocking` threads and from inside another runtime (nothing here
//! calls `block_on`). Every call is bounded by [`CALL_TIMEOUT`].
//!
//! Writes use `wait=true`: when `upsert`/`delete_*`/`clear` return, the
//! change is applied and visible to the next search. The server's WAL makes
//! them durable, so [`VectorIndex::flush`] has nothing to do; the server also
//! builds HNSW graphs (and int8 copies) on its own, so `maintain` is a no-op.

use crate::vector::VectorSettings;
use docent_core::{AccessFilter, BackendError, BackendResult, IndexedChunk, LegHit, VectorIndex};
use qdrant_client::qdrant::point_id::PointIdOptions;
use qdrant_client::qdrant::{
    quantization_config, vectors_config, Condition, CountPointsBuilder, CreateCollectionBuilder,
    CreateFieldIndexCollectionBuilder, DeletePointsBuilder, Distance, FieldType, Filter, HnswConfigDiffBuilder,
    OptimizersConfigDiffBuilder, PayloadSchemaType, PointId, PointStruct, PointsIdsList,
    QuantizationSearchParamsBuilder, Query, QueryPointsBuilder, Range, ScalarQuantizationBuilder, ScrollPointsBuilder,
    SearchParamsBuilder, SetPayloadPointsBuilder, UpsertPointsBuilder, VectorParamsBuilder,
};
use qdrant_client::{Payload, Qdrant, QdrantError};
use std::future::Future;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use uuid::Uuid;

const BACKEND: &str = "qdrant-server";

/// Upper bound of one call to the server (request, answer and queueing).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound of opening the gRPC connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Extra time the caller waits for the runtime to report a timeout itself.
const TIMEOUT_GRACE: Duration = Duration::from_secs(5);
/// Points per upsert request (keeps requests far below gRPC size limits).
const UPSERT_BATCH: usize = 256;
/// Ids per delete request, and points per scroll page.
const ID_BATCH: usize = 1000;
/// The client release this module is written against (pinned in Cargo.toml).
const CLIENT_VERSION: (u64, u64) = (1, 19);

/// The payload fields filtered on, with the index each one gets.
const PAYLOAD_INDEXES: [(&str, FieldType, PayloadSchemaType); 5] = [
    ("doc_id", FieldType::Keyword, PayloadSchemaType::Keyword),
    ("collection", FieldType::Keyword, PayloadSchemaType::Keyword),
    ("labels", FieldType::Keyword, PayloadSchemaType::Keyword),
    ("tags", FieldType::Keyword, PayloadSchemaType::Keyword),
    ("date", FieldType::Integer, PayloadSchemaType::Integer),
];

/// Why a call to the server failed. Carried inside
/// [`BackendError::Backend`] (backend `qdrant-server`) as its source.
#[derive(Debug, thiserror::Error)]
pub enum ServerIndexError {
    #[error("cannot reach the Qdrant server at {url} over gRPC (the gRPC port is usually 6334): {source}")]
    Unreachable {
        url: String,
        #[source]
        source: Box<ServerIndexError>,
    },
    #[error("{op}: {source}")]
    Client {
        op: &'static str,
        #[source]
        source: QdrantError,
    },
    #[error("{op}: no answer within {timeout:?}")]
    Timeout { op: &'static str, timeout: Duration },
    #[error("{op}: the client runtime stopped before answering")]
    RuntimeStopped { op: &'static str },
    #[error("could not start the client runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("{op}: the server answered without a result")]
    EmptyAnswer { op: &'static str },
}

fn backend_err(e: ServerIndexError) -> BackendError {
    BackendError::backend(BACKEND, e)
}

/// What the server reports about the collection (for health checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerIndexInfo {
    /// Collection status as the server names it (`Green`, `Yellow`, `Grey`, `Red`).
    pub status: String,
    pub points: u64,
    /// Vectors already in an HNSW graph (the rest are searched exhaustively).
    pub indexed_vectors: u64,
    pub segments: u64,
    pub vector_size: u64,
    /// An int8 scalar-quantized copy is configured.
    pub int8: bool,
    /// Payload fields with an index, sorted.
    pub payload_indexes: Vec<String>,
}

/// A [`VectorIndex`] in one collection of a Qdrant server.
pub struct ServerVectorIndex {
    /// `None` only while dropping.
    rt: Option<tokio::runtime::Runtime>,
    client: Qdrant,
    url: String,
    collection: String,
    dim: usize,
    settings: VectorSettings,
}

impl std::fmt::Debug for ServerVectorIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerVectorIndex")
            .field("url", &self.url)
            .field("collection", &self.collection)
            .field("dim", &self.dim)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Drop for ServerVectorIndex {
    fn drop(&mut self) {
        // Dropping a runtime blocks on its workers, which panics inside an
        // async context; shutting it down in the background does not.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl ServerVectorIndex {
    /// Connects to the server's gRPC endpoint (`http://host:6334`) and opens
    /// `collection` for vectors of `dim` dimensions, creating it (cosine
    /// distance, HNSW and int8 settings from `settings`) and its payload
    /// indexes when missing. An existing collection with another vector size
    /// or distance is an error.
    pub fn connect(
        url: &str,
        collection: &str,
        dim: usize,
        settings: VectorSettings,
        api_key: Option<String>,
    ) -> BackendResult<Self> {
        if dim == 0 {
            return Err(BackendError::invalid(BACKEND, "vector dimension must be positive"));
        }
        if collection.is_empty() {
            return Err(BackendError::invalid(BACKEND, "collection name is empty"));
        }
        let mut config = qdrant_client::config::QdrantConfig::from_url(url)
            .timeout(CALL_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            // Checked below with tracing instead of the client's println.
            .skip_compatibility_check();
        if let Some(key) = api_key {
            config = config.api_key(key);
        }
        let client = Qdrant::new(config).map_err(|e| {
            backend_err(ServerIndexError::Client {
                op: "connect",
                source: e,
            })
        })?;
        // Built last: from here on `Self`'s drop shuts it down without
        // blocking (a plain runtime drop panics inside an async context).
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("qdrant-client")
            .enable_all()
            .build()
            .map_err(|e| backend_err(ServerIndexError::Runtime(e)))?;
        let me = Self {
            rt: Some(rt),
            client,
            url: url.to_owned(),
            collection: collection.to_owned(),
            dim,
            settings,
        };
        me.check_server()?;
        me.ensure_collection()?;
        me.ensure_payload_indexes()?;
        tracing::info!(
            url,
            collection,
            dim,
            int8 = settings.int8,
            "qdrant server vector index ready"
        );
        Ok(me)
    }

    /// The collection this index writes to.
    pub fn collection(&self) -> &str {
        &self.collection
    }

    /// The server's description of the collection.
    fn raw_info(&self) -> BackendResult<qdrant_client::qdrant::CollectionInfo> {
        let name = self.collection.clone();
        self.run("collection_info", move |c| async move { c.collection_info(name).await })?
            .result
            .ok_or_else(|| backend_err(ServerIndexError::EmptyAnswer { op: "collection_info" }))
    }

    /// Status, sizes and settings of the collection as the server reports them.
    pub fn info(&self) -> BackendResult<ServerIndexInfo> {
        let info = self.raw_info()?;
        let params = info.config.as_ref().and_then(|c| c.params.as_ref());
        let vector = match params
            .and_then(|p| p.vectors_config.as_ref())
            .and_then(|v| v.config.as_ref())
        {
            Some(vectors_config::Config::Params(p)) => Some(p),
            _ => None,
        };
        let scalar = |q: Option<&qdrant_client::qdrant::QuantizationConfig>| {
            matches!(
                q.and_then(|q| q.quantization.as_ref()),
                Some(quantization_config::Quantization::Scalar(_))
            )
        };
        let int8 = scalar(info.config.as_ref().and_then(|c| c.quantization_config.as_ref()))
            || scalar(vector.and_then(|v| v.quantization_config.as_ref()));
        let mut payload_indexes: Vec<String> = info.payload_schema.keys().cloned().collect();
        payload_indexes.sort();
        let status = qdrant_client::qdrant::CollectionStatus::try_from(info.status)
            .map(|s| format!("{s:?}"))
            .unwrap_or_else(|_| format!("unknown ({})", info.status));
        Ok(ServerIndexInfo {
            status,
            points: info.points_count.unwrap_or(0),
            indexed_vectors: info.indexed_vectors_count.unwrap_or(0),
            segments: info.segments_count,
            vector_size: vector.map_or(0, |v| v.size),
            int8,
            payload_indexes,
        })
    }

    /// Deletes the whole collection, points, indexes and settings (for tests
    /// and for dropping a deployment). The index is unusable afterwards.
    pub fn delete_collection(&self) -> BackendResult<()> {
        let name = self.collection.clone();
        self.run(
            "delete_collection",
            move |c| async move { c.delete_collection(name).await },
        )?;
        tracing::info!(collection = %self.collection, "qdrant collection deleted");
        Ok(())
    }

    /// Runs one client call on the owned runtime and waits for its answer.
    fn run<T, Fut>(&self, op: &'static str, call: impl FnOnce(Qdrant) -> Fut) -> BackendResult<T>
    where
        Fut: Future<Output = Result<T, QdrantError>> + Send + 'static,
        T: Send + 'static,
    {
        self.run_raw(op, call).map_err(backend_err)
    }

    fn run_raw<T, Fut>(&self, op: &'static str, call: impl FnOnce(Qdrant) -> Fut) -> Result<T, ServerIndexError>
    where
        Fut: Future<Output = Result<T, QdrantError>> + Send + 'static,
        T: Send + 'static,
    {
        let rt = self.rt.as_ref().ok_or(ServerIndexError::RuntimeStopped { op })?;
        let fut = call(self.client.clone());
        let (tx, rx) = mpsc::sync_channel(1);
        let started = Instant::now();
        rt.spawn(async move {
            let out = tokio::time::timeout(CALL_TIMEOUT, fut).await;
            // The caller may have given up waiting; nothing to report then.
            let _ = tx.send(out);
        });
        let out = match rx.recv_timeout(CALL_TIMEOUT + TIMEOUT_GRACE) {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(source))) => Err(ServerIndexError::Client { op, source }),
            Ok(Err(_)) | Err(mpsc::RecvTimeoutError::Timeout) => Err(ServerIndexError::Timeout {
                op,
                timeout: CALL_TIMEOUT,
            }),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(ServerIndexError::RuntimeStopped { op }),
        };
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match &out {
            Ok(_) => tracing::trace!(collection = %self.collection, op, elapsed_ms, "qdrant call"),
            Err(e) => tracing::warn!(collection = %self.collection, op, elapsed_ms, error = %e, "qdrant call failed"),
        }
        out
    }

    /// Reaches the server once (a clear error when it is not there) and
    /// warns when its version is outside the client's supported range.
    fn check_server(&self) -> BackendResult<()> {
        let reply = self
            .run_raw("health_check", |c| async move { c.health_check().await })
            .map_err(|e| {
                backend_err(ServerIndexError::Unreachable {
                    url: self.url.clone(),
                    source: Box::new(e),
                })
            })?;
        let parse = |v: &str| -> Option<(u64, u64)> {
            let mut it = v.trim_start_matches('v').split('.');
            Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
        };
        match parse(&reply.version) {
            Some((major, minor)) if major == CLIENT_VERSION.0 && minor.abs_diff(CLIENT_VERSION.1) <= 1 => {
                tracing::debug!(url = %self.url, server_version = %reply.version, "qdrant server reached");
            }
            _ => tracing::warn!(
                url = %self.url,
                server_version = %reply.version,
                client_version = %format!("{}.{}", CLIENT_VERSION.0, CLIENT_VERSION.1),
                "qdrant server version is more than one minor version away from the client's"
            ),
        }
        Ok(())
    }

    fn ensure_collection(&self) -> BackendResult<()> {
        let name = self.collection.clone();
        let exists = self.run(
            "collection_exists",
            move |c| async move { c.collection_exists(name).await },
        )?;
        if !exists {
            let s = self.settings;
            let mut create = CreateCollectionBuilder::new(self.collection.clone())
                .vectors_config(VectorParamsBuilder::new(self.dim as u64, Distance::Cosine))
                .hnsw_config(
                    HnswConfigDiffBuilder::default()
                        .m(s.m as u64)
                        .ef_construct(s.ef_construct as u64),
                )
                .on_disk_payload(true);
            if let Some(kb) = s.indexing_threshold_kb {
                create = create.optimizers_config(OptimizersConfigDiffBuilder::default().indexing_threshold(kb as u64));
            }
            if s.int8 {
                create =
                    create.quantization_config(ScalarQuantizationBuilder::default().quantile(0.99).always_ram(true));
            }
            let request = create.build();
            let created = self.run("create_collection", move |c| async move {
                c.create_collection(request).await
            });
            match created {
                Ok(_) => tracing::info!(collection = %self.collection, dim = self.dim, "qdrant collection created"),
                Err(e) => {
                    // Another process may have created it meanwhile.
                    let name = self.collection.clone();
                    let now = self.run(
                        "collection_exists",
                        move |c| async move { c.collection_exists(name).await },
                    )?;
                    if !now {
                        return Err(e);
                    }
                }
            }
        }
        let info = self.raw_info()?;
        let params = info.config.as_ref().and_then(|c| c.params.as_ref());
        match params
            .and_then(|p| p.vectors_config.as_ref())
            .and_then(|v| v.config.as_ref())
        {
            Some(vectors_config::Config::Params(p)) => {
                if p.size != self.dim as u64 {
                    return Err(BackendError::invalid(
                        BACKEND,
                        format!(
                            "collection {} holds {}-dimensional vectors, but the embedder makes {}-dimensional ones \
                             (use another collection, or rebuild the index)",
                            self.collection, p.size, self.dim
                        ),
                    ));
                }
                if p.distance != Distance::Cosine as i32 {
                    return Err(BackendError::invalid(
                        BACKEND,
                        format!("collection {} does not use cosine distance", self.collection),
                    ));
                }
            }
            _ => {
                return Err(BackendError::invalid(
                    BACKEND,
                    format!(
                        "collection {} has no single unnamed dense vector (named vectors are not supported)",
                        self.collection
                    ),
                ))
            }
        }
        let has_int8 = matches!(
            info.config
                .as_ref()
                .and_then(|c| c.quantization_config.as_ref())
                .and_then(|q| q.quantization.as_ref()),
            Some(quantization_config::Quantization::Scalar(_))
        );
        if has_int8 != self.settings.int8 {
            tracing::warn!(
                collection = %self.collection,
                configured = self.settings.int8,
                collection_has = has_int8,
                "int8 setting differs from the existing collection's; it keeps its own until rebuilt"
            );
        }
        Ok(())
    }

    fn ensure_payload_indexes(&self) -> BackendResult<()> {
        let info = self.raw_info()?;
        for (field, field_type, schema) in PAYLOAD_INDEXES {
            match info.payload_schema.get(field) {
                Some(existing) if existing.data_type == schema as i32 => continue,
                Some(existing) => {
                    tracing::warn!(
                        collection = %self.collection,
                        field,
                        existing = existing.data_type,
                        "payload index has an unexpected type; recreating it"
                    );
                }
                None => {}
            }
            let request = CreateFieldIndexCollectionBuilder::new(self.collection.clone(), field, field_type)
                .wait(true)
                .build();
            self.run("create_field_index", move |c| async move {
                c.create_field_index(request).await
            })?;
            tracing::debug!(collection = %self.collection, field, "qdrant payload index created");
        }
        Ok(())
    }

    fn query(&self, vector: &[f32], filter: &AccessFilter, k: usize, exact: bool) -> BackendResult<Vec<LegHit>> {
        if filter.denies_everything() || k == 0 {
            return Ok(Vec::new());
        }
        if vector.len() != self.dim {
            return Err(BackendError::invalid(BACKEND, "query vector has the wrong dimension"));
        }
        let s = self.settings;
        let mut params = SearchParamsBuilder::default().hnsw_ef(s.ef_search as u64).exact(exact);
        if s.int8 {
            params = params.quantization(
                QuantizationSearchParamsBuilder::default()
                    .ignore(exact)
                    .rescore(true)
                    .oversampling(s.oversampling.max(1.0)),
            );
        }
        let request = QueryPointsBuilder::new(self.collection.clone())
            .query(Query::new_nearest(vector.to_vec()))
            .filter(access_filter(filter))
            .limit(k as u64)
            .params(params)
            .with_payload(false)
            .with_vectors(false)
            .build();
        let op = if exact { "search_exact" } else { "search" };
        let answer = self.run(op, move |c| async move { c.query(request).await })?;
        Ok(answer
            .result
            .iter()
            .filter_map(|p| {
                to_uuid(p.id.as_ref()).map(|chunk_id| LegHit {
                    chunk_id,
                    score: p.score,
                })
            })
            .collect())
    }

    fn delete_by_filter(&self, op: &'static str, filter: Filter) -> BackendResult<()> {
        let request = DeletePointsBuilder::new(self.collection.clone())
            .points(filter)
            .wait(true)
            .build();
        self.run(op, move |c| async move { c.delete_points(request).await })?;
        Ok(())
    }
}

/// The access filter as a Qdrant filter: every restriction is a `must`
/// condition, lists match any of their values.
fn access_filter(f: &AccessFilter) -> Filter {
    let mut must = vec![Condition::matches("labels", f.groups.clone())];
    if !f.collections.is_empty() {
        must.push(Condition::matches("collection", f.collections.clone()));
    }
    if !f.doc_ids.is_empty() {
        must.push(Condition::matches(
            "doc_id",
            f.doc_ids.iter().map(Uuid::to_string).collect::<Vec<_>>(),
        ));
    }
    if !f.tags.is_empty() {
        must.push(Condition::matches("tags", f.tags.clone()));
    }
    if f.date_from.is_some() || f.date_to.is_some() {
        must.push(Condition::range(
            "date",
            Range {
                gte: f.date_from.map(|x| x as f64),
                lte: f.date_to.map(|x| x as f64),
                ..Range::default()
            },
        ));
    }
    Filter::must(must)
}

fn to_point_id(id: Uuid) -> PointId {
    PointId::from(id.to_string())
}

fn to_uuid(id: Option<&PointId>) -> Option<Uuid> {
    match id.and_then(|p| p.point_id_options.as_ref()) {
        Some(PointIdOptions::Uuid(s)) => Uuid::parse_str(s).ok(),
        other => {
            tracing::warn!(id = ?other, "qdrant point without a UUID id ignored");
            None
        }
    }
}

impl VectorIndex for ServerVectorIndex {
    fn upsert(&self, chunks: &[IndexedChunk], vectors: &[Vec<f32>]) -> BackendResult<()> {
        if chunks.len() != vectors.len() {
            return Err(BackendError::invalid(BACKEND, "chunks and vectors differ in length"));
        }
        if let Some(v) = vectors.iter().find(|v| v.len() != self.dim) {
            return Err(BackendError::invalid(
                BACKEND,
                format!("vector has {} dimensions, index has {}", v.len(), self.dim),
            ));
        }
        for (cs, vs) in chunks.chunks(UPSERT_BATCH).zip(vectors.chunks(UPSERT_BATCH)) {
            let points: Vec<PointStruct> = cs
                .iter()
                .zip(vs)
                .map(|(c, v)| {
                    let mut payload = Payload::with_capacity(6);
                    payload.insert("chunk_id", c.chunk_id.to_string());
                    payload.insert("doc_id", c.doc_id.to_string());
                    payload.insert("collection", c.collection.clone());
                    payload.insert("labels", c.access.clone());
                    payload.insert("tags", c.tags.clone());
                    payload.insert("date", c.date);
                    PointStruct::new(to_point_id(c.chunk_id), v.clone(), payload)
                })
                .collect();
            let request = UpsertPointsBuilder::new(self.collection.clone(), points)
                .wait(true)
                .build();
            self.run("upsert", move |c| async move { c.upsert_points(request).await })?;
        }
        tracing::debug!(collection = %self.collection, points = chunks.len(), "qdrant upsert");
        Ok(())
    }

    fn delete_docs(&self, doc_ids: &[Uuid]) -> BackendResult<()> {
        for batch in doc_ids.chunks(ID_BATCH) {
            let ids: Vec<String> = batch.iter().map(Uuid::to_string).collect();
            self.delete_by_filter("delete_docs", Filter::must([Condition::matches("doc_id", ids)]))?;
        }
        Ok(())
    }

    fn delete_chunks(&self, chunk_ids: &[Uuid]) -> BackendResult<()> {
        for batch in chunk_ids.chunks(ID_BATCH) {
            let ids = PointsIdsList {
                ids: batch.iter().copied().map(to_point_id).collect(),
            };
            let request = DeletePointsBuilder::new(self.collection.clone())
                .points(ids)
                .wait(true)
                .build();
            self.run("delete_chunks", move |c| async move { c.delete_points(request).await })?;
        }
        Ok(())
    }

    fn set_labels(&self, doc_id: Uuid, labels: &[String]) -> BackendResult<()> {
        let mut payload = std::collections::HashMap::new();
        payload.insert("labels".to_owned(), qdrant_client::qdrant::Value::from(labels.to_vec()));
        let request = SetPayloadPointsBuilder::new(self.collection.clone(), payload)
            .points_selector(Filter::must([Condition::matches("doc_id", vec![doc_id.to_string()])]))
            .wait(true)
            .build();
        self.run("set_labels", move |c| async move { c.set_payload(request).await })?;
        Ok(())
    }

    fn search(&self, vector: &[f32], filter: &AccessFilter, k: usize) -> BackendResult<Vec<LegHit>> {
        self.query(vector, filter, k, false)
    }

    fn search_exact(&self, vector: &[f32], filter: &AccessFilter, k: usize) -> BackendResult<Vec<LegHit>> {
        self.query(vector, filter, k, true)
    }

    fn count(&self) -> BackendResult<u64> {
        let request = CountPointsBuilder::new(self.collection.clone()).exact(true).build();
        self.run("count", move |c| async move { c.count(request).await })?
            .result
            .map(|r| r.count)
            .ok_or_else(|| backend_err(ServerIndexError::EmptyAnswer { op: "count" }))
    }

    fn chunk_ids(&self) -> BackendResult<Vec<Uuid>> {
        let mut out = Vec::new();
        let mut offset: Option<PointId> = None;
        loop {
            let mut scroll = ScrollPointsBuilder::new(self.collection.clone())
                .limit(ID_BATCH as u32)
                .with_payload(false)
                .with_vectors(false);
            if let Some(o) = offset.take() {
                scroll = scroll.offset(o);
            }
            let request = scroll.build();
            let page = self.run("scroll", move |c| async move { c.scroll(request).await })?;
            out.extend(page.result.iter().filter_map(|p| to_uuid(p.id.as_ref())));
            match page.next_page_offset {
                Some(next) => offset = Some(next),
                None => break,
            }
        }
        Ok(out)
    }

    fn clear(&self) -> BackendResult<()> {
        // A filter without conditions matches every point; the collection,
        // its settings and payload indexes stay.
        self.delete_by_filter("clear", Filter::default())?;
        tracing::info!(collection = %self.collection, "qdrant collection cleared");
        Ok(())
    }

    fn flush(&self) -> BackendResult<()> {
        // Writes are acknowledged after the server's WAL has them.
        Ok(())
    }
}
