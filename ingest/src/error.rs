//! Typed ingestion errors. `code()` gives the stable machine-readable class
//! that the API and the CLI report.

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("unsupported file type: {0}")]
    UnsupportedType(String),
    #[error("file content does not match its name: {0}")]
    TypeMismatch(String),
    #[error("the file is empty")]
    Empty,
    #[error("the PDF is encrypted with a password")]
    Encrypted,
    #[error("malformed {kind}: {message}")]
    Malformed { kind: &'static str, message: String },
    #[error("no text could be extracted (scanned pages need OCR)")]
    NeedsOcr,
    #[error("the file is not valid UTF-8 text")]
    NotUtf8,
    #[error("extraction failed unexpectedly: {0}")]
    ExtractorPanic(String),
    #[error("embedding failed: {0}")]
    Embed(#[source] docent_core::BackendError),
    #[error("index write failed: {0}")]
    Index(#[source] docent_core::BackendError),
    #[error(transparent)]
    Store(#[from] docent_store::StoreError),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("extraction took longer than {0} s")]
    Timeout(u64),
    #[error("the document is too large: {0}")]
    TooLarge(String),
    #[error("the ingest queue is full; retry later")]
    QueueFull,
    #[error("this replica is shutting down; retry (another replica will take it)")]
    ShuttingDown,
    #[error("ingestion was interrupted: {0}")]
    Interrupted(String),
    #[error("bad document metadata: {0}")]
    BadMetadata(String),
}

impl IngestError {
    /// Stable error class.
    pub fn code(&self) -> &'static str {
        match self {
            IngestError::UnsupportedType(_) => "unsupported_type",
            IngestError::TypeMismatch(_) => "type_mismatch",
            IngestError::Empty => "empty",
            IngestError::Encrypted => "encrypted",
            IngestError::Malformed { .. } => "malformed",
            IngestError::NeedsOcr => "needs_ocr",
            IngestError::NotUtf8 => "not_utf8",
            IngestError::ExtractorPanic(_) => "malformed",
            IngestError::Embed(_) => "embedding_failed",
            IngestError::Index(_) => "index_failed",
            IngestError::Store(_) => "store_failed",
            IngestError::Io(_) => "io_error",
            IngestError::Timeout(_) => "timeout",
            IngestError::TooLarge(_) => "too_large",
            IngestError::QueueFull => "queue_full",
            IngestError::ShuttingDown => "shutting_down",
            IngestError::Interrupted(_) => "interrupted",
            IngestError::BadMetadata(_) => "bad_metadata",
        }
    }

    /// Whether the error is the input's fault (as opposed to ours).
    pub fn is_input_error(&self) -> bool {
        matches!(
            self,
            IngestError::UnsupportedType(_)
                | IngestError::TypeMismatch(_)
                | IngestError::Empty
                | IngestError::Encrypted
                | IngestError::Malformed { .. }
                | IngestError::NeedsOcr
                | IngestError::NotUtf8
                | IngestError::ExtractorPanic(_)
                | IngestError::Timeout(_)
                | IngestError::TooLarge(_)
                | IngestError::BadMetadata(_)
        )
    }
}

pub type Result<T, E = IngestError> = std::result::Result<T, E>;
