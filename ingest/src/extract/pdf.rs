//! PDF through lopdf: text per page, in content-stream order, laid out from
//! the glyph positions (a line break where the baseline moves, a space where
//! the pen jumps forward), including text inside Form XObjects.
//!
//! - Fonts: a `/ToUnicode` CMap wins over `/Encoding` for simple fonts (it
//!   is what the producer says the glyphs mean); CID fonts decode through
//!   their CMap; glyph widths come from `/Widths` or `/W`.
//! - Ligatures are expanded and words hyphenated across a line are joined.
//! - Running headers and footers (a line repeated at the top or bottom of
//!   most pages, page numbers included) are dropped.
//! - Pages without a text layer go to OCR when it is available
//!   ([`super::ocr`]); otherwise they are reported as needing OCR.
//! - Files encrypted with the empty password are read; others fail with
//!   `encrypted`.

use super::{normalize, ocr, Block, Extracted, Limits};
use crate::error::{IngestError, Result};
use lopdf::content::{Content, Operation};
use lopdf::{Dictionary, Document, Encoding, Object, ObjectId};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;

/// Cap on the decompressed content of one page or form (zip-bomb guard).
const MAX_CONTENT: usize = 64 << 20;
/// Cap on content operators run for one page, forms included.
const MAX_OPS: usize = 5_000_000;
/// Nesting of Form XObjects.
const MAX_FORM_DEPTH: usize = 12;

fn malformed(message: impl Into<String>) -> IngestError {
    IngestError::Malformed {
        kind: "pdf",
        message: message.into(),
    }
}

pub fn extract_pdf(bytes: &[u8], limits: &Limits) -> Result<Extracted> {
    let mut doc = match Document::load_mem(bytes) {
        Ok(d) => d,
        Err(lopdf::Error::Decryption(_)) | Err(lopdf::Error::InvalidPassword) => return Err(IngestError::Encrypted),
        Err(e) => return Err(malformed(e.to_string())),
    };
    if doc.is_encrypted() && doc.decrypt("").is_err() {
        return Err(IngestError::Encrypted);
    }
    let title = info_title(&doc);
    let pages = doc.get_pages();
    let page_count = u32::try_from(pages.len()).unwrap_or(u32::MAX);
    if page_count == 0 {
        return Err(malformed("no pages"));
    }
    if page_count > limits.max_pages {
        return Err(IngestError::TooLarge(format!(
            "{page_count} pages (limit {})",
            limits.max_pages
        )));
    }
    let mut texts: Vec<(u32, String)> = Vec::with_capacity(pages.len());
    let mut errors = 0usize;
    let mut last_error = None;
    let doc = &doc;
    let fonts = FontCache::default();
    for (&number, &page_id) in pages.iter() {
        match page_text(doc, page_id, &fonts) {
            Ok(text) => texts.push((number, clean_page(&normalize(&text)))),
            Err(e) => {
                errors += 1;
                last_error = Some(e.to_string());
                texts.push((number, String::new()));
            }
        }
    }
    if errors == texts.len() {
        return Err(malformed(last_error.unwrap_or_default()));
    }
    strip_running_lines(&mut texts);
    let empty: Vec<u32> = texts
        .iter()
        .filter(|(_, t)| t.trim().is_empty())
        .map(|(n, _)| *n)
        .collect();
    let mut ocr_pages = Vec::new();
    let mut pages_needing_ocr = Vec::new();
    if !empty.is_empty() {
        if ocr::can_ocr_pdf(limits) {
            let read = ocr::ocr_pdf_pages(bytes, &empty, limits)?;
            let by_page: HashMap<u32, String> = read.into_iter().collect();
            for (n, text) in texts.iter_mut() {
                if let Some(t) = by_page.get(n).filter(|t| !t.trim().is_empty()) {
                    *text = clean_page(t);
                    ocr_pages.push(*n);
                }
            }
            pages_needing_ocr = empty.into_iter().filter(|n| !ocr_pages.contains(n)).collect();
        } else {
            pages_needing_ocr = empty;
        }
    }
    let blocks = texts
        .into_iter()
        .filter(|(_, t)| !t.trim().is_empty())
        .map(|(n, t)| Block::text(t, Some(n), Vec::new()))
        .collect();
    Ok(Extracted {
        title,
        pages: Some(page_count),
        blocks,
        ocr_pages,
        pages_needing_ocr,
        ..Extracted::default()
    })
}

fn info_title(doc: &Document) -> Option<String> {
    let info = doc.trailer.get(b"Info").ok()?;
    let dict = match info {
        Object::Reference(id) => doc.get_dictionary(*id).ok()?,
        Object::Dictionary(d) => d,
        _ => return None,
    };
    let raw = dict.get(b"Title").ok()?.as_str().ok()?;
    let title = lopdf::decode_text_string(&Object::String(raw.to_vec(), lopdf::StringFormat::Literal))
        .ok()
        .unwrap_or_else(|| String::from_utf8_lossy(raw).into_owned());
    let title = normalize(title.trim());
    (!title.is_empty() && title.chars().any(char::is_alphabetic)).then_some(title)
}

