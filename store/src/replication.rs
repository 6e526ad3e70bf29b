//! What lets several docent replicas share one database: job claims under
//! a lease, and the change log the replicas follow to keep their own
//! derived indexes in step.
//!
//! Invariants:
//! - A job is worked on by at most one live replica: it is claimed with
//!   `SELECT ... FOR UPDATE SKIP LOCKED` (PostgreSQL; SQLite serializes
//!   writers anyway) and only while its lease is unset or expired. The
//!   claimant renews the lease while it works; a replica that dies simply
//!   stops renewing, and the job becomes claimable again.
//! - Change-log order is commit order. Appends happen inside the
//!   transaction that makes the change (the flip to `ready`, a delete), and
//!   on PostgreSQL after a transaction-scoped advisory lock, so no row with
//!   a smaller `seq` can commit after a follower has read a larger one.

use crate::{parse_uuid, Backend, Result, Store};
use docent_core::now_rfc3339;
use sqlx::{Any, Row, Transaction};
use uuid::Uuid;

/// Advisory-lock key serializing change-log appends ("docent" in ASCII-ish).
const CHANGE_LOG_LOCK: i64 = 0x646f_6365_6e74;

/// A job is failed instead of claimed again after this many claims (each
/// claim after the first means a worker died holding it).
pub const MAX_ATTEMPTS: i64 = 3;

/// What happened to a document's chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOp {
    /// The document is ready: its current chunks replace any older ones.
    Ready,
    /// The document and its chunks are gone (deleted, replaced, failed).
    Delete,
    /// The document's access labels changed (chunks unchanged).
    Access,
}

impl ChangeOp {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Delete => "delete",
            Self::Access => "access",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "ready" => Some(Self::Ready),
            "delete" => Some(Self::Delete),
            "access" => Some(Self::Access),
            _ => None,
        }
    }
}

/// One change-log row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub seq: i64,
    pub doc_id: Uuid,
    pub op: ChangeOp,
}

