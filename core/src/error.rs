//! The error shared by backend traits. Each crate keeps its own typed error;
//! this one carries a backend's failure across a trait boundary with the
//! backend's name attached.

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The backend failed; `backend` names it (e.g. "tantivy", "qdrant-edge").
    #[error("{backend}: {source}")]
    Backend {
        backend: &'static str,
        #[source]
        source: BoxError,
    },
    /// The request to the backend was invalid (wrong vector size, bad query).
    #[error("{backend}: invalid request: {message}")]
    Invalid { backend: &'static str, message: String },
}

impl BackendError {
    pub fn backend(backend: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Backend {
            backend,
            source: source.into(),
        }
    }

    pub fn invalid(backend: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            backend,
            message: message.into(),
        }
    }
}

pub type BackendResult<T> = Result<T, BackendError>;
