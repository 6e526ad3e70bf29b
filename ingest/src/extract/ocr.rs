//! Offline OCR for scanned pages and images: Debian's `tesseract` reads the
//! image and `pdftoppm` (poppler-utils) renders a PDF page first. Both run as
//! subprocesses on local files in a private temporary directory; nothing
//! leaves the machine. Each subprocess is killed at the extraction deadline.
//!
//! When the tools are missing (or OCR is off) the caller gets `needs_ocr`.

use super::{normalize, Block, Extracted, Limits, OcrMode};
use crate::error::{IngestError, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

fn tesseract() -> Option<&'static Path> {
    static T: OnceLock<Option<PathBuf>> = OnceLock::new();
    T.get_or_init(|| find_tool("tesseract")).as_deref()
}

fn pdftoppm() -> Option<&'static Path> {
    static T: OnceLock<Option<PathBuf>> = OnceLock::new();
    T.get_or_init(|| find_tool("pdftoppm")).as_deref()
}

/// Whether images can be read here.
pub fn can_ocr_images(limits: &Limits) -> bool {
    limits.ocr == OcrMode::Auto && tesseract().is_some()
}

/// Whether scanned PDF pages can be read here.
pub fn can_ocr_pdf(limits: &Limits) -> bool {
    can_ocr_images(limits) && pdftoppm().is_some()
}

/// Runs a command to completion, killing it at the deadline.
fn run(cmd: &mut Command, deadline: Instant, what: &str) -> Result<()> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(IngestError::Io)?;
    loop {
        if let Some(status) = child.try_wait().map_err(IngestError::Io)? {
            if status.success() {
                return Ok(());
            }
            return Err(IngestError::Malformed {
                kind: "image",
                message: format!("{what} failed ({status})"),
            });
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(IngestError::Timeout(0));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// OCRs one image file; returns its text (pages split by form feeds).
fn tesseract_file(image: &Path, dir: &Path, deadline: Instant) -> Result<String> {
    let exe = tesseract().ok_or(IngestError::NeedsOcr)?;
    let out = dir.join("ocr");
    run(
        Command::new(exe).arg(image).arg(&out).args(["-l", "eng", "--psm", "3"]),
        deadline,
        "tesseract",
    )?;
    let text = std::fs::read(out.with_extension("txt")).map_err(IngestError::Io)?;
    Ok(String::from_utf8_lossy(&text).into_owned())
}

pub fn extract_image(bytes: &[u8], limits: &Limits) -> Result<Extracted> {
    if !can_ocr_images(limits) {
        return Err(IngestError::NeedsOcr);
    }
    let deadline = Instant::now() + limits.timeout;
    let dir = tempfile::tempdir().map_err(IngestError::Io)?;
    let image = dir.path().join("image");
    std::fs::write(&image, bytes).map_err(IngestError::Io)?;
    let text = tesseract_file(&image, dir.path(), deadline)?;
    // Multi-page TIFFs come back with a form feed between pages.
    let blocks: Vec<Block> = text
        .split('\u{c}')
        .enumerate()
        .filter(|(_, t)| !t.trim().is_empty())
        .map(|(i, t)| Block::text(normalize(t.trim()), Some(i as u32 + 1), Vec::new()))
        .collect();
    let pages = text.split('\u{c}').filter(|t| !t.trim().is_empty()).count().max(1) as u32;
    Ok(Extracted {
        pages: Some(pages),
        ocr_pages: blocks.iter().filter_map(|b| b.page).collect(),
        blocks,
        ..Extracted::default()
    })
}

/// Renders and reads the given pages of a PDF. A page that fails to render
/// or read is returned with empty text; a deadline stops the whole run.
pub fn ocr_pdf_pages(pdf: &[u8], pages: &[u32], limits: &Limits) -> Result<Vec<(u32, String)>> {
    let exe = pdftoppm().ok_or(IngestError::NeedsOcr)?;
    let deadline = Instant::now() + limits.timeout;
    let dir = tempfile::tempdir().map_err(IngestError::Io)?;
    let file = dir.path().join("doc.pdf");
    std::fs::write(&file, pdf).map_err(IngestError::Io)?;
    let mut out = Vec::with_capacity(pages.len());
    for &page in pages {
        let prefix = dir.path().join(format!("p{page}"));
        let n = page.to_string();
        let rendered = run(
            Command::new(exe)
                .args(["-r", "300", "-gray", "-png", "-singlefile", "-f", &n, "-l", &n])
                .arg(&file)
                .arg(&prefix),
            deadline,
            "pdftoppm",
        );
        let text = match rendered {
            Ok(()) => match tesseract_file(&prefix.with_extension("png"), dir.path(), deadline) {
                Ok(t) => t,
                Err(IngestError::Timeout(_)) => return Err(IngestError::Timeout(limits.timeout.as_secs())),
                Err(e) => {
                    tracing::warn!(page, error = %e, "OCR of a page failed");
                    String::new()
                }
            },
            Err(IngestError::Timeout(_)) => return Err(IngestError::Timeout(limits.timeout.as_secs())),
            Err(e) => {
                tracing::warn!(page, error = %e, "rendering a page for OCR failed");
                String::new()
            }
        };
        let _ = std::fs::remove_file(prefix.with_extension("png"));
        out.push((page, normalize(text.replace('\u{c}', "\n").trim())));
    }
    Ok(out)
}
