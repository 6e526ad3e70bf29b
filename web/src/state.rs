//! Shared application state handed to every handler.

use docent_core::{ChatModel, Principal};
use docent_generate::answer::AnswerConfig;
use docent_ingest::follow::Follower;
use docent_ingest::pipeline::Ingestor;
use docent_ingest::queue::IngestQueue;
use docent_retrieve::search::Searcher;
use docent_store::Store;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct WebConfig {
    pub max_upload_bytes: usize,
    pub max_json_bytes: usize,
    pub default_collection: String,
    /// Labels given to uploads that name none.
    pub default_access: Vec<String>,
    pub answer: AnswerConfig,
    /// Passages retrieved for an answer before the prompt takes its share.
    pub retrieve_k: usize,
    /// Passages the evidence cross-encoder rescores.
    pub evidence_rerank_n: usize,
    /// How follow-up questions are made standalone.
    pub rewrite: docent_generate::rewrite::RewriteMode,
    /// Refuse `/v1` requests without an API key (401).
    pub require_auth: bool,
    /// Origins allowed to call the API from a browser (exact match).
    pub cors_allowed_origins: Vec<String>,
    /// Lifetime of a web-chat session (`access.session_ttl_secs`).
    pub session_ttl_secs: u64,
}

type ProvenanceFn = dyn Fn() -> Result<Vec<serde_json::Value>, String> + Send + Sync;

/// Provenance of each model (file, size, sha256, architecture,
/// quantization, license), shown by `GET /v1/models`. Hashing multi-GB
/// weights takes seconds, so it runs on first request, off the async
/// workers, and is kept.
pub struct ModelProvenance {
    read: Arc<ProvenanceFn>,
    cell: tokio::sync::OnceCell<Vec<serde_json::Value>>,
}

impl ModelProvenance {
    pub fn new(read: impl Fn() -> Result<Vec<serde_json::Value>, String> + Send + Sync + 'static) -> Self {
        Self {
            read: Arc::new(read),
            cell: tokio::sync::OnceCell::new(),
        }
    }

    pub async fn get(&self) -> crate::error::ApiResult<&[serde_json::Value]> {
        let v = self
            .cell
            .get_or_try_init(|| async {
                let read = Arc::clone(&self.read);
                tokio::task::spawn_blocking(move || read())
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r)
                    .map_err(crate::error::ApiError::Unavailable)
            })
            .await?;
        Ok(v)
    }
}

pub struct AppState {
    pub store: Store,
    pub ingestor: Arc<Ingestor>,
    pub queue: Arc<IngestQueue>,
    /// Applies the SQL change log to this replica's indexes.
    pub follower: Arc<Follower>,
    pub searcher: Searcher,
    pub chat: Arc<dyn ChatModel>,
    /// The cross-encoder judging evidence before answering (none: dense
    /// similarity judges).
    pub evidence: Option<Arc<dyn docent_core::Reranker>>,
    /// Scores semantic support in the citation check (none: lexical only).
    pub support: Option<Arc<dyn docent_generate::citations::SupportModel>>,
    pub cfg: WebConfig,
    pub provenance: ModelProvenance,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Bounds the chat requests generating and waiting (503 past it).
    pub admission: crate::admission::Admission,
    /// Requests per principal per minute (`access.rate_limit_per_minute`).
    pub limiter: crate::auth::RateLimiter,
    /// Masks PHI/PII in audit records (`access.redact_audit`).
    pub audit_redactor: Option<docent_core::redact::Redactor>,
    /// Checks ID tokens (`access.oidc`); none: OIDC sign-in is off.
    pub oidc: Option<Arc<crate::oidc::Verifier>>,
}

impl AppState {
    /// Hybrid retrieval for an answer, timed into the retrieval metric.
    pub async fn retrieve_for_answer(
        &self,
        question: &str,
        filter: &docent_core::AccessFilter,
        endpoint: &str,
    ) -> crate::error::ApiResult<Vec<docent_core::SearchHit>> {
        let started = std::time::Instant::now();
        let judge = self.evidence.as_ref().map(|r| (r, self.cfg.evidence_rerank_n));
        let hits = self
            .searcher
            .search_for_answer(question, filter, self.cfg.retrieve_k, judge)
            .await?;
        self.metrics
            .retrieval_seconds
            .with_label_values(&[endpoint])
            .observe(started.elapsed().as_secs_f64());
        Ok(hits)
    }

    /// The standalone form of `question` given the earlier user questions.
    pub async fn standalone(
        &self,
        history: &[String],
        question: &str,
    ) -> crate::error::ApiResult<docent_generate::rewrite::Standalone> {
        Ok(docent_generate::rewrite::standalone(self.cfg.rewrite, self.chat.as_ref(), history, question).await?)
    }

    /// Appends to the audit trail as the caller. A failure fails the
    /// request: nothing is returned or answered unaudited.
    pub async fn audit(
        &self,
        caller: &Principal,
        action: &str,
        mut detail: serde_json::Value,
    ) -> crate::error::ApiResult<()> {
        if let Some(r) = &self.audit_redactor {
            r.mask_json(&mut detail);
        }
        self.store.audit(&caller.user, action, &detail).await.map_err(|e| {
            tracing::error!(action, error = %e, "audit append failed; refusing the request");
            crate::error::ApiError::Store(e)
        })?;
        Ok(())
    }
}

/// What an audit record says about a retrieval: the query, the access
/// decision (the filter every leg ran under) and the chunks returned.
pub fn retrieval_audit(
    query: &str,
    filter: &docent_core::AccessFilter,
    hits: &[docent_core::SearchHit],
) -> serde_json::Value {
    serde_json::json!({
        "query": query,
        "access": {
            "groups": filter.groups,
            "collections": filter.collections,
            "document_ids": filter.doc_ids,
            "tags": filter.tags,
            "date_from": filter.date_from,
            "date_to": filter.date_to,
        },
        "chunk_ids": hits.iter().map(|h| h.chunk.id).collect::<Vec<_>>(),
        "document_ids": hits.iter().map(|h| h.document.id).collect::<std::collections::BTreeSet<_>>(),
    })
}

/// What an audit record says about an answer: the citations shown, the
/// model, and whether it abstained.
pub fn answer_audit(endpoint: &str, a: &docent_generate::answer::Answer) -> serde_json::Value {
    serde_json::json!({
        "endpoint": endpoint,
        "model": a.model,
        "abstained": a.abstained,
        "cancelled": a.usage.cancelled,
        "citations": a.checked.citations.iter().map(|c| serde_json::json!({
            "n": c.n, "chunk_id": c.chunk_id, "document_id": c.doc_id, "page": c.page,
        })).collect::<Vec<_>>(),
        "unsupported_sentences": a.checked.sentences.iter().filter(|s| !s.supported).count(),
        "withheld": a.withheld,
        "prompt_tokens": a.usage.prompt_tokens,
        "completion_tokens": a.usage.completion_tokens,
    })
}
