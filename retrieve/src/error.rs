//! Typed retrieval errors.

#[derive(Debug, thiserror::Error)]
pub enum RetrieveError {
    #[error("model file missing: {path} (run `{fetch}` to fetch the models)")]
    ModelMissing { path: String, fetch: &'static str },
    #[error("could not load ONNX Runtime from {path}: {message}")]
    OnnxRuntime { path: String, message: String },
    #[error("embedding model failed: {0}")]
    Embedding(String),
    #[error("tokenizer failed: {0}")]
    Tokenizer(String),
    #[error(transparent)]
    Backend(#[from] docent_core::BackendError),
    #[error(transparent)]
    Store(#[from] docent_store::StoreError),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("task failed: {0}")]
    Join(String),
}

pub type Result<T, E = RetrieveError> = std::result::Result<T, E>;

/// The command that fetches models, named in missing-file errors.
pub const FETCH_MODELS: &str = "scripts/fetch-models.sh";
