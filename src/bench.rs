//! `docent bench search`: hybrid search latency at scale.
//!
//! Builds a collection of at least `chunks` chunks reproducibly from a
//! BEIR corpus: each corpus document is embedded for real once; variant `v`
//! of document `d` (v >= 1) drops a seeded 15% of the words and gets the
//! base vector plus seeded Gaussian noise (cosine about 0.9 to the base),
//! renormalized. Embedding 100,000 passages with the real model would take
//! over an hour on 2 CPU cores and measure the embedder, not search; the
//! variants keep the real vocabulary and a realistic, clustered vector
//! distribution. Everything goes through the real store and indexes (SQL
//! rows, qdrant-edge with HNSW, tantivy), and queries through the real
//! `Searcher`: BM25, dense and fused legs, SQL hydration, the access filter.

use crate::app::Components;
use crate::eval::{read_jsonl, CorpusDoc, Query};
use docent_core::{
    now_rfc3339, AccessFilter, Chunk, DocStatus, Document, Embedder, IndexedChunk, KeywordIndex, LegHit, SourceKind,
};
use docent_retrieve::search::{Mode, Plan};
use serde::Serialize;
use std::path::Path;
use std::time::Instant;
use uuid::Uuid;

#[derive(Debug, Serialize)]
pub struct Latency {
    pub mode: String,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub chunks: u64,
    pub base_documents: usize,
    pub queries: usize,
    pub k: usize,
    pub build_seconds: Option<f64>,
    pub embed_seconds: Option<f64>,
    /// Query embedding alone.
    pub query_embedding: Latency,
    pub latency: Vec<Latency>,
    pub disk_bytes: DiskUsage,
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct DiskUsage {
    pub vectors: u64,
    pub bm25: u64,
    pub sql: u64,
}

/// SplitMix64: a small, seedable generator, so the corpus is the same on
/// every machine.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f32 {
        let u1 = self.unit().max(1e-12);
        let u2 = self.unit();
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }
}

/// Variant `v` of a text: a seeded 15% of its words dropped (v = 0 is the text).
pub fn variant_text(text: &str, seed: u64, v: u32) -> String {
    if v == 0 {
        return text.to_owned();
    }
    let mut rng = Rng(seed ^ (u64::from(v) << 32));
    let words: Vec<&str> = text.split_whitespace().filter(|_| rng.unit() >= 0.15).collect();
    words.join(" ")
}

/// Variant `v` of a unit vector: plus noise of norm about 0.48, renormalized.
pub fn variant_vector(base: &[f32], seed: u64, v: u32) -> Vec<f32> {
    if v == 0 {
        return base.to_vec();
    }
    let mut rng = Rng(seed ^ (u64::from(v) << 32) ^ 0x5555);
    let sigma = 0.48 / (base.len() as f32).sqrt();
    let mut out: Vec<f32> = base.iter().map(|x| x + sigma * rng.normal()).collect();
    let norm = out.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    for x in &mut out {
        *x /= norm;
    }
    out
}

fn dir_size(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    };
    rd.flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                dir_size(&path)
            } else {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            }
        })
        .sum()
}

/// (VmRSS, VmHWM) of this process in bytes.
pub(crate) fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn latency(mode: &str, ms: Vec<f64>) -> Latency {
    let p = percentiles(ms);
    Latency {
        mode: mode.to_owned(),
        p50_ms: p.p50_ms,
        p95_ms: p.p95_ms,
        p99_ms: p.p99_ms,
        mean_ms: p.mean_ms,
    }
}

/// p50/p95/p99 (nearest rank) and mean of a sample, in ms.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
}

pub(crate) fn percentiles(mut ms: Vec<f64>) -> Percentiles {
    ms.sort_by(f64::total_cmp);
    let pick = |p: f64| {
        if ms.is_empty() {
            0.0
        } else {
            ms[((p / 100.0) * (ms.len() - 1) as f64).round() as usize]
        }
    };
    Percentiles {
        p50_ms: pick(50.0),
        p95_ms: pick(95.0),
        p99_ms: pick(99.0),
        mean_ms: ms.iter().sum::<f64>() / ms.len().max(1) as f64,
    }
}

/// Brings a reused collection's indexes up to this binary, as `serve` does
/// at startup: a collection built by an earlier binary may have lost its
/// tantivy index to a keyword schema change, which repair rewrites from SQL.
async fn repair_reused(c: &Components) -> anyhow::Result<()> {
    let r = c.repair().await?;
    if r.keywords_rewritten + r.reembedded > 0 {
        tracing::info!(?r, "reused collection repaired before measuring");
    }
    Ok(())
}

