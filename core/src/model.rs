//! Domain types shared by every stage. These are not wire types: only
//! docent-web knows the HTTP/JSON shapes and converts at the boundary.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Lifecycle of a document version. Only `Ready` documents are ever returned
/// by retrieval: the SQL status flip to `Ready` is the commit point that makes
/// a version visible, after both derived indexes hold its chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocStatus {
    Queued,
    Extracting,
    Embedding,
    Indexing,
    Ready,
    Failed,
}

impl DocStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DocStatus::Queued => "queued",
            DocStatus::Extracting => "extracting",
            DocStatus::Embedding => "embedding",
            DocStatus::Indexing => "indexing",
            DocStatus::Ready => "ready",
            DocStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => DocStatus::Queued,
            "extracting" => DocStatus::Extracting,
            "embedding" => DocStatus::Embedding,
            "indexing" => DocStatus::Indexing,
            "ready" => DocStatus::Ready,
            "failed" => DocStatus::Failed,
            _ => return None,
        })
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, DocStatus::Ready | DocStatus::Failed)
    }
}

/// The kinds of source docent can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    Pdf,
    Markdown,
    Text,
    Docx,
    Html,
    Csv,
    /// An e-mail message (RFC 5322 / MIME); attachments become child documents.
    Eml,
    /// A raster image (PNG, JPEG, TIFF), read by OCR.
    Image,
}

impl SourceKind {
    pub const ALL: [SourceKind; 8] = [
        SourceKind::Pdf,
        SourceKind::Markdown,
        SourceKind::Text,
        SourceKind::Docx,
        SourceKind::Html,
        SourceKind::Csv,
        SourceKind::Eml,
        SourceKind::Image,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Pdf => "pdf",
            SourceKind::Markdown => "markdown",
            SourceKind::Text => "text",
            SourceKind::Docx => "docx",
            SourceKind::Html => "html",
            SourceKind::Csv => "csv",
            SourceKind::Eml => "eml",
            SourceKind::Image => "image",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn mime(self) -> &'static str {
        match self {
            SourceKind::Pdf => "application/pdf",
            SourceKind::Markdown => "text/markdown",
            SourceKind::Text => "text/plain",
            SourceKind::Docx => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            SourceKind::Html => "text/html",
            SourceKind::Csv => "text/csv",
            SourceKind::Eml => "message/rfc822",
            SourceKind::Image => "image/*",
        }
    }

    /// Whether the format has pages (so that a citation names a page).
    pub fn is_paged(self) -> bool {
        matches!(self, SourceKind::Pdf | SourceKind::Image)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub id: Uuid,
    pub collection: String,
    pub title: String,
    /// Where it came from: a file path or the uploaded file name.
    pub source: String,
    pub kind: SourceKind,
    /// sha256 of the raw bytes, hex.
    pub content_hash: String,
    pub size_bytes: u64,
    pub pages: Option<u32>,
    pub access: Vec<String>,
    pub status: DocStatus,
    pub error: Option<String>,
    pub chunk_count: u32,
    /// The earlier version this one replaces when it becomes ready.
    pub supersedes: Option<Uuid>,
    /// The document that carries this one (an e-mail for its attachment).
    #[serde(default)]
    pub parent_id: Option<Uuid>,
    /// Free-form tags given at upload, filterable at search time.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The document's own date (RFC 3339), given at upload; searches filter
    /// by it, falling back to `created_at` when absent.
    #[serde(default)]
    pub date: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    pub updated_at: String,
}

impl Document {
    /// The date searches filter by, in unix seconds: the document's own date
    /// when given, else its upload time (0 if neither parses).
    pub fn effective_date(&self) -> i64 {
        self.date
            .as_deref()
            .and_then(parse_date)
            .or_else(|| parse_date(&self.created_at))
            .unwrap_or(0)
    }
}

/// Parses an RFC 3339 timestamp or a plain `YYYY-MM-DD` date (midnight UTC)
/// into unix seconds.
pub fn parse_date(s: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    let s = s.trim();
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t.unix_timestamp());
    }
    let mut parts = s.splitn(3, '-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let month = time::Month::try_from(m.parse::<u8>().ok()?).ok()?;
    let date = time::Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?).ok()?;
    Some(date.midnight().assume_utc().unix_timestamp())
}

