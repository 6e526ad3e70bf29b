//! Extraction: bytes in, positioned text blocks out.
//!
//! The type is detected from the content (magic bytes, UTF-8 validity) and
//! checked against the file name's extension; a disagreement is an error.
//! Every extractor runs inside `catch_unwind`, so a parser panic on a hostile
//! file becomes a `malformed` error instead of taking the process down.

use crate::error::{IngestError, Result};
use docent_core::SourceKind;

/// How a block's lines are to be treated by the chunker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BlockKind {
    /// Prose: split at paragraphs, then sentences, then words.
    #[default]
    Text,
    /// Each line is one record (a table row, a CSV record): never split
    /// inside a line unless the line alone exceeds the token budget.
    Table,
}

/// A run of text that shares one position: a page and a heading path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Block {
    pub text: String,
    pub page: Option<u32>,
    pub heading_path: Vec<String>,
    pub kind: BlockKind,
}

impl Block {
    pub fn text(text: String, page: Option<u32>, heading_path: Vec<String>) -> Self {
        Self {
            text,
            page,
            heading_path,
            kind: BlockKind::Text,
        }
    }
}

/// A file carried inside another (an e-mail attachment), ingested as a child
/// document of its carrier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub file_name: String,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extracted {
    pub title: Option<String>,
    pub pages: Option<u32>,
    pub blocks: Vec<Block>,
    pub attachments: Vec<Attachment>,
    /// Pages whose text came from OCR.
    pub ocr_pages: Vec<u32>,
    /// Pages left without text because they need OCR and none is available.
    pub pages_needing_ocr: Vec<u32>,
}

/// Detects the kind from content, then checks the file name agrees.
pub fn detect(bytes: &[u8], file_name: &str) -> Result<SourceKind> {
    if bytes.is_empty() {
        return Err(IngestError::Empty);
    }
    let ext = std::path::Path::new(file_name)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let by_ext = match ext.as_str() {
        "pdf" => Some(SourceKind::Pdf),
        "md" | "markdown" => Some(SourceKind::Markdown),
        "txt" | "text" | "log" | "" => Some(SourceKind::Text),
        "docx" => Some(SourceKind::Docx),
        "html" | "htm" | "xhtml" => Some(SourceKind::Html),
        "csv" | "tsv" => Some(SourceKind::Csv),
        "eml" => Some(SourceKind::Eml),
        "png" | "jpg" | "jpeg" | "tif" | "tiff" => Some(SourceKind::Image),
        _ => None,
    };
    let mismatch = |holds: &str| IngestError::TypeMismatch(format!("{file_name:?} is named .{ext} but holds {holds}"));
    // Binary formats, by magic bytes.
    let sniffed = sniff_binary(bytes);
    if let Some((kind, what)) = sniffed {
        return match by_ext {
            Some(k) if k == kind => Ok(kind),
            _ if ext.is_empty() => Ok(kind),
            None => Ok(kind),
            Some(_) => Err(mismatch(what)),
        };
    }
    if bytes.starts_with(b"PK\x03\x04") {
        return Err(match by_ext {
            Some(SourceKind::Docx) => IngestError::Malformed {
                kind: "docx",
                message: "a ZIP archive without word/document.xml".to_owned(),
            },
            Some(_) if !ext.is_empty() => mismatch("a ZIP archive"),
            _ => IngestError::UnsupportedType(format!(
                "{file_name:?}: a ZIP archive that is not a Word document (supported: {SUPPORTED})"
            )),
        });
    }
    if looks_binary(bytes) {
        return Err(match by_ext {
            Some(k) if is_binary_format(k) => mismatch(&format!("no {} signature", k.as_str().to_uppercase())),
            Some(_) if !ext.is_empty() => mismatch("binary data"),
            _ => IngestError::UnsupportedType(format!("{file_name:?} (binary content; supported: {SUPPORTED})")),
        });
    }
    // Text formats: the extension decides, the content must not contradict it.
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]);
    let sniffed_text = sniff_text(&head);
    match by_ext {
        Some(k) if is_binary_format(k) => Err(mismatch("text")),
        Some(SourceKind::Eml) if sniffed_text != Some(SourceKind::Eml) => Err(mismatch("no e-mail header block")),
        Some(SourceKind::Text) if ext.is_empty() => Ok(sniffed_text.unwrap_or(SourceKind::Text)),
        Some(kind) => Ok(kind),
        None => Err(IngestError::UnsupportedType(format!(
            "{file_name:?}: supported types are {SUPPORTED}"
        ))),
    }
}

