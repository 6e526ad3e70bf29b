//! Wiring: builds the components from a [`Config`].

use crate::config::Config;
use anyhow::Context;
use docent_core::{ChatModel, Embedder, KeywordIndex, TokenCounter, VectorIndex};
use docent_generate::answer::AnswerConfig;
use docent_generate::citations::CheckConfig;
use docent_generate::citations::SupportModel;
use docent_generate::mistral::{MistralChat, MistralOptions, PagedKv};
use docent_generate::support::{EmbeddingSupport, RerankSupport};
use docent_ingest::chunk::ChunkConfig;
use docent_ingest::pipeline::{IngestConfig, Ingestor};
use docent_retrieve::batcher::EmbedBatcher;
use docent_retrieve::embed::{EmbedderOptions, EmbedderPaths, FastEmbedder, HfTokenCounter};
use docent_retrieve::keyword::TantivyIndex;
use docent_retrieve::qdrant_server::ServerVectorIndex;
use docent_retrieve::rerank::{FastReranker, RerankerPaths};
use docent_retrieve::search::{SearchConfig, Searcher};
use docent_retrieve::vector::{EdgeVectorIndex, VectorSettings};
use docent_store::Store;
use docent_web::admission::{Admission, AdmissionConfig};
use std::sync::Arc;

/// Everything but the chat model (which only `serve` and `ask` need).
pub struct Components {
    pub cfg: Config,
    pub store: Store,
    /// The model, called directly: queries and the citation check.
    pub embedder: Arc<dyn Embedder>,
    /// The same model behind the one batching worker: every bulk passage
    /// embedding (ingest, the change-log follower, repair, reindex).
    pub passages: Arc<EmbedBatcher>,
    /// qdrant-edge in the data dir, or a Qdrant server shared by replicas.
    pub vectors: Arc<dyn VectorIndex>,
    /// True when `vectors` is a Qdrant server (shared by every replica).
    pub shared_vectors: bool,
    pub keywords: Arc<TantivyIndex>,
    pub ingestor: Arc<Ingestor>,
    pub searcher: Searcher,
    /// The one cross-encoder, loaded on first use (or with the searcher
    /// when `retrieval.rerank` is on) and shared by reranking, the evidence
    /// judge and the citation check.
    reranker: tokio::sync::OnceCell<Arc<dyn docent_core::Reranker>>,
}