/// Joins words hyphenated across a line break and trims trailing spaces.
pub(crate) fn clean_page(text: &str) -> String {
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
                // The continuation joins without its indentation.
                if let Some(next) = lines.next() {
                    let next = next.trim();
                    out.push_str(next);
                    out.push('\n');
                }
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// A line's identity for header/footer detection: digits (page numbers,
/// dates) do not make lines differ.
fn running_key(line: &str) -> String {
    let mut key = String::with_capacity(line.len());
    for w in line.split_whitespace() {
        if !key.is_empty() {
            key.push(' ');
        }
        key.extend(w.chars().map(|c| {
            if c.is_ascii_digit() {
                '#'
            } else {
                c.to_ascii_lowercase()
            }
        }));
    }
    key
}

/// Drops lines that repeat at the top or bottom (first or last two lines)
/// of most pages: running headers, footers and page numbers.
pub(crate) fn strip_running_lines(pages: &mut [(u32, String)]) {
    let with_text = pages
        .iter()
        .filter(|(_, t)| t.lines().filter(|l| !l.trim().is_empty()).count() >= 3)
        .count();
    if with_text < 3 {
        return;
    }
    // Pages of one or two lines are all "edge": their lines are content
    // (a slide title, a label), never taken for running headers.
    let edge = |text: &str| -> Vec<usize> {
        let idx: Vec<usize> = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, _)| i)
            .collect();
        if idx.len() < 3 {
            return Vec::new();
        }
        // Two lines at each edge, one on short pages.
        let k = if idx.len() >= 6 { 2 } else { 1 };
        let mut e: Vec<usize> = idx.iter().take(k).chain(idx.iter().rev().take(k)).copied().collect();
        e.sort_unstable();
        e.dedup();
        e
    };
    let mut counts: HashMap<String, usize> = HashMap::new();
    for (_, text) in pages.iter() {
        let lines: Vec<&str> = text.lines().collect();
        let keys: HashSet<String> = edge(text).into_iter().map(|i| running_key(lines[i])).collect();
        for k in keys {
            *counts.entry(k).or_default() += 1;
        }
    }
    let threshold = (with_text / 2 + 1).max(3);
    for (_, text) in pages.iter_mut() {
        let lines: Vec<&str> = text.lines().collect();
        let drop: HashSet<usize> = edge(text)
            .into_iter()
            .filter(|&i| counts.get(&running_key(lines[i])).is_some_and(|&c| c >= threshold))
            .collect();
        if drop.is_empty() {
            continue;
        }
        let kept: Vec<&str> = lines
            .iter()
            .enumerate()
            .filter(|(i, _)| !drop.contains(i))
            .map(|(_, l)| *l)
            .collect();
        *text = kept.join("\n").trim().to_owned() + "\n";
    }
}

// --- Text layout from the content stream -------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
struct Matrix([f32; 6]);

impl Matrix {
    const IDENTITY: Matrix = Matrix([1.0, 0.0, 0.0, 1.0, 0.0, 0.0]);

    fn translate(tx: f32, ty: f32) -> Matrix {
        Matrix([1.0, 0.0, 0.0, 1.0, tx, ty])
    }

    /// `self` then `other`.
    fn then(self, other: Matrix) -> Matrix {
        let [a1, b1, c1, d1, e1, f1] = self.0;
        let [a2, b2, c2, d2, e2, f2] = other.0;
        Matrix([
            a1 * a2 + b1 * c2,
            a1 * b2 + b1 * d2,
            c1 * a2 + d1 * c2,
            c1 * b2 + d1 * d2,
            e1 * a2 + f1 * c2 + e2,
            e1 * b2 + f1 * d2 + f2,
        ])
    }

    fn origin(self) -> (f32, f32) {
        (self.0[4], self.0[5])
    }

    fn y_scale(self) -> f32 {
        (self.0[2] * self.0[2] + self.0[3] * self.0[3]).sqrt()
    }

    fn from_operands(ops: &[Object]) -> Option<Matrix> {
        if ops.len() < 6 {
            return None;
        }
        let mut m = [0f32; 6];
        for (slot, o) in m.iter_mut().zip(ops) {
            *slot = o.as_float().ok()?;
        }
        m.iter().all(|v| v.is_finite()).then_some(Matrix(m))
    }
}

/// Glyph widths in thousandths of text space (glyph space for Type 3).
#[derive(Debug, Default)]
struct Widths {
    first: i64,
    simple: Vec<f32>,
    cid: HashMap<u32, f32>,
    default: f32,
    /// Glyph space to text space.
    scale: f32,
}

impl Widths {
    fn width(&self, code: u32) -> f32 {
        let w = if !self.simple.is_empty() {
            let i = i64::from(code) - self.first;
            usize::try_from(i)
                .ok()
                .and_then(|i| self.simple.get(i).copied())
                .unwrap_or(self.default)
        } else {
            self.cid.get(&code).copied().unwrap_or(self.default)
        };
        w * self.scale
    }
}

struct Font<'a> {
    /// The font's own ToUnicode CMap, parsed by [`CMap`] (lopdf's parser
    /// rejects many real-world CMaps outright).
    cmap: Option<CMap>,
    /// lopdf's decoding of the font's encoding (standard, WinAnsi,
    /// Differences, ...): used where the CMap is missing or covers too little.
    encoding: Encoding<'a>,
    two_byte: bool,
    /// A CID font whose codes are UTF-16 (a predefined `*-UCS2-*` or
    /// `*-UTF16-*` CMap).
    utf16_codes: bool,
    /// A CID font with no way to map its glyphs to text (Identity-H without
    /// a usable ToUnicode): its text is left out rather than emitted as
    /// garbage, so that a page of it goes to OCR.
    undecodable: bool,
    widths: Widths,
}

/// A ToUnicode CMap: character codes (of 1 to 4 bytes) to text.
#[derive(Debug, Default)]
struct CMap {
    /// Code space ranges: (bytes, low, high).
    space: Vec<(usize, u32, u32)>,
    map: HashMap<u32, String>,
}

/// Cap on the entries one CMap may define (a bfrange can be huge).
const MAX_CMAP_ENTRIES: usize = 200_000;

#[derive(Debug, PartialEq)]
enum Tok {
    Hex(Vec<u8>),
    Open,
    Close,
    Word(String),
}

