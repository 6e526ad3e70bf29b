//! PHI/PII masking for what docent shows or records about people, never
//! for what it stores: the preset masks e-mail addresses, phone numbers,
//! dates of birth, US social security numbers and UK national insurance
//! numbers, policy, member, patient and record numbers, and names after a
//! title or a label ("Dr. Jane Smith", "patient: John Doe").
//!
//! Pattern-based: it catches the formats above, not every name in free
//! text (that would need a named-entity model). Each match becomes a typed
//! marker such as `[EMAIL]`, so a reader still sees what kind of data was there.

use regex::Regex;

/// A compiled set of masking rules.
#[derive(Debug, Clone)]
pub struct Redactor {
    rules: Vec<(Regex, &'static str)>,
}

/// Named presets (`access.redact_audit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Off,
    /// Healthcare and insurance identifiers, contact data and names.
    Healthcare,
}

impl Preset {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "off" => Some(Self::Off),
            "healthcare" => Some(Self::Healthcare),
            _ => None,
        }
    }
}

const HEALTHCARE: &[(&str, &str)] = &[
    (r"(?i)\b[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}\b", "[EMAIL]"),
    // Labelled identifiers first, so their digits are not taken for phones.
    (
        r"(?i)\b(?:policy|member|patient|subscriber|group|claim|medical record|mrn|insurance|account)\s*(?:no\.?|number|num|id|#)?\s*[:#]?\s*[A-Z]{0,4}-?\d[A-Z0-9-]{3,}\b",
        "[ID]",
    ),
    (r"\b\d{3}-\d{2}-\d{4}\b", "[SSN]"),
    (
        r"(?i)\b[A-CEGHJ-PR-TW-Z]{2}\s?\d{2}\s?\d{2}\s?\d{2}\s?[A-D]\b",
        "[NATIONAL_ID]",
    ),
    (
        r"(?i)\b(?:dob|d\.o\.b\.|date of birth|born(?: on)?)\s*[:\-]?\s*(?:\d{1,4}[./-]\d{1,2}[./-]\d{1,4}|\d{1,2}\s+[a-z]{3,9}\s+\d{4}|[a-z]{3,9}\s+\d{1,2},?\s+\d{4})",
        "[DOB]",
    ),
    (
        r"(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?|\b\d{2,4}[\s.-])\d{3,4}[\s.-]\d{3,4}\b",
        "[PHONE]",
    ),
    (
        r"\b(?:Mr|Mrs|Ms|Miss|Dr|Prof)\.?\s+[A-Z][a-z]+(?:\s+[A-Z][a-z]+)?",
        "[NAME]",
    ),
    (
        r"(?i:\b(?:patient|name|insured|member|policyholder)\s*:\s*)[A-Z][a-z]+(?:\s+[A-Z][a-z]+)+",
        "[NAME]",
    ),
];

impl Redactor {
    /// The rules of a preset (`None` for `Off`).
    pub fn preset(p: Preset) -> Option<Self> {
        match p {
            Preset::Off => None,
            Preset::Healthcare => Some(Self::from_rules(HEALTHCARE)),
        }
    }

    fn from_rules(rules: &[(&str, &'static str)]) -> Self {
        Self {
            // The patterns are constants covered by the tests below; one
            // that failed to compile would be skipped, not crash a server.
            rules: rules
                .iter()
                .filter_map(|(re, mark)| Regex::new(re).ok().map(|r| (r, *mark)))
                .collect(),
        }
    }

    /// `text` with every match masked.
    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (re, mark) in &self.rules {
            if re.is_match(&out) {
                out = re.replace_all(&out, *mark).into_owned();
            }
        }
        out
    }

    /// Masks every string inside a JSON value (keys are left alone). A
    /// string that is a whole UUID is an identifier docent made (a chunk,
    /// a document, a job) and is kept: its digit groups can look like a
    /// phone number ("...-3485-7764-8123-..."), and masking them would cut
    /// the audit trail's link to the records it names.
    pub fn mask_json(&self, v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) if uuid::Uuid::try_parse(s).is_ok() => {}
            serde_json::Value::String(s) => *s = self.mask(s),
            serde_json::Value::Array(a) => a.iter_mut().for_each(|x| self.mask_json(x)),
            serde_json::Value::Object(o) => o.values_mut().for_each(|x| self.mask_json(x)),
            _ => {}
        }
    }
}

/// Words that end in a period without ending a sentence, and which a rule
/// may need to see together with what follows ("Dr. Jane Smith", "policy
/// no. 123", "d.o.b. 1980-03-12").
const NOT_SENTENCE_ENDS: &[&str] = &[
    "mr", "mrs", "ms", "miss", "dr", "prof", "no", "d.o.b", "dob", "st", "e.g", "i.e",
];

/// Masks streamed text: pieces are held until a sentence or line ends, then
/// that whole span is masked and released, so a match split across pieces
/// ("Dr." + " Jane" + " Smith") is still caught.
#[derive(Debug, Clone)]
pub struct MaskingBuffer {
    redactor: Redactor,
    held: String,
}