/// A claimed job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub job_id: Uuid,
    pub doc_id: Uuid,
    /// 1 on the first claim; more means earlier claimants died.
    pub attempt: i64,
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Appends to the change log inside the caller's transaction.
pub(crate) async fn append_change(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    doc_id: &str,
    op: ChangeOp,
) -> Result<()> {
    if backend == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(CHANGE_LOG_LOCK)
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query("INSERT INTO chunk_changes (doc_id, op, created_at) VALUES ($1, $2, $3)")
        .bind(doc_id)
        .bind(op.as_str())
        .bind(now_rfc3339())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl Store {
    /// Claims the oldest unfinished job that no live replica holds, for
    /// `lease_secs`. `None` when there is nothing to do.
    pub async fn claim_job(&self, replica: &str, lease_secs: i64) -> Result<Option<Claim>> {
        let now = unix_now();
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE jobs SET claimed_by = $1, lease_until = $2, attempts = attempts + 1
             WHERE id = (SELECT id FROM jobs
                         WHERE status NOT IN ('ready', 'failed') AND (lease_until IS NULL OR lease_until < $3)
                         ORDER BY created_at, id LIMIT 1{lock})
             RETURNING id, doc_id, attempts"
        );
        let row = sqlx::query(&sql)
            .bind(replica)
            .bind(now + lease_secs)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(Claim {
                job_id: parse_uuid("jobs", &r.try_get::<String, _>("id")?)?,
                doc_id: parse_uuid("jobs", &r.try_get::<String, _>("doc_id")?)?,
                attempt: r.try_get("attempts")?,
            })
        })
        .transpose()
    }

    /// Extends a claim. `false` when the job is no longer ours (the lease ran
    /// out and another replica took it, or the document was deleted).
    pub async fn renew_lease(&self, job_id: Uuid, replica: &str, lease_secs: i64) -> Result<bool> {
        let res = sqlx::query("UPDATE jobs SET lease_until = $1 WHERE id = $2 AND claimed_by = $3")
            .bind(unix_now() + lease_secs)
            .bind(job_id.to_string())
            .bind(replica)
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected() > 0)
    }

    /// Records a job already claimed by `replica` (a process that runs
    /// what it submits: the CLI, attachments found during a run).
    pub async fn insert_job_claimed(&self, job: &docent_core::Job, replica: &str, lease_secs: i64) -> Result<()> {
        self.insert_job_with_claim(job, Some((replica, lease_secs))).await
    }

    pub(crate) async fn insert_job_with_claim(&self, job: &docent_core::Job, claim: Option<(&str, i64)>) -> Result<()> {
        sqlx::query(
            "INSERT INTO jobs (id, doc_id, status, progress, error, created_at, updated_at, claimed_by, lease_until, attempts)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(job.id.to_string())
        .bind(job.doc_id.to_string())
        .bind(job.status.as_str())
        .bind(f64::from(job.progress))
        .bind(job.error.clone())
        .bind(&job.created_at)
        .bind(&job.updated_at)
        .bind(claim.map(|(replica, _)| replica.to_owned()))
        .bind(claim.map(|(_, lease)| unix_now() + lease))
        .bind(i64::from(claim.is_some()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Extends every unfinished claim `replica` holds (its heartbeat).
    /// Returns how many it still holds.
    pub async fn renew_all(&self, replica: &str, lease_secs: i64) -> Result<u64> {
        let res =
            sqlx::query("UPDATE jobs SET lease_until = $1 WHERE claimed_by = $2 AND status NOT IN ('ready', 'failed')")
                .bind(unix_now() + lease_secs)
                .bind(replica)
                .execute(&self.pool)
                .await?;
        Ok(res.rows_affected())
    }

    /// Hands a claimed job back (graceful shutdown): another replica, or
    /// this one after a restart, runs it from the start.
    pub async fn release_job(&self, job_id: Uuid, replica: &str) -> Result<bool> {
        let res = sqlx::query(
            "UPDATE jobs SET claimed_by = NULL, lease_until = NULL, attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END
             WHERE id = $1 AND claimed_by = $2 AND status NOT IN ('ready', 'failed')",
        )
        .bind(job_id.to_string())
        .bind(replica)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() > 0)
    }

    /// Releases every unfinished job `replica` holds: at startup, claims
    /// left by this replica's previous process are certainly dead.
    pub async fn release_claims_of(&self, replica: &str) -> Result<u64> {
        let res = sqlx::query(
            "UPDATE jobs SET claimed_by = NULL, lease_until = NULL
             WHERE claimed_by = $1 AND status NOT IN ('ready', 'failed')",
        )
        .bind(replica)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected())
    }

    /// Unfinished jobs no live replica holds: the ingest queue's depth.
    pub async fn claimable_jobs(&self) -> Result<u64> {
        let n: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM jobs WHERE status NOT IN ('ready', 'failed') AND (lease_until IS NULL OR lease_until < $1)",
        )
        .bind(unix_now())
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Appends a change on its own (a failed ingest, whose chunks other
    /// replicas may hold from an earlier version of the same document).
    pub async fn log_change(&self, doc_id: Uuid, op: ChangeOp) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        append_change(&mut tx, self.backend, &doc_id.to_string(), op).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Change-log rows after `seq`, oldest first.
    pub async fn changes_since(&self, seq: i64, limit: usize) -> Result<Vec<Change>> {
        let rows = sqlx::query("SELECT seq, doc_id, op FROM chunk_changes WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(seq)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let op: String = r.try_get("op")?;
                Ok(Change {
                    seq: r.try_get("seq")?,
                    doc_id: parse_uuid("chunk_changes", &r.try_get::<String, _>("doc_id")?)?,
                    op: ChangeOp::parse(&op).ok_or_else(|| crate::corrupt("chunk_changes", format!("op {op:?}")))?,
                })
            })
            .collect()
    }

    /// The newest change-log sequence number (0 when empty).
    pub async fn last_change_seq(&self) -> Result<i64> {
        let seq: Option<i64> = sqlx::query("SELECT MAX(seq) AS seq FROM chunk_changes")
            .fetch_one(&self.pool)
            .await?
            .try_get("seq")?;
        Ok(seq.unwrap_or(0))
    }
}
