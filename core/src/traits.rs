//! The seams between stages. Each trait has one conformance suite that every
//! implementation must pass (see the implementing crates' tests).

use crate::access::AccessFilter;
use crate::error::BackendResult;
use crate::model::{ChatMessage, GenParams, GenUsage, IndexedChunk, LegHit};
use uuid::Uuid;

/// Turns text into vectors. Calls are blocking and CPU-bound: run them off
/// async worker threads (`spawn_blocking` or a dedicated thread).
pub trait Embedder: Send + Sync {
    fn dim(&self) -> usize;
    /// Embeds passages for indexing.
    fn embed_passages(&self, texts: &[String]) -> BackendResult<Vec<Vec<f32>>>;
    /// Embeds one query.
    fn embed_query(&self, text: &str) -> BackendResult<Vec<f32>>;
    /// Identifies the model (file name + hash prefix) so a mismatch between an
    /// index and the configured model is detected.
    fn model_id(&self) -> String;
}

/// Counts tokens the way the embedder will see them, so chunk budgets hold.
pub trait TokenCounter: Send + Sync {
    fn count(&self, text: &str) -> usize;
}

/// A derived dense-vector index keyed by chunk id.
pub trait VectorIndex: Send + Sync {
    fn upsert(&self, chunks: &[IndexedChunk], vectors: &[Vec<f32>]) -> BackendResult<()>;
    fn delete_docs(&self, doc_ids: &[Uuid]) -> BackendResult<()>;
    fn delete_chunks(&self, chunk_ids: &[Uuid]) -> BackendResult<()>;
    /// Replaces the access labels of every point of a document (a payload
    /// update; vectors are kept). Visible to searches when it returns.
    fn set_labels(&self, doc_id: Uuid, labels: &[String]) -> BackendResult<()>;
    fn search(&self, vector: &[f32], filter: &AccessFilter, k: usize) -> BackendResult<Vec<LegHit>>;
    /// Exhaustive (non-approximate) search, the reference that approximate
    /// search recall is measured against. Exact indexes need not override.
    fn search_exact(&self, vector: &[f32], filter: &AccessFilter, k: usize) -> BackendResult<Vec<LegHit>> {
        self.search(vector, filter, k)
    }
    fn count(&self) -> BackendResult<u64>;
    /// All chunk ids held, for consistency checks.
    fn chunk_ids(&self) -> BackendResult<Vec<Uuid>>;
    /// Removes every point (for a rebuild from SQL).
    fn clear(&self) -> BackendResult<()>;
    fn flush(&self) -> BackendResult<()>;
    /// Background upkeep after writes (building approximate-search graphs
    /// for grown segments). Cheap when there is nothing to do.
    fn maintain(&self) -> BackendResult<()> {
        Ok(())
    }
}

/// A derived BM25 keyword index keyed by chunk id.
pub trait KeywordIndex: Send + Sync {
    fn upsert(&self, chunks: &[IndexedChunk]) -> BackendResult<()>;
    fn delete_docs(&self, doc_ids: &[Uuid]) -> BackendResult<()>;
    /// Replaces every chunk of `doc_ids` with `chunks`. An index that can
    /// should make it one commit, so that a concurrent search (or a second
    /// replace of the same documents) never sees them missing.
    fn replace_docs(&self, doc_ids: &[Uuid], chunks: &[IndexedChunk]) -> BackendResult<()> {
        self.delete_docs(doc_ids)?;
        self.upsert(chunks)
    }
    fn delete_chunks(&self, chunk_ids: &[Uuid]) -> BackendResult<()>;
    fn search(&self, query: &str, filter: &AccessFilter, k: usize) -> BackendResult<Vec<LegHit>>;
    fn count(&self) -> BackendResult<u64>;
    fn chunk_ids(&self) -> BackendResult<Vec<Uuid>>;
    /// Removes every document (for a rebuild from SQL).
    fn clear(&self) -> BackendResult<()>;
}

/// Scores (query, passage) pairs jointly: a cross-encoder. Higher is more
/// relevant; scores are comparable within one call only.
pub trait Reranker: Send + Sync {
    fn rerank(&self, query: &str, passages: &[&str]) -> BackendResult<Vec<f32>>;
    /// Identifies the model (file name + hash prefix).
    fn model_id(&self) -> String;
}

/// Receives generated text as it is produced. Returning `false` asks the
/// model to stop (the client went away).
pub trait TokenSink: Send {
    fn token(&mut self, text: &str) -> bool;
}

/// A chat model. Implementations run their compute off the async workers.
#[async_trait::async_trait]
pub trait ChatModel: Send + Sync {
    fn name(&self) -> String;
    async fn generate(
        &self,
        messages: Vec<ChatMessage>,
        params: GenParams,
        sink: &mut (dyn TokenSink + Send),
    ) -> BackendResult<(String, GenUsage)>;
    /// Tokens the model would read for `messages`, chat template and
    /// generation prompt included, counted with the model's own tokenizer.
    /// `None` when the backend cannot tell (prompts then fall back to an
    /// estimate).
    async fn count_prompt_tokens(&self, _messages: &[ChatMessage]) -> BackendResult<Option<usize>> {
        Ok(None)
    }
    /// The model's context window in tokens, when known.
    fn context_window(&self) -> Option<usize> {
        None
    }
}
