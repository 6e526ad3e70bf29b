//! Conversations of the calling user: list, and one with its messages.
//! Another user's conversation is a 404, never a 403 (it does not exist for
//! them).

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde_json::json;

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
    let user = caller.0.user;
    let conv = state
        .store
        .get_conversation(id, &user)
        .await?
        .ok_or(ApiError::NotFound { what: "conversation" })?;
    let messages: Vec<_> = state
        .store
        .messages(id)
        .await?
        .into_iter()
        .map(|m| json!({"id": m.id, "role": m.role, "content": m.content, "citations": m.citations, "created_at": m.created_at}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "id": conv.id, "title": conv.title, "created_at": conv.created_at, "updated_at": conv.updated_at,
        "messages": messages,
    })))
}
