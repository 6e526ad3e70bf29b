//! HTML: readable text with the heading structure (`h1`..`h6` open
//! sections), tables as one line per row, and everything that is not
//! content dropped (scripts, styles, templates, navigation, forms' widgets).
//!
//! The tree is walked iteratively (open/close edges), so deeply nested
//! markup cannot overflow the stack.

use super::{normalize, Block, BlockKind, Extracted};
use ego_tree::iter::Edge;
use scraper::{Html, Node};

/// Elements whose content is never text for a reader.
const SKIP: &[&str] = &[
    "script", "style", "noscript", "template", "svg", "math", "iframe", "object", "embed", "canvas", "nav", "button",
    "select", "option", "textarea", "head",
];

/// Elements that end a paragraph.
const PARAGRAPH: &[&str] = &[
    "p",
    "div",
    "section",
    "article",
    "main",
    "header",
    "footer",
    "aside",
    "blockquote",
    "pre",
    "figure",
    "figcaption",
    "form",
    "address",
    "ul",
    "ol",
    "dl",
    "hr",
    "details",
    "summary",
];

/// Elements that end a line.
const LINE: &[&str] = &["br", "li", "dt", "dd", "caption"];

#[derive(Default)]
struct Walker {
    blocks: Vec<Block>,
    path: Vec<(usize, String)>,
    text: String,
    title: Option<String>,
    first_h1: Option<String>,
    skip: usize,
    pre: usize,
    heading: Option<(usize, String)>,
    in_title: bool,
    title_text: String,
    table_depth: usize,
    rows: Vec<String>,
    cells: Vec<String>,
    cell: Option<String>,
}

impl Walker {
    fn target(&mut self) -> &mut String {
        if let Some((_, h)) = self.heading.as_mut() {
            return h;
        }
        if let Some(c) = self.cell.as_mut() {
            return c;
        }
        &mut self.text
    }

    fn push_text(&mut self, s: &str) {
        if self.pre > 0 && self.heading.is_none() && self.cell.is_none() {
            self.text.push_str(s);
            return;
        }
        let target = self.target();
        for (i, word) in s.split_whitespace().enumerate() {
            let needs_space = if i == 0 {
                s.starts_with(char::is_whitespace)
            } else {
                true
            };
            // Text that follows an inline element without whitespace glues
            // on ("<b>bold</b>er" is one word).
            if needs_space && !target.is_empty() && !target.ends_with([' ', '\n']) {
                target.push(' ');
            }
            target.push_str(word);
        }
        if s.ends_with(char::is_whitespace) && !s.trim().is_empty() && !target.ends_with([' ', '\n']) {
            target.push(' ');
        }
    }

    fn newline(&mut self, blank: bool) {
        if self.heading.is_some() {
            self.target().push(' ');
            return;
        }
        if let Some(c) = self.cell.as_mut() {
            if !c.is_empty() && !c.ends_with(' ') {
                c.push(' ');
            }
            return;
        }
        while self.text.ends_with(' ') {
            self.text.pop();
        }
        if self.text.is_empty() {
            return;
        }
        let want = if blank { "\n\n" } else { "\n" };
        if !self.text.ends_with(want) {
            if blank && self.text.ends_with('\n') {
                self.text.push('\n');
            } else {
                self.text.push_str(want);
            }
        }
    }

    fn flush(&mut self) {
        let text = tidy(&std::mem::take(&mut self.text));
        if !text.is_empty() {
            let path = self.path.iter().map(|(_, h)| h.clone()).collect();
            self.blocks.push(Block::text(text, None, path));
        }
    }
}

/// Trims each line and keeps at most one blank line in a row.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = false;
    for line in text.lines() {
        let line = line.trim_end();
        if line.trim().is_empty() {
            blank = !out.is_empty();
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank { "\n\n" } else { "\n" });
        }
        out.push_str(line);
        blank = false;
    }
    normalize(&out)
}

/// Markup nested deeper than this is read by the linear fallback:
/// html5ever's tree builder scans the stack of open elements for many tags,
/// which is quadratic in the nesting depth of hostile input.
const MAX_TREE_DEPTH: usize = 512;

const VOID: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr",
];

