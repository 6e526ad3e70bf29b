//! Documents: upload (multipart, 202 + job), list, get, delete; jobs.

use crate::auth::Caller;
use crate::dto::{DocumentDto, JobDto, UploadResponse};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use actix_multipart::Multipart;
use actix_web::{web, HttpResponse};
use docent_core::{AccessFilter, AccessRole};
use docent_ingest::pipeline::{NewDocument, Submitted};
use futures::TryStreamExt;
use tracing::info;
use uuid::Uuid;

async fn read_text_field(field: &mut actix_multipart::Field, limit: usize) -> ApiResult<String> {
    let mut buf = Vec::new();
    while let Some(chunk) = field
        .try_next()
        .await
        .map_err(|e| ApiError::BadRequest(format!("multipart: {e}")))?
    {
        if buf.len() + chunk.len() > limit {
            return Err(ApiError::BadRequest("form field too long".to_owned()));
        }
        buf.extend_from_slice(&chunk);
    }
    String::from_utf8(buf).map_err(|_| ApiError::BadRequest("form field is not UTF-8".to_owned()))
}

/// `POST /v1/documents`: multipart with one `file` part, and optional
/// `collection`, `access` (comma-separated labels), `title`, `tags`
/// (comma-separated) and `date` (RFC 3339 or YYYY-MM-DD) parts.
pub async fn upload(state: web::Data<AppState>, caller: Caller, mut payload: Multipart) -> ApiResult<HttpResponse> {
    caller.require(AccessRole::Editor)?;
    let limit = state.cfg.max_upload_bytes;
    let mut file: Option<(String, Vec<u8>)> = None;
    let mut collection = None;
    let mut access = None;
    let mut title = None;
    let mut tags = None;
    let mut date: Option<String> = None;
    while let Some(mut field) = payload
        .try_next()
        .await
        .map_err(|e| ApiError::BadRequest(format!("invalid multipart body: {e}")))?
    {
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "file" => {
                if file.is_some() {
                    return Err(ApiError::BadRequest("send one `file` part per request".to_owned()));
                }
                let file_name = field
                    .content_disposition()
                    .and_then(|cd| cd.get_filename())
                    .map(str::to_owned)
                    .ok_or_else(|| ApiError::BadRequest("the `file` part needs a filename".to_owned()))?;
                let mut bytes = Vec::new();
                while let Some(chunk) = field
                    .try_next()
                    .await
                    .map_err(|e| ApiError::BadRequest(format!("multipart: {e}")))?
                {
                    if bytes.len() + chunk.len() > limit {
                        return Err(ApiError::PayloadTooLarge { limit });
                    }
                    bytes.extend_from_slice(&chunk);
                }
                file = Some((file_name, bytes));
            }
            "collection" => collection = Some(read_text_field(&mut field, 256).await?),
            "access" => access = Some(read_text_field(&mut field, 4096).await?),
            "title" => title = Some(read_text_field(&mut field, 1024).await?),
            "tags" => tags = Some(read_text_field(&mut field, 4096).await?),
            "date" => date = Some(read_text_field(&mut field, 64).await?),
            other => return Err(ApiError::BadRequest(format!("unknown form field {other:?}"))),
        }
    }
    let (file_name, bytes) = file.ok_or_else(|| ApiError::BadRequest("missing `file` part".to_owned()))?;
    let collection = collection
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| state.cfg.default_collection.clone());
    // No `access` part: the document inherits its collection's groups.
    let access: Vec<String> = match access {
        Some(a) => {
            let labels = docent_core::split_list(Some(&a));
            if labels.is_empty() {
                return Err(ApiError::BadRequest("`access` names no label".to_owned()));
            }
            labels
        }
        None => Vec::new(),
    };
    // Backpressure before anything is stored.
    state.queue.admit().await?;
    let submitted = state
        .ingestor
        .submit(NewDocument {
            bytes,
            source: file_name.clone(),
            file_name,
            collection,
            access,
            title,
            tags: docent_core::split_list(tags.as_deref()),
            date: date.map(|d| d.trim().to_owned()).filter(|d| !d.is_empty()),
        })
        .await?;
    let (doc, duplicate) = match &submitted {
        Submitted::Duplicate { doc } => (doc, true),
        Submitted::Queued { doc, .. } => (doc, false),
    };
    state
        .audit(
            &caller.0,
            "document.upload",
            serde_json::json!({
                "document_id": doc.id, "collection": doc.collection, "access": doc.access,
                "source": doc.source, "bytes": doc.size_bytes, "sha256": doc.content_hash,
                "duplicate": duplicate,
            }),
        )
        .await?;
    match submitted {
        Submitted::Duplicate { doc } => Ok(HttpResponse::Ok().json(UploadResponse {
            id: doc.id,
            job_id: None,
            status: doc.status.as_str(),
            duplicate: true,
        })),
        Submitted::Queued { doc, job } => {
            // Any replica's workers may claim it; ours start at once.
            state.queue.wake();
            info!(doc_id = %doc.id, job_id = %job.id, "upload accepted");
            Ok(HttpResponse::Accepted().json(UploadResponse {
                id: doc.id,
                job_id: Some(job.id),
                status: "queued",
                duplicate: false,
            }))
        }
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct ListQuery {
    pub collection: Option<String>,
}

pub async fn list(state: web::Data<AppState>, caller: Caller, q: web::Query<ListQuery>) -> ApiResult<HttpResponse> {
    let p = caller.0;
    let collections: Vec<String> = q.collection.clone().into_iter().collect();
    let docs = state.store.list_documents(&p.groups, &collections).await?;
    let docs: Vec<DocumentDto> = docs.into_iter().map(Into::into).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "documents": docs })))
}

