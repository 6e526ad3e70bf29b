//! Extraction: bytes in, positioned text blocks out.
//!
//! The type is detected from the content (magic bytes, UTF-8 validity) and
//! checked against the file name's extension; a disagreement is an error.
//! Every extractor runs inside `catch_unwind`, so a parser panic on a hostile
//! file becomes a `malformed` error instead of taking the process down.

use crate::error::{IngestError, Result};
use docent_core::SourceKind;

/// A run of text that shares one position: a page and a heading path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub text: String,
    pub page: Option<u32>,
    pub heading_path: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    pub title: Option<String>,
    pub pages: Option<u32>,
    pub blocks: Vec<Block>,
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
    let head = &bytes[..bytes.len().min(1024)];
    let is_pdf = head.windows(5).any(|w| w == b"%PDF-");
    let by_ext = match ext.as_str() {
        "pdf" => Some(SourceKind::Pdf),
        "md" | "markdown" => Some(SourceKind::Markdown),
        "txt" | "text" | "" => Some(SourceKind::Text),
        _ => None,
    };
    if is_pdf {
        return match by_ext {
            Some(SourceKind::Pdf) | None => Ok(SourceKind::Pdf),
            Some(_) if ext.is_empty() => Ok(SourceKind::Pdf),
            Some(_) => Err(IngestError::TypeMismatch(format!(
                "{file_name:?} is named .{ext} but holds a PDF"
            ))),
        };
    }
    if looks_binary(bytes) {
        return Err(match by_ext {
            Some(SourceKind::Pdf) => {
                IngestError::TypeMismatch(format!("{file_name:?} is named .pdf but has no PDF header"))
            }
            Some(_) => IngestError::TypeMismatch(format!("{file_name:?} is named .{ext} but holds binary data")),
            None => IngestError::UnsupportedType(format!("{file_name:?} (binary content)")),
        });
    }
    match by_ext {
        Some(SourceKind::Pdf) => Err(IngestError::TypeMismatch(format!(
            "{file_name:?} is named .pdf but holds text"
        ))),
        Some(kind) => Ok(kind),
        None => Err(IngestError::UnsupportedType(format!(
            "{file_name:?}: supported types are .pdf, .md, .txt"
        ))),
    }
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
    let result = std::panic::catch_unwind(|| match kind {
        SourceKind::Pdf => crate::extract::pdf::extract_pdf(bytes),
        SourceKind::Markdown => {
            let text = std::str::from_utf8(bytes).map_err(|_| IngestError::NotUtf8)?;
            Ok(markdown::extract_markdown(text))
        }
        SourceKind::Text => {
            let text = std::str::from_utf8(bytes).map_err(|_| IngestError::NotUtf8)?;
            Ok(plain_text(text))
        }
    });
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
    if extracted.blocks.iter().all(|b| b.text.trim().is_empty()) {
        return Err(match kind {
            SourceKind::Pdf => IngestError::NeedsOcr,
            _ => IngestError::Empty,
        });
    }
    Ok(extracted)
}

/// Limits applied to one document's extraction.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout: std::time::Duration,
    pub max_pages: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: std::time::Duration::from_secs(120),
            max_pages: 5000,
        }
    }
}