/// Builds the collection (unless it already holds `chunks` chunks) and
/// measures search latency over the dataset's queries.
pub async fn search_bench(
    c: &Components,
    dataset: &Path,
    collection: &str,
    chunks: u64,
    k: usize,
    show: bool,
) -> anyhow::Result<BenchReport> {
    let corpus: Vec<CorpusDoc> = read_jsonl(&dataset.join("corpus.jsonl"))?;
    anyhow::ensure!(!corpus.is_empty(), "the corpus is empty");
    let labels = c.cfg.access.default_labels.clone();
    let existing: u64 = c
        .store
        .list_documents(&labels, &[collection.to_owned()])
        .await?
        .iter()
        .map(|d| u64::from(d.chunk_count))
        .sum();
    let (mut build_seconds, mut embed_seconds) = (None, None);
    if existing > 0 {
        repair_reused(c).await?;
    }
    if existing < chunks {
        anyhow::ensure!(
            existing == 0,
            "collection {collection} is half built; use a fresh data directory"
        );
        let (b, e) = build(c, &corpus, collection, chunks, show, &|_| labels.clone()).await?;
        build_seconds = Some(b);
        embed_seconds = Some(e);
    }
    let total: u64 = c
        .store
        .list_documents(&labels, &[collection.to_owned()])
        .await?
        .iter()
        .map(|d| u64::from(d.chunk_count))
        .sum();

    let mut queries: Vec<Query> = read_jsonl(&dataset.join("queries.jsonl"))?;
    queries.truncate(500);
    let mut filter = AccessFilter::for_principal(&docent_core::Principal {
        role: docent_core::AccessRole::Reader,
        user: "bench".into(),
        groups: labels,
    });
    filter.collections = vec![collection.to_owned()];
    // Query embeddings, timed alone.
    let mut vectors = Vec::with_capacity(queries.len());
    let mut embed_ms = Vec::with_capacity(queries.len());
    for q in &queries {
        let t = Instant::now();
        vectors.push(c.embedder.embed_query(&q.text)?);
        embed_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let plan = c.searcher.plan(Mode::Hybrid);
    let runs: Vec<(&str, Plan, bool)> = vec![
        (
            "bm25",
            Plan {
                mode: Mode::Bm25,
                ..plan
            },
            false,
        ),
        (
            "dense (embedding excluded)",
            Plan {
                mode: Mode::Dense,
                ..plan
            },
            false,
        ),
        ("hybrid (embedding excluded)", plan, false),
        ("hybrid (embedding included)", plan, true),
    ];
    // Warm-up: page the indexes in, as a running server would have.
    for (q, v) in queries.iter().zip(&vectors).take(20) {
        c.searcher
            .search_with_vector(&q.text, v.clone(), &filter, k, plan)
            .await?;
    }
    let mut latencies = Vec::new();
    for (label, plan, embed) in runs {
        let mut ms = Vec::with_capacity(queries.len());
        for (q, v) in queries.iter().zip(&vectors) {
            let t = Instant::now();
            let out = if embed {
                c.searcher.search_with(&q.text, &filter, k, plan).await?
            } else {
                c.searcher
                    .search_with_vector(&q.text, v.clone(), &filter, k, plan)
                    .await?
            };
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            anyhow::ensure!(
                !out.hits.is_empty() || plan.mode == Mode::Bm25,
                "no hits for {:?}",
                q.text
            );
        }
        latencies.push(latency(label, ms));
    }
    let data = c.cfg.storage.data_dir.clone();
    let (rss_now, peak) = rss();
    Ok(BenchReport {
        chunks: total,
        base_documents: corpus.len(),
        queries: queries.len(),
        k,
        build_seconds,
        embed_seconds,
        query_embedding: latency("query embedding", embed_ms),
        latency: latencies,
        disk_bytes: DiskUsage {
            vectors: dir_size(&data.join("vectors")),
            bm25: dir_size(&data.join("bm25")),
            sql: dir_size(&data.join("docent.db")),
        },
        rss_bytes: rss_now,
        peak_rss_bytes: peak,
    })
}

/// Writes `target` chunks: SQL rows (one document per corpus document, its
/// variants as chunks), then both indexes, then the HNSW build. Document
/// `i` (and so each of its chunks) carries the access labels `labels_of(i)`.
async fn build(
    c: &Components,
    corpus: &[CorpusDoc],
    collection: &str,
    target: u64,
    show: bool,
    labels_of: &dyn Fn(usize) -> Vec<String>,
) -> anyhow::Result<(f64, f64)> {
    let started = Instant::now();
    let bar = crate::eval::progress_bar(corpus.len(), show);
    // 1. Real embeddings of every base text.
    bar.set_message("embedding base passages");
    let texts: Vec<String> = corpus
        .iter()
        .map(|d| {
            if d.title.is_empty() {
                d.text.clone()
            } else {
                format!("{}\n\n{}", d.title, d.text)
            }
        })
        .collect();
    let mut base_vectors: Vec<Vec<f32>> = Vec::with_capacity(texts.len());
    // Through the shared embedding worker, as ingest embeds: rounds sorted
    // by token count.
    for batch in texts.chunks(c.passages.policy().max_round) {
        base_vectors.extend(c.passages.embed_passages(batch)?);
        bar.inc(batch.len() as u64);
    }
    let embed_seconds = started.elapsed().as_secs_f64();
    bar.reset();
    bar.set_message("writing variants");
    let per_doc = target.div_ceil(corpus.len() as u64) as u32;
    let now = now_rfc3339();
    let mut written = 0u64;
    for (i, (d, (text, base))) in corpus.iter().zip(texts.iter().zip(&base_vectors)).enumerate() {
        if written >= target {
            break;
        }
        let seed = i as u64;
        let n = u64::from(per_doc).min(target - written) as u32;
        let labels = labels_of(i);
        let doc = Document {
            id: Uuid::now_v7(),
            collection: collection.to_owned(),
            title: if d.title.is_empty() {
                d.id.clone()
            } else {
                d.title.clone()
            },
            source: format!("bench:{}", d.id),
            kind: SourceKind::Text,
            content_hash: format!("bench-{collection}-{}", d.id),
            size_bytes: text.len() as u64,
            pages: None,
            access: labels.clone(),
            status: DocStatus::Queued,
            error: None,
            chunk_count: 0,
            supersedes: None,
            parent_id: None,
            tags: Vec::new(),
            date: None,
            created_at: now.clone(),
            updated_at: now.clone(),
        };
        c.store.insert_document(&doc).await?;
        let mut chunks = Vec::with_capacity(n as usize);
        let mut indexed = Vec::with_capacity(n as usize);
        let mut vecs = Vec::with_capacity(n as usize);
        for v in 0..n {
            let t = variant_text(text, seed, v);
            let len = t.chars().count() as u32;
            let chunk = Chunk {
                id: Uuid::now_v7(),
                doc_id: doc.id,
                ordinal: v,
                text: t,
                page: None,
                heading_path: Vec::new(),
                char_start: 0,
                char_end: len,
                token_count: 0,
            };
            indexed.push(IndexedChunk {
                chunk_id: chunk.id,
                doc_id: doc.id,
                collection: collection.to_owned(),
                access: labels.clone(),
                tags: Vec::new(),
                date: doc.effective_date(),
                title: doc.title.clone(),
                heading: String::new(),
                text: chunk.text.clone(),
            });
            vecs.push(variant_vector(base, seed, v));
            chunks.push(chunk);
        }
        c.store.put_chunks(&doc, None, &chunks).await?;
        c.vectors.upsert(&indexed, &vecs)?;
        KeywordIndex::upsert(c.keywords.as_ref(), &indexed)?;
        c.store.set_status(doc.id, DocStatus::Ready, None).await?;
        written += u64::from(n);
        bar.inc(1);
    }
    bar.set_message("building HNSW");
    c.vectors.flush()?;
    c.vectors.maintain()?;
    bar.finish_and_clear();
    Ok((started.elapsed().as_secs_f64(), embed_seconds))
}

// ---------------------------------------------------------------------------
// `docent bench permissions`: the cost of the access filter (issue #7).
// ---------------------------------------------------------------------------

/// The label every chunk of the permissions collection also carries; the
/// baseline principal holds only this one, so its filter matches every
/// chunk. An empty group list matches nothing (fail closed) and there is no
/// unfiltered search path, so a one-label filter that matches everything is
/// the cheapest filter the indexes can be asked for.
pub const ALL_LABEL: &str = "all";

/// Name of group `g` of the pool.
fn group_name(g: usize) -> String {
    format!("g{g:03}")
}

/// The groups of base document `i`: 1 (probability 0.5), 2 (0.3) or 3 (0.2)
/// distinct groups drawn uniformly from a pool of `pool`, sorted; the same
/// for every seed-equal run. All chunks (variants) of the document carry them.
pub fn doc_groups(seed: u64, i: usize, pool: usize) -> Vec<String> {
    let mut rng = Rng(seed ^ 0x7E57_AB1E_0000_0000 ^ (i as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let u = rng.unit();
    let n = if u < 0.5 {
        1
    } else if u < 0.8 {
        2
    } else {
        3
    };
    let n = n.min(pool);
    let mut picked: Vec<usize> = Vec::with_capacity(n);
    while picked.len() < n {
        let g = (rng.next_u64() % pool as u64) as usize;
        if !picked.contains(&g) {
            picked.push(g);
        }
    }
    picked.sort_unstable();
    picked.into_iter().map(group_name).collect()
}

/// The access labels of base document `i`: its groups plus [`ALL_LABEL`].
pub fn doc_labels(seed: u64, i: usize, pool: usize) -> Vec<String> {
    let mut l = doc_groups(seed, i, pool);
    l.push(ALL_LABEL.to_owned());
    l
}

/// `n` distinct groups from the pool for a bench user (seeded partial
/// Fisher-Yates shuffle), sorted.
pub fn user_groups(seed: u64, n: usize, pool: usize) -> Vec<String> {
    let mut rng = Rng(seed ^ 0x05E5_0000_0000_0000 ^ (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut all: Vec<usize> = (0..pool).collect();
    let n = n.min(pool);
    for j in 0..n {
        let r = j + (rng.next_u64() % (pool - j) as u64) as usize;
        all.swap(j, r);
    }
    let mut picked = all[..n].to_vec();
    picked.sort_unstable();
    picked.into_iter().map(group_name).collect()
}

/// What `docent bench permissions` is asked to do.
#[derive(Debug, Clone)]
pub struct PermissionOptions {
    pub collection: String,
    pub chunks: u64,
    pub k: usize,
    /// Size of the group pool documents draw their labels from.
    pub pool: usize,
    pub seed: u64,
    /// One bench user per entry, holding that many groups.
    pub user_groups: Vec<usize>,
    /// Times the whole query set runs per mode and principal.
    pub rounds: usize,
    pub show: bool,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub mem_total_bytes: u64,
    /// The cargo profile the binary was built with.
    pub profile: String,
    /// /proc/loadavg before the timed rounds and after the checks.
    pub loadavg_before: String,
    pub loadavg_after: String,
}

#[derive(Debug, Serialize)]
pub struct PrincipalReport {
    pub name: String,
    pub groups: Vec<String>,
    pub readable_documents: usize,
    pub readable_chunks: u64,
    /// readable_chunks / all chunks of the collection.
    pub readable_fraction: f64,
    /// Hits of the timed searches whose document shares no label with the
    /// principal's groups (after hydration; must be 0).
    pub hits_checked: u64,
    pub hit_violations: u64,
    /// Candidates straight from the index legs (BM25 and dense, top
    /// `candidates`, and the exact dense top k), looked up in SQL: outside
    /// the groups (must be 0), or not a chunk of a ready document.
    pub leg_hits_checked: u64,
    pub leg_violations: u64,
    pub leg_hits_unknown: u64,
}

/// One (mode, principal) cell.
#[derive(Debug, Serialize)]
pub struct PermissionLatency {
    pub mode: String,
    pub principal: String,
    /// Median over the rounds of each round's percentile.
    pub median: Percentiles,
    pub rounds: Vec<Percentiles>,
    /// Hits returned per search (k at most), mean and minimum over all
    /// searches of all rounds.
    pub mean_hits: f64,
    pub min_hits: usize,
    /// Against the baseline principal, same mode; `None` for the baseline.
    pub overhead: Option<Overhead>,
}

#[derive(Debug, Serialize)]
pub struct Overhead {
    pub p50_ms: f64,
    pub p50_pct: f64,
    pub p95_ms: f64,
    pub p95_pct: f64,
    pub p99_ms: f64,
    pub p99_pct: f64,
    pub mean_ms: f64,
    pub mean_pct: f64,
    /// Median over every (round, query) of this principal's time minus the
    /// baseline's for the same query in the same round.
    pub paired_median_ms: f64,
}

/// The dense leg alone, through the vector index (no SQL, no fusion):
/// qdrant-edge's own plan (HNSW or, for a selective filter, the payload
/// index's matches scored exactly) against an exact search under the same
/// filter.
#[derive(Debug, Serialize)]
pub struct DenseLegReport {
    pub principal: String,
    pub planned: Percentiles,
    pub exact: Percentiles,
    /// |planned top k ∩ exact top k| / |exact top k|, mean over queries.
    pub recall_at_k: f64,
    /// The same for the planned top `candidates` (what the `Searcher`'s
    /// dense leg asks for and fuses): how much of the exact top k reaches
    /// fusion.
    pub recall_at_k_in_candidates: f64,
    /// Mean candidates the legs returned (of `candidates` asked for).
    pub mean_bm25_candidates: f64,
    pub mean_dense_candidates: f64,
}

#[derive(Debug, Serialize)]
pub struct PermissionReport {
    pub date: String,
    pub command: String,
    pub machine: Machine,
    pub collection: String,
    pub chunks: u64,
    pub documents: usize,
    pub base_documents: usize,
    pub queries: usize,
    pub k: usize,
    /// Candidates each leg returns before fusion.
    pub candidates: usize,
    pub fusion: String,
    pub rounds: usize,
    pub pool: usize,
    pub seed: u64,
    /// Built by this run (`None`: an existing collection was reused).
    pub build_seconds: Option<f64>,
    pub embed_seconds: Option<f64>,
    /// Query embedding, done once up front and excluded from every figure.
    pub query_embedding: Percentiles,
    /// qdrant-edge's full-scan threshold in points of this dimension
    /// (10,000 KiB of vectors): a segment whose estimated filter cardinality
    /// is below it is searched exactly over the payload index's matches.
    pub full_scan_threshold_points: usize,
    /// Dimensions of the embedding model's vectors.
    pub dim: usize,
    /// Segment directories of the qdrant-edge shard (None: not found).
    pub vector_segments: Option<usize>,
    pub principals: Vec<PrincipalReport>,
    pub latency: Vec<PermissionLatency>,
    pub dense_leg: Vec<DenseLegReport>,
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len().is_multiple_of(2) {
        (v[m - 1] + v[m]) / 2.0
    } else {
        v[m]
    }
}

fn median_percentiles(rounds: &[Percentiles]) -> Percentiles {
    let of = |f: fn(&Percentiles) -> f64| median(&rounds.iter().map(f).collect::<Vec<_>>());
    Percentiles {
        p50_ms: of(|p| p.p50_ms),
        p95_ms: of(|p| p.p95_ms),
        p99_ms: of(|p| p.p99_ms),
        mean_ms: of(|p| p.mean_ms),
    }
}

fn pct(delta: f64, base: f64) -> f64 {
    if base > 0.0 {
        100.0 * delta / base
    } else {
        0.0
    }
}

pub(crate) fn machine(load_before: String) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_total_bytes = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0);
    Machine {
        nproc: std::thread::available_parallelism().map(usize::from).unwrap_or(1),
        cpu_model,
        mem_total_bytes,
        profile: if cfg!(debug_assertions) {
            "dev (the `cargo run`/`cargo test` profile: docent crates opt-level 1, dependencies opt-level 3)".to_owned()
        } else {
            "release".to_owned()
        },
        loadavg_before: load_before,
        loadavg_after: loadavg(),
    }
}

pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// This process's command line, as `docent ...` with the DOCENT__ variables
/// that configure it in front, quoted for a POSIX shell.
pub(crate) fn command_line() -> String {
    let quote = |s: &str| {
        if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=,:@+%".contains(c)) {
            s.to_owned()
        } else {
            format!("'{}'", s.replace('\'', r"'\''"))
        }
    };
    let mut env: Vec<String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("DOCENT__"))
        .map(|(k, v)| format!("{k}={}", quote(&v)))
        .collect();
    env.sort();
    let args = std::env::args().skip(1).map(|a| quote(&a));
    env.into_iter()
        .chain(std::iter::once("docent".to_owned()))
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ")
}

fn vector_segments(data_dir: &Path) -> Option<usize> {
    let rd = std::fs::read_dir(data_dir.join("vectors").join("segments")).ok()?;
    Some(rd.flatten().filter(|e| e.path().is_dir()).count())
}

/// Sum of chunk counts and the documents of `collection` readable by `groups`.
async fn readable(c: &Components, groups: &[String], collection: &str) -> anyhow::Result<(usize, u64)> {
    let docs = c.store.list_documents(groups, &[collection.to_owned()]).await?;
    let chunks = docs.iter().map(|d| u64::from(d.chunk_count)).sum();
    Ok((docs.len(), chunks))
}

/// Builds (or reuses) a collection whose documents carry seeded group
/// labels, then times hybrid, dense and BM25 search for a baseline principal
/// (whose filter matches every chunk) and for users holding
/// `opts.user_groups` groups, on the same index, with the query embedding
/// excluded.
pub async fn permission_bench(
    c: &Components,
    dataset: &Path,
    opts: &PermissionOptions,
) -> anyhow::Result<PermissionReport> {
    let PermissionOptions {
        ref collection,
        chunks,
        k,
        pool,
        seed,
        user_groups: ref sizes,
        rounds,
        show,
    } = *opts;
    anyhow::ensure!(rounds >= 1, "--rounds must be at least 1");
    anyhow::ensure!(k >= 1, "-k must be at least 1");
    anyhow::ensure!(pool >= 3, "--pool must be at least 3 (documents carry up to 3 groups)");
    anyhow::ensure!(
        sizes.iter().all(|&n| (1..=pool).contains(&n)),
        "every --user-groups entry must be between 1 and --pool ({pool})"
    );
    let corpus: Vec<CorpusDoc> = read_jsonl(&dataset.join("corpus.jsonl"))?;
    anyhow::ensure!(!corpus.is_empty(), "the corpus is empty");
    let all = vec![ALL_LABEL.to_owned()];

    // 1. The collection: built here, or reused when its labels are the ones
    //    this seed and pool give.
    let (_, existing) = readable(c, &all, collection).await?;
    let (mut build_seconds, mut embed_seconds) = (None, None);
    if existing > 0 {
        repair_reused(c).await?;
    }
    if existing < chunks {
        anyhow::ensure!(
            existing == 0,
            "collection {collection} holds {existing} chunks, fewer than {chunks}; use a fresh data directory"
        );
        let (b, e) = build(c, &corpus, collection, chunks, show, &|i| doc_labels(seed, i, pool)).await?;
        build_seconds = Some(b);
        embed_seconds = Some(e);
    } else {
        let index: std::collections::HashMap<String, usize> = corpus
            .iter()
            .enumerate()
            .map(|(i, d)| (format!("bench:{}", d.id), i))
            .collect();
        for d in c.store.list_documents(&all, &[collection.to_owned()]).await? {
            let Some(&i) = index.get(&d.source) else {
                anyhow::bail!(
                    "collection {collection} holds {}, which is not from this corpus",
                    d.source
                );
            };
            anyhow::ensure!(
                d.access == doc_labels(seed, i, pool),
                "collection {collection} was labelled with another --seed or --pool ({} has {:?}); \
                 use the same ones or a fresh data directory",
                d.source,
                d.access
            );
        }
    }
    let (documents, total) = readable(c, &all, collection).await?;
    // The baseline must match every chunk the indexes hold, and the label
    // condition must be the only filter: the data directory holds this
    // collection alone.
    let (in_vectors, in_bm25) = (c.vectors.count()?, KeywordIndex::count(c.keywords.as_ref())?);
    anyhow::ensure!(
        in_vectors == total && in_bm25 == total,
        "the indexes hold {in_vectors} (vectors) and {in_bm25} (BM25) chunks, collection {collection} {total}: \
         run the permissions bench in a data directory of its own (DOCENT__STORAGE__DATA_DIR)"
    );

    // 2. Principals and what each may read.
    let mut principals: Vec<(String, Vec<String>)> = vec![(format!("baseline ({ALL_LABEL})"), all.clone())];
    for &n in sizes {
        let name = if n == 1 {
            "1 group".to_owned()
        } else {
            format!("{n} groups")
        };
        principals.push((name, user_groups(seed, n, pool)));
    }
    let mut reports = Vec::with_capacity(principals.len());
    for (name, groups) in &principals {
        let (docs, ch) = readable(c, groups, collection).await?;
        reports.push(PrincipalReport {
            name: name.clone(),
            groups: groups.clone(),
            readable_documents: docs,
            readable_chunks: ch,
            readable_fraction: ch as f64 / total.max(1) as f64,
            hits_checked: 0,
            hit_violations: 0,
            leg_hits_checked: 0,
            leg_violations: 0,
            leg_hits_unknown: 0,
        });
    }
    // Every collection: the label condition is the only one in the filter.
    let filters: Vec<AccessFilter> = principals
        .iter()
        .map(|(_, groups)| AccessFilter {
            groups: groups.clone(),
            ..AccessFilter::default()
        })
        .collect();
    let allowed = |pi: usize, access: &[String]| access.iter().any(|l| principals[pi].1.contains(l));

    // 3. Queries, embedded once.
    let mut queries: Vec<Query> = read_jsonl(&dataset.join("queries.jsonl"))?;
    queries.truncate(500);
    anyhow::ensure!(!queries.is_empty(), "the dataset has no queries");
    let mut vectors = Vec::with_capacity(queries.len());
    let mut embed_ms = Vec::with_capacity(queries.len());
    for q in &queries {
        let t = Instant::now();
        vectors.push(c.embedder.embed_query(&q.text)?);
        embed_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let dim = vectors.first().map(Vec::len).unwrap_or(384).max(1);

    // 4. Plans: the configured fusion, never the reranker (it would time
    //    the cross-encoder, not the filter).
    let base_plan = Plan {
        rerank: false,
        ..c.searcher.plan(Mode::Hybrid)
    };
    let modes: Vec<(&str, Plan)> = vec![
        ("hybrid", base_plan),
        (
            "dense",
            Plan {
                mode: Mode::Dense,
                ..base_plan
            },
        ),
        (
            "bm25",
            Plan {
                mode: Mode::Bm25,
                ..base_plan
            },
        ),
    ];
    let np = principals.len();
    let nq = queries.len();
    // Warm-up: page the indexes and every principal's postings in.
    for (_, plan) in &modes {
        for f in &filters {
            for (q, v) in queries.iter().zip(&vectors).take(20) {
                c.searcher.search_with_vector(&q.text, v.clone(), f, k, *plan).await?;
            }
        }
    }

    // 5. Timed rounds. Within a round, each query runs for every principal
    //    back to back, the order rotating with the query and the round, so
    //    drift and cache warmth fall on all principals alike.
    let load_before = loadavg();
    let bar = crate::eval::progress_bar(rounds * modes.len() * nq * np, show);
    bar.set_message("timing searches");
    // times[round][mode][principal][query]
    let mut times = vec![vec![vec![vec![0.0f64; nq]; np]; modes.len()]; rounds];
    let mut hits_sum = vec![vec![0usize; np]; modes.len()];
    let mut hits_min = vec![vec![usize::MAX; np]; modes.len()];
    for (round, by_mode) in times.iter_mut().enumerate() {
        for (mi, (_, plan)) in modes.iter().enumerate() {
            for (qi, (q, v)) in queries.iter().zip(&vectors).enumerate() {
                for j in 0..np {
                    let pi = (qi + round + j) % np;
                    let v = v.clone();
                    let t = Instant::now();
                    let out = c
                        .searcher
                        .search_with_vector(&q.text, v, &filters[pi], k, *plan)
                        .await?;
                    by_mode[mi][pi][qi] = t.elapsed().as_secs_f64() * 1000.0;
                    hits_sum[mi][pi] += out.hits.len();
                    hits_min[mi][pi] = hits_min[mi][pi].min(out.hits.len());
                    let r = &mut reports[pi];
                    for h in &out.hits {
                        r.hits_checked += 1;
                        if !allowed(pi, h.document.access.as_slice()) {
                            r.hit_violations += 1;
                        }
                    }
                }
                bar.inc(np as u64);
            }
        }
    }
    bar.finish_and_clear();

    // 6. The legs straight from the indexes: every candidate checked
    //    against SQL, and qdrant-edge's plan against exact search.
    let n = c.cfg.retrieval.candidates.max(k);
    let mut dense_leg = Vec::with_capacity(np);
    let bar = crate::eval::progress_bar(np * nq, show);
    bar.set_message("checking the index legs");
    for (pi, f) in filters.iter().enumerate() {
        let (mut planned_ms, mut exact_ms) = (Vec::with_capacity(nq), Vec::with_capacity(nq));
        let (mut recall, mut recall_n, mut bm25_n, mut dense_n) = (0.0, 0.0, 0usize, 0usize);
        for (q, v) in queries.iter().zip(&vectors) {
            let bm25 = KeywordIndex::search(c.keywords.as_ref(), &q.text, f, n)?;
            let dense = c.vectors.search(v, f, n)?;
            let t = Instant::now();
            let planned = c.vectors.search(v, f, k)?;
            planned_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            let t = Instant::now();
            let exact = c.vectors.search_exact(v, f, k)?;
            exact_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            let share = |got: &[LegHit]| {
                let found = exact
                    .iter()
                    .filter(|e| got.iter().any(|p| p.chunk_id == e.chunk_id))
                    .count();
                if exact.is_empty() {
                    1.0
                } else {
                    found as f64 / exact.len() as f64
                }
            };
            recall += share(&planned);
            recall_n += share(&dense);
            bm25_n += bm25.len();
            dense_n += dense.len();
            let mut ids: Vec<Uuid> = bm25
                .iter()
                .chain(&dense)
                .chain(&exact)
                .chain(&planned)
                .map(|h| h.chunk_id)
                .collect();
            ids.sort_unstable();
            ids.dedup();
            let rows = c.store.hydrate(&ids).await?;
            let r = &mut reports[pi];
            for id in &ids {
                r.leg_hits_checked += 1;
                match rows.get(id) {
                    None => r.leg_hits_unknown += 1,
                    Some((_, d)) if !allowed(pi, d.access.as_slice()) => r.leg_violations += 1,
                    Some(_) => {}
                }
            }
            bar.inc(1);
        }
        dense_leg.push(DenseLegReport {
            principal: principals[pi].0.clone(),
            planned: percentiles(planned_ms),
            exact: percentiles(exact_ms),
            recall_at_k: recall / nq as f64,
            recall_at_k_in_candidates: recall_n / nq as f64,
            mean_bm25_candidates: bm25_n as f64 / nq as f64,
            mean_dense_candidates: dense_n as f64 / nq as f64,
        });
    }
    bar.finish_and_clear();

    // 7. Figures.
    let mut latency = Vec::with_capacity(modes.len() * np);
    for (mi, (mode, _)) in modes.iter().enumerate() {
        let per_round =
            |pi: usize| -> Vec<Percentiles> { times.iter().map(|t| percentiles(t[mi][pi].clone())).collect() };
        let base = median_percentiles(&per_round(0));
        for (pi, (name, _)) in principals.iter().enumerate() {
            let rounds_p = per_round(pi);
            let med = median_percentiles(&rounds_p);
            let overhead = (pi > 0).then(|| {
                let paired: Vec<f64> = times
                    .iter()
                    .flat_map(|t| t[mi][pi].iter().zip(&t[mi][0]).map(|(a, b)| a - b))
                    .collect();
                Overhead {
                    p50_ms: med.p50_ms - base.p50_ms,
                    p50_pct: pct(med.p50_ms - base.p50_ms, base.p50_ms),
                    p95_ms: med.p95_ms - base.p95_ms,
                    p95_pct: pct(med.p95_ms - base.p95_ms, base.p95_ms),
                    p99_ms: med.p99_ms - base.p99_ms,
                    p99_pct: pct(med.p99_ms - base.p99_ms, base.p99_ms),
                    mean_ms: med.mean_ms - base.mean_ms,
                    mean_pct: pct(med.mean_ms - base.mean_ms, base.mean_ms),
                    paired_median_ms: median(&paired),
                }
            });
            latency.push(PermissionLatency {
                mode: (*mode).to_owned(),
                principal: name.clone(),
                median: med,
                rounds: rounds_p,
                mean_hits: hits_sum[mi][pi] as f64 / (rounds * nq) as f64,
                min_hits: if hits_min[mi][pi] == usize::MAX {
                    0
                } else {
                    hits_min[mi][pi]
                },
                overhead,
            });
        }
    }
    Ok(PermissionReport {
        date: now_rfc3339(),
        command: command_line(),
        machine: machine(load_before),
        collection: collection.clone(),
        chunks: total,
        documents,
        base_documents: corpus.len(),
        queries: nq,
        k,
        candidates: n,
        fusion: format!("{:?}", base_plan.fusion),
        rounds,
        pool,
        seed,
        build_seconds,
        embed_seconds,
        query_embedding: percentiles(embed_ms),
        full_scan_threshold_points: 10_000 * 1024 / (dim * 4),
        dim,
        vector_segments: vector_segments(&c.cfg.storage.data_dir),
        principals: reports,
        latency,
        dense_leg,
    })
}

fn signed(ms: f64, pct: f64) -> String {
    format!("{ms:+.2} ({pct:+.0}%)")
}

/// The figures as plain-text tables, for the terminal.
pub fn permission_table(r: &PermissionReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} chunks in {} documents ({} base texts), {} queries x {} rounds, k {}, pool {} groups, seed {}{}",
        r.chunks,
        r.documents,
        r.base_documents,
        r.queries,
        r.rounds,
        r.k,
        r.pool,
        r.seed,
        r.build_seconds
            .map(|b| format!(
                "; built in {b:.0} s (embedding {:.0} s)",
                r.embed_seconds.unwrap_or(0.0)
            ))
            .unwrap_or_default()
    );
    let _ = writeln!(
        s,
        "query embedding (excluded below): p50 {:.2} ms; load average {} -> {}",
        r.query_embedding.p50_ms, r.machine.loadavg_before, r.machine.loadavg_after
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<16} {:>8} {:>9} {:>9} {:>11} {:>11}",
        "principal", "groups", "readable", "chunks", "violations", "leg viol."
    );
    for p in &r.principals {
        let _ = writeln!(
            s,
            "{:<16} {:>8} {:>8.2}% {:>9} {:>11} {:>11}",
            p.name,
            p.groups.len(),
            100.0 * p.readable_fraction,
            p.readable_chunks,
            format!("{}/{}", p.hit_violations, p.hits_checked),
            format!("{}/{}", p.leg_violations + p.leg_hits_unknown, p.leg_hits_checked),
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<7} {:<16} {:>7} {:>7} {:>7} {:>7} {:>6}  {:>14} {:>14} {:>14} {:>9}",
        "mode", "principal", "p50", "p95", "p99", "mean", "hits", "d p50 ms", "d p95 ms", "d p99 ms", "paired d"
    );
    for l in &r.latency {
        let (a, b, c, d) = match &l.overhead {
            Some(o) => (
                signed(o.p50_ms, o.p50_pct),
                signed(o.p95_ms, o.p95_pct),
                signed(o.p99_ms, o.p99_pct),
                format!("{:+.2}", o.paired_median_ms),
            ),
            None => ("-".into(), "-".into(), "-".into(), "-".into()),
        };
        let _ = writeln!(
            s,
            "{:<7} {:<16} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>6.2}  {:>14} {:>14} {:>14} {:>9}",
            l.mode,
            l.principal,
            l.median.p50_ms,
            l.median.p95_ms,
            l.median.p99_ms,
            l.median.mean_ms,
            l.mean_hits,
            a,
            b,
            c,
            d
        );
    }
    let _ = writeln!(
        s,
        "(ms; medians over rounds of each round's percentile; d = against the baseline)"
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<16} {:>12} {:>12} {:>12} {:>12} {:>9} {:>14}",
        "dense leg", "planned p50", "planned p95", "exact p50", "exact p95", "recall@k", "in candidates"
    );
    for d in &r.dense_leg {
        let _ = writeln!(
            s,
            "{:<16} {:>12.2} {:>12.2} {:>12.2} {:>12.2} {:>9.4} {:>14.4}",
            d.principal,
            d.planned.p50_ms,
            d.planned.p95_ms,
            d.exact.p50_ms,
            d.exact.p95_ms,
            d.recall_at_k,
            d.recall_at_k_in_candidates
        );
    }
    s
}

