//! Wiring: builds the components from a [`Config`].

use crate::config::Config;
use anyhow::Context;
use docent_core::{ChatModel, Embedder, KeywordIndex, TokenCounter, VectorIndex};
use docent_generate::answer::AnswerConfig;
use docent_generate::citations::CheckConfig;
use docent_generate::citations::SupportModel;
use docent_generate::mistral::{MistralChat, MistralOptions};
use docent_generate::support::{EmbeddingSupport, RerankSupport};
use docent_ingest::chunk::ChunkConfig;
use docent_ingest::pipeline::{IngestConfig, Ingestor};
use docent_retrieve::embed::{EmbedderOptions, EmbedderPaths, FastEmbedder, HfTokenCounter};
use docent_retrieve::keyword::TantivyIndex;
use docent_retrieve::rerank::{FastReranker, RerankerPaths};
use docent_retrieve::search::{SearchConfig, Searcher};
use docent_retrieve::vector::{EdgeVectorIndex, VectorSettings};
use docent_store::Store;
use std::sync::Arc;

/// Everything but the chat model (which only `serve` and `ask` need).
pub struct Components {
    pub cfg: Config,
    pub store: Store,
    pub embedder: Arc<dyn Embedder>,
    pub vectors: Arc<EdgeVectorIndex>,
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
        let store = Store::connect(&cfg.database_url())
            .await
            .with_context(|| "opening the SQL store")?;
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
        };
        let embedder: Arc<dyn Embedder> = Arc::new(
            tokio::task::spawn_blocking(move || FastEmbedder::load(&paths, opts))
                .await
                .context("embedder loader")??,
        );
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
        let vectors = Arc::new(
            EdgeVectorIndex::open(&data.join("vectors"), embedder.dim(), hnsw).context("opening the vector index")?,
        );
        let r = &cfg.retrieval;
        let keywords = Arc::new(
            TantivyIndex::open(&data.join("bm25"))
                .context("opening the keyword index")?
                .with_boosts(r.title_boost, r.heading_boost, r.body_boost),
        );
        let ingestor = Arc::new(Ingestor::new(
            store.clone(),
            Arc::clone(&embedder),
            counter,
            vectors.clone() as Arc<dyn VectorIndex>,
            keywords.clone() as Arc<dyn KeywordIndex>,
            data.join("blobs"),
            IngestConfig {
                chunk: ChunkConfig {
                    max_tokens: cfg.ingest.chunk_tokens,
                    overlap_tokens: cfg.ingest.overlap_tokens,
                },
                embed_batch: cfg.ingest.embed_batch,
                limits: cfg.extract_limits(),
            },
        )?);
        let mut searcher = Searcher::new(
            store.clone(),
            Arc::clone(&embedder),
            vectors.clone() as Arc<dyn VectorIndex>,
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
            vectors,
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
        let indexed: Vec<docent_core::IndexedChunk> = rows
            .iter()
            .map(|r| docent_core::IndexedChunk {
                chunk_id: r.chunk.id,
                doc_id: r.chunk.doc_id,
                collection: r.collection.clone(),
                access: r.access.clone(),
                tags: r.tags.clone(),
                date: r.date,
                title: r.title.clone(),
                heading: r.chunk.heading_path.join(" > "),
                text: r.chunk.text.clone(),
            })
            .collect();
        let texts: Vec<String> = indexed.iter().map(|c| c.text.clone()).collect();
        let embedder = Arc::clone(&self.embedder);
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
        self.vectors.optimize()?;
        Ok(done)
    }

    /// Makes both indexes agree with SQL: removes entries that are not chunks
    /// of ready documents (left by a crash between SQL and index writes,
    /// since qdrant-edge does not replay its WAL) and indexes ready chunks
    /// that are missing. Run at startup, before any job runs.
    pub async fn repair(&self) -> anyhow::Result<Repair> {
        use std::collections::HashSet;
        let ready: HashSet<uuid::Uuid> = self.store.ready_chunk_ids().await?.into_iter().collect();
        let vec_ids: HashSet<uuid::Uuid> = self.vectors.chunk_ids()?.into_iter().collect();
        let kw_ids: HashSet<uuid::Uuid> = self.keywords.chunk_ids()?.into_iter().collect();
        let vec_orphans: Vec<_> = vec_ids.difference(&ready).copied().collect();
        let kw_orphans: Vec<_> = kw_ids.difference(&ready).copied().collect();
        if !vec_orphans.is_empty() {
            self.vectors.delete_chunks(&vec_orphans)?;
        }
        if !kw_orphans.is_empty() {
            self.keywords.delete_chunks(&kw_orphans)?;
        }
        let missing: HashSet<uuid::Uuid> = ready
            .iter()
            .filter(|id| !vec_ids.contains(id) || !kw_ids.contains(id))
            .copied()
            .collect();
        if !missing.is_empty() {
            let rows: Vec<_> = self
                .store
                .ready_chunks_with_access()
                .await?
                .into_iter()
                .filter(|r| missing.contains(&r.chunk.id))
                .collect();
            for batch in rows.chunks(256) {
                self.index_rows(batch).await?;
            }
        }
        self.vectors.flush()?;
        let report = Repair {
            removed_vectors: vec_orphans.len(),
            removed_keywords: kw_orphans.len(),
            reindexed: missing.len(),
        };
        if report.removed_vectors + report.removed_keywords + report.reindexed > 0 {
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

#[derive(Debug, serde::Serialize)]
pub struct Repair {
    pub removed_vectors: usize,
    pub removed_keywords: usize,
    pub reindexed: usize,
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