fn cmap_tokens(data: &[u8]) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < data.len() {
        let c = data[i];
        match c {
            b'%' => {
                while i < data.len() && data[i] != b'\n' && data[i] != b'\r' {
                    i += 1;
                }
            }
            b'<' if data.get(i + 1) == Some(&b'<') => i += 2,
            b'>' if data.get(i + 1) == Some(&b'>') => i += 2,
            b'<' => {
                let start = i + 1;
                let end = data[start..]
                    .iter()
                    .position(|b| *b == b'>')
                    .map_or(data.len(), |p| start + p);
                let digits: Vec<u8> = data[start..end].iter().copied().filter(u8::is_ascii_hexdigit).collect();
                let bytes = digits
                    .chunks(2)
                    .map(|p| {
                        let s = std::str::from_utf8(p).unwrap_or("0");
                        let v = u8::from_str_radix(s, 16).unwrap_or(0);
                        if p.len() == 1 {
                            v << 4
                        } else {
                            v
                        }
                    })
                    .collect();
                out.push(Tok::Hex(bytes));
                i = end + 1;
            }
            b'[' => {
                out.push(Tok::Open);
                i += 1;
            }
            b']' => {
                out.push(Tok::Close);
                i += 1;
            }
            b'(' => {
                // Literal strings (in CIDSystemInfo) are skipped, nesting included.
                let mut depth = 0usize;
                while i < data.len() {
                    match data[i] {
                        b'\\' => i += 1,
                        b'(' => depth += 1,
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                i += 1;
            }
            c if c.is_ascii_whitespace() => i += 1,
            _ => {
                let start = i;
                while i < data.len() && !data[i].is_ascii_whitespace() && !b"<>[]()%".contains(&data[i]) {
                    i += 1;
                }
                if i == start {
                    i += 1;
                }
                out.push(Tok::Word(String::from_utf8_lossy(&data[start..i]).into_owned()));
            }
        }
    }
    out
}

fn be(bytes: &[u8]) -> u32 {
    bytes.iter().take(4).fold(0u32, |acc, b| (acc << 8) | u32::from(*b))
}

fn utf16(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks(2)
        .map(|p| (u16::from(p[0]) << 8) | u16::from(*p.get(1).unwrap_or(&0)))
        .collect();
    String::from_utf16_lossy(&units)
}

impl CMap {
    fn parse(data: &[u8]) -> Option<CMap> {
        let toks = cmap_tokens(data);
        let mut cmap = CMap::default();
        let mut i = 0;
        let mut section = "";
        while i < toks.len() {
            match &toks[i] {
                Tok::Word(w) if w.starts_with("begin") => {
                    section = match w.as_str() {
                        "begincodespacerange" => "space",
                        "beginbfchar" => "char",
                        "beginbfrange" => "range",
                        _ => "",
                    };
                    i += 1;
                }
                Tok::Word(w) if w.starts_with("end") => {
                    section = "";
                    i += 1;
                }
                Tok::Hex(lo) if section == "space" => {
                    if let Some(Tok::Hex(hi)) = toks.get(i + 1) {
                        if (1..=4).contains(&lo.len()) {
                            cmap.space.push((lo.len(), be(lo), be(hi)));
                        }
                    }
                    i += 2;
                }
                Tok::Hex(src) if section == "char" => {
                    if let Some(Tok::Hex(dst)) = toks.get(i + 1) {
                        if (1..=4).contains(&src.len()) && cmap.map.len() < MAX_CMAP_ENTRIES {
                            cmap.map.insert(be(src), utf16(dst));
                        }
                    }
                    i += 2;
                }
                Tok::Hex(lo) if section == "range" => {
                    let (Some(Tok::Hex(hi)), Some(dst)) = (toks.get(i + 1), toks.get(i + 2)) else {
                        i += 1;
                        continue;
                    };
                    let n = lo.len();
                    let (a, b) = (be(lo), be(hi));
                    if !(1..=4).contains(&n) || b < a {
                        i += 3;
                        continue;
                    }
                    match dst {
                        Tok::Hex(d) if !d.is_empty() => {
                            let mut units: Vec<u16> = d
                                .chunks(2)
                                .map(|p| (u16::from(p[0]) << 8) | u16::from(*p.get(1).unwrap_or(&0)))
                                .collect();
                            for code in a..=b {
                                if cmap.map.len() >= MAX_CMAP_ENTRIES {
                                    break;
                                }
                                cmap.map.insert(code, String::from_utf16_lossy(&units));
                                if let Some(last) = units.last_mut() {
                                    *last = last.wrapping_add(1);
                                }
                            }
                            i += 3;
                        }
                        Tok::Open => {
                            let mut j = i + 3;
                            let mut code = a;
                            while let Some(Tok::Hex(d)) = toks.get(j) {
                                if code <= b && cmap.map.len() < MAX_CMAP_ENTRIES {
                                    cmap.map.insert(code, utf16(d));
                                }
                                code = code.saturating_add(1);
                                j += 1;
                            }
                            i = j + 1;
                        }
                        _ => i += 3,
                    }
                }
                _ => i += 1,
            }
        }
        (!cmap.map.is_empty()).then_some(cmap)
    }

    /// Decodes a string of codes. Simple fonts (`cid == false`) always use
    /// one-byte codes, whatever code space the CMap declares (producers often
    /// declare <0000> <FFFF> for one-byte fonts); CID fonts use the code space,
    /// else two bytes. Returns the text and how many codes had no mapping.
    fn decode(&self, bytes: &[u8], cid: bool) -> (String, usize) {
        let default_len = if cid { 2 } else { 1 };
        let mut out = String::new();
        let mut unmapped = 0;
        let mut i = 0;
        while i < bytes.len() {
            let mut len = 0;
            for n in (1..=4usize).filter(|_| cid) {
                if i + n > bytes.len() {
                    break;
                }
                let code = be(&bytes[i..i + n]);
                if self
                    .space
                    .iter()
                    .any(|&(l, lo, hi)| l == n && (lo..=hi).contains(&code))
                {
                    len = n;
                    break;
                }
            }
            if len == 0 {
                len = default_len.min(bytes.len() - i).max(1);
            }
            match self.map.get(&be(&bytes[i..i + len])) {
                Some(s) => out.push_str(s),
                None => unmapped += 1,
            }
            i += len;
        }
        (out, unmapped)
    }
}

fn deref<'a>(doc: &'a Document, o: &'a Object) -> Option<&'a Object> {
    doc.dereference(o).ok().map(|(_, o)| o)
}

fn numbers(doc: &Document, o: &Object) -> Vec<f32> {
    match deref(doc, o) {
        Some(Object::Array(a)) => a
            .iter()
            .map(|v| deref(doc, v).and_then(|v| v.as_float().ok()).unwrap_or(0.0))
            .collect(),
        _ => Vec::new(),
    }
}

impl<'a> Font<'a> {
    fn new(doc: &'a Document, dict: &'a Dictionary) -> Font<'a> {
        let subtype = dict.get(b"Subtype").and_then(Object::as_name).unwrap_or(b"");
        let two_byte = subtype == b"Type0";
        let encoding_name = dict.get(b"Encoding").and_then(Object::as_name).unwrap_or(b"");
        let utf16_codes = two_byte
            && [b"UCS2-H".as_slice(), b"UCS2-V", b"UTF16-H", b"UTF16-V"]
                .iter()
                .any(|suffix| encoding_name.ends_with(suffix));
        let cmap = dict
            .get(b"ToUnicode")
            .ok()
            .and_then(|o| deref(doc, o))
            .and_then(|o| o.as_stream().ok())
            .and_then(|st| {
                st.decompressed_content_with_limit(MAX_CONTENT)
                    .ok()
                    .or_else(|| st.dict.get(b"Filter").is_err().then(|| st.content.clone()))
            })
            .and_then(|data| CMap::parse(&data));
        // A CID font with our CMap never needs lopdf's decoding (which would
        // parse the same CMap again).
        let fallback = Encoding::SimpleEncoding(b"WinAnsiEncoding");
        let encoding = if two_byte && cmap.is_some() {
            fallback
        } else {
            dict.get_font_encoding_with_limit(doc, MAX_CONTENT).unwrap_or(fallback)
        };
        // Without a CMap of ours, lopdf falls back to a one-byte table for a
        // CID font that has no usable ToUnicode: that would be garbage.
        let undecodable =
            two_byte && cmap.is_none() && !utf16_codes && !matches!(encoding, Encoding::UnicodeMapEncoding(_));
        Font {
            utf16_codes,
            undecodable,
            cmap,
            encoding,
            two_byte,
            widths: widths(doc, dict, two_byte, subtype == b"Type3"),
        }
    }

    fn decode(&self, bytes: &[u8]) -> String {
        if self.undecodable {
            return String::new();
        }
        if self.utf16_codes && self.cmap.is_none() {
            return utf16(bytes);
        }
        let mut s = match &self.cmap {
            Some(cmap) => {
                let (s, unmapped) = cmap.decode(bytes, self.two_byte);
                // A simple font's partial CMap (common in subsets) is trusted
                // only when it covers most codes; otherwise its encoding decides.
                if self.two_byte || unmapped * 2 <= bytes.len() {
                    s
                } else {
                    self.encoding.bytes_to_string(bytes).unwrap_or_default()
                }
            }
            None => self.encoding.bytes_to_string(bytes).unwrap_or_default(),
        };
        s.retain(|c| c != '\u{FFFD}' && c != '\0');
        s
    }

    fn codes<'b>(&self, bytes: &'b [u8]) -> impl Iterator<Item = (u32, bool)> + 'b {
        let step = if self.two_byte { 2 } else { 1 };
        bytes.chunks(step).map(move |c| {
            let code = c.iter().fold(0u32, |acc, b| acc * 256 + u32::from(*b));
            (code, step == 1 && code == 32)
        })
    }
}

