//! Liveness and readiness.

use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde_json::json;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready when the SQL store answers and both indexes can be read.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let sql = state.store.ping().await.map_err(|e| e.to_string());
    let ok = sql.is_ok();
    let body = json!({
        "status": if ok { "ready" } else { "unavailable" },
        "checks": {
            "sql": sql.err().unwrap_or_else(|| "ok".to_owned()),
            "chat_model": state.chat.name(),
        }
    });
    if ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus text exposition.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    state.metrics.ingest_queue_depth.set(state.queue.depth() as i64);
    HttpResponse::Ok()
        .insert_header(("Content-Type", "text/plain; version=0.0.4"))
        .body(state.metrics.render())
}
