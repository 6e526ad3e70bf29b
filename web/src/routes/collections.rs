//! Collections: the groups their documents inherit, and whether answers
//! drawn from them are shown with PHI/PII masked. Admins set them; a
//! caller sees a collection only when it shares one of its groups.

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use docent_core::{AccessRole, Principal};
use docent_store::Collection;

/// `PUT /v1/collections/{name}`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutCollection {
    /// Groups the collection's inheriting documents carry.
    pub groups: Vec<String>,
    /// Mask PHI/PII in answers drawn from this collection.
    #[serde(default)]
    pub redact_answers: bool,
}

/// Trims and checks a list of group labels: at least one, none empty or
/// over 128 bytes, no duplicates.
pub fn check_labels(field: &str, labels: Vec<String>) -> ApiResult<Vec<String>> {
    let mut out: Vec<String> = Vec::with_capacity(labels.len());
    for l in labels {
        let l = l.trim().to_owned();
        if l.is_empty() || l.len() > 128 || l.contains(',') {
            return Err(ApiError::BadRequest(format!(
                "`{field}`: a label is 1 to 128 bytes without commas, not {l:?}"
            )));
        }
        if !out.contains(&l) {
            out.push(l);
        }
    }
    if out.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "`{field}` names no group: a document nobody may read is refused"
        )));
    }
    Ok(out)
}

fn check_name(name: &str) -> ApiResult<()> {
    if name.is_empty() || name.len() > 256 || name.trim() != name {
        return Err(ApiError::BadRequest(format!("{name:?} is not a valid collection name")));
    }
    Ok(())
}

fn visible(p: &Principal, c: &Collection) -> bool {
    p.has(AccessRole::Admin) || c.groups.iter().any(|g| p.groups.contains(g))
}

pub async fn list(state: web::Data<AppState>, caller: Caller) -> ApiResult<HttpResponse> {
    let all = state.store.list_collections().await?;
    let shown: Vec<Collection> = all.into_iter().filter(|c| visible(&caller.0, c)).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "collections": shown })))
}

pub async fn get(state: web::Data<AppState>, caller: Caller, path: web::Path<String>) -> ApiResult<HttpResponse> {
    match state.store.get_collection(&path).await? {
        Some(c) if visible(&caller.0, &c) => Ok(HttpResponse::Ok().json(c)),
        _ => Err(ApiError::NotFound { what: "collection" }),
    }
}

/// Creates or changes a collection. Documents inheriting its groups are
/// relabelled in SQL and in both indexes before this answers.
pub async fn put(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<PutCollection>,
) -> ApiResult<HttpResponse> {
    caller.require(AccessRole::Admin)?;
    let name = path.into_inner();
    check_name(&name)?;
    let body = body.into_inner();
    let groups = check_labels("groups", body.groups)?;
    let before = state.store.get_collection(&name).await?;
    let (coll, relabelled) = state
        .ingestor
        .put_collection(&name, &groups, body.redact_answers)
        .await?;
    state
        .audit(
            &caller.0,
            "collection.put",
            serde_json::json!({
                "collection": name,
                "before": before.map(|b| serde_json::json!({"groups": b.groups, "redact_answers": b.redact_answers})),
                "groups": coll.groups, "redact_answers": coll.redact_answers,
                "relabelled_documents": relabelled,
            }),
        )
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "collection": coll,
        "relabelled_documents": relabelled.len(),
    })))
}
