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
//! - embedding: through the path ingest uses. Each chunk set goes to the
//!   shared [`EmbedBatcher`](docent_retrieve::batcher::EmbedBatcher) the
//!   way one ingest job hands a document over ([`EmbedWindows`]: windows of
//!   `ingest.embed_batch` passages, two in flight); the worker sorts what is
//!   queued by token count and cuts model calls by
//!   `models.embed_call_tokens` / `models.embed_call_max`.
//!   `--jobs N` splits the set among N concurrent jobs, as N ingest workers
//!   would. Until issue #8 the bench called `embed_passages` per 32 chunks
//!   (the old `ingest.embed_batch`), each call sorted and padded on its own,
//!   which is how ingest embedded then; the report's `batcher` field gives
//!   the rounds, model calls and padding share of the last timed pass.
//!   `embed_query` per query, directly on the model (queries never queue
//!   behind ingest).
//! - keyword: a fresh tantivy index per run in a temporary directory, one
//!   upsert of the whole corpus (analysis + commit), then one search per
//!   test query under an access filter (docent always carries one).

use crate::app::Components;
use crate::config::Config;
use crate::eval::{read_jsonl, read_qrels, CorpusDoc, Query};
use anyhow::Context;
use docent_core::{AccessFilter, ChatMessage, Embedder, GenParams, IndexedChunk, KeywordIndex, Role, TokenSink};
use docent_ingest::windows::EmbedWindows;
use docent_retrieve::batcher::BatchCounts;
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
        /// Several: run `r` sends prompt `r mod n`.
        #[arg(long, num_args = 1.., required = true)]
        prompt: Vec<PathBuf>,
        /// Send docent's own system prompt first, as the chat path does
        /// (with --prefix-cache, its KV is reused from the previous run
        /// while each run's sources differ).
        #[arg(long)]
        system_prompt: bool,
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
        /// Concurrent ingest jobs sharing the set (each its own contiguous
        /// part), all feeding the one embedding worker.
        #[arg(long, default_value_t = 1)]
        jobs: usize,
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
            system_prompt,
        } => {
            if !prefix_cache {
                cfg.generation.prefix_cache_n = 0;
            }
            generate(&cfg, &prompt, system_prompt, max_tokens, runs, warmup).await
        }
        PeerBench::Embed {
            chunks,
            queries,
            queries_n,
            runs,
            jobs,
        } => embed(&cfg, &chunks, &queries, queries_n, runs, jobs).await,
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

