//! The one place errors become HTTP. Every error body has the stable shape
//! `{"error": {"code": "...", "message": "..."}}`; 500 is reserved for bugs
//! and backend failures, never for bad input.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use docent_ingest::IngestError;
use docent_retrieve::RetrieveError;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{what} not found")]
    NotFound { what: &'static str },
    #[error("the upload exceeds the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// A state-changing request signed in by session cookie without the
    /// session's CSRF token (`X-CSRF-Token`).
    #[error("{0}")]
    CsrfFailed(String),
    #[error("too many requests: retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// Generation is at capacity: every slot and queue place taken, or no
    /// slot within the queue timeout (`admission.rs`). 503 with a
    /// Retry-After estimated from the queue.
    #[error("{message}")]
    Overloaded { message: String, retry_after_secs: u64 },
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Retrieve(#[from] RetrieveError),
    #[error(transparent)]
    Store(#[from] docent_store::StoreError),
    #[error(transparent)]
    Backend(#[from] docent_core::BackendError),
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: String,
}

impl ApiError {
    /// The error body, for errors sent inside a stream.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code(), "message": self.to_string()}})
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::NotFound { .. } => "not_found",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::CsrfFailed(_) => "csrf_failed",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Overloaded { .. } => "overloaded",
            ApiError::Ingest(e) => match e {
                IngestError::UnsupportedType(_) | IngestError::TypeMismatch(_) => "unsupported_media_type",
                other => other.code(),
            },
            ApiError::Retrieve(_) => "retrieval_failed",
            ApiError::Store(_) => "store_failed",
            ApiError::Backend(_) => "backend_failed",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) | ApiError::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::CsrfFailed(_) => StatusCode::FORBIDDEN,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Ingest(e) => match e {
                IngestError::UnsupportedType(_) | IngestError::TypeMismatch(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                IngestError::Empty
                | IngestError::NotUtf8
                | IngestError::Encrypted
                | IngestError::Malformed { .. }
                | IngestError::NeedsOcr
                | IngestError::ExtractorPanic(_)
                | IngestError::Timeout(_)
                | IngestError::BadMetadata(_) => StatusCode::BAD_REQUEST,
                IngestError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
                IngestError::QueueFull | IngestError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
                IngestError::Embed(_)
                | IngestError::Index(_)
                | IngestError::Store(_)
                | IngestError::Io(_)
                | IngestError::Interrupted(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::Retrieve(_) | ApiError::Store(_) | ApiError::Backend(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        // A refusal at capacity is traced (warn) where it is decided.
        if status.is_server_error() && !matches!(self, ApiError::Overloaded { .. }) {
            tracing::error!(error = %self, code = self.code(), "request failed");
        }
        let mut resp = HttpResponse::build(status);
        match self {
            ApiError::RateLimited { retry_after_secs } | ApiError::Overloaded { retry_after_secs, .. } => {
                resp.insert_header(("Retry-After", retry_after_secs.to_string()));
            }
            ApiError::Unauthorized(_) => {
                resp.insert_header(("WWW-Authenticate", "Bearer"));
            }
            _ if status == StatusCode::SERVICE_UNAVAILABLE => {
                resp.insert_header(("Retry-After", "5"));
            }
            _ => {}
        }
        resp.json(Body {
            error: Inner {
                code: self.code(),
                message: self.to_string(),
            },
        })
    }
}

/// JSON body errors from actix's extractors, in the same shape.
pub fn json_error(err: actix_web::error::JsonPayloadError, _req: &actix_web::HttpRequest) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as J;
    let api = match &err {
        J::OverflowKnownLength { limit, .. } | J::Overflow { limit } => ApiError::PayloadTooLarge { limit: *limit },
        J::ContentType => ApiError::UnsupportedMediaType("expected Content-Type: application/json".to_owned()),
        other => ApiError::BadRequest(format!("invalid JSON body: {other}")),
    };
    api.into()
}

pub fn path_error(err: actix_web::error::PathError, _req: &actix_web::HttpRequest) -> actix_web::Error {
    ApiError::BadRequest(format!("invalid path: {err}")).into()
}

pub fn query_error(err: actix_web::error::QueryPayloadError, _req: &actix_web::HttpRequest) -> actix_web::Error {
    ApiError::BadRequest(format!("invalid query string: {err}")).into()
}

pub type ApiResult<T> = Result<T, ApiError>;
