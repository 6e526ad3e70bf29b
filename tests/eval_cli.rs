//! `docent eval retrieval` on a tiny hand-made BEIR-format collection:
//! through the real ingestion and search, with --json and --run-file.

mod common;

use std::collections::HashMap;

#[test]
fn eval_retrieval_writes_json_and_trec_run_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let beir = dir.path().join("tiny");
    std::fs::create_dir_all(beir.join("qrels")).expect("mkdir");
    let corpus = [
        (
            "d1",
            "Hand hygiene",
            "Wash hands with soap for twenty seconds before touching a patient.",
        ),
        (
            "d2",
            "Sharps disposal",
            "Used needles go into the yellow sharps container, never the bin.",
        ),
        (
            "d3",
            "Visitor badges",
            "Visitors wear a green badge and sign in at the front desk.",
        ),
        (
            "d4",
            "Fire safety",
            "On a fire alarm, close the doors and move patients to the next zone.",
        ),
    ];
    let lines: Vec<String> = corpus
        .iter()
        .map(|(id, t, x)| serde_json::json!({"_id": id, "title": t, "text": x}).to_string())
        .collect();
    std::fs::write(beir.join("corpus.jsonl"), lines.join("\n")).expect("corpus");
    let queries = [
        ("q1", "where do used needles go"),
        ("q2", "what colour is the visitor badge"),
    ];
    let lines: Vec<String> = queries
        .iter()
        .map(|(id, t)| serde_json::json!({"_id": id, "text": t}).to_string())
        .collect();
    std::fs::write(beir.join("queries.jsonl"), lines.join("\n")).expect("queries");
    std::fs::write(
        beir.join("qrels/test.tsv"),
        "query-id\tcorpus-id\tscore\nq1\td2\t1\nq2\td3\t1\n",
    )
    .expect("qrels");

    let data = dir.path().join("data");
    let run = dir.path().join("run");
    let out = common::docent(
        &data,
        &[
            "eval",
            "retrieval",
            "--dataset",
            beir.to_str().expect("path"),
            "--json",
            "--run-file",
            run.to_str().expect("path"),
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(report["documents"], 4);
    let modes = report["modes"].as_array().expect("modes");
    assert!(modes.len() >= 3);
    for m in modes {
        let label = m["mode"].as_str().expect("mode");
        assert_eq!(m["queries"], 2, "{label}");
        for key in ["ndcg_at_10", "recall_at_100", "mrr_at_10"] {
            let v = m[key].as_f64().expect(key);
            assert!((0.0..=1.0).contains(&v), "{label} {key} = {v}");
        }
        // Four documents, every relevant one retrieved within 100.
        assert_eq!(m["recall_at_100"].as_f64(), Some(1.0), "{label}");

        // The run file: TREC format, ranks from 1, each query's documents
        // once, and the same MRR@10 when scored from the file.
        let path = format!("{}.{label}", run.display());
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut by_query: HashMap<&str, Vec<(&str, usize)>> = HashMap::new();
        for line in text.lines() {
            let cols: Vec<&str> = line.split(' ').collect();
            assert_eq!(cols.len(), 6, "{line}");
            assert_eq!(cols[1], "Q0");
            assert!(cols[4].parse::<f32>().is_ok(), "{line}");
            assert_eq!(cols[5], format!("docent-{label}"));
            by_query
                .entry(cols[0])
                .or_default()
                .push((cols[2], cols[3].parse().expect("rank")));
        }
        // Scores fall with rank, so trec_eval keeps our order.
        let mut prev: HashMap<&str, f32> = HashMap::new();
        for line in text.lines() {
            let cols: Vec<&str> = line.split(' ').collect();
            let score: f32 = cols[4].parse().expect("score");
            if let Some(p) = prev.insert(cols[0], score) {
                assert!(score < p, "{label}: scores must fall with rank: {line}");
            }
        }
        // Per-stage latency is reported.
        for stage in ["query_embedding", "bm25", "dense", "fusion", "hydrate", "rerank"] {
            assert!(m["stages_ms"][stage]["p95"].as_f64().is_some(), "{label} {stage}");
        }
        let qrels = HashMap::from([("q1", "d2"), ("q2", "d3")]);
        let mut mrr = 0.0;
        for (q, ranked) in &by_query {
            let ranks: Vec<usize> = ranked.iter().map(|(_, r)| *r).collect();
            assert_eq!(ranks, (1..=ranked.len()).collect::<Vec<_>>(), "{label} {q}");
            let mut ids: Vec<&str> = ranked.iter().map(|(d, _)| *d).collect();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), ranked.len(), "{label} {q}: a document twice");
            if let Some((_, r)) = ranked.iter().find(|(d, _)| *d == qrels[q]) {
                if *r <= 10 {
                    mrr += 1.0 / *r as f64;
                }
            }
        }
        assert_eq!(by_query.len(), 2, "{label}");
        let reported = m["mrr_at_10"].as_f64().expect("mrr");
        assert!(
            (mrr / 2.0 - reported).abs() < 1e-9,
            "{label}: file {} vs report {reported}",
            mrr / 2.0
        );
    }
    // The models directory has the cross-encoder, so the reranked mode runs.
    assert!(
        report["reranker"].as_str().is_some_and(|r| r.starts_with("reranker@")),
        "{report}"
    );
    assert!(
        modes
            .iter()
            .any(|m| m["mode"].as_str().is_some_and(|l| l.ends_with("+rerank"))),
        "{report}"
    );
    // Approximate vs exact dense search, measured at 10 and 100.
    let ann = report["ann"].as_array().expect("ann");
    assert_eq!(ann.len(), 2);
    for a in ann {
        let r = a["recall"].as_f64().expect("recall");
        // Four documents: HNSW (or the plain segment) finds them all.
        assert_eq!(r, 1.0, "{a}");
    }
}

