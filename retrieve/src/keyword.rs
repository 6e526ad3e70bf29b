//! BM25 keyword index on tantivy.
//!
//! Fields: `chunk_id`, `doc_id`, `collection`, `label`, `tag` (raw,
//! filterable), `date` (i64, indexed and fast, for ranges), `chunk_hi` and
//! `chunk_lo` (the chunk id's two halves as u64 fast columns, so a hit's id
//! is read from a column, not from the compressed document store) and
//! `title`, `heading`, `body` (English analyzer: lowercase, stop words,
//! Porter stemming; positions kept, so quoted phrases work).
//!
//! A search runs per segment. The user's query, when it is a plain
//! disjunction of terms (the common case: words across title, heading and
//! body), is flattened into one boolean `Should` of term queries, which
//! tantivy scores with block-max WAND. The access filter's clauses are a
//! second query whose matches are checked inside the top-k callback by
//! seeking its cursor forward to each candidate (candidates arrive in doc
//! order), together with the segment's deletions; the pruning threshold is
//! the k-th best *allowed* score, so results equal an exhaustive filtered
//! search. A segment where the filter allows few documents (under 1/16 by
//! its size hint: one department's share of a large index) is searched the
//! other way round, text and filter intersected, so only allowed documents
//! are scored; pruning there would wade through the rejected majority
//! before the threshold could rise.
//! Queries with phrases, `+`/`-` operators or boosts keep their parsed form
//! (scored exhaustively, still filtered by the bitset). Either way the
//! filter is applied while collecting, never after top-k, and never
//! changes a BM25 score.

use docent_core::{AccessFilter, BackendError, BackendResult, IndexedChunk, KeywordIndex, LegHit};
use parking_lot::Mutex;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::ops::Bound;
use std::path::Path;
use tantivy::collector::TopDocs;
use tantivy::directory::MmapDirectory;
use tantivy::query::{
    AllQuery, BooleanQuery, ConstScoreQuery, EnableScoring, Occur, Query, QueryParser, RangeQuery, TermQuery,
    TermSetQuery,
};
use tantivy::schema::{Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions, FAST, STRING};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer,
};
use tantivy::{
    DocId, DocSet, Index, IndexReader, IndexWriter, ReloadPolicy, Score, SegmentReader, TantivyDocument, Term,
    TERMINATED,
};
use uuid::Uuid;

const BACKEND: &str = "tantivy";
const ANALYZER: &str = "docent_en";
const CHUNK_HI: &str = "chunk_hi";
const CHUNK_LO: &str = "chunk_lo";
/// A segment whose filter allows fewer than 1/SELECTIVE of its documents
/// (by the filter's size hint) is searched as text-and-filter intersected;
/// above that, by pruning over the text with the filter as a cursor.
const SELECTIVE: u64 = 16;

fn err(e: impl std::error::Error + Send + Sync + 'static) -> BackendError {
    BackendError::backend(BACKEND, e)
}

#[derive(Debug, Clone, Copy)]
struct Fields {
    chunk_id: Field,
    chunk_hi: Field,
    chunk_lo: Field,
    doc_id: Field,
    collection: Field,
    label: Field,
    tag: Field,
    date: Field,
    title: Field,
    heading: Field,
    body: Field,
}

pub struct TantivyIndex {
    index: Index,
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    f: Fields,
    /// Field boosts for title, heading and body.
    boosts: (f32, f32, f32),
}

fn schema() -> Schema {
    let mut sb = Schema::builder();
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(ANALYZER)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    sb.add_text_field("chunk_id", STRING);
    sb.add_u64_field(CHUNK_HI, FAST);
    sb.add_u64_field(CHUNK_LO, FAST);
    sb.add_text_field("doc_id", STRING);
    sb.add_text_field("collection", STRING);
    sb.add_text_field("label", STRING);
    sb.add_text_field("tag", STRING);
    sb.add_i64_field("date", NumericOptions::default().set_indexed().set_fast());
    sb.add_text_field("title", text.clone());
    sb.add_text_field("heading", text.clone());
    sb.add_text_field("body", text);
    sb.build()
}

