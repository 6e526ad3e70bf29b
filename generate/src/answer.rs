//! Answering: retrieved hits in, a checked, cited answer out.
//!
//! Retrieval is the caller's job (it owns the access filter); this module
//! abstains when there is no evidence, builds the prompt, streams the model's
//! tokens to a sink and checks the citations of the finished text.

use crate::citations::{check, CheckConfig, CheckedAnswer};
use crate::prompt::{build_messages, Source};
use docent_core::{BackendResult, ChatModel, GenParams, GenUsage, SearchHit, TokenSink};
use serde::Serialize;

#[derive(Debug, Clone)]
pub struct AnswerConfig {
    /// Passages put in the prompt.
    pub sources: usize,
    /// Bound on the total source text in the prompt.
    pub max_source_chars: usize,
    pub params: GenParams,
    pub check: CheckConfig,
    /// Abstain (no model call) when no retrieved passage has a dense cosine
    /// similarity of at least this much to the question. Calibrated with
    /// `docent eval abstention`.
    pub min_evidence: f32,
}

impl Default for AnswerConfig {
    fn default() -> Self {
        Self {
            sources: 4,
            max_source_chars: 3000,
            params: GenParams {
                max_tokens: 200,
                temperature: 0.0,
            },
            check: CheckConfig::default(),
            min_evidence: 0.0,
        }
    }
}

/// The strongest evidence among the hits (best dense cosine similarity).
pub fn evidence(hits: &[SearchHit]) -> f32 {
    hits.iter()
        .filter_map(|h| h.legs.dense_score)
        .fold(f32::NEG_INFINITY, f32::max)
}

/// What the service says when the caller's documents hold no evidence.
pub const ABSTAIN_TEXT: &str = "The documents available to you do not cover this question.";

#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub text: String,
    pub checked: CheckedAnswer,
    /// True when no model was called for lack of evidence.
    pub abstained: bool,
    pub usage: GenUsage,
    pub model: String,
}

/// Numbers hits 1..n as prompt sources.
pub fn sources_from_hits(hits: &[SearchHit], n: usize) -> Vec<Source> {
    hits.iter()
        .take(n)
        .enumerate()
        .map(|(i, h)| Source {
            n: i + 1,
            chunk_id: h.chunk.id,
            doc_id: h.document.id,
            title: h.document.title.clone(),
            page: h.chunk.page,
            text: h.chunk.text.clone(),
        })
        .collect()
}

pub async fn answer(
    model: &dyn ChatModel,
    question: &str,
    hits: &[SearchHit],
    cfg: &AnswerConfig,
    sink: &mut (dyn TokenSink + Send),
) -> BackendResult<Answer> {
    let sources = if evidence(hits) < cfg.min_evidence {
        Vec::new()
    } else {
        sources_from_hits(hits, cfg.sources)
    };
    if sources.is_empty() {
        sink.token(ABSTAIN_TEXT);
        return Ok(Answer {
            text: ABSTAIN_TEXT.to_owned(),
            checked: CheckedAnswer {
                sentences: Vec::new(),
                citations: Vec::new(),
            },
            abstained: true,
            usage: GenUsage::default(),
            model: model.name(),
        });
    }
    let messages = build_messages(question, &sources, cfg.max_source_chars);
    let (text, usage) = model.generate(messages, cfg.params.clone(), sink).await?;
    let checked = check(&text, &sources, cfg.check);
    Ok(Answer {
        text,
        checked,
        abstained: false,
        usage,
        model: model.name(),
    })
}
