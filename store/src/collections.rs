//! Collections and document permissions.
//!
//! A document carries the groups that may read it (`access`, copied onto
//! each of its chunks). Its upload either names them, or the document
//! *inherits* its collection's groups (`access_inherited = 1`) and follows
//! them when an admin changes the collection. A collection without a row
//! stands for the configured default labels.
//!
//! Invariants:
//! - A permission change rewrites the document row and all of its chunks'
//!   labels, and appends an `access` entry to the change log, in one
//!   transaction; the caller then rewrites its own indexes before
//!   answering, and other replicas follow the log.
//! - Attachments have their carrier's labels: a change to a document
//!   applies to everything it carries, recursively.
//! - On PostgreSQL, permission changes and inheriting inserts take one
//!   advisory lock, so a document inserted while its collection changes
//!   ends up with the new groups, never the old ones.

use crate::replication::{append_change, ChangeOp};
use crate::{parse_list, to_list, Backend, Result, Store};
use docent_core::{now_rfc3339, Document};
use sqlx::{Any, Row, Transaction};
use uuid::Uuid;

/// Advisory-lock key serializing permission changes ("access").
const ACCESS_LOCK: i64 = 0x6163_6365_7373;

/// A collection's settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Collection {
    pub name: String,
    /// Groups a document uploaded without access labels inherits.
    pub groups: Vec<String>,
    /// Answers drawn from this collection are shown with PHI/PII masked.
    pub redact_answers: bool,
    pub created_at: String,
    pub updated_at: String,
}

