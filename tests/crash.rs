//! Crash safety with real process kills: `docent serve` is killed with
//! SIGKILL at different points of a running ingest, then restarted on the
//! same data directory. Every job resumes to `ready` (or fails cleanly), no
//! document is half-visible, and SQL and both indexes agree afterwards.

mod common;

use common::Server;
use serde_json::Value;
use std::time::Duration;

fn document(round: usize, i: usize) -> String {
    let mut text = format!("# Report {round}-{i}\n\n");
    for p in 0..40 {
        text.push_str(&format!(
            "Paragraph {p} of report {round}-{i} mentions marker zq{round}x{i}word and discusses \
             ward staffing, medication rounds, infection audits and discharge planning in detail.\n\n"
        ));
    }
    text
}

async fn upload(server: &Server, name: &str, body: String) -> String {
    let part = reqwest::multipart::Part::bytes(body.into_bytes())
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
    let v: Value = r.json().await.expect("json");
    v["id"].as_str().expect("id").to_owned()
}

async fn status(server: &Server, id: &str) -> String {
    let v = server.get_json(&format!("/v1/documents/{id}")).await;
    v["status"].as_str().unwrap_or("missing").to_owned()
}

async fn bm25_docs(server: &Server, query: &str) -> Vec<String> {
    let v: Value = server
        .client
        .post(server.url("/v1/search"))
        .json(&serde_json::json!({"query": query, "k": 50, "mode": "bm25"}))
        .send()
        .await
        .expect("search")
        .json()
        .await
        .expect("json");
    v["hits"]
        .as_array()
        .map(|hs| {
            hs.iter()
                .filter_map(|h| h["document_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn kill_dash_nine_during_ingest_then_resume() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(data.path(), &[]).await;
    let mut docs: Vec<(usize, usize, String)> = Vec::new();
    for (round, delay_ms) in [50u64, 400, 1200].into_iter().enumerate() {
        for i in 0..4 {
            let id = upload(&server, &format!("r{round}-{i}.md"), document(round, i)).await;
            docs.push((round, i, id));
        }
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        // Nothing is half-visible while jobs run: a hit's document is ready.
        for (r, i, id) in &docs {
            let found = bm25_docs(&server, &format!("zq{r}x{i}word")).await;
            if found.contains(id) {
                assert_eq!(status(&server, id).await, "ready");
            }
        }
        server = server.restart(&[]).await;
    }

    // After the last restart every job reaches a terminal state.
    let mut states = Vec::new();
    for (_, _, id) in &docs {
        let mut s = String::new();
        for _ in 0..1200 {
            s = status(&server, id).await;
            if s == "ready" || s == "failed" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        states.push(s);
    }
    println!("states after kills: {states:?}");
    for ((r, i, id), s) in docs.iter().zip(&states) {
        assert!(s == "ready" || s == "failed", "{id} stuck in {s}");
        let found = bm25_docs(&server, &format!("zq{r}x{i}word")).await;
        if s == "ready" {
            assert!(found.contains(id), "{id} ready but not found");
            assert!(
                found.iter().all(|d| d == id),
                "{id}: hits from other documents {found:?}"
            );
        } else {
            assert!(found.is_empty(), "failed document {id} is searchable");
        }
    }
    assert!(states.iter().any(|s| s == "ready"));
    drop(server);

    let out = common::docent(data.path(), &["check"]);
    assert!(
        out.status.success(),
        "check failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}
