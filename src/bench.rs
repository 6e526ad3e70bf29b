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
use docent_core::{now_rfc3339, AccessFilter, Chunk, DocStatus, Document, IndexedChunk, SourceKind};
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
fn rss() -> (u64, u64) {
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

fn latency(mode: &str, mut ms: Vec<f64>) -> Latency {
    ms.sort_by(f64::total_cmp);
    let pick = |p: f64| {
        if ms.is_empty() {
            0.0
        } else {
            ms[((p / 100.0) * (ms.len() - 1) as f64).round() as usize]
        }
    };
    Latency {
        mode: mode.to_owned(),
        p50_ms: pick(50.0),
        p95_ms: pick(95.0),
        p99_ms: pick(99.0),
        mean_ms: ms.iter().sum::<f64>() / ms.len().max(1) as f64,
    }
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
    if existing < chunks {
        anyhow::ensure!(
            existing == 0,
            "collection {collection} is half built; use a fresh data directory"
        );
        let (b, e) = build(c, &corpus, collection, chunks, show).await?;
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
/// variants as chunks), then both indexes, then the HNSW build.
async fn build(
    c: &Components,
    corpus: &[CorpusDoc],
    collection: &str,
    target: u64,
    show: bool,
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
    for batch in texts.chunks(64) {
        base_vectors.extend(c.embedder.embed_passages(batch)?);
        bar.inc(batch.len() as u64);
    }
    let embed_seconds = started.elapsed().as_secs_f64();
    bar.reset();
    bar.set_message("writing variants");
    let per_doc = target.div_ceil(corpus.len() as u64) as u32;
    let labels = c.cfg.access.default_labels.clone();
    let now = now_rfc3339();
    let mut written = 0u64;
    for (i, (d, (text, base))) in corpus.iter().zip(texts.iter().zip(&base_vectors)).enumerate() {
        if written >= target {
            break;
        }
        let seed = i as u64;
        let n = u64::from(per_doc).min(target - written) as u32;
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
        docent_core::KeywordIndex::upsert(c.keywords.as_ref(), &indexed)?;
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
}
