//! Chunking with the real embedding tokenizer, through the real PDF
//! extractor: budgets hold, pages are right, nothing is lost.

mod common;

use docent_core::TokenCounter;
use docent_ingest::chunk::{chunk_blocks, join_blocks, ChunkConfig};
use docent_ingest::extract::{detect, extract};
use docent_retrieve::embed::HfTokenCounter;

#[test]
fn pdf_chunks_hold_budget_pages_and_coverage() {
    let tok =
        HfTokenCounter::load(&common::models_dir().join("all-MiniLM-L6-v2-int8/tokenizer.json")).expect("tokenizer");
    let long: Vec<String> = (0..120)
        .map(|i| format!("Line {i} of the second page talks about anticoagulation dosing and renal clearance."))
        .collect();
    let long_refs: Vec<&str> = long.iter().map(String::as_str).collect();
    let pdf = common::make_pdf(&[&["A short first page."], &long_refs, &["Third page, final words."]]);
    let kind = detect(&pdf, "doc.pdf").expect("detect");
    let ex = extract(kind, &pdf).expect("extract");
    assert_eq!(ex.pages, Some(3));
    let cfg = ChunkConfig {
        max_tokens: 64,
        overlap_tokens: 12,
    };
    let chunks = chunk_blocks(&ex.blocks, cfg, &tok);
    assert!(chunks.len() > 10);
    let (doc, _) = join_blocks(&ex.blocks);
    let chars: Vec<char> = doc.chars().collect();
    let mut covered = vec![false; chars.len()];
    for c in &chunks {
        assert!(tok.count(&c.text) <= cfg.max_tokens, "over budget: {}", c.text);
        let span: String = chars[c.char_start..c.char_end].iter().collect();
        assert_eq!(span, c.text);
        covered[c.char_start..c.char_end].iter_mut().for_each(|x| *x = true);
        if c.text.contains("Line") {
            assert_eq!(c.page, Some(2));
        }
    }
    assert_eq!(chunks.first().map(|c| c.page), Some(Some(1)));
    assert_eq!(chunks.last().map(|c| c.page), Some(Some(3)));
    for (i, ch) in chars.iter().enumerate() {
        assert!(covered[i] || ch.is_whitespace(), "lost char {i}: {ch:?}");
    }
    // Every line appears, in order, and overlap stays within budget.
    for (i, line) in long.iter().enumerate() {
        assert!(
            chunks.iter().any(|c| c.text.contains(line.as_str())),
            "line {i} missing"
        );
    }
    for w in chunks.windows(2) {
        if w[0].page == w[1].page && w[1].char_start < w[0].char_end {
            let shared: String = chars[w[1].char_start..w[0].char_end].iter().collect();
            assert!(
                tok.count(&shared) <= cfg.overlap_tokens + 2,
                "overlap too large: {shared}"
            );
        }
    }
}
