//! docent-store: the source of truth. Documents, chunks and jobs live in SQL
//! through sqlx's `Any` driver, so one implementation serves SQLite (embedded
//! default) and PostgreSQL (production). Both dialects accept the `$n`
//! placeholders used here; each has its own migrations directory.
//!
//! Invariants:
//! - A document's chunks are written in one transaction together with the
//!   document's move to `indexing`; a reader never sees half a chunk set.
//! - Hydration (`hits_for_chunks`) returns only chunks of `ready` documents:
//!   the flip to `ready` is the commit point of an ingest.

use docent_core::{Chunk, DocStatus, Document, Job, SourceKind};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use std::collections::HashMap;
use std::str::FromStr;
use uuid::Uuid;

mod audit;
mod collections;
mod keys;
mod replication;
pub use audit::{chain_hash, AuditRecord, AuditVerification, GENESIS};
pub use collections::Collection;
pub use keys::{key_hash, ApiKey};
pub use replication::{Change, ChangeOp, Claim, MAX_ATTEMPTS};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database url {0:?}: use sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    #[error("corrupt row in {table}: {message}")]
    Corrupt { table: &'static str, message: String },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Handle to the SQL store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    /// Serializes audit appends in this process (see `audit`).
    audit_lock: std::sync::Arc<tokio::sync::Mutex<()>>,
    backend: Backend,
}

fn corrupt(table: &'static str, message: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        table,
        message: message.into(),
    }
}

fn parse_uuid(table: &'static str, s: &str) -> Result<Uuid> {
    Uuid::from_str(s).map_err(|e| corrupt(table, format!("bad uuid {s:?}: {e}")))
}

fn parse_list(table: &'static str, s: &str) -> Result<Vec<String>> {
    serde_json::from_str(s).map_err(|e| corrupt(table, format!("bad json list {s:?}: {e}")))
}

fn to_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".to_owned())
}

/// Inserts a document row; `inherited`: its labels follow its collection.
pub(crate) async fn insert_document_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    doc: &Document,
    inherited: bool,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO documents (id, collection, title, source, kind, content_hash, size_bytes, pages, access, status, error, chunk_count, created_at, updated_at, supersedes, parent_id, tags, doc_date, access_inherited)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
    )
    .bind(doc.id.to_string())
    .bind(&doc.collection)
    .bind(&doc.title)
    .bind(&doc.source)
    .bind(doc.kind.as_str())
    .bind(&doc.content_hash)
    .bind(i64::try_from(doc.size_bytes).unwrap_or(i64::MAX))
    .bind(doc.pages.map(i64::from))
    .bind(to_list(&doc.access))
    .bind(doc.status.as_str())
    .bind(doc.error.clone())
    .bind(i64::from(doc.chunk_count))
    .bind(&doc.created_at)
    .bind(&doc.updated_at)
    .bind(doc.supersedes.map(|u| u.to_string()))
    .bind(doc.parent_id.map(|u| u.to_string()))
    .bind(to_list(&doc.tags))
    .bind(doc.date.clone())
    .bind(i64::from(inherited))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn opt_u32(v: Option<i64>) -> Option<u32> {
    v.and_then(|x| u32::try_from(x).ok())
}

const DOC_COLUMNS: &str = "id, collection, title, source, kind, content_hash, size_bytes, pages, access, status, error, chunk_count, supersedes, parent_id, tags, doc_date, created_at, updated_at";
const CHUNK_COLUMNS: &str = "id, doc_id, ordinal, text, page, heading_path, char_start, char_end, token_count";

