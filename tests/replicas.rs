//! Two `docent serve` processes on one PostgreSQL database: the scale-out
//! path. Each replica keeps its own tantivy index, following the SQL change
//! log; jobs are claimed from SQL, so a replica without workers hands its
//! uploads to the other. The vector store is the Qdrant server in
//! `QDRANT_URL` when set (one store for both); otherwise each replica's
//! embedded qdrant-edge follows the change log as well.
//!
//! Replica "api" runs no ingest workers; replica "ingest" runs one.

mod common;

use common::{make_pdf, PgDb, Server, CLINIC_PAGE1, CLINIC_PAGE2, CLINIC_PAGE3};
use serde_json::Value;
use std::time::{Duration, Instant};

/// How long a change may take to reach the other replica: the follower
/// polls every 200 ms here; the bound only stops a broken test.
const WITHIN: Duration = Duration::from_secs(30);

async fn start(db: &PgDb, data: &std::path::Path, blobs: &std::path::Path, name: &str, workers: &str) -> Server {
    let blobs = blobs.to_str().expect("utf-8 path");
    let qdrant_collection = format!("replicas_{}", db.name);
    let qdrant = std::env::var("QDRANT_URL").ok();
    let mut env = vec![
        ("DOCENT__STORAGE__DATABASE_URL", db.url.as_str()),
        ("DOCENT__STORAGE__BLOB_DIR", blobs),
        ("DOCENT__STORAGE__FOLLOW_INTERVAL_MS", "200"),
        ("DOCENT__INGEST__POLL_MS", "200"),
        ("DOCENT__INGEST__WORKERS", workers),
        ("DOCENT__SERVER__REPLICA_ID", name),
    ];
    if let Some(url) = qdrant.as_deref() {
        env.push(("DOCENT__STORAGE__QDRANT_URL", url));
        env.push(("DOCENT__STORAGE__QDRANT_COLLECTION", qdrant_collection.as_str()));
    }
    Server::start(data, &env).await
}

async fn upload(server: &Server, name: &str, bytes: Vec<u8>) -> (String, String) {
    let r = server.upload(name, bytes, "application/pdf").await;
    assert_eq!(r.status(), 202, "upload of {name}");
    let body: Value = r.json().await.expect("upload json");
    (
        body["id"].as_str().expect("id").to_owned(),
        body["job_id"].as_str().expect("job_id").to_owned(),
    )
}

/// `mode` search on `server` as the caller of `client`.
async fn search_as(server: &Server, client: &reqwest::Client, query: &str, mode: &str) -> Vec<Value> {
    let r: Value = client
        .post(server.url("/v1/search"))
        .json(&serde_json::json!({"query": query, "k": 10, "mode": mode}))
        .send()
        .await
        .expect("search")
        .json()
        .await
        .expect("search json");
    r["hits"].as_array().cloned().unwrap_or_default()
}

/// Polls `mode` search on `server` until `doc` is (or is not) among the hits.
async fn wait_for(server: &Server, query: &str, mode: &str, doc: &str, present: bool) -> Duration {
    wait_for_as(server, &server.client, query, mode, doc, present).await
}

