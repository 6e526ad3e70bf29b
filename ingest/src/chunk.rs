//! Chunking: positioned blocks in, token-budgeted chunks out.
//!
//! Invariants (checked by unit and property tests):
//! - no chunk exceeds the token budget, as measured by the embedder's own
//!   tokenizer (the [`TokenCounter`]);
//! - a chunk never crosses a page or a heading-path boundary, so every chunk
//!   cites one page and one section;
//! - every non-whitespace character of the text is in at least one chunk, and
//!   consecutive chunks share at most the overlap budget.
//!
//! - a table row (a line of a [`BlockKind::Table`] block) is never split
//!   unless that row alone exceeds the budget.
//!
//! Prose is split into pieces at sentence and line boundaries (words, then
//! characters, for pieces larger than the budget) and packed greedily; a
//! chunk prefers to end at a paragraph break (a blank line) when one falls
//! in the second half of its budget. Table blocks are split at rows only.

use crate::extract::{Block, BlockKind};
use docent_core::TokenCounter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkConfig {
    /// Maximum tokens per chunk (excluding the model's special tokens).
    pub max_tokens: usize,
    /// Tokens carried over from the end of one chunk to the next.
    pub overlap_tokens: usize,
}

impl Default for ChunkConfig {
    fn default() -> Self {
        Self {
            max_tokens: 200,
            overlap_tokens: 32,
        }
    }
}

/// A chunk before ids are assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DraftChunk {
    pub text: String,
    pub page: Option<u32>,
    pub heading_path: Vec<String>,
    /// Char offsets into the joined document text (see [`join_blocks`]).
    pub char_start: usize,
    pub char_end: usize,
    pub token_count: usize,
}

/// Separator placed between blocks in the document text.
pub const BLOCK_SEPARATOR: &str = "\n\n";

/// The document text that chunk offsets refer to: blocks joined by
/// [`BLOCK_SEPARATOR`], with the char offset at which each block starts.
pub fn join_blocks(blocks: &[Block]) -> (String, Vec<usize>) {
    let mut text = String::new();
    let mut starts = Vec::with_capacity(blocks.len());
    let mut chars = 0usize;
    for (i, b) in blocks.iter().enumerate() {
        if i > 0 {
            text.push_str(BLOCK_SEPARATOR);
            chars += BLOCK_SEPARATOR.chars().count();
        }
        starts.push(chars);
        text.push_str(&b.text);
        chars += b.text.chars().count();
    }
    (text, starts)
}

/// A span of a block, in bytes of that block's text.
#[derive(Debug, Clone, Copy)]
struct Piece {
    start: usize,
    end: usize,
    tokens: usize,
}

pub fn chunk_blocks(blocks: &[Block], cfg: ChunkConfig, counter: &dyn TokenCounter) -> Vec<DraftChunk> {
    let max = cfg.max_tokens.max(8);
    let overlap = cfg.overlap_tokens.min(max / 2);
    let (_, starts) = join_blocks(blocks);
    let mut out = Vec::new();
    // Consecutive blocks with the same position are packed together.
    let mut i = 0;
    while i < blocks.len() {
        let mut j = i + 1;
        while j < blocks.len()
            && blocks[j].page == blocks[i].page
            && blocks[j].heading_path == blocks[i].heading_path
            && blocks[j].kind == blocks[i].kind
        {
            j += 1;
        }
        // Treat the group as one text: the blocks as joined in the document.
        let group_text = blocks[i..j]
            .iter()
            .map(|b| b.text.as_str())
            .collect::<Vec<_>>()
            .join(BLOCK_SEPARATOR);
        pack(&group_text, starts[i], &blocks[i], max, overlap, counter, &mut out);
        i = j;
    }
    out
}

