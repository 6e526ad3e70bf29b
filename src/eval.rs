//! Retrieval evaluation on BEIR-format datasets (`corpus.jsonl`,
//! `queries.jsonl`, `qrels/test.tsv`). The corpus goes through the normal
//! ingestion path; metrics follow trec_eval (nDCG with linear gains).

use crate::app::Components;
use anyhow::{bail, Context};
use docent_core::{AccessFilter, VectorIndex};
use docent_ingest::pipeline::{NewDocument, Submitted};
use docent_retrieve::fusion::Fusion;
use docent_retrieve::search::{Mode, Plan};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Deserialize)]
pub(crate) struct CorpusDoc {
    #[serde(rename = "_id")]
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) title: String,
    #[serde(default)]
    pub(crate) text: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Query {
    #[serde(rename = "_id")]
    pub(crate) id: String,
    pub(crate) text: String,
}

pub type Qrels = HashMap<String, HashMap<String, u32>>;

pub fn read_qrels(path: &Path) -> anyhow::Result<Qrels> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out: Qrels = HashMap::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line?;
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() < 3 || (i == 0 && cols[0] == "query-id") {
            continue;
        }
        let rel: u32 = cols[2].trim().parse().unwrap_or(0);
        out.entry(cols[0].to_owned())
            .or_default()
            .insert(cols[1].to_owned(), rel);
    }
    Ok(out)
}

pub(crate) fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<Vec<T>> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(&line).with_context(|| format!("{}:{}", path.display(), i + 1))?);
    }
    Ok(out)
}

/// nDCG@k with linear gains (trec_eval's `ndcg_cut`).
pub fn ndcg_at(ranked: &[String], rels: &HashMap<String, u32>, k: usize) -> f64 {
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, d)| f64::from(*rels.get(d).unwrap_or(&0)) / ((i + 2) as f64).log2())
        .sum();
    let mut ideal: Vec<u32> = rels.values().copied().filter(|r| *r > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, r)| f64::from(*r) / ((i + 2) as f64).log2())
        .sum();
    if idcg == 0.0 {
        0.0
    } else {
        dcg / idcg
    }
}

pub fn recall_at(ranked: &[String], rels: &HashMap<String, u32>, k: usize) -> f64 {
    let relevant: HashSet<&String> = rels.iter().filter(|(_, r)| **r > 0).map(|(d, _)| d).collect();
    if relevant.is_empty() {
        return 0.0;
    }
    let found = ranked.iter().take(k).filter(|d| relevant.contains(d)).count();
    found as f64 / relevant.len() as f64
}