impl TantivyIndex {
    /// Opens (or creates) the index in `dir`.
    pub fn open(dir: &Path) -> BackendResult<Self> {
        std::fs::create_dir_all(dir).map_err(err)?;
        // An index written with an older schema is derived data: drop it and
        // let the startup repair rebuild it from SQL.
        let stale = match Index::open(MmapDirectory::open(dir).map_err(err)?) {
            Ok(old) => old.schema() != schema(),
            Err(_) => false,
        };
        if stale {
            tracing::warn!(dir = %dir.display(), "keyword index has an older schema; rebuilding it from SQL");
            std::fs::remove_dir_all(dir).map_err(err)?;
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let mmap = MmapDirectory::open(dir).map_err(err)?;
        let index = Index::open_or_create(mmap, schema()).map_err(err)?;
        let analyzer = TextAnalyzer::builder(SimpleTokenizer::default())
            .filter(RemoveLongFilter::limit(40))
            .filter(LowerCaser)
            .filter(
                StopWordFilter::new(Language::English)
                    .ok_or_else(|| BackendError::invalid(BACKEND, "no English stop words"))?,
            )
            .filter(Stemmer::new(Language::English))
            .build();
        index.tokenizers().register(ANALYZER, analyzer);
        let s = index.schema();
        let get = |n: &str| s.get_field(n).map_err(err);
        let f = Fields {
            chunk_id: get("chunk_id")?,
            chunk_hi: get(CHUNK_HI)?,
            chunk_lo: get(CHUNK_LO)?,
            doc_id: get("doc_id")?,
            collection: get("collection")?,
            label: get("label")?,
            tag: get("tag")?,
            date: get("date")?,
            title: get("title")?,
            heading: get("heading")?,
            body: get("body")?,
        };
        let writer: IndexWriter = index.writer(64 << 20).map_err(err)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(err)?;
        Ok(Self {
            index,
            reader,
            writer: Mutex::new(writer),
            f,
            boosts: (1.0, 1.0, 1.0),
        })
    }

    pub fn with_boosts(mut self, title: f32, heading: f32, body: f32) -> Self {
        self.boosts = (title, heading, body);
        self
    }

    /// Adds (replacing by chunk id) without committing.
    fn add_chunks(&self, w: &mut IndexWriter, chunks: &[IndexedChunk]) -> BackendResult<()> {
        for c in chunks {
            w.delete_term(Term::from_field_text(self.f.chunk_id, &c.chunk_id.to_string()));
            let mut d = TantivyDocument::default();
            d.add_text(self.f.chunk_id, c.chunk_id.to_string());
            let id = c.chunk_id.as_u128();
            d.add_u64(self.f.chunk_hi, (id >> 64) as u64);
            d.add_u64(self.f.chunk_lo, id as u64);
            d.add_text(self.f.doc_id, c.doc_id.to_string());
            d.add_text(self.f.collection, &c.collection);
            for l in &c.access {
                d.add_text(self.f.label, l);
            }
            for t in &c.tags {
                d.add_text(self.f.tag, t);
            }
            d.add_i64(self.f.date, c.date);
            d.add_text(self.f.title, &c.title);
            d.add_text(self.f.heading, &c.heading);
            d.add_text(self.f.body, &c.text);
            w.add_document(d).map_err(err)?;
        }
        Ok(())
    }

    fn commit(&self, writer: &mut IndexWriter) -> BackendResult<()> {
        writer.commit().map_err(err)?;
        self.reader.reload().map_err(err)
    }

    fn filter_clauses(&self, filter: &AccessFilter) -> Vec<(Occur, Box<dyn Query>)> {
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        let mut push = |field: Field, values: Vec<String>| {
            let set = TermSetQuery::new(values.iter().map(|v| Term::from_field_text(field, v)));
            clauses.push((Occur::Must, Box::new(ConstScoreQuery::new(Box::new(set), 0.0))));
        };
        push(self.f.label, filter.groups.clone());
        if !filter.collections.is_empty() {
            push(self.f.collection, filter.collections.clone());
        }
        if !filter.doc_ids.is_empty() {
            push(self.f.doc_id, filter.doc_ids.iter().map(Uuid::to_string).collect());
        }
        if !filter.tags.is_empty() {
            push(self.f.tag, filter.tags.clone());
        }
        if filter.date_from.is_some() || filter.date_to.is_some() {
            let bound = |v: Option<i64>| match v {
                Some(x) => Bound::Included(Term::from_field_i64(self.f.date, x)),
                None => Bound::Unbounded,
            };
            let range = RangeQuery::new(bound(filter.date_from), bound(filter.date_to));
            clauses.push((Occur::Must, Box::new(ConstScoreQuery::new(Box::new(range), 0.0))));
        }
        clauses
    }

    /// The user's query as parsed (lenient: syntax errors become terms).
    fn parse(&self, query: &str) -> Box<dyn Query> {
        let mut qp = QueryParser::for_index(&self.index, vec![self.f.title, self.f.heading, self.f.body]);
        qp.set_field_boost(self.f.title, self.boosts.0);
        qp.set_field_boost(self.f.heading, self.boosts.1);
        qp.set_field_boost(self.f.body, self.boosts.2);
        qp.parse_query_lenient(query).0
    }

    /// The same search as [`KeywordIndex::search`], done the plain way: the
    /// parsed query and the filter clauses as `Must` clauses of one boolean
    /// query, scored exhaustively by tantivy's own top-docs collector. The
    /// oracle the pruned search is tested against.
    pub fn search_exhaustive(&self, query: &str, filter: &AccessFilter, k: usize) -> BackendResult<Vec<LegHit>> {
        if filter.denies_everything() || query.trim().is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let mut clauses = vec![(Occur::Must, self.parse(query))];
        clauses.extend(self.filter_clauses(filter));
        let searcher = self.reader.searcher();
        let top = searcher
            .search(&BooleanQuery::new(clauses), &TopDocs::with_limit(k).order_by_score())
            .map_err(err)?;
        let mut out = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let ids = IdColumns::open(searcher.segment_reader(addr.segment_ord))?;
            if let Some(chunk_id) = ids.get(addr.doc_id) {
                out.push(LegHit { chunk_id, score });
            }
        }
        Ok(out)
    }

