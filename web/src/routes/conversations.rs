//! Conversations of the calling user: list, and one with its messages.
//! Another user's conversation is a 404, never a 403 (it does not exist for
//! them). A stored answer citing a document the caller may no longer read
//! (its labels changed, or it was deleted) is withheld.

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde_json::json;

/// Shown instead of an answer citing a document the caller may no longer
/// read.
pub const WITHHELD: &str = "[withheld: a source of this answer is no longer available to you]";

/// Documents a stored message cites (its citations' `document_id`s).
fn cited_documents(citations: &serde_json::Value) -> Vec<uuid::Uuid> {
    citations
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.get("document_id").and_then(|d| d.as_str()))
                .filter_map(|d| d.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

pub async fn list(state: web::Data<AppState>, caller: Caller) -> ApiResult<HttpResponse> {
    let user = caller.0.user;
    let convs = state.store.list_conversations(&user).await?;
    let items: Vec<_> = convs
        .into_iter()
        .map(|c| json!({"id": c.id, "title": c.title, "created_at": c.created_at, "updated_at": c.updated_at}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "conversations": items })))
}

pub async fn get(state: web::Data<AppState>, caller: Caller, path: web::Path<String>) -> ApiResult<HttpResponse> {
    let id: uuid::Uuid = path
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("{:?} is not a valid id", path.as_str())))?;
    let conv = state
        .store
        .get_conversation(id, &caller.0.user)
        .await?
        .ok_or(ApiError::NotFound { what: "conversation" })?;
    let filter = docent_core::AccessFilter::for_principal(&caller.0);
    let mut readable: std::collections::HashMap<uuid::Uuid, bool> = std::collections::HashMap::new();
    let mut messages = Vec::new();
    for m in state.store.messages(id).await? {
        // An answer is shown only while the caller may still read every
        // document it was drawn from, cited or not (labels change,
        // documents are deleted).
        let mut ok = true;
        for doc_id in cited_documents(&m.citations)
            .into_iter()
            .chain(m.sources.iter().copied())
        {
            let may = match readable.get(&doc_id) {
                Some(v) => *v,
                None => {
                    let v = state
                        .store
                        .get_document(doc_id)
                        .await?
                        .is_some_and(|d| filter.allows(&d.collection, &d.access, d.id));
                    readable.insert(doc_id, v);
                    v
                }
            };
            ok &= may;
        }
        messages.push(if ok {
            json!({"id": m.id, "role": m.role, "content": m.content, "citations": m.citations, "created_at": m.created_at})
        } else {
            json!({"id": m.id, "role": m.role, "content": WITHHELD, "citations": [], "withheld": true, "created_at": m.created_at})
        });
    }
    Ok(HttpResponse::Ok().json(json!({
        "id": conv.id, "title": conv.title, "created_at": conv.created_at, "updated_at": conv.updated_at,
        "messages": messages,
    })))
}
