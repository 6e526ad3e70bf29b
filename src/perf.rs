//! `docent bench generate|embed|keyword`: docent's side of the side-by-side
//! benchmark against llama.cpp, fastembed for Python and bm25s (issue #8).
//! `scripts/bench-peers.sh run` runs both sides interleaved and writes
//! docs/results/peers.md; the peers' side is scripts/bench/peers.py, which
//! prints the same JSON fields from the same inputs.
//!
//! The components are built the way `serve` builds them ([`Components`]),
//! in a data directory of their own that is removed afterwards. Timings:
//! - generation: TTFT is request submitted -> first streamed token; prompt
//!   tokens/s = prompt tokens (chat template included) / TTFT; decode
//!   tokens/s = (completion tokens - 1) / (last token - first token). The
//!   prefix cache is off unless `--prefix-cache` (every run reads the whole
//!   prompt, as on the peer's side).
//! - embedding: `Embedder::embed_passages` over `ingest.embed_batch`-sized
//!   parts, as the ingest pipeline calls it; `embed_query` per query.
//! - keyword: a fresh tantivy index per run in a temporary directory, one
//!   upsert of the whole corpus (analysis + commit), then one search per
//!   test query under an access filter (docent always carries one).

use crate::app::Components;
use crate::config::Config;
use crate::eval::{read_jsonl, read_qrels, CorpusDoc, Query};
use anyhow::Context;
use docent_core::{AccessFilter, ChatMessage, GenParams, IndexedChunk, KeywordIndex, Role, TokenSink};
use docent_retrieve::keyword::TantivyIndex;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use uuid::Uuid;