    /// Every live chunk id, read from the fast columns.
    fn all_ids(&self) -> BackendResult<Vec<Uuid>> {
        let searcher = self.reader.searcher();
        let mut out = Vec::with_capacity(searcher.num_docs() as usize);
        for seg in searcher.segment_readers() {
            let ids = IdColumns::open(seg)?;
            let alive = seg.alive_bitset();
            for d in 0..seg.max_doc() {
                if alive.is_none_or(|a| a.is_alive(d)) {
                    out.extend(ids.get(d));
                }
            }
        }
        Ok(out)
    }
}

/// The chunk id columns of one segment.
struct IdColumns {
    hi: tantivy::columnar::Column<u64>,
    lo: tantivy::columnar::Column<u64>,
}

impl IdColumns {
    fn open(seg: &SegmentReader) -> BackendResult<Self> {
        let ff = seg.fast_fields();
        Ok(Self {
            hi: ff.u64(CHUNK_HI).map_err(err)?,
            lo: ff.u64(CHUNK_LO).map_err(err)?,
        })
    }

    fn get(&self, doc: DocId) -> Option<Uuid> {
        let (hi, lo) = (self.hi.first(doc)?, self.lo.first(doc)?);
        Some(Uuid::from_u128((u128::from(hi) << 64) | u128::from(lo)))
    }
}