fn widths(doc: &Document, dict: &Dictionary, two_byte: bool, type3: bool) -> Widths {
    let mut w = Widths {
        default: if two_byte { 1000.0 } else { 500.0 },
        scale: 0.001,
        ..Widths::default()
    };
    if type3 {
        if let Ok(m) = dict.get(b"FontMatrix") {
            if let Some(a) = numbers(doc, m).first() {
                w.scale = *a;
            }
        }
    }
    if two_byte {
        let desc = dict
            .get(b"DescendantFonts")
            .ok()
            .and_then(|o| deref(doc, o))
            .and_then(|o| o.as_array().ok())
            .and_then(|a| a.first())
            .and_then(|o| deref(doc, o))
            .and_then(|o| o.as_dict().ok());
        if let Some(desc) = desc {
            if let Some(dw) = desc
                .get(b"DW")
                .ok()
                .and_then(|o| deref(doc, o))
                .and_then(|o| o.as_float().ok())
            {
                w.default = dw;
            }
            if let Some(Object::Array(arr)) = desc.get(b"W").ok().and_then(|o| deref(doc, o)) {
                let mut i = 0;
                while i < arr.len() && w.cid.len() < 200_000 {
                    let first = deref(doc, &arr[i]).and_then(|o| o.as_i64().ok());
                    match (first, arr.get(i + 1).and_then(|o| deref(doc, o))) {
                        (Some(c), Some(Object::Array(list))) => {
                            for (k, v) in list.iter().enumerate() {
                                let v = deref(doc, v).and_then(|v| v.as_float().ok()).unwrap_or(w.default);
                                w.cid.insert((c as u32).wrapping_add(k as u32), v);
                            }
                            i += 2;
                        }
                        (Some(c1), Some(o)) => {
                            let c2 = o.as_i64().unwrap_or(c1);
                            let v = arr
                                .get(i + 2)
                                .and_then(|o| deref(doc, o))
                                .and_then(|o| o.as_float().ok())
                                .unwrap_or(w.default);
                            for c in c1..=c2.min(c1 + 65_535) {
                                w.cid.insert(c as u32, v);
                            }
                            i += 3;
                        }
                        _ => break,
                    }
                }
            }
        }
    } else {
        w.first = dict
            .get(b"FirstChar")
            .ok()
            .and_then(|o| deref(doc, o))
            .and_then(|o| o.as_i64().ok())
            .unwrap_or(0);
        if let Ok(ws) = dict.get(b"Widths") {
            w.simple = numbers(doc, ws);
        }
        let missing = dict
            .get(b"FontDescriptor")
            .ok()
            .and_then(|o| deref(doc, o))
            .and_then(|o| o.as_dict().ok())
            .and_then(|d| d.get(b"MissingWidth").ok())
            .and_then(|o| deref(doc, o))
            .and_then(|o| o.as_float().ok());
        if let Some(m) = missing.filter(|m| *m > 0.0) {
            w.default = m;
        }
    }
    w
}

