//! Follows the change log so that this replica's own derived indexes
//! (always its tantivy index; its vector index too unless every replica
//! shares one Qdrant server) catch up with what other replicas did.
//!
//! Applying is idempotent: for each changed document, its entries are
//! removed and, if it is ready now, its current chunks are written (SQL is
//! read at apply time, so a later change wins). A `ready` entry for a
//! document this process indexed itself is skipped once.

use crate::error::{IngestError, Result};
use crate::pipeline::{lock_set, Ingestor};
use docent_core::IndexedChunk;
use docent_store::ChangeOp;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, warn};
use uuid::Uuid;

/// Change-log rows applied per round.
const BATCH: usize = 256;

pub struct Follower {
    ingestor: Arc<Ingestor>,
    applied: AtomicI64,
}

/// What one round applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    pub changes: usize,
    pub docs_indexed: usize,
    pub docs_removed: usize,
    /// Sequence number applied up to.
    pub seq: i64,
}

impl Follower {
    /// Starts after `seq`: take it *before* the startup repair, so that
    /// changes made while repairing are applied again (harmlessly).
    pub fn new(ingestor: Arc<Ingestor>, seq: i64) -> Self {
        Self {
            ingestor,
            applied: AtomicI64::new(seq),
        }
    }

    /// The sequence number applied up to.
    pub fn applied(&self) -> i64 {
        self.applied.load(Ordering::SeqCst)
    }

    /// Applies everything logged so far.
    pub async fn catch_up(&self) -> Result<Applied> {
        let mut total = Applied {
            seq: self.applied(),
            ..Applied::default()
        };
        loop {
            let round = self.round().await?;
            total.changes += round.changes;
            total.docs_indexed += round.docs_indexed;
            total.docs_removed += round.docs_removed;
            total.seq = round.seq;
            if round.changes < BATCH {
                return Ok(total);
            }
        }
    }

    async fn round(&self) -> Result<Applied> {
        let ing = &self.ingestor;
        let from = self.applied();
        let changes = ing.store.changes_since(from, BATCH).await?;
        let Some(last) = changes.last().map(|c| c.seq) else {
            return Ok(Applied {
                seq: from,
                ..Applied::default()
            });
        };
        let mut touched = BTreeSet::new();
        let mut relabelled = BTreeSet::new();
        {
            let mut local = lock_set(&ing.applied_locally);
            for c in &changes {
                match c.op {
                    ChangeOp::Ready if local.remove(&c.doc_id) => {}
                    // Labels only: a payload update, no re-embedding.
                    ChangeOp::Access => {
                        relabelled.insert(c.doc_id);
                    }
                    ChangeOp::Ready | ChangeOp::Delete => {
                        touched.insert(c.doc_id);
                    }
                }
            }
        }
        // A document re-indexed in full below gets its current labels anyway.
        let relabel: Vec<Uuid> = relabelled.difference(&touched).copied().collect();
        if !relabel.is_empty() {
            ing.apply_access(&relabel, !ing.shared_vectors).await?;
        }
        let mut rows = Vec::new();
        let mut removed = 0;
        for doc in &touched {
            let chunks = ing.store.ready_chunks_of(*doc).await?;
            if chunks.is_empty() {
                removed += 1;
            }
            rows.extend(chunks);
        }
        let indexed: Vec<IndexedChunk> = rows.iter().map(docent_store::ChunkWithAccess::to_indexed).collect();
        let docs_indexed = touched.len() - removed;
        if !touched.is_empty() {
            self.apply(touched.into_iter().collect(), indexed).await?;
        }
        self.applied.store(last, Ordering::SeqCst);
        debug!(from, to = last, changes = changes.len(), "change log applied");
        Ok(Applied {
            changes: changes.len(),
            docs_indexed: docs_indexed + relabel.len(),
            docs_removed: removed,
            seq: last,
        })
    }

    async fn apply(&self, docs: Vec<Uuid>, indexed: Vec<IndexedChunk>) -> Result<()> {
        let ing = &self.ingestor;
        let vectors = if ing.shared_vectors || indexed.is_empty() {
            Vec::new()
        } else {
            let embedder = Arc::clone(&ing.embedder);
            let texts: Vec<String> = indexed.iter().map(|c| c.text.clone()).collect();
            tokio::task::spawn_blocking(move || embedder.embed_passages(&texts))
                .await
                .map_err(|e| IngestError::Interrupted(e.to_string()))?
                .map_err(IngestError::Embed)?
        };
        let shared = ing.shared_vectors;
        let vindex = Arc::clone(&ing.vectors);
        let kindex = Arc::clone(&ing.keywords);
        tokio::task::spawn_blocking(move || {
            kindex.delete_docs(&docs).map_err(IngestError::Index)?;
            if !indexed.is_empty() {
                kindex.upsert(&indexed).map_err(IngestError::Index)?;
            }
            if !shared {
                vindex.delete_docs(&docs).map_err(IngestError::Index)?;
                if !indexed.is_empty() {
                    vindex.upsert(&indexed, &vectors).map_err(IngestError::Index)?;
                }
                vindex.flush().map_err(IngestError::Index)?;
            }
            Ok::<_, IngestError>(())
        })
        .await
        .map_err(|e| IngestError::Interrupted(e.to_string()))?
    }

    /// Follows the log every `every` until [`Following::stop`].
    pub fn spawn(self: Arc<Self>, every: Duration) -> Following {
        Following(tokio::spawn(async move {
            loop {
                if let Err(e) = self.catch_up().await {
                    warn!(error = %e, applied = self.applied(), "following the change log failed; retrying");
                }
                tokio::time::sleep(every).await;
            }
        }))
    }
}

/// The running follow loop of [`Follower::spawn`].
#[must_use = "a follow loop runs until stopped; stop it before the runtime shuts down"]
pub struct Following(tokio::task::JoinHandle<()>);

impl Following {
    /// Cancels the loop and waits for the cancellation, so the follower
    /// (and the ingestor it holds) is dropped here, not by the runtime
    /// while it shuts down.
    pub async fn stop(self) {
        self.0.abort();
        // The task never ends on its own: its outcome is the cancellation.
        let _ = self.0.await;
    }
}