/// `docent eval answers` and `docent eval abstention` on a tiny SQuAD file
/// with the real models: two articles indexed, two held out.
#[test]
fn eval_answers_and_abstention_report_their_rates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let article = |text: &str, q: &str, a: &str| {
        let start = text.find(a).expect("answer in text");
        serde_json::json!({"paragraphs": [{"context": text, "qas": [
            {"id": q, "question": q, "answers": [{"text": a, "answer_start": start}]}
        ]}]})
    };
    let squad = serde_json::json!({"data": [
        // Even positions are indexed.
        article(
            "Zorblax fever quarantine. The quarantine period for Zorblax fever is eleven days. Patients stay in the east wing.",
            "How long is the quarantine period for Zorblax fever?",
            "eleven days",
        ),
        // Odd positions are held out.
        article(
            "Velocitrex dosing. Adults take 500 mg of velocitrex twice a day.",
            "How much velocitrex do adults take?",
            "500 mg",
        ),
        article(
            "Quibblewort soup. The cafeteria serves quibblewort soup every Friday at noon.",
            "When does the cafeteria serve quibblewort soup?",
            "every Friday at noon",
        ),
        article(
            "Tungsten. The boiling point of tungsten is 5,930 kelvin.",
            "What is the boiling point of tungsten?",
            "5,930 kelvin",
        ),
    ]});
    let file = dir.path().join("tiny-squad.json");
    std::fs::write(&file, squad.to_string()).expect("write squad");
    let data = dir.path().join("data");
    let file_arg = file.to_str().expect("utf-8 path");

    let out = common::docent(
        &data,
        &["eval", "answers", "--dataset", file_arg, "--questions", "2", "--json"],
    );
    assert!(out.status.success(), "eval answers failed");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report json");
    eprintln!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
    assert_eq!(r["answerable"], 2);
    assert_eq!(r["unanswerable"], 2);
    let rate = |v: &serde_json::Value| v.as_f64().filter(|x| (0.0..=1.0).contains(x));
    for key in ["answerable_abstained", "unanswerable_abstained", "token_f1"] {
        assert!(rate(&r[key]).is_some(), "{key}: {}", r[key]);
    }
    let answered = r["answered"].as_u64().expect("answered");
    let abstained = rate(&r["answerable_abstained"]).expect("rate");
    assert_eq!(answered as f64, 2.0 * (1.0 - abstained), "answered + abstained = asked");
    // The indexed articles' questions are answered (the cross-encoder finds
    // their passage), the held-out ones are not.
    assert!(answered > 0, "nothing was answered: {r}");
    assert_eq!(r["unanswerable_abstained"], 1.0, "{r}");
    // Every answered question had its gold passage in the prompt (one
    // short article each), and the model's speed was measured.
    assert_eq!(r["gold_in_prompt"], 1.0, "{r}");
    assert!(r["decode_tokens_per_s"].as_f64().is_some_and(|x| x > 0.0), "{r}");
    assert!(
        r["time_to_first_token_ms"]["p50"].as_f64().is_some_and(|x| x > 0.0),
        "{r}"
    );
    for k in ["citations_raw", "citations_lexical", "citations_checked"] {
        assert!(rate(&r[k]["precision"]).is_some(), "{k}: {r}");
    }
    // The checker probe ran on the answered questions' prompts.
    assert!(r["checker_checked"]["cases"].as_u64().is_some(), "{r}");

    // The same collection, calibrated: both signals, operating points in range.
    let out = common::docent(
        &data,
        &["eval", "abstention", "--dataset", file_arg, "--max-questions", "4"],
    );
    assert!(out.status.success(), "eval abstention failed");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report json");
    let cal = r["calibrations"].as_array().expect("calibrations");
    assert_eq!(cal.len(), 2, "dense and cross-encoder: {r}");
    for c in cal {
        for p in ["best_balanced", "keep_90"] {
            assert!(rate(&c[p]["answerable_kept"]).is_some(), "{c}");
            assert!(rate(&c[p]["unanswerable_abstained"]).is_some(), "{c}");
        }
    }
}