/// Fonts (by resource name) and Form XObjects of one resource dictionary.
struct Resources<'a> {
    fonts: BTreeMap<Vec<u8>, &'a Dictionary>,
    xobjects: BTreeMap<Vec<u8>, ObjectId>,
}

fn resources_of<'a>(doc: &'a Document, res: &'a Dictionary) -> Resources<'a> {
    let sub = |key: &[u8]| {
        res.get(key)
            .ok()
            .and_then(|o| deref(doc, o))
            .and_then(|o| o.as_dict().ok())
    };
    let mut fonts = BTreeMap::new();
    if let Some(f) = sub(b"Font") {
        for (name, v) in f.iter() {
            if let Some(d) = deref(doc, v).and_then(|o| o.as_dict().ok()) {
                fonts.insert(name.clone(), d);
            }
        }
    }
    let mut xobjects = BTreeMap::new();
    if let Some(x) = sub(b"XObject") {
        for (name, v) in x.iter() {
            if let Ok(id) = v.as_reference() {
                xobjects.insert(name.clone(), id);
            }
        }
    }
    Resources { fonts, xobjects }
}

/// Lays glyph runs out as text.
#[derive(Default)]
struct Sink {
    out: String,
    /// Pen position after the last run (x, y) and its font size.
    last: Option<(f32, f32, f32)>,
}

impl Sink {
    fn push(&mut self, text: &str, start: (f32, f32), end: (f32, f32), size: f32) {
        if text.is_empty() {
            return;
        }
        if let Some((lx, ly, lsize)) = self.last {
            let tol = size.max(lsize).max(1.0);
            let dy = (start.1 - ly).abs();
            let dx = start.0 - lx;
            if dy > 0.5 * tol {
                while self.out.ends_with(' ') {
                    self.out.pop();
                }
                if !self.out.ends_with('\n') {
                    self.out.push('\n');
                }
                if dy > 2.0 * tol && !self.out.ends_with("\n\n") {
                    self.out.push('\n');
                }
            } else if (dx > 0.15 * tol || dx < -tol)
                && !self.out.ends_with(char::is_whitespace)
                && !text.starts_with(char::is_whitespace)
            {
                self.out.push(' ');
            }
        }
        self.out.push_str(text);
        self.last = Some((end.0, end.1, size));
    }

    fn end_block(&mut self) {
        // ET does not move the pen; nothing to do, layout decides at the
        // next run.
    }
}

#[derive(Clone, Copy)]
struct GState {
    ctm: Matrix,
    tc: f32,
    tw: f32,
    th: f32,
    tl: f32,
    size: f32,
}

/// Fonts decoded once per document and shared by every page and form that
/// uses them (CMaps and width tables can be large). Keyed by the font
/// dictionary's address: the document is not mutated while it is read.
#[derive(Default)]
struct FontCache<'a> {
    fonts: RefCell<HashMap<*const Dictionary, Rc<Font<'a>>>>,
}

impl<'a> FontCache<'a> {
    fn get(&self, doc: &'a Document, dict: &'a Dictionary) -> Rc<Font<'a>> {
        let key: *const Dictionary = dict;
        if let Some(f) = self.fonts.borrow().get(&key) {
            return Rc::clone(f);
        }
        let font = Rc::new(Font::new(doc, dict));
        self.fonts.borrow_mut().insert(key, Rc::clone(&font));
        font
    }
}

/// Runs one page's content (and the forms it draws) into a [`Sink`].
struct Runner<'a, 'f> {
    doc: &'a Document,
    cache: &'f FontCache<'a>,
    /// The fonts of the resource dictionary in effect, by resource name.
    fonts: HashMap<Vec<u8>, Rc<Font<'a>>>,
    sink: &'f mut Sink,
    ops: &'f mut usize,
}

fn page_text<'a>(doc: &'a Document, page_id: ObjectId, cache: &FontCache<'a>) -> lopdf::Result<String> {
    let content = doc.get_page_content_with_limit(page_id, MAX_CONTENT)?;
    let fonts = doc.get_page_fonts(page_id)?;
    let (res_dict, res_ids) = doc.get_page_resources(page_id)?;
    let mut xobjects = BTreeMap::new();
    for r in res_dict
        .into_iter()
        .chain(res_ids.iter().filter_map(|id| doc.get_dictionary(*id).ok()))
    {
        for (k, v) in resources_of(doc, r).xobjects {
            xobjects.entry(k).or_insert(v);
        }
    }
    let mut sink = Sink::default();
    let mut ops = 0usize;
    let mut visited = Vec::new();
    let mut runner = Runner {
        doc,
        cache,
        fonts: HashMap::new(),
        sink: &mut sink,
        ops: &mut ops,
    };
    runner.run_with_fonts(&content, &fonts, &xobjects, Matrix::IDENTITY, &mut visited)?;
    // Filled-in form fields and text annotations show their text through
    // appearance streams (Form XObjects placed at the annotation's Rect).
    for (id, at) in annotation_appearances(doc, page_id) {
        runner.form(id, Matrix::translate(at.0, at.1), &mut visited)?;
    }
    Ok(sink.out)
}

