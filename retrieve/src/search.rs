//! Hybrid search: dense (qdrant) and BM25 (tantivy) under one access filter,
//! fused by RRF, hydrated from SQL.
//!
//! Invariant: the access filter is pushed into both index queries; the SQL
//! hydration step returns only chunks of `ready` documents and re-checks the
//! filter as defence in depth (a mismatch is logged as an error: it would
//! mean an index holds stale labels).

use crate::error::{Result, RetrieveError};
use crate::fusion::Fusion;
use docent_core::{AccessFilter, Embedder, KeywordIndex, LegHit, SearchHit, VectorIndex};
use docent_store::Store;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Instant;
use tracing::{error, instrument};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Hybrid,
    Bm25,
    Dense,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "hybrid" => Ok(Mode::Hybrid),
            "bm25" | "keyword" => Ok(Mode::Bm25),
            "dense" | "vector" => Ok(Mode::Dense),
            other => Err(format!("unknown mode {other:?}: use hybrid, bm25 or dense")),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct SearchConfig {
    /// Candidates taken from each leg before fusion.
    pub candidates: usize,
    /// How the legs are fused in hybrid mode.
    pub fusion: Fusion,
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            candidates: 50,
            fusion: Fusion::Rrf { k: 60.0 },
        }
    }
}

/// Time spent per stage, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Timings {
    pub embed_us: u64,
    pub bm25_us: u64,
    pub dense_us: u64,
    pub fuse_us: u64,
    pub hydrate_us: u64,
}

#[derive(Debug, Clone)]
pub struct SearchOutcome {
    pub hits: Vec<SearchHit>,
    pub timings: Timings,
}

#[derive(Clone)]
pub struct Searcher {
    store: Store,
    embedder: Arc<dyn Embedder>,
    vectors: Arc<dyn VectorIndex>,
    keywords: Arc<dyn KeywordIndex>,
    cfg: SearchConfig,
}

fn us(t: Instant) -> u64 {
    t.elapsed().as_micros() as u64
}

impl Searcher {
    pub fn new(
        store: Store,
        embedder: Arc<dyn Embedder>,
        vectors: Arc<dyn VectorIndex>,
        keywords: Arc<dyn KeywordIndex>,
        cfg: SearchConfig,
    ) -> Self {
        Self {
            store,
            embedder,
            vectors,
            keywords,
            cfg,
        }
    }

    pub fn embedder(&self) -> &Arc<dyn Embedder> {
        &self.embedder
    }

    /// Runs the search; `k` results at most.
    pub async fn search(&self, query: &str, filter: &AccessFilter, k: usize, mode: Mode) -> Result<SearchOutcome> {
        self.search_with(query, filter, k, mode, self.cfg.fusion).await
    }

    /// [`Searcher::search`] with an explicit fusion (for evaluation).
    #[instrument(skip(self, query, filter), fields(mode = ?mode, k))]
    pub async fn search_with(
        &self,
        query: &str,
        filter: &AccessFilter,
        k: usize,
        mode: Mode,
        fusion: Fusion,
    ) -> Result<SearchOutcome> {
        let mut timings = Timings::default();
        if filter.denies_everything() || query.trim().is_empty() || k == 0 {
            return Ok(SearchOutcome {
                hits: Vec::new(),
                timings,
            });
        }
        let n = self.cfg.candidates.max(k);
        let (bm25, dense) = {
            let this = self.clone();
            let query = query.to_owned();
            let filter = filter.clone();
            tokio::task::spawn_blocking(move || -> Result<(Vec<LegHit>, Vec<LegHit>, Timings)> {
                let mut t = Timings::default();
                let bm25 = if mode != Mode::Dense {
                    let s = Instant::now();
                    let r = this.keywords.search(&query, &filter, n)?;
                    t.bm25_us = us(s);
                    r
                } else {
                    Vec::new()
                };
                let dense = if mode != Mode::Bm25 {
                    let s = Instant::now();
                    let v = this.embedder.embed_query(&query)?;
                    t.embed_us = us(s);
                    let s = Instant::now();
                    let r = this.vectors.search(&v, &filter, n)?;
                    t.dense_us = us(s);
                    r
                } else {
                    Vec::new()
                };
                Ok((bm25, dense, t))
            })
            .await
            .map_err(|e| RetrieveError::Join(e.to_string()))?
            .map(|(b, d, t)| {
                timings = t;
                (b, d)
            })?
        };
        let s = Instant::now();
        let fused = fusion.fuse(&bm25, &dense);
        timings.fuse_us = us(s);

        let s = Instant::now();
        // Hydrate a little more than k: some hits may belong to documents
        // that are not (or no longer) ready.
        let want: Vec<_> = fused.iter().take(k * 2 + 8).map(|f| f.chunk_id).collect();
        let rows = self.store.hydrate(&want).await?;
        let mut hits = Vec::with_capacity(k);
        for f in &fused {
            if hits.len() >= k {
                break;
            }
            let Some((chunk, document)) = rows.get(&f.chunk_id) else {
                continue;
            };
            if !filter.allows(&document.collection, &document.access, document.id) {
                error!(chunk_id = %f.chunk_id, "index returned a chunk outside the access filter; dropped");
                continue;
            }
            hits.push(SearchHit {
                chunk: chunk.clone(),
                document: document.clone(),
                score: f.score,
                legs: f.legs,
            });
        }
        timings.hydrate_us = us(s);
        Ok(SearchOutcome { hits, timings })
    }
}