/// The deepest nesting of non-void elements, by a naive linear scan of tags.
fn naive_depth(source: &str) -> usize {
    let bytes = source.as_bytes();
    let (mut depth, mut max) = (0usize, 0usize);
    let mut i = 0;
    while let Some(off) = bytes[i..].iter().position(|b| *b == b'<') {
        i += off + 1;
        let closing = bytes.get(i) == Some(&b'/');
        let start = if closing { i + 1 } else { i };
        let end = bytes[start..]
            .iter()
            .position(|b| !b.is_ascii_alphanumeric())
            .map_or(bytes.len(), |p| start + p);
        if end == start {
            continue;
        }
        let name = source[start..end].to_ascii_lowercase();
        let self_closing = bytes[end..]
            .iter()
            .position(|b| *b == b'>')
            .is_some_and(|p| p > 0 && bytes[end + p - 1] == b'/');
        if closing {
            depth = depth.saturating_sub(1);
        } else if !VOID.contains(&name.as_str()) && !self_closing {
            depth += 1;
            max = max.max(depth);
        }
        i = end;
    }
    max
}

/// Linear fallback for pathological markup: text between tags, with
/// script and style content skipped and block tags as line breaks.
fn strip_tags(source: &str) -> Extracted {
    let mut out = String::with_capacity(source.len() / 2);
    let mut rest = source;
    let mut skip_until: Option<&str> = None;
    while let Some(lt) = rest.find('<') {
        if skip_until.is_none() {
            out.push_str(&rest[..lt]);
        }
        let after = &rest[lt + 1..];
        let gt = after.find('>').map_or(after.len(), |g| g + 1);
        let tag = after[..gt.saturating_sub(1).min(after.len())].to_ascii_lowercase();
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect();
        match skip_until {
            Some(end) if tag.starts_with('/') && name == end => skip_until = None,
            Some(_) => {}
            None if !tag.starts_with('/') && (name == "script" || name == "style") => {
                skip_until = Some(if name == "script" { "script" } else { "style" });
            }
            None if PARAGRAPH.contains(&name.as_str()) || LINE.contains(&name.as_str()) => out.push('\n'),
            None => out.push(' '),
        }
        rest = &after[gt.min(after.len())..];
    }
    if skip_until.is_none() {
        out.push_str(rest);
    }
    let text = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    let text = text
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&nbsp;", " ");
    Extracted {
        blocks: vec![Block::text(normalize(&text), None, Vec::new())],
        ..Extracted::default()
    }
}