/// The normal appearance stream of each visible widget, free-text or stamp
/// annotation on a page, with the lower-left corner of its Rect.
fn annotation_appearances(doc: &Document, page_id: ObjectId) -> Vec<(ObjectId, (f32, f32))> {
    let mut out = Vec::new();
    let Ok(page) = doc.get_dictionary(page_id) else {
        return out;
    };
    let Some(Object::Array(annots)) = page.get(b"Annots").ok().and_then(|o| deref(doc, o)) else {
        return out;
    };
    for a in annots.iter().take(10_000) {
        let Some(annot) = deref(doc, a).and_then(|o| o.as_dict().ok()) else {
            continue;
        };
        let subtype = annot.get(b"Subtype").and_then(Object::as_name).unwrap_or(b"");
        if !matches!(subtype, b"Widget" | b"FreeText" | b"Stamp") {
            continue;
        }
        let flags = annot.get(b"F").and_then(Object::as_i64).unwrap_or(0);
        if flags & 0b10 != 0 {
            continue; // hidden
        }
        let rect = annot.get(b"Rect").map(|r| numbers(doc, r)).unwrap_or_default();
        let at = (
            rect.first().copied().unwrap_or(0.0),
            rect.get(1).copied().unwrap_or(0.0),
        );
        let Some(normal) = annot
            .get(b"AP")
            .ok()
            .and_then(|o| deref(doc, o))
            .and_then(|o| o.as_dict().ok())
            .and_then(|ap| ap.get(b"N").ok())
        else {
            continue;
        };
        let id = match normal {
            Object::Reference(id) => match doc.get_object(*id) {
                Ok(Object::Stream(_)) => Some(*id),
                // A dictionary of states (check boxes): the current one.
                Ok(Object::Dictionary(states)) => annot
                    .get(b"AS")
                    .and_then(Object::as_name)
                    .ok()
                    .and_then(|s| states.get(s).ok())
                    .and_then(|o| o.as_reference().ok()),
                _ => None,
            },
            Object::Dictionary(states) => annot
                .get(b"AS")
                .and_then(Object::as_name)
                .ok()
                .and_then(|s| states.get(s).ok())
                .and_then(|o| o.as_reference().ok()),
            _ => None,
        };
        if let Some(id) = id {
            out.push((id, at));
        }
    }
    out
}

