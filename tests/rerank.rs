//! The cross-encoder reranker on the real model (ms-marco-MiniLM-L-12-v2,
//! int8, from `scripts/fetch-models.sh`): directly through fastembed, and
//! through the real server with `retrieval.rerank` on.

mod common;

use common::Server;
use docent_core::Reranker;
use docent_retrieve::rerank::{FastReranker, RerankerPaths};
use serde_json::{json, Value};
use std::time::Duration;

fn reranker() -> FastReranker {
    let models = common::models_dir();
    FastReranker::load(
        &RerankerPaths {
            model_dir: models.join("reranker"),
            onnxruntime_lib: models.join("onnxruntime/libonnxruntime.so.1.31.1"),
        },
        512,
        2,
    )
    .expect("load reranker")
}

#[test]
fn cross_encoder_scores_relevant_passages_higher_in_input_order() {
    let r = reranker();
    let passages = [
        "The stock market fell on Tuesday after the earnings reports.",
        "COVID-19 is caused by the SARS-CoV-2 coronavirus.",
        "Paris is the capital of France.",
    ];
    let scores = r.rerank("what causes covid-19", &passages).expect("rerank");
    assert_eq!(scores.len(), 3);
    // Scores come back in input order: the relevant passage is the second.
    assert!(scores[1] > scores[0] + 5.0, "{scores:?}");
    assert!(scores[1] > scores[2] + 5.0, "{scores:?}");
    assert!(r.rerank("anything", &[]).expect("empty").is_empty());
    assert!(r.model_id().starts_with("reranker@"));
    // Deterministic.
    assert_eq!(scores, r.rerank("what causes covid-19", &passages).expect("again"));
}

async fn ingest(server: &Server, name: &str, text: &str) {
    let part = reqwest::multipart::Part::bytes(text.as_bytes().to_vec())
        .file_name(name.to_owned())
        .mime_str("text/markdown")
        .expect("mime");
    let r = server
        .client
        .post(server.url("/v1/documents"))
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), 202);
    let body: Value = r.json().await.expect("json");
    let job = body["job_id"].as_str().expect("job").to_owned();
    for _ in 0..600 {
        let j = server.get_json(&format!("/v1/jobs/{job}")).await;
        match j["status"].as_str() {
            Some("ready") => return,
            Some("failed") => panic!("{j}"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("{name} did not finish");
}

#[tokio::test]
async fn server_reranks_the_fused_top_n() {
    let data = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        data.path(),
        &[
            ("DOCENT__RETRIEVAL__RERANK", "true"),
            ("DOCENT__RETRIEVAL__RERANK_TOP_N", "3"),
        ],
    )
    .await;
    // Keyword-heavy decoys repeat the query's words; one passage answers it.
    ingest(
        &server,
        "decoy1.md",
        "# Parking\n\nParking permit parking permit: the parking permit office lists parking permit forms.",
    )
    .await;
    ingest(
        &server,
        "decoy2.md",
        "# Renewals\n\nPermit renewals for parking are discussed at the annual parking meeting.",
    )
    .await;
    ingest(
        &server,
        "answer.md",
        "# Staff cars\n\nTo leave a car in the staff garage, employees apply for a permit at the security desk in building C.",
    )
    .await;
    ingest(
        &server,
        "other.md",
        "# Cafeteria\n\nSoup is served every Friday at noon.",
    )
    .await;

    let r: Value = server
        .client
        .post(server.url("/v1/search"))
        .json(&json!({"query": "how do employees get a parking permit for the garage", "k": 4}))
        .send()
        .await
        .expect("search")
        .json()
        .await
        .expect("json");
    let hits = r["hits"].as_array().expect("hits");
    assert!(hits.len() >= 3, "{r}");
    // The top 3 carry the cross-encoder's score, in falling order; the
    // fourth (beyond top_n) keeps its fused position and has none.
    let scores: Vec<f64> = hits
        .iter()
        .take(3)
        .map(|h| h["rerank_score"].as_f64().expect("rerank_score on the top n"))
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    if let Some(h) = hits.get(3) {
        assert!(h["rerank_score"].is_null(), "{h}");
    }
    assert!(r["timings_us"]["rerank_us"].as_u64().is_some_and(|us| us > 0), "{r}");
    assert_eq!(hits[0]["title"], "Staff cars", "{r}");
}
