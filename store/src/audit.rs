//! The audit trail: an append-only table whose rows form a hash chain.
//!
//! Each record holds the hash of the previous one and its own hash over
//! (previous hash, time, actor, action, detail). Editing a record breaks
//! its own hash; deleting one breaks the link of the record after it.
//! `verify_audit` walks the chain and names the first record that does not
//! hold. (Truncating the newest records leaves a shorter valid chain: ship
//! the export to a SIEM, which keeps the head.)
//!
//! Appends are serialized (a process-wide lock, and on PostgreSQL a
//! transaction-scoped advisory lock shared by all replicas), so every
//! record links to the one committed before it.

use crate::{Backend, Result, Store};
use docent_core::now_rfc3339;
use sha2::{Digest, Sha256};
use sqlx::Row;

/// Advisory-lock key serializing audit appends across replicas.
const AUDIT_LOCK: i64 = 0x6175_6469_7400;

/// The first record's "previous hash".
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit record as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditRecord {
    pub seq: i64,
    pub at: String,
    /// Who: the user (or API key) the request ran as.
    pub actor: String,
    /// What: `search`, `chat`, `answer`, `completion`, `document.upload`, ...
    pub action: String,
    /// The JSON detail exactly as hashed (query, chunk ids, decision, ...).
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

/// The result of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditVerification {
    pub records: u64,
    pub ok: bool,
    /// The first record that does not hold, and why.
    pub first_bad_seq: Option<i64>,
    pub problem: Option<String>,
    /// The hash of the newest record (the chain's head), to keep elsewhere.
    pub head: String,
}

/// sha256 over length-prefixed fields, so no field boundary is ambiguous.
pub fn chain_hash(prev: &str, at: &str, actor: &str, action: &str, detail: &str) -> String {
    let mut h = Sha256::new();
    for part in [prev, at, actor, action, detail] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

fn record_from_row(r: &sqlx::any::AnyRow) -> Result<AuditRecord> {
    Ok(AuditRecord {
        seq: r.try_get("seq")?,
        at: r.try_get("at")?,
        actor: r.try_get("actor")?,
        action: r.try_get("action")?,
        detail: r.try_get("detail")?,
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
    })
}

impl Store {
    /// Appends one record to the chain.
    pub async fn audit(&self, actor: &str, action: &str, detail: &serde_json::Value) -> Result<AuditRecord> {
        let detail = detail.to_string();
        let _local = self.audit_lock.lock().await;
        let mut tx = self.begin_write().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(AUDIT_LOCK)
                .execute(&mut *tx)
                .await?;
        }
        let prev: String = sqlx::query("SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get::<String, _>("hash"))
            .transpose()?
            .unwrap_or_else(|| GENESIS.to_owned());
        let at = now_rfc3339();
        let hash = chain_hash(&prev, &at, actor, action, &detail);
        let seq: i64 = sqlx::query(
            "INSERT INTO audit_log (at, actor, action, detail, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq",
        )
        .bind(&at)
        .bind(actor)
        .bind(action)
        .bind(&detail)
        .bind(&prev)
        .bind(&hash)
        .fetch_one(&mut *tx)
        .await?
        .try_get("seq")?;
        tx.commit().await?;
        Ok(AuditRecord {
            seq,
            at,
            actor: actor.to_owned(),
            action: action.to_owned(),
            detail,
            prev_hash: prev,
            hash,
        })
    }

    /// Records after `seq`, oldest first.
    pub async fn audit_records(&self, after_seq: i64, limit: usize) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, detail, prev_hash, hash FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after_seq)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record_from_row).collect()
    }

    /// Walks the whole chain, in pages, and reports the first break.
    pub async fn verify_audit(&self) -> Result<AuditVerification> {
        let mut prev = GENESIS.to_owned();
        let mut after = 0;
        let mut records = 0u64;
        loop {
            let page = self.audit_records(after, 1000).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for r in &page {
                records += 1;
                let problem = if r.prev_hash != prev {
                    Some("its link to the previous record does not match (a record before it was deleted or edited)")
                } else if chain_hash(&r.prev_hash, &r.at, &r.actor, &r.action, &r.detail) != r.hash {
                    Some("its content does not match its hash (the record was edited)")
                } else {
                    None
                };
                if let Some(p) = problem {
                    return Ok(AuditVerification {
                        records,
                        ok: false,
                        first_bad_seq: Some(r.seq),
                        problem: Some(p.to_owned()),
                        head: prev,
                    });
                }
                prev = r.hash.clone();
            }
        }
        Ok(AuditVerification {
            records,
            ok: true,
            first_bad_seq: None,
            problem: None,
            head: prev,
        })
    }
}
