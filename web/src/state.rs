//! Shared application state handed to every handler.

use docent_core::{ChatModel, Principal};
use docent_generate::answer::AnswerConfig;
use docent_ingest::pipeline::{IngestQueue, Ingestor};
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
}

pub struct AppState {
    pub store: Store,
    pub ingestor: Arc<Ingestor>,
    pub queue: IngestQueue,
    pub searcher: Searcher,
    pub chat: Arc<dyn ChatModel>,
    pub cfg: WebConfig,
    pub metrics: crate::metrics::Metrics,
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
        let hits = self
            .searcher
            .search(
                question,
                filter,
                self.cfg.retrieve_k,
                docent_retrieve::search::Mode::Hybrid,
            )
            .await?
            .hits;
        self.metrics
            .retrieval_seconds
            .with_label_values(&[endpoint])
            .observe(started.elapsed().as_secs_f64());
        Ok(hits)
    }

    /// The caller. Sign-in does not exist yet: everyone is the default user.
    pub fn principal(&self) -> Principal {
        Principal::default_user()
    }
}
