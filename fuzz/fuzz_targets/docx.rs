//! The DOCX extractor (ZIP + XML), called directly (no catch_unwind). The
//! unzipped-size cap is small so that bombs are cheap to find.
#![no_main]
use docent_ingest::extract::{docx, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_unzipped_bytes: 8 << 20,
        ..Limits::default()
    };
    let _ = docx::extract_docx(data, &limits);
});
