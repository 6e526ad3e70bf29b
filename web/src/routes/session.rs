//! Web-chat sign-in. `POST /auth/session` trades an ID token (checked
//! like a bearer JWT, see [`crate::oidc`]) for a server-side session: a
//! `docent_session` cookie (HttpOnly, Secure, SameSite=Strict) and the
//! session's CSRF token in the body, which the page keeps in memory and
//! sends as `X-CSRF-Token` on every state-changing request. `GET` says who
//! is signed in (and repeats the CSRF token, e.g. after a page reload; 204
//! without a cookie); `DELETE` (CSRF token required) signs out.
//!
//! A session lasts `access.session_ttl_secs` from sign-in, independent of
//! the ID token's own (often minutes-long) lifetime; the user, groups and
//! role are those of the token at sign-in.

use crate::auth::{self, CookieSession};
use crate::error::{ApiError, ApiResult};
use crate::oidc::looks_like_jwt;
use crate::state::AppState;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
struct SignIn {
    id_token: String,
}

/// Who is signed in, and the CSRF token of the session.
#[derive(Debug, Serialize)]
struct SessionBody<'a> {
    user: &'a str,
    groups: &'a [String],
    role: &'static str,
    csrf_token: &'a str,
    expires_at: &'a str,
}

/// The ID token: the bearer token, else `{"id_token": ...}` as JSON (a
/// JSON body, like a bearer header, cannot be sent cross-site without a
/// preflight, which CORS refuses for unlisted origins).
fn id_token(req: &HttpRequest, body: &[u8]) -> ApiResult<String> {
    if let Some(token) = auth::bearer(req)? {
        return Ok(token.to_owned());
    }
    if body.is_empty() {
        return Err(ApiError::Unauthorized(
            "sign in with an ID token: `Authorization: Bearer <token>` or {\"id_token\": \"...\"}".to_owned(),
        ));
    }
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|m| m.trim() == "application/json"));
    if !json {
        return Err(ApiError::UnsupportedMediaType(
            "expected Content-Type: application/json".to_owned(),
        ));
    }
    let sign_in: SignIn =
        serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?;
    Ok(sign_in.id_token)
}

/// `POST /auth/session`: sign in with an ID token.
pub async fn create(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> ApiResult<HttpResponse> {
    let Some(verifier) = &state.oidc else {
        return Err(ApiError::NotFound {
            what: "sign-in with an ID token (access.oidc is not configured)",
        });
    };
    let token = id_token(&req, &body)?;
    if !looks_like_jwt(&token) {
        return Err(ApiError::Unauthorized("the ID token is not a JWT".to_owned()));
    }
    let principal = verifier.verify(&token).await.map_err(|e| {
        tracing::info!(reason = %e, "sign-in refused");
        auth::token_refused(e)
    })?;
    state.limiter.check(&principal.user)?;
    let secret = auth::new_session_token()?;
    let ttl = state.cfg.session_ttl_secs;
    let session = state.store.create_session(&principal, &secret, ttl).await?;
    state
        .audit(
            &principal,
            "session.create",
            serde_json::json!({
                "session_id": session.id,
                "issuer": verifier.issuer(),
                "groups": principal.groups,
                "role": principal.role.as_str(),
                "expires_at": session.expires_at,
            }),
        )
        .await?;
    tracing::info!(user = %principal.user, role = principal.role.as_str(), session = %session.id, "signed in");
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .cookie(auth::session_cookie(&secret, ttl))
        .json(SessionBody {
            user: &principal.user,
            groups: &principal.groups,
            role: principal.role.as_str(),
            csrf_token: &session.csrf_token,
            expires_at: &session.expires_at,
        }))
}

/// The session of the request's cookie (`None`: no cookie); a stale one
/// is answered with a 401 that clears the cookie.
async fn current(state: &AppState, req: &HttpRequest) -> Result<Option<CookieSession>, HttpResponse> {
    match auth::cookie_session(state, req).await {
        Ok(s) => Ok(s),
        Err(e) => {
            let mut res = e.error_response();
            if matches!(e, ApiError::Unauthorized(_)) {
                let _ = res.add_cookie(&auth::clearing_cookie());
            }
            Err(res)
        }
    }
}

/// `GET /auth/session`: who is signed in (no CSRF token needed); 204
/// without a session cookie (so a page can ask without an error).
pub async fn get(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let s = match current(&state, &req).await {
        Ok(Some(s)) => s,
        Ok(None) => return HttpResponse::NoContent().finish(),
        Err(res) => return res,
    };
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(SessionBody {
            user: &s.principal.user,
            groups: &s.principal.groups,
            role: s.principal.role.as_str(),
            csrf_token: &s.csrf_token,
            expires_at: &s.expires_at,
        })
}

/// `DELETE /auth/session`: sign out (needs the CSRF token).
pub async fn delete(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let s = match current(&state, &req).await {
        Ok(Some(s)) => s,
        Ok(None) => return ApiError::Unauthorized("not signed in".to_owned()).error_response(),
        Err(res) => return res,
    };
    let done = async {
        s.require_csrf()?;
        state.store.revoke_session(s.id).await?;
        state
            .audit(&s.principal, "session.delete", serde_json::json!({"session_id": s.id}))
            .await
    };
    match done.await {
        Ok(()) => {
            tracing::info!(user = %s.principal.user, session = %s.id, "signed out");
            HttpResponse::NoContent().cookie(auth::clearing_cookie()).finish()
        }
        Err(e) => e.error_response(),
    }
}
