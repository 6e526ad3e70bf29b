//! Citation checking.
//!
//! The answer is split into sentences. Each `[n]` marker is mapped to source
//! `n`; a marker for a source that does not exist is dropped. Each
//! (sentence, source) pair is scored by lexical support: the share of the
//! sentence's content words found in the passage (stemmed by a crude suffix
//! strip). A cited source below `drop_below` is dropped; a sentence without
//! citations gets the best source above `attach_above`; a sentence left with
//! no citation is flagged unsupported. The supporting span is the passage
//! sentence with the highest overlap.

use crate::prompt::Source;
use serde::Serialize;
use std::collections::HashSet;

#[derive(Debug, Clone, Copy)]
pub struct CheckConfig {
    pub drop_below: f32,
    pub attach_above: f32,
    /// A cited source is also dropped when another source supports the
    /// sentence at least `attach_above` and by this much more: the model
    /// pointed at the wrong passage (the better one is attached instead).
    pub repoint_margin: f32,
}

impl Default for CheckConfig {
    fn default() -> Self {
        Self {
            drop_below: 0.2,
            attach_above: 0.5,
            repoint_margin: 0.1,
        }
    }
}

/// Semantic support of each claim by each source, in 0..=1, from a model
/// (embedding similarity or a cross-encoder). Keyed by the claim's text as
/// [`claims`] returns it; columns follow the order of the sources.
pub type SemanticScores = std::collections::HashMap<String, Vec<f32>>;

/// Scores claims against passages with a model.
pub trait SupportModel: Send + Sync {
    /// `out[i][j]`: how well passage `j` supports claim `i`, in 0..=1.
    fn score(&self, claims: &[String], passages: &[String]) -> docent_core::BackendResult<Vec<Vec<f32>>>;
    fn name(&self) -> String;
}

/// The claims (sentences without their markers) of an answer, in order.
pub fn claims(answer: &str) -> Vec<String> {
    attach_markers(answer)
        .into_iter()
        .map(|(s, e)| strip_markers(&answer[s..e]).0)
        .filter(|t| !t.trim().is_empty() && content_words(t).len() >= 2)
        .collect()
}

