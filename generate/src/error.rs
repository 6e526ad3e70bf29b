//! Typed generation errors.

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("model file missing: {path} (run `scripts/fetch-models.sh` to fetch the models)")]
    ModelMissing { path: String },
    #[error("could not load the model {path}: {message}")]
    Load { path: String, message: String },
    #[error("generation failed: {0}")]
    Generation(String),
}

pub type Result<T, E = GenerateError> = std::result::Result<T, E>;
