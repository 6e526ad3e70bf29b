//! Wire types of the HTTP API. Handlers convert core types into these; no
//! core type is serialized directly onto the wire.

use docent_core::{Document, Job, SearchHit};
use docent_generate::citations::{Citation, Sentence};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Serialize)]
pub struct DocumentDto {
    pub id: Uuid,
    pub title: String,
    pub source: String,
    pub collection: String,
    pub kind: &'static str,
    pub content_hash: String,
    pub size_bytes: u64,
    pub pages: Option<u32>,
    pub access: Vec<String>,
    pub status: &'static str,
    pub error: Option<String>,
    pub chunk_count: u32,
    /// The version this one replaces once it is ready.
    pub supersedes: Option<Uuid>,
    /// The carrier document (an e-mail) when this one is its attachment.
    pub parent_id: Option<Uuid>,
    pub tags: Vec<String>,
    /// The document's own date, as given at upload.
    pub date: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Document> for DocumentDto {
    fn from(d: Document) -> Self {
        Self {
            id: d.id,
            title: d.title,
            source: d.source,
            collection: d.collection,
            kind: d.kind.as_str(),
            content_hash: d.content_hash,
            size_bytes: d.size_bytes,
            pages: d.pages,
            access: d.access,
            status: d.status.as_str(),
            error: d.error,
            chunk_count: d.chunk_count,
            supersedes: d.supersedes,
            parent_id: d.parent_id,
            tags: d.tags,
            date: d.date,
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct UploadResponse {
    pub id: Uuid,
    pub job_id: Option<Uuid>,
    pub status: &'static str,
    /// True when identical bytes were already ingested; nothing new was stored.
    pub duplicate: bool,
}

#[derive(Debug, Serialize)]
pub struct JobDto {
    pub id: Uuid,
    pub document_id: Uuid,
    pub status: &'static str,
    pub progress: f32,
    pub error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// The replica running (or that ran) the job; null while it waits.
    pub worker: Option<String>,
}

impl From<Job> for JobDto {
    fn from(j: Job) -> Self {
        Self {
            id: j.id,
            document_id: j.doc_id,
            status: j.status.as_str(),
            progress: j.progress,
            error: j.error,
            created_at: j.created_at,
            updated_at: j.updated_at,
            worker: j.worker,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    pub query: String,
    #[serde(default)]
    pub k: Option<usize>,
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub collection: Option<String>,
    /// Only these documents.
    #[serde(default)]
    pub document_ids: Vec<Uuid>,
    /// Only documents carrying at least one of these tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Only documents dated on or after / on or before (RFC 3339 or
    /// YYYY-MM-DD; a plain day as `date_to` includes the whole day).
    #[serde(default)]
    pub date_from: Option<String>,
    #[serde(default)]
    pub date_to: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct HitDto {
    pub chunk_id: Uuid,
    pub document_id: Uuid,
    pub title: String,
    pub page: Option<u32>,
    pub heading_path: Vec<String>,
    pub text: String,
    pub score: f32,
    pub bm25_rank: Option<u32>,
    pub dense_rank: Option<u32>,
    pub dense_score: Option<f32>,
    /// The cross-encoder's logit, when the hit was reranked.
    pub rerank_score: Option<f32>,
}

impl From<SearchHit> for HitDto {
    fn from(h: SearchHit) -> Self {
        Self {
            chunk_id: h.chunk.id,
            document_id: h.document.id,
            title: h.document.title,
            page: h.chunk.page,
            heading_path: h.chunk.heading_path,
            text: h.chunk.text,
            score: h.score,
            bm25_rank: h.legs.bm25_rank,
            dense_rank: h.legs.dense_rank,
            dense_score: h.legs.dense_score,
            rerank_score: h.legs.rerank_score,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct SearchResponse {
    pub hits: Vec<HitDto>,
    pub timings_us: docent_retrieve::search::Timings,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatRequest {
    pub question: String,
    #[serde(default)]
    pub collection: Option<String>,
    /// Continue this conversation; a new one is started when absent.
    #[serde(default)]
    pub conversation_id: Option<Uuid>,
}

#[derive(Debug, Serialize)]
pub struct CitationDto {
    pub n: usize,
    pub chunk_id: Uuid,
    pub document_id: Uuid,
    pub title: String,
    pub page: Option<u32>,
    pub passage: String,
    /// Byte span of the supporting sentence inside `passage`.
    pub span: [usize; 2],
    pub support: f32,
}

impl From<Citation> for CitationDto {
    fn from(c: Citation) -> Self {
        Self {
            n: c.n,
            chunk_id: c.chunk_id,
            document_id: c.doc_id,
            title: c.title,
            page: c.page,
            passage: c.passage,
            span: [c.span.0, c.span.1],
            support: c.support,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct SentenceDto {
    pub text: String,
    pub citations: Vec<usize>,
    pub supported: bool,
    /// Citations the model gave that the check refused.
    pub dropped: Vec<usize>,
    /// Citations the check added.
    pub attached: Vec<usize>,
}

impl From<Sentence> for SentenceDto {
    fn from(s: Sentence) -> Self {
        Self {
            text: s.text,
            citations: s.citations,
            supported: s.supported,
            dropped: s.dropped,
            attached: s.attached,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct CitationsEvent {
    pub citations: Vec<CitationDto>,
    pub sentences: Vec<SentenceDto>,
    pub abstained: bool,
    /// Sources whose directive-like text was withheld from the prompt.
    pub withheld: Vec<usize>,
    /// What scored semantic support besides word overlap, if anything.
    pub support_model: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct DoneEvent {
    pub conversation_id: Uuid,
    pub model: String,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub time_to_first_token_ms: u64,
    pub total_ms: u64,
}
