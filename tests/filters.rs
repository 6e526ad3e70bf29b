//! Search filters through the real HTTP API: tags, dates, document ids and
//! collections are pushed into both index legs, so a document outside the
//! filter never appears, even when it is the best match. Runs the real
//! `docent serve` on port 0 with the real models and stores.

mod common;

use common::Server;
use serde_json::{json, Value};
use std::time::Duration;

async fn upload(server: &Server, name: &str, text: &str, fields: &[(&str, &str)]) -> reqwest::Response {
    let part = reqwest::multipart::Part::bytes(text.as_bytes().to_vec())
        .file_name(name.to_owned())
        .mime_str("text/markdown")
        .expect("mime");
    let mut form = reqwest::multipart::Form::new().part("file", part);
    for (k, v) in fields {
        form = form.text((*k).to_owned(), (*v).to_owned());
    }
    server
        .client
        .post(server.url("/v1/documents"))
        .multipart(form)
        .send()
        .await
        .expect("upload request")
}

async fn ingest(server: &Server, name: &str, text: &str, fields: &[(&str, &str)]) -> String {
    let r = upload(server, name, text, fields).await;
    assert_eq!(r.status(), 202, "upload {name}");
    let body: Value = r.json().await.expect("json");
    let job = body["job_id"].as_str().expect("job id").to_owned();
    for _ in 0..600 {
        let j = server.get_json(&format!("/v1/jobs/{job}")).await;
        match j["status"].as_str() {
            Some("ready") => return body["id"].as_str().expect("id").to_owned(),
            Some("failed") => panic!("ingest failed: {j}"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("{name} did not finish");
}

async fn search(server: &Server, body: Value) -> (u16, Value) {
    let r = server
        .client
        .post(server.url("/v1/search"))
        .json(&body)
        .send()
        .await
        .expect("search request");
    let status = r.status().as_u16();
    (status, r.json().await.expect("search json"))
}

fn doc_ids(v: &Value) -> Vec<String> {
    let mut ids: Vec<String> = v["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .map(|h| h["document_id"].as_str().expect("document_id").to_owned())
        .collect();
    ids.dedup();
    ids
}

#[tokio::test]
async fn filters_are_pushed_into_both_legs() {
    let data = tempfile::tempdir().expect("tempdir");
    let server = Server::start(data.path(), &[]).await;

    // The untagged, newest document matches the query best by far.
    let policy = ingest(
        &server,
        "policy.md",
        "# Travel policy\n\nStaff book train travel through the travel desk.",
        &[("tags", "policy, travel"), ("date", "2023-05-01")],
    )
    .await;
    let memo = ingest(
        &server,
        "memo.md",
        "# Memo\n\nTrain travel reimbursements now take two weeks.",
        &[("tags", "memo"), ("date", "2024-02-10T09:00:00Z")],
    )
    .await;
    let best = ingest(
        &server,
        "train.md",
        "# Train travel\n\nTrain travel, train travel, train travel: everything about train travel.",
        &[("date", "2025-01-01")],
    )
    .await;
    let other = ingest(
        &server,
        "elsewhere.md",
        "# Train travel elsewhere\n\nTrain travel in the other collection.",
        &[("collection", "archive")],
    )
    .await;

    let docs: Value = server.get_json("/v1/documents").await;
    let listed = docs["documents"].as_array().expect("list");
    let p = listed
        .iter()
        .find(|d| d["id"] == policy.as_str())
        .expect("policy listed");
    assert_eq!(p["tags"], json!(["policy", "travel"]));
    assert_eq!(p["date"], "2023-05-01");

    for mode in ["bm25", "dense", "hybrid"] {
        let q = |extra: Value| {
            let mut b = json!({"query": "train travel", "k": 10, "mode": mode});
            for (k, v) in extra.as_object().expect("object") {
                b[k] = v.clone();
            }
            b
        };
        let (s, all) = search(&server, q(json!({}))).await;
        assert_eq!(s, 200);
        let all = doc_ids(&all);
        assert!(
            all.contains(&best),
            "{mode}: unfiltered, the best match is found: {all:?}"
        );

        let (_, r) = search(&server, q(json!({"tags": ["policy"]}))).await;
        assert_eq!(doc_ids(&r), vec![policy.clone()], "{mode}: tag filter");
        let (_, r) = search(&server, q(json!({"tags": ["policy", "memo"]}))).await;
        let got = doc_ids(&r);
        assert_eq!(got.len(), 2, "{mode}: any-of tags: {got:?}");
        assert!(!got.contains(&best));

        let (_, r) = search(&server, q(json!({"date_from": "2024-01-01", "date_to": "2024-12-31"}))).await;
        assert_eq!(doc_ids(&r), vec![memo.clone()], "{mode}: date range");
        // A plain day as the upper bound includes that whole day.
        let (_, r) = search(&server, q(json!({"date_to": "2024-02-10"}))).await;
        let got = doc_ids(&r);
        assert!(
            got.contains(&memo) && got.contains(&policy) && !got.contains(&best),
            "{mode}: {got:?}"
        );

        let (_, r) = search(&server, q(json!({"document_ids": [memo]}))).await;
        assert_eq!(doc_ids(&r), vec![memo.clone()], "{mode}: document ids");

        let (_, r) = search(&server, q(json!({"collection": "archive"}))).await;
        assert_eq!(doc_ids(&r), vec![other.clone()], "{mode}: collection");
        let (s, r) = search(&server, q(json!({"collection": "no-such-collection"}))).await;
        assert_eq!(s, 200);
        assert!(doc_ids(&r).is_empty(), "{mode}: unknown collection is empty");
    }

    // Bad filter values are client errors with the stable error shape.
    let (s, r) = search(&server, json!({"query": "train", "date_from": "last tuesday"})).await;
    assert_eq!(s, 400);
    assert_eq!(r["error"]["code"], "bad_request", "{r}");
    let r = upload(&server, "bad.md", "# Bad\n\nBad date.", &[("date", "31/12/2024")]).await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "bad_metadata", "{body}");
    // Nothing was stored for the refused upload.
    let docs: Value = server.get_json("/v1/documents").await;
    assert_eq!(docs["documents"].as_array().expect("list").len(), 4, "{docs}");
}