fn pack(
    text: &str,
    base_chars: usize,
    pos: &Block,
    max: usize,
    overlap: usize,
    counter: &dyn TokenCounter,
    out: &mut Vec<DraftChunk>,
) {
    let pieces = split_pieces(text, max, counter, pos.kind);
    if pieces.is_empty() {
        return;
    }
    let mut cursor = CharCursor::new(text);
    let mut first = 0usize;
    while first < pieces.len() {
        // Grow the window [first, last) while the summed tokens fit.
        let mut last = first;
        let mut sum = 0usize;
        while last < pieces.len() && (last == first || sum + pieces[last].tokens <= max) {
            sum += pieces[last].tokens;
            last += 1;
        }
        // More follows: end at the last paragraph break in the second half.
        if last < pieces.len() {
            let mut acc = 0usize;
            let mut cut = None;
            for (k, piece) in pieces.iter().enumerate().take(last).skip(first) {
                acc += piece.tokens;
                if k + 1 < last && acc * 2 >= max && ends_paragraph(&text[piece.start..piece.end]) {
                    cut = Some(k + 1);
                }
            }
            if let Some(c) = cut {
                last = c;
            }
        }
        // Verify with the real tokenizer; shrink if the join costs more.
        let (mut s, mut e) = trimmed(text, pieces[first].start, pieces[last - 1].end);
        let mut tokens = counter.count(&text[s..e]);
        while tokens > max && last - first > 1 {
            last -= 1;
            (s, e) = trimmed(text, pieces[first].start, pieces[last - 1].end);
            tokens = counter.count(&text[s..e]);
        }
        if e > s {
            out.push(DraftChunk {
                text: text[s..e].to_owned(),
                page: pos.page,
                heading_path: pos.heading_path.clone(),
                char_start: base_chars + cursor.chars_at(s),
                char_end: base_chars + cursor.chars_at(e),
                token_count: tokens,
            });
        }
        if last >= pieces.len() {
            break;
        }
        // Start the next chunk with trailing pieces worth <= overlap tokens,
        // but always make progress.
        let mut next = last;
        let mut carried = 0usize;
        while next > first + 1 && carried + pieces[next - 1].tokens <= overlap {
            carried += pieces[next - 1].tokens;
            next -= 1;
        }
        first = next;
    }
}

/// Shrinks [s, e) to exclude surrounding whitespace.
fn trimmed(text: &str, s: usize, e: usize) -> (usize, usize) {
    let slice = &text[s..e];
    let lead = slice.len() - slice.trim_start().len();
    let trail = slice.len() - slice.trim_end().len();
    if lead == slice.len() {
        return (s, s);
    }
    (s + lead, e - trail)
}

/// Converts byte offsets to char offsets for increasing (or repeated) queries.
struct CharCursor<'a> {
    text: &'a str,
    byte: usize,
    chars: usize,
}

impl<'a> CharCursor<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            byte: 0,
            chars: 0,
        }
    }

    fn chars_at(&mut self, byte: usize) -> usize {
        if byte < self.byte {
            self.byte = 0;
            self.chars = 0;
        }
        self.chars += self.text[self.byte..byte].chars().count();
        self.byte = byte;
        self.chars
    }
}

/// Whether a piece (which keeps its trailing whitespace) ends a paragraph.
fn ends_paragraph(piece: &str) -> bool {
    let trail = &piece[piece.trim_end().len()..];
    trail.matches('\n').count() >= 2
}

/// Splits text into pieces of at most `max` tokens each: sentences and lines
/// (rows only, for tables), then words, then characters.
fn split_pieces(text: &str, max: usize, counter: &dyn TokenCounter, kind: BlockKind) -> Vec<Piece> {
    let mut out = Vec::new();
    let spans = match kind {
        BlockKind::Text => sentence_spans(text),
        BlockKind::Table => line_spans(text),
    };
    for (s, e) in spans {
        let tokens = counter.count(&text[s..e]);
        if tokens == 0 {
            continue;
        }
        if tokens <= max {
            out.push(Piece {
                start: s,
                end: e,
                tokens,
            });
            continue;
        }
        // Too long: pack words.
        let mut acc_start = s;
        let mut acc_tokens = 0usize;
        for (wstart, wend) in word_spans(text, s, e) {
            let wt = counter.count(&text[wstart..wend]);
            if wt > max {
                if acc_tokens > 0 {
                    out.push(Piece {
                        start: acc_start,
                        end: wstart,
                        tokens: acc_tokens,
                    });
                }
                split_chars(text, wstart, wend, max, counter, &mut out);
                acc_start = wend;
                acc_tokens = 0;
            } else if acc_tokens + wt > max {
                out.push(Piece {
                    start: acc_start,
                    end: wstart,
                    tokens: acc_tokens,
                });
                acc_start = wstart;
                acc_tokens = wt;
            } else {
                acc_tokens += wt;
            }
        }
        if acc_tokens > 0 {
            out.push(Piece {
                start: acc_start,
                end: e,
                tokens: acc_tokens,
            });
        }
    }
    out
}