/// Kept from the previous file when docs/results/permission-filter.md is
/// regenerated: everything after this line.
pub const NOTES_MARKER: &str = "<!-- Notes below this line are kept when the file is regenerated. -->";

/// docs/results/permission-filter.md: method, machine and figures; the
/// hand-written notes after [`NOTES_MARKER`] in `previous` are kept.
pub fn permission_markdown(r: &PermissionReport, previous: Option<&str>) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let gib = |b: u64| b as f64 / (1024.0 * 1024.0 * 1024.0);
    let _ = writeln!(s, "# Permission filtering: retrieval latency overhead\n");
    let _ = writeln!(
        s,
        "Issue #7: what does the access filter cost at {} chunks, for a user \
         holding 1 group and one holding 50? Generated by `docent bench permissions` \
         (src/bench.rs); rerun the command to regenerate this file.\n",
        r.chunks
    );
    let _ = writeln!(s, "```sh\n{}\n```\n", r.command);
    let _ = writeln!(
        s,
        "- Date: {}\n- Machine: {} CPUs (nproc), {}, {:.1} GiB RAM\n- Build profile: {}\n\
         - Load average (1/5/15 min): {} before the timed rounds, {} after the checks\n",
        r.date,
        r.machine.nproc,
        r.machine.cpu_model,
        gib(r.machine.mem_total_bytes),
        r.machine.profile,
        r.machine.loadavg_before,
        r.machine.loadavg_after
    );
    let _ = writeln!(s, "## Method\n");
    let _ = writeln!(
        s,
        "- **Corpus.** The `bench search` construction: every SciFact abstract \
         ({} base texts) embedded for real, plus seeded variants (15% of the words \
         dropped; the vector plus Gaussian noise at cosine ~0.9) up to {} chunks in \
         {} documents, written through the real store, qdrant-edge (HNSW built by \
         the optimizer; {} segment(s)) and tantivy. Build: {}.",
        r.base_documents,
        r.chunks,
        r.documents,
        r.vector_segments
            .map(|n| n.to_string())
            .unwrap_or_else(|| "unknown".into()),
        match (r.build_seconds, r.embed_seconds) {
            (Some(b), Some(e)) => format!("{b:.0} s, {e:.0} s of it embedding"),
            _ => "reused from an earlier run of the same command".into(),
        }
    );
    let _ = writeln!(
        s,
        "- **Labels.** A pool of {} groups (`g000`..`g{:03}`). Each document (one base \
         text and all its variants, which are its chunks: access labels are document \
         metadata in docent, copied into every chunk's index entry) draws 1 group \
         (probability 0.5), 2 (0.3) or 3 (0.2) uniformly from the pool with a seeded \
         generator (seed {}), and also carries `{ALL_LABEL}`.",
        r.pool,
        r.pool.saturating_sub(1),
        r.seed
    );
    let _ = writeln!(
        s,
        "- **Principals.** The baseline holds only `{ALL_LABEL}`, so its filter matches \
         every chunk. docent has no unfiltered search (an empty group list matches \
         nothing), so a one-label filter that matches everything is the cheapest \
         filter the indexes can be asked for; the overheads below are against it. The \
         users hold seeded groups from the pool. No collection, tag or date \
         restriction: the label condition is the whole filter (the command refuses a \
         data directory whose indexes hold anything but this collection)."
    );
    let _ = writeln!(
        s,
        "- **Timing.** {} SciFact queries, embedded once up front (p50 {:.2} ms, \
         excluded from every figure), k = {}, {} candidates per leg, fusion {}, no \
         reranking, through the real `Searcher` (legs, fusion, SQL hydration with its \
         access re-check). After a 20-query warm-up per mode and principal, {} rounds; \
         in each round every query runs for the three principals back to back, the \
         order rotating with query and round. Each figure is the **median over the \
         rounds of that round's percentile** (nearest rank over the queries); \
         \"paired\" is the median over every (round, query) of the user's time minus \
         the baseline's for the same query in the same round.",
        r.queries, r.query_embedding.p50_ms, r.k, r.candidates, r.fusion, r.rounds
    );
    let _ = writeln!(
        s,
        "- **Checks.** Every returned hit is checked against the principal's groups \
         (its document must carry one of them). Then, untimed, every candidate the two \
         index legs return for every query and principal (BM25 and dense top {}, \
         dense exact top {}) is looked up in SQL and checked the same way: the \
         hydration step would silently drop a leaked chunk, so this is the check that \
         the filters inside qdrant-edge and tantivy are right.\n",
        r.candidates, r.k
    );
    let _ = writeln!(s, "## Who can read what\n");
    let _ = writeln!(
        s,
        "| principal | groups | readable documents | readable chunks | fraction | hit violations | leg violations |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    for p in &r.principals {
        let groups = if p.groups.len() <= 3 {
            p.groups.iter().map(|g| format!("`{g}`")).collect::<Vec<_>>().join(", ")
        } else {
            format!("{} (`{}`, ...)", p.groups.len(), p.groups[..3].join("`, `"))
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} of {} | {} of {} | {:.2}% | {} of {} | {} of {}{} |",
            p.name,
            groups,
            p.readable_documents,
            r.documents,
            p.readable_chunks,
            r.chunks,
            100.0 * p.readable_fraction,
            p.hit_violations,
            p.hits_checked,
            p.leg_violations,
            p.leg_hits_checked,
            if p.leg_hits_unknown > 0 {
                format!(" ({} not in SQL)", p.leg_hits_unknown)
            } else {
                String::new()
            }
        );
    }
    let _ = writeln!(s, "\n## Latency (ms, query embedding excluded)\n");
    let _ = writeln!(
        s,
        "| mode | principal | p50 | p95 | p99 | mean | hits returned (mean / min) | Δ p50 | Δ p95 | Δ p99 | paired Δ |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|");
    for l in &r.latency {
        let (a, b, c, d) = match &l.overhead {
            Some(o) => (
                signed(o.p50_ms, o.p50_pct),
                signed(o.p95_ms, o.p95_pct),
                signed(o.p99_ms, o.p99_pct),
                format!("{:+.2}", o.paired_median_ms),
            ),
            None => ("-".into(), "-".into(), "-".into(), "-".into()),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} / {} | {} | {} | {} | {} |",
            l.mode,
            l.principal,
            l.median.p50_ms,
            l.median.p95_ms,
            l.median.p99_ms,
            l.median.mean_ms,
            l.mean_hits,
            l.min_hits,
            a,
            b,
            c,
            d
        );
    }
    let _ = writeln!(
        s,
        "\nΔ: against the baseline in the same mode, ms (%). Per-round p50s, to judge \
         the noise:\n"
    );
    let _ = writeln!(s, "| mode | principal | p50 of each round |");
    let _ = writeln!(s, "|---|---|---|");
    for l in &r.latency {
        let rounds: Vec<String> = l.rounds.iter().map(|p| format!("{:.2}", p.p50_ms)).collect();
        let _ = writeln!(s, "| {} | {} | {} |", l.mode, l.principal, rounds.join(", "));
    }
    let _ = writeln!(s, "\n## The dense leg alone: qdrant-edge's plan vs exact search\n");
    let _ = writeln!(
        s,
        "qdrant-edge plans each filtered search per segment ({} here): when the \
         payload index estimates fewer matching points in a segment than \
         `full_scan_threshold` (10,000 KiB of vectors = {} points of {} dimensions), it \
         scores the matching points exactly instead of walking the HNSW graph; above \
         it, it walks the graph, scoring only points that pass the filter (in between, \
         it samples). Below: the vector index called directly (no SQL, no fusion), one \
         pass, against `exact` search under the same filter (the reference). Recall: \
         the share of the exact top {} found by the planned search asked for {} \
         results, and asked for {} (as the `Searcher`'s dense leg does before fusion).\n",
        r.vector_segments
            .map(|n| n.to_string())
            .unwrap_or_else(|| "unknown".into()),
        r.full_scan_threshold_points,
        r.dim,
        r.k,
        r.k,
        r.candidates
    );
    let _ = writeln!(
        s,
        "| principal | planned p50 | planned p95 | exact p50 | exact p95 | recall@{k} of planned top {k} | recall@{k} of planned top {n} | mean candidates BM25 / dense (of {n}) |",
        k = r.k,
        n = r.candidates
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    for d in &r.dense_leg {
        let _ = writeln!(
            s,
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.4} | {:.4} | {:.1} / {:.1} |",
            d.principal,
            d.planned.p50_ms,
            d.planned.p95_ms,
            d.exact.p50_ms,
            d.exact.p95_ms,
            d.recall_at_k,
            d.recall_at_k_in_candidates,
            d.mean_bm25_candidates,
            d.mean_dense_candidates
        );
    }
    let _ = writeln!(s, "\n{NOTES_MARKER}");
    if let Some(notes) = previous.and_then(kept_notes) {
        s.push('\n');
        s.push_str(notes);
        s.push('\n');
    }
    s
}

