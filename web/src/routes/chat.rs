//! `POST /v1/chat`: a cited answer over server-sent events.
//!
//! Events, in order: `query` (the standalone query retrieval used, when a
//! follow-up was rewritten), `token` (`{"text": ...}`) as the model produces
//! text, then one `citations` event (checked citations and per-sentence
//! support), then `done` (usage). On failure an `error` event carries the usual error
//! body. Generation runs in its own task; when the client disconnects the
//! channel closes, the sink reports it, and the model stops. A request
//! first takes a generation slot ([`crate::admission`]; 503 `overloaded`
//! past the queue), which that task holds until it ends.

use crate::auth::Caller;
use crate::dto::{ChatRequest, CitationsEvent, DoneEvent};
use crate::error::{ApiError, ApiResult};
use crate::state::{answer_audit, retrieval_audit, AppState};
use actix_web::{web, HttpResponse};
use docent_core::{AccessFilter, TokenSink};
use docent_generate::answer::answer;
use serde::Serialize;
use tokio::sync::mpsc::UnboundedSender;
use tracing::{info, warn};

fn frame(event: &str, data: &impl Serialize) -> web::Bytes {
    let json = serde_json::to_string(data).unwrap_or_else(|_| "{}".to_owned());
    web::Bytes::from(format!("event: {event}\ndata: {json}\n\n"))
}

struct ChannelSink {
    tx: UnboundedSender<web::Bytes>,
    /// Holds text back to mask it (collections with `redact_answers`).
    mask: Option<docent_core::redact::MaskingBuffer>,
}

impl ChannelSink {
    fn send(&self, text: &str) -> bool {
        self.tx
            .send(frame("token", &serde_json::json!({ "text": text })))
            .is_ok()
    }

    /// Releases what masking held back.
    fn finish(&mut self) {
        if let Some(rest) = self.mask.as_mut().and_then(docent_core::redact::MaskingBuffer::finish) {
            self.send(&rest);
        }
    }
}

impl TokenSink for ChannelSink {
    fn token(&mut self, text: &str) -> bool {
        match crate::masking::pass(self.mask.as_mut(), text) {
            Some(ready) => self.send(&ready),
            None => !self.tx.is_closed(),
        }
    }
}

pub async fn chat(state: web::Data<AppState>, caller: Caller, body: web::Json<ChatRequest>) -> ApiResult<HttpResponse> {
    let req = body.into_inner();
    let question = req.question.trim().to_owned();
    if question.is_empty() {
        return Err(ApiError::BadRequest("`question` is empty".to_owned()));
    }
    let principal = caller.0;
    let existing = match req.conversation_id {
        Some(id) => Some(
            state
                .store
                .get_conversation(id, &principal.user)
                .await?
                .ok_or(ApiError::NotFound { what: "conversation" })?,
        ),
        None => None,
    };
    // A generation slot (or 503 `overloaded`) before anything is written;
    // held until the answer's task ends.
    let permit = state.admission.admit("chat").await?;
    let conversation = match existing {
        Some(c) => c,
        None => state.store.create_conversation(&principal.user, &question).await?,
    };
    let history: Vec<String> = state
        .store
        .messages(conversation.id)
        .await?
        .into_iter()
        .filter(|m| m.role == docent_core::Role::User)
        .map(|m| m.content)
        .collect();
    let standalone = state.standalone(&history, &question).await?;
    state
        .store
        .add_message(
            conversation.id,
            docent_core::Role::User,
            &question,
            &serde_json::json!([]),
            &[],
        )
        .await?;
    let mut filter = AccessFilter::for_principal(&principal);
    filter.collections = req.collection.into_iter().collect();
    let hits = state.retrieve_for_answer(&standalone.query, &filter, "chat").await?;
    let mut detail = retrieval_audit(&standalone.query, &filter, &hits);
    detail["question"] = serde_json::json!(question);
    detail["conversation_id"] = serde_json::json!(conversation.id);
    state.audit(&principal, "chat", detail).await?;

    let masked = state.store.redacting_collections().await?;
    let masker = crate::masking::masker_for(&masked, &hits);
    // Every document the answer may draw on, cited or not.
    let sources: Vec<uuid::Uuid> = hits
        .iter()
        .map(|h| h.document.id)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<web::Bytes>();
    if standalone.rewritten {
        let _ = tx.send(frame("query", &standalone));
    }
    let st = state.clone();
    tokio::spawn(async move {
        // Given back when this task ends: done, failed, or the client left
        // (the sink reports a closed channel and the model stops).
        let _permit = permit;
        let mut sink = ChannelSink {
            tx: tx.clone(),
            mask: crate::masking::streaming(masker.as_ref()),
        };
        let result = answer(
            st.chat.as_ref(),
            st.support.clone(),
            &standalone.query,
            &hits,
            &st.cfg.answer,
            &mut sink,
        )
        .await;
        sink.finish();
        match result {
            Ok(a) => {
                st.metrics.observe_answer("chat", &a.usage, a.abstained);
                let mut detail = answer_audit("chat", &a);
                detail["conversation_id"] = serde_json::json!(conversation.id);
                if let Err(e) = st.audit(&principal, "answer", detail).await {
                    let _ = tx.send(frame("error", &e.body()));
                    return;
                }
                if a.usage.cancelled || tx.is_closed() {
                    info!(
                        conversation = %conversation.id,
                        completion_tokens = a.usage.completion_tokens,
                        "client disconnected; generation stopped"
                    );
                    return;
                }
                let shown = if a.abstained || a.checked.sentences.is_empty() {
                    a.text.clone()
                } else {
                    a.checked.render()
                };
                let mut ev = CitationsEvent {
                    citations: a.checked.citations.into_iter().map(Into::into).collect(),
                    sentences: a.checked.sentences.into_iter().map(Into::into).collect(),
                    abstained: a.abstained,
                    withheld: a.withheld,
                    support_model: a.support_model,
                };
                let shown = crate::masking::answer(masker.as_ref(), shown, &mut ev.citations, &mut ev.sentences);
                let cites = serde_json::to_value(&ev.citations).unwrap_or_default();
                if let Err(e) = st
                    .store
                    .add_message(conversation.id, docent_core::Role::Assistant, &shown, &cites, &sources)
                    .await
                {
                    warn!(error = %e, "could not store the answer");
                }
                let _ = tx.send(frame("citations", &ev));
                let _ = tx.send(frame(
                    "done",
                    &DoneEvent {
                        conversation_id: conversation.id,
                        model: a.model,
                        prompt_tokens: a.usage.prompt_tokens,
                        completion_tokens: a.usage.completion_tokens,
                        time_to_first_token_ms: a.usage.time_to_first_token_ms,
                        total_ms: a.usage.total_ms,
                    },
                ));
            }
            Err(e) => {
                warn!(error = %e, "generation failed");
                let _ = tx.send(frame(
                    "error",
                    &serde_json::json!({"error": {"code": "generation_failed", "message": e.to_string()}}),
                ));
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
    });
    Ok(HttpResponse::Ok()
        .insert_header(("Content-Type", "text/event-stream"))
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream))
}