fn split_chars(text: &str, s: usize, e: usize, max: usize, counter: &dyn TokenCounter, out: &mut Vec<Piece>) {
    let mut start = s;
    while start < e {
        // Largest end (on a char boundary) whose slice fits the budget.
        let bounds: Vec<usize> = text[start..e]
            .char_indices()
            .map(|(i, _)| start + i)
            .skip(1)
            .chain(std::iter::once(e))
            .collect();
        let (mut lo, mut hi) = (0usize, bounds.len() - 1);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if counter.count(&text[start..bounds[mid]]) <= max {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        let end = bounds[lo];
        out.push(Piece {
            start,
            end,
            tokens: counter.count(&text[start..end]),
        });
        start = end;
    }
}

/// Sentence and line spans covering all of `text` (each keeps its trailing
/// whitespace, so the spans tile the text).
fn sentence_spans(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = 0usize;
    let mut iter = text.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        let boundary = match c {
            '\n' => true,
            '.' | '!' | '?' | ';' => iter.peek().is_some_and(|(_, n)| n.is_whitespace()),
            _ => false,
        };
        if boundary {
            // Swallow following whitespace into this span.
            let mut end = i + c.len_utf8();
            while let Some(&(j, n)) = iter.peek() {
                if n.is_whitespace() {
                    end = j + n.len_utf8();
                    iter.next();
                } else {
                    break;
                }
            }
            spans.push((start, end));
            start = end;
        }
    }
    if start < text.len() {
        spans.push((start, text.len()));
    }
    spans
}

/// Line spans covering all of `text`, each keeping its trailing whitespace.
fn line_spans(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = 0usize;
    let bytes = text.as_bytes();
    let mut i = 0usize;
    while i < bytes.len() {
        if bytes[i] == b'\n' {
            let mut end = i + 1;
            while end < bytes.len() && (bytes[end] as char).is_ascii_whitespace() {
                end += 1;
            }
            spans.push((start, end));
            start = end;
            i = end;
        } else {
            i += 1;
        }
    }
    if start < text.len() {
        spans.push((start, text.len()));
    }
    spans
}

