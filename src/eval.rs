//! Retrieval evaluation on BEIR-format datasets (`corpus.jsonl`,
//! `queries.jsonl`, `qrels/test.tsv`). The corpus goes through the normal
//! ingestion path; metrics follow trec_eval (nDCG with linear gains).

use crate::app::Components;
use anyhow::{bail, Context};
use docent_core::AccessFilter;
use docent_ingest::pipeline::{NewDocument, Submitted};
use docent_retrieve::search::Mode;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Deserialize)]
struct CorpusDoc {
    #[serde(rename = "_id")]
    id: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    text: String,
}

#[derive(Debug, Deserialize)]
struct Query {
    #[serde(rename = "_id")]
    id: String,
    text: String,
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

fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<Vec<T>> {
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

#[derive(Debug, Serialize)]
pub struct ModeResult {
    pub mode: String,
    pub queries: usize,
    pub ndcg_at_10: f64,
    pub recall_at_100: f64,
    pub mrr_at_10: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p95: f64,
    pub latency_ms_p99: f64,
}

#[derive(Debug, Serialize)]
pub struct EvalReport {
    pub dataset: String,
    pub documents: usize,
    pub chunks: usize,
    pub ingest_seconds: Option<f64>,
    pub modes: Vec<ModeResult>,
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

/// Runs every query in each mode and scores the document rankings.
/// Evaluates every mode; with `run_file`, also writes one TREC run file per
/// mode (`<run_file>.<mode>`: `qid Q0 docid rank score tag`), so that the
/// rankings can be scored independently (trec_eval, ir_measures, pytrec_eval).
pub async fn evaluate(
    c: &Components,
    dir: &Path,
    collection: &str,
    show: bool,
    run_file: Option<&Path>,
) -> anyhow::Result<EvalReport> {
    let ingest_seconds = load_corpus(c, dir, collection, show).await?;
    let queries: Vec<Query> = read_jsonl(&dir.join("queries.jsonl"))?;
    let qrels = read_qrels(&dir.join("qrels").join("test.tsv"))?;
    let queries: Vec<&Query> = queries.iter().filter(|q| qrels.contains_key(&q.id)).collect();
    if queries.is_empty() {
        bail!("no query in queries.jsonl has judgments in qrels/test.tsv");
    }
    let mut filter = AccessFilter::for_principal(&docent_core::Principal {
        user: "eval".into(),
        groups: c.cfg.access.default_labels.clone(),
    });
    filter.collections = vec![collection.to_owned()];
    use docent_retrieve::fusion::Fusion;
    let rrf = Fusion::Rrf { k: 60.0 };
    let runs: Vec<(String, Mode, Fusion)> = vec![
        ("bm25".into(), Mode::Bm25, rrf),
        ("dense".into(), Mode::Dense, rrf),
        ("rrf-k60".into(), Mode::Hybrid, rrf),
        ("convex-0.3".into(), Mode::Hybrid, Fusion::Convex { alpha: 0.3 }),
        ("convex-0.5".into(), Mode::Hybrid, Fusion::Convex { alpha: 0.5 }),
        ("convex-0.7".into(), Mode::Hybrid, Fusion::Convex { alpha: 0.7 }),
    ];
    let mut modes = Vec::new();
    for (label, mode, fusion) in runs {
        let mut lat = Vec::with_capacity(queries.len());
        let (mut ndcg, mut recall, mut mrr) = (0.0, 0.0, 0.0);
        let mut run = String::new();
        for q in &queries {
            let t = Instant::now();
            let out = c.searcher.search_with(&q.text, &filter, 100, mode, fusion).await?;
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
            let mut seen = HashSet::new();
            // Documents ranked by their best chunk.
            let scored: Vec<(String, f32)> = out
                .hits
                .iter()
                .filter_map(|h| {
                    h.document
                        .source
                        .strip_prefix("beir:")
                        .map(|id| (id.to_owned(), h.score))
                })
                .filter(|(id, _)| seen.insert(id.clone()))
                .collect();
            if run_file.is_some() {
                for (rank, (id, score)) in scored.iter().enumerate() {
                    run.push_str(&format!("{} Q0 {id} {} {score:.6} docent-{label}\n", q.id, rank + 1));
                }
            }
            let ranked: Vec<String> = scored.into_iter().map(|(id, _)| id).collect();
            let rels = &qrels[&q.id];
            ndcg += ndcg_at(&ranked, rels, 10);
            recall += recall_at(&ranked, rels, 100);
            mrr += mrr_at(&ranked, rels, 10);
        }
        if let Some(base) = run_file {
            let path = PathBuf::from(format!("{}.{label}", base.display()));
            std::fs::write(&path, run).with_context(|| format!("writing {}", path.display()))?;
        }
        let n = queries.len() as f64;
        lat.sort_by(f64::total_cmp);
        modes.push(ModeResult {
            mode: label,
            queries: queries.len(),
            ndcg_at_10: ndcg / n,
            recall_at_100: recall / n,
            mrr_at_10: mrr / n,
            latency_ms_p50: percentile(&lat, 50.0),
            latency_ms_p95: percentile(&lat, 95.0),
            latency_ms_p99: percentile(&lat, 99.0),
        });
    }
    let docs = c
        .store
        .list_documents(&c.cfg.access.default_labels, &[collection.to_owned()])
        .await?;
    Ok(EvalReport {
        dataset: dir.display().to_string(),
        documents: docs.len(),
        chunks: docs.iter().map(|d| d.chunk_count as usize).sum(),
        ingest_seconds,
        modes,
    })
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
