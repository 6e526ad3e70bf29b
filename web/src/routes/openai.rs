//! OpenAI-compatible endpoints, so existing clients (the OpenAI SDKs, Open
//! WebUI, LibreChat) can use docent as a model: `/v1/chat/completions`
//! (retrieval applied; checked `[n]` markers in the content and an extra
//! `citations` field), `/v1/models` and `/v1/embeddings`.

use crate::auth::Caller;
use crate::dto::{CitationDto, SentenceDto};
use crate::error::{ApiError, ApiResult};
use crate::state::{answer_audit, retrieval_audit, AppState};
use actix_web::{web, HttpResponse};
use docent_core::{AccessFilter, TokenSink};
use docent_generate::answer::answer;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Deserialize)]
pub struct ChatMessageIn {
    pub role: String,
    #[serde(default)]
    pub content: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub struct ChatCompletionRequest {
    /// Accepted for compatibility; docent answers with its configured model.
    #[serde(default)]
    pub model: Option<String>,
    pub messages: Vec<ChatMessageIn>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub max_completion_tokens: Option<u32>,
    #[serde(default)]
    pub temperature: Option<f32>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Text of a message content: a string, or an array of `{type: text}` parts.
fn content_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(|t| t.as_str()))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

struct ChunkSink {
    tx: tokio::sync::mpsc::UnboundedSender<web::Bytes>,
    id: String,
    model: String,
    created: u64,
    /// Holds text back to mask it (collections with `redact_answers`).
    mask: Option<docent_core::redact::MaskingBuffer>,
}

impl ChunkSink {
    fn send(&self, text: &str) -> bool {
        let chunk = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": null}],
        });
        self.tx.send(data(&chunk)).is_ok()
    }

    /// Releases what masking held back.
    fn finish(&mut self) {
        if let Some(rest) = self.mask.as_mut().and_then(docent_core::redact::MaskingBuffer::finish) {
            self.send(&rest);
        }
    }
}

fn data(v: &serde_json::Value) -> web::Bytes {
    web::Bytes::from(format!("data: {v}\n\n"))
}

impl TokenSink for ChunkSink {
    fn token(&mut self, text: &str) -> bool {
        match crate::masking::pass(self.mask.as_mut(), text) {
            Some(ready) => self.send(&ready),
            None => !self.tx.is_closed(),
        }
    }
}

struct NullSink;

impl TokenSink for NullSink {
    fn token(&mut self, _: &str) -> bool {
        true
    }
}

pub async fn chat_completions(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<ChatCompletionRequest>,
) -> ApiResult<HttpResponse> {
    let req = body.into_inner();
    let mut user_turns: Vec<String> = req
        .messages
        .iter()
        .filter(|m| m.role == "user")
        .filter_map(|m| m.content.as_ref())
        .map(content_text)
        .collect();
    let question = user_turns.pop().unwrap_or_default();
    if question.trim().is_empty() {
        return Err(ApiError::BadRequest(
            "`messages` needs a user message with text".to_owned(),
        ));
    }
    // A generation slot (or 503 `overloaded`), held until the answer ends:
    // by this handler, or by the task that streams it.
    let permit = state.admission.admit("completions").await?;
    let mut cfg = state.cfg.answer.clone();
    if let Some(m) = req.max_completion_tokens.or(req.max_tokens) {
        cfg.params.max_tokens = m.clamp(1, 4096);
    }
    if let Some(t) = req.temperature {
        cfg.params.temperature = t.clamp(0.0, 2.0);
    }
    let filter = AccessFilter::for_principal(&caller.0);
    // Earlier user turns make a follow-up standalone.
    let standalone = state.standalone(&user_turns, &question).await?;
    let question = standalone.query.clone();
    let hits = state.retrieve_for_answer(&question, &filter, "completions").await?;
    state
        .audit(&caller.0, "completion", retrieval_audit(&question, &filter, &hits))
        .await?;
    let masked = state.store.redacting_collections().await?;
    let masker = crate::masking::masker_for(&masked, &hits);
    let model = state.chat.name();
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = now();

    if !req.stream {
        let a = answer(
            state.chat.as_ref(),
            state.support.clone(),
            &question,
            &hits,
            &cfg,
            &mut NullSink,
        )
        .await?;
        state.metrics.observe_answer("completions", &a.usage, a.abstained);
        state
            .audit(&caller.0, "answer", answer_audit("completions", &a))
            .await?;
        let content = if a.abstained || a.checked.sentences.is_empty() {
            a.text.clone()
        } else {
            a.checked.render()
        };
        let mut citations: Vec<CitationDto> = a.checked.citations.into_iter().map(Into::into).collect();
        let mut sentences: Vec<SentenceDto> = a.checked.sentences.into_iter().map(Into::into).collect();
        let content = crate::masking::answer(masker.as_ref(), content, &mut citations, &mut sentences);
        drop(permit);
        return Ok(HttpResponse::Ok().json(json!({
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": a.usage.prompt_tokens,
                "completion_tokens": a.usage.completion_tokens,
                "total_tokens": a.usage.prompt_tokens + a.usage.completion_tokens,
            },
            "citations": citations,
            "sentences": sentences,
            "abstained": a.abstained,
            "query": standalone,
        })));
    }

    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<web::Bytes>();
    let st = state.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let mut sink = ChunkSink {
            tx: tx.clone(),
            id: id.clone(),
            model: model.clone(),
            created,
            mask: crate::masking::streaming(masker.as_ref()),
        };
        let result = answer(st.chat.as_ref(), st.support.clone(), &question, &hits, &cfg, &mut sink).await;
        sink.finish();
        match result {
            Ok(a) => {
                st.metrics.observe_answer("completions", &a.usage, a.abstained);
                if let Err(e) = st.audit(&caller.0, "answer", answer_audit("completions", &a)).await {
                    let _ = tx.send(data(&e.body()));
                    let _ = tx.send(web::Bytes::from_static(b"data: [DONE]\n\n"));
                    return;
                }
                if a.usage.cancelled {
                    return;
                }
                let content = if a.abstained || a.checked.sentences.is_empty() {
                    a.text.clone()
                } else {
                    a.checked.render()
                };
                let mut citations: Vec<CitationDto> = a.checked.citations.into_iter().map(Into::into).collect();
                let mut sentences: Vec<SentenceDto> = a.checked.sentences.into_iter().map(Into::into).collect();
                let content = crate::masking::answer(masker.as_ref(), content, &mut citations, &mut sentences);
                let last = json!({
                    "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                    "citations": citations,
                    "sentences": sentences,
                    "abstained": a.abstained,
                    // The answer with checked markers, for clients that
                    // show it after the stream.
                    "checked_content": content,
                    "query": standalone,
                    "usage": {
                        "prompt_tokens": a.usage.prompt_tokens,
                        "completion_tokens": a.usage.completion_tokens,
                        "total_tokens": a.usage.prompt_tokens + a.usage.completion_tokens,
                    },
                });
                let _ = tx.send(data(&last));
            }
            Err(e) => {
                let _ = tx.send(data(
                    &json!({"error": {"code": "generation_failed", "message": e.to_string()}}),
                ));
            }
        }
        let _ = tx.send(web::Bytes::from_static(b"data: [DONE]\n\n"));
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
    });
    Ok(HttpResponse::Ok()
        .insert_header(("Content-Type", "text/event-stream"))
        .insert_header(("Cache-Control", "no-cache"))
        .streaming(stream))
}