/// Word spans within [s, e), each keeping its trailing whitespace.
fn word_spans(text: &str, s: usize, e: usize) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = s;
    let mut in_space = false;
    for (i, c) in text[s..e].char_indices() {
        let i = s + i;
        if c.is_whitespace() {
            in_space = true;
        } else if in_space {
            spans.push((start, i));
            start = i;
            in_space = false;
        }
    }
    if start < e {
        spans.push((start, e));
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Logic-only counter: one token per whitespace-separated word piece of
    /// at most 4 chars (so long words cost more, as with WordPiece).
    struct WordCounter;
    impl TokenCounter for WordCounter {
        fn count(&self, text: &str) -> usize {
            text.split_whitespace().map(|w| w.chars().count().div_ceil(4)).sum()
        }
    }

    fn block(text: &str, page: Option<u32>, path: &[&str]) -> Block {
        Block::text(text.to_owned(), page, path.iter().map(|s| (*s).to_owned()).collect())
    }

    fn table(rows: &[String], path: &[&str]) -> Block {
        Block {
            text: rows.join("\n"),
            page: None,
            heading_path: path.iter().map(|s| (*s).to_owned()).collect(),
            kind: BlockKind::Table,
        }
    }

    fn check_invariants(blocks: &[Block], cfg: ChunkConfig) -> Vec<DraftChunk> {
        let chunks = chunk_blocks(blocks, cfg, &WordCounter);
        let (doc, _) = join_blocks(blocks);
        let doc_chars: Vec<char> = doc.chars().collect();
        let mut covered = vec![false; doc_chars.len()];
        for c in &chunks {
            assert!(c.token_count <= cfg.max_tokens, "chunk over budget: {c:?}");
            assert_eq!(WordCounter.count(&c.text), c.token_count);
            let span: String = doc_chars[c.char_start..c.char_end].iter().collect();
            assert_eq!(span, c.text, "offsets must point at the chunk text");
            for flag in &mut covered[c.char_start..c.char_end] {
                *flag = true;
            }
        }
        for (i, ch) in doc_chars.iter().enumerate() {
            assert!(covered[i] || ch.is_whitespace(), "char {i} ({ch:?}) lost");
        }
        // Consecutive chunks of one position overlap by at most the overlap budget.
        for w in chunks.windows(2) {
            if w[0].page == w[1].page && w[0].heading_path == w[1].heading_path && w[1].char_start < w[0].char_end {
                let shared: String = doc_chars[w[1].char_start..w[0].char_end.min(w[1].char_end)]
                    .iter()
                    .collect();
                assert!(WordCounter.count(&shared) <= cfg.overlap_tokens.min(cfg.max_tokens / 2) + 1);
            }
        }
        chunks
    }

    #[test]
    fn pages_and_headings_are_kept() {
        let blocks = vec![
            block("Page one text. More on page one.", Some(1), &[]),
            block("Page two has the answer. It is forty-two.", Some(2), &[]),
        ];
        let chunks = check_invariants(
            &blocks,
            ChunkConfig {
                max_tokens: 50,
                overlap_tokens: 5,
            },
        );
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].page, Some(1));
        assert_eq!(chunks[1].page, Some(2));
        assert!(chunks[1].text.contains("forty-two"));

        let md = vec![block("alpha beta", None, &["A"]), block("gamma", None, &["A", "B"])];
        let chunks = check_invariants(&md, ChunkConfig::default());
        assert_eq!(chunks[1].heading_path, vec!["A".to_owned(), "B".to_owned()]);
    }

    #[test]
    fn long_text_is_split_with_overlap() {
        let text: String = (0..300).map(|i| format!("Sentence number {i} is here. ")).collect();
        let blocks = vec![block(&text, Some(3), &["H"])];
        let chunks = check_invariants(
            &blocks,
            ChunkConfig {
                max_tokens: 40,
                overlap_tokens: 10,
            },
        );
        assert!(chunks.len() > 10);
        assert!(chunks.iter().all(|c| c.page == Some(3)));
        // Overlap exists: each chunk starts before the previous one ends.
        assert!(chunks.windows(2).all(|w| w[1].char_start < w[0].char_end));
    }

    #[test]
    fn giant_word_is_split_by_chars() {
        let text = format!("start {} end", "x".repeat(1000));
        let chunks = check_invariants(
            &[block(&text, None, &[])],
            ChunkConfig {
                max_tokens: 16,
                overlap_tokens: 0,
            },
        );
        assert!(chunks.len() >= 1000 / 64);
    }

    #[test]
    fn chunks_prefer_paragraph_breaks() {
        let para = |n: usize| (0..6).map(|i| format!("P{n} sentence {i}. ")).collect::<String>();
        let text = format!("{}\n\n{}\n\n{}", para(1), para(2), para(3));
        let chunks = check_invariants(
            &[block(&text, None, &[])],
            ChunkConfig {
                max_tokens: 40,
                overlap_tokens: 0,
            },
        );
        // Each paragraph costs 24 tokens: a chunk holds one whole paragraph
        // rather than one and a half.
        assert!(chunks.len() >= 3, "{chunks:#?}");
        for c in &chunks {
            let firsts: std::collections::BTreeSet<&str> =
                c.text.split_whitespace().filter(|w| w.starts_with('P')).collect();
            assert_eq!(firsts.len(), 1, "a chunk mixes paragraphs: {:?}", c.text);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn table_rows_are_never_split(
            rows in proptest::collection::vec("[a-z]{1,6}(: [a-z0-9]{1,8}[.;]? ){1,6}", 1..40),
            max in 30usize..80,
            overlap in 0usize..8,
        ) {
            // Every row fits the smallest budget (a row costs at most 26 tokens).
            let rows: Vec<String> = rows.iter().map(|r| r.trim().to_owned()).collect();
            let blocks = vec![block("Intro text. More text.", None, &["T"]), table(&rows, &["T"])];
            let chunks = check_invariants(&blocks, ChunkConfig { max_tokens: max, overlap_tokens: overlap });
            for c in chunks.iter().filter(|c| c.text != "Intro text. More text.") {
                for line in c.text.lines() {
                    prop_assert!(rows.iter().any(|r| r == line), "row split: {line:?} in {:?}", c.text);
                }
            }
        }

        #[test]
        fn invariants_hold(
            texts in proptest::collection::vec("[a-zA-Zéü0-9 .,!?\n-]{0,400}", 1..6),
            pages in proptest::collection::vec(1u32..4, 6),
            max in 8usize..80,
            overlap in 0usize..20,
        ) {
            let blocks: Vec<Block> = texts.iter().enumerate()
                .map(|(i, t)| block(t, Some(pages[i]), &[]))
                .collect();
            check_invariants(&blocks, ChunkConfig { max_tokens: max, overlap_tokens: overlap });
        }
    }
}
