//! PHI/PII masking of what answers and search results show, for
//! collections with `redact_answers` on. Only the response is masked: the
//! documents, chunks and indexes keep the original text.

use crate::dto::{CitationDto, HitDto, SentenceDto};
use docent_core::redact::{MaskingBuffer, Preset, Redactor};
use docent_core::SearchHit;
use std::sync::LazyLock;

static PRESET: LazyLock<Option<Redactor>> = LazyLock::new(|| Redactor::preset(Preset::Healthcare));

/// The masker for a response built from `hits`: some when any of them
/// comes from a collection whose answers are shown masked (`masked` lists
/// those collections).
pub fn masker_for(masked: &[String], hits: &[SearchHit]) -> Option<Redactor> {
    if masked.is_empty() || !hits.iter().any(|h| masked.contains(&h.document.collection)) {
        return None;
    }
    PRESET.clone()
}

/// A streaming buffer for a masker.
pub fn streaming(r: Option<&Redactor>) -> Option<MaskingBuffer> {
    r.map(|r| MaskingBuffer::new(r.clone()))
}

/// Masks a passage in three parts so that the span of its supporting
/// sentence still points at it.
fn mask_with_span(r: &Redactor, text: &str, span: [usize; 2]) -> (String, [usize; 2]) {
    let (a, b) = (span[0].min(text.len()), span[1].min(text.len()));
    match (text.get(..a), text.get(a..b.max(a)), text.get(b.max(a)..)) {
        (Some(pre), Some(mid), Some(post)) => {
            let (pre, mid, post) = (r.mask(pre), r.mask(mid), r.mask(post));
            let span = [pre.len(), pre.len() + mid.len()];
            (format!("{pre}{mid}{post}"), span)
        }
        _ => {
            let all = r.mask(text);
            let len = all.len();
            (all, [0, len])
        }
    }
}

/// Streamed text through an optional masking buffer: what may be sent now
/// (`None`: held back until a sentence ends).
pub fn pass(mask: Option<&mut MaskingBuffer>, text: &str) -> Option<String> {
    match mask {
        None => Some(text.to_owned()),
        Some(m) => m.push(text),
    }
}

/// What an answer shows: with a masker, its text, citations and sentences
/// masked in place.
pub fn answer(r: Option<&Redactor>, content: String, cites: &mut [CitationDto], sents: &mut [SentenceDto]) -> String {
    match r {
        Some(r) => {
            citations(r, cites);
            sentences(r, sents);
            r.mask(&content)
        }
        None => content,
    }
}

pub fn citations(r: &Redactor, cites: &mut [CitationDto]) {
    for c in cites {
        c.title = r.mask(&c.title);
        let (passage, span) = mask_with_span(r, &c.passage, c.span);
        c.passage = passage;
        c.span = span;
    }
}

pub fn sentences(r: &Redactor, sents: &mut [SentenceDto]) {
    for s in sents {
        s.text = r.mask(&s.text);
    }
}

pub fn hit(r: &Redactor, h: &mut HitDto) {
    h.title = r.mask(&h.title);
    h.text = r.mask(&h.text);
    h.heading_path = h.heading_path.iter().map(|p| r.mask(p)).collect();
}
