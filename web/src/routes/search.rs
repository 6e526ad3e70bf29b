//! `POST /v1/search`: hybrid retrieval under the caller's access filter.

use crate::auth::Caller;
use crate::dto::{HitDto, SearchRequest, SearchResponse};
use crate::error::{ApiError, ApiResult};
use crate::state::{retrieval_audit, AppState};
use actix_web::{web, HttpResponse};
use docent_core::AccessFilter;
use docent_retrieve::search::Mode;

pub async fn search(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<SearchRequest>,
) -> ApiResult<HttpResponse> {
    let req = body.into_inner();
    if req.query.trim().is_empty() {
        return Err(ApiError::BadRequest("`query` is empty".to_owned()));
    }
    let k = req.k.unwrap_or(10);
    if k == 0 || k > 100 {
        return Err(ApiError::BadRequest("`k` must be between 1 and 100".to_owned()));
    }
    let mode: Mode = match req.mode.as_deref() {
        None => Mode::Hybrid,
        Some(m) => m.parse().map_err(ApiError::BadRequest)?,
    };
    let mut filter = AccessFilter::for_principal(&caller.0);
    filter.collections = req.collection.into_iter().collect();
    filter.doc_ids = req.document_ids;
    filter.tags = req.tags;
    filter.date_from = req.date_from.as_deref().map(|d| date_bound(d, false)).transpose()?;
    filter.date_to = req.date_to.as_deref().map(|d| date_bound(d, true)).transpose()?;
    let out = state.searcher.search(&req.query, &filter, k, mode).await?;
    let mut detail = retrieval_audit(&req.query, &filter, &out.hits);
    detail["mode"] = serde_json::json!(req.mode.as_deref().unwrap_or("hybrid"));
    detail["k"] = serde_json::json!(k);
    state.audit(&caller.0, "search", detail).await?;
    let masked = state.store.redacting_collections().await?;
    let masker = crate::masking::masker_for(&masked, &out.hits);
    let hits = out
        .hits
        .into_iter()
        .map(|h| {
            let from_masked = masked.contains(&h.document.collection);
            let mut dto = HitDto::from(h);
            if let (true, Some(r)) = (from_masked, masker.as_ref()) {
                crate::masking::hit(r, &mut dto);
            }
            dto
        })
        .collect();
    Ok(HttpResponse::Ok().json(SearchResponse {
        hits,
        timings_us: out.timings,
    }))
}

/// A date bound in unix seconds; a plain day as an upper bound covers the
/// whole day.
fn date_bound(s: &str, upper: bool) -> ApiResult<i64> {
    docent_core::parse_date_bound(s, upper)
        .ok_or_else(|| ApiError::BadRequest(format!("date {s:?} is neither RFC 3339 nor YYYY-MM-DD")))
}
