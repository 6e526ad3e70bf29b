//! BM25 keyword index on tantivy.
//!
//! Fields: `chunk_id`, `doc_id`, `collection`, `label`, `tag` (raw,
//! filterable), `date` (i64, indexed and fast, for ranges) and `title`,
//! `heading`, `body` (English analyzer: lowercase, stop words, Porter
//! stemming; positions kept, so quoted phrases work). Filters are `ConstScoreQuery(.., 0)` clauses inside the
//! same boolean query as the user's query, so they are applied while
//! scoring, never afterwards, and do not change BM25 scores.

use docent_core::{AccessFilter, BackendError, BackendResult, IndexedChunk, KeywordIndex, LegHit};
use parking_lot::Mutex;
use std::ops::Bound;
use std::path::Path;
use std::str::FromStr;
use tantivy::collector::{DocSetCollector, TopDocs};
use tantivy::directory::MmapDirectory;
use tantivy::query::{AllQuery, BooleanQuery, ConstScoreQuery, Occur, Query, QueryParser, RangeQuery, TermSetQuery};
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions, Value, STORED, STRING,
};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer,
};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};
use uuid::Uuid;

const BACKEND: &str = "tantivy";
const ANALYZER: &str = "docent_en";

fn err(e: impl std::error::Error + Send + Sync + 'static) -> BackendError {
    BackendError::backend(BACKEND, e)
}

#[derive(Debug, Clone, Copy)]
struct Fields {
    chunk_id: Field,
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
    sb.add_text_field("chunk_id", STRING | STORED);
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

    fn ids_of(&self, query: &dyn Query) -> BackendResult<Vec<Uuid>> {
        let searcher = self.reader.searcher();
        let addrs = searcher.search(query, &DocSetCollector).map_err(err)?;
        let mut out = Vec::with_capacity(addrs.len());
        for addr in addrs {
            let d: TantivyDocument = searcher.doc(addr).map_err(err)?;
            if let Some(id) = d.get_first(self.f.chunk_id).and_then(|v| v.as_str()) {
                out.push(Uuid::from_str(id).map_err(err)?);
            }
        }
        Ok(out)
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
        let mut qp = QueryParser::for_index(&self.index, vec![self.f.title, self.f.heading, self.f.body]);
        qp.set_field_boost(self.f.title, self.boosts.0);
        qp.set_field_boost(self.f.heading, self.boosts.1);
        qp.set_field_boost(self.f.body, self.boosts.2);
        let (parsed, _errors) = qp.parse_query_lenient(query);
        let mut clauses = vec![(Occur::Must, parsed)];
        clauses.extend(self.filter_clauses(filter));
        let q = BooleanQuery::new(clauses);
        let searcher = self.reader.searcher();
        let top = searcher
            .search(&q, &TopDocs::with_limit(k).order_by_score())
            .map_err(err)?;
        let mut out = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let d: TantivyDocument = searcher.doc(addr).map_err(err)?;
            if let Some(id) = d.get_first(self.f.chunk_id).and_then(|v| v.as_str()) {
                out.push(LegHit {
                    chunk_id: Uuid::from_str(id).map_err(err)?,
                    score,
                });
            }
        }
        Ok(out)
    }

    fn count(&self) -> BackendResult<u64> {
        Ok(self.reader.searcher().num_docs())
    }

    fn chunk_ids(&self) -> BackendResult<Vec<Uuid>> {
        self.ids_of(&AllQuery)
    }

    fn clear(&self) -> BackendResult<()> {
        let mut w = self.writer.lock();
        w.delete_all_documents().map_err(err)?;
        self.commit(&mut w)
    }
}