/// The hand-written notes after [`NOTES_MARKER`], trimmed; `None` if none.
pub(crate) fn kept_notes(previous: &str) -> Option<&str> {
    let (_, notes) = previous.split_once(NOTES_MARKER)?;
    let notes = notes.trim();
    (!notes.is_empty()).then_some(notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_are_reproducible_and_close() {
        let base: Vec<f32> = {
            let v: Vec<f32> = (0..384).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter().map(|x| x / n).collect()
        };
        assert_eq!(variant_vector(&base, 3, 0), base);
        let a = variant_vector(&base, 3, 5);
        assert_eq!(a, variant_vector(&base, 3, 5));
        assert_ne!(a, variant_vector(&base, 3, 6));
        let cos: f32 = a.iter().zip(&base).map(|(x, y)| x * y).sum();
        assert!((0.8..0.97).contains(&cos), "cosine {cos}");
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);

        let text = "one two three four five six seven eight nine ten eleven twelve";
        assert_eq!(variant_text(text, 1, 0), text);
        let t = variant_text(text, 1, 2);
        assert_eq!(t, variant_text(text, 1, 2));
        assert!(t.split_whitespace().all(|w| text.contains(w)));
        assert!(t.split_whitespace().count() <= 12);
    }

    #[test]
    fn permission_labels_are_seeded_and_give_the_intended_fractions() {
        assert_eq!(doc_groups(7, 42, 200), doc_groups(7, 42, 200));
        assert_eq!(user_groups(7, 50, 200), user_groups(7, 50, 200));
        let docs: Vec<Vec<String>> = (0..5000).map(|i| doc_groups(7, i, 200)).collect();
        for d in &docs {
            assert!((1..=3).contains(&d.len()));
            let mut s = d.clone();
            s.dedup();
            assert_eq!(&s, d, "sorted and distinct");
        }
        let labels = doc_labels(7, 3, 200);
        assert_eq!(labels.last().map(String::as_str), Some(ALL_LABEL));
        let fifty = user_groups(7, 50, 200);
        let mut s = fifty.clone();
        s.dedup();
        assert_eq!(s.len(), 50);
        let fraction = |groups: &[String]| {
            docs.iter().filter(|d| d.iter().any(|l| groups.contains(l))).count() as f64 / docs.len() as f64
        };
        let one = fraction(&user_groups(7, 1, 200));
        assert!((0.003..0.02).contains(&one), "1 group reads {one}");
        let many = fraction(&fifty);
        assert!((0.25..0.45).contains(&many), "50 groups read {many}");
    }

    #[test]
    fn markdown_keeps_the_notes() {
        let prev = format!("old figures\n{NOTES_MARKER}\n\nA note.\n\nAnother.\n");
        assert_eq!(kept_notes(&prev), Some("A note.\n\nAnother."));
        assert_eq!(kept_notes(&format!("figures\n{NOTES_MARKER}\n")), None);
        assert_eq!(kept_notes("no marker"), None);
    }
}
