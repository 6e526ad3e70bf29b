//! Every PDF of the shared test corpus either yields text or fails with a
//! classified error; nothing hangs and nothing takes the process down.
//! The corpus lives in ../shared/data/pdfs (or DOCENT_TEST_PDFS).

use docent_ingest::extract::{detect, extract_bounded, Limits};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn corpus_dir() -> PathBuf {
    let dir = std::env::var_os("DOCENT_TEST_PDFS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/pdfs"));
    assert!(
        dir.is_dir(),
        "PDF corpus missing at {}: it must sit in ../shared/data/pdfs",
        dir.display()
    );
    dir
}

#[test]
fn every_pdf_yields_text_or_a_classified_error() {
    let mut files = Vec::new();
    let mut stack = vec![corpus_dir()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read corpus dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x.eq_ignore_ascii_case("pdf")) {
                files.push(p);
            }
        }
    }
    files.sort();
    assert!(files.len() >= 150, "corpus looks incomplete: {} files", files.len());
    let limits = Limits {
        timeout: Duration::from_secs(60),
        max_pages: 5000,
    };
    let known = [
        "encrypted",
        "needs_ocr",
        "malformed",
        "too_large",
        "timeout",
        "empty",
        "type_mismatch",
    ];
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    let mut caught_panics = Vec::new();
    let (mut pages, started) = (0u64, Instant::now());
    for f in &files {
        let bytes = std::fs::read(f).expect("read pdf");
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("x.pdf");
        let result = detect(&bytes, name).and_then(|kind| extract_bounded(kind, Arc::new(bytes), limits));
        let class = match result {
            Ok(ex) => {
                assert!(
                    ex.blocks.iter().any(|b| !b.text.trim().is_empty()),
                    "{}: ok but no text",
                    f.display()
                );
                pages += u64::from(ex.pages.unwrap_or(0));
                "text".to_owned()
            }
            Err(e) => {
                if matches!(e, docent_ingest::IngestError::ExtractorPanic(_)) {
                    caught_panics.push(f.display().to_string());
                }
                let code = e.code().to_owned();
                assert!(
                    known.contains(&code.as_str()),
                    "{}: unclassified error {code}: {e}",
                    f.display()
                );
                assert!(!e.to_string().is_empty());
                code
            }
        };
        *tally.entry(class).or_default() += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "pdf corpus: {} files, {pages} pages with text in {secs:.1}s",
        files.len()
    );
    for (class, n) in &tally {
        println!("  {class:<14} {n}");
    }
    println!(
        "  (parser panics caught and classified as malformed: {})",
        caught_panics.len()
    );
    for p in &caught_panics {
        println!("    {p}");
    }
    assert_eq!(tally.get("timeout").copied().unwrap_or(0), 0, "extraction hung");
    assert!(tally.get("text").copied().unwrap_or(0) > files.len() / 2);
}