fn doc_from_row(row: &AnyRow) -> Result<Document> {
    let kind: String = row.try_get("kind")?;
    let status: String = row.try_get("status")?;
    Ok(Document {
        id: parse_uuid("documents", &row.try_get::<String, _>("id")?)?,
        collection: row.try_get("collection")?,
        title: row.try_get("title")?,
        source: row.try_get("source")?,
        kind: SourceKind::parse(&kind).ok_or_else(|| corrupt("documents", format!("kind {kind:?}")))?,
        content_hash: row.try_get("content_hash")?,
        size_bytes: u64::try_from(row.try_get::<i64, _>("size_bytes")?).unwrap_or(0),
        pages: opt_u32(row.try_get("pages")?),
        access: parse_list("documents", &row.try_get::<String, _>("access")?)?,
        status: DocStatus::parse(&status).ok_or_else(|| corrupt("documents", format!("status {status:?}")))?,
        error: row.try_get("error")?,
        chunk_count: u32::try_from(row.try_get::<i64, _>("chunk_count")?).unwrap_or(0),
        supersedes: row
            .try_get::<Option<String>, _>("supersedes")?
            .map(|s| parse_uuid("documents", &s))
            .transpose()?,
        parent_id: row
            .try_get::<Option<String>, _>("parent_id")?
            .map(|s| parse_uuid("documents", &s))
            .transpose()?,
        tags: parse_list("documents", &row.try_get::<String, _>("tags")?)?,
        date: row.try_get("doc_date")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn chunk_from_row(row: &AnyRow) -> Result<Chunk> {
    Ok(Chunk {
        id: parse_uuid("chunks", &row.try_get::<String, _>("id")?)?,
        doc_id: parse_uuid("chunks", &row.try_get::<String, _>("doc_id")?)?,
        ordinal: u32::try_from(row.try_get::<i64, _>("ordinal")?).unwrap_or(0),
        text: row.try_get("text")?,
        page: opt_u32(row.try_get("page")?),
        heading_path: parse_list("chunks", &row.try_get::<String, _>("heading_path")?)?,
        char_start: u32::try_from(row.try_get::<i64, _>("char_start")?).unwrap_or(0),
        char_end: u32::try_from(row.try_get::<i64, _>("char_end")?).unwrap_or(0),
        token_count: u32::try_from(row.try_get::<i64, _>("token_count")?).unwrap_or(0),
    })
}

fn job_from_row(row: &AnyRow) -> Result<Job> {
    let status: String = row.try_get("status")?;
    Ok(Job {
        id: parse_uuid("jobs", &row.try_get::<String, _>("id")?)?,
        doc_id: parse_uuid("jobs", &row.try_get::<String, _>("doc_id")?)?,
        status: DocStatus::parse(&status).ok_or_else(|| corrupt("jobs", format!("status {status:?}")))?,
        progress: row.try_get::<f64, _>("progress")? as f32,
        error: row.try_get("error")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        worker: row.try_get("claimed_by")?,
    })
}

const JOB_COLUMNS: &str = "id, doc_id, status, progress, error, created_at, updated_at, claimed_by";

/// A chunk with the collection and labels it is filtered by.
#[derive(Debug, Clone)]
pub struct ChunkWithAccess {
    pub chunk: Chunk,
    pub collection: String,
    pub access: Vec<String>,
    pub title: String,
    pub tags: Vec<String>,
    /// The document's effective date (unix seconds), see `Document::effective_date`.
    pub date: i64,
}

impl ChunkWithAccess {
    /// What the derived indexes store for this chunk.
    pub fn to_indexed(&self) -> docent_core::IndexedChunk {
        docent_core::IndexedChunk {
            chunk_id: self.chunk.id,
            doc_id: self.chunk.doc_id,
            collection: self.collection.clone(),
            access: self.access.clone(),
            tags: self.tags.clone(),
            date: self.date,
            title: self.title.clone(),
            heading: self.chunk.heading_path.join(" > "),
            text: self.chunk.text.clone(),
        }
    }
}

impl Store {
    /// Connects and runs the migrations for the URL's backend.
    /// `sqlite://PATH` (created if missing) or `postgres://...`.
    pub async fn connect(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        };
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_owned(),
        };
        let mut opts = AnyPoolOptions::new().max_connections(if backend == Backend::Sqlite { 4 } else { 10 });
        if backend == Backend::Sqlite {
            opts = opts.after_connect(|conn, _meta| {
                Box::pin(async move {
                    use sqlx::Executor;
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    Ok(())
                })
            });
        }
        let pool = opts.connect(&url).await?;
        if backend == Backend::Sqlite {
            sqlx::query("PRAGMA journal_mode = WAL").execute(&pool).await?;
        }
        let store = Self {
            pool,
            backend,
            audit_lock: Default::default(),
        };
        store.migrate().await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn migrate(&self) -> Result<()> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    /// Applied migrations, oldest first: (version, description).
    pub async fn applied_migrations(&self) -> Result<Vec<(i64, String)>> {
        let rows = sqlx::query("SELECT version, description FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("version")?, r.try_get("description")?)))
            .collect()
    }

    /// A transaction that holds the write lock from its first statement.
    /// SQLite's deferred transactions take their read snapshot at the first
    /// SELECT; if another connection commits before their first write, that
    /// write fails at once with SQLITE_BUSY_SNAPSHOT (busy_timeout does not
    /// apply). A no-op write first takes the lock, waiting up to the busy
    /// timeout, before anything is read. PostgreSQL needs nothing.
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Sqlite {
            sqlx::query("UPDATE chunk_changes SET seq = seq WHERE 1 = 0")
                .execute(&mut *tx)
                .await?;
        }
        Ok(tx)
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ---- documents -------------------------------------------------------

    pub async fn insert_document(&self, doc: &Document) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        insert_document_in(&mut tx, doc, false).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The live (ready) document from this source in this collection: the
    /// version a new upload of the same source replaces.
    pub async fn find_ready_by_source(&self, collection: &str, source: &str) -> Result<Option<Document>> {
        let row = sqlx::query(&format!(
            "SELECT {DOC_COLUMNS} FROM documents WHERE collection = $1 AND source = $2 AND status = 'ready' ORDER BY created_at DESC LIMIT 1"
        ))
        .bind(collection)
        .bind(source)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(doc_from_row).transpose()
    }

    /// The commit point of an ingest: the document becomes `ready` and, in
    /// the same transaction, every other ready version of the same source in
    /// the same collection that is older (ids are UUIDv7, so they order by
    /// creation) is removed. If a newer version is already ready, this one is
    /// stale and is removed instead. Returns the removed documents' ids and
    /// content hashes; the caller then deletes their index entries and blobs.
    pub async fn commit_ready(&self, id: Uuid) -> Result<Vec<(Uuid, String)>> {
        let mut tx = self.begin_write().await?;
        let me = id.to_string();
        let row = sqlx::query("SELECT collection, source, content_hash FROM documents WHERE id = $1")
            .bind(&me)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            tx.commit().await?;
            return Ok(Vec::new());
        };
        let collection: String = row.try_get("collection")?;
        let source: String = row.try_get("source")?;
        let others: Vec<(String, String)> = sqlx::query(
            "SELECT id, content_hash FROM documents WHERE collection = $1 AND source = $2 AND status = 'ready' AND id <> $3",
        )
        .bind(&collection)
        .bind(&source)
        .bind(&me)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| Ok((r.try_get::<String, _>("id")?, r.try_get::<String, _>("content_hash")?)))
        .collect::<std::result::Result<_, sqlx::Error>>()?;
        let stale = others.iter().any(|(o, _)| o.as_str() > me.as_str());
        let remove: Vec<(String, String)> = if stale {
            let hash: String = row.try_get("content_hash")?;
            vec![(me.clone(), hash)]
        } else {
            others
        };
        if !stale {
            sqlx::query("UPDATE documents SET status = 'ready', error = NULL, updated_at = $1 WHERE id = $2")
                .bind(docent_core::now_rfc3339())
                .bind(&me)
                .execute(&mut *tx)
                .await?;
        }
        if !stale {
            replication::append_change(&mut tx, self.backend, &me, ChangeOp::Ready).await?;
        }
        for (old, _) in &remove {
            for sql in [
                "DELETE FROM chunks WHERE doc_id = $1",
                "DELETE FROM jobs WHERE doc_id = $1",
                "DELETE FROM documents WHERE id = $1",
            ] {
                sqlx::query(sql).bind(old.clone()).execute(&mut *tx).await?;
            }
            replication::append_change(&mut tx, self.backend, old, ChangeOp::Delete).await?;
        }
        tx.commit().await?;
        remove
            .into_iter()
            .map(|(o, h)| Ok((parse_uuid("documents", &o)?, h)))
            .collect()
    }

    pub async fn get_document(&self, id: Uuid) -> Result<Option<Document>> {
        let row = sqlx::query(&format!("SELECT {DOC_COLUMNS} FROM documents WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(doc_from_row).transpose()
    }

    /// A live (not failed) document with these bytes in this collection.
    pub async fn find_by_hash(&self, collection: &str, hash: &str) -> Result<Option<Document>> {
        let row = sqlx::query(&format!(
            "SELECT {DOC_COLUMNS} FROM documents WHERE collection = $1 AND content_hash = $2 AND status <> 'failed' ORDER BY created_at LIMIT 1"
        ))
        .bind(collection)
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(doc_from_row).transpose()
    }

    /// Documents, newest first, in the given collections (empty = all) whose
    /// labels intersect `groups`. Filtering happens in the application after a
    /// bounded SQL scan of the collection; labels are JSON in SQL.
    pub async fn list_documents(&self, groups: &[String], collections: &[String]) -> Result<Vec<Document>> {
        let rows = sqlx::query(&format!(
            "SELECT {DOC_COLUMNS} FROM documents ORDER BY created_at DESC, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for row in &rows {
            let d = doc_from_row(row)?;
            let visible = d.access.iter().any(|l| groups.contains(l));
            let in_coll = collections.is_empty() || collections.contains(&d.collection);
            if visible && in_coll {
                out.push(d);
            }
        }
        Ok(out)
    }

    pub async fn set_status(&self, id: Uuid, status: DocStatus, error: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE documents SET status = $1, error = $2, updated_at = $3 WHERE id = $4")
            .bind(status.as_str())
            .bind(error.map(str::to_owned))
            .bind(docent_core::now_rfc3339())
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Writes all chunks of a document and moves it to `indexing`, atomically.
    /// Any chunks from an earlier attempt are replaced. The chunks get the
    /// document's labels as stored now (a permission change may have come
    /// since `doc` was read); returns them.
    pub async fn put_chunks(&self, doc: &Document, pages: Option<u32>, chunks: &[Chunk]) -> Result<Vec<String>> {
        let mut tx = self.begin_write().await?;
        let labels = match sqlx::query("SELECT access FROM documents WHERE id = $1")
            .bind(doc.id.to_string())
            .fetch_optional(&mut *tx)
            .await?
        {
            Some(r) => parse_list("documents", &r.try_get::<String, _>("access")?)?,
            None => doc.access.clone(),
        };
        sqlx::query("DELETE FROM chunks WHERE doc_id = $1")
            .bind(doc.id.to_string())
            .execute(&mut *tx)
            .await?;
        let access = to_list(&labels);
        for c in chunks {
            sqlx::query(
                "INSERT INTO chunks (id, doc_id, ordinal, collection, access, text, page, heading_path, char_start, char_end, token_count)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(c.id.to_string())
            .bind(c.doc_id.to_string())
            .bind(i64::from(c.ordinal))
            .bind(&doc.collection)
            .bind(&access)
            .bind(&c.text)
            .bind(c.page.map(i64::from))
            .bind(to_list(&c.heading_path))
            .bind(i64::from(c.char_start))
            .bind(i64::from(c.char_end))
            .bind(i64::from(c.token_count))
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE documents SET status = 'indexing', chunk_count = $1, pages = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(i64::try_from(chunks.len()).unwrap_or(i64::MAX))
        .bind(pages.map(i64::from))
        .bind(docent_core::now_rfc3339())
        .bind(doc.id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(labels)
    }

    /// Deletes a document, its chunks and jobs. Returns whether it existed.
    pub async fn delete_document(&self, id: Uuid) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM chunks WHERE doc_id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM jobs WHERE doc_id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        let res = sqlx::query("DELETE FROM documents WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        if res.rows_affected() > 0 {
            replication::append_change(&mut tx, self.backend, &id.to_string(), ChangeOp::Delete).await?;
        }
        tx.commit().await?;
        Ok(res.rows_affected() > 0)
    }

    /// Every document of a collection, whatever its labels (for
    /// administrative sweeps such as removing files that disappeared).
    pub async fn documents_in_collection(&self, collection: &str) -> Result<Vec<Document>> {
        let rows = sqlx::query(&format!(
            "SELECT {DOC_COLUMNS} FROM documents WHERE collection = $1 ORDER BY source, id"
        ))
        .bind(collection)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(doc_from_row).collect()
    }

    /// Documents that were mid-ingest when the process stopped.
    pub async fn unfinished_documents(&self) -> Result<Vec<Document>> {
        let rows = sqlx::query(&format!(
            "SELECT {DOC_COLUMNS} FROM documents WHERE status NOT IN ('ready', 'failed') ORDER BY created_at"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(doc_from_row).collect()
    }

    // ---- chunks ----------------------------------------------------------

    pub async fn chunks_of(&self, doc_id: Uuid) -> Result<Vec<Chunk>> {
        let rows = sqlx::query(&format!(
            "SELECT {CHUNK_COLUMNS} FROM chunks WHERE doc_id = $1 ORDER BY ordinal"
        ))
        .bind(doc_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(chunk_from_row).collect()
    }

    /// Hydrates index hits: the chunk and its document, for `ready` documents
    /// only. Ids that are unknown or not ready are left out.
    pub async fn hydrate(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, (Chunk, Document)>> {
        let mut out = HashMap::with_capacity(ids.len());
        if ids.is_empty() {
            return Ok(out);
        }
        let mut docs: HashMap<Uuid, Document> = HashMap::new();
        for batch in ids.chunks(200) {
            let placeholders: Vec<String> = (1..=batch.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT c.id, c.doc_id, c.ordinal, c.text, c.page, c.heading_path, c.char_start, c.char_end, c.token_count
                 FROM chunks c JOIN documents d ON d.id = c.doc_id
                 WHERE d.status = 'ready' AND c.id IN ({})",
                placeholders.join(", ")
            );
            let mut q = sqlx::query(&sql);
            for id in batch {
                q = q.bind(id.to_string());
            }
            let rows = q.fetch_all(&self.pool).await?;
            for row in &rows {
                let chunk = chunk_from_row(row)?;
                let doc = match docs.get(&chunk.doc_id) {
                    Some(d) => d.clone(),
                    None => match self.get_document(chunk.doc_id).await? {
                        Some(d) => {
                            docs.insert(d.id, d.clone());
                            d
                        }
                        None => continue,
                    },
                };
                out.insert(chunk.id, (chunk, doc));
            }
        }
        Ok(out)
    }

    /// Whether any of these collections holds a ready document (an index
    /// lookup: `collection` leads two indexes). Lets a search of an empty or
    /// unknown collection return at once.
    pub async fn any_ready_in(&self, collections: &[String]) -> Result<bool> {
        for c in collections {
            let row = sqlx::query("SELECT 1 AS one FROM documents WHERE collection = $1 AND status = 'ready' LIMIT 1")
                .bind(c)
                .fetch_optional(&self.pool)
                .await?;
            if row.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Chunk ids of ready documents, for consistency checks.
    pub async fn ready_chunk_ids(&self) -> Result<Vec<Uuid>> {
        let rows =
            sqlx::query("SELECT c.id FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE d.status = 'ready'")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| parse_uuid("chunks", &r.try_get::<String, _>("id")?))
            .collect()
    }

    /// Chunks of documents that are ready or still being ingested (not
    /// failed). An index entry outside this set is an orphan; one inside it
    /// but not ready may belong to an ingest running on another replica.
    pub async fn live_chunk_ids(&self) -> Result<Vec<Uuid>> {
        let rows =
            sqlx::query("SELECT c.id FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE d.status <> 'failed'")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| parse_uuid("chunks", &r.try_get::<String, _>("id")?))
            .collect()
    }

    /// Every chunk of ready documents with its access data, for reindexing.
    pub async fn ready_chunks_with_access(&self) -> Result<Vec<ChunkWithAccess>> {
        self.chunks_where(None, true).await
    }

    /// The chunks of one document, if it is ready (else none).
    pub async fn ready_chunks_of(&self, doc_id: Uuid) -> Result<Vec<ChunkWithAccess>> {
        self.chunks_where(Some(doc_id), true).await
    }

    /// The chunks of one document whatever its status (one being indexed
    /// may already be in the indexes).
    pub async fn chunks_with_access_of(&self, doc_id: Uuid) -> Result<Vec<ChunkWithAccess>> {
        self.chunks_where(Some(doc_id), false).await
    }

    async fn chunks_where(&self, doc: Option<Uuid>, ready_only: bool) -> Result<Vec<ChunkWithAccess>> {
        let sql = format!(
            "SELECT c.id, c.doc_id, c.ordinal, c.text, c.page, c.heading_path, c.char_start, c.char_end, c.token_count,
                    c.collection AS chunk_collection, c.access AS chunk_access, d.title AS doc_title,
                    d.tags AS doc_tags, d.doc_date AS doc_date, d.created_at AS doc_created
             FROM chunks c JOIN documents d ON d.id = c.doc_id
             WHERE {}{} ORDER BY c.doc_id, c.ordinal",
            if ready_only { "d.status = 'ready'" } else { "1 = 1" },
            if doc.is_some() { " AND d.id = $1" } else { "" }
        );
        let mut q = sqlx::query(&sql);
        if let Some(d) = doc {
            q = q.bind(d.to_string());
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(ChunkWithAccess {
                    chunk: chunk_from_row(r)?,
                    collection: r.try_get("chunk_collection")?,
                    access: parse_list("chunks", &r.try_get::<String, _>("chunk_access")?)?,
                    title: r.try_get("doc_title")?,
                    tags: parse_list("documents", &r.try_get::<String, _>("doc_tags")?)?,
                    date: r
                        .try_get::<Option<String>, _>("doc_date")?
                        .as_deref()
                        .and_then(docent_core::parse_date)
                        .or_else(|| docent_core::parse_date(&r.try_get::<String, _>("doc_created").unwrap_or_default()))
                        .unwrap_or(0),
                })
            })
            .collect()
    }

    // ---- jobs ------------------------------------------------------------

    /// Records a job that any replica's workers may claim.
    pub async fn insert_job(&self, job: &Job) -> Result<()> {
        self.insert_job_with_claim(job, None).await
    }

    pub async fn update_job(&self, id: Uuid, status: DocStatus, progress: f32, error: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE jobs SET status = $1, progress = $2, error = $3, updated_at = $4 WHERE id = $5")
            .bind(status.as_str())
            .bind(f64::from(progress))
            .bind(error.map(str::to_owned))
            .bind(docent_core::now_rfc3339())
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn get_job(&self, id: Uuid) -> Result<Option<Job>> {
        let row = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }
}

impl Store {
    pub async fn set_title(&self, id: Uuid, title: &str) -> Result<()> {
        sqlx::query("UPDATE documents SET title = $1 WHERE id = $2")
            .bind(title)
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Any document (in any collection, any status) with these bytes.
    /// Documents carried by `parent` (its attachments), any status.
    pub async fn children_of(&self, parent: Uuid) -> Result<Vec<Document>> {
        let rows = sqlx::query(&format!(
            "SELECT {DOC_COLUMNS} FROM documents WHERE parent_id = $1 ORDER BY created_at, id"
        ))
        .bind(parent.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(doc_from_row).collect()
    }

    pub async fn find_any_by_hash(&self, hash: &str) -> Result<Option<Document>> {
        let row = sqlx::query(&format!(
            "SELECT {DOC_COLUMNS} FROM documents WHERE content_hash = $1 LIMIT 1"
        ))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(doc_from_row).transpose()
    }

    pub async fn latest_job(&self, doc_id: Uuid) -> Result<Option<Job>> {
        let row = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE doc_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1"
        ))
        .bind(doc_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(job_from_row).transpose()
    }
}

fn role_str(r: docent_core::Role) -> &'static str {
    match r {
        docent_core::Role::System => "system",
        docent_core::Role::User => "user",
        docent_core::Role::Assistant => "assistant",
    }
}

fn conversation_from_row(row: &AnyRow) -> Result<docent_core::Conversation> {
    Ok(docent_core::Conversation {
        id: parse_uuid("conversations", &row.try_get::<String, _>("id")?)?,
        user: row.try_get("user_id")?,
        title: row.try_get("title")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Store {
    pub async fn create_conversation(&self, user: &str, title: &str) -> Result<docent_core::Conversation> {
        let now = docent_core::now_rfc3339();
        let c = docent_core::Conversation {
            id: Uuid::now_v7(),
            user: user.to_owned(),
            title: title.chars().take(120).collect(),
            created_at: now.clone(),
            updated_at: now,
        };
        sqlx::query(
            "INSERT INTO conversations (id, user_id, title, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(c.id.to_string())
        .bind(&c.user)
        .bind(&c.title)
        .bind(&c.created_at)
        .bind(&c.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(c)
    }

    /// A conversation, only if it belongs to `user` (others get `None`).
    pub async fn get_conversation(&self, id: Uuid, user: &str) -> Result<Option<docent_core::Conversation>> {
        let row = sqlx::query(
            "SELECT id, user_id, title, created_at, updated_at FROM conversations WHERE id = $1 AND user_id = $2",
        )
        .bind(id.to_string())
        .bind(user)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(conversation_from_row).transpose()
    }

    /// The user's conversations, most recently active first.
    pub async fn list_conversations(&self, user: &str) -> Result<Vec<docent_core::Conversation>> {
        let rows = sqlx::query(
            "SELECT id, user_id, title, created_at, updated_at FROM conversations WHERE user_id = $1 ORDER BY updated_at DESC, id DESC",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(conversation_from_row).collect()
    }

    pub async fn add_message(
        &self,
        conversation_id: Uuid,
        role: docent_core::Role,
        content: &str,
        citations: &serde_json::Value,
        sources: &[Uuid],
    ) -> Result<docent_core::Message> {
        let now = docent_core::now_rfc3339();
        let m = docent_core::Message {
            id: Uuid::now_v7(),
            conversation_id,
            role,
            content: content.to_owned(),
            citations: citations.clone(),
            sources: sources.to_vec(),
            created_at: now.clone(),
        };
        let mut tx = self.pool.begin().await?;
        let source_list: Vec<String> = sources.iter().map(Uuid::to_string).collect();
        sqlx::query(
            "INSERT INTO messages (id, conversation_id, role, content, citations, created_at, source_documents) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(m.id.to_string())
        .bind(conversation_id.to_string())
        .bind(role_str(role))
        .bind(&m.content)
        .bind(m.citations.to_string())
        .bind(&m.created_at)
        .bind(to_list(&source_list))
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE conversations SET updated_at = $1 WHERE id = $2")
            .bind(&now)
            .bind(conversation_id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(m)
    }

    /// Messages in order (ids are UUIDv7, so they order by creation).
    pub async fn messages(&self, conversation_id: Uuid) -> Result<Vec<docent_core::Message>> {
        let rows = sqlx::query(
            "SELECT id, conversation_id, role, content, citations, created_at, source_documents FROM messages WHERE conversation_id = $1 ORDER BY id",
        )
        .bind(conversation_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let role: String = r.try_get("role")?;
                let citations: String = r.try_get("citations")?;
                Ok(docent_core::Message {
                    id: parse_uuid("messages", &r.try_get::<String, _>("id")?)?,
                    conversation_id: parse_uuid("messages", &r.try_get::<String, _>("conversation_id")?)?,
                    role: match role.as_str() {
                        "system" => docent_core::Role::System,
                        "user" => docent_core::Role::User,
                        "assistant" => docent_core::Role::Assistant,
                        other => return Err(corrupt("messages", format!("role {other:?}"))),
                    },
                    content: r.try_get("content")?,
                    citations: serde_json::from_str(&citations)
                        .map_err(|e| corrupt("messages", format!("citations: {e}")))?,
                    sources: parse_list("messages", &r.try_get::<String, _>("source_documents")?)?
                        .iter()
                        .map(|s| parse_uuid("messages", s))
                        .collect::<Result<_>>()?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }
}