async fn generate(
    cfg: &Config,
    prompts: &[PathBuf],
    system_prompt: bool,
    max_tokens: u32,
    runs: usize,
    warmup: usize,
) -> anyhow::Result<Value> {
    let mut conversations = Vec::new();
    for p in prompts {
        let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        let mut messages = Vec::new();
        if system_prompt {
            messages.push(ChatMessage {
                role: Role::System,
                content: docent_generate::prompt::SYSTEM_PROMPT.to_owned(),
            });
        }
        messages.push(ChatMessage {
            role: Role::User,
            content: text,
        });
        conversations.push(messages);
    }
    let c = Components::build(cfg).await?;
    let t = Instant::now();
    let model = c.chat_model().await?;
    let load_s = t.elapsed().as_secs_f64();
    let counted = model.count_prompt_tokens(&conversations[0]).await?;
    let params = GenParams {
        max_tokens,
        temperature: 0.0,
    };
    let mut out = Vec::new();
    let mut sample = String::new();
    for r in 0..warmup + runs {
        let messages = &conversations[r % conversations.len()];
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
        "q4_1_prompt_kernel": docent_generate::mistral::q4_1_prompt_kernel(),
        "counted_prompt_tokens": counted,
        "prompts": prompts.len(),
        "system_prompt": system_prompt,
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
    jobs: usize,
) -> anyhow::Result<Value> {
    let c = Components::build(cfg).await?;
    let passages: Arc<dyn Embedder> = Arc::clone(&c.passages) as _;
    let window = cfg.ingest.embed_batch.max(1);
    let jobs = jobs.max(1);
    let dim = passages.dim();
    let mut report = serde_json::Map::new();
    let mut last_pass = None;
    for path in chunk_files {
        let texts: Vec<String> = read_jsonl::<CorpusDoc>(path)?.into_iter().map(|d| d.text).collect();
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("chunks").to_owned();
        // Warm-up.
        let warm = texts[..texts.len().min(32)].to_vec();
        embed_as_jobs(&passages, warm, window, 1).await?;
        let mut secs = Vec::new();
        for _ in 0..runs {
            let input = texts.clone();
            let before = c.passages.stats();
            let t0 = Instant::now();
            let vecs = embed_as_jobs(&passages, input, window, jobs).await?;
            secs.push(t0.elapsed().as_secs_f64());
            anyhow::ensure!(vecs.len() == texts.len() && vecs.iter().all(|v| v.len() == dim));
            last_pass = Some(pass_counts(before, c.passages.stats()));
        }
        let cps: Vec<f64> = secs.iter().map(|s| texts.len() as f64 / s).collect();
        report.insert(
            name,
            json!({ "chunks": texts.len(), "seconds": secs, "chunks_per_s": cps, "batcher": last_pass }),
        );
    }
    let (queries, _) = test_queries(queries)?;
    let queries: Vec<String> = queries.into_iter().take(queries_n).map(|q| q.text).collect();
    let embedder = Arc::clone(&c.embedder);
    let lat = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<f64>> {
        for q in queries.iter().take(10) {
            embedder.embed_query(q)?;
        }
        let mut lat = Vec::with_capacity(queries.len());
        for q in &queries {
            let t0 = Instant::now();
            embedder.embed_query(q)?;
            lat.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
        Ok(lat)
    })
    .await
    .context("query embedding task")??;
    let policy = c.passages.policy();
    Ok(json!({
        "engine": "docent (fastembed-rs)",
        "model": c.embedder.model_id(),
        "threads": match cfg.models.embed_threads {
            0 => cfg.compute_threads(),
            n => n,
        },
        "batching": format!(
            "ingest path: {jobs} job(s), windows of {window} (2 in flight) -> one worker; rounds <= {} texts sorted by tokens, \
             model calls <= {} padded tokens and <= {} texts",
            policy.max_round, policy.token_budget, policy.max_batch
        ),
        "sets": report,
        "query_ms": lat,
    }))
}

/// Embeds `texts` as `jobs` concurrent ingest jobs would (contiguous parts,
/// each in windows through [`EmbedWindows`]) and returns the vectors in
/// input order.
async fn embed_as_jobs(
    passages: &Arc<dyn Embedder>,
    texts: Vec<String>,
    window: usize,
    jobs: usize,
) -> anyhow::Result<Vec<Vec<f32>>> {
    let per_job = texts.len().div_ceil(jobs.max(1)).max(1);
    let mut rest = texts.into_iter().peekable();
    let mut tasks = Vec::new();
    while rest.peek().is_some() {
        let part: Vec<String> = rest.by_ref().take(per_job).collect();
        let passages = Arc::clone(passages);
        tasks.push(tokio::spawn(async move {
            let mut windows = EmbedWindows::new(passages, part, window, 2);
            let mut out = Vec::new();
            while let Some(v) = windows.next().await {
                out.extend(v?);
            }
            Ok::<_, docent_ingest::IngestError>(out)
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.extend(t.await.context("embedding job")??);
    }
    Ok(out)
}

/// What the worker did between two snapshots.
fn pass_counts(before: BatchCounts, after: BatchCounts) -> Value {
    let d = |a: u64, b: u64| b.saturating_sub(a);
    let tokens = d(before.tokens, after.tokens);
    let padded = d(before.padded_tokens, after.padded_tokens);
    json!({
        "rounds": d(before.rounds, after.rounds),
        "requests": d(before.requests, after.requests),
        "model_calls": d(before.model_calls, after.model_calls),
        "tokens": tokens,
        "padded_tokens": padded,
        "padding_share": if padded > 0 { 1.0 - tokens as f64 / padded as f64 } else { 0.0 },
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
