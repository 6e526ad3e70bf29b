//! Cross-origin requests, strict by default: no origin is allowed unless
//! listed in `server.cors_allowed_origins` (exact `scheme://host[:port]`).
//! An allowed origin gets its preflight answered and `Access-Control-Allow-
//! Origin` echoed on responses; any other origin gets no CORS headers (the
//! browser then withholds the response) and its preflight is refused (403).
//! Runs outside authentication, since preflights carry no credentials.

use crate::error::ApiError;
use crate::state::AppState;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};

const ALLOW_METHODS: &str = "GET, POST, DELETE, OPTIONS";
const ALLOW_HEADERS: &str = "authorization, content-type";

pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let origin = req.headers().get(header::ORIGIN).cloned();
    let allowed = match (&origin, req.app_data::<web::Data<AppState>>()) {
        (Some(o), Some(state)) => o
            .to_str()
            .is_ok_and(|o| state.cfg.cors_allowed_origins.iter().any(|a| a == o)),
        _ => false,
    };
    let preflight =
        req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight && origin.is_some() {
        if !allowed {
            let e = ApiError::Forbidden("this origin may not call the API (server.cors_allowed_origins)".to_owned());
            return Ok(req.error_response(e).map_into_right_body());
        }
        let mut resp = HttpResponse::NoContent();
        if let Some(o) = &origin {
            resp.insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, o.clone()));
        }
        resp.insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, ALLOW_METHODS))
            .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOW_HEADERS))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
            .insert_header((header::VARY, "Origin"));
        return Ok(req.into_response(resp.finish()).map_into_right_body());
    }
    let mut res = next.call(req).await?;
    if let (true, Some(o)) = (allowed, origin) {
        let h = res.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    Ok(res.map_into_left_body())
}
