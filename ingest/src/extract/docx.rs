//! DOCX (Office Open XML): paragraphs, headings (by style or outline level)
//! as heading paths, and tables as one line per row.
//!
//! A DOCX file is a ZIP archive. Its declared sizes are not trusted: every
//! part is read through a running budget ([`Limits::max_unzipped_bytes`]),
//! so a zip bomb fails with `too_large` instead of filling memory.

use super::{normalize, Block, BlockKind, Extracted, Limits};
use crate::error::{IngestError, Result};
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use std::collections::HashMap;
use std::io::{Cursor, Read};

/// Refuse archives with absurd entry counts before touching them.
const MAX_ENTRIES: usize = 20_000;

pub fn is_docx(bytes: &[u8]) -> bool {
    zip::ZipArchive::new(Cursor::new(bytes)).is_ok_and(|z| z.index_for_name("word/document.xml").is_some())
}

fn malformed(message: impl Into<String>) -> IngestError {
    IngestError::Malformed {
        kind: "docx",
        message: message.into(),
    }
}

pub fn extract_docx(bytes: &[u8], limits: &Limits) -> Result<Extracted> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| malformed(e.to_string()))?;
    if zip.len() > MAX_ENTRIES {
        return Err(IngestError::TooLarge(format!(
            "the archive has {} entries (limit {MAX_ENTRIES})",
            zip.len()
        )));
    }
    let mut budget = limits.max_unzipped_bytes;
    let document = read_part(&mut zip, "word/document.xml", &mut budget)?
        .ok_or_else(|| malformed("word/document.xml is missing"))?;
    let styles = match read_part(&mut zip, "word/styles.xml", &mut budget)? {
        Some(xml) => parse_styles(&xml),
        None => HashMap::new(),
    };
    parse_document(&document, &styles)
}

/// Reads one part, charging what it inflates to against `budget`.
fn read_part<R: Read + std::io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    name: &str,
    budget: &mut u64,
) -> Result<Option<Vec<u8>>> {
    let file = match zip.by_name(name) {
        Ok(f) => f,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(malformed(format!("{name}: {e}"))),
    };
    let mut out = Vec::new();
    let read = file
        .take(budget.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| malformed(format!("{name}: {e}")))? as u64;
    if read > *budget {
        return Err(IngestError::TooLarge(format!(
            "the DOCX inflates past {} MiB (zip bomb guard)",
            (*budget + read) >> 20
        )));
    }
    *budget -= read;
    Ok(Some(out))
}

/// What a paragraph style means for structure.
#[derive(Debug, Clone, Default)]
struct Style {
    name: String,
    outline: Option<usize>,
    based_on: Option<String>,
}

/// Style id -> heading level (0 = document title, 1.. = heading levels).
fn parse_styles(xml: &[u8]) -> HashMap<String, usize> {
    let mut reader = Reader::from_reader(xml);
    let mut buf = Vec::new();
    let mut styles: HashMap<String, Style> = HashMap::new();
    let mut current: Option<(String, Style)> = None;
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => match e.local_name().as_ref() {
                b"style" => {
                    if let Some(id) = attr(&e, b"styleId") {
                        current = Some((id, Style::default()));
                    }
                }
                b"name" => {
                    if let (Some((_, s)), Some(v)) = (current.as_mut(), attr(&e, b"val")) {
                        s.name = v;
                    }
                }
                b"outlineLvl" => {
                    if let (Some((_, s)), Some(v)) = (current.as_mut(), attr(&e, b"val")) {
                        s.outline = v.parse().ok();
                    }
                }
                b"basedOn" => {
                    if let (Some((_, s)), Some(v)) = (current.as_mut(), attr(&e, b"val")) {
                        s.based_on = Some(v);
                    }
                }
                _ => {}
            },
            Ok(Event::End(e)) if e.local_name().as_ref() == b"style" => {
                if let Some((id, s)) = current.take() {
                    styles.insert(id, s);
                }
            }
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
        buf.clear();
    }
    let mut levels = HashMap::new();
    for id in styles.keys() {
        let mut cursor = Some(id.as_str());
        // Follow basedOn a few steps: custom heading styles inherit.
        for _ in 0..4 {
            let Some(s) = cursor.and_then(|c| styles.get(c)) else {
                break;
            };
            if let Some(level) = level_of(s) {
                levels.insert(id.clone(), level);
                break;
            }
            cursor = s.based_on.as_deref();
        }
    }
    levels
}

fn level_of(s: &Style) -> Option<usize> {
    let name = s.name.to_ascii_lowercase();
    if name == "title" {
        return Some(0);
    }
    if let Some(n) = name.strip_prefix("heading ") {
        return n.trim().parse::<usize>().ok().filter(|l| (1..=9).contains(l));
    }
    s.outline.filter(|l| *l < 9).map(|l| l + 1)
}

fn attr(e: &BytesStart<'_>, local: &[u8]) -> Option<String> {
    e.attributes()
        .flatten()
        .find_map(|a| (a.key.local_name().as_ref() == local).then(|| String::from_utf8_lossy(&a.value).into_owned()))
}