impl Components {
    pub async fn build(cfg: &Config) -> anyhow::Result<Self> {
        let data = &cfg.storage.data_dir;
        std::fs::create_dir_all(data).with_context(|| format!("creating data dir {}", data.display()))?;
        let store = connect_store(cfg).await?;
        let threads = match cfg.models.embed_threads {
            0 => cfg.compute_threads(),
            n => n,
        };
        let paths = EmbedderPaths {
            model_dir: cfg.embedding_dir(),
            onnxruntime_lib: cfg.onnxruntime_lib(),
        };
        let opts = EmbedderOptions {
            max_length: cfg.models.embed_max_length,
            threads,
            query_prefix: cfg.models.query_prefix.clone(),
            passage_prefix: cfg.models.passage_prefix.clone(),
            batch: cfg.embed_policy(),
        };
        let model = Arc::new(
            tokio::task::spawn_blocking(move || FastEmbedder::load(&paths, opts))
                .await
                .context("embedder loader")??,
        );
        let passages = Arc::new(
            EmbedBatcher::start(Arc::clone(&model) as _, cfg.embed_policy())
                .context("starting the embedding worker")?,
        );
        let embedder: Arc<dyn Embedder> = model;
        let counter: Arc<dyn TokenCounter> =
            Arc::new(HfTokenCounter::load(&cfg.embedding_dir().join("tokenizer.json"))?);
        let hnsw = VectorSettings {
            m: cfg.retrieval.hnsw_m,
            ef_construct: cfg.retrieval.hnsw_ef_construct,
            ef_search: cfg.retrieval.hnsw_ef,
            int8: cfg.retrieval.int8,
            oversampling: cfg.retrieval.oversampling,
            indexing_threshold_kb: Some(cfg.retrieval.indexing_threshold_kb).filter(|kb| *kb > 0),
        };
        let (vectors, shared_vectors) = open_vectors(cfg, embedder.dim(), hnsw).await?;
        let r = &cfg.retrieval;
        let keywords = Arc::new(
            TantivyIndex::open(&data.join("bm25"))
                .context("opening the keyword index")?
                .with_boosts(r.title_boost, r.heading_boost, r.body_boost),
        );
        let ingestor = Arc::new(
            Ingestor::new(
                store.clone(),
                Arc::clone(&passages) as Arc<dyn Embedder>,
                counter,
                Arc::clone(&vectors),
                keywords.clone() as Arc<dyn KeywordIndex>,
                cfg.blob_dir(),
                IngestConfig {
                    chunk: ChunkConfig {
                        max_tokens: cfg.ingest.chunk_tokens,
                        overlap_tokens: cfg.ingest.overlap_tokens,
                    },
                    embed_batch: cfg.ingest.embed_batch,
                    limits: cfg.extract_limits(),
                },
            )?
            .with_replica(replica_id(cfg)?, cfg.ingest.lease_secs)
            .with_default_access(cfg.access.default_labels.clone())
            .shared_vectors(shared_vectors),
        );
        let mut searcher = Searcher::new(
            store.clone(),
            Arc::clone(&embedder),
            Arc::clone(&vectors),
            keywords.clone() as Arc<dyn KeywordIndex>,
            SearchConfig {
                candidates: r.candidates,
                fusion: cfg.fusion(),
                rerank_top_n: r.rerank_top_n,
            },
        );
        let reranker = tokio::sync::OnceCell::new();
        if r.rerank {
            let loaded = Self::load_reranker(cfg).await?;
            searcher = searcher.with_reranker(Arc::clone(&loaded));
            let _ = reranker.set(loaded);
        }
        Ok(Self {
            cfg: cfg.clone(),
            store,
            embedder,
            passages,
            vectors,
            shared_vectors,
            keywords,
            ingestor,
            searcher,
            reranker,
        })
    }

    /// The shared cross-encoder (loaded once, on first use).
    pub async fn reranker(&self) -> anyhow::Result<Arc<dyn docent_core::Reranker>> {
        Ok(Arc::clone(
            self.reranker.get_or_try_init(|| Self::load_reranker(&self.cfg)).await?,
        ))
    }

    /// Loads the cross-encoder from `models.reranker_dir`.
    async fn load_reranker(cfg: &Config) -> anyhow::Result<Arc<dyn docent_core::Reranker>> {
        let paths = RerankerPaths {
            model_dir: cfg.reranker_dir(),
            onnxruntime_lib: cfg.onnxruntime_lib(),
        };
        let max_length = cfg.retrieval.rerank_max_length;
        let threads = cfg.compute_threads();
        let r = tokio::task::spawn_blocking(move || FastReranker::load(&paths, max_length, threads))
            .await
            .context("reranker loader")?
            .context("loading the reranker (models.reranker_dir)")?;
        Ok(Arc::new(r))
    }

    /// The chat model `generation.backend` names. For "openai" the upstream
    /// must pass `generation.upstream_allow` first (fail closed: a refusal
    /// stops startup with the host, its addresses and the list).
    pub async fn chat_model(&self) -> anyhow::Result<Arc<dyn ChatModel>> {
        if self.cfg.generation.backend == "openai" {
            return self.upstream_chat_model().await;
        }
        let opts = MistralOptions {
            gguf: self.cfg.chat_gguf(),
            max_num_seqs: self.cfg.generation.max_num_seqs,
            prefix_cache_n: self.cfg.generation.prefix_cache_n,
            paged: self.cfg.generation.paged_attention.then(|| PagedKv {
                block_size: self.cfg.generation.paged_block_size,
                kv_cache_mb: self.cfg.generation.kv_cache_mb,
                gpu_memory_utilization: self.cfg.generation.gpu_memory_utilization,
                fp8: self.cfg.generation.kv_cache_type == "f8e4m3",
            }),
        };
        Ok(Arc::new(MistralChat::load(&opts).await?))
    }

