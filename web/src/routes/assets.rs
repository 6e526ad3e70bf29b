//! The web chat: static assets compiled into the binary (no CDN, works
//! air-gapped).

use crate::error::ApiError;
use actix_web::{http::header, HttpResponse};

const INDEX_HTML: &str = include_str!("../../assets/index.html");
const APP_JS: &str = include_str!("../../assets/app.js");
const APP_CSS: &str = include_str!("../../assets/app.css");

fn asset(body: &'static str, mime: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, mime))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'",
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(body)
}

pub async fn index() -> HttpResponse {
    asset(INDEX_HTML, "text/html; charset=utf-8")
}

pub async fn app_js() -> HttpResponse {
    asset(APP_JS, "text/javascript; charset=utf-8")
}

pub async fn app_css() -> HttpResponse {
    asset(APP_CSS, "text/css; charset=utf-8")
}

/// No icon: answer 204 so browsers stop asking.
pub async fn favicon() -> HttpResponse {
    HttpResponse::NoContent().finish()
}

pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound { what: "route" })
}