/// Builds blocks from word/document.xml.
#[derive(Default)]
struct Builder {
    blocks: Vec<Block>,
    title: Option<String>,
    path: Vec<(usize, String)>,
    text: String,
    // Paragraph state.
    para: String,
    para_level: Option<usize>,
    // Table state (only the outermost table makes rows).
    table_depth: usize,
    rows: Vec<String>,
    cells: Vec<String>,
    cell: String,
}

impl Builder {
    fn heading_path(&self) -> Vec<String> {
        self.path.iter().map(|(_, h)| h.clone()).collect()
    }

    fn flush_text(&mut self) {
        let text = std::mem::take(&mut self.text);
        if !text.trim().is_empty() {
            let path = self.heading_path();
            self.blocks.push(Block::text(normalize(text.trim()), None, path));
        }
    }

    fn end_paragraph(&mut self) {
        let para = std::mem::take(&mut self.para);
        let level = self.para_level.take();
        if self.table_depth > 0 {
            let p = para.trim();
            if !p.is_empty() {
                if !self.cell.is_empty() {
                    self.cell.push(' ');
                }
                self.cell.push_str(p);
            }
            return;
        }
        let p = para.trim();
        if p.is_empty() {
            return;
        }
        match level {
            Some(level) => {
                self.flush_text();
                let heading = normalize(p).replace('\n', " ");
                if level == 0 {
                    if self.title.is_none() {
                        self.title = Some(heading);
                    }
                    return;
                }
                if level == 1 && self.title.is_none() {
                    self.title = Some(heading.clone());
                }
                while self.path.last().is_some_and(|(l, _)| *l >= level) {
                    self.path.pop();
                }
                self.path.push((level, heading));
            }
            None => {
                self.text.push_str(p);
                self.text.push_str("\n\n");
            }
        }
    }

    fn start_table(&mut self) {
        self.table_depth += 1;
        if self.table_depth == 1 {
            self.flush_text();
            self.rows.clear();
        }
    }

    fn end_table(&mut self) {
        self.table_depth = self.table_depth.saturating_sub(1);
        if self.table_depth == 0 {
            let rows = std::mem::take(&mut self.rows);
            if !rows.is_empty() {
                let path = self.heading_path();
                self.blocks.push(Block {
                    text: normalize(&rows.join("\n")),
                    page: None,
                    heading_path: path,
                    kind: BlockKind::Table,
                });
            }
        }
    }
}