/// [`extract`] on a dedicated thread with a deadline and a page cap. A
/// parser that hangs is abandoned (its thread finishes or dies on its own);
/// the caller gets `timeout` and nothing is written.
pub fn extract_bounded(kind: SourceKind, bytes: std::sync::Arc<Vec<u8>>, limits: Limits) -> Result<Extracted> {
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("docent-extract".into())
        .spawn(move || {
            let _ = tx.send(extract(kind, &bytes));
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
        blocks: vec![Block {
            text,
            page: None,
            heading_path: Vec::new(),
        }],
    }
}

/// Normalizes line endings and strips control characters other than newline
/// and tab; keeps all other text as is.
pub fn normalize(text: &str) -> String {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    text.chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect()
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
                blocks.push(Block {
                    text: std::mem::take(current),
                    page: None,
                    heading_path: path.iter().map(|(_, h)| h.clone()).collect(),
                });
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
            pages: None,
            blocks,
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

pub mod pdf {
    //! PDF through lopdf: text per page, in content-stream order. Encrypted
    //! files that open with the empty password are read; others fail with
    //! `encrypted`.
    use super::{normalize, Block, Extracted};
    use crate::error::{IngestError, Result};

    /// Cap on the decompressed content of one page (zip-bomb guard).
    const MAX_PAGE_CONTENT: usize = 64 << 20;

    pub fn extract_pdf(bytes: &[u8]) -> Result<Extracted> {
        let mut doc = match lopdf::Document::load_mem(bytes) {
            Ok(d) => d,
            Err(lopdf::Error::Decryption(_)) | Err(lopdf::Error::InvalidPassword) => {
                return Err(IngestError::Encrypted)
            }
            Err(e) => {
                return Err(IngestError::Malformed {
                    kind: "pdf",
                    message: e.to_string(),
                })
            }
        };
        if doc.is_encrypted() && doc.decrypt("").is_err() {
            return Err(IngestError::Encrypted);
        }
        let title = info_title(&doc);
        let pages = doc.get_pages();
        let page_count = u32::try_from(pages.len()).unwrap_or(u32::MAX);
        let mut blocks = Vec::with_capacity(pages.len());
        let mut errors = 0usize;
        let mut last_error = None;
        for (&number, _) in pages.iter() {
            match doc.extract_text_with_limit(&[number], MAX_PAGE_CONTENT) {
                Ok(text) => {
                    let text = clean_page(&normalize(&text));
                    blocks.push(Block {
                        text,
                        page: Some(number),
                        heading_path: Vec::new(),
                    });
                }
                Err(e) => {
                    errors += 1;
                    last_error = Some(e.to_string());
                }
            }
        }
        if blocks.is_empty() && errors > 0 {
            return Err(IngestError::Malformed {
                kind: "pdf",
                message: last_error.unwrap_or_default(),
            });
        }
        if page_count == 0 {
            return Err(IngestError::Malformed {
                kind: "pdf",
                message: "no pages".to_owned(),
            });
        }
        Ok(Extracted {
            title,
            pages: Some(page_count),
            blocks,
        })
    }

    fn info_title(doc: &lopdf::Document) -> Option<String> {
        let info = doc.trailer.get(b"Info").ok()?;
        let dict = match info {
            lopdf::Object::Reference(id) => doc.get_dictionary(*id).ok()?,
            lopdf::Object::Dictionary(d) => d,
            _ => return None,
        };
        let raw = dict.get(b"Title").ok()?.as_str().ok()?;
        let title = lopdf::decode_text_string(&lopdf::Object::String(raw.to_vec(), lopdf::StringFormat::Literal))
            .ok()
            .unwrap_or_else(|| String::from_utf8_lossy(raw).into_owned());
        let title = title.trim().to_owned();
        (!title.is_empty()).then_some(title)
    }

    /// Joins words hyphenated across a line break and trims trailing spaces.
    fn clean_page(text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut lines = text.lines().peekable();
        while let Some(line) = lines.next() {
            let line = line.trim_end();
            let next_starts_lower = lines
                .peek()
                .and_then(|n| n.trim_start().chars().next())
                .is_some_and(char::is_lowercase);
            if line.ends_with('-') && line.len() > 1 && next_starts_lower {
                let prev = line[..line.len() - 1].chars().last();
                if prev.is_some_and(char::is_alphabetic) {
                    out.push_str(&line[..line.len() - 1]);
                    continue;
                }
            }
            out.push_str(line);
            out.push('\n');
        }
        out
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn hyphenation_is_joined() {
            assert_eq!(clean_page("infor-\nmation here\n"), "information here\n");
            assert_eq!(clean_page("well-\nKnown\n"), "well-\nKnown\n");
        }

        #[test]
        fn garbage_is_malformed_not_panic() {
            let err = extract_pdf(b"%PDF-1.4\n garbage garbage").unwrap_err();
            assert_eq!(err.code(), "malformed");
        }
    }
}

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