    async fn upstream_chat_model(&self) -> anyhow::Result<Arc<dyn ChatModel>> {
        use docent_generate::upstream::{check_upstream, OpenAiUpstream, UpstreamOptions};
        let g = &self.cfg.generation;
        let url = g
            .upstream_url
            .as_deref()
            .context("generation.upstream_url is required when generation.backend is \"openai\"")?;
        let checked = check_upstream(url, &g.upstream_allow).await?;
        let api_key = match &g.upstream_api_key_env {
            Some(var) => Some(
                std::env::var(var)
                    .ok()
                    .filter(|k| !k.trim().is_empty())
                    .with_context(|| format!("generation.upstream_api_key_env names {var}, which is not set"))?,
            ),
            None => None,
        };
        let timeout = std::time::Duration::from_secs(g.upstream_timeout_secs);
        let model = OpenAiUpstream::new(
            checked,
            UpstreamOptions {
                model: g.upstream_model.clone(),
                api_key,
                connect_timeout: timeout.min(std::time::Duration::from_secs(10)),
                timeout,
            },
        )?;
        tracing::info!(endpoint = %model.endpoint(), model = %g.upstream_model, "chat model: OpenAI-compatible upstream");
        Ok(Arc::new(model))
    }

    pub fn answer_config(&self) -> AnswerConfig {
        let g = &self.cfg.generation;
        AnswerConfig {
            sources: g.sources,
            max_prompt_tokens: g.max_prompt_tokens,
            withhold_directives: g.withhold_directives,
            params: docent_core::GenParams {
                max_tokens: g.max_tokens,
                temperature: g.temperature,
            },
            check: CheckConfig {
                drop_below: g.citation_drop_below,
                attach_above: g.citation_attach_above,
                repoint_margin: g.citation_repoint_margin,
            },
            min_evidence: g.min_evidence,
            min_cross_evidence: g.min_cross_evidence,
        }
    }

    /// The cross-encoder that judges evidence before answering
    /// (`generation.evidence = "cross-encoder"`): the shared one.
    pub async fn evidence_reranker(&self) -> anyhow::Result<Option<Arc<dyn docent_core::Reranker>>> {
        if self.cfg.generation.evidence != "cross-encoder" {
            return Ok(None);
        }
        Ok(Some(self.reranker().await.context(
            "generation.evidence = \"cross-encoder\" needs the reranker",
        )?))
    }

    /// What scores semantic support in the citation check
    /// (`generation.citation_support`).
    pub async fn support_model(&self) -> anyhow::Result<Option<Arc<dyn SupportModel>>> {
        let g = &self.cfg.generation;
        let embedding = || -> Arc<dyn SupportModel> {
            Arc::new(EmbeddingSupport {
                embedder: Arc::clone(&self.embedder),
                floor: g.support_cos_floor,
                full: g.support_cos_full,
            })
        };
        Ok(match g.citation_support.as_str() {
            "lexical" => None,
            "embedding" => Some(embedding()),
            "auto" => match self.searcher.reranker() {
                Some(r) => Some(Arc::new(RerankSupport {
                    reranker: Arc::clone(r),
                })),
                None => Some(embedding()),
            },
            _ => Some(Arc::new(RerankSupport {
                reranker: self.reranker().await?,
            })),
        })
    }

    /// Embeds SQL chunk rows and writes them to both indexes.
    async fn index_rows(&self, rows: &[docent_store::ChunkWithAccess]) -> anyhow::Result<()> {
        let indexed: Vec<docent_core::IndexedChunk> =
            rows.iter().map(docent_store::ChunkWithAccess::to_indexed).collect();
        let texts: Vec<String> = indexed.iter().map(|c| c.text.clone()).collect();
        let embedder = Arc::clone(&self.passages);
        let vectors = tokio::task::spawn_blocking(move || embedder.embed_passages(&texts)).await??;
        self.vectors.upsert(&indexed, &vectors)?;
        self.keywords.upsert(&indexed)?;
        Ok(())
    }

