//! Web-chat sessions. The session token (the cookie) and its CSRF token
//! are never stored: a row keeps a sha256 of each. The CSRF token is
//! derived from the session token (a domain-separated sha256), so whoever
//! holds the cookie can be told its CSRF token again (after a page reload)
//! without keeping it; knowing the CSRF token reveals nothing about the
//! cookie. A session is live until it expires or is revoked.

use super::key_hash;
use crate::{parse_list, parse_uuid, to_list, Result, Store};
use docent_core::{now_rfc3339, AccessRole, Principal};
use sha2::{Digest, Sha256};
use sqlx::Row;
use subtle::ConstantTimeEq;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

/// A live session, as found by its token.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Session {
    pub id: Uuid,
    pub user: String,
    pub groups: Vec<String>,
    pub role: AccessRole,
    pub created_at: String,
    /// RFC 3339, whole seconds, UTC.
    pub expires_at: String,
    /// The CSRF token of this session (recomputed from the presented
    /// session token, not read from the store).
    #[serde(skip)]
    pub csrf_token: String,
    #[serde(skip)]
    csrf_hash: String,
}

impl Session {
    pub fn principal(&self) -> Principal {
        Principal {
            user: self.user.clone(),
            groups: self.groups.clone(),
            role: self.role,
        }
    }

    /// Whether `presented` is this session's CSRF token (the hashes are
    /// compared in constant time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        key_hash(presented).as_bytes().ct_eq(self.csrf_hash.as_bytes()).into()
    }
}

/// The CSRF token that belongs to a session token.
fn csrf_token_for(session_token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"docent-csrf\0");
    h.update(session_token.as_bytes());
    hex::encode(h.finalize())
}

/// Unix seconds as RFC 3339 in whole seconds (a fixed-width text that
/// sorts like the time). Empty, which never counts as live, if out of range.
fn rfc3339_secs(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

fn is_live(expires_at: &str) -> bool {
    OffsetDateTime::parse(expires_at, &Rfc3339).is_ok_and(|t| t > OffsetDateTime::now_utc())
}

const SESSION_COLUMNS: &str = "id, user_id, groups, role, csrf_hash, created_at, expires_at";

impl Store {
    /// Opens a session for `principal` under `token` (the caller draws 256
    /// random bits) that lasts `ttl_secs`. Sessions that have expired are
    /// deleted on the way.
    pub async fn create_session(&self, principal: &Principal, token: &str, ttl_secs: u64) -> Result<Session> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let ttl = i64::try_from(ttl_secs).unwrap_or(i64::MAX).min(10 * 365 * 86_400);
        let csrf_token = csrf_token_for(token);
        let session = Session {
            id: Uuid::now_v7(),
            user: principal.user.clone(),
            groups: principal.groups.clone(),
            role: principal.role,
            created_at: now_rfc3339(),
            expires_at: rfc3339_secs(now.saturating_add(ttl)),
            csrf_hash: key_hash(&csrf_token),
            csrf_token,
        };
        sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
            .bind(rfc3339_secs(now))
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO sessions (id, token_hash, user_id, groups, role, csrf_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(session.id.to_string())
        .bind(key_hash(token))
        .bind(&session.user)
        .bind(to_list(&session.groups))
        .bind(session.role.as_str())
        .bind(&session.csrf_hash)
        .bind(&session.created_at)
        .bind(&session.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(session)
    }

    /// The live session with this token: not revoked, not expired.
    pub async fn find_session(&self, token: &str) -> Result<Option<Session>> {
        let row = sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE token_hash = $1 AND revoked_at IS NULL"
        ))
        .bind(key_hash(token))
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let role: String = r.try_get("role")?;
        let session = Session {
            id: parse_uuid("sessions", &r.try_get::<String, _>("id")?)?,
            user: r.try_get("user_id")?,
            groups: parse_list("sessions", &r.try_get::<String, _>("groups")?)?,
            role: AccessRole::parse(&role).ok_or_else(|| crate::corrupt("sessions", format!("role {role:?}")))?,
            created_at: r.try_get("created_at")?,
            expires_at: r.try_get("expires_at")?,
            csrf_hash: r.try_get("csrf_hash")?,
            csrf_token: csrf_token_for(token),
        };
        Ok(is_live(&session.expires_at).then_some(session))
    }

    /// Revokes a session (sign-out). `false` when it was not live.
    pub async fn revoke_session(&self, id: Uuid) -> Result<bool> {
        let res = sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now_rfc3339())
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_text_is_fixed_width_and_checked() {
        let t = rfc3339_secs(1_700_000_000);
        assert_eq!(t, "2023-11-14T22:13:20Z");
        assert!(!is_live(&t));
        assert!(is_live(&rfc3339_secs(OffsetDateTime::now_utc().unix_timestamp() + 60)));
        assert!(!is_live(""));
    }

    #[test]
    fn csrf_token_is_derived_not_the_session_token() {
        let a = csrf_token_for("token-a");
        assert_eq!(a, csrf_token_for("token-a"));
        assert_ne!(a, csrf_token_for("token-b"));
        assert!(!a.contains("token-a"));
        assert_eq!(a.len(), 64);
    }
}