/// The served models. Besides the OpenAI fields, each entry carries its
/// provenance (file, size, sha256, architecture, quantization, license)
/// under `docent`, for an SBOM.
pub async fn models(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let models = state.provenance.get().await?;
    let provenance = |role: &str| {
        models
            .iter()
            .find(|m| m.get("role").and_then(|r| r.as_str()) == Some(role))
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    };
    let mut data = vec![
        json!({"id": state.chat.name(), "object": "model", "created": 0, "owned_by": "docent", "docent": provenance("chat")}),
        json!({"id": state.searcher.embedder().model_id(), "object": "model", "created": 0, "owned_by": "docent", "docent": provenance("embedding")}),
    ];
    if let Some(r) = state.searcher.reranker().or(state.evidence.as_ref()) {
        data.push(json!({"id": r.model_id(), "object": "model", "created": 0, "owned_by": "docent", "docent": provenance("reranker")}));
    }
    Ok(HttpResponse::Ok().json(json!({"object": "list", "data": data})))
}

#[derive(Debug, Deserialize)]
pub struct EmbeddingsRequest {
    pub input: serde_json::Value,
    /// Accepted for compatibility; docent serves its one configured model.
    #[serde(default)]
    pub model: Option<String>,
}

#[derive(Debug, Serialize)]
struct EmbeddingItem {
    object: &'static str,
    index: usize,
    embedding: Vec<f32>,
}

pub async fn embeddings(state: web::Data<AppState>, body: web::Json<EmbeddingsRequest>) -> ApiResult<HttpResponse> {
    let req = body.into_inner();
    let inputs: Vec<String> = match req.input {
        serde_json::Value::String(s) => vec![s],
        serde_json::Value::Array(items) => items
            .into_iter()
            .map(|v| match v {
                serde_json::Value::String(s) => Ok(s),
                _ => Err(ApiError::BadRequest(
                    "`input` must be a string or an array of strings".to_owned(),
                )),
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(ApiError::BadRequest(
                "`input` must be a string or an array of strings".to_owned(),
            ))
        }
    };
    if inputs.is_empty() || inputs.len() > 2048 {
        return Err(ApiError::BadRequest("`input` must hold 1 to 2048 strings".to_owned()));
    }
    let embedder = state.searcher.embedder().clone();
    let chars: usize = inputs.iter().map(String::len).sum();
    let vectors = tokio::task::spawn_blocking(move || embedder.embed_passages(&inputs))
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))??;
    let data: Vec<EmbeddingItem> = vectors
        .into_iter()
        .enumerate()
        .map(|(index, embedding)| EmbeddingItem {
            object: "embedding",
            index,
            embedding,
        })
        .collect();
    // Token counts are approximated from characters (4 per token).
    let tokens = chars.div_ceil(4);
    Ok(HttpResponse::Ok().json(json!({
        "object": "list",
        "data": data,
        "model": state.searcher.embedder().model_id(),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })))
}