    /// Rebuilds both derived indexes from SQL (re-embedding every chunk).
    /// Returns the number of chunks indexed.
    pub async fn reindex(&self, progress: &(dyn Fn(usize, usize) + Sync)) -> anyhow::Result<usize> {
        let rows = self.store.ready_chunks_with_access().await?;
        self.vectors.clear()?;
        self.keywords.clear()?;
        let total = rows.len();
        let mut done = 0;
        for batch in rows.chunks(256) {
            self.index_rows(batch).await?;
            done += batch.len();
            progress(done, total);
        }
        self.vectors.flush()?;
        self.vectors.maintain()?;
        Ok(done)
    }

    /// Makes both indexes agree with SQL: removes entries that are not chunks
    /// of live documents (left by a crash between SQL and index writes,
    /// since qdrant-edge does not replay its WAL, or by a failed ingest) and
    /// indexes ready chunks that are missing. Run at startup, before this
    /// replica's workers and change-log follower start.
    pub async fn repair(&self) -> anyhow::Result<Repair> {
        use std::collections::HashSet;
        // Entries of documents mid-ingest stay: with replicas, another
        // process may be indexing them right now (search never serves them
        // before they are ready).
        let live: HashSet<uuid::Uuid> = self.store.live_chunk_ids().await?.into_iter().collect();
        let ready: HashSet<uuid::Uuid> = self.store.ready_chunk_ids().await?.into_iter().collect();
        let vec_ids: HashSet<uuid::Uuid> = self.vectors.chunk_ids()?.into_iter().collect();
        let kw_ids: HashSet<uuid::Uuid> = self.keywords.chunk_ids()?.into_iter().collect();
        let vec_orphans: Vec<_> = vec_ids.difference(&live).copied().collect();
        let kw_orphans: Vec<_> = kw_ids.difference(&live).copied().collect();
        if !vec_orphans.is_empty() {
            self.vectors.delete_chunks(&vec_orphans)?;
        }
        if !kw_orphans.is_empty() {
            self.keywords.delete_chunks(&kw_orphans)?;
        }
        // A chunk missing from the vector index is embedded again; one
        // missing only from tantivy (say, after a keyword schema change
        // dropped that index) is written there from its SQL text alone:
        // re-embedding a whole corpus for it would take hours.
        let missing_vec: HashSet<uuid::Uuid> = ready.iter().filter(|id| !vec_ids.contains(id)).copied().collect();
        let missing_kw: HashSet<uuid::Uuid> = ready
            .iter()
            .filter(|id| vec_ids.contains(id) && !kw_ids.contains(id))
            .copied()
            .collect();
        if !missing_vec.is_empty() || !missing_kw.is_empty() {
            let rows: Vec<_> = self
                .store
                .ready_chunks_with_access()
                .await?
                .into_iter()
                .filter(|r| missing_vec.contains(&r.chunk.id) || missing_kw.contains(&r.chunk.id))
                .collect();
            let (embed, keyword_only): (Vec<_>, Vec<_>) =
                rows.into_iter().partition(|r| missing_vec.contains(&r.chunk.id));
            for batch in embed.chunks(256) {
                self.index_rows(batch).await?;
            }
            for batch in keyword_only.chunks(4096) {
                let indexed: Vec<docent_core::IndexedChunk> =
                    batch.iter().map(docent_store::ChunkWithAccess::to_indexed).collect();
                let keywords = Arc::clone(&self.keywords);
                tokio::task::spawn_blocking(move || keywords.upsert(&indexed)).await??;
            }
        }
        self.vectors.flush()?;
        let report = Repair {
            removed_vectors: vec_orphans.len(),
            removed_keywords: kw_orphans.len(),
            reembedded: missing_vec.len(),
            keywords_rewritten: missing_kw.len(),
        };
        if report.removed_vectors + report.removed_keywords + report.reembedded + report.keywords_rewritten > 0 {
            tracing::warn!(?report, "indexes repaired from SQL");
        }
        Ok(report)
    }

