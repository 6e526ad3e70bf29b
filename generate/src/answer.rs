//! Answering: retrieved hits in, a checked, cited answer out.
//!
//! Retrieval is the caller's job (it owns the access filter); this module
//! abstains when there is no evidence, builds the prompt, streams the model's
//! tokens to a sink and checks the citations of the finished text.

use crate::citations::{check_scored, claims, CheckConfig, CheckedAnswer, SemanticScores, SupportModel};
use crate::prompt::{fit, Prompt, PromptBudget, Source};
use docent_core::{BackendError, BackendResult, ChatModel, GenParams, GenUsage, SearchHit, TokenSink};
use serde::Serialize;
use std::sync::Arc;
use tracing::warn;

#[derive(Debug, Clone)]
pub struct AnswerConfig {
    /// Passages put in the prompt.
    pub sources: usize,
    /// Bound on prompt tokens (by the model's tokenizer); the model's
    /// context window minus `params.max_tokens` bounds it too.
    pub max_prompt_tokens: usize,
    /// Withhold directive-like sentences of sources from the prompt.
    pub withhold_directives: bool,
    pub params: GenParams,
    pub check: CheckConfig,
    /// Abstain (no model call) when no retrieved passage has a dense cosine
    /// similarity of at least this much to the question. Calibrated with
    /// `docent eval abstention`.
    pub min_evidence: f32,
    /// When the hits carry cross-encoder scores, abstain when the best
    /// passage's relevance probability (logistic of the logit) is below
    /// this instead.
    pub min_cross_evidence: f32,
}

impl Default for AnswerConfig {
    fn default() -> Self {
        Self {
            sources: 4,
            max_prompt_tokens: 1024,
            withhold_directives: true,
            params: GenParams {
                max_tokens: 200,
                temperature: 0.0,
            },
            check: CheckConfig::default(),
            min_evidence: 0.0,
            min_cross_evidence: 0.0,
        }
    }
}

/// The strongest evidence among the hits (best dense cosine similarity).
pub fn evidence(hits: &[SearchHit]) -> f32 {
    hits.iter()
        .filter_map(|h| h.legs.dense_score)
        .fold(f32::NEG_INFINITY, f32::max)
}

/// The strongest cross-encoder evidence among the hits: the best relevance
/// probability, when the hits were reranked.
pub fn cross_evidence(hits: &[SearchHit]) -> Option<f32> {
    hits.iter()
        .filter_map(|h| h.legs.rerank_score)
        .map(|l| 1.0 / (1.0 + (-l).exp()))
        .reduce(f32::max)
}

/// Whether the evidence is too weak to answer (decided before any model
/// call): by the cross-encoder when the hits were reranked, else by dense
/// similarity.
pub fn abstains(hits: &[SearchHit], cfg: &AnswerConfig) -> bool {
    if hits.is_empty() {
        return true;
    }
    match cross_evidence(hits) {
        Some(p) => p < cfg.min_cross_evidence,
        None => evidence(hits) < cfg.min_evidence,
    }
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
    /// Prompt tokens as fitted (by the model's tokenizer when `measured`).
    pub prompt_tokens: usize,
    pub prompt_measured: bool,
    /// Source numbers whose directive-like text was withheld from the prompt.
    pub withheld: Vec<usize>,
    /// What scored semantic support in the citation check, if anything.
    pub support_model: Option<String>,
    /// The sources as the prompt held them (empty on abstention).
    #[serde(skip)]
    pub sources: Vec<Source>,
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

impl AnswerConfig {
    /// What the prompt may take.
    pub fn budget(&self) -> PromptBudget {
        PromptBudget {
            max_prompt_tokens: self.max_prompt_tokens,
            max_tokens: self.params.max_tokens as usize,
            withhold_directives: self.withhold_directives,
        }
    }
}

/// The prompt `answer` sends for these hits, or `None` when the evidence is
/// below the floor (no model call at all).
pub async fn prepare(
    model: &dyn ChatModel,
    question: &str,
    hits: &[SearchHit],
    cfg: &AnswerConfig,
) -> BackendResult<Option<Prompt>> {
    if abstains(hits, cfg) {
        return Ok(None);
    }
    let candidates = sources_from_hits(hits, cfg.sources);
    Ok(Some(fit(model, question, &candidates, cfg.budget()).await?))
}

/// Answers from `hits` (already filtered for the caller). Abstains without
/// calling the model when the evidence is below the floor. With `support`,
/// citations are checked by lexical plus semantic support.
pub async fn answer(
    model: &dyn ChatModel,
    support: Option<Arc<dyn SupportModel>>,
    question: &str,
    hits: &[SearchHit],
    cfg: &AnswerConfig,
    sink: &mut (dyn TokenSink + Send),
) -> BackendResult<Answer> {
    match prepare(model, question, hits, cfg).await? {
        Some(prompt) => generate_checked(model, support, prompt, cfg, sink).await,
        None => {
            sink.token(ABSTAIN_TEXT);
            Ok(Answer {
                text: ABSTAIN_TEXT.to_owned(),
                checked: CheckedAnswer {
                    sentences: Vec::new(),
                    citations: Vec::new(),
                },
                abstained: true,
                usage: GenUsage::default(),
                model: model.name(),
                prompt_tokens: 0,
                prompt_measured: false,
                withheld: Vec::new(),
                support_model: None,
                sources: Vec::new(),
            })
        }
    }
}

/// Generates from a prepared prompt and checks the citations.
pub async fn generate_checked(
    model: &dyn ChatModel,
    support: Option<Arc<dyn SupportModel>>,
    prompt: Prompt,
    cfg: &AnswerConfig,
    sink: &mut (dyn TokenSink + Send),
) -> BackendResult<Answer> {
    let (text, usage) = model.generate(prompt.messages, cfg.params.clone(), sink).await?;
    // Small models copy source text, the withheld marker included; it is
    // not part of the answer.
    let text = if prompt.withheld.is_empty() {
        text
    } else {
        text.replace(crate::prompt::WITHHELD, " ")
    };
    let semantic = match &support {
        Some(m) => semantic_scores(Arc::clone(m), &text, &prompt.sources).await,
        None => None,
    };
    let checked = check_scored(&text, &prompt.sources, cfg.check, semantic.as_ref());
    Ok(Answer {
        text,
        checked,
        abstained: false,
        usage,
        model: model.name(),
        prompt_tokens: prompt.tokens,
        prompt_measured: prompt.measured,
        withheld: prompt.withheld,
        support_model: semantic.is_some().then(|| support.map(|m| m.name())).flatten(),
        sources: prompt.sources,
    })
}

/// Scores every claim of `text` against every source, off the async
/// workers. A scoring failure degrades to the lexical check (logged).
pub async fn semantic_scores(model: Arc<dyn SupportModel>, text: &str, sources: &[Source]) -> Option<SemanticScores> {
    let claims = claims(text);
    if claims.is_empty() {
        return None;
    }
    let passages: Vec<String> = sources.iter().map(|s| format!("{}. {}", s.title, s.text)).collect();
    let c = claims.clone();
    let scored = tokio::task::spawn_blocking(move || model.score(&c, &passages))
        .await
        .map_err(|e| BackendError::backend("support", e.to_string()))
        .and_then(|r| r);
    match scored {
        Ok(rows) => Some(claims.into_iter().zip(rows).collect()),
        Err(e) => {
            warn!(error = %e, "semantic support scoring failed; lexical check only");
            None
        }
    }
}