impl MaskingBuffer {
    pub fn new(redactor: Redactor) -> Self {
        Self {
            redactor,
            held: String::new(),
        }
    }

    /// Takes a piece; returns the masked text that may be shown now.
    pub fn push(&mut self, piece: &str) -> Option<String> {
        self.held.push_str(piece);
        let cut = self.boundary()?;
        let rest = self.held.split_off(cut);
        let ready = std::mem::replace(&mut self.held, rest);
        Some(self.redactor.mask(&ready))
    }

    /// The masked remainder at the end of the stream.
    pub fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.held);
        (!rest.is_empty()).then(|| self.redactor.mask(&rest))
    }

    /// Byte offset just past the last sentence or line end in what is held.
    fn boundary(&self) -> Option<usize> {
        let b = self.held.as_bytes();
        (1..b.len()).rev().find_map(|i| {
            if b[i] == b'\n' {
                return Some(i + 1);
            }
            if !b[i].is_ascii_whitespace() {
                return None;
            }
            match b[i - 1] {
                b'!' | b'?' => Some(i + 1),
                b'.' => {
                    let word = self.held[..i - 1]
                        .rsplit(|c: char| c.is_whitespace() || c == '(')
                        .next()
                        .unwrap_or("")
                        .to_ascii_lowercase();
                    // Not after an abbreviation or an initial ("J. Smith").
                    let initial = word.len() == 1 && word.chars().all(|c| c.is_ascii_alphabetic());
                    (!word.is_empty() && !initial && !NOT_SENTENCE_ENDS.contains(&word.as_str())).then_some(i + 1)
                }
                _ => None,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_pieces_are_masked_across_boundaries() {
        let mut m = MaskingBuffer::new(hc());
        let mut shown = String::new();
        for piece in [
            "The patient was seen by Dr",
            ". Jane",
            " Smith on Monday. Call ",
            "+1 415-",
            "555-0132",
            " or write to j",
            "ane@example.org.\nPolicy no",
            ". HX-99812-A is void. ",
            "Done",
        ] {
            if let Some(s) = m.push(piece) {
                assert!(
                    !s.contains("Smith") && !s.contains("0132") && !s.contains("example"),
                    "{s}"
                );
                shown.push_str(&s);
            }
        }
        shown.push_str(&m.finish().unwrap_or_default());
        assert_eq!(
            shown,
            "The patient was seen by [NAME] on Monday. Call [PHONE] or write to [EMAIL].\n[ID] is void. Done"
        );
    }

    fn hc() -> Redactor {
        Redactor::preset(Preset::Healthcare).expect("preset")
    }

    #[test]
    fn every_rule_compiles() {
        assert_eq!(hc().rules.len(), HEALTHCARE.len());
    }

    #[test]
    fn json_masking_keeps_uuids_whole() {
        // A UUIDv7 whose middle groups are all digits: the phone rule alone
        // would take "3485-7764-8123" (seen in tests/audit.rs).
        let id = "01a2499a-3485-7764-8123-6475e8e67f8b";
        let mut v = serde_json::json!({
            "chunk_ids": [id],
            "query": format!("call 415-555-0132 about {id}"),
        });
        hc().mask_json(&mut v);
        assert_eq!(v["chunk_ids"][0], id);
        let query = v["query"].as_str().unwrap_or_default();
        assert!(query.starts_with("call [PHONE] about"), "{query}");
    }

    #[test]
    fn masks_contact_data_identifiers_and_titled_names() {
        let r = hc();
        let cases = [
            ("mail jane.doe@example.org today", "mail [EMAIL] today"),
            ("call +1 415-555-0132 now", "call [PHONE] now"),
            ("call (020) 7946 0958", "call [PHONE]"),
            ("SSN 123-45-6789", "SSN [SSN]"),
            ("NI number AB 12 34 56 C", "NI number [NATIONAL_ID]"),
            ("DOB: 03/12/1980 on file", "[DOB] on file"),
            ("born on 12 March 1980", "[DOB]"),
            ("policy number: HX-99812-A is void", "[ID] is void"),
            ("member id 7781234", "[ID]"),
            ("MRN 00451234", "[ID]"),
            ("seen by Dr. Alice Meyer", "seen by [NAME]"),
            ("patient: John Doe was discharged", "[NAME] was discharged"),
        ];
        for (input, want) in cases {
            assert_eq!(r.mask(input), want, "{input}");
        }
    }

    #[test]
    fn leaves_ordinary_text_and_clinical_numbers_alone() {
        let r = hc();
        for text in [
            "What is the quarantine period for Zorblax fever?",
            "Give 5000 IU of heparin twice a day for 14 days.",
            "The policy covers dental care since 2021.",
            "Ward 3 opens at 08:00.",
        ] {
            assert_eq!(r.mask(text), text);
        }
    }

    #[test]
    fn masks_strings_inside_json() {
        let mut v = serde_json::json!({"query": "DOB: 1980-03-12", "chunk_ids": ["a"], "k": 3});
        hc().mask_json(&mut v);
        assert_eq!(v["query"], "[DOB]");
        assert_eq!(v["chunk_ids"][0], "a");
        assert_eq!(v["k"], 3);
    }
}
