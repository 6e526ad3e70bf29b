//! Retrieval evaluation on BEIR-format datasets (`corpus.jsonl`,
//! `queries.jsonl`, `qrels/test.tsv`). The corpus goes through the normal
//! ingestion path; metrics follow trec_eval (nDCG with linear gains).

use crate::app::Components;
use anyhow::{bail, Context};
use docent_core::AccessFilter;
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

/// A progress bar on stderr (hidden when `show` is false, e.g. for --json
/// or a non-terminal), shared by the eval and bench commands.
pub(crate) fn progress_bar(len: usize, show: bool) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len as u64);
    if !show {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
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
    let bar = progress_bar(docs.len(), show);
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
    c.vectors.maintain()?;
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
        role: docent_core::AccessRole::Reader,
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
    let bar = progress_bar(runs.len() * queries.len(), show);
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

/// One evidence signal's separation of answerable from unanswerable.
#[derive(Debug, Serialize)]
pub struct Calibration {
    pub signal: String,
    /// The threshold that maximizes balanced accuracy on this data.
    pub best_balanced: OperatingPoint,
    /// The highest threshold that still answers at least 90% of answerable
    /// questions: the product's rule (a wrong abstention costs a user the
    /// answer; a wrong answer is still checked for citations).
    pub keep_90: OperatingPoint,
    /// (threshold, answerable kept, unanswerable abstained) over a grid.
    pub curve: Vec<(f32, f64, f64)>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct OperatingPoint {
    pub threshold: f32,
    /// Share of answerable questions answered.
    pub answerable_kept: f64,
    /// Share of unanswerable questions abstained on.
    pub unanswerable_abstained: f64,
}

#[derive(Debug, Serialize)]
pub struct AbstentionReport {
    pub dataset: String,
    pub articles_indexed: usize,
    pub articles_held_out: usize,
    pub answerable: usize,
    pub unanswerable: usize,
    pub calibrations: Vec<Calibration>,
}

fn calibrate(signal: &str, answerable: &[f32], unanswerable: &[f32]) -> Calibration {
    let rate = |v: &[f32], t: f32, above: bool| -> f64 {
        if v.is_empty() {
            return 0.0;
        }
        v.iter().filter(|s| (**s >= t) == above).count() as f64 / v.len() as f64
    };
    let point = |t: f32| OperatingPoint {
        threshold: t,
        answerable_kept: rate(answerable, t, true),
        unanswerable_abstained: rate(unanswerable, t, false),
    };
    let mut curve = Vec::new();
    let mut best = point(0.0);
    let mut keep_90 = point(0.0);
    for step in 0..=200 {
        let t = step as f32 / 200.0;
        let p = point(t);
        if p.answerable_kept + p.unanswerable_abstained > best.answerable_kept + best.unanswerable_abstained {
            best = p;
        }
        if p.answerable_kept >= 0.9 {
            keep_90 = p;
        }
        if step % 10 == 0 {
            curve.push((t, p.answerable_kept, p.unanswerable_abstained));
        }
    }
    Calibration {
        signal: signal.to_owned(),
        best_balanced: best,
        keep_90,
        curve,
    }
}

/// Calibrates abstention: even-numbered articles are indexed, odd-numbered
/// ones held out. Questions about indexed articles should be answered,
/// questions about held-out ones abstained on. Two signals, exactly as
/// `answer` sees them: the best dense similarity among the hybrid top k,
/// and (when `reranker` is given) the best cross-encoder relevance
/// probability among its top `rerank_n`.
pub async fn abstention(
    c: &Components,
    reranker: Option<Arc<dyn docent_core::Reranker>>,
    file: &Path,
    collection: &str,
    max_questions: usize,
) -> anyhow::Result<AbstentionReport> {
    let articles = load_squad_half(c, file, collection).await?;
    let filter = eval_filter(c, collection);
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
    let judge = reranker.as_ref().map(|r| (r, c.cfg.generation.evidence_rerank_n));
    let k = c.cfg.retrieval.answer_k;
    let mut dense = [Vec::new(), Vec::new()];
    let mut cross = [Vec::new(), Vec::new()];
    for (class, questions) in [&answerable, &unanswerable].into_iter().enumerate() {
        // Evenly spaced, so both classes are sampled alike when capped.
        for q in questions
            .iter()
            .step_by((questions.len() / per_class.max(1)).max(1))
            .take(per_class)
        {
            let hits = c.searcher.search_for_answer(q, &filter, k, judge).await?;
            dense[class].push(docent_generate::answer::evidence(&hits));
            if let Some(p) = docent_generate::answer::cross_evidence(&hits) {
                cross[class].push(p);
            }
        }
    }
    let mut calibrations = vec![calibrate("dense cosine", &dense[0], &dense[1])];
    if reranker.is_some() {
        calibrations.push(calibrate("cross-encoder probability", &cross[0], &cross[1]));
    }
    Ok(AbstentionReport {
        dataset: file.display().to_string(),
        articles_indexed: articles.len().div_ceil(2),
        articles_held_out: articles.len() / 2,
        answerable: dense[0].len(),
        unanswerable: dense[1].len(),
        calibrations,
    })
}

/// Loads the even-numbered articles of a SQuAD file into `collection`
/// (once; a second run reuses them) and returns the articles.
async fn load_squad_half(c: &Components, file: &Path, collection: &str) -> anyhow::Result<Vec<SquadParagraph>> {
    let squad: Squad =
        serde_json::from_slice(&std::fs::read(file).with_context(|| format!("reading {}", file.display()))?)
            .with_context(|| format!("parsing {}", file.display()))?;
    let articles: Vec<SquadParagraph> = squad
        .data
        .into_iter()
        .filter_map(|a| a.paragraphs.into_iter().next())
        .collect();
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
    Ok(articles)
}

fn eval_filter(c: &Components, collection: &str) -> AccessFilter {
    let mut filter = AccessFilter::for_principal(&docent_core::Principal {
        role: docent_core::AccessRole::Reader,
        user: "eval".into(),
        groups: c.cfg.access.default_labels.clone(),
    });
    filter.collections = vec![collection.to_owned()];
    filter
}

/// SQuAD answer normalization: lower case, no punctuation, no articles,
/// single spaces.
pub fn squad_tokens(s: &str) -> Vec<String> {
    s.to_lowercase()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c.is_whitespace() {
                c
            } else {
                ' '
            }
        })
        .collect::<String>()
        .split_whitespace()
        .filter(|w| !matches!(*w, "a" | "an" | "the"))
        .map(str::to_owned)
        .collect()
}

