//! Hybrid search: dense (qdrant) and BM25 (tantivy) under one access filter,
//! fused (RRF or convex), hydrated from SQL, optionally reranked by a
//! cross-encoder over the fused top-N.
//!
//! Invariant: the access filter is pushed into both index queries; the SQL
//! hydration step returns only chunks of `ready` documents and re-checks the
//! filter as defence in depth (a mismatch is logged as an error: it would
//! mean an index holds stale labels).

use crate::error::{Result, RetrieveError};
use crate::fusion::Fusion;
use docent_core::{AccessFilter, Embedder, KeywordIndex, LegHit, Reranker, SearchHit, VectorIndex};
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
    /// Hits the reranker (when configured) rescores, from the top of the
    /// fused list.
    pub rerank_top_n: usize,
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            candidates: 50,
            fusion: Fusion::Convex { alpha: 0.5 },
            rerank_top_n: 30,
        }
    }
}

/// How one search runs: mode, fusion and whether to rerank.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub mode: Mode,
    pub fusion: Fusion,
    /// Rerank the fused top-N (ignored when no reranker is loaded).
    pub rerank: bool,
}

/// Time spent per stage, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Timings {
    pub embed_us: u64,
    pub bm25_us: u64,
    pub dense_us: u64,
    pub fuse_us: u64,
    pub hydrate_us: u64,
    pub rerank_us: u64,
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
    reranker: Option<Arc<dyn Reranker>>,
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
            reranker: None,
            cfg,
        }
    }

    /// Adds a cross-encoder that reranks the fused top-N of every search.
    pub fn with_reranker(mut self, reranker: Arc<dyn Reranker>) -> Self {
        self.reranker = Some(reranker);
        self
    }

    pub fn embedder(&self) -> &Arc<dyn Embedder> {
        &self.embedder
    }

    pub fn reranker(&self) -> Option<&Arc<dyn Reranker>> {
        self.reranker.as_ref()
    }

    /// The configured plan for `mode`: the configured fusion, reranking when
    /// a reranker is loaded.
    pub fn plan(&self, mode: Mode) -> Plan {
        Plan {
            mode,
            fusion: self.cfg.fusion,
            rerank: self.reranker.is_some(),
        }
    }

    /// Runs the search; `k` results at most.
    pub async fn search(&self, query: &str, filter: &AccessFilter, k: usize, mode: Mode) -> Result<SearchOutcome> {
        self.search_with(query, filter, k, self.plan(mode)).await
    }

    /// Hits for an answer: hybrid retrieval, then, with a `judge`
    /// cross-encoder, its top `n` rescored and reordered by it (unless
    /// retrieval already reranked them), so that abstention can weigh
    /// cross-encoder evidence.
    pub async fn search_for_answer(
        &self,
        query: &str,
        filter: &AccessFilter,
        k: usize,
        judge: Option<(&Arc<dyn Reranker>, usize)>,
    ) -> Result<Vec<SearchHit>> {
        let hits = self.search(query, filter, k, Mode::Hybrid).await?.hits;
        match judge {
            Some((r, n)) if hits.iter().all(|h| h.legs.rerank_score.is_none()) => {
                rerank_hits(Arc::clone(r), query, hits, n).await
            }
            _ => Ok(hits),
        }
    }

    /// [`Searcher::search`] with an explicit plan (for evaluation).
    pub async fn search_with(&self, query: &str, filter: &AccessFilter, k: usize, plan: Plan) -> Result<SearchOutcome> {
        self.run(query, None, filter, k, plan).await
    }

    /// [`Searcher::search_with`] with the query already embedded (for
    /// benchmarks that time the index work alone).
    pub async fn search_with_vector(
        &self,
        query: &str,
        vector: Vec<f32>,
        filter: &AccessFilter,
        k: usize,
        plan: Plan,
    ) -> Result<SearchOutcome> {
        self.run(query, Some(vector), filter, k, plan).await
    }

    #[instrument(skip(self, query, vector, filter), fields(mode = ?plan.mode, rerank = plan.rerank, k))]
    async fn run(
        &self,
        query: &str,
        vector: Option<Vec<f32>>,
        filter: &AccessFilter,
        k: usize,
        plan: Plan,
    ) -> Result<SearchOutcome> {
        let Plan { mode, fusion, rerank } = plan;
        let mut timings = Timings::default();
        if filter.denies_everything() || query.trim().is_empty() || k == 0 {
            return Ok(SearchOutcome {
                hits: Vec::new(),
                timings,
            });
        }
        // A collection without ready documents: nothing to score, and no
        // reason to embed the query.
        if !filter.collections.is_empty() && !self.store.any_ready_in(&filter.collections).await? {
            return Ok(SearchOutcome {
                hits: Vec::new(),
                timings,
            });
        }
        let n = self.cfg.candidates.max(k);
        // The two legs run at once, each on a blocking thread (never on the
        // async workers): the slower leg, not their sum, sets the latency.
        let bm25 = {
            let this = self.clone();
            let query = query.to_owned();
            let filter = filter.clone();
            tokio::task::spawn_blocking(move || -> Result<(Vec<LegHit>, u64)> {
                if mode == Mode::Dense {
                    return Ok((Vec::new(), 0));
                }
                let s = Instant::now();
                let r = this.keywords.search(&query, &filter, n)?;
                Ok((r, us(s)))
            })
        };
        let dense = {
            let this = self.clone();
            let query = query.to_owned();
            let filter = filter.clone();
            tokio::task::spawn_blocking(move || -> Result<(Vec<LegHit>, u64, u64)> {
                if mode == Mode::Bm25 {
                    return Ok((Vec::new(), 0, 0));
                }
                let s = Instant::now();
                let v = match vector {
                    Some(v) => v,
                    None => this.embedder.embed_query(&query)?,
                };
                let embed_us = us(s);
                let s = Instant::now();
                let r = this.vectors.search(&v, &filter, n)?;
                Ok((r, embed_us, us(s)))
            })
        };
        let join = |e: tokio::task::JoinError| RetrieveError::Join(e.to_string());
        let (bm25, dense) = tokio::join!(bm25, dense);
        let (bm25, bm25_us) = bm25.map_err(join)??;
        let (dense, embed_us, dense_us) = dense.map_err(join)??;
        timings.bm25_us = bm25_us;
        timings.embed_us = embed_us;
        timings.dense_us = dense_us;
        let s = Instant::now();
        let fused = fusion.fuse(&bm25, &dense);
        timings.fuse_us = us(s);

        let s = Instant::now();
        let reranker = self.reranker.as_ref().filter(|_| rerank && self.cfg.rerank_top_n > 0);
        let top_n = if reranker.is_some() { self.cfg.rerank_top_n } else { 0 };
        let keep = k.max(top_n);
        // Hydrate a little more than needed: some hits may belong to
        // documents that are not (or no longer) ready.
        let want: Vec<_> = fused.iter().take(keep * 2 + 8).map(|f| f.chunk_id).collect();
        let rows = self.store.hydrate(&want).await?;
        let mut hits = Vec::with_capacity(keep);
        for f in &fused {
            if hits.len() >= keep {
                break;
            }
            let Some((chunk, document)) = rows.get(&f.chunk_id) else {
                continue;
            };
            if !filter.allows_doc(document) {
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
        if let Some(reranker) = reranker {
            let s = Instant::now();
            hits = rerank_hits(Arc::clone(reranker), query, hits, top_n).await?;
            timings.rerank_us = us(s);
        }
        hits.truncate(k);
        Ok(SearchOutcome { hits, timings })
    }
}

/// Reorders the first `top_n` hits by the cross-encoder's score (the rest
/// keep their fused order after them). The passage the model reads is the
/// document title, the heading path and the chunk text.
async fn rerank_hits(
    reranker: Arc<dyn Reranker>,
    query: &str,
    mut hits: Vec<SearchHit>,
    top_n: usize,
) -> Result<Vec<SearchHit>> {
    let n = top_n.min(hits.len());
    if n == 0 {
        return Ok(hits);
    }
    let tail = hits.split_off(n);
    let passages: Vec<String> = hits.iter().map(passage_for_rerank).collect();
    let query = query.to_owned();
    let scores = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = passages.iter().map(String::as_str).collect();
        reranker.rerank(&query, &refs)
    })
    .await
    .map_err(|e| RetrieveError::Join(e.to_string()))??;
    for (h, s) in hits.iter_mut().zip(&scores) {
        h.legs.rerank_score = Some(*s);
    }
    // Stable: equal scores keep the fused order.
    hits.sort_by(|a, b| {
        b.legs
            .rerank_score
            .unwrap_or(f32::NEG_INFINITY)
            .total_cmp(&a.legs.rerank_score.unwrap_or(f32::NEG_INFINITY))
    });
    hits.extend(tail);
    Ok(hits)
}

fn passage_for_rerank(h: &SearchHit) -> String {
    let mut p = String::new();
    let title = h.document.title.trim();
    // Plain-text uploads often start with their title already.
    if !title.is_empty() && !h.chunk.text.trim_start().starts_with(title) {
        p.push_str(title);
        p.push('\n');
    }
    if !h.chunk.heading_path.is_empty() {
        p.push_str(&h.chunk.heading_path.join(" > "));
        p.push('\n');
    }
    p.push_str(&h.chunk.text);
    p
}
