//! docent-web: the HTTP API and the embedded web chat (actix-web).
//!
//! Only this crate knows HTTP and JSON wire types ([`dto`]); handlers convert
//! to and from core types. Errors map to HTTP in one place ([`error`]).
//! Model compute never runs on the actix workers: embeddings and index
//! queries go through `spawn_blocking`, generation runs on mistral.rs's
//! engine thread and reaches the client through a channel. Every chat entry
//! point passes one [`admission::Admission`] gate first: a bounded number of
//! answers generate, a bounded number wait, the rest get 503 `overloaded`.

pub mod admission;
pub mod auth;
pub mod cors;
pub mod dto;
pub mod error;
pub mod masking;
pub mod metrics;
pub mod oidc;
pub mod routes;
pub mod state;

pub use state::{AppState, ModelProvenance, WebConfig};

use actix_web::{web, App, HttpServer};
use std::net::TcpListener;

/// Registers every route on an actix app.
pub fn configure(cfg: &mut web::ServiceConfig, state: web::Data<AppState>) {
    let max_json = state.cfg.max_json_bytes;
    cfg.app_data(state)
        .app_data(
            web::JsonConfig::default()
                .limit(max_json)
                .error_handler(error::json_error),
        )
        .app_data(web::PathConfig::default().error_handler(error::path_error))
        .app_data(web::QueryConfig::default().error_handler(error::query_error))
        .route("/healthz", web::get().to(routes::health::healthz))
        .route("/readyz", web::get().to(routes::health::readyz))
        .route("/metrics", web::get().to(routes::health::metrics))
        .route("/auth/session", web::post().to(routes::session::create))
        .route("/auth/session", web::get().to(routes::session::get))
        .route("/auth/session", web::delete().to(routes::session::delete))
        .route("/v1/documents", web::post().to(routes::documents::upload))
        .route("/v1/documents", web::get().to(routes::documents::list))
        .route("/v1/documents/{id}", web::get().to(routes::documents::get))
        .route("/v1/documents/{id}", web::delete().to(routes::documents::delete))
        .route("/v1/documents/{id}", web::patch().to(routes::documents::update))
        .route("/v1/collections", web::get().to(routes::collections::list))
        .route("/v1/collections/{name}", web::get().to(routes::collections::get))
        .route("/v1/collections/{name}", web::put().to(routes::collections::put))
        .route("/v1/jobs/{id}", web::get().to(routes::documents::job))
        .route("/v1/jobs/{id}/events", web::get().to(routes::documents::job_events))
        .route("/v1/search", web::post().to(routes::search::search))
        .route("/v1/chat", web::post().to(routes::chat::chat))
        .route("/v1/conversations", web::get().to(routes::conversations::list))
        .route("/v1/conversations/{id}", web::get().to(routes::conversations::get))
        .route("/v1/chat/completions", web::post().to(routes::openai::chat_completions))
        .route("/v1/models", web::get().to(routes::openai::models))
        .route("/v1/embeddings", web::post().to(routes::openai::embeddings))
        .route("/", web::get().to(routes::assets::index))
        .route("/app.js", web::get().to(routes::assets::app_js))
        .route("/app.css", web::get().to(routes::assets::app_css))
        .route("/favicon.ico", web::get().to(routes::assets::favicon))
        .default_service(web::to(routes::assets::not_found));
}

/// Builds the server on an already bound listener (port 0 in tests). The
/// caller awaits it and owns shutdown: actix's own signal handling is off,
/// so that SIGTERM can first fail readiness, then stop the listener
/// (in-flight requests get `shutdown_timeout_secs`), then drain ingest.
pub fn server(
    listener: TcpListener,
    state: AppState,
    workers: usize,
    shutdown_timeout_secs: u64,
) -> std::io::Result<actix_web::dev::Server> {
    let state = web::Data::new(state);
    HttpServer::new(move || {
        let st = state.clone();
        App::new()
            .wrap_fn(move |req, srv| {
                use actix_web::dev::Service;
                let route = req.match_pattern().unwrap_or_else(|| "unmatched".to_owned());
                let method = req.method().to_string();
                let started = std::time::Instant::now();
                let st = st.clone();
                let fut = srv.call(req);
                async move {
                    let res = fut.await?;
                    st.metrics
                        .http_seconds
                        .with_label_values(&[route.as_str(), method.as_str(), res.status().as_str()])
                        .observe(started.elapsed().as_secs_f64());
                    Ok(res)
                }
            })
            .wrap(actix_web::middleware::from_fn(auth::middleware))
            .wrap(actix_web::middleware::from_fn(cors::middleware))
            .wrap(tracing_actix())
            .configure(|c| configure(c, state.clone()))
    })
    .workers(workers.max(1))
    // A client that hangs up ends its request at once: a chat waiting for a
    // generation slot gives its queue place back instead of holding it
    // until it would have run.
    .h1_allow_half_closed(false)
    // Idle keep-alive connections are closed after 75 s, not actix's 5 s: a
    // client (or a load balancer, commonly 60 s idle) that reuses a pooled
    // connection at the moment the server closes it gets an incomplete
    // message on a request that is not retried (seen on a PATCH in
    // tests/permissions.rs on a loaded machine). The server's idle timeout
    // must outlast its clients'.
    .keep_alive(std::time::Duration::from_secs(75))
    .disable_signals()
    .shutdown_timeout(shutdown_timeout_secs)
    .listen(listener)
    .map(|s| s.run())
}

fn tracing_actix() -> actix_web::middleware::Logger {
    actix_web::middleware::Logger::new("%r %s %Dms").log_target("docent::http")
}