/// The terms of a query that is nothing but a disjunction of terms
/// (nested `Should` booleans of term queries, as the parser builds for
/// plain words over several fields); `None` for anything else.
fn disjunction_terms(q: &dyn Query) -> Option<Vec<Term>> {
    fn walk(q: &dyn Query, out: &mut Vec<Term>) -> bool {
        if let Some(t) = q.downcast_ref::<TermQuery>() {
            out.push(t.term().clone());
            return true;
        }
        match q.downcast_ref::<BooleanQuery>() {
            Some(b) => b
                .clauses()
                .iter()
                .all(|(occur, sub)| *occur == Occur::Should && walk(sub.as_ref(), out)),
            None => false,
        }
    }
    let mut out = Vec::new();
    walk(q, &mut out).then_some(out)
}

/// A top-k entry: higher score first, then the lower (segment, doc).
#[derive(Debug, Clone, Copy)]
struct Ranked {
    score: Score,
    seg: u32,
    doc: DocId,
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| (other.seg, other.doc).cmp(&(self.seg, self.doc)))
    }
}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Ranked {}

/// The k best hits seen so far (a min-heap of them). Documents arrive in
/// ascending (segment, doc) order and must beat the threshold strictly, so
/// ties keep the earlier document, as tantivy's own top-docs collector does.
struct TopK {
    k: usize,
    heap: BinaryHeap<Reverse<Ranked>>,
}