    /// Compares SQL (ready chunks) with both derived indexes.
    pub fn consistency(&self, sql_ids: &[uuid::Uuid]) -> anyhow::Result<Consistency> {
        use std::collections::HashSet;
        let sql: HashSet<_> = sql_ids.iter().copied().collect();
        let vec: HashSet<_> = self.vectors.chunk_ids()?.into_iter().collect();
        let kw: HashSet<_> = self.keywords.chunk_ids()?.into_iter().collect();
        Ok(Consistency {
            sql: sql.len(),
            vectors: vec.len(),
            keywords: kw.len(),
            missing_in_vectors: sql.difference(&vec).count(),
            missing_in_keywords: sql.difference(&kw).count(),
            orphans_in_vectors: vec.difference(&sql).count(),
            orphans_in_keywords: kw.difference(&sql).count(),
        })
    }
}

/// What the web layer needs besides the components; `serve` and `docent
/// bench load` build the server state the same way ([`Components::web_state`]).
pub struct WebParts {
    pub chat: Arc<dyn ChatModel>,
    pub support: Option<Arc<dyn SupportModel>>,
    pub evidence: Option<Arc<dyn docent_core::Reranker>>,
    pub queue: Arc<docent_ingest::queue::IngestQueue>,
    pub follower: Arc<docent_ingest::follow::Follower>,
    pub metrics: Arc<docent_web::metrics::Metrics>,
    pub oidc: Option<Arc<docent_web::oidc::Verifier>>,
    pub provenance: docent_web::ModelProvenance,
    /// The generation bounds (normally [`Components::admission_config`]).
    pub admission: AdmissionConfig,
}

impl Components {
    /// `generation.max_active` (else `max_num_seqs`), `max_queued`,
    /// `queue_timeout_secs`.
    pub fn admission_config(&self) -> AdmissionConfig {
        AdmissionConfig {
            max_active: self.cfg.max_active(),
            max_queued: self.cfg.generation.max_queued,
            queue_timeout: std::time::Duration::from_secs(self.cfg.generation.queue_timeout_secs),
        }
    }

    /// The HTTP handlers' settings, from the config.
    pub fn web_config(&self) -> docent_web::WebConfig {
        let cfg = &self.cfg;
        docent_web::WebConfig {
            max_upload_bytes: cfg.server.max_upload_mb << 20,
            max_json_bytes: cfg.server.max_json_kb << 10,
            default_collection: cfg.access.default_collection.clone(),
            default_access: cfg.access.default_labels.clone(),
            answer: self.answer_config(),
            retrieve_k: cfg.retrieval.answer_k,
            evidence_rerank_n: cfg.generation.evidence_rerank_n,
            rewrite: docent_generate::rewrite::RewriteMode::parse(&cfg.generation.rewrite)
                .unwrap_or(docent_generate::rewrite::RewriteMode::Merge),
            require_auth: cfg.access.require_auth,
            cors_allowed_origins: cfg.server.cors_allowed_origins.clone(),
            session_ttl_secs: cfg.access.session_ttl_secs,
        }
    }

    /// The state every handler shares.
    pub fn web_state(&self, parts: WebParts) -> docent_web::AppState {
        let a = parts.admission;
        tracing::info!(
            max_active = a.max_active,
            max_queued = a.max_queued,
            queue_timeout_secs = a.queue_timeout.as_secs(),
            "generation admission"
        );
        let admission = Admission::new(a, Arc::clone(&parts.metrics));
        docent_web::AppState {
            store: self.store.clone(),
            ingestor: Arc::clone(&self.ingestor),
            queue: parts.queue,
            follower: parts.follower,
            searcher: self.searcher.clone(),
            chat: parts.chat,
            support: parts.support,
            evidence: parts.evidence,
            cfg: self.web_config(),
            limiter: docent_web::auth::RateLimiter::new(self.cfg.access.rate_limit_per_minute),
            audit_redactor: docent_core::redact::Preset::parse(&self.cfg.access.redact_audit)
                .and_then(docent_core::redact::Redactor::preset),
            provenance: parts.provenance,
            metrics: parts.metrics,
            admission,
            oidc: parts.oidc,
        }
    }
}

