//! The text-format extractors and type detection on arbitrary bytes.
#![no_main]
use docent_ingest::extract::{delimited, detect, eml, html};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = detect(data, "x");
    let _ = html::extract_html(&String::from_utf8_lossy(data));
    let _ = eml::extract_eml(data);
    let _ = delimited::extract_csv(data);
});
