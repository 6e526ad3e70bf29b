//! Liveness, readiness (each backend checked) and Prometheus metrics.

use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde_json::{json, Map, Value};
use std::future::Future;
use std::time::Duration;

/// A backend that does not answer within this is reported as failing.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn check<F>(fut: F) -> Result<Value, String>
where
    F: Future<Output = Result<Value, String>>,
{
    match tokio::time::timeout(CHECK_TIMEOUT, fut).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())),
    }
}

/// Runs a blocking index call off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, docent_core::BackendError> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// Ready when every backend answers: the SQL store, the vector index (a
/// round trip to a Qdrant server when configured), the keyword index, and
/// the change log is readable. 503 while shutting down, so a load balancer
/// stops routing here before the listener closes.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let vectors = state.ingestor.vector_index();
    let keywords = state.ingestor.keyword_index();
    let (sql, vec, kw, log) = tokio::join!(
        check(async {
            state
                .store
                .ping()
                .await
                .map(|()| json!("ok"))
                .map_err(|e| e.to_string())
        }),
        check(async { blocking(move || vectors.count()).await.map(|n| json!({"points": n})) }),
        check(async { blocking(move || keywords.count()).await.map(|n| json!({"docs": n})) }),
        check(async {
            let last = state.store.last_change_seq().await.map_err(|e| e.to_string())?;
            let applied = state.follower.applied();
            Ok(json!({"last": last, "applied": applied, "lag": (last - applied).max(0)}))
        }),
    );
    let mut checks = Map::new();
    let mut ok = true;
    for (name, r) in [
        ("sql", sql),
        ("vector_index", vec),
        ("keyword_index", kw),
        ("change_log", log),
    ] {
        match r {
            Ok(v) => checks.insert(name.to_owned(), v),
            Err(e) => {
                ok = false;
                checks.insert(name.to_owned(), json!({"error": e}))
            }
        };
    }
    checks.insert("chat_model".to_owned(), json!(state.chat.name()));
    let stopping = state.queue.is_stopping();
    let status = match (ok, stopping) {
        (_, true) => "shutting_down",
        (true, false) => "ready",
        (false, false) => "unavailable",
    };
    let body = json!({"status": status, "replica": state.ingestor.replica(), "checks": checks});
    if ok && !stopping {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "5"))
            .json(body)
    }
}

/// Prometheus text exposition.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let m = &state.metrics;
    match state.queue.depth().await {
        Ok(d) => m.ingest_queue_depth.set(i64::try_from(d).unwrap_or(i64::MAX)),
        Err(e) => tracing::warn!(error = %e, "queue depth unavailable"),
    }
    let applied = state.follower.applied();
    m.change_log_applied.set(applied);
    if let Ok(last) = state.store.last_change_seq().await {
        m.change_log_lag.set((last - applied).max(0));
    }
    HttpResponse::Ok()
        .insert_header(("Content-Type", "text/plain; version=0.0.4"))
        .body(m.render())
}