impl TopK {
    fn new(k: usize) -> Self {
        Self {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    /// The score a new document must beat.
    fn threshold(&self) -> Score {
        if self.heap.len() < self.k {
            Score::MIN
        } else {
            self.heap.peek().map_or(Score::MIN, |r| r.0.score)
        }
    }

    fn push(&mut self, r: Ranked) {
        if r.score > self.threshold() {
            self.heap.push(Reverse(r));
            if self.heap.len() > self.k {
                self.heap.pop();
            }
        }
    }

    /// The pruning callback's step: keeps an allowed document if it beats
    /// the threshold, and returns the threshold after it.
    fn offer(&mut self, allowed: bool, score: Score, seg: u32, doc: DocId) -> Score {
        if allowed {
            self.push(Ranked { score, seg, doc });
        }
        self.threshold()
    }

    /// Best first.
    fn into_sorted(self) -> Vec<Ranked> {
        let mut v: Vec<Ranked> = self.heap.into_iter().map(|r| r.0).collect();
        v.sort_by(|a, b| b.cmp(a));
        v
    }
}

impl KeywordIndex for TantivyIndex {
    fn upsert(&self, chunks: &[IndexedChunk]) -> BackendResult<()> {
        let mut w = self.writer.lock();
        self.add_chunks(&mut w, chunks)?;
        self.commit(&mut w)
    }

    fn replace_docs(&self, doc_ids: &[Uuid], chunks: &[IndexedChunk]) -> BackendResult<()> {
        // One writer lock and one commit: searchers see the old chunks or
        // the new ones, never none.
        let mut w = self.writer.lock();
        for id in doc_ids {
            w.delete_term(Term::from_field_text(self.f.doc_id, &id.to_string()));
        }
        self.add_chunks(&mut w, chunks)?;
        self.commit(&mut w)
    }

    fn delete_docs(&self, doc_ids: &[Uuid]) -> BackendResult<()> {
        let mut w = self.writer.lock();
        for id in doc_ids {
            w.delete_term(Term::from_field_text(self.f.doc_id, &id.to_string()));
        }
        self.commit(&mut w)
    }

    fn delete_chunks(&self, chunk_ids: &[Uuid]) -> BackendResult<()> {
        let mut w = self.writer.lock();
        for id in chunk_ids {
            w.delete_term(Term::from_field_text(self.f.chunk_id, &id.to_string()));
        }
        self.commit(&mut w)
    }

    fn search(&self, query: &str, filter: &AccessFilter, k: usize) -> BackendResult<Vec<LegHit>> {
        if filter.denies_everything() || query.trim().is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let parsed = self.parse(query);
        let text: Box<dyn Query> = match disjunction_terms(parsed.as_ref()) {
            Some(terms) if terms.is_empty() => return Ok(Vec::new()),
            Some(terms) => Box::new(BooleanQuery::new(
                terms
                    .into_iter()
                    .map(|t| {
                        let q: Box<dyn Query> = Box::new(TermQuery::new(t, IndexRecordOption::WithFreqs));
                        (Occur::Should, q)
                    })
                    .collect(),
            )),
            None => parsed,
        };
        let clauses = self.filter_clauses(filter);
        let filter: Box<dyn Query> = if clauses.is_empty() {
            Box::new(AllQuery)
        } else {
            Box::new(BooleanQuery::new(clauses))
        };
        let searcher = self.reader.searcher();
        let scoring = EnableScoring::enabled_from_searcher(&searcher);
        // For a selective filter: the text and the filter intersected, so
        // only the allowed documents are ever scored (built on first use).
        let both = BooleanQuery::new(vec![(Occur::Must, text.box_clone()), (Occur::Must, filter.box_clone())]);
        let mut both_weight = None;
        let text = text.weight(scoring).map_err(err)?;
        let filter = filter
            .weight(EnableScoring::disabled_from_searcher(&searcher))
            .map_err(err)?;
        let mut top = TopK::new(k);
        for (ord, seg) in searcher.segment_readers().iter().enumerate() {
            let mut allowed = filter.scorer(seg, 1.0).map_err(err)?;
            if allowed.doc() == TERMINATED {
                continue;
            }
            let alive = seg.alive_bitset();
            let seg_ord = ord as u32;
            if u64::from(allowed.size_hint()) * SELECTIVE < u64::from(seg.max_doc()) {
                // Few allowed documents: scoring them all is cheaper than
                // pruning over every document and rejecting most of them.
                if both_weight.is_none() {
                    both_weight = Some(both.weight(scoring).map_err(err)?);
                }
                if let Some(w) = &both_weight {
                    w.for_each_pruning(top.threshold(), seg, &mut |doc, score| {
                        let live = alive.is_none_or(|a| a.is_alive(doc));
                        top.offer(live, score, seg_ord, doc)
                    })
                    .map_err(err)?;
                }
                continue;
            }
            // The filter's matches as a cursor: candidates arrive in
            // ascending doc order, so it only ever seeks forward, over
            // skip lists; the cost follows the candidates, not the segment.
            text.for_each_pruning(top.threshold(), seg, &mut |doc, score| {
                let mut at = allowed.doc();
                if at < doc {
                    at = allowed.seek(doc);
                }
                let ok = at == doc && alive.is_none_or(|a| a.is_alive(doc));
                top.offer(ok, score, seg_ord, doc)
            })
            .map_err(err)?;
        }
        let ranked = top.into_sorted();
        let mut columns: Vec<Option<IdColumns>> = (0..searcher.segment_readers().len()).map(|_| None).collect();
        let mut out = Vec::with_capacity(ranked.len());
        for r in ranked {
            let slot = &mut columns[r.seg as usize];
            if slot.is_none() {
                *slot = Some(IdColumns::open(searcher.segment_reader(r.seg))?);
            }
            if let Some(chunk_id) = slot.as_ref().and_then(|c| c.get(r.doc)) {
                out.push(LegHit {
                    chunk_id,
                    score: r.score,
                });
            }
        }
        Ok(out)
    }

    fn count(&self) -> BackendResult<u64> {
        Ok(self.reader.searcher().num_docs())
    }

    fn chunk_ids(&self) -> BackendResult<Vec<Uuid>> {
        self.all_ids()
    }

    fn clear(&self) -> BackendResult<()> {
        let mut w = self.writer.lock();
        w.delete_all_documents().map_err(err)?;
        self.commit(&mut w)
    }
}