/// Sentence spans of an answer, with markers that open a sentence moved to
/// the previous one ("... green. [1] Next").
fn attach_markers(answer: &str) -> Vec<(usize, usize)> {
    let mut spans = sentence_spans(answer);
    for i in 1..spans.len() {
        let text = &answer[spans[i].0..spans[i].1];
        let lead = text.len() - text.trim_start().len();
        let t = text.trim_start();
        if t.starts_with('[') {
            if let Some(close) = t.find(']') {
                let cut = spans[i].0 + lead + close + 1;
                spans[i - 1].1 = cut;
                spans[i].0 = cut;
            }
        }
    }
    spans
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Citation {
    pub n: usize,
    pub chunk_id: uuid::Uuid,
    pub doc_id: uuid::Uuid,
    pub title: String,
    pub page: Option<u32>,
    pub passage: String,
    /// Byte span of the supporting sentence inside `passage`.
    pub span: (usize, usize),
    /// Best support score among the sentences citing it.
    pub support: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sentence {
    /// The sentence with its markers removed.
    pub text: String,
    pub citations: Vec<usize>,
    pub supported: bool,
    /// Citations the model gave that did not hold.
    pub dropped: Vec<usize>,
    /// Citations the checker attached.
    pub attached: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckedAnswer {
    pub sentences: Vec<Sentence>,
    pub citations: Vec<Citation>,
}

impl CheckedAnswer {
    pub fn unsupported_count(&self) -> usize {
        self.sentences.iter().filter(|s| !s.supported).count()
    }

    /// The answer as plain text with the checked `[n]` markers after each
    /// sentence (what OpenAI-style clients display).
    pub fn render(&self) -> String {
        let mut out = String::new();
        for s in &self.sentences {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(s.text.trim());
            for n in &s.citations {
                out.push_str(&format!(" [{n}]"));
            }
        }
        out
    }
}

const STOP: &[&str] = &[
    "the",
    "and",
    "for",
    "are",
    "was",
    "were",
    "with",
    "that",
    "this",
    "from",
    "have",
    "has",
    "had",
    "not",
    "but",
    "its",
    "it's",
    "they",
    "their",
    "them",
    "which",
    "what",
    "when",
    "where",
    "who",
    "whom",
    "how",
    "why",
    "can",
    "could",
    "would",
    "should",
    "will",
    "shall",
    "may",
    "might",
    "must",
    "been",
    "being",
    "into",
    "onto",
    "than",
    "then",
    "there",
    "these",
    "those",
    "also",
    "such",
    "any",
    "all",
    "each",
    "other",
    "some",
    "more",
    "most",
    "about",
    "over",
    "under",
    "between",
    "our",
    "your",
    "you",
    "his",
    "her",
    "she",
    "him",
    "one",
    "only",
    "very",
    "does",
    "did",
    "doing",
    "done",
    "source",
    "sources",
    "document",
    "documents",
    "according",
];

fn stem(w: &str) -> String {
    for suf in ["ing", "ed", "es", "s"] {
        if w.len() > suf.len() + 3 && w.ends_with(suf) {
            return w[..w.len() - suf.len()].to_owned();
        }
    }
    w.to_owned()
}

pub fn content_words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| (w.chars().count() >= 3 || w.chars().all(char::is_numeric)) && !STOP.contains(&w.as_str()))
        .map(|w| stem(&w))
        .collect()
}

/// Share of the sentence's content words present in the passage (0..=1).
pub fn support(sentence: &str, passage_words: &HashSet<String>) -> f32 {
    let words = content_words(sentence);
    if words.is_empty() {
        return 0.0;
    }
    let hit = words.iter().filter(|w| passage_words.contains(*w)).count();
    hit as f32 / words.len() as f32
}

/// Splits text into sentences with their byte spans.
pub fn sentence_spans(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes: Vec<(usize, char)> = text.char_indices().collect();
    for (i, &(pos, c)) in bytes.iter().enumerate() {
        let end_here = match c {
            '\n' => true,
            '.' | '!' | '?' => {
                let next = bytes.get(i + 1).map(|(_, n)| *n);
                // Keep markers right after the full stop in this sentence:
                // "It is green. [1]" is handled by the marker pass.
                next.is_none_or(char::is_whitespace)
            }
            _ => false,
        };
        if end_here {
            let end = pos + c.len_utf8();
            if !text[start..end].trim().is_empty() {
                out.push((start, end));
            }
            start = end;
        }
    }
    if !text[start..].trim().is_empty() {
        out.push((start, text.len()));
    }
    out
}

/// Extracts `[n]`, `[n, m]` markers; returns the text without them.
fn strip_markers(s: &str) -> (String, Vec<usize>) {
    let mut out = String::with_capacity(s.len());
    let mut nums = Vec::new();
    let mut rest = s;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find(']') {
            Some(close) => {
                let inner = &after[..close];
                let parsed: Option<Vec<usize>> = inner
                    .split([',', ';'])
                    .map(|p| p.trim().trim_start_matches("Source").trim().parse::<usize>().ok())
                    .collect();
                match parsed {
                    Some(ns) if !ns.is_empty() => nums.extend(ns),
                    _ => {
                        out.push('[');
                        out.push_str(inner);
                        out.push(']');
                    }
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    let text = out.split_whitespace().collect::<Vec<_>>().join(" ");
    let text = text.replace(" .", ".").replace(" ,", ",");
    (text, nums)
}

/// Checks an answer against the sources it was given, by lexical support.
pub fn check(answer: &str, sources: &[Source], cfg: CheckConfig) -> CheckedAnswer {
    check_scored(answer, sources, cfg, None)
}

/// Checks an answer; with `semantic`, a pair's support is the mean of its
/// lexical and semantic scores.
pub fn check_scored(
    answer: &str,
    sources: &[Source],
    cfg: CheckConfig,
    semantic: Option<&SemanticScores>,
) -> CheckedAnswer {
    let words: Vec<HashSet<String>> = sources
        .iter()
        .map(|s| content_words(&format!("{} {}", s.title, s.text)).into_iter().collect())
        .collect();
    let index_of = |n: usize| sources.iter().position(|s| s.n == n);
    let score = |text: &str, i: usize| {
        let lexical = support(text, &words[i]);
        match semantic.and_then(|m| m.get(text)).and_then(|row| row.get(i)) {
            Some(&sem) => (lexical + sem.clamp(0.0, 1.0)) / 2.0,
            None => lexical,
        }
    };
    let spans = attach_markers(answer);

    let mut sentences = Vec::new();
    let mut best: Vec<Option<(f32, usize)>> = vec![None; sources.len()];
    for (s, e) in spans {
        let (text, nums) = strip_markers(&answer[s..e]);
        if text.trim().is_empty() {
            continue;
        }
        let trivial = content_words(&text).len() < 2;
        let mut cited = Vec::new();
        let mut dropped = Vec::new();
        let mut attached = Vec::new();
        for n in nums {
            if cited.contains(&n) || dropped.contains(&n) {
                continue;
            }
            match index_of(n) {
                Some(i) if trivial || score(&text, i) >= cfg.drop_below => cited.push(n),
                _ => dropped.push(n),
            }
        }
        if !trivial && !cited.is_empty() {
            let best = sources
                .iter()
                .enumerate()
                .map(|(i, src)| (score(&text, i), src.n))
                .max_by(|a, b| a.0.total_cmp(&b.0));
            if let Some((top, top_n)) = best.filter(|(top, _)| *top >= cfg.attach_above) {
                cited.retain(|&n| {
                    let keep = n == top_n || index_of(n).is_some_and(|i| top - score(&text, i) < cfg.repoint_margin);
                    if !keep {
                        dropped.push(n);
                    }
                    keep
                });
            }
        }
        if cited.is_empty() && !trivial {
            let scored = sources
                .iter()
                .enumerate()
                .map(|(i, src)| (score(&text, i), src.n))
                .max_by(|a, b| a.0.total_cmp(&b.0));
            if let Some((sc, n)) = scored {
                if sc >= cfg.attach_above {
                    cited.push(n);
                    attached.push(n);
                }
            }
        }
        for &n in &cited {
            if let Some(i) = index_of(n) {
                let sc = score(&text, i);
                if best[i].is_none_or(|(b, _)| sc > b) {
                    best[i] = Some((sc, sentences.len()));
                }
            }
        }
        sentences.push(Sentence {
            supported: !cited.is_empty() || trivial,
            text,
            citations: cited,
            dropped,
            attached,
        });
    }

    let mut citations = Vec::new();
    for (i, src) in sources.iter().enumerate() {
        let Some((score, si)) = best[i] else { continue };
        let span = best_span(&sentences[si].text, &src.text);
        citations.push(Citation {
            n: src.n,
            chunk_id: src.chunk_id,
            doc_id: src.doc_id,
            title: src.title.clone(),
            page: src.page,
            passage: src.text.clone(),
            span,
            support: score,
        });
    }
    CheckedAnswer { sentences, citations }
}

/// The passage sentence that best supports `claim`.
fn best_span(claim: &str, passage: &str) -> (usize, usize) {
    let claim_words: HashSet<String> = content_words(claim).into_iter().collect();
    sentence_spans(passage)
        .into_iter()
        .map(|(s, e)| {
            let w = content_words(&passage[s..e]);
            let hit = w.iter().filter(|x| claim_words.contains(*x)).count();
            (hit, s, e)
        })
        .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
        .map(|(_, s, e)| {
            let t = &passage[s..e];
            let lead = t.len() - t.trim_start().len();
            (s + lead, s + lead + t.trim().len())
        })
        .unwrap_or((0, passage.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(n: usize, page: u32, text: &str) -> Source {
        Source {
            n,
            chunk_id: uuid::Uuid::from_u128(n as u128),
            doc_id: uuid::Uuid::from_u128(100),
            title: "Atlas".into(),
            page: Some(page),
            text: text.into(),
        }
    }

    #[test]
    fn valid_citation_maps_to_its_page() {
        let s = vec![
            src(1, 1, "Zorblax exports copper and tin."),
            src(2, 2, "The capital of Zorblax is Quintavelle. It lies on a river."),
        ];
        let a = check("The capital of Zorblax is Quintavelle [2].", &s, CheckConfig::default());
        assert_eq!(a.sentences.len(), 1);
        assert_eq!(a.sentences[0].citations, vec![2]);
        assert!(a.sentences[0].supported);
        assert_eq!(a.citations.len(), 1);
        assert_eq!(a.citations[0].page, Some(2));
        let (s0, e0) = a.citations[0].span;
        assert_eq!(
            &a.citations[0].passage[s0..e0],
            "The capital of Zorblax is Quintavelle."
        );
    }

    #[test]
    fn wrong_citation_is_dropped_and_right_one_attached() {
        let s = vec![
            src(1, 1, "Zorblax exports copper and tin."),
            src(2, 2, "The capital of Zorblax is Quintavelle."),
        ];
        let a = check("The capital city is Quintavelle [1].", &s, CheckConfig::default());
        assert_eq!(a.sentences[0].dropped, vec![1]);
        assert_eq!(a.sentences[0].attached, vec![2]);
        assert_eq!(a.citations.iter().map(|c| c.n).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn unsupported_sentence_is_flagged() {
        let s = vec![src(1, 1, "Zorblax exports copper and tin.")];
        let a = check(
            "Bananas grow on Mars in winter [1]. Zorblax exports copper [1].",
            &s,
            CheckConfig::default(),
        );
        assert_eq!(a.sentences.len(), 2);
        assert!(!a.sentences[0].supported);
        assert_eq!(a.sentences[0].dropped, vec![1]);
        assert!(a.sentences[1].supported);
        assert_eq!(a.unsupported_count(), 1);
    }

    #[test]
    fn render_puts_checked_markers_after_sentences() {
        let s = vec![src(1, 1, "Zorblax exports copper and tin.")];
        let a = check(
            "Zorblax exports copper [1]. Bananas grow on Mars [1].",
            &s,
            CheckConfig::default(),
        );
        assert_eq!(a.render(), "Zorblax exports copper. [1] Bananas grow on Mars.");
    }

    #[test]
    fn semantic_scores_rescue_a_paraphrase_and_sink_a_lookalike() {
        let s = vec![
            src(1, 1, "Quintavelle straddles the Orn, crossed by two stone bridges."),
            src(2, 2, "Quintavelle bridges tolls were abolished in 1950."),
        ];
        let answer = "The city sits on both banks of a river [1]. Quintavelle hosts a jazz festival [2].";
        let lexical = check(answer, &s, CheckConfig::default());
        assert!(
            !lexical.sentences[0].supported,
            "no shared words: lexical alone drops it"
        );
        assert!(
            lexical.sentences[1].supported,
            "one shared name in four words: lexical alone keeps it"
        );

        let claims = claims(answer);
        assert_eq!(claims.len(), 2);
        let mut sem = SemanticScores::new();
        sem.insert(claims[0].clone(), vec![0.9, 0.1]);
        sem.insert(claims[1].clone(), vec![0.1, 0.05]);
        let a = check_scored(answer, &s, CheckConfig::default(), Some(&sem));
        assert_eq!(a.sentences[0].citations, vec![1]);
        assert!(a.sentences[0].supported);
        assert!(a.sentences[1].citations.is_empty());
        assert_eq!(a.sentences[1].dropped, vec![2]);
        assert!(!a.sentences[1].supported);
    }

    #[test]
    fn a_citation_of_a_much_weaker_source_is_repointed() {
        let s = vec![
            src(1, 1, "Zorblax fever is common in Quintavelle."),
            src(2, 2, "The quarantine period for Zorblax fever is eleven days."),
        ];
        // [1] shares "Zorblax fever" (support 0.4, above drop_below) but [2]
        // holds the whole claim (1.0): the citation moves to [2].
        let a = check(
            "The Zorblax fever quarantine lasts eleven days [1].",
            &s,
            CheckConfig::default(),
        );
        assert_eq!(a.sentences[0].dropped, vec![1], "{a:?}");
        assert_eq!(a.sentences[0].citations, vec![2], "{a:?}");
        assert_eq!(a.sentences[0].attached, vec![2], "{a:?}");
        // Two sources that support it about equally both stay.
        let s = vec![
            src(1, 1, "The quarantine for Zorblax fever lasts eleven days."),
            src(2, 2, "The quarantine period for Zorblax fever is eleven days."),
        ];
        let a = check(
            "The Zorblax fever quarantine lasts eleven days [1].",
            &s,
            CheckConfig::default(),
        );
        assert_eq!(a.sentences[0].citations, vec![1], "{a:?}");
        assert!(a.sentences[0].dropped.is_empty(), "{a:?}");
    }

    #[test]
    fn out_of_range_and_trailing_markers() {
        let s = vec![src(1, 3, "Quintavelle has two bridges.")];
        let a = check("Quintavelle has two bridges. [1] [7]", &s, CheckConfig::default());
        assert_eq!(a.sentences.len(), 1);
        assert_eq!(a.sentences[0].citations, vec![1]);
        let a = check("Quintavelle has two bridges [1, 7].", &s, CheckConfig::default());
        assert_eq!(a.sentences[0].dropped, vec![7]);
    }
}