fn collection_from_row(r: &sqlx::any::AnyRow) -> Result<Collection> {
    Ok(Collection {
        name: r.try_get("name")?,
        groups: parse_list("collections", &r.try_get::<String, _>("groups")?)?,
        redact_answers: r.try_get::<i64, _>("redact_answers")? != 0,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

async fn lock_access(tx: &mut Transaction<'static, Any>, backend: Backend) -> Result<()> {
    if backend == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(ACCESS_LOCK)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Sets the labels of `ids` and of their chunks, and logs each change.
async fn relabel(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    ids: &[String],
    labels: &str,
    inherited: Option<bool>,
) -> Result<()> {
    let now = now_rfc3339();
    for id in ids {
        match inherited {
            Some(inh) => {
                sqlx::query("UPDATE documents SET access = $1, access_inherited = $2, updated_at = $3 WHERE id = $4")
                    .bind(labels)
                    .bind(i64::from(inh))
                    .bind(&now)
                    .bind(id)
                    .execute(&mut **tx)
                    .await?;
            }
            None => {
                sqlx::query("UPDATE documents SET access = $1, updated_at = $2 WHERE id = $3")
                    .bind(labels)
                    .bind(&now)
                    .bind(id)
                    .execute(&mut **tx)
                    .await?;
            }
        }
        sqlx::query("UPDATE chunks SET access = $1 WHERE doc_id = $2")
            .bind(labels)
            .bind(id)
            .execute(&mut **tx)
            .await?;
        append_change(tx, backend, id, ChangeOp::Access).await?;
    }
    Ok(())
}

/// `ids` and everything they carry (attachments, recursively).
async fn with_descendants(tx: &mut Transaction<'static, Any>, ids: Vec<String>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut pending = ids;
    while let Some(id) = pending.pop() {
        let children = sqlx::query("SELECT id FROM documents WHERE parent_id = $1")
            .bind(&id)
            .fetch_all(&mut **tx)
            .await?;
        for c in &children {
            pending.push(c.try_get("id")?);
        }
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(out)
}

fn to_uuids(ids: &[String]) -> Result<Vec<Uuid>> {
    ids.iter().map(|s| crate::parse_uuid("documents", s)).collect()
}

impl Store {
    pub async fn get_collection(&self, name: &str) -> Result<Option<Collection>> {
        let row =
            sqlx::query("SELECT name, groups, redact_answers, created_at, updated_at FROM collections WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(collection_from_row).transpose()
    }

    /// Every configured collection, by name.
    pub async fn list_collections(&self) -> Result<Vec<Collection>> {
        let rows =
            sqlx::query("SELECT name, groups, redact_answers, created_at, updated_at FROM collections ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(collection_from_row).collect()
    }

    /// Names of configured collections whose answers are shown masked.
    pub async fn redacting_collections(&self) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT name FROM collections WHERE redact_answers <> 0")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok(r.try_get("name")?)).collect()
    }

    /// Creates or changes a collection. Its documents that inherit (and
    /// what they carry) take the new groups in the same transaction, each
    /// logged as an access change. Returns the collection and the ids of the
    /// documents whose labels changed, for the caller to rewrite its
    /// indexes.
    pub async fn put_collection(
        &self,
        name: &str,
        groups: &[String],
        redact_answers: bool,
    ) -> Result<(Collection, Vec<Uuid>)> {
        let mut tx = self.begin_write().await?;
        lock_access(&mut tx, self.backend).await?;
        let now = now_rfc3339();
        let labels = to_list(groups);
        let existing = sqlx::query("SELECT groups FROM collections WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        if existing.is_some() {
            sqlx::query("UPDATE collections SET groups = $1, redact_answers = $2, updated_at = $3 WHERE name = $4")
                .bind(&labels)
                .bind(i64::from(redact_answers))
                .bind(&now)
                .bind(name)
                .execute(&mut *tx)
                .await?;
        } else {
            sqlx::query(
                "INSERT INTO collections (name, groups, redact_answers, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)",
            )
            .bind(name)
            .bind(&labels)
            .bind(i64::from(redact_answers))
            .bind(&now)
            .execute(&mut *tx)
            .await?;
        }
        // Inheriting documents whose labels differ (attachments follow
        // their carrier below, whatever their own flag says).
        let rows = sqlx::query(
            "SELECT id FROM documents WHERE collection = $1 AND access_inherited <> 0 AND parent_id IS NULL AND access <> $2",
        )
        .bind(name)
        .bind(&labels)
        .fetch_all(&mut *tx)
        .await?;
        let roots = rows
            .iter()
            .map(|r| r.try_get::<String, _>("id"))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let ids = with_descendants(&mut tx, roots).await?;
        relabel(&mut tx, self.backend, &ids, &labels, None).await?;
        let row =
            sqlx::query("SELECT name, groups, redact_answers, created_at, updated_at FROM collections WHERE name = $1")
                .bind(name)
                .fetch_one(&mut *tx)
                .await?;
        let coll = collection_from_row(&row)?;
        tx.commit().await?;
        Ok((coll, to_uuids(&ids)?))
    }

    /// Sets a document's groups: `Some(labels)` explicitly, `None` back to
    /// inheriting from its collection (or `fallback`, the default labels,
    /// when the collection has no row). What it carries follows. Returns
    /// `None` when there is no such document, else the ids whose labels
    /// were rewritten (the document first).
    pub async fn set_document_access(
        &self,
        id: Uuid,
        labels: Option<&[String]>,
        fallback: &[String],
    ) -> Result<Option<Vec<Uuid>>> {
        let mut tx = self.begin_write().await?;
        lock_access(&mut tx, self.backend).await?;
        let row = sqlx::query("SELECT collection FROM documents WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            tx.commit().await?;
            return Ok(None);
        };
        let collection: String = row.try_get("collection")?;
        let (new, inherited) = match labels {
            Some(l) => (l.to_vec(), false),
            None => {
                let groups = sqlx::query("SELECT groups FROM collections WHERE name = $1")
                    .bind(&collection)
                    .fetch_optional(&mut *tx)
                    .await?;
                let g = match groups {
                    Some(r) => parse_list("collections", &r.try_get::<String, _>("groups")?)?,
                    None => fallback.to_vec(),
                };
                (g, true)
            }
        };
        let list = to_list(&new);
        let me = id.to_string();
        relabel(&mut tx, self.backend, std::slice::from_ref(&me), &list, Some(inherited)).await?;
        let descendants: Vec<String> = with_descendants(&mut tx, vec![me.clone()])
            .await?
            .into_iter()
            .filter(|d| *d != me)
            .collect();
        relabel(&mut tx, self.backend, &descendants, &list, None).await?;
        tx.commit().await?;
        let mut all = vec![id];
        all.extend(to_uuids(&descendants)?);
        Ok(Some(all))
    }

    /// Records a new document whose upload named no labels: it takes its
    /// collection's groups (or `doc.access`, the default labels, when the
    /// collection has no row) and follows them from then on. Returns the
    /// labels it got.
    pub async fn insert_document_inheriting(&self, doc: &Document) -> Result<Vec<String>> {
        let mut tx = self.begin_write().await?;
        lock_access(&mut tx, self.backend).await?;
        let groups = sqlx::query("SELECT groups FROM collections WHERE name = $1")
            .bind(&doc.collection)
            .fetch_optional(&mut *tx)
            .await?;
        let labels = match groups {
            Some(r) => parse_list("collections", &r.try_get::<String, _>("groups")?)?,
            None => doc.access.clone(),
        };
        let mut d = doc.clone();
        d.access = labels.clone();
        crate::insert_document_in(&mut tx, &d, true).await?;
        tx.commit().await?;
        Ok(labels)
    }

    /// Whether a document's labels follow its collection.
    pub async fn access_inherited(&self, id: Uuid) -> Result<Option<bool>> {
        let row = sqlx::query("SELECT access_inherited FROM documents WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok(r.try_get::<i64, _>("access_inherited")? != 0))
            .transpose()
    }
}