fn parse_id(raw: &str) -> ApiResult<Uuid> {
    raw.parse()
        .map_err(|_| ApiError::BadRequest(format!("{raw:?} is not a valid id")))
}

/// A document the caller may see: one its groups may read, or any for an
/// admin (who manages every document's permissions: metadata, job status
/// and deletion, never its text through this route).
async fn visible_document(state: &AppState, caller: &Caller, id: Uuid) -> ApiResult<docent_core::Document> {
    let filter = AccessFilter::for_principal(&caller.0);
    let admin = caller.0.has(AccessRole::Admin);
    match state.store.get_document(id).await? {
        Some(d) if admin || filter.allows(&d.collection, &d.access, d.id) => Ok(d),
        // Invisible documents are indistinguishable from missing ones.
        _ => Err(ApiError::NotFound { what: "document" }),
    }
}

pub async fn get(state: web::Data<AppState>, caller: Caller, path: web::Path<String>) -> ApiResult<HttpResponse> {
    let id = parse_id(&path)?;
    let doc = visible_document(&state, &caller, id).await?;
    Ok(HttpResponse::Ok().json(DocumentDto::from(doc)))
}

/// `PATCH /v1/documents/{id}`: either `{"access": [...]}` (explicit
/// groups) or `{"inherit": true}` (back to the collection's groups).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessPatch {
    pub access: Option<Vec<String>>,
    pub inherit: Option<bool>,
}

/// Changes who may read a document (admins only, whatever their groups).
/// The change reaches SQL and both of this replica's indexes before the
/// response; other replicas follow the change log.
pub async fn update(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<AccessPatch>,
) -> ApiResult<HttpResponse> {
    caller.require(AccessRole::Admin)?;
    let id = parse_id(&path)?;
    let patch = body.into_inner();
    let labels = match (patch.access, patch.inherit) {
        (Some(l), None | Some(false)) => Some(crate::routes::collections::check_labels("access", l)?),
        (None, Some(true)) => None,
        _ => {
            return Err(ApiError::BadRequest(
                "send either `access` (a list of groups) or `\"inherit\": true`".to_owned(),
            ))
        }
    };
    let before = state
        .store
        .get_document(id)
        .await?
        .ok_or(ApiError::NotFound { what: "document" })?;
    let ids = state
        .ingestor
        .set_access(id, labels.as_deref(), state.ingestor.default_access())
        .await?
        .ok_or(ApiError::NotFound { what: "document" })?;
    let after = state
        .store
        .get_document(id)
        .await?
        .ok_or(ApiError::NotFound { what: "document" })?;
    state
        .audit(
            &caller.0,
            "document.access",
            serde_json::json!({
                "document_id": id, "collection": after.collection,
                "before": before.access, "after": after.access,
                "inherited": labels.is_none(), "relabelled_documents": ids,
            }),
        )
        .await?;
    Ok(HttpResponse::Ok().json(DocumentDto::from(after)))
}

pub async fn delete(state: web::Data<AppState>, caller: Caller, path: web::Path<String>) -> ApiResult<HttpResponse> {
    caller.require(AccessRole::Editor)?;
    let id = parse_id(&path)?;
    let doc = visible_document(&state, &caller, id).await?;
    state.ingestor.delete(id).await?;
    state
        .audit(
            &caller.0,
            "document.delete",
            serde_json::json!({"document_id": id, "collection": doc.collection, "title": doc.title}),
        )
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A job the caller may see (its document is visible), else 404.
async fn visible_job(state: &AppState, caller: &Caller, id: Uuid) -> ApiResult<docent_core::Job> {
    let job = state
        .store
        .get_job(id)
        .await?
        .ok_or(ApiError::NotFound { what: "job" })?;
    visible_document(state, caller, job.doc_id)
        .await
        .map_err(|_| ApiError::NotFound { what: "job" })?;
    Ok(job)
}

pub async fn job(state: web::Data<AppState>, caller: Caller, path: web::Path<String>) -> ApiResult<HttpResponse> {
    let id = parse_id(&path)?;
    let job = visible_job(&state, &caller, id).await?;
    Ok(HttpResponse::Ok().json(JobDto::from(job)))
}

/// `GET /v1/jobs/{id}/events`: server-sent `progress` events (the job as in
/// `GET /v1/jobs/{id}`) whenever its stage or progress changes, ending with
/// the terminal state. Read from SQL, so any replica can serve it.
pub async fn job_events(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = parse_id(&path)?;
    visible_job(&state, &caller, id).await?;
    let store = state.store.clone();
    let stream = futures::stream::unfold(
        (store, id, None::<(String, u32)>, false),
        |(store, id, last, finished)| async move {
            if finished {
                return None;
            }
            loop {
                let job = match store.get_job(id).await {
                    Ok(Some(j)) => j,
                    // The job (or its document) was deleted: end the stream.
                    Ok(None) | Err(_) => return None,
                };
                let key = (job.status.as_str().to_owned(), (job.progress * 1000.0) as u32);
                if last.as_ref() != Some(&key) {
                    let done = job.status.is_terminal();
                    let json = serde_json::to_string(&JobDto::from(job)).unwrap_or_else(|_| "{}".to_owned());
                    let frame = web::Bytes::from(format!("event: progress\ndata: {json}\n\n"));
                    return Some((Ok::<_, std::io::Error>(frame), (store, id, Some(key), done)));
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        },
    );
    Ok(HttpResponse::Ok()
        .insert_header(("Content-Type", "text/event-stream"))
        .insert_header(("Cache-Control", "no-cache"))
        .streaming(stream))
}
