//! Follow-up questions rewritten into standalone queries before retrieval.
//!
//! "And for children?" retrieves nothing useful on its own. Two strategies:
//!
//! - `merge` (default): a question that reads as a follow-up (a leading
//!   connective, a pronoun pointing back, or too few content words to stand
//!   alone) is joined to the standalone form of the previous question.
//!   Deterministic, instant, and what hybrid retrieval needs: both the topic
//!   words and the new constraint are in the query.
//! - `model`: the chat model writes the standalone question. Worth it with a
//!   capable model (an upstream cluster); its output is validated (one
//!   line, bounded length, keeps words of both questions) and falls back to
//!   `merge` when it fails validation.

use crate::citations::content_words;
use docent_core::{BackendResult, ChatMessage, ChatModel, GenParams, Role, TokenSink};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewriteMode {
    Off,
    Merge,
    Model,
}

impl RewriteMode {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "off" => Some(Self::Off),
            "merge" => Some(Self::Merge),
            "model" => Some(Self::Model),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Standalone {
    /// The query used for retrieval and put to the model.
    pub query: String,
    /// Whether it differs from what the user typed.
    pub rewritten: bool,
    /// "none", "merge" or "model".
    pub method: &'static str,
}

const CONNECTIVES: &[&str] = &[
    "and",
    "also",
    "or",
    "but",
    "what about",
    "how about",
    "what of",
    "and what",
    "then",
    "so",
    "same for",
    "what if",
    "in that case",
    "for",
];

const BACK_REFERENCES: &[&str] = &[
    "it",
    "its",
    "it's",
    "they",
    "them",
    "their",
    "theirs",
    "this",
    "that",
    "these",
    "those",
    "he",
    "she",
    "his",
    "her",
    "there",
    "such",
    "same",
    "the former",
    "the latter",
];

const QUESTION_WORDS: &[&str] = &[
    "what", "who", "whom", "whose", "when", "where", "why", "how", "which", "is", "are", "was", "were", "does", "do",
    "did", "can", "could", "should", "will", "would", "may", "list", "define", "explain", "describe",
];

fn words(q: &str) -> Vec<String> {
    q.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Whether `q` leans on an earlier question.
pub fn is_follow_up(q: &str) -> bool {
    let w = words(q);
    if w.is_empty() {
        return false;
    }
    let lower = w.join(" ");
    let leads = CONNECTIVES
        .iter()
        .any(|c| lower == *c || lower.starts_with(&format!("{c} ")));
    let points_back = w.iter().any(|x| BACK_REFERENCES.contains(&x.as_str()))
        || BACK_REFERENCES
            .iter()
            .filter(|b| b.contains(' '))
            .any(|b| lower.contains(*b));
    // A fragment ("side effects?") leans on what came before; a short
    // question of its own ("What is MERS?") does not.
    let asks = w.first().is_some_and(|f| QUESTION_WORDS.contains(&f.as_str()));
    let thin = content_words(q).len() < 3 && !asks;
    leads || (points_back && w.len() <= 12) || thin
}

/// Standalone form by merging: previous user questions, oldest first, then
/// the new one.
pub fn merge(history: &[String], q: &str) -> Standalone {
    // The standalone form of the last question, built forward: a chain of
    // follow-ups hangs off the last question that stood alone. At most the
    // base and two follow-ups are kept, so the query does not grow forever.
    let mut chain: Vec<&str> = Vec::new();
    for h in history {
        let h = h.trim();
        if h.is_empty() {
            continue;
        }
        if chain.is_empty() || !is_follow_up(h) {
            chain = vec![h];
        } else {
            chain.push(h);
        }
    }
    let q = q.trim();
    if chain.is_empty() || !is_follow_up(q) {
        return Standalone {
            query: q.to_owned(),
            rewritten: false,
            method: "none",
        };
    }
    chain.push(q);
    let keep = if chain.len() > 3 {
        let mut k = vec![chain[0]];
        k.extend_from_slice(&chain[chain.len() - 2..]);
        k
    } else {
        chain
    };
    Standalone {
        query: keep.join(" "),
        rewritten: true,
        method: "merge",
    }
}

struct Collect(String);

impl TokenSink for Collect {
    fn token(&mut self, text: &str) -> bool {
        self.0.push_str(text);
        self.0.len() < 1000
    }
}

pub const REWRITE_PROMPT: &str = "Rewrite the user's last question so it can be understood without the conversation. \
Keep its meaning. Reply with the rewritten question only, on one line.";

/// Checks a model's rewrite: one non-empty line, not much longer than the
/// merged form, keeping a content word of the follow-up and half of the
/// context's.
fn acceptable(out: &str, q: &str, merged: &str) -> Option<String> {
    let line = out.trim().lines().next()?.trim().trim_matches('"').trim();
    let line = line
        .strip_prefix("Rewritten question:")
        .or_else(|| line.strip_prefix("Question:"))
        .unwrap_or(line)
        .trim();
    if line.is_empty() || line.len() > merged.len() * 2 + 40 {
        return None;
    }
    let have: std::collections::HashSet<String> = content_words(line).into_iter().collect();
    let from_q = content_words(q);
    let from_context: Vec<String> = content_words(merged)
        .into_iter()
        .filter(|w| !from_q.contains(w))
        .collect();
    let keeps_q = from_q.is_empty() || from_q.iter().any(|w| have.contains(w));
    // At least half the context's words: a rewrite replaces a constraint or
    // two, it does not drop the topic.
    let kept = from_context.iter().filter(|w| have.contains(*w)).count();
    let keeps_context = kept * 2 >= from_context.len();
    (keeps_q && keeps_context).then(|| line.to_owned())
}

/// Standalone form by the chat model, validated, falling back to [`merge`].
pub async fn with_model(model: &dyn ChatModel, history: &[String], q: &str) -> BackendResult<Standalone> {
    let merged = merge(history, q);
    if !merged.rewritten {
        return Ok(merged);
    }
    let mut convo = String::new();
    for h in history.iter().rev().take(3).rev() {
        convo.push_str("User: ");
        convo.push_str(h.trim());
        convo.push('\n');
    }
    convo.push_str("User (last question): ");
    convo.push_str(q.trim());
    let messages = vec![
        ChatMessage {
            role: Role::System,
            content: REWRITE_PROMPT.to_owned(),
        },
        ChatMessage {
            role: Role::User,
            content: convo,
        },
    ];
    let params = GenParams {
        max_tokens: 64,
        temperature: 0.0,
    };
    let mut sink = Collect(String::new());
    let (out, _) = model.generate(messages, params, &mut sink).await?;
    Ok(match acceptable(&out, q, &merged.query) {
        Some(query) => Standalone {
            query,
            rewritten: true,
            method: "model",
        },
        None => merged,
    })
}

/// Applies `mode`.
pub async fn standalone(
    mode: RewriteMode,
    model: &dyn ChatModel,
    history: &[String],
    q: &str,
) -> BackendResult<Standalone> {
    match mode {
        RewriteMode::Off => Ok(Standalone {
            query: q.trim().to_owned(),
            rewritten: false,
            method: "none",
        }),
        RewriteMode::Merge => Ok(merge(history, q)),
        RewriteMode::Model => with_model(model, history, q).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn follow_ups_are_recognised() {
        assert!(is_follow_up("and for children?"));
        assert!(is_follow_up("What about pregnant women?"));
        assert!(is_follow_up("Is it safe?"));
        assert!(is_follow_up("side effects?"));
        assert!(!is_follow_up("What is MERS?"), "a short question of its own");
        assert!(!is_follow_up("What is the recommended dose of amoxicillin for adults?"));
        assert!(!is_follow_up("How long is the incubation period of MERS coronavirus?"));
    }

    #[test]
    fn merge_rewrites_only_follow_ups() {
        let hist = h(&["What is the recommended dose of amoxicillin for adults?"]);
        let s = merge(&hist, "and for children?");
        assert!(s.rewritten);
        assert_eq!(
            s.query,
            "What is the recommended dose of amoxicillin for adults? and for children?"
        );
        let s = merge(&hist, "How long is the incubation period of MERS coronavirus?");
        assert!(!s.rewritten);
        assert_eq!(s.method, "none");
        // No history: nothing to lean on.
        assert!(!merge(&[], "and for children?").rewritten);
    }

    #[test]
    fn chains_hang_off_the_last_standalone_question() {
        let hist = h(&[
            "What is the incubation period of SARS?",
            "What is the recommended dose of amoxicillin for adults?",
            "and for children?",
            "what about infants?",
        ]);
        let s = merge(&hist, "and the elderly?");
        assert!(
            s.query.starts_with("What is the recommended dose of amoxicillin"),
            "{}",
            s.query
        );
        assert!(!s.query.contains("SARS"));
        assert!(s.query.ends_with("what about infants? and the elderly?"), "{}", s.query);
        assert!(
            !s.query.contains("children"),
            "at most two follow-ups are kept: {}",
            s.query
        );
    }

    #[test]
    fn model_rewrites_are_validated() {
        let merged = "What is the dose of amoxicillin for adults? and for children?";
        assert_eq!(
            acceptable(
                "What is the dose of amoxicillin for children?\nextra",
                "and for children?",
                merged
            )
            .as_deref(),
            Some("What is the dose of amoxicillin for children?")
        );
        // Loses the topic: rejected.
        assert!(acceptable("What is the dose for children?", "and for children?", merged).is_none());
        // Loses the follow-up's constraint: rejected.
        assert!(acceptable("What is the dose of amoxicillin?", "and for children?", merged).is_none());
        assert!(acceptable("   ", "and for children?", merged).is_none());
    }
}
