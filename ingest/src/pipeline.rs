//! The ingest job: one document through queued -> extracting -> embedding ->
//! indexing -> ready | failed.
//!
//! Crash safety rests on the SQL store being the truth:
//! 1. `submit` writes the raw bytes to the blob directory (write to a temp
//!    file, then rename) and inserts the document and job rows as `queued`.
//! 2. `run` extracts and chunks, embeds, then writes all chunks in one SQL
//!    transaction (status `indexing`), then upserts both derived indexes.
//! 3. Only then does the document flip to `ready`. Retrieval hydrates hits
//!    from SQL and drops chunks of documents that are not `ready`, so a
//!    version is never half-visible.
//! 4. On failure the document goes to `failed` and its chunks are removed
//!    from both indexes. A job a crash left unfinished is claimed again
//!    (see [`crate::queue`]) and re-run from the start; every step above
//!    is idempotent.
//! 5. The flip to `ready`, deletes and failures are appended to the SQL
//!    change log, which other replicas follow ([`crate::follow`]).

use crate::chunk::{chunk_blocks, ChunkConfig};
use crate::error::{IngestError, Result};
use crate::extract;
use crate::windows::EmbedWindows;
use docent_core::{
    now_rfc3339, Chunk, DocStatus, Document, Embedder, IndexedChunk, Job, KeywordIndex, SourceKind, TokenCounter,
    VectorIndex,
};
use docent_store::{ChangeOp, Store};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tracing::{info, instrument, warn};
use uuid::Uuid;

#[derive(Debug, Clone, Copy)]
pub struct IngestConfig {
    pub chunk: ChunkConfig,
    /// Passages a job hands the embedder at a time (a window; the shared
    /// batcher sorts what is queued by length). Progress moves per window.
    pub embed_batch: usize,
    pub limits: extract::Limits,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            chunk: ChunkConfig::default(),
            embed_batch: 256,
            limits: extract::Limits::default(),
        }
    }
}