/// A passage of a document, the unit that is embedded, indexed and cited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    pub id: Uuid,
    pub doc_id: Uuid,
    pub ordinal: u32,
    pub text: String,
    /// 1-based page, for paged formats.
    pub page: Option<u32>,
    /// Headings from the outermost to the innermost section.
    pub heading_path: Vec<String>,
    /// Character offsets (in chars, not bytes) into the document's extracted text.
    pub char_start: u32,
    pub char_end: u32,
    pub token_count: u32,
}

/// What the derived indexes store for a chunk: enough to filter and to map a
/// hit back to SQL. Text is only needed by the keyword index.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexedChunk {
    pub chunk_id: Uuid,
    pub doc_id: Uuid,
    pub collection: String,
    pub access: Vec<String>,
    /// The document's tags and effective date (unix seconds), for filters.
    pub tags: Vec<String>,
    pub date: i64,
    pub title: String,
    pub heading: String,
    pub text: String,
}

/// A scored hit from one index leg.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LegHit {
    pub chunk_id: Uuid,
    pub score: f32,
}

/// Which retrieval legs found a fused hit, with its rank (1-based) in each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Legs {
    pub bm25_rank: Option<u32>,
    pub dense_rank: Option<u32>,
    /// Cosine similarity of the query to the chunk, when the dense leg found
    /// it: the evidence measure abstention is calibrated on.
    pub dense_score: Option<f32>,
    /// The cross-encoder's logit, when the hit was reranked.
    #[serde(default)]
    pub rerank_score: Option<f32>,
}

/// A fused, hydrated search result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchHit {
    pub chunk: Chunk,
    pub document: Document,
    pub score: f32,
    pub legs: Legs,
}

/// An ingest job: one file, one state machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: Uuid,
    pub doc_id: Uuid,
    pub status: DocStatus,
    /// 0.0 ..= 1.0 within the whole job.
    pub progress: f32,
    pub error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// The replica that claimed the job (None while it waits).
    pub worker: Option<String>,
}

impl Job {
    /// A new job for `doc_id`, waiting to be claimed.
    pub fn queued(doc_id: Uuid) -> Self {
        let now = crate::now_rfc3339();
        Self {
            id: Uuid::now_v7(),
            doc_id,
            status: DocStatus::Queued,
            progress: 0.0,
            error: None,
            created_at: now.clone(),
            updated_at: now,
            worker: None,
        }
    }
}

/// A chat message handed to a chat model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

/// Sampling settings for one generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenParams {
    pub max_tokens: u32,
    pub temperature: f32,
}

/// Token counts and timings of a finished generation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GenUsage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub time_to_first_token_ms: u64,
    pub total_ms: u64,
    /// The sink asked to stop (the client went away) before the model
    /// finished; `completion_tokens` counts what was produced until then.
    #[serde(default)]
    pub cancelled: bool,
}

/// A date filter bound in unix seconds. A plain `YYYY-MM-DD` as an upper
/// bound covers that whole day.
pub fn parse_date_bound(s: &str, upper: bool) -> Option<i64> {
    let t = parse_date(s)?;
    Some(if upper && s.trim().len() == 10 { t + 86_399 } else { t })
}

/// A comma-separated value (form field, CLI flag) as a list, blank items
/// dropped.
pub fn split_list(v: Option<&str>) -> Vec<String> {
    v.unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod date_tests {
    use super::parse_date;

    #[test]
    fn dates_parse_as_rfc3339_or_plain_days() {
        assert_eq!(parse_date("1970-01-02"), Some(86_400));
        assert_eq!(parse_date("1970-01-01T01:00:00Z"), Some(3_600));
        assert_eq!(parse_date("2024-02-30"), None);
        assert_eq!(parse_date("yesterday"), None);
        assert_eq!(parse_date("2024-1-5"), None);
        assert_eq!(super::parse_date_bound("1970-01-02", true), Some(86_400 + 86_399));
        assert_eq!(super::parse_date_bound("1970-01-02", false), Some(86_400));
        assert_eq!(super::split_list(Some(" a, ,b ")), vec!["a".to_owned(), "b".to_owned()]);
    }
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A conversation of one user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: Uuid,
    pub user: String,
    pub title: String,
    pub created_at: String,
    pub updated_at: String,
}

/// One message of a conversation. `citations` is the checked citation list
/// (JSON, as shown to the user) for assistant messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub role: Role,
    pub content: String,
    pub citations: serde_json::Value,
    /// Documents an answer was drawn from (every source retrieved for it,
    /// cited or not); empty for questions.
    #[serde(default)]
    pub sources: Vec<Uuid>,
    pub created_at: String,
}