/// Opens the SQL store within `storage.connect_timeout_secs`, with a message
/// that names the (password-redacted) URL when it cannot.
async fn connect_store(cfg: &Config) -> anyhow::Result<Store> {
    let url = cfg.database_url();
    let secs = cfg.storage.connect_timeout_secs;
    match tokio::time::timeout(std::time::Duration::from_secs(secs), Store::connect(&url)).await {
        Ok(Ok(store)) => Ok(store),
        Ok(Err(e)) => Err(anyhow::Error::new(e).context(format!(
            "cannot open the SQL store at {} (storage.database_url)",
            crate::config::redact_url(&url)
        ))),
        Err(_) => anyhow::bail!(
            "the SQL store at {} did not answer within {secs} s (storage.database_url; is the server running and reachable?)",
            crate::config::redact_url(&url)
        ),
    }
}

/// The embedded qdrant-edge index, or the Qdrant server in
/// `storage.qdrant_url` (then shared by every replica).
async fn open_vectors(cfg: &Config, dim: usize, hnsw: VectorSettings) -> anyhow::Result<(Arc<dyn VectorIndex>, bool)> {
    let st = &cfg.storage;
    let Some(url) = st.qdrant_url.clone() else {
        let path = st.data_dir.join("vectors");
        let edge = EdgeVectorIndex::open(&path, dim, hnsw).context("opening the vector index")?;
        return Ok((Arc::new(edge), false));
    };
    let api_key = match &st.qdrant_api_key_env {
        Some(var) => Some(
            std::env::var(var).with_context(|| format!("storage.qdrant_api_key_env names {var}, which is not set"))?,
        ),
        None => None,
    };
    let collection = st.qdrant_collection.clone();
    let secs = st.connect_timeout_secs;
    let u = url.clone();
    let connect = tokio::task::spawn_blocking(move || ServerVectorIndex::connect(&u, &collection, dim, hnsw, api_key));
    let server = match tokio::time::timeout(std::time::Duration::from_secs(secs), connect).await {
        Ok(joined) => joined
            .context("qdrant connect task")?
            .with_context(|| format!("cannot use the Qdrant server at {url} (storage.qdrant_url)"))?,
        Err(_) => anyhow::bail!("the Qdrant server at {url} did not answer within {secs} s (storage.qdrant_url)"),
    };
    Ok((Arc::new(server), true))
}

/// `server.replica_id`, else a stable id kept in the data dir.
fn replica_id(cfg: &Config) -> anyhow::Result<String> {
    if !cfg.server.replica_id.trim().is_empty() {
        return Ok(cfg.server.replica_id.trim().to_owned());
    }
    let path = cfg.storage.data_dir.join("replica_id");
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        _ => {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "replica".to_owned());
            let id = format!("{host}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
            std::fs::write(&path, &id).with_context(|| format!("writing {}", path.display()))?;
            Ok(id)
        }
    }
}

#[derive(Debug, serde::Serialize)]
pub struct Repair {
    pub removed_vectors: usize,
    pub removed_keywords: usize,
    /// Ready chunks missing from the vector index: embedded and written
    /// to both indexes.
    pub reembedded: usize,
    /// Ready chunks missing from tantivy alone: written there from SQL,
    /// no embedding.
    pub keywords_rewritten: usize,
}

#[derive(Debug, serde::Serialize)]
pub struct Consistency {
    pub sql: usize,
    pub vectors: usize,
    pub keywords: usize,
    pub missing_in_vectors: usize,
    pub missing_in_keywords: usize,
    pub orphans_in_vectors: usize,
    pub orphans_in_keywords: usize,
}

impl Consistency {
    pub fn ok(&self) -> bool {
        self.missing_in_vectors == 0
            && self.missing_in_keywords == 0
            && self.orphans_in_vectors == 0
            && self.orphans_in_keywords == 0
    }
}