/// SQuAD token F1 of a prediction against one gold answer.
pub fn token_f1(prediction: &str, gold: &str) -> f64 {
    let p = squad_tokens(prediction);
    let g = squad_tokens(gold);
    if p.is_empty() || g.is_empty() {
        return if p.is_empty() && g.is_empty() { 1.0 } else { 0.0 };
    }
    let mut counts: HashMap<&str, i64> = HashMap::new();
    for w in &g {
        *counts.entry(w.as_str()).or_default() += 1;
    }
    let mut same = 0i64;
    for w in &p {
        if let Some(n) = counts.get_mut(w.as_str()) {
            if *n > 0 {
                *n -= 1;
                same += 1;
            }
        }
    }
    if same == 0 {
        return 0.0;
    }
    let precision = same as f64 / p.len() as f64;
    let recall = same as f64 / g.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// Whether `passage` contains the gold answer span (normalized).
pub fn contains_span(passage: &str, gold: &str) -> bool {
    let g = squad_tokens(gold).join(" ");
    !g.is_empty() && squad_tokens(passage).join(" ").contains(&g)
}

#[derive(Debug, Default, Serialize)]
pub struct CitationStats {
    /// Citations kept, over all answered questions.
    pub citations: usize,
    /// Share of citations whose passage contains the gold answer span.
    pub precision: f64,
    /// Share of answered questions with at least one citation.
    pub answers_cited: f64,
    /// Share of answered questions with a citation holding the gold span.
    pub answers_correctly_cited: f64,
    /// Share of answer sentences flagged unsupported.
    pub unsupported_sentences: f64,
}

#[derive(Debug, Serialize)]
pub struct AnswerExample {
    pub question: String,
    pub gold: String,
    pub answer: String,
    pub citations: Vec<(usize, bool)>,
    pub f1: f64,
}

#[derive(Debug, Serialize)]
pub struct AnswersReport {
    pub dataset: String,
    pub model: String,
    pub support_model: Option<String>,
    pub answerable: usize,
    pub unanswerable: usize,
    /// The evidence judge ("cross-encoder" or "dense") and its floor.
    pub evidence: String,
    pub min_evidence: f32,
    /// Share of answerable questions (article indexed) abstained on.
    pub answerable_abstained: f64,
    /// Share of questions whose article is absent that were abstained on.
    pub unanswerable_abstained: f64,
    pub answered: usize,
    /// Share of questions past the abstention floor whose prompt held a
    /// source with the gold span: the ceiling for citation recall.
    pub gold_in_prompt: f64,
    /// The model's own [n] markers, unchecked.
    pub citations_raw: CitationStats,
    /// After the check by word overlap only.
    pub citations_lexical: CitationStats,
    /// After the configured check (overlap plus the support model).
    pub citations_checked: CitationStats,
    /// Mean SQuAD token F1 of the answer text (markers removed).
    pub token_f1: f64,
    pub time_to_first_token_ms: Percentiles,
    /// Completion tokens over (total - time to first token).
    pub decode_tokens_per_s: f64,
    /// Prompt tokens over time to first token.
    pub prompt_tokens_per_s: f64,
    pub mean_prompt_tokens: f64,
    /// The checker alone, on claims built from the gold answers (so the
    /// model's answer quality does not enter): word overlap only, and the
    /// configured check.
    pub checker_lexical: CheckerProbe,
    pub checker_checked: CheckerProbe,
    pub examples: Vec<AnswerExample>,
}

/// How the citation checker treats a claim whose support is known: the
/// claim is "question + gold answer", and the prompt's sources are split
/// into those holding the gold span and those that do not.
#[derive(Debug, Default, Serialize)]
pub struct CheckerProbe {
    /// Questions whose prompt held both a gold and a non-gold source.
    pub cases: usize,
    /// Claim cited to a gold source: the citation is kept.
    pub keeps_right: f64,
    /// Claim cited to a non-gold source: the citation is dropped.
    pub drops_wrong: f64,
    /// Claim with no citation: a gold source is attached.
    pub attaches_right: f64,
    /// Claim with no citation: a non-gold source is attached.
    pub attaches_wrong: f64,
}

#[derive(Default)]
struct ProbeCounts {
    cases: usize,
    keeps_right: usize,
    drops_wrong: usize,
    attaches_right: usize,
    attaches_wrong: usize,
}

impl ProbeCounts {
    fn report(&self) -> CheckerProbe {
        let share = |a: usize| {
            if self.cases == 0 {
                0.0
            } else {
                a as f64 / self.cases as f64
            }
        };
        CheckerProbe {
            cases: self.cases,
            keeps_right: share(self.keeps_right),
            drops_wrong: share(self.drops_wrong),
            attaches_right: share(self.attaches_right),
            attaches_wrong: share(self.attaches_wrong),
        }
    }
}

/// Runs the three probes for one question on one checker configuration.
fn probe(
    counts: &mut ProbeCounts,
    claim: &str,
    sources: &[docent_generate::prompt::Source],
    gold: &[bool],
    cfg: docent_generate::citations::CheckConfig,
    semantic: Option<&docent_generate::citations::SemanticScores>,
) {
    use docent_generate::citations::check_scored;
    let (Some(right), Some(wrong)) = (gold.iter().position(|g| *g), gold.iter().position(|g| !*g)) else {
        return;
    };
    counts.cases += 1;
    let cited = |n: usize| check_scored(&format!("{claim} [{n}]."), sources, cfg, semantic);
    let a = cited(sources[right].n);
    counts.keeps_right += usize::from(
        a.sentences
            .first()
            .is_some_and(|s| s.citations.contains(&sources[right].n)),
    );
    let a = cited(sources[wrong].n);
    counts.drops_wrong += usize::from(
        a.sentences
            .first()
            .is_some_and(|s| s.dropped.contains(&sources[wrong].n)),
    );
    let a = check_scored(&format!("{claim}."), sources, cfg, semantic);
    if let Some(s) = a.sentences.first() {
        let is_gold = |n: &usize| sources.iter().position(|x| x.n == *n).is_some_and(|i| gold[i]);
        counts.attaches_right += usize::from(s.attached.iter().any(is_gold));
        counts.attaches_wrong += usize::from(s.attached.iter().any(|n| !is_gold(n)));
    }
}

fn citation_stats(answers: &[(docent_generate::citations::CheckedAnswer, Vec<String>)]) -> CitationStats {
    let mut s = CitationStats::default();
    let (mut correct, mut cited_answers, mut correct_answers, mut sentences, mut unsupported) = (0, 0, 0, 0, 0);
    for (a, golds) in answers {
        let ok: Vec<bool> = a
            .citations
            .iter()
            .map(|c| golds.iter().any(|g| contains_span(&c.passage, g)))
            .collect();
        s.citations += ok.len();
        correct += ok.iter().filter(|b| **b).count();
        cited_answers += usize::from(!ok.is_empty());
        correct_answers += usize::from(ok.iter().any(|b| *b));
        sentences += a.sentences.len();
        unsupported += a.unsupported_count();
    }
    let share = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    s.precision = share(correct, s.citations);
    s.answers_cited = share(cited_answers, answers.len());
    s.answers_correctly_cited = share(correct_answers, answers.len());
    s.unsupported_sentences = share(unsupported, sentences);
    s
}

/// How `docent eval answers` runs.
#[derive(Debug, Clone, Copy)]
pub struct AnswersOptions {
    /// Questions per class, evenly spaced.
    pub per_class: usize,
    /// Call the model (else: abstention and the checker probe only).
    pub generate: bool,
    pub show_progress: bool,
}

/// Answer quality on a SQuAD-format set with the real pipeline: even
/// articles indexed, odd ones held out. Answerable questions go through
/// retrieval, the abstention decision, the model and the citation check;
/// questions about held-out articles go through retrieval and the
/// abstention decision (which precedes any model call, so generating for
/// them would not change the rate).
pub async fn answers(
    c: &Components,
    chat: &dyn docent_core::ChatModel,
    support: Option<Arc<dyn docent_generate::citations::SupportModel>>,
    file: &Path,
    collection: &str,
    opts: AnswersOptions,
) -> anyhow::Result<AnswersReport> {
    let AnswersOptions {
        per_class,
        generate,
        show_progress,
    } = opts;
    use docent_generate::answer::{abstains, generate_checked, prepare, semantic_scores};
    use docent_generate::citations::{check, CheckConfig};
    let articles = load_squad_half(c, file, collection).await?;
    let filter = eval_filter(c, collection);
    let cfg = c.answer_config();
    let evidence = c.evidence_reranker().await?;
    let judge = evidence.as_ref().map(|r| (r, c.cfg.generation.evidence_rerank_n));
    let mut answerable = Vec::new();
    let mut unanswerable = Vec::new();
    for (i, a) in articles.iter().enumerate() {
        for qa in &a.qas {
            let golds: Vec<String> = qa.answers.iter().map(|g| g.text.clone()).collect();
            if i % 2 == 0 {
                answerable.push((qa.question.as_str(), golds));
            } else {
                unanswerable.push(qa.question.as_str());
            }
        }
    }
    let pick = |n: usize| (n / per_class.max(1)).max(1);
    let answerable: Vec<_> = answerable
        .iter()
        .step_by(pick(answerable.len()))
        .take(per_class)
        .collect();
    let unanswerable: Vec<_> = unanswerable
        .iter()
        .step_by(pick(unanswerable.len()))
        .take(per_class)
        .collect();

    let bar = progress_bar(answerable.len() + unanswerable.len(), show_progress);
    bar.set_message("held-out questions");
    let mut un_abstained = 0usize;
    for q in &unanswerable {
        let hits = c
            .searcher
            .search_for_answer(q, &filter, c.cfg.retrieval.answer_k, judge)
            .await?;
        un_abstained += usize::from(abstains(&hits, &cfg));
        bar.inc(1);
    }

    bar.set_message("answerable questions");
    let mut ans_abstained = 0usize;
    let mut raw = Vec::new();
    let mut lexical = Vec::new();
    let mut checked = Vec::new();
    let mut f1s = Vec::new();
    let mut gold_in_prompt = 0usize;
    let mut passed = 0usize;
    let mut ttft = Vec::new();
    let (mut decode_tokens, mut decode_ms, mut prompt_tokens, mut prompt_ms) = (0u64, 0u64, 0u64, 0u64);
    let mut examples = Vec::new();
    let mut probe_lexical = ProbeCounts::default();
    let mut probe_checked = ProbeCounts::default();
    let mut support_name = None;
    struct Quiet;
    impl docent_core::TokenSink for Quiet {
        fn token(&mut self, _: &str) -> bool {
            true
        }
    }
    let unchecked = CheckConfig {
        drop_below: f32::NEG_INFINITY,
        attach_above: f32::INFINITY,
        repoint_margin: f32::INFINITY,
    };
    for (q, golds) in &answerable {
        let hits = c
            .searcher
            .search_for_answer(q, &filter, c.cfg.retrieval.answer_k, judge)
            .await?;
        bar.inc(1);
        let Some(prompt) = prepare(chat, q, &hits, &cfg).await? else {
            ans_abstained += 1;
            continue;
        };
        passed += 1;
        let gold_flags: Vec<bool> = prompt
            .sources
            .iter()
            .map(|s| golds.iter().any(|g| contains_span(&s.text, g)))
            .collect();
        gold_in_prompt += usize::from(gold_flags.iter().any(|g| *g));
        // The checker alone: "question + gold answer" as the claim.
        let gold_answer: String = golds
            .first()
            .map(|g| g.split_whitespace().take(30).collect::<Vec<_>>().join(" "))
            .unwrap_or_default();
        let claim = format!(
            "{} {}",
            q.trim().trim_end_matches('?'),
            gold_answer.trim_end_matches('.')
        );
        probe(
            &mut probe_lexical,
            &claim,
            &prompt.sources,
            &gold_flags,
            cfg.check,
            None,
        );
        let semantic = match &support {
            Some(m) => semantic_scores(Arc::clone(m), &format!("{claim}."), &prompt.sources).await,
            None => None,
        };
        probe(
            &mut probe_checked,
            &claim,
            &prompt.sources,
            &gold_flags,
            cfg.check,
            semantic.as_ref(),
        );
        if !generate {
            continue;
        }
        let a = generate_checked(chat, support.clone(), prompt, &cfg, &mut Quiet).await?;
        support_name = support_name.or(a.support_model.clone());
        let text: String = a
            .checked
            .sentences
            .iter()
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let f1 = golds.iter().map(|g| token_f1(&text, g)).fold(0.0, f64::max);
        f1s.push(f1);
        ttft.push(a.usage.time_to_first_token_ms as f64);
        prompt_tokens += u64::from(a.usage.prompt_tokens);
        prompt_ms += a.usage.time_to_first_token_ms;
        decode_tokens += u64::from(a.usage.completion_tokens);
        decode_ms += a.usage.total_ms.saturating_sub(a.usage.time_to_first_token_ms);
        if examples.len() < 8 {
            examples.push(AnswerExample {
                question: (*q).to_owned(),
                gold: golds.first().cloned().unwrap_or_default(),
                answer: a.checked.render(),
                citations: a
                    .checked
                    .citations
                    .iter()
                    .map(|c| (c.n, golds.iter().any(|g| contains_span(&c.passage, g))))
                    .collect(),
                f1,
            });
        }
        raw.push((check(&a.text, &a.sources, unchecked), golds.clone()));
        lexical.push((check(&a.text, &a.sources, cfg.check), golds.clone()));
        // The configured check, as the service ran it.
        checked.push((a.checked, golds.clone()));
    }
    bar.finish_and_clear();
    let answered = f1s.len();
    let share = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let per_s = |t: u64, ms: u64| if ms == 0 { 0.0 } else { t as f64 * 1000.0 / ms as f64 };
    Ok(AnswersReport {
        dataset: file.display().to_string(),
        model: chat.name(),
        support_model: support_name,
        answerable: answerable.len(),
        unanswerable: unanswerable.len(),
        evidence: if evidence.is_some() {
            "cross-encoder".into()
        } else {
            "dense".into()
        },
        min_evidence: if evidence.is_some() {
            cfg.min_cross_evidence
        } else {
            cfg.min_evidence
        },
        answerable_abstained: share(ans_abstained, answerable.len()),
        unanswerable_abstained: share(un_abstained, unanswerable.len()),
        answered,
        gold_in_prompt: share(gold_in_prompt, passed),
        citations_raw: citation_stats(&raw),
        citations_lexical: citation_stats(&lexical),
        citations_checked: citation_stats(&checked),
        token_f1: if answered == 0 {
            0.0
        } else {
            f1s.iter().sum::<f64>() / answered as f64
        },
        time_to_first_token_ms: Percentiles::of(ttft),
        decode_tokens_per_s: per_s(decode_tokens, decode_ms),
        prompt_tokens_per_s: per_s(prompt_tokens, prompt_ms),
        mean_prompt_tokens: if answered == 0 {
            0.0
        } else {
            prompt_tokens as f64 / answered as f64
        },
        checker_lexical: probe_lexical.report(),
        checker_checked: probe_checked.report(),
        examples,
    })
}

#[cfg(test)]
mod answer_metric_tests {
    use super::*;

    #[test]
    fn squad_f1_and_span_containment() {
        assert_eq!(token_f1("The eleven days", "eleven days"), 1.0);
        assert_eq!(token_f1("nothing here", "eleven days"), 0.0);
        // "it lasts eleven days": 2 of 4 predicted tokens, 2 of 2 gold.
        let f1 = token_f1("it lasts eleven days", "eleven days");
        assert!((f1 - 2.0 * 0.5 / 1.5).abs() < 1e-9, "{f1}");
        assert!(contains_span(
            "The quarantine lasts Eleven  days, then ends.",
            "eleven days"
        ));
        assert!(!contains_span("eleven", "eleven days"));
        assert!(!contains_span("anything", "  "));
    }

    #[test]
    fn calibration_picks_the_rules_operating_points() {
        // Answerable scores 0.5..1.0, unanswerable 0.0..0.6: overlapping.
        let ans: Vec<f32> = (0..10).map(|i| 0.5 + i as f32 * 0.05).collect();
        let un: Vec<f32> = (0..10).map(|i| i as f32 * 0.06).collect();
        let c = calibrate("x", &ans, &un);
        assert!(c.keep_90.answerable_kept >= 0.9);
        // The next grid step up would drop below 90% kept.
        let above = c.keep_90.threshold + 0.005;
        let kept_above = ans.iter().filter(|s| **s >= above).count() as f64 / ans.len() as f64;
        assert!(kept_above < 0.9, "{:?}", c.keep_90);
        let b = c.best_balanced;
        assert!(
            b.answerable_kept + b.unanswerable_abstained
                >= c.keep_90.answerable_kept + c.keep_90.unanswerable_abstained
        );
        assert_eq!(c.curve.len(), 21);
    }
}
