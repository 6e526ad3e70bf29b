//! Who is calling: every `/v1` request is authenticated by a middleware
//! before any handler runs, and handlers take the result as [`Caller`].
//!
//! - `Authorization: Bearer dk_...` is looked up (by hash) among live API
//!   keys; an unknown or revoked docent key is 401, whatever the settings.
//! - `Authorization: Bearer <JWT>`, when `access.oidc` is configured, is an
//!   ID token checked against the issuer's keys ([`crate::oidc`]); a token
//!   that fails any check is 401 with the reason, whatever the settings.
//! - The `docent_session` cookie (web-chat sign-in, `POST /auth/session`)
//!   names a server-side session; an expired or revoked one is 401 (and
//!   the cookie is cleared). A cookie is an ambient credential, so a
//!   state-changing request (anything but GET/HEAD/OPTIONS) signed in by
//!   it must carry the session's CSRF token in `X-CSRF-Token` (403
//!   `csrf_failed` otherwise). Bearer credentials need none.
//! - Without any of these: 401 when `access.require_auth` is on; otherwise
//!   the request runs as the local default principal (the embedded,
//!   one-user setup; OpenAI clients' placeholder keys are ignored).
//! - Each principal has a token bucket (`access.rate_limit_per_minute`,
//!   per replica): past it, 429 with Retry-After.
//!
//! Liveness, readiness, metrics, the static web-chat files and
//! `/auth/session` (which checks its own credentials) are public.

use crate::error::ApiError;
use crate::oidc;
use crate::state::AppState;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use docent_core::{AccessRole, Principal};
use std::collections::HashMap;
use std::time::Instant;

/// The web-chat session cookie.
pub const SESSION_COOKIE: &str = "docent_session";
/// The header a cookie-authenticated state change carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

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

/// Methods that change nothing; everything else needs the CSRF token when
/// signed in by cookie.
fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::Unauthorized(message.to_owned())
}

/// The 401 for an ID token that failed a check (the reason, nothing more).
pub fn token_refused(e: oidc::TokenError) -> ApiError {
    ApiError::Unauthorized(format!("ID token refused: {e}"))
}

/// The bearer token of a request: none without an Authorization header,
/// 401 for a header that is not `Bearer <token>`.
pub fn bearer(req: &HttpRequest) -> Result<Option<&str>, ApiError> {
    let Some(value) = req.headers().get(actix_web::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(Some)
        .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <API key or ID token>`"))
}

/// 256 random bits for a session token (base64url).
pub fn new_session_token() -> Result<String, ApiError> {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| ApiError::Unavailable(format!("no system randomness: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// The cookie that carries a new session: script-proof (HttpOnly), sent
/// over TLS only (browsers treat http://localhost as secure too), never on
/// cross-site requests.
pub fn session_cookie(token: &str, ttl_secs: u64) -> Cookie<'static> {
    let secs = i64::try_from(ttl_secs).unwrap_or(i64::MAX);
    Cookie::build(SESSION_COOKIE, token.to_owned())
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Strict)
        .path("/")
        .max_age(actix_web::cookie::time::Duration::seconds(secs))
        .finish()
}

/// The cookie that clears the session cookie.
pub fn clearing_cookie() -> Cookie<'static> {
    let mut c = session_cookie("", 0);
    c.make_removal();
    c
}

/// What the CSRF header of a cookie-authenticated request holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Csrf {
    Missing,
    Wrong,
    Valid,
}

/// A live session found by the request's cookie.
#[derive(Debug, Clone)]
pub struct CookieSession {
    pub id: uuid::Uuid,
    pub principal: Principal,
    pub expires_at: String,
    /// The session's CSRF token, for the signed-in page to send back.
    pub csrf_token: String,
    pub csrf: Csrf,
}

impl CookieSession {
    /// 403 `csrf_failed` unless the request carried this session's token.
    pub fn require_csrf(&self) -> Result<(), ApiError> {
        match self.csrf {
            Csrf::Valid => Ok(()),
            Csrf::Missing => Err(ApiError::CsrfFailed(
                "signed in by session cookie: a state-changing request must send the session's CSRF token in \
                 X-CSRF-Token"
                    .to_owned(),
            )),
            Csrf::Wrong => Err(ApiError::CsrfFailed(
                "the X-CSRF-Token header does not match this session".to_owned(),
            )),
        }
    }
}

/// The session the request's cookie names. `None` without the cookie; 401
/// when the session has expired, was revoked or never existed.
pub async fn cookie_session(state: &AppState, req: &HttpRequest) -> Result<Option<CookieSession>, ApiError> {
    let Some(cookie) = req.cookie(SESSION_COOKIE).filter(|c| !c.value().is_empty()) else {
        return Ok(None);
    };
    let session = state
        .store
        .find_session(cookie.value())
        .await?
        .ok_or_else(|| unauthorized("the session has expired or was signed out; sign in again"))?;
    let csrf = match req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()) {
        None => Csrf::Missing,
        Some(t) if session.csrf_matches(t.trim()) => Csrf::Valid,
        Some(_) => Csrf::Wrong,
    };
    Ok(Some(CookieSession {
        id: session.id,
        principal: session.principal(),
        expires_at: session.expires_at,
        csrf_token: session.csrf_token,
        csrf,
    }))
}

/// A refused request; a stale session cookie is cleared with the 401.
struct Refused {
    error: ApiError,
    clear_session: bool,
}

impl From<ApiError> for Refused {
    fn from(error: ApiError) -> Self {
        Self {
            error,
            clear_session: false,
        }
    }
}

/// Resolves the caller: a bearer API key or ID token, else the session
/// cookie, else (sign-in not required) the local default principal.
async fn authenticate(state: &AppState, req: &HttpRequest) -> Result<Principal, Refused> {
    if let Some(token) = bearer(req)? {
        if token.starts_with(KEY_PREFIX) {
            return match state.store.find_api_key(token).await.map_err(ApiError::from)? {
                Some(k) => Ok(k.principal()),
                None => Err(unauthorized("unknown or revoked API key").into()),
            };
        }
        if oidc::looks_like_jwt(token) {
            if let Some(verifier) = &state.oidc {
                return verifier.verify(token).await.map_err(|e| token_refused(e).into());
            }
            if state.cfg.require_auth {
                return Err(unauthorized(
                    "an ID token (JWT) was sent, but sign-in with OIDC is not configured (access.oidc)",
                )
                .into());
            }
        } else if state.cfg.require_auth {
            return Err(unauthorized("unknown or revoked API key").into());
        }
        // Sign-in not required: OpenAI clients always send some key
        // ("unused", "sk-..."); it is ignored.
    }
    match cookie_session(state, req).await {
        Ok(Some(session)) => {
            if !is_safe(req.method()) {
                session.require_csrf()?;
            }
            return Ok(session.principal);
        }
        Ok(None) => {}
        Err(error) => {
            let clear_session = matches!(error, ApiError::Unauthorized(_));
            return Err(Refused { error, clear_session });
        }
    }
    if state.cfg.require_auth {
        Err(
            unauthorized("sign in: send `Authorization: Bearer <API key or ID token>`, or sign in to the web chat")
                .into(),
        )
    } else {
        Ok(Principal::default_user())
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
    let principal = match authenticate(&state, req.request()).await {
        Ok(p) => p,
        Err(Refused { error, clear_session }) => {
            tracing::info!(path = req.path(), code = error.code(), reason = %error, "request refused");
            let mut res = req.error_response(error);
            if clear_session {
                let _ = res.response_mut().add_cookie(&clearing_cookie());
            }
            return Ok(res.map_into_right_body());
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