async fn wait_for_as(
    server: &Server,
    client: &reqwest::Client,
    query: &str,
    mode: &str,
    doc: &str,
    present: bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let hits = search_as(server, client, query, mode).await;
        let found = hits.iter().any(|h| h["document_id"] == doc);
        if found == present {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < WITHIN,
            "{mode} search on {} still {} {doc} after {WITHIN:?}: {hits:?}",
            server.base,
            if present { "misses" } else { "returns" }
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn keyword_docs(server: &Server) -> u64 {
    let ready = server.get_json("/readyz").await;
    assert_eq!(ready["status"], "ready", "{ready}");
    ready["checks"]["keyword_index"]["docs"]
        .as_u64()
        .expect("keyword count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_postgres_and_follow_the_change_log() {
    let db = PgDb::create().await;
    let dirs = tempfile::tempdir().expect("tempdir");
    let blobs = dirs.path().join("blobs");
    let api = start(&db, &dirs.path().join("api"), &blobs, "api", "0").await;
    let ingest = start(&db, &dirs.path().join("ingest"), &blobs, "ingest", "1").await;
    let shared = std::env::var("QDRANT_URL").is_ok();
    println!(
        "replicas: api {} and ingest {} on {}; shared Qdrant server: {shared}",
        api.base, ingest.base, db.name
    );

    // 1. Uploaded through the API replica, which runs no workers: the
    //    ingest replica claims the job from SQL and runs it.
    let guide = make_pdf(&[CLINIC_PAGE1, CLINIC_PAGE2, CLINIC_PAGE3]);
    let (guide_id, job) = upload(&api, "clinic-guide.pdf", guide).await;
    let done = api.wait_ready(&job).await;
    assert_eq!(done["worker"], "ingest", "the other replica ran the job: {done}");
    let q = "quarantine period Zorblax fever";
    let t = wait_for(&ingest, q, "bm25", &guide_id, true).await;
    println!("uploaded through api, found through ingest (bm25) after {t:?}");
    // The API replica indexed nothing itself: its tantivy (and, without a
    // shared Qdrant, its vector index) learn of it from the change log.
    let t = wait_for(&api, q, "bm25", &guide_id, true).await;
    println!("found through api (bm25, own tantivy following the log) after {t:?}");
    let t = wait_for(&api, q, "dense", &guide_id, true).await;
    println!("found through api (dense) after {t:?}");
    let hits = api.search(q, "hybrid").await;
    assert_eq!(hits[0]["document_id"], guide_id.as_str(), "{hits:?}");
    assert_eq!(hits[0]["page"], 2, "the cited page survives replication: {hits:?}");

    // 2. Uploaded through the ingest replica: found through the API replica.
    let memo = make_pdf(&[&[
        "Pharmacy memo.",
        "The night pharmacist keeps the narcotics cabinet key on the blue lanyard.",
    ]]);
    let (memo_id, job) = upload(&ingest, "pharmacy-memo.pdf", memo).await;
    ingest.wait_ready(&job).await;
    let mq = "narcotics cabinet key blue lanyard";
    let t = wait_for(&api, mq, "bm25", &memo_id, true).await;
    println!("uploaded through ingest, found through api after {t:?}");
    assert_eq!(keyword_docs(&api).await, keyword_docs(&ingest).await);
    let before = keyword_docs(&ingest).await;

    // 2b. An admin restricts the memo to "pharmacy" through the API
    //     replica. There, both legs answer the new labels as soon as the
    //     call returns. The ingest replica's own indexes follow the log: the
    //     pharmacist finds the memo there by BM25 and by dense search only
    //     once its tantivy documents and vector payloads carry the label.
    let out = common::command_with(
        &dirs.path().join("api"),
        &[("DOCENT__STORAGE__DATABASE_URL", db.url.as_str())],
    )
    .args(["keys", "create", "--user", "pharmacist", "--groups", "pharmacy"])
    .output()
    .expect("keys create");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key: Value = serde_json::from_slice(&out.stdout).expect("key json");
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {}", key["key"].as_str().expect("key")))
            .expect("header"),
    );
    let pharmacist = reqwest::Client::builder().default_headers(h).build().expect("client");
    let relabel = |labels: &'static [&'static str]| {
        let url = api.url(&format!("/v1/documents/{memo_id}"));
        let c = api.client.clone();
        async move {
            let r = c
                .patch(url)
                .json(&serde_json::json!({ "access": labels }))
                .send()
                .await
                .expect("patch");
            assert_eq!(r.status(), 200, "patch: {}", r.text().await.unwrap_or_default());
        }
    };
    relabel(&["pharmacy"]).await;
    for mode in ["bm25", "dense"] {
        let hits = api.search(mq, mode).await;
        assert!(
            !hits.iter().any(|h| h["document_id"] == memo_id.as_str()),
            "{mode}: {hits:?}"
        );
        let hits = search_as(&api, &pharmacist, mq, mode).await;
        assert_eq!(
            hits[0]["document_id"],
            memo_id.as_str(),
            "{mode} at once on api: {hits:?}"
        );
    }
    for mode in ["bm25", "dense"] {
        let t = wait_for_as(&ingest, &pharmacist, mq, mode, &memo_id, true).await;
        println!("relabelled through api, the ingest replica's {mode} index follows after {t:?}");
        wait_for(&ingest, mq, mode, &memo_id, false).await;
    }
    relabel(&["everyone"]).await;

    // 3. Deleted through the API replica: gone from the ingest replica's
    //    answers at once (SQL is the truth) and from its own index soon.
    let r = api
        .client
        .delete(api.url(&format!("/v1/documents/{guide_id}")))
        .send()
        .await
        .expect("delete");
    assert!(r.status().is_success(), "delete: {}", r.status());
    for mode in ["bm25", "dense", "hybrid"] {
        let t = wait_for(&ingest, q, mode, &guide_id, false).await;
        println!("deleted through api, gone from ingest ({mode}) after {t:?}");
    }
    let started = Instant::now();
    while keyword_docs(&ingest).await != before - 3 {
        assert!(
            started.elapsed() < WITHIN,
            "the ingest replica's tantivy still holds the deleted chunks"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "the ingest replica's tantivy dropped the deleted document's 3 chunks after {:?}",
        started.elapsed()
    );
    let r = ingest
        .client
        .get(ingest.url(&format!("/v1/documents/{guide_id}")))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 404);
    // The memo is untouched on both.
    wait_for(&ingest, mq, "hybrid", &memo_id, true).await;
    wait_for(&api, mq, "hybrid", &memo_id, true).await;

    // Both replicas report how far they follow the log, and catch up.
    for s in [&api, &ingest] {
        let started = Instant::now();
        loop {
            let ready = s.get_json("/readyz").await;
            let log = &ready["checks"]["change_log"];
            assert!(log["last"].as_i64().is_some_and(|n| n >= 3), "{ready}");
            if log["lag"] == 0 {
                break;
            }
            assert!(started.elapsed() < WITHIN, "{} does not catch up: {ready}", s.base);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let applied = s.metric("docent_change_log_applied_seq").await;
        assert!(applied.is_some_and(|a| a >= 3.0), "{applied:?}");
    }
    drop(api);
    drop(ingest);
    db.drop_db().await;
}
