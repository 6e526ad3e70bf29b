//! API keys. A key is `dk_<id>_<secret>`; the store keeps the id, the
//! owner, groups and role, and a sha256 of the whole key. The plaintext
//! exists only in the creator's output. Lookup is by hash; a revoked key
//! is never found.

use crate::{parse_list, parse_uuid, to_list, Result, Store};
use docent_core::{now_rfc3339, AccessRole, Principal};
use sha2::{Digest, Sha256};
use sqlx::Row;
use uuid::Uuid;

/// Web-chat sessions, the other stored credential.
mod sessions;

/// A stored key (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApiKey {
    pub id: Uuid,
    pub user: String,
    pub groups: Vec<String>,
    pub role: AccessRole,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

impl ApiKey {
    pub fn principal(&self) -> Principal {
        Principal {
            user: self.user.clone(),
            groups: self.groups.clone(),
            role: self.role,
        }
    }
}

/// The hash a key is stored and looked up under.
pub fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn key_from_row(r: &sqlx::any::AnyRow) -> Result<ApiKey> {
    let role: String = r.try_get("role")?;
    Ok(ApiKey {
        id: parse_uuid("api_keys", &r.try_get::<String, _>("id")?)?,
        user: r.try_get("user_id")?,
        groups: parse_list("api_keys", &r.try_get::<String, _>("groups")?)?,
        role: AccessRole::parse(&role).ok_or_else(|| crate::corrupt("api_keys", format!("role {role:?}")))?,
        created_at: r.try_get("created_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

const KEY_COLUMNS: &str = "id, user_id, groups, role, created_at, revoked_at";

impl Store {
    /// Creates a key; returns it with its plaintext, which is not kept.
    pub async fn create_api_key(&self, user: &str, groups: &[String], role: AccessRole) -> Result<(ApiKey, String)> {
        let id = Uuid::now_v7();
        let secret = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
        let plaintext = format!("dk_{}_{secret}", id.simple());
        let key = ApiKey {
            id,
            user: user.to_owned(),
            groups: groups.to_vec(),
            role,
            created_at: now_rfc3339(),
            revoked_at: None,
        };
        sqlx::query(
            "INSERT INTO api_keys (id, user_id, groups, role, key_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id.to_string())
        .bind(user)
        .bind(to_list(groups))
        .bind(role.as_str())
        .bind(key_hash(&plaintext))
        .bind(&key.created_at)
        .execute(&self.pool)
        .await?;
        Ok((key, plaintext))
    }

    /// The live (not revoked) key with this plaintext.
    pub async fn find_api_key(&self, plaintext: &str) -> Result<Option<ApiKey>> {
        let row = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL"
        ))
        .bind(key_hash(plaintext))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    /// Revokes a key by id. `false` when there is no live key with that id.
    pub async fn revoke_api_key(&self, id: Uuid) -> Result<bool> {
        let res = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now_rfc3339())
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected() > 0)
    }

    /// Every key, newest first (revoked ones included, marked).
    pub async fn list_api_keys(&self) -> Result<Vec<ApiKey>> {
        let rows = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY id DESC"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(key_from_row).collect()
    }
}