pub fn extract_html(source: &str) -> Extracted {
    if naive_depth(source) > MAX_TREE_DEPTH {
        tracing::warn!("HTML nested too deeply for the tree builder; reading it as plain text");
        return strip_tags(source);
    }
    let doc = Html::parse_document(source);
    let mut w = Walker::default();
    for edge in doc.tree.root().traverse() {
        match edge {
            Edge::Open(node) => match node.value() {
                Node::Element(el) => {
                    let name = el.name();
                    if name == "title" && w.title.is_none() {
                        w.in_title = true;
                    }
                    if w.skip > 0 || SKIP.contains(&name) || el.attr("hidden").is_some() {
                        w.skip += 1;
                        continue;
                    }
                    match name {
                        "h1" | "h2" | "h3" | "h4" | "h5" | "h6" if w.table_depth == 0 => {
                            w.flush();
                            let level = usize::from(name.as_bytes()[1] - b'0');
                            w.heading = Some((level, String::new()));
                        }
                        "table" => {
                            w.table_depth += 1;
                            if w.table_depth == 1 {
                                w.flush();
                                w.rows.clear();
                            }
                        }
                        "tr" if w.table_depth == 1 => w.cells.clear(),
                        "td" | "th" if w.table_depth == 1 => w.cell = Some(String::new()),
                        "pre" => {
                            w.newline(true);
                            w.pre += 1;
                        }
                        "li" => {
                            w.newline(false);
                            if w.cell.is_none() && w.heading.is_none() {
                                w.text.push_str("- ");
                            }
                        }
                        "img" => {
                            if let Some(alt) = el.attr("alt").filter(|a| !a.trim().is_empty()) {
                                w.push_text(&format!(" {alt} "));
                            }
                        }
                        n if PARAGRAPH.contains(&n) => w.newline(true),
                        n if LINE.contains(&n) => w.newline(false),
                        _ => {}
                    }
                }
                Node::Text(t) => {
                    if w.in_title {
                        w.title_text.push_str(t);
                    } else if w.skip == 0 {
                        w.push_text(t);
                    }
                }
                _ => {}
            },
            Edge::Close(node) => {
                let Node::Element(el) = node.value() else {
                    continue;
                };
                let name = el.name();
                if name == "title" && w.in_title {
                    w.in_title = false;
                    let t = w.title_text.split_whitespace().collect::<Vec<_>>().join(" ");
                    if !t.is_empty() {
                        w.title = Some(t);
                    }
                }
                if w.skip > 0 {
                    w.skip -= 1;
                    continue;
                }
                match name {
                    "h1" | "h2" | "h3" | "h4" | "h5" | "h6" if w.heading.is_some() => {
                        if let Some((level, text)) = w.heading.take() {
                            let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
                            if !text.is_empty() {
                                if level == 1 && w.first_h1.is_none() {
                                    w.first_h1 = Some(text.clone());
                                }
                                while w.path.last().is_some_and(|(l, _)| *l >= level) {
                                    w.path.pop();
                                }
                                w.path.push((level, text));
                            }
                        }
                    }
                    "td" | "th" if w.table_depth == 1 => {
                        if let Some(c) = w.cell.take() {
                            w.cells.push(c.split_whitespace().collect::<Vec<_>>().join(" "));
                        }
                    }
                    "tr" if w.table_depth == 1 => {
                        let cells = std::mem::take(&mut w.cells);
                        if cells.iter().any(|c| !c.is_empty()) {
                            w.rows.push(cells.join(" | "));
                        }
                    }
                    "table" => {
                        w.table_depth = w.table_depth.saturating_sub(1);
                        if w.table_depth == 0 {
                            let rows = std::mem::take(&mut w.rows);
                            if !rows.is_empty() {
                                let path = w.path.iter().map(|(_, h)| h.clone()).collect();
                                w.blocks.push(Block {
                                    text: normalize(&rows.join("\n")),
                                    page: None,
                                    heading_path: path,
                                    kind: BlockKind::Table,
                                });
                            }
                        }
                    }
                    "pre" => {
                        w.pre = w.pre.saturating_sub(1);
                        w.newline(true);
                    }
                    n if PARAGRAPH.contains(&n) => w.newline(true),
                    n if LINE.contains(&n) => w.newline(false),
                    _ => {}
                }
            }
        }
    }
    w.flush();
    Extracted {
        title: w.title.or(w.first_h1),
        blocks: w.blocks,
        ..Extracted::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_text_with_headings_and_tables() {
        let e = extract_html(
            r#"<!doctype html><html><head><title>Ward Guide</title><style>p{color:red}</style>
            <script>var secret = "do not index";</script></head>
            <body><nav><a href="/">Home</a></nav>
            <h1>Admissions</h1><p>Patients   arrive at <b>Gate</b> 4.</p>
            <h2>Forms</h2><ul><li>Consent</li><li>Insurance card</li></ul>
            <table><tr><th>Shift</th><th>Start</th></tr><tr><td>Night</td><td>22:00</td></tr></table>
            <h1>Discharge</h1><p>Call the family &amp; transport.</p>
            <script>alert(1)</script></body></html>"#,
        );
        assert_eq!(e.title.as_deref(), Some("Ward Guide"));
        let all: String = e.blocks.iter().map(|b| b.text.as_str()).collect::<Vec<_>>().join("\n");
        assert!(
            !all.contains("secret") && !all.contains("alert") && !all.contains("color"),
            "{all}"
        );
        assert!(!all.contains("Home"), "navigation is dropped: {all}");
        let got: Vec<(String, String, BlockKind)> = e
            .blocks
            .iter()
            .map(|b| (b.heading_path.join(" > "), b.text.clone(), b.kind))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "Admissions".into(),
                    "Patients arrive at Gate 4.".into(),
                    BlockKind::Text
                ),
                (
                    "Admissions > Forms".into(),
                    "- Consent\n- Insurance card".into(),
                    BlockKind::Text
                ),
                (
                    "Admissions > Forms".into(),
                    "Shift | Start\nNight | 22:00".into(),
                    BlockKind::Table
                ),
                (
                    "Discharge".into(),
                    "Call the family & transport.".into(),
                    BlockKind::Text
                ),
            ]
        );
    }

    #[test]
    fn deep_nesting_is_read_in_linear_time() {
        // 100k nested elements take html5ever minutes (quadratic); the
        // fallback reads them at once, scripts still dropped.
        let html = format!(
            "<script>hidden()</script>{}deep text{}<style>x{{}}</style>tail",
            "<div><b>".repeat(50_000),
            "</b></div>".repeat(50_000)
        );
        assert!(naive_depth(&html) > MAX_TREE_DEPTH);
        let e = extract_html(&html);
        let text = &e.blocks[0].text;
        assert!(text.contains("deep text") && text.contains("tail"), "{text:?}");
        assert!(!text.contains("hidden") && !text.contains("x{}"), "{text:?}");
        assert_eq!(naive_depth("<p>a<br>b<img src=x/><p/></p>"), 1);
    }
}