impl<'a> Runner<'a, '_> {
    /// Runs content with the fonts of its own resource dictionary, then
    /// restores the fonts in effect before.
    fn run_with_fonts(
        &mut self,
        content: &[u8],
        font_dicts: &BTreeMap<Vec<u8>, &'a Dictionary>,
        xobjects: &BTreeMap<Vec<u8>, ObjectId>,
        ctm: Matrix,
        visited: &mut Vec<ObjectId>,
    ) -> lopdf::Result<()> {
        let content = Content::decode(content)?;
        let fonts = font_dicts
            .iter()
            .map(|(name, d)| (name.clone(), self.cache.get(self.doc, d)))
            .collect();
        let outer = std::mem::replace(&mut self.fonts, fonts);
        let result = self.run(&content.operations, xobjects, ctm, visited);
        self.fonts = outer;
        result
    }

    fn run(
        &mut self,
        operations: &[Operation],
        xobjects: &BTreeMap<Vec<u8>, ObjectId>,
        ctm: Matrix,
        visited: &mut Vec<ObjectId>,
    ) -> lopdf::Result<()> {
        let mut gs = GState {
            ctm,
            tc: 0.0,
            tw: 0.0,
            th: 1.0,
            tl: 0.0,
            size: 0.0,
        };
        let mut stack: Vec<GState> = Vec::new();
        let mut font: Option<Rc<Font<'a>>> = None;
        let mut tm = Matrix::IDENTITY;
        let mut tlm = Matrix::IDENTITY;
        let num = |op: &Operation, i: usize| op.operands.get(i).and_then(|o| o.as_float().ok()).unwrap_or(0.0);
        for op in operations {
            *self.ops += 1;
            if *self.ops > MAX_OPS {
                return Err(lopdf::Error::Syntax("too many content operators".to_owned()));
            }
            match op.operator.as_str() {
                "q" if stack.len() < 1024 => stack.push(gs),
                "Q" => {
                    if let Some(s) = stack.pop() {
                        gs = s;
                    }
                }
                "cm" => {
                    if let Some(m) = Matrix::from_operands(&op.operands) {
                        gs.ctm = m.then(gs.ctm);
                    }
                }
                "BT" => {
                    tm = Matrix::IDENTITY;
                    tlm = Matrix::IDENTITY;
                }
                "ET" => self.sink.end_block(),
                "Tf" => {
                    font = op
                        .operands
                        .first()
                        .and_then(|o| o.as_name().ok())
                        .and_then(|n| self.fonts.get(n).cloned());
                    gs.size = num(op, 1);
                }
                "Tc" => gs.tc = num(op, 0),
                "Tw" => gs.tw = num(op, 0),
                "Tz" => gs.th = num(op, 0) / 100.0,
                "TL" => gs.tl = num(op, 0),
                "Td" | "TD" => {
                    let (tx, ty) = (num(op, 0), num(op, 1));
                    if op.operator == "TD" {
                        gs.tl = -ty;
                    }
                    tlm = Matrix::translate(tx, ty).then(tlm);
                    tm = tlm;
                }
                "Tm" => {
                    if let Some(m) = Matrix::from_operands(&op.operands) {
                        tlm = m;
                        tm = m;
                    }
                }
                "T*" => {
                    tlm = Matrix::translate(0.0, -gs.tl).then(tlm);
                    tm = tlm;
                }
                "Tj" | "'" | "\"" => {
                    if op.operator != "Tj" {
                        if op.operator == "\"" {
                            gs.tw = num(op, 0);
                            gs.tc = num(op, 1);
                        }
                        tlm = Matrix::translate(0.0, -gs.tl).then(tlm);
                        tm = tlm;
                    }
                    if let Some(Object::String(bytes, _)) = op.operands.last() {
                        tm = self.show(font.as_deref(), &gs, tm, bytes);
                    }
                }
                "TJ" => {
                    if let Some(Object::Array(items)) = op.operands.first() {
                        for item in items {
                            match item {
                                Object::String(bytes, _) => tm = self.show(font.as_deref(), &gs, tm, bytes),
                                other => {
                                    if let Ok(n) = other.as_float() {
                                        let tx = -n / 1000.0 * gs.size * gs.th;
                                        tm = Matrix::translate(tx, 0.0).then(tm);
                                    }
                                }
                            }
                        }
                    }
                }
                "Do" => {
                    let Some(name) = op.operands.first().and_then(|o| o.as_name().ok()) else {
                        continue;
                    };
                    if let Some(&id) = xobjects.get(name) {
                        self.form(id, gs.ctm, visited)?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Shows a string: lays it out and advances the text matrix.
    fn show(&mut self, font: Option<&Font<'a>>, gs: &GState, tm: Matrix, bytes: &[u8]) -> Matrix {
        let Some(font) = font else {
            return tm;
        };
        let start = tm.then(gs.ctm);
        let mut advance = 0.0f32;
        for (code, is_space) in font.codes(bytes) {
            let w = font.widths.width(code) * gs.size + gs.tc + if is_space { gs.tw } else { 0.0 };
            advance += w * gs.th;
        }
        let next = Matrix::translate(advance, 0.0).then(tm);
        let end = next.then(gs.ctm);
        let size = (gs.size * start.y_scale()).abs();
        let text = font.decode(bytes);
        self.sink.push(&text, start.origin(), end.origin(), size);
        next
    }

    /// Runs a Form XObject's content with its own resources.
    fn form(&mut self, id: ObjectId, ctm: Matrix, visited: &mut Vec<ObjectId>) -> lopdf::Result<()> {
        if visited.contains(&id) || visited.len() >= MAX_FORM_DEPTH {
            return Ok(());
        }
        let Ok(stream) = self.doc.get_object(id).and_then(Object::as_stream) else {
            return Ok(());
        };
        if stream.dict.get(b"Subtype").and_then(Object::as_name).ok() != Some(b"Form".as_slice()) {
            return Ok(());
        }
        let content = stream.decompressed_content_with_limit(MAX_CONTENT).or_else(|e| {
            if stream.dict.get(b"Filter").is_err() {
                Ok(stream.content.clone())
            } else {
                Err(e)
            }
        })?;
        let matrix = stream
            .dict
            .get(b"Matrix")
            .ok()
            .and_then(|o| o.as_array().ok())
            .and_then(|a| Matrix::from_operands(a))
            .unwrap_or(Matrix::IDENTITY);
        let res = stream
            .dict
            .get(b"Resources")
            .ok()
            .and_then(|o| deref(self.doc, o))
            .and_then(|o| o.as_dict().ok())
            .map(|r| resources_of(self.doc, r));
        let (font_dicts, xobjects) = match res {
            Some(r) => (r.fonts, r.xobjects),
            None => (BTreeMap::new(), BTreeMap::new()),
        };
        visited.push(id);
        let result = if font_dicts.is_empty() {
            // Forms without their own fonts use the fonts in effect.
            Content::decode(&content).and_then(|ops| self.run(&ops.operations, &xobjects, matrix.then(ctm), visited))
        } else {
            self.run_with_fonts(&content, &font_dicts, &xobjects, matrix.then(ctm), visited)
        };
        visited.pop();
        result
    }
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
        let err = extract_pdf(b"%PDF-1.4\n garbage garbage", &Limits::default()).unwrap_err();
        assert_eq!(err.code(), "malformed");
    }

    #[test]
    fn running_headers_and_page_numbers_are_dropped() {
        let mut pages: Vec<(u32, String)> = (1..=5)
            .map(|n| {
                (
                    n,
                    format!("ACME Health — Policy Manual\nBody text of page {n} is unique {n}{n}.\nMore words here.\nPage {n} of 5\n"),
                )
            })
            .collect();
        strip_running_lines(&mut pages);
        for (n, text) in &pages {
            assert!(!text.contains("ACME Health"), "{text}");
            assert!(!text.contains("of 5"), "{text}");
            assert!(text.contains(&format!("Body text of page {n}")), "{text}");
            assert!(text.contains("More words here."), "{text}");
        }
    }

    /// A ToUnicode CMap as producers write it.
    fn to_unicode_cmap(space: &str, chars: &[(&str, &str)]) -> Vec<u8> {
        let mut m = String::from(
            "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n/CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n",
        );
        m.push_str(&format!(
            "1 begincodespacerange\n{space}\nendcodespacerange\n{} beginbfchar\n",
            chars.len()
        ));
        for (from, to) in chars {
            m.push_str(&format!("<{from}> <{to}>\n"));
        }
        m.push_str("endbfchar\nendcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n");
        m.into_bytes()
    }

    /// A one-page PDF: `content` drawn with fonts F1 (simple, WinAnsi with
    /// Widths) and F2 (Type0/Identity-H with a ToUnicode CMap), and a Form
    /// XObject /Fm1 that shows "inside form".
    fn pdf_with(content: &str, f1_extra: Option<(&str, Object)>) -> Vec<u8> {
        use lopdf::{dictionary, Stream};
        let mut doc = Document::with_version("1.5");
        let pages_id = doc.new_object_id();
        let mut f1 = dictionary! {
            "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica",
            "Encoding" => "WinAnsiEncoding", "FirstChar" => 32,
            "Widths" => (32..127).map(|_| Object::Integer(500)).collect::<Vec<_>>(),
        };
        if let Some((k, v)) = f1_extra {
            f1.set(k, v);
        }
        let f1_id = doc.add_object(f1);
        // CID 1 -> "H", 2 -> "i", 3 -> "!" ; all 600 wide.
        let cmap = to_unicode_cmap("<0000> <FFFF>", &[("0001", "0048"), ("0002", "0069"), ("0003", "0021")]);
        let cmap_id = doc.add_object(Stream::new(dictionary! {}, cmap));
        let desc_id = doc.add_object(dictionary! {
            "Type" => "Font", "Subtype" => "CIDFontType2", "BaseFont" => "Test",
            "DW" => 600, "W" => vec![1.into(), vec![600.into(), 600.into(), 600.into()].into()],
        });
        let f2_id = doc.add_object(dictionary! {
            "Type" => "Font", "Subtype" => "Type0", "BaseFont" => "Test", "Encoding" => "Identity-H",
            "DescendantFonts" => vec![desc_id.into()], "ToUnicode" => cmap_id,
        });
        let form_id = doc.add_object(Stream::new(
            dictionary! { "Type" => "XObject", "Subtype" => "Form", "BBox" => vec![0.into(), 0.into(), 500.into(), 100.into()] },
            b"BT /F1 12 Tf 0 0 Td (inside form) Tj ET".to_vec(),
        ));
        let content_id = doc.add_object(Stream::new(dictionary! {}, content.as_bytes().to_vec()));
        let page_id = doc.add_object(dictionary! {
            "Type" => "Page", "Parent" => pages_id, "Contents" => content_id,
            "Resources" => dictionary! {
                "Font" => dictionary! { "F1" => f1_id, "F2" => f2_id },
                "XObject" => dictionary! { "Fm1" => form_id },
            },
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
        });
        doc.objects.insert(
            pages_id,
            Object::Dictionary(dictionary! { "Type" => "Pages", "Kids" => vec![page_id.into()], "Count" => 1 }),
        );
        let catalog_id = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
        doc.trailer.set("Root", catalog_id);
        let mut buf = Vec::new();
        doc.save_to(&mut buf).unwrap();
        buf
    }

    fn text_of(pdf: &[u8]) -> String {
        let limits = Limits {
            ocr: super::super::OcrMode::Off,
            ..Limits::default()
        };
        extract_pdf(pdf, &limits).unwrap().blocks[0].text.clone()
    }

    #[test]
    fn words_placed_by_position_get_spaces_and_lines() {
        // Each word is its own Tj, placed with Td: no space characters in
        // the content at all. 5 chars x 500/1000 x 12 = 30pt per word.
        let pdf = pdf_with(
            "BT /F1 12 Tf 72 700 Td (Wound) Tj 34 0 Td (care) Tj 28 0 Td (plan) Tj -62 -14 Td (next) Tj 28 0 Td (line) Tj ET",
            None,
        );
        assert_eq!(text_of(&pdf), "Wound care plan\nnext line\n");
    }

    #[test]
    fn page_cap_refuses_before_reading() {
        let pdf = pdf_with("BT /F1 12 Tf 72 700 Td (one page) Tj ET", None);
        let limits = Limits {
            max_pages: 0,
            ..Limits::default()
        };
        let err = extract_pdf(&pdf, &limits).unwrap_err();
        assert_eq!(err.code(), "too_large", "{err}");
    }

    #[test]
    fn kerning_gaps_in_tj_arrays_are_spaces() {
        let pdf = pdf_with("BT /F1 10 Tf 72 700 Td [(Hand) -300 (hygiene) 20 (s)] TJ ET", None);
        assert_eq!(text_of(&pdf), "Hand hygienes\n");
    }

    #[test]
    fn cid_fonts_decode_through_to_unicode() {
        let pdf = pdf_with("BT /F2 12 Tf 72 700 Td <000100020003> Tj ET", None);
        assert_eq!(text_of(&pdf), "Hi!\n");
    }

    #[test]
    fn to_unicode_wins_over_a_custom_encoding() {
        // A subset font whose /Differences names glyphs g1, g2 (meaningless)
        // but whose ToUnicode CMap says what they are.
        use lopdf::{dictionary, Stream};
        let pdf = {
            let cmap = to_unicode_cmap("<00> <FF>", &[("41", "0048"), ("42", "0069")]);
            let mut doc = Document::load_mem(&pdf_with("BT /F1 12 Tf 72 700 Td (AB) Tj ET", None)).unwrap();
            let cmap_id = doc.add_object(Stream::new(dictionary! {}, cmap));
            let font_id = doc
                .objects
                .iter()
                .find(|(_, o)| {
                    o.as_dict().is_ok_and(|d| {
                        d.get(b"BaseFont").and_then(Object::as_name).ok() == Some(b"Helvetica".as_slice())
                    })
                })
                .map(|(id, _)| *id)
                .unwrap();
            let font = doc.get_object_mut(font_id).unwrap().as_dict_mut().unwrap();
            font.set(
                "Encoding",
                dictionary! { "Type" => "Encoding", "Differences" => vec![65.into(), Object::Name(b"g1".to_vec()), Object::Name(b"g2".to_vec())] },
            );
            font.set("ToUnicode", cmap_id);
            let mut buf = Vec::new();
            doc.save_to(&mut buf).unwrap();
            buf
        };
        assert_eq!(text_of(&pdf), "Hi\n");
    }

    #[test]
    fn form_xobjects_and_ligatures() {
        let pdf = pdf_with(
            "BT /F1 12 Tf 72 700 Td (first line) Tj ET q 1 0 0 1 72 600 cm /Fm1 Do Q",
            None,
        );
        // 100pt lower: a paragraph break.
        assert_eq!(text_of(&pdf), "first line\n\ninside form\n");
        assert_eq!(super::super::normalize("e\u{FB03}cient \u{FB01}le"), "efficient file");
    }

    #[test]
    fn cmap_parser_reads_chars_ranges_and_arrays() {
        let data = b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap /CIDSystemInfo << /Registry (Adobe) /Ordering (UCS (nested)) /Supplement 0 >> def
            1 begincodespacerange <0000><FFFF> endcodespacerange
            2 beginbfchar <0003> <0020> <0010><FB01> endbfchar
            2 beginbfrange <0024> <0026> <0041> <0030> <0031> [<0078> <00790079>] endbfrange endcmap";
        let cmap = CMap::parse(data).unwrap();
        assert_eq!(
            cmap.decode(&[0, 0x24, 0, 0x25, 0, 0x26, 0, 3, 0, 0x10, 0, 0x31], true),
            ("ABC \u{FB01}yy".to_owned(), 0)
        );
        assert_eq!(cmap.decode(&[0, 0x99], true).1, 1);
        // A one-byte font whose CMap declares a two-byte code space.
        let one = CMap::parse(
            b"1 begincodespacerange <0000> <FFFF> endcodespacerange 2 beginbfchar <54> <0054> <68> <0068> endbfchar",
        )
        .unwrap();
        assert_eq!(one.decode(b"Th", false), ("Th".to_owned(), 0));
        assert!(CMap::parse(b"garbage ( unclosed").is_none());
    }

    #[test]
    fn matrices_compose() {
        let m = Matrix::translate(10.0, 20.0).then(Matrix([2.0, 0.0, 0.0, 2.0, 1.0, 1.0]));
        assert_eq!(m.origin(), (21.0, 41.0));
        assert_eq!(m.y_scale(), 2.0);
    }
}