fn parse_document(xml: &[u8], styles: &HashMap<String, usize>) -> Result<Extracted> {
    let mut reader = Reader::from_reader(xml);
    let mut buf = Vec::new();
    let mut b = Builder::default();
    let mut in_text = false;
    let mut in_run = 0usize;
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| malformed(format!("word/document.xml at byte {}: {e}", reader.buffer_position())))?;
        match event {
            Event::Start(e) => match e.local_name().as_ref() {
                b"p" => {
                    b.para.clear();
                    b.para_level = None;
                }
                b"r" => in_run += 1,
                b"t" if in_run > 0 => in_text = true,
                b"tbl" => b.start_table(),
                b"tr" if b.table_depth == 1 => b.cells.clear(),
                b"tc" if b.table_depth == 1 => b.cell.clear(),
                _ => paragraph_property(&e, styles, &mut b),
            },
            Event::Empty(e) => match e.local_name().as_ref() {
                b"tab" if in_run > 0 => b.para.push('\t'),
                b"br" | b"cr" if in_run > 0 => b.para.push('\n'),
                b"noBreakHyphen" if in_run > 0 => b.para.push('-'),
                b"p" => {}
                _ => paragraph_property(&e, styles, &mut b),
            },
            Event::End(e) => match e.local_name().as_ref() {
                b"t" => in_text = false,
                b"r" => in_run = in_run.saturating_sub(1),
                b"p" => b.end_paragraph(),
                b"tc" if b.table_depth == 1 => {
                    let cell = std::mem::take(&mut b.cell);
                    b.cells.push(cell.trim().replace('\n', " "));
                }
                b"tr" if b.table_depth == 1 => {
                    let cells = std::mem::take(&mut b.cells);
                    if cells.iter().any(|c| !c.is_empty()) {
                        b.rows.push(cells.join(" | "));
                    }
                }
                b"tbl" => b.end_table(),
                _ => {}
            },
            Event::Text(t) if in_text => {
                let s = t.decode().map_err(|e| malformed(e.to_string()))?;
                b.para.push_str(&s);
            }
            Event::GeneralRef(r) if in_text => {
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    b.para.push(c);
                } else {
                    let name = r.decode().map_err(|e| malformed(e.to_string()))?;
                    b.para.push_str(match name.as_ref() {
                        "amp" => "&",
                        "lt" => "<",
                        "gt" => ">",
                        "quot" => "\"",
                        "apos" => "'",
                        _ => "",
                    });
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    b.flush_text();
    Ok(Extracted {
        title: b.title,
        blocks: b.blocks,
        ..Extracted::default()
    })
}

/// `w:pStyle` and `w:outlineLvl` inside a paragraph's properties.
fn paragraph_property(e: &BytesStart<'_>, styles: &HashMap<String, usize>, b: &mut Builder) {
    match e.local_name().as_ref() {
        b"pStyle" => {
            if let Some(level) = attr(e, b"val").and_then(|v| styles.get(&v).copied().or_else(|| builtin_level(&v))) {
                b.para_level = Some(level);
            }
        }
        b"outlineLvl" => {
            if let Some(l) = attr(e, b"val").and_then(|v| v.parse::<usize>().ok()).filter(|l| *l < 9) {
                b.para_level = Some(l + 1);
            }
        }
        _ => {}
    }
}

/// Built-in style ids, for files without styles.xml.
fn builtin_level(id: &str) -> Option<usize> {
    let lower = id.to_ascii_lowercase();
    if lower == "title" {
        return Some(0);
    }
    lower
        .strip_prefix("heading")
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|l| (1..=9).contains(l))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// A minimal DOCX with the given document.xml body.
    pub(crate) fn make_docx(body: &str) -> Vec<u8> {
        let doc = format!(
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>{body}</w:body></w:document>"#
        );
        let mut out = Cursor::new(Vec::new());
        {
            let mut z = zip::ZipWriter::new(&mut out);
            let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
            z.start_file("[Content_Types].xml", opts).unwrap();
            z.write_all(b"<Types/>").unwrap();
            z.start_file("word/document.xml", opts).unwrap();
            z.write_all(doc.as_bytes()).unwrap();
            z.finish().unwrap();
        }
        out.into_inner()
    }

    fn p(style: Option<&str>, text: &str) -> String {
        let ppr = style
            .map(|s| format!(r#"<w:pPr><w:pStyle w:val="{s}"/></w:pPr>"#))
            .unwrap_or_default();
        format!(r#"<w:p>{ppr}<w:r><w:t xml:space="preserve">{text}</w:t></w:r></w:p>"#)
    }

    #[test]
    fn paragraphs_headings_and_tables() {
        let body = [
            p(Some("Title"), "Infection Control Manual"),
            p(Some("Heading1"), "Hand hygiene"),
            p(None, "Wash hands for 20 seconds &amp; dry them."),
            p(Some("Heading2"), "Gloves"),
            p(None, "Change gloves between patients."),
            r#"<w:tbl><w:tr><w:tc><w:p><w:r><w:t>Item</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>Dose</w:t></w:r></w:p></w:tc></w:tr><w:tr><w:tc><w:p><w:r><w:t>Alcohol rub</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>3 ml</w:t></w:r></w:p></w:tc></w:tr></w:tbl>"#.to_owned(),
            p(Some("Heading1"), "Waste"),
            p(None, "Sharps go in the yellow bin."),
        ]
        .concat();
        let bytes = make_docx(&body);
        assert!(is_docx(&bytes));
        let e = extract_docx(&bytes, &Limits::default()).unwrap();
        assert_eq!(e.title.as_deref(), Some("Infection Control Manual"));
        let got: Vec<(String, String, BlockKind)> = e
            .blocks
            .iter()
            .map(|b| (b.heading_path.join(" > "), b.text.clone(), b.kind))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "Hand hygiene".to_owned(),
                    "Wash hands for 20 seconds & dry them.".to_owned(),
                    BlockKind::Text
                ),
                (
                    "Hand hygiene > Gloves".to_owned(),
                    "Change gloves between patients.".to_owned(),
                    BlockKind::Text
                ),
                (
                    "Hand hygiene > Gloves".to_owned(),
                    "Item | Dose\nAlcohol rub | 3 ml".to_owned(),
                    BlockKind::Table
                ),
                (
                    "Waste".to_owned(),
                    "Sharps go in the yellow bin.".to_owned(),
                    BlockKind::Text
                ),
            ]
        );
    }

    #[test]
    fn zip_bomb_is_too_large() {
        // 64 MiB of one character compresses to a few tens of KiB.
        let big = "a".repeat(64 << 20);
        let bytes = make_docx(&p(None, &big));
        assert!(bytes.len() < 1 << 20, "the bomb should be small: {}", bytes.len());
        let limits = Limits {
            max_unzipped_bytes: 8 << 20,
            ..Limits::default()
        };
        let err = extract_docx(&bytes, &limits).unwrap_err();
        assert_eq!(err.code(), "too_large", "{err}");
    }

    #[test]
    fn broken_archives_are_malformed() {
        let mut bytes = make_docx(&p(None, "hello"));
        let n = bytes.len();
        bytes.truncate(n / 2);
        let err = extract_docx(&bytes, &Limits::default()).unwrap_err();
        assert_eq!(err.code(), "malformed", "{err}");
        let bytes = make_docx("<w:p><w:r><w:t>unclosed</w:r></w:p>");
        let err = extract_docx(&bytes, &Limits::default()).unwrap_err();
        assert_eq!(err.code(), "malformed", "{err}");
    }
}