/// A document offered for ingestion.
#[derive(Debug, Clone)]
pub struct NewDocument {
    pub bytes: Vec<u8>,
    /// File name, used for type checking and as the fallback title.
    pub file_name: String,
    /// Where it came from (a path, or the upload's file name).
    pub source: String,
    pub collection: String,
    pub access: Vec<String>,
    pub title: Option<String>,
    /// Free-form tags, filterable at search time.
    pub tags: Vec<String>,
    /// The document's own date (RFC 3339 or YYYY-MM-DD); searches filter by
    /// it, else by the upload time.
    pub date: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Submitted {
    /// A new document, to be processed by `run(job)`.
    Queued { doc: Document, job: Job },
    /// The same bytes already exist in this collection; nothing was stored.
    Duplicate { doc: Document },
}

/// Reports a document's stage and progress (0..=1 over its whole job).
pub trait Progress: Send + Sync {
    fn update(&self, doc_id: Uuid, stage: DocStatus, progress: f32);
}

impl<F: Fn(Uuid, DocStatus, f32) + Send + Sync> Progress for F {
    fn update(&self, doc_id: Uuid, stage: DocStatus, progress: f32) {
        self(doc_id, stage, progress)
    }
}

/// Receives stage timings and outcomes (the server's metrics).
pub trait IngestObserver: Send + Sync {
    /// `stage` is "extract" (with chunking), "embed" or "index" (SQL and
    /// both indexes); one observation per batch of documents.
    fn stage(&self, stage: &'static str, seconds: f64);
    /// One document finished, ready or failed.
    fn outcome(&self, ready: bool);
}

/// A document extracted and chunked, waiting for embedding.
struct Prepared {
    job_id: Uuid,
    doc: Document,
    pages: Option<u32>,
    chunks: Vec<Chunk>,
    attachments: Vec<extract::Attachment>,
    /// A note kept on a ready document (pages left unread).
    note: Option<String>,
}

/// Attachments inside attachments are followed this deep.
const MAX_NESTING: usize = 3;

pub struct Ingestor {
    pub(crate) store: Store,
    pub(crate) embedder: Arc<dyn Embedder>,
    counter: Arc<dyn TokenCounter>,
    pub(crate) vectors: Arc<dyn VectorIndex>,
    pub(crate) keywords: Arc<dyn KeywordIndex>,
    blob_dir: PathBuf,
    cfg: IngestConfig,
    /// This process's name in job claims.
    replica: String,
    lease_secs: i64,
    /// Jobs submitted here are claimed at once (the default: the CLI, eval
    /// and bench run what they submit); `serve` turns it off so that any
    /// replica's workers may take its uploads.
    claim_on_submit: std::sync::atomic::AtomicBool,
    /// Documents this process made ready after writing both of its indexes
    /// itself: the change-log follower skips their `ready` entries once.
    pub(crate) applied_locally: std::sync::Mutex<std::collections::HashSet<Uuid>>,
    /// The vector index is shared by all replicas (a Qdrant server): the
    /// follower leaves it alone.
    pub(crate) shared_vectors: bool,
    observer: std::sync::OnceLock<Arc<dyn IngestObserver>>,
    /// Labels of a document that names none, in a collection without
    /// configured groups.
    default_access: Vec<String>,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Ingestor {
    pub fn new(
        store: Store,
        embedder: Arc<dyn Embedder>,
        counter: Arc<dyn TokenCounter>,
        vectors: Arc<dyn VectorIndex>,
        keywords: Arc<dyn KeywordIndex>,
        blob_dir: PathBuf,
        cfg: IngestConfig,
    ) -> Result<Self> {
        std::fs::create_dir_all(&blob_dir)?;
        Ok(Self {
            store,
            embedder,
            counter,
            vectors,
            keywords,
            blob_dir,
            cfg,
            replica: format!("local-{}", Uuid::new_v4().simple()),
            lease_secs: 60,
            claim_on_submit: std::sync::atomic::AtomicBool::new(true),
            applied_locally: std::sync::Mutex::new(std::collections::HashSet::new()),
            shared_vectors: false,
            observer: std::sync::OnceLock::new(),
            default_access: vec![docent_core::access::DEFAULT_GROUP.to_owned()],
        })
    }

    /// Names this process in job claims, with the lease its claims get.
    pub fn with_replica(mut self, replica: impl Into<String>, lease_secs: u64) -> Self {
        self.replica = replica.into();
        self.lease_secs = i64::try_from(lease_secs.max(5)).unwrap_or(60);
        self
    }

    /// The labels of documents that name none in a collection without
    /// configured groups (`access.default_labels`).
    pub fn with_default_access(mut self, labels: Vec<String>) -> Self {
        self.default_access = labels;
        self
    }

    pub fn default_access(&self) -> &[String] {
        &self.default_access
    }

    /// Where stage timings and outcomes go (set once).
    pub fn set_observer(&self, observer: Arc<dyn IngestObserver>) {
        let _ = self.observer.set(observer);
    }

    fn observe_stage(&self, stage: &'static str, started: std::time::Instant) {
        if let Some(o) = self.observer.get() {
            o.stage(stage, started.elapsed().as_secs_f64());
        }
    }

    /// Whether every replica shares the vector index.
    pub fn shared_vectors(mut self, yes: bool) -> Self {
        self.shared_vectors = yes;
        self
    }

    pub fn replica(&self) -> &str {
        &self.replica
    }

    pub fn lease_secs(&self) -> i64 {
        self.lease_secs
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn vector_index(&self) -> Arc<dyn VectorIndex> {
        Arc::clone(&self.vectors)
    }

    pub fn keyword_index(&self) -> Arc<dyn KeywordIndex> {
        Arc::clone(&self.keywords)
    }

    /// Claim jobs at submission (a process that runs what it submits, like
    /// the CLI), instead of leaving them to any replica's workers.
    pub fn set_claim_on_submit(&self, yes: bool) {
        self.claim_on_submit.store(yes, std::sync::atomic::Ordering::SeqCst);
    }

    fn blob_path(&self, hash: &str) -> PathBuf {
        self.blob_dir.join(hash)
    }

    /// Validates the type, de-duplicates by content hash and records the
    /// document and its job as `queued`. Type errors are returned here, before
    /// anything is stored.
    #[instrument(skip(self, new), fields(file = %new.file_name, bytes = new.bytes.len()))]
    pub async fn submit(&self, new: NewDocument) -> Result<Submitted> {
        self.submit_inner(new, None).await
    }

    async fn submit_inner(&self, new: NewDocument, parent_id: Option<Uuid>) -> Result<Submitted> {
        let kind = extract::detect(&new.bytes, &new.file_name)?;
        if let Some(d) = new.date.as_deref() {
            if docent_core::parse_date(d).is_none() {
                return Err(IngestError::BadMetadata(format!(
                    "date {d:?} is neither RFC 3339 nor YYYY-MM-DD"
                )));
            }
        }

        // No labels named: the document inherits its collection's groups
        // (attachments always have their carrier's labels).
        let inherit = new.access.is_empty() && parent_id.is_none();
        let hash = sha256_hex(&new.bytes);
        // Attachments belong to their carrier: never de-duplicated against
        // other documents, never versions of anything.
        let mut supersedes = None;
        if parent_id.is_none() {
            if let Some(doc) = self.store.find_by_hash(&new.collection, &hash).await? {
                info!(doc_id = %doc.id, "identical content already ingested");
                return Ok(Submitted::Duplicate { doc });
            }
            // A new version of the same source replaces the live one when ready.
            supersedes = self
                .store
                .find_ready_by_source(&new.collection, &new.source)
                .await?
                .map(|d| d.id);
        }
        write_atomic(&self.blob_path(&hash), &new.bytes)?;
        let now = now_rfc3339();
        let title = new
            .title
            .clone()
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_else(|| title_from_name(&new.file_name));
        let doc = Document {
            id: Uuid::now_v7(),
            collection: new.collection,
            title,
            source: new.source,
            kind,
            content_hash: hash,
            size_bytes: new.bytes.len() as u64,
            pages: None,
            access: if inherit {
                self.default_access.clone()
            } else {
                new.access
            },
            status: DocStatus::Queued,
            error: None,
            chunk_count: 0,
            supersedes,
            parent_id,
            tags: new.tags,
            date: new.date,
            created_at: now.clone(),
            updated_at: now,
        };
        let job = Job::queued(doc.id);
        let mut doc = doc;
        if inherit {
            doc.access = self.store.insert_document_inheriting(&doc).await?;
        } else {
            self.store.insert_document(&doc).await?;
        }
        if doc.access.is_empty() {
            warn!(doc_id = %doc.id, "document has no access labels; it is visible to nobody");
        }
        // Attachments are run by the process that found them.
        if self.claim_on_submit.load(std::sync::atomic::Ordering::SeqCst) || parent_id.is_some() {
            self.store
                .insert_job_claimed(&job, &self.replica, self.lease_secs)
                .await?;
        } else {
            self.store.insert_job(&job).await?;
        }
        Ok(Submitted::Queued { doc, job })
    }

    /// Runs a queued job to `ready` or `failed`. Never leaves a document
    /// half-indexed: on error its chunks are removed from both indexes.
    pub async fn run(&self, job_id: Uuid, doc_id: Uuid, progress: &dyn Progress) -> Result<Document> {
        self.run_many(&[(job_id, doc_id)], progress)
            .await
            .pop()
            .unwrap_or_else(|| Err(IngestError::Interrupted("no result".to_owned())))
    }

    /// Runs several queued jobs together: each document is extracted and
    /// chunked on its own, embeddings are batched across documents, and the
    /// derived indexes are written and committed once for the whole batch.
    /// Results come back in input order; one bad file never fails the others.
    #[instrument(skip_all, fields(jobs = jobs.len()))]
    pub async fn run_many(&self, jobs: &[(Uuid, Uuid)], progress: &dyn Progress) -> Vec<Result<Document>> {
        self.run_nested(jobs, progress, 0).await
    }

    async fn run_nested(&self, jobs: &[(Uuid, Uuid)], progress: &dyn Progress, depth: usize) -> Vec<Result<Document>> {
        let mut results: Vec<Option<Result<Document>>> = (0..jobs.len()).map(|_| None).collect();
        let mut prepared: Vec<(usize, Prepared)> = Vec::new();
        let started = std::time::Instant::now();
        for (i, &(job_id, doc_id)) in jobs.iter().enumerate() {
            match self.prepare(job_id, doc_id, progress).await {
                Ok(p) => prepared.push((i, p)),
                Err(e) => results[i] = Some(Err(self.fail(job_id, doc_id, e, progress).await)),
            }
        }
        if !jobs.is_empty() {
            self.observe_stage("extract", started);
        }
        if !prepared.is_empty() {
            match self.embed_and_index(&prepared, progress).await {
                Ok(docs) => {
                    for ((i, _), d) in prepared.iter().zip(docs) {
                        results[*i] = Some(Ok(d));
                    }
                    for (_, p) in &prepared {
                        if !p.attachments.is_empty() {
                            Box::pin(self.ingest_attachments(p, progress, depth)).await;
                        }
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    let code = e.code();
                    for (i, p) in &prepared {
                        let err = IngestError::Interrupted(format!("{code}: {msg}"));
                        results[*i] = Some(Err(self.fail(p.job_id, p.doc.id, err, progress).await));
                    }
                }
            }
        }
        if depth == 0 && !prepared.is_empty() {
            // Let the vector index build its HNSW graph for segments that
            // grew past the indexing threshold, so search stays approximate
            // (fast) on a long-running server, not a growing exhaustive scan.
            let vindex = Arc::clone(&self.vectors);
            match tokio::task::spawn_blocking(move || vindex.maintain()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!(error = %e, "vector index maintenance failed"),
                Err(e) => warn!(error = %e, "vector index maintenance panicked"),
            }
        }
        let results: Vec<Result<Document>> = results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(IngestError::Interrupted("not run".to_owned()))))
            .collect();
        if let Some(o) = self.observer.get() {
            for r in &results {
                o.outcome(r.is_ok());
            }
        }
        results
    }

    async fn fail(&self, job_id: Uuid, doc_id: Uuid, err: IngestError, progress: &dyn Progress) -> IngestError {
        warn!(%doc_id, error = %err, code = err.code(), "ingest failed");
        let msg = format!("{}: {err}", err.code());
        // The document must not stay in the indexes.
        if let Err(e) = self.vectors.delete_docs(&[doc_id]) {
            warn!(error = %e, "cleanup of vector index failed");
        }
        if let Err(e) = self.keywords.delete_docs(&[doc_id]) {
            warn!(error = %e, "cleanup of keyword index failed");
        }
        if let Err(e) = self.store.set_status(doc_id, DocStatus::Failed, Some(&msg)).await {
            warn!(error = %e, "could not record the failure");
        }
        // Other replicas may hold an earlier run's entries for it.
        if let Err(e) = self.store.log_change(doc_id, ChangeOp::Delete).await {
            warn!(error = %e, "could not log the failure for other replicas");
        }
        if let Err(e) = self.store.update_job(job_id, DocStatus::Failed, 1.0, Some(&msg)).await {
            warn!(error = %e, "could not record the failure");
        }
        progress.update(doc_id, DocStatus::Failed, 1.0);
        err
    }

    async fn stage(&self, job_id: Uuid, doc_id: Uuid, stage: DocStatus, p: f32, progress: &dyn Progress) -> Result<()> {
        self.store.set_status(doc_id, stage, None).await?;
        self.store.update_job(job_id, stage, p, None).await?;
        progress.update(doc_id, stage, p);
        Ok(())
    }

    /// Extracts and chunks one document.
    async fn prepare(&self, job_id: Uuid, doc_id: Uuid, progress: &dyn Progress) -> Result<Prepared> {
        let mut doc = self
            .store
            .get_document(doc_id)
            .await?
            .ok_or_else(|| IngestError::Interrupted(format!("document {doc_id} no longer exists")))?;
        self.stage(job_id, doc_id, DocStatus::Extracting, 0.05, progress)
            .await?;
        let bytes = Arc::new(std::fs::read(self.blob_path(&doc.content_hash))?);
        let kind = doc.kind;
        let counter = Arc::clone(&self.counter);
        let chunk_cfg = self.cfg.chunk;
        let limits = self.cfg.limits;
        let (extracted, drafts) = tokio::task::spawn_blocking(move || {
            let extracted = extract::extract_bounded(kind, bytes, limits)?;
            let drafts = chunk_blocks(&extracted.blocks, chunk_cfg, counter.as_ref());
            Ok::<_, IngestError>((extracted, drafts))
        })
        .await
        .map_err(|e| IngestError::ExtractorPanic(e.to_string()))??;
        if drafts.is_empty() && extracted.attachments.is_empty() {
            return Err(match kind {
                SourceKind::Pdf | SourceKind::Image => IngestError::NeedsOcr,
                _ => IngestError::Empty,
            });
        }
        let note = (!extracted.pages_needing_ocr.is_empty()).then(|| {
            let pages: Vec<String> = extracted.pages_needing_ocr.iter().map(u32::to_string).collect();
            format!(
                "needs_ocr: {} page(s) have no text layer and were not read (pages {}); install tesseract-ocr and poppler-utils to read them",
                pages.len(),
                pages.join(", ")
            )
        });
        if !extracted.ocr_pages.is_empty() {
            info!(%doc_id, pages = extracted.ocr_pages.len(), "pages read by OCR");
        }
        // Prefer the document's own title over a file-name fallback.
        if let Some(t) = &extracted.title {
            if doc.title == title_from_name(&doc.source) {
                doc.title = t.clone();
            }
        }
        let chunks: Vec<Chunk> = drafts
            .iter()
            .enumerate()
            .map(|(i, d)| Chunk {
                id: Uuid::now_v7(),
                doc_id,
                ordinal: i as u32,
                text: d.text.clone(),
                page: d.page,
                heading_path: d.heading_path.clone(),
                char_start: d.char_start as u32,
                char_end: d.char_end as u32,
                token_count: d.token_count as u32,
            })
            .collect();
        self.stage(job_id, doc_id, DocStatus::Embedding, 0.2, progress).await?;
        Ok(Prepared {
            job_id,
            doc,
            pages: extracted.pages,
            chunks,
            attachments: extracted.attachments,
            note,
        })
    }

    async fn embed_and_index(&self, prepared: &[(usize, Prepared)], progress: &dyn Progress) -> Result<Vec<Document>> {
        // Embed every chunk of the batch, in windows that cross documents.
        let texts: Vec<String> = prepared
            .iter()
            .flat_map(|(_, p)| p.chunks.iter().map(|c| c.text.clone()))
            .collect();
        let total = texts.len().max(1);
        let started = std::time::Instant::now();
        let mut vectors: Vec<Vec<f32>> = Vec::with_capacity(texts.len());
        // Windows big enough for the shared batcher to sort by length, two
        // in flight; progress moves per window.
        let mut windows = EmbedWindows::new(Arc::clone(&self.embedder), texts, self.cfg.embed_batch, 2);
        while let Some(vs) = windows.next().await {
            vectors.extend(vs?);
            let p = 0.2 + 0.6 * (vectors.len() as f32 / total as f32);
            for (_, pr) in prepared {
                progress.update(pr.doc.id, DocStatus::Embedding, p);
            }
            if prepared.len() == 1 {
                let pr = &prepared[0].1;
                self.store.update_job(pr.job_id, DocStatus::Embedding, p, None).await?;
            }
        }

        self.observe_stage("embed", started);
        let started = std::time::Instant::now();

        // The truth first: each document's chunks in one transaction.
        let mut indexed = Vec::with_capacity(vectors.len());
        // The labels each document's chunks got (its labels as stored when
        // its chunks were written).
        let mut used_labels = Vec::with_capacity(prepared.len());
        for (_, p) in prepared {
            self.stage(p.job_id, p.doc.id, DocStatus::Indexing, 0.85, progress)
                .await?;
            self.store.set_title(p.doc.id, &p.doc.title).await?;
            let labels = self.store.put_chunks(&p.doc, p.pages, &p.chunks).await?;
            indexed.extend(p.chunks.iter().map(|c| IndexedChunk {
                chunk_id: c.id,
                doc_id: p.doc.id,
                collection: p.doc.collection.clone(),
                access: labels.clone(),
                tags: p.doc.tags.clone(),
                date: p.doc.effective_date(),
                title: p.doc.title.clone(),
                heading: c.heading_path.join(" > "),
                text: c.text.clone(),
            }));
            used_labels.push(labels);
        }
        let doc_ids: Vec<Uuid> = prepared.iter().map(|(_, p)| p.doc.id).collect();
        let vindex = Arc::clone(&self.vectors);
        let kindex = Arc::clone(&self.keywords);
        tokio::task::spawn_blocking(move || {
            // Re-runs (after a crash) must not duplicate: clear first.
            vindex.delete_docs(&doc_ids).map_err(IngestError::Index)?;
            kindex.delete_docs(&doc_ids).map_err(IngestError::Index)?;
            vindex.upsert(&indexed, &vectors).map_err(IngestError::Index)?;
            kindex.upsert(&indexed).map_err(IngestError::Index)?;
            vindex.flush().map_err(IngestError::Index)?;
            Ok::<_, IngestError>(())
        })
        .await
        .map_err(|e| IngestError::Interrupted(e.to_string()))??;
        self.observe_stage("index", started);

        // Commit point: each version becomes visible and the version it
        // replaces disappears, in one transaction; then the old version's
        // index entries go.
        let mut out = Vec::with_capacity(prepared.len());
        for ((_, p), labels) in prepared.iter().zip(&used_labels) {
            lock_set(&self.applied_locally).insert(p.doc.id);
            let removed = self.store.commit_ready(p.doc.id).await;
            if !matches!(&removed, Ok(r) if !r.iter().any(|(old, _)| *old == p.doc.id)) {
                // Not flipped (stale, or the commit failed): no `ready`
                // entry will come for the follower to skip.
                lock_set(&self.applied_locally).remove(&p.doc.id);
            }
            for (old, hash) in removed? {
                info!(doc_id = %p.doc.id, removed = %old, "one version of the source replaces another");
                self.remove_from_indexes(old).await?;
                self.remove_blob_if_unused(&hash).await?;
                self.delete_children(old).await?;
            }
            if let Some(note) = &p.note {
                warn!(doc_id = %p.doc.id, note = %note, "document ready with unread pages");
                self.store.set_status(p.doc.id, DocStatus::Ready, Some(note)).await?;
            }
            self.store.update_job(p.job_id, DocStatus::Ready, 1.0, None).await?;
            progress.update(p.doc.id, DocStatus::Ready, 1.0);
            info!(doc_id = %p.doc.id, chunks = p.chunks.len(), pages = ?p.pages, "document ready");
            let now = self.store.get_document(p.doc.id).await?;
            if let Some(d) = &now {
                // An admin changed its labels while it was being indexed,
                // after its chunks were written: bring the indexes in line.
                if d.access != *labels && d.status == DocStatus::Ready {
                    info!(doc_id = %p.doc.id, "labels changed during indexing; relabelling");
                    self.apply_access(&[p.doc.id], true).await?;
                }
            }
            out.push(now.unwrap_or_else(|| p.doc.clone()));
        }
        Ok(out)
    }

    /// Rewrites the labels of ready documents in this process's indexes from
    /// SQL: tantivy documents are replaced (text unchanged), vector points
    /// get new payload labels (`vectors`; the follower passes false when a
    /// Qdrant server is shared). Documents not ready are left to the
    /// pipeline, which writes the labels stored when their chunks are
    /// written and checks them again at its commit.
    pub async fn apply_access(&self, doc_ids: &[Uuid], vectors: bool) -> Result<()> {
        let mut docs = Vec::with_capacity(doc_ids.len());
        for id in doc_ids {
            let chunks = self.store.ready_chunks_of(*id).await?;
            if let Some(first) = chunks.first() {
                let labels = first.access.clone();
                let indexed: Vec<IndexedChunk> = chunks.iter().map(docent_store::ChunkWithAccess::to_indexed).collect();
                docs.push((*id, labels, indexed));
            }
        }
        if docs.is_empty() {
            return Ok(());
        }
        let vindex = Arc::clone(&self.vectors);
        let kindex = Arc::clone(&self.keywords);
        tokio::task::spawn_blocking(move || {
            for (id, labels, indexed) in &docs {
                if vectors {
                    vindex.set_labels(*id, labels).map_err(IngestError::Index)?;
                }
                // One commit: a search (or this replica's change-log
                // follower replaying the same change) never sees the
                // document missing in between.
                kindex
                    .replace_docs(std::slice::from_ref(id), indexed)
                    .map_err(IngestError::Index)?;
            }
            if vectors {
                vindex.flush().map_err(IngestError::Index)?;
            }
            Ok::<_, IngestError>(())
        })
        .await
        .map_err(|e| IngestError::Interrupted(e.to_string()))?
    }

    /// Sets a document's access labels (`None`: back to inheriting its
    /// collection's groups, or `fallback` without a collection row), and
    /// those of what it carries, in SQL and then in both indexes of this
    /// process before returning. `None` when there is no such document.
    pub async fn set_access(
        &self,
        doc_id: Uuid,
        labels: Option<&[String]>,
        fallback: &[String],
    ) -> Result<Option<Vec<Uuid>>> {
        let Some(ids) = self.store.set_document_access(doc_id, labels, fallback).await? else {
            return Ok(None);
        };
        self.apply_access(&ids, true).await?;
        info!(doc_id = %doc_id, documents = ids.len(), "access labels changed");
        Ok(Some(ids))
    }

    /// Creates or changes a collection; the documents inheriting its groups
    /// are relabelled in SQL and both indexes before this returns.
    pub async fn put_collection(
        &self,
        name: &str,
        groups: &[String],
        redact_answers: bool,
    ) -> Result<(docent_store::Collection, Vec<Uuid>)> {
        let (coll, ids) = self.store.put_collection(name, groups, redact_answers).await?;
        self.apply_access(&ids, true).await?;
        info!(collection = name, documents = ids.len(), "collection groups set");
        Ok((coll, ids))
    }

    /// Removes a document from SQL first (so it stops being served at once),
    /// then from both indexes, then its blob. Returns whether it existed.
    #[instrument(skip(self))]
    pub async fn delete(&self, doc_id: Uuid) -> Result<bool> {
        let Some(doc) = self.store.get_document(doc_id).await? else {
            return Ok(false);
        };
        self.store.delete_document(doc_id).await?;
        self.remove_from_indexes(doc_id).await?;
        self.remove_blob_if_unused(&doc.content_hash).await?;
        self.delete_children(doc_id).await?;
        Ok(true)
    }

    /// Deletes what a document carried (its attachments), recursively.
    async fn delete_children(&self, parent: Uuid) -> Result<()> {
        let mut pending = vec![parent];
        while let Some(p) = pending.pop() {
            for child in self.store.children_of(p).await? {
                self.store.delete_document(child.id).await?;
                self.remove_from_indexes(child.id).await?;
                self.remove_blob_if_unused(&child.content_hash).await?;
                pending.push(child.id);
            }
        }
        Ok(())
    }

    /// Ingests a ready document's attachments as its children. A bad
    /// attachment is logged and skipped; it never fails the carrier.
    async fn ingest_attachments(&self, p: &Prepared, progress: &dyn Progress, depth: usize) {
        if depth >= MAX_NESTING {
            warn!(doc_id = %p.doc.id, "attachments nested too deep; not ingested");
            return;
        }
        let mut jobs = Vec::new();
        for (n, a) in p.attachments.iter().enumerate() {
            let new = NewDocument {
                bytes: a.bytes.clone(),
                file_name: a.file_name.clone(),
                source: format!("{}#attachment/{}/{}", p.doc.source, n + 1, a.file_name),
                collection: p.doc.collection.clone(),
                access: p.doc.access.clone(),
                title: Some(format!("{} — {}", p.doc.title, a.file_name)),
                tags: p.doc.tags.clone(),
                date: p.doc.date.clone(),
            };
            match self.submit_inner(new, Some(p.doc.id)).await {
                Ok(Submitted::Queued { doc, job }) => jobs.push((job.id, doc.id)),
                Ok(Submitted::Duplicate { .. }) => {}
                Err(e) => {
                    warn!(doc_id = %p.doc.id, attachment = %a.file_name, code = e.code(), error = %e, "attachment skipped")
                }
            }
        }
        for r in self.run_nested(&jobs, progress, depth + 1).await {
            if let Err(e) = r {
                warn!(doc_id = %p.doc.id, code = e.code(), error = %e, "attachment failed");
            }
        }
    }

    /// Blobs are shared by identical bytes (in other collections, or a
    /// pending version): remove one only when no document refers to it.
    async fn remove_blob_if_unused(&self, hash: &str) -> Result<()> {
        if self.store.find_any_by_hash(hash).await?.is_none() {
            match std::fs::remove_file(self.blob_path(hash)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn remove_from_indexes(&self, doc_id: Uuid) -> Result<()> {
        let vindex = Arc::clone(&self.vectors);
        let kindex = Arc::clone(&self.keywords);
        tokio::task::spawn_blocking(move || {
            vindex.delete_docs(&[doc_id]).map_err(IngestError::Index)?;
            kindex.delete_docs(&[doc_id]).map_err(IngestError::Index)?;
            vindex.flush().map_err(IngestError::Index)
        })
        .await
        .map_err(|e| IngestError::Interrupted(e.to_string()))?
    }

    /// Gives every document a previous process left mid-ingest a job, if
    /// it has none, so that a worker claims it. Returns the jobs created.
    pub async fn ensure_jobs(&self) -> Result<usize> {
        let mut created = 0;
        for d in self.store.unfinished_documents().await? {
            if self.store.latest_job(d.id).await?.is_none() {
                self.store.insert_job(&Job::queued(d.id)).await?;
                created += 1;
            }
        }
        Ok(created)
    }
}

pub(crate) fn lock_set<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn title_from_name(name: &str) -> String {
    let base = Path::new(name).file_name().and_then(|s| s.to_str()).unwrap_or(name);
    base.to_owned()
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if path.exists() {
        return Ok(());
    }
    let tmp = path.with_extension(format!("tmp-{}", Uuid::new_v4()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