pub fn mrr_at(ranked: &[String], rels: &HashMap<String, u32>, k: usize) -> f64 {
    ranked
        .iter()
        .take(k)
        .position(|d| rels.get(d).is_some_and(|r| *r > 0))
        .map(|i| 1.0 / (i + 1) as f64)
        .unwrap_or(0.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Latency percentiles of one stage, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

impl Percentiles {
    fn of(mut v: Vec<f64>) -> Self {
        v.sort_by(f64::total_cmp);
        Self {
            p50: percentile(&v, 50.0),
            p95: percentile(&v, 95.0),
            p99: percentile(&v, 99.0),
        }
    }
}

/// Per-stage latency of one mode (ms). Stages a mode does not run read 0.
#[derive(Debug, Default, Serialize)]
pub struct StageLatency {
    pub query_embedding: Percentiles,
    pub bm25: Percentiles,
    pub dense: Percentiles,
    pub fusion: Percentiles,
    pub hydrate: Percentiles,
    pub rerank: Percentiles,
}

#[derive(Debug, Serialize)]
pub struct ModeResult {
    pub mode: String,
    pub queries: usize,
    pub ndcg_at_10: f64,
    pub recall_at_100: f64,
    pub mrr_at_10: f64,
    /// End to end, per query.
    pub latency_ms_p50: f64,
    pub latency_ms_p95: f64,
    pub latency_ms_p99: f64,
    pub stages_ms: StageLatency,
}

/// How close the approximate (HNSW, optionally int8) dense search comes to
/// an exhaustive one, over the same queries and filter.
#[derive(Debug, Serialize)]
pub struct AnnRecall {
    pub k: usize,
    /// Mean share of the exact top-k that the approximate search returns.
    pub recall: f64,
    pub approx_ms: Percentiles,
    pub exact_ms: Percentiles,
    pub hnsw_m: usize,
    pub hnsw_ef: usize,
    pub int8: bool,
}

#[derive(Debug, Serialize)]
pub struct EvalReport {
    pub dataset: String,
    pub documents: usize,
    pub chunks: usize,
    pub ingest_seconds: Option<f64>,
    /// The mode the configuration serves (its fusion, plus the reranker
    /// when `retrieval.rerank` is on).
    pub default_mode: String,
    pub reranker: Option<String>,
    pub modes: Vec<ModeResult>,
    pub ann: Vec<AnnRecall>,
}

/// Ingests a BEIR corpus into `collection` (skipped if already there).
pub async fn load_corpus(c: &Components, dir: &Path, collection: &str, show: bool) -> anyhow::Result<Option<f64>> {
    let existing = c
        .store
        .list_documents(&c.cfg.access.default_labels, &[collection.to_owned()])
        .await?;
    if !existing.is_empty() {
        return Ok(None);
    }
    let docs: Vec<CorpusDoc> = read_jsonl(&dir.join("corpus.jsonl"))?;
    let bar = indicatif::ProgressBar::new(docs.len() as u64);
    if !show {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message("ingesting corpus");
    let started = Instant::now();
    for batch in docs.chunks(128) {
        let mut jobs = Vec::new();
        for d in batch {
            let body = if d.title.is_empty() {
                d.text.clone()
            } else {
                format!("{}\n\n{}", d.title, d.text)
            };
            let sub = c
                .ingestor
                .submit(NewDocument {
                    bytes: body.into_bytes(),
                    file_name: format!("{}.txt", d.id),
                    source: format!("beir:{}", d.id),
                    collection: collection.to_owned(),
                    access: c.cfg.access.default_labels.clone(),
                    title: Some(if d.title.is_empty() {
                        d.id.clone()
                    } else {
                        d.title.clone()
                    }),
                    tags: Vec::new(),
                    date: None,
                })
                .await;
            match sub {
                Ok(Submitted::Queued { doc, job }) => jobs.push((job.id, doc.id)),
                Ok(Submitted::Duplicate { .. }) => {}
                Err(e) => tracing::warn!(id = %d.id, error = %e, "corpus document skipped"),
            }
        }
        let noop = |_: uuid::Uuid, _: docent_core::DocStatus, _: f32| {};
        for r in c.ingestor.run_many(&jobs, &noop).await {
            if let Err(e) = r {
                tracing::warn!(error = %e, "corpus document failed");
            }
        }
        bar.inc(batch.len() as u64);
    }
    bar.finish();
    c.vectors.optimize()?;
    Ok(Some(started.elapsed().as_secs_f64()))
}

fn fusion_label(f: Fusion) -> String {
    match f {
        Fusion::Rrf { k } => format!("rrf-k{k}"),
        Fusion::Convex { alpha } => format!("convex-{alpha}"),
    }
}

/// Runs every query in each mode and scores the document rankings:
/// BM25, dense, RRF and convex fusion at three weights, and the configured
/// fusion reranked by the cross-encoder when `reranker` is given. With
/// `run_file`, also writes one TREC run file per mode
/// (`<run_file>.<mode>`: `qid Q0 docid rank score tag`), so that the
/// rankings can be scored independently (trec_eval, ir_measures,
/// pytrec_eval). Also measures approximate vs exact dense recall.
pub async fn evaluate(
    c: &Components,
    dir: &Path,
    collection: &str,
    show: bool,
    run_file: Option<&Path>,
    reranker: Option<Arc<dyn docent_core::Reranker>>,
    max_queries: Option<usize>,
) -> anyhow::Result<EvalReport> {
    let ingest_seconds = load_corpus(c, dir, collection, show).await?;
    let queries: Vec<Query> = read_jsonl(&dir.join("queries.jsonl"))?;
    let qrels = read_qrels(&dir.join("qrels").join("test.tsv"))?;
    let mut queries: Vec<&Query> = queries.iter().filter(|q| qrels.contains_key(&q.id)).collect();
    if let Some(max) = max_queries.filter(|m| *m > 0 && *m < queries.len()) {
        // Evenly spaced, so every part of the collection is asked about.
        let step = queries.len() as f64 / max as f64;
        queries = (0..max).map(|i| queries[(i as f64 * step) as usize]).collect();
    }
    if queries.is_empty() {
        bail!("no query in queries.jsonl has judgments in qrels/test.tsv");
    }
    let mut filter = AccessFilter::for_principal(&docent_core::Principal {
        user: "eval".into(),
        groups: c.cfg.access.default_labels.clone(),
    });
    filter.collections = vec![collection.to_owned()];
    let rrf = Fusion::Rrf {
        k: c.cfg.retrieval.rrf_k,
    };
    let configured = c.cfg.fusion();
    let plan = |mode, fusion, rerank| Plan { mode, fusion, rerank };
    let mut runs: Vec<(String, Plan)> = vec![
        ("bm25".into(), plan(Mode::Bm25, rrf, false)),
        ("dense".into(), plan(Mode::Dense, rrf, false)),
        (fusion_label(rrf), plan(Mode::Hybrid, rrf, false)),
    ];
    for alpha in [0.3, 0.5, 0.7] {
        let f = Fusion::Convex { alpha };
        runs.push((fusion_label(f), plan(Mode::Hybrid, f, false)));
    }
    let searcher = match &reranker {
        Some(r) => {
            runs.push((
                format!("{}+rerank", fusion_label(configured)),
                plan(Mode::Hybrid, configured, true),
            ));
            c.searcher.clone().with_reranker(Arc::clone(r))
        }
        None => c.searcher.clone(),
    };
    let default_mode = if c.cfg.retrieval.rerank {
        format!("{}+rerank", fusion_label(configured))
    } else {
        fusion_label(configured)
    };
    let bar = indicatif::ProgressBar::new((runs.len() * queries.len()) as u64);
    if !show {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut modes = Vec::new();
    for (label, plan) in runs {
        bar.set_message(label.clone());
        let mut lat = Vec::with_capacity(queries.len());
        let mut stages: [Vec<f64>; 6] = Default::default();
        let (mut ndcg, mut recall, mut mrr) = (0.0, 0.0, 0.0);
        let mut run = String::new();
        for q in &queries {
            let t = Instant::now();
            let out = searcher.search_with(&q.text, &filter, 100, plan).await?;
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
            let tm = out.timings;
            for (v, us) in stages.iter_mut().zip([
                tm.embed_us,
                tm.bm25_us,
                tm.dense_us,
                tm.fuse_us,
                tm.hydrate_us,
                tm.rerank_us,
            ]) {
                v.push(us as f64 / 1000.0);
            }
            let mut seen = HashSet::new();
            // Documents ranked by their best chunk.
            let scored: Vec<(String, f32)> = out
                .hits
                .iter()
                .filter_map(|h| {
                    let score = h.legs.rerank_score.unwrap_or(h.score);
                    h.document.source.strip_prefix("beir:").map(|id| (id.to_owned(), score))
                })
                .filter(|(id, _)| seen.insert(id.clone()))
                .collect();
            if run_file.is_some() {
                // trec_eval orders by score: keep scores non-increasing by
                // rank (a reranked head and a fused tail have other scales).
                let mut prev = f32::INFINITY;
                for (rank, (id, score)) in scored.iter().enumerate() {
                    let score = score.min(prev - 1e-6);
                    prev = score;
                    run.push_str(&format!("{} Q0 {id} {} {score:.6} docent-{label}\n", q.id, rank + 1));
                }
            }
            let ranked: Vec<String> = scored.into_iter().map(|(id, _)| id).collect();
            let rels = &qrels[&q.id];
            ndcg += ndcg_at(&ranked, rels, 10);
            recall += recall_at(&ranked, rels, 100);
            mrr += mrr_at(&ranked, rels, 10);
            bar.inc(1);
        }
        if let Some(base) = run_file {
            let path = PathBuf::from(format!("{}.{label}", base.display()));
            std::fs::write(&path, run).with_context(|| format!("writing {}", path.display()))?;
        }
        let n = queries.len() as f64;
        let all = Percentiles::of(lat);
        let [embed, bm25, dense, fuse, hydrate, rerank] = stages.map(Percentiles::of);
        modes.push(ModeResult {
            mode: label,
            queries: queries.len(),
            ndcg_at_10: ndcg / n,
            recall_at_100: recall / n,
            mrr_at_10: mrr / n,
            latency_ms_p50: all.p50,
            latency_ms_p95: all.p95,
            latency_ms_p99: all.p99,
            stages_ms: StageLatency {
                query_embedding: embed,
                bm25,
                dense,
                fusion: fuse,
                hydrate,
                rerank,
            },
        });
    }
    bar.finish_and_clear();
    let texts: Vec<&str> = queries.iter().map(|q| q.text.as_str()).collect();
    let ann = vec![
        ann_recall(c, &texts, &filter, 10).await?,
        ann_recall(c, &texts, &filter, 100).await?,
    ];
    let docs = c
        .store
        .list_documents(&c.cfg.access.default_labels, &[collection.to_owned()])
        .await?;
    Ok(EvalReport {
        dataset: dir.display().to_string(),
        documents: docs.len(),
        chunks: docs.iter().map(|d| d.chunk_count as usize).sum(),
        ingest_seconds,
        default_mode,
        reranker: reranker.map(|r| r.model_id()),
        modes,
        ann,
    })
}

/// Approximate vs exhaustive dense search over the same queries: the mean
/// share of the exact top-k that the approximate search also returns.
pub async fn ann_recall(
    c: &Components,
    queries: &[&str],
    filter: &AccessFilter,
    k: usize,
) -> anyhow::Result<AnnRecall> {
    let mut recall = 0.0;
    let (mut approx_ms, mut exact_ms) = (Vec::new(), Vec::new());
    for q in queries {
        let v = c.embedder.embed_query(q)?;
        let t = Instant::now();
        let approx = c.vectors.search(&v, filter, k)?;
        approx_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        let exact = c.vectors.search_exact(&v, filter, k)?;
        exact_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        recall += overlap(&approx, &exact);
    }
    let r = &c.cfg.retrieval;
    Ok(AnnRecall {
        k,
        recall: recall / queries.len().max(1) as f64,
        approx_ms: Percentiles::of(approx_ms),
        exact_ms: Percentiles::of(exact_ms),
        hnsw_m: r.hnsw_m,
        hnsw_ef: r.hnsw_ef,
        int8: r.int8,
    })
}

/// Share of `exact`'s ids that `approx` contains (1 when `exact` is empty).
fn overlap(approx: &[docent_core::LegHit], exact: &[docent_core::LegHit]) -> f64 {
    if exact.is_empty() {
        return 1.0;
    }
    let got: HashSet<uuid::Uuid> = approx.iter().map(|h| h.chunk_id).collect();
    exact.iter().filter(|h| got.contains(&h.chunk_id)).count() as f64 / exact.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rels(pairs: &[(&str, u32)]) -> HashMap<String, u32> {
        pairs.iter().map(|(d, r)| ((*d).to_owned(), *r)).collect()
    }

    fn ranked(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn metrics_match_hand_computation() {
        // Relevant: a (2), b (1). Ranking: x, a, b.
        let r = rels(&[("a", 2), ("b", 1)]);
        let run = ranked(&["x", "a", "b"]);
        // DCG = 2/log2(3) + 1/log2(4) = 1.261860 + 0.5 ; IDCG = 2/1 + 1/log2(3) = 2.630930
        let expect = (2.0 / 3f64.log2() + 0.5) / (2.0 + 1.0 / 3f64.log2());
        assert!((ndcg_at(&run, &r, 10) - expect).abs() < 1e-9);
        assert!((ndcg_at(&run, &r, 10) - 0.669_672).abs() < 1e-5);
        assert_eq!(recall_at(&run, &r, 2), 0.5);
        assert_eq!(recall_at(&run, &r, 100), 1.0);
        assert_eq!(mrr_at(&run, &r, 10), 0.5);
        assert_eq!(mrr_at(&ranked(&["x"]), &r, 10), 0.0);
        assert_eq!(ndcg_at(&ranked(&["a", "b"]), &r, 10), 1.0);
    }

    #[test]
    fn ann_overlap_counts_shared_ids() {
        let h = |i: u128| docent_core::LegHit {
            chunk_id: uuid::Uuid::from_u128(i),
            score: 0.0,
        };
        assert_eq!(overlap(&[h(1), h(2), h(3)], &[h(1), h(3), h(4), h(5)]), 0.5);
        assert_eq!(overlap(&[], &[]), 1.0);
        assert_eq!(overlap(&[], &[h(1)]), 0.0);
    }

    #[test]
    fn passages_cover_the_text_at_line_breaks() {
        let text = "title\nshort\na much longer line of text here\nx\nlast line of it";
        let spans = passages(text, 10);
        assert_eq!(spans.first().map(|s| s.0), Some(0));
        assert_eq!(spans.last().map(|s| s.1), Some(text.len()));
        for w in spans.windows(2) {
            assert_eq!(w[0].1, w[1].0, "contiguous");
        }
        for (s, e) in &spans[..spans.len() - 1] {
            assert!(text[*s..*e].ends_with('\n'));
            assert!(text[*s..*e].chars().count() >= 10);
        }
    }

    #[test]
    fn squad_becomes_a_beir_collection() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Accented letters before the answer: SQuAD offsets count characters.
        let ctx = "A title line for the article by Genevi\u{e8}ve Bo\u{ef}ly\nFirst passage \u{e9}\u{e9}\u{e9}\u{e9} says the incubation period is five days.\nSecond passage covers masks and hand washing in hospitals.\n";
        // The answer opens a passage: a byte offset taken for a character
        // offset would land in the passage before.
        let start = ctx[..ctx.find("Second passage").expect("answer in context")]
            .chars()
            .count();
        let squad = serde_json::json!({"data": [{"paragraphs": [{"context": ctx, "qas": [
            {"id": 7, "question": "What does the second passage cover?", "answers": [{"text": "Second passage", "answer_start": start}]},
            {"id": 8, "question": "No answer here", "answers": []}
        ]}]}]});
        let file = dir.path().join("squad.json");
        std::fs::write(&file, squad.to_string()).expect("write");
        let out = dir.path().join("beir");
        let b = squad_to_beir(&file, &out, 40).expect("build");
        assert_eq!((b.queries, b.judgments), (1, 1));
        let qrels = read_qrels(&out.join("qrels/test.tsv")).expect("qrels");
        let rel: Vec<&String> = qrels["7"].keys().collect();
        let corpus: Vec<CorpusDoc> = read_jsonl(&out.join("corpus.jsonl")).expect("corpus");
        let doc = corpus.iter().find(|d| &d.id == rel[0]).expect("judged passage exists");
        assert!(doc.text.contains("masks"), "{doc:?}");
        assert_eq!(doc.title, "A title line for the article by Genevi\u{e8}ve Bo\u{ef}ly");
        assert_eq!(corpus.len(), b.passages);
    }

    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 51.0);
        assert_eq!(percentile(&v, 95.0), 95.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }
}

/// SQuAD-format question answering data (COVID-QA).
#[derive(Debug, Deserialize)]
struct Squad {
    data: Vec<SquadArticle>,
}

#[derive(Debug, Deserialize)]
struct SquadArticle {
    paragraphs: Vec<SquadParagraph>,
}

#[derive(Debug, Deserialize)]
struct SquadParagraph {
    context: String,
    #[serde(default)]
    qas: Vec<SquadQa>,
}

#[derive(Debug, Deserialize)]
struct SquadQa {
    question: String,
    #[serde(default)]
    id: serde_json::Value,
    #[serde(default)]
    answers: Vec<SquadAnswer>,
}

#[derive(Debug, Deserialize)]
struct SquadAnswer {
    text: String,
    answer_start: usize,
}

/// What [`squad_to_beir`] wrote.
#[derive(Debug, Serialize)]
pub struct BeirBuild {
    pub passages: usize,
    pub queries: usize,
    pub judgments: usize,
}

/// Splits `text` into passages of at least `min_chars` characters at line
/// breaks; returns (byte start, byte end) ranges that cover the text.
fn passages(text: &str, min_chars: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = 0;
    for (i, c) in text.char_indices() {
        chars += 1;
        if c == '\n' && chars >= min_chars {
            out.push((start, i + 1));
            start = i + 1;
            chars = 0;
        }
    }
    if start < text.len() {
        if chars < min_chars / 2 && !out.is_empty() {
            if let Some(last) = out.last_mut() {
                last.1 = text.len();
            }
        } else {
            out.push((start, text.len()));
        }
    }
    out
}

/// Turns a SQuAD-format file into a BEIR passage-retrieval collection:
/// each article split into passages at line breaks (at least `min_chars`
/// characters each), each question a query, and the passages that hold
/// its gold answer span the relevant ones. COVID-QA becomes a second,
/// differently shaped collection (long articles, extractive questions).
pub fn squad_to_beir(file: &Path, out: &Path, min_chars: usize) -> anyhow::Result<BeirBuild> {
    use std::fmt::Write as _;
    let squad: Squad =
        serde_json::from_slice(&std::fs::read(file).with_context(|| format!("reading {}", file.display()))?)
            .with_context(|| format!("parsing {}", file.display()))?;
    std::fs::create_dir_all(out.join("qrels"))?;
    let (mut corpus, mut queries, mut qrels) = (
        String::new(),
        String::new(),
        String::from("query-id\tcorpus-id\tscore\n"),
    );
    let mut built = BeirBuild {
        passages: 0,
        queries: 0,
        judgments: 0,
    };
    for (a, article) in squad.data.iter().enumerate() {
        for (p, para) in article.paragraphs.iter().enumerate() {
            let ctx = &para.context;
            let title = ctx.lines().next().unwrap_or_default().trim().to_owned();
            let spans = passages(ctx, min_chars);
            let pid = |n: usize| format!("a{a}p{p}s{n}");
            for (n, (s, e)) in spans.iter().enumerate() {
                let text = ctx[*s..*e].trim();
                if text.is_empty() {
                    continue;
                }
                corpus.push_str(&serde_json::to_string(
                    &serde_json::json!({"_id": pid(n), "title": title, "text": text}),
                )?);
                corpus.push('\n');
                built.passages += 1;
            }
            for (q, qa) in para.qas.iter().enumerate() {
                let mut relevant: Vec<usize> = Vec::new();
                for ans in &qa.answers {
                    // SQuAD offsets count characters; spans are bytes.
                    let Some(start) = ctx.char_indices().nth(ans.answer_start).map(|(b, _)| b) else {
                        continue;
                    };
                    let end = start + ans.text.len();
                    for (n, (s, e)) in spans.iter().enumerate() {
                        if start < *e && end > *s && !relevant.contains(&n) {
                            relevant.push(n);
                        }
                    }
                }
                if relevant.is_empty() {
                    continue;
                }
                let qid = match &qa.id {
                    serde_json::Value::Null => format!("a{a}p{p}q{q}"),
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                queries.push_str(&serde_json::to_string(
                    &serde_json::json!({"_id": qid, "text": qa.question}),
                )?);
                queries.push('\n');
                built.queries += 1;
                for n in relevant {
                    let _ = writeln!(qrels, "{qid}\t{}\t1", pid(n));
                    built.judgments += 1;
                }
            }
        }
    }
    std::fs::write(out.join("corpus.jsonl"), corpus)?;
    std::fs::write(out.join("queries.jsonl"), queries)?;
    std::fs::write(out.join("qrels").join("test.tsv"), qrels)?;
    Ok(built)
}

#[derive(Debug, Serialize)]
pub struct AbstentionReport {
    pub dataset: String,
    pub articles_indexed: usize,
    pub articles_held_out: usize,
    pub answerable: usize,
    pub unanswerable: usize,
    /// The threshold that maximizes balanced accuracy on this data.
    pub threshold: f32,
    /// Share of answerable questions kept (answered) at the threshold.
    pub answerable_kept: f64,
    /// Share of unanswerable questions abstained on at the threshold.
    pub unanswerable_abstained: f64,
    /// (threshold, answerable kept, unanswerable abstained) over a grid.
    pub curve: Vec<(f32, f64, f64)>,
}

/// Calibrates the abstention threshold: even-numbered articles are indexed,
/// odd-numbered ones held out. Questions about indexed articles should be
/// answered, questions about held-out ones abstained on. The evidence is the
/// best dense similarity among the hybrid top 10, exactly as `answer` sees it.
pub async fn abstention(
    c: &Components,
    file: &Path,
    collection: &str,
    max_questions: usize,
) -> anyhow::Result<AbstentionReport> {
    let squad: Squad =
        serde_json::from_slice(&std::fs::read(file).with_context(|| format!("reading {}", file.display()))?)
            .with_context(|| format!("parsing {}", file.display()))?;
    let articles: Vec<&SquadParagraph> = squad.data.iter().filter_map(|a| a.paragraphs.first()).collect();
    let existing = c
        .store
        .list_documents(&c.cfg.access.default_labels, &[collection.to_owned()])
        .await?;
    if existing.is_empty() {
        let mut jobs = Vec::new();
        for (i, a) in articles.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
            let sub = c
                .ingestor
                .submit(NewDocument {
                    bytes: a.context.clone().into_bytes(),
                    file_name: format!("article-{i}.txt"),
                    source: format!("squad:{i}"),
                    collection: collection.to_owned(),
                    access: c.cfg.access.default_labels.clone(),
                    title: None,
                    tags: Vec::new(),
                    date: None,
                })
                .await?;
            if let Submitted::Queued { doc, job } = sub {
                jobs.push((job.id, doc.id));
            }
        }
        let noop = |_: uuid::Uuid, _: docent_core::DocStatus, _: f32| {};
        for r in c.ingestor.run_many(&jobs, &noop).await {
            r?;
        }
    }
    let mut filter = AccessFilter::for_principal(&docent_core::Principal {
        user: "eval".into(),
        groups: c.cfg.access.default_labels.clone(),
    });
    filter.collections = vec![collection.to_owned()];
    // Interleave questions so both classes are sampled evenly when capped.
    let mut answerable = Vec::new();
    let mut unanswerable = Vec::new();
    for (i, a) in articles.iter().enumerate() {
        for qa in &a.qas {
            if i % 2 == 0 {
                answerable.push(qa.question.as_str());
            } else {
                unanswerable.push(qa.question.as_str());
            }
        }
    }
    let per_class = max_questions / 2;
    let mut scores_ans = Vec::new();
    for q in answerable
        .iter()
        .step_by((answerable.len() / per_class.max(1)).max(1))
        .take(per_class)
    {
        let hits = c.searcher.search(q, &filter, 10, Mode::Hybrid).await?.hits;
        scores_ans.push(docent_generate::answer::evidence(&hits));
    }
    let mut scores_un = Vec::new();
    for q in unanswerable
        .iter()
        .step_by((unanswerable.len() / per_class.max(1)).max(1))
        .take(per_class)
    {
        let hits = c.searcher.search(q, &filter, 10, Mode::Hybrid).await?.hits;
        scores_un.push(docent_generate::answer::evidence(&hits));
    }
    let rate = |v: &[f32], t: f32, above: bool| -> f64 {
        if v.is_empty() {
            return 0.0;
        }
        v.iter().filter(|s| (**s >= t) == above).count() as f64 / v.len() as f64
    };
    let mut curve = Vec::new();
    let mut best = (0.0f32, -1.0f64);
    for step in 0..=100 {
        let t = step as f32 / 100.0;
        let kept = rate(&scores_ans, t, true);
        let abstained = rate(&scores_un, t, false);
        if (kept + abstained) / 2.0 > best.1 {
            best = (t, (kept + abstained) / 2.0);
        }
        if step % 5 == 0 {
            curve.push((t, kept, abstained));
        }
    }
    Ok(AbstentionReport {
        dataset: file.display().to_string(),
        articles_indexed: articles.len().div_ceil(2),
        articles_held_out: articles.len() / 2,
        answerable: scores_ans.len(),
        unanswerable: scores_un.len(),
        threshold: best.0,
        answerable_kept: rate(&scores_ans, best.0, true),
        unanswerable_abstained: rate(&scores_un, best.0, false),
        curve,
    })
}