const SUPPORTED: &str = ".pdf, .docx, .html, .md, .txt, .csv, .eml, .png, .jpg, .tiff";

/// Formats recognised by their magic bytes rather than as text.
fn is_binary_format(kind: SourceKind) -> bool {
    matches!(kind, SourceKind::Pdf | SourceKind::Docx | SourceKind::Image)
}

fn sniff_binary(bytes: &[u8]) -> Option<(SourceKind, &'static str)> {
    let head = &bytes[..bytes.len().min(1024)];
    if head.windows(5).any(|w| w == b"%PDF-") {
        return Some((SourceKind::Pdf, "a PDF"));
    }
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n")
        || bytes.starts_with(&[0xFF, 0xD8, 0xFF])
        || bytes.starts_with(b"II*\0")
        || bytes.starts_with(b"MM\0*")
    {
        return Some((SourceKind::Image, "an image"));
    }
    if bytes.starts_with(b"PK\x03\x04") && docx::is_docx(bytes) {
        return Some((SourceKind::Docx, "a Word document"));
    }
    None
}

/// Recognizes HTML and e-mail from the start of a text file.
fn sniff_text(head: &str) -> Option<SourceKind> {
    let trimmed = head.trim_start_matches('\u{feff}').trim_start();
    let lower: String = trimmed.chars().take(512).collect::<String>().to_ascii_lowercase();
    if lower.starts_with("<!doctype html") || lower.starts_with("<html") || lower.contains("<body") {
        return Some(SourceKind::Html);
    }
    // An RFC 5322 header block: "Name: value" lines (or folded
    // continuations) up to the first blank line, with known headers.
    let mut known = 0;
    for line in trimmed.lines().take(200) {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let (name, _) = line.split_once(':')?;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return None;
        }
        if matches!(
            name.to_ascii_lowercase().as_str(),
            "from" | "to" | "subject" | "date" | "message-id" | "mime-version" | "received" | "return-path"
        ) {
            known += 1;
        }
    }
    (known >= 2).then_some(SourceKind::Eml)
}

fn looks_binary(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(8192)];
    if head.contains(&0) {
        return true;
    }
    // Invalid UTF-8 in the head (ignoring a sequence cut at the boundary).
    match std::str::from_utf8(head) {
        Ok(_) => false,
        Err(e) => e.error_len().is_some(),
    }
}

/// Extracts text with positions. CPU-bound: call from a blocking thread.
pub fn extract(kind: SourceKind, bytes: &[u8]) -> Result<Extracted> {
    extract_with(kind, bytes, &Limits::default())
}

