//! Who is calling: every `/v1` request is authenticated by a middleware
//! before any handler runs, and handlers take the result as [`Caller`].
//!
//! - `Authorization: Bearer dk_...` is looked up (by hash) among live API
//!   keys; an unknown or revoked docent key is 401, whatever the settings.
//! - Without a docent key: 401 when `access.require_auth` is on; otherwise
//!   the request runs as the local default principal (the embedded,
//!   one-user setup; OpenAI clients' placeholder keys are ignored).
//! - Each principal has a token bucket (`access.rate_limit_per_minute`,
//!   per replica): past it, 429 with Retry-After.
//!
//! Liveness, readiness, metrics and the static web-chat files are public.

use crate::error::ApiError;
use crate::state::AppState;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use docent_core::{AccessRole, Principal};
use std::collections::HashMap;
use std::time::Instant;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl Caller {
    /// Refuses (403) a caller without `role`.
    pub fn require(&self, role: AccessRole) -> Result<(), ApiError> {
        if self.0.has(role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this needs the {} role; {} has {}",
                role.as_str(),
                self.0.user,
                self.0.role.as_str()
            )))
        }
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(
            req.extensions()
                .get::<Principal>()
                .cloned()
                .map(Caller)
                .ok_or_else(|| ApiError::Unauthorized("not authenticated".to_owned())),
        )
    }
}

/// Every docent API key starts with this.
const KEY_PREFIX: &str = "dk_";

fn is_public(path: &str) -> bool {
    !path.starts_with("/v1/")
}

/// Resolves the caller from the request headers.
async fn authenticate(state: &AppState, req: &ServiceRequest) -> Result<Principal, ApiError> {
    let Some(value) = req.headers().get(actix_web::http::header::AUTHORIZATION) else {
        return if state.cfg.require_auth {
            Err(ApiError::Unauthorized(
                "sign in: send `Authorization: Bearer <API key>`".to_owned(),
            ))
        } else {
            Ok(Principal::default_user())
        };
    };
    let key = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ApiError::Unauthorized("the Authorization header must be `Bearer <API key>`".to_owned()))?;
    // OpenAI clients always send some key ("unused", "sk-..."). Without
    // required sign-in, a token that is not a docent key is ignored; a
    // docent key must be valid.
    if !state.cfg.require_auth && !key.starts_with(KEY_PREFIX) {
        return Ok(Principal::default_user());
    }
    match state.store.find_api_key(key).await? {
        Some(k) => Ok(k.principal()),
        None => Err(ApiError::Unauthorized("unknown or revoked API key".to_owned())),
    }
}

/// The middleware: authenticate, rate-limit, then run the handler.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if is_public(req.path()) {
        return next.call(req).await.map(ServiceResponse::map_into_left_body);
    }
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        let e = ApiError::Unavailable("application state missing".to_owned());
        return Ok(req.error_response(e).map_into_right_body());
    };
    let principal = match authenticate(&state, &req).await {
        Ok(p) => p,
        Err(e) => {
            tracing::info!(path = req.path(), code = e.code(), "request refused");
            return Ok(req.error_response(e).map_into_right_body());
        }
    };
    if let Err(e) = state.limiter.check(&principal.user) {
        tracing::info!(user = %principal.user, path = req.path(), "rate limited");
        return Ok(req.error_response(e).map_into_right_body());
    }
    req.extensions_mut().insert(principal);
    next.call(req).await.map(ServiceResponse::map_into_left_body)
}

/// A token bucket per principal: `per_minute` requests, refilled evenly.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    buckets: std::sync::Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// `per_minute` = 0 turns limiting off.
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            buckets: std::sync::Mutex::new(HashMap::new()),
        }
    }

    pub fn check(&self, who: &str) -> Result<(), ApiError> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(self.per_minute);
        let per_sec = capacity / 60.0;
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (tokens, last) = buckets.entry(who.to_owned()).or_insert((capacity, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * per_sec).min(capacity);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - *tokens) / per_sec).ceil().max(1.0);
            Err(ApiError::RateLimited {
                retry_after_secs: wait as u64,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_its_capacity_then_refuses_with_a_wait() {
        let l = RateLimiter::new(3);
        for _ in 0..3 {
            assert!(l.check("a").is_ok());
        }
        match l.check("a") {
            Err(ApiError::RateLimited { retry_after_secs }) => assert!((1..=20).contains(&retry_after_secs)),
            other => panic!("expected a 429, got {other:?}"),
        }
        // Buckets are per principal.
        assert!(l.check("b").is_ok());
        assert!(RateLimiter::new(0).check("a").is_ok());
    }
}
