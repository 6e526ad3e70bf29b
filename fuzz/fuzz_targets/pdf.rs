//! The PDF extractor, called directly (no catch_unwind), so that any panic,
//! hang or runaway allocation is a finding.
#![no_main]
use docent_ingest::extract::{pdf, Limits, OcrMode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        ocr: OcrMode::Off,
        max_pages: 200,
        ..Limits::default()
    };
    let _ = pdf::extract_pdf(data, &limits);
});