/// [`extract`] under explicit limits (unzipped size cap, OCR mode).
pub fn extract_with(kind: SourceKind, bytes: &[u8], limits: &Limits) -> Result<Extracted> {
    let text = |bytes: &[u8]| -> Result<String> {
        let s = std::str::from_utf8(bytes).map_err(|_| IngestError::NotUtf8)?;
        Ok(s.trim_start_matches('\u{feff}').to_owned())
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match kind {
        SourceKind::Pdf => pdf::extract_pdf(bytes, limits),
        SourceKind::Markdown => Ok(markdown::extract_markdown(&text(bytes)?)),
        SourceKind::Text => Ok(plain_text(&text(bytes)?)),
        SourceKind::Docx => docx::extract_docx(bytes, limits),
        SourceKind::Html => Ok(html::extract_html(&String::from_utf8_lossy(bytes))),
        SourceKind::Csv => delimited::extract_csv(bytes),
        SourceKind::Eml => eml::extract_eml(bytes),
        SourceKind::Image => ocr::extract_image(bytes, limits),
    }));
    let extracted = match result {
        Ok(r) => r?,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "parser panicked".to_owned());
            return Err(IngestError::ExtractorPanic(msg));
        }
    };
    if extracted.blocks.iter().all(|b| b.text.trim().is_empty()) && extracted.attachments.is_empty() {
        return Err(match kind {
            SourceKind::Pdf | SourceKind::Image => IngestError::NeedsOcr,
            _ => IngestError::Empty,
        });
    }
    Ok(extracted)
}

/// Whether scanned pages and images are sent to OCR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OcrMode {
    /// Use tesseract (and pdftoppm for PDF pages) when installed.
    #[default]
    Auto,
    /// Never run OCR; pages without text are reported as `needs_ocr`.
    Off,
}

/// Limits applied to one document's extraction.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout: std::time::Duration,
    pub max_pages: u32,
    /// Cap on the bytes decompressed from a ZIP container (DOCX): a
    /// zip bomb fails with `too_large` once it inflates past this.
    pub max_unzipped_bytes: u64,
    pub ocr: OcrMode,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: std::time::Duration::from_secs(120),
            max_pages: 5000,
            max_unzipped_bytes: 256 << 20,
            ocr: OcrMode::Auto,
        }
    }
}

/// [`extract`] on a dedicated thread with a deadline and a page cap. A
/// parser that hangs is abandoned (its thread finishes or dies on its own);
/// the caller gets `timeout` and nothing is written.
pub fn extract_bounded(kind: SourceKind, bytes: std::sync::Arc<Vec<u8>>, limits: Limits) -> Result<Extracted> {
    let (tx, rx) = std::sync::mpsc::channel();
    let deadline = std::time::Instant::now() + limits.timeout;
    let spawned = std::thread::Builder::new()
        .name("docent-extract".into())
        .spawn(move || {
            let limits = Limits {
                // OCR subprocesses are killed at the same deadline.
                timeout: deadline.saturating_duration_since(std::time::Instant::now()),
                ..limits
            };
            let _ = tx.send(extract_with(kind, &bytes, &limits));
        });
    if let Err(e) = spawned {
        return Err(IngestError::Io(e));
    }
    let extracted = match rx.recv_timeout(limits.timeout) {
        Ok(r) => r?,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => return Err(IngestError::Timeout(limits.timeout.as_secs())),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            return Err(IngestError::ExtractorPanic("extractor thread died".to_owned()))
        }
    };
    if let Some(p) = extracted.pages {
        if p > limits.max_pages {
            return Err(IngestError::TooLarge(format!("{p} pages (limit {})", limits.max_pages)));
        }
    }
    Ok(extracted)
}

fn plain_text(text: &str) -> Extracted {
    let text = normalize(text);
    Extracted {
        title: None,
        pages: None,
        blocks: vec![Block::text(text, None, Vec::new())],
        ..Extracted::default()
    }
}