/// The peer-comparison benchmarks (flattened into `docent bench`).
#[derive(clap::Subcommand, Debug)]
pub enum PeerBench {
    /// Generation speed of the configured chat model on one prompt (sent as
    /// a single user message): prompt tokens/s, decode tokens/s, time to
    /// first token. Prints JSON.
    Generate {
        /// The user message (scripts/bench/peers.py prepare writes one).
        #[arg(long)]
        prompt: PathBuf,
        #[arg(long, default_value_t = 128)]
        max_tokens: u32,
        #[arg(long, default_value_t = 5)]
        runs: usize,
        #[arg(long, default_value_t = 1)]
        warmup: usize,
        /// Keep mistral.rs's prefix cache (`generation.prefix_cache_n`) on;
        /// off by default so every run reads the whole prompt.
        #[arg(long)]
        prefix_cache: bool,
    },
    /// Embedding throughput (chunks/s per chunk set, JSON lines with a
    /// `text` field) and single-query latency on a BEIR dataset's test
    /// queries. Prints JSON.
    Embed {
        #[arg(long, num_args = 1.., required = true)]
        chunks: Vec<PathBuf>,
        /// A BEIR dataset directory (queries.jsonl, qrels/test.tsv).
        #[arg(long)]
        queries: PathBuf,
        #[arg(long, default_value_t = 200)]
        queries_n: usize,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// BM25 (tantivy) index time and query latency over a BEIR corpus, one
    /// search per test query. Prints JSON.
    Keyword {
        #[arg(long)]
        dataset: PathBuf,
        #[arg(short, long, default_value_t = 10)]
        k: usize,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
}

/// Runs one benchmark and returns its JSON report.
pub async fn run(cfg: &Config, what: PeerBench) -> anyhow::Result<Value> {
    let scratch = Scratch::new()?;
    let mut cfg = cfg.clone();
    cfg.storage.data_dir = scratch.0.join("data");
    cfg.storage.database_url = None;
    cfg.storage.blob_dir = None;
    cfg.storage.qdrant_url = None;
    match what {
        PeerBench::Generate {
            prompt,
            max_tokens,
            runs,
            warmup,
            prefix_cache,
        } => {
            if !prefix_cache {
                cfg.generation.prefix_cache_n = 0;
            }
            generate(&cfg, &prompt, max_tokens, runs, warmup).await
        }
        PeerBench::Embed {
            chunks,
            queries,
            queries_n,
            runs,
        } => embed(&cfg, &chunks, &queries, queries_n, runs).await,
        PeerBench::Keyword { dataset, k, runs } => keyword(&cfg, &dataset, &scratch.0, k, runs),
    }
}

/// A temporary directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("docent-perf-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Records when each streamed token arrived.
struct Stamps {
    first: Option<Instant>,
    last: Option<Instant>,
    chunks: usize,
}

impl TokenSink for Stamps {
    fn token(&mut self, _text: &str) -> bool {
        let now = Instant::now();
        self.first.get_or_insert(now);
        self.last = Some(now);
        self.chunks += 1;
        true
    }
}

async fn generate(cfg: &Config, prompt: &Path, max_tokens: u32, runs: usize, warmup: usize) -> anyhow::Result<Value> {
    let prompt = std::fs::read_to_string(prompt).with_context(|| format!("reading {}", prompt.display()))?;
    let c = Components::build(cfg).await?;
    let t = Instant::now();
    let model = c.chat_model().await?;
    let load_s = t.elapsed().as_secs_f64();
    let messages = vec![ChatMessage {
        role: Role::User,
        content: prompt,
    }];
    let counted = model.count_prompt_tokens(&messages).await?;
    let params = GenParams {
        max_tokens,
        temperature: 0.0,
    };
    let mut out = Vec::new();
    let mut sample = String::new();
    for r in 0..warmup + runs {
        let mut sink = Stamps {
            first: None,
            last: None,
            chunks: 0,
        };
        let t0 = Instant::now();
        let (text, usage) = model.generate(messages.clone(), params.clone(), &mut sink).await?;
        if r < warmup {
            continue;
        }
        let (Some(first), Some(last)) = (sink.first, sink.last) else {
            anyhow::bail!("the model streamed no token");
        };
        let ttft = (first - t0).as_secs_f64();
        let completion = usage.completion_tokens as usize;
        let prompt_tokens = match usage.prompt_tokens {
            0 => counted.unwrap_or(0),
            n => n as usize,
        };
        let span = (last - first).as_secs_f64();
        let decode_tps = if completion > 1 && span > 0.0 {
            (completion - 1) as f64 / span
        } else {
            0.0
        };
        out.push(json!({
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion,
            "streamed_chunks": sink.chunks,
            "ttft_s": ttft,
            "prompt_tps": prompt_tokens as f64 / ttft,
            "decode_tps": decode_tps,
            "total_s": (last - t0).as_secs_f64(),
        }));
        sample = text.chars().take(400).collect();
    }
    Ok(json!({
        "engine": "docent (mistral.rs)",
        "model": model.name(),
        "threads": cfg.compute_threads(),
        "prefix_cache_n": cfg.generation.prefix_cache_n,
        "max_num_seqs": cfg.generation.max_num_seqs,
        "counted_prompt_tokens": counted,
        "load_s": load_s,
        "max_tokens": max_tokens,
        "sample_text": sample,
        "runs": out,
    }))
}

/// The dataset's queries judged in qrels/test.tsv, in file order.
fn test_queries(dataset: &Path) -> anyhow::Result<(Vec<Query>, crate::eval::Qrels)> {
    let qrels = read_qrels(&dataset.join("qrels").join("test.tsv"))?;
    let queries: Vec<Query> = read_jsonl::<Query>(&dataset.join("queries.jsonl"))?
        .into_iter()
        .filter(|q| qrels.contains_key(&q.id))
        .collect();
    anyhow::ensure!(!queries.is_empty(), "no judged test query in {}", dataset.display());
    Ok((queries, qrels))
}

async fn embed(
    cfg: &Config,
    chunk_files: &[PathBuf],
    queries: &Path,
    queries_n: usize,
    runs: usize,
) -> anyhow::Result<Value> {
    let c = Components::build(cfg).await?;
    let embedder = Arc::clone(&c.embedder);
    let batch = cfg.ingest.embed_batch.max(1);
    let mut sets = Vec::new();
    for path in chunk_files {
        let texts: Vec<String> = read_jsonl::<CorpusDoc>(path)?.into_iter().map(|d| d.text).collect();
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("chunks").to_owned();
        sets.push((name, texts));
    }
    let (queries, _) = test_queries(queries)?;
    let queries: Vec<String> = queries.into_iter().take(queries_n).map(|q| q.text).collect();
    let dim = embedder.dim();
    tokio::task::spawn_blocking(move || -> anyhow::Result<Value> {
        let mut report = serde_json::Map::new();
        for (name, texts) in &sets {
            // Warm-up.
            embedder.embed_passages(&texts[..texts.len().min(32)])?;
            let mut secs = Vec::new();
            for _ in 0..runs {
                let t0 = Instant::now();
                let mut n = 0;
                for part in texts.chunks(batch) {
                    let v = embedder.embed_passages(part)?;
                    anyhow::ensure!(v.len() == part.len() && v.iter().all(|x| x.len() == dim));
                    n += v.len();
                }
                secs.push(t0.elapsed().as_secs_f64());
                anyhow::ensure!(n == texts.len());
            }
            let cps: Vec<f64> = secs.iter().map(|s| texts.len() as f64 / s).collect();
            report.insert(
                name.clone(),
                json!({ "chunks": texts.len(), "seconds": secs, "chunks_per_s": cps }),
            );
        }
        for q in queries.iter().take(10) {
            embedder.embed_query(q)?;
        }
        let mut lat = Vec::with_capacity(queries.len());
        for q in &queries {
            let t0 = Instant::now();
            embedder.embed_query(q)?;
            lat.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
        Ok(json!({
            "engine": "docent (fastembed-rs)",
            "model": embedder.model_id(),
            "batching": format!("embed_passages per {batch} (ingest.embed_batch), sorted by length within a call"),
            "sets": report,
            "query_ms": lat,
        }))
    })
    .await
    .context("embedding bench task")?
    .map(|mut v| {
        v["threads"] = json!(match cfg.models.embed_threads {
            0 => cfg.compute_threads(),
            n => n,
        });
        v
    })
}

fn keyword(cfg: &Config, dataset: &Path, scratch: &Path, k: usize, runs: usize) -> anyhow::Result<Value> {
    let corpus: Vec<CorpusDoc> = read_jsonl(&dataset.join("corpus.jsonl"))?;
    let (queries, qrels) = test_queries(dataset)?;
    let chunks: Vec<IndexedChunk> = corpus
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let id = Uuid::from_u128(i as u128 + 1);
            IndexedChunk {
                chunk_id: id,
                doc_id: id,
                collection: "bench".into(),
                access: vec!["bench".into()],
                tags: Vec::new(),
                date: 0,
                title: d.title.clone(),
                heading: String::new(),
                text: d.text.clone(),
            }
        })
        .collect();
    let filter = AccessFilter {
        groups: vec!["bench".into()],
        ..AccessFilter::default()
    };
    let r = &cfg.retrieval;
    let mut index_s = Vec::new();
    let mut lat = Vec::new();
    let mut found = 0;
    for run in 0..runs.max(1) {
        let dir = scratch.join(format!("bm25-{run}"));
        let idx = TantivyIndex::open(&dir)?.with_boosts(r.title_boost, r.heading_boost, r.body_boost);
        let t0 = Instant::now();
        idx.upsert(&chunks)?;
        index_s.push(t0.elapsed().as_secs_f64());
        for q in queries.iter().take(10) {
            idx.search(&q.text, &filter, k)?;
        }
        found = 0;
        for q in &queries {
            let t0 = Instant::now();
            let hits = idx.search(&q.text, &filter, k)?;
            lat.push(t0.elapsed().as_secs_f64() * 1000.0);
            let rel = qrels.get(&q.id);
            let hit = hits.iter().any(|h| {
                let i = (h.chunk_id.as_u128() - 1) as usize;
                rel.and_then(|m| m.get(&corpus[i].id)).is_some_and(|g| *g > 0)
            });
            found += usize::from(hit);
        }
        drop(idx);
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(json!({
        "engine": "docent (tantivy)",
        "documents": corpus.len(),
        "queries": queries.len(),
        "k": k,
        "index_s": index_s,
        "query_ms": lat,
        "success_at_k": found as f64 / queries.len() as f64,
    }))
}