/// Normalizes line endings, expands typographic ligatures (U+FB00..FB06)
/// and strips control characters other than newline and tab; keeps all
/// other text as is.
pub fn normalize(text: &str) -> String {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\u{FB00}' => out.push_str("ff"),
            '\u{FB01}' => out.push_str("fi"),
            '\u{FB02}' => out.push_str("fl"),
            '\u{FB03}' => out.push_str("ffi"),
            '\u{FB04}' => out.push_str("ffl"),
            '\u{FB05}' | '\u{FB06}' => out.push_str("st"),
            '\u{00A0}' => out.push(' '),
            '\u{00AD}' => {}
            c if c.is_control() && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

pub mod markdown {
    //! Markdown: ATX headings (`#`..`######`) open sections; the heading path
    //! is kept for every block under them. Fenced code is kept as text and
    //! never read as headings.
    use super::{normalize, Block, Extracted};

    pub fn extract_markdown(text: &str) -> Extracted {
        let text = normalize(text);
        let mut path: Vec<(usize, String)> = Vec::new();
        let mut blocks = Vec::new();
        let mut current = String::new();
        let mut title = None;
        let mut in_fence = false;
        let flush = |current: &mut String, path: &[(usize, String)], blocks: &mut Vec<Block>| {
            if !current.trim().is_empty() {
                let text = std::mem::take(current);
                let path = path.iter().map(|(_, h)| h.clone()).collect();
                blocks.push(Block::text(text, None, path));
            } else {
                current.clear();
            }
        };
        for line in text.split_inclusive('\n') {
            let trimmed = line.trim_start();
            if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
                in_fence = !in_fence;
                current.push_str(line);
                continue;
            }
            if !in_fence {
                if let Some((level, heading)) = heading(trimmed) {
                    flush(&mut current, &path, &mut blocks);
                    while path.last().is_some_and(|(l, _)| *l >= level) {
                        path.pop();
                    }
                    if level == 1 && title.is_none() {
                        title = Some(heading.clone());
                    }
                    path.push((level, heading));
                    continue;
                }
            }
            current.push_str(line);
        }
        flush(&mut current, &path, &mut blocks);
        Extracted {
            title,
            blocks,
            ..Extracted::default()
        }
    }

    fn heading(line: &str) -> Option<(usize, String)> {
        let level = line.chars().take_while(|c| *c == '#').count();
        if level == 0 || level > 6 {
            return None;
        }
        let rest = &line[level..];
        if !(rest.starts_with(' ') || rest.starts_with('\t') || rest.trim().is_empty()) {
            return None;
        }
        let h = rest.trim().trim_end_matches('#').trim().to_owned();
        if h.is_empty() {
            None
        } else {
            Some((level, h))
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn headings_form_paths() {
            let e = extract_markdown(
                "# Guide\nintro\n## Setup\nstep one\n### Linux\napt\n## Usage\nrun it\n```\n# not a heading\n```\n",
            );
            assert_eq!(e.title.as_deref(), Some("Guide"));
            let paths: Vec<_> = e.blocks.iter().map(|b| b.heading_path.join(" > ")).collect();
            assert_eq!(
                paths,
                vec!["Guide", "Guide > Setup", "Guide > Setup > Linux", "Guide > Usage"]
            );
            assert!(e.blocks[3].text.contains("# not a heading"));
        }
    }
}

pub mod delimited;
pub mod docx;
pub mod eml;
pub mod html;
pub mod ocr;
pub mod pdf;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_by_content_and_checks_name() {
        assert_eq!(detect(b"%PDF-1.7\n...", "a.pdf").unwrap(), SourceKind::Pdf);
        assert_eq!(detect(b"# Title\n", "a.md").unwrap(), SourceKind::Markdown);
        assert_eq!(detect(b"hello", "a.txt").unwrap(), SourceKind::Text);
        assert_eq!(detect(b"hello", "a.pdf").unwrap_err().code(), "type_mismatch");
        assert_eq!(detect(b"%PDF-1.7\n", "a.md").unwrap_err().code(), "type_mismatch");
        assert_eq!(detect(b"\x00\x01\x02", "a.txt").unwrap_err().code(), "type_mismatch");
        assert_eq!(detect(b"hello", "a.exe").unwrap_err().code(), "unsupported_type");
        assert_eq!(detect(b"", "a.txt").unwrap_err().code(), "empty");
    }

    #[test]
    fn empty_text_is_an_error() {
        assert_eq!(extract(SourceKind::Text, b"  \n ").unwrap_err().code(), "empty");
    }
}
