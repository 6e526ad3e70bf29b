//! End-to-end: the real `docent serve` process on port 0, with the real
//! models, SQLite, qdrant-edge and tantivy in a fresh data directory.

mod common;

use common::{make_pdf, Server, CLINIC_PAGE1, CLINIC_PAGE2, CLINIC_PAGE3};
use serde_json::Value;

const HANDBOOK: &str = "# Campus handbook\n\n\
## Cafeteria\n\nThe cafeteria serves quibblewort soup every Friday at noon.\n\n\
## Vehicles\n\nEmployees may leave their cars in the underground garage beneath building C.\n";

fn assert_error(body: &Value, code: &str) {
    assert_eq!(body["error"]["code"], code, "body: {body}");
    assert!(
        body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "body: {body}"
    );
}

#[tokio::test]
async fn upload_ask_cite_delete_restart() {
    let data = tempfile::tempdir().expect("tempdir");
    let server = Server::start(data.path(), &[]).await;

    // Health.
    let r = server.client.get(server.url("/healthz")).send().await.expect("healthz");
    assert_eq!(r.status(), 200);
    let r = server.client.get(server.url("/readyz")).send().await.expect("readyz");
    assert_eq!(r.status(), 200);

    // The web chat is served by the binary itself.
    let page = server.client.get(server.url("/")).send().await.expect("index");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(html.contains("/app.js") && !html.contains("http://") && !html.contains("https://"));

    // Upload a 3-page PDF and a Markdown file.
    let pdf = make_pdf(&[CLINIC_PAGE1, CLINIC_PAGE2, CLINIC_PAGE3]);
    let r = server.upload("clinic-guide.pdf", pdf.clone(), "application/pdf").await;
    assert_eq!(r.status(), 202);
    let up: Value = r.json().await.expect("json");
    let pdf_id = up["id"].as_str().expect("id").to_owned();
    let job = server.wait_ready(up["job_id"].as_str().expect("job id")).await;
    assert_eq!(job["document_id"], pdf_id.as_str());
    assert_eq!(job["progress"], 1.0);

    let r = server
        .upload("handbook.md", HANDBOOK.as_bytes().to_vec(), "text/markdown")
        .await;
    assert_eq!(r.status(), 202);
    let up: Value = r.json().await.expect("json");
    let md_id = up["id"].as_str().expect("id").to_owned();
    // Live job progress over SSE, ending in the terminal state.
    let events = server
        .client
        .get(server.url(&format!("/v1/jobs/{}/events", up["job_id"].as_str().expect("job id"))))
        .send()
        .await
        .expect("job events");
    assert_eq!(events.status(), 200);
    let events = common::read_sse(events).await;
    let order = ["queued", "extracting", "embedding", "indexing", "ready"];
    let seen: Vec<usize> = events
        .iter()
        .map(|(e, d)| {
            assert_eq!(e, "progress");
            order.iter().position(|s| d["status"] == *s).expect("known status")
        })
        .collect();
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "stages went backwards: {events:?}"
    );
    assert_eq!(
        events.last().map(|(_, d)| d["status"].clone()),
        Some(Value::from("ready"))
    );
    assert_eq!(
        events.last().map(|(_, d)| d["progress"].clone()),
        Some(Value::from(1.0))
    );

    // Identical bytes again: no new document.
    let r = server.upload("copy.pdf", pdf.clone(), "application/pdf").await;
    assert_eq!(r.status(), 200);
    let dup: Value = r.json().await.expect("json");
    assert_eq!(dup["duplicate"], true);
    assert_eq!(dup["id"], pdf_id.as_str());

    let doc = server.get_json(&format!("/v1/documents/{pdf_id}")).await;
    assert_eq!(doc["pages"], 3);
    assert_eq!(doc["status"], "ready");
    assert_eq!(doc["access"], serde_json::json!(["everyone"]));
    let list = server.get_json("/v1/documents").await;
    assert_eq!(list["documents"].as_array().map(Vec::len), Some(2));

    // Exact rare keyword: found by the BM25 leg.
    let hits = server.search("quibblewort", "hybrid").await;
    assert!(!hits.is_empty());
    assert_eq!(hits[0]["document_id"], md_id.as_str());
    assert!(hits[0]["text"].as_str().is_some_and(|t| t.contains("quibblewort")));
    assert_eq!(hits[0]["bm25_rank"], 1);
    assert_eq!(
        hits[0]["heading_path"],
        serde_json::json!(["Campus handbook", "Cafeteria"])
    );

    // Paraphrase with no shared keyword: only the dense leg can find it.
    let q = "where should staff members put automobiles";
    let hits = server.search(q, "hybrid").await;
    let garage = hits
        .iter()
        .find(|h| h["text"].as_str().is_some_and(|t| t.contains("underground garage")))
        .unwrap_or_else(|| panic!("paraphrase not found: {hits:?}"));
    assert!(garage["dense_rank"].is_number(), "{garage}");
    assert!(garage["bm25_rank"].is_null(), "{garage}");
    let dense = server.search(q, "dense").await;
    assert!(
        dense[0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("underground garage")),
        "{dense:?}"
    );
    assert!(server
        .search(q, "bm25")
        .await
        .iter()
        .all(|h| !h["text"].as_str().unwrap_or("").contains("garage")));

    // Ask: the answer is only on page 2 of the PDF.
    let resp = server
        .client
        .post(server.url("/v1/chat"))
        .json(&serde_json::json!({"question": "How long is the quarantine period for Zorblax fever?"}))
        .send()
        .await
        .expect("chat");
    assert_eq!(resp.status(), 200);
    assert!(resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream")));
    let events = common::read_sse(resp).await;
    let tokens: Vec<&Value> = events.iter().filter(|(e, _)| e == "token").map(|(_, d)| d).collect();
    assert!(tokens.len() > 1, "expected a streamed answer, got {events:?}");
    let answer: String = tokens.iter().filter_map(|d| d["text"].as_str()).collect();
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    let ci = names.iter().position(|n| *n == "citations").expect("citations event");
    assert!(
        names[..ci].iter().all(|n| *n == "token"),
        "tokens come before citations: {names:?}"
    );
    assert_eq!(names.last(), Some(&"done"));
    let citations = events[ci].1["citations"].as_array().cloned().unwrap_or_default();
    eprintln!("answer: {answer}\ncitations: {citations:?}");
    let cited = citations
        .iter()
        .find(|c| c["document_id"] == pdf_id.as_str() && c["page"] == 2)
        .unwrap_or_else(|| panic!("no citation of the PDF's page 2 in {citations:?}; answer: {answer}"));
    assert!(cited["passage"].as_str().is_some_and(|p| p.contains("eleven days")));
    assert_eq!(cited["title"], "clinic-guide.pdf");
    assert!(citations
        .iter()
        .all(|c| c["page"] == 2 || c["document_id"] != pdf_id.as_str()));

    // The exchange is stored as a conversation of this user.
    let conv_id = events.last().map(|(_, d)| d["conversation_id"].clone()).expect("done");
    let conv_id = conv_id.as_str().expect("conversation id").to_owned();
    let conv = server.get_json(&format!("/v1/conversations/{conv_id}")).await;
    let msgs = conv["messages"].as_array().expect("messages");
    assert_eq!(msgs.len(), 2, "{conv}");
    assert_eq!(msgs[0]["role"], "user");
    assert_eq!(msgs[1]["role"], "assistant");
    assert!(
        msgs[1]["citations"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["page"] == 2)),
        "{conv}"
    );
    let list = server.get_json("/v1/conversations").await;
    assert!(list["conversations"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["id"] == conv_id.as_str())));
    let r = server
        .client
        .get(server.url("/v1/conversations/00000000-0000-0000-0000-000000000000"))
        .send()
        .await
        .expect("conversation");
    assert_eq!(r.status(), 404);

    // OpenAI-compatible surface: the same retrieval and checked citations.
    let q = "How long is the quarantine period for Zorblax fever?";
    let r: Value = server
        .client
        .post(server.url("/v1/chat/completions"))
        .json(&serde_json::json!({"model": "docent", "messages": [{"role": "user", "content": q}]}))
        .send()
        .await
        .expect("completions")
        .json()
        .await
        .expect("json");
    assert_eq!(r["object"], "chat.completion");
    let content = r["choices"][0]["message"]["content"].as_str().expect("content");
    assert!(content.contains("[1]") || content.contains("[2]"), "{content}");
    assert!(
        r["citations"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["document_id"] == pdf_id.as_str() && c["page"] == 2)),
        "{r}"
    );
    let resp = server
        .client
        .post(server.url("/v1/chat/completions"))
        .json(&serde_json::json!({"model": "docent", "stream": true, "messages": [{"role": "user", "content": q}]}))
        .send()
        .await
        .expect("stream");
    let body = resp.text().await.expect("body");
    let chunks: Vec<&str> = body.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert_eq!(chunks.last(), Some(&"[DONE]"), "{body}");
    let parsed: Vec<Value> = chunks[..chunks.len() - 1]
        .iter()
        .map(|c| serde_json::from_str(c).expect("chunk json"))
        .collect();
    assert!(parsed.len() > 2, "{body}");
    assert!(parsed.iter().all(|c| c["object"] == "chat.completion.chunk"));
    let last = parsed.last().expect("last chunk");
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert!(last["citations"].as_array().is_some_and(|c| !c.is_empty()), "{last}");
    let models = server.get_json("/v1/models").await;
    assert_eq!(models["object"], "list");
    // Chat, embedding and the cross-encoder that judges evidence, each with
    // its provenance for an SBOM.
    let served = models["data"].as_array().expect("models");
    assert_eq!(served.len(), 3, "{models}");
    let chat = &served[0]["docent"];
    assert_eq!(chat["role"], "chat");
    assert_eq!(chat["architecture"], "llama");
    assert_eq!(chat["quantization"], "Q4_1");
    assert!(
        chat["sha256"]
            .as_str()
            .is_some_and(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit())),
        "{chat}"
    );
    assert!(chat["size_bytes"].as_u64().is_some_and(|n| n > 1_000_000), "{chat}");
    assert!(chat["license"].as_str().is_some_and(|l| !l.is_empty()), "{chat}");
    for (m, role) in served[1..].iter().zip(["embedding", "reranker"]) {
        assert_eq!(m["docent"]["role"], role, "{m}");
        assert!(m["docent"]["sha256"].as_str().is_some_and(|h| h.len() == 64), "{m}");
    }
    let emb: Value = server
        .client
        .post(server.url("/v1/embeddings"))
        .json(&serde_json::json!({"model": "x", "input": ["alpha", "beta"]}))
        .send()
        .await
        .expect("embeddings")
        .json()
        .await
        .expect("json");
    assert_eq!(emb["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(emb["data"][1]["index"], 1);
    assert_eq!(emb["data"][0]["embedding"].as_array().map(Vec::len), Some(384));

    // Prometheus metrics after the chats.
    let metrics = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for series in [
        "docent_http_request_duration_seconds_bucket{method=\"POST\",route=\"/v1/chat\",status=\"200\"",
        "docent_retrieval_duration_seconds_count{endpoint=\"chat\"}",
        "docent_generation_duration_seconds_count{endpoint=\"chat\"} 1",
        "docent_time_to_first_token_seconds_count{endpoint=\"completions\"} 2",
        "docent_ingest_queue_depth 0",
        "docent_ingest_stage_duration_seconds_count{stage=\"extract\"}",
        "docent_ingest_stage_duration_seconds_count{stage=\"embed\"}",
        "docent_ingest_stage_duration_seconds_count{stage=\"index\"}",
        "docent_ingest_documents_total{outcome=\"ready\"}",
        "docent_change_log_lag",
        "docent_change_log_applied_seq",
    ] {
        assert!(metrics.contains(series), "missing {series} in\n{metrics}");
    }
    let tokens: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("docent_tokens_generated_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("tokens counter");
    assert!(tokens > 0);

    // No evidence: the service says so and calls no model.
    let resp = server
        .client
        .post(server.url("/v1/chat"))
        .json(&serde_json::json!({"question": "What is the boiling point of tungsten in kelvin?"}))
        .send()
        .await
        .expect("chat");
    let events = common::read_sse(resp).await;
    let cit = events.iter().find(|(e, _)| e == "citations").expect("citations event");
    assert_eq!(cit.1["abstained"], true, "{events:?}");
    assert_eq!(cit.1["citations"], serde_json::json!([]));
    let done = events.iter().find(|(e, _)| e == "done").expect("done event");
    assert_eq!(done.1["prompt_tokens"], 0, "a model was called: {events:?}");
    let text: String = events
        .iter()
        .filter(|(e, _)| e == "token")
        .filter_map(|(_, d)| d["text"].as_str())
        .collect();
    assert!(text.contains("do not cover"), "{text}");

    // Bad input: clear JSON errors with the right status.
    let r = server
        .upload("fake.pdf", b"just text".to_vec(), "application/pdf")
        .await;
    assert_eq!(r.status(), 415);
    assert_error(&r.json().await.expect("json"), "unsupported_media_type");
    let r = server.upload("empty.txt", Vec::new(), "text/plain").await;
    assert_eq!(r.status(), 400);
    assert_error(&r.json().await.expect("json"), "empty");
    let r = server.upload("big.txt", vec![b'a'; 2 << 20], "text/plain").await;
    assert_eq!(r.status(), 413);
    assert_error(&r.json().await.expect("json"), "payload_too_large");
    let r = server
        .client
        .get(server.url("/v1/documents/nope"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 400);
    assert_error(&r.json().await.expect("json"), "bad_request");
    let r = server
        .client
        .get(server.url("/v1/documents/00000000-0000-0000-0000-000000000000"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 404);
    assert_error(&r.json().await.expect("json"), "not_found");
    let r = server
        .client
        .post(server.url("/v1/search"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("search");
    assert_eq!(r.status(), 400);
    assert_error(&r.json().await.expect("json"), "bad_request");

    // Delete the PDF: gone from every leg.
    let r = server
        .client
        .delete(server.url(&format!("/v1/documents/{pdf_id}")))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 204);
    for mode in ["hybrid", "bm25", "dense"] {
        let hits = server.search("Zorblax fever quarantine eleven days", mode).await;
        assert!(
            hits.iter().all(|h| h["document_id"] != pdf_id.as_str()),
            "{mode}: {hits:?}"
        );
    }
    let r = server
        .client
        .get(server.url(&format!("/v1/documents/{pdf_id}")))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 404);

    // Restart on the same data directory: the Markdown file is still there.
    let server = server.restart(&[]).await;
    let hits = server.search("quibblewort", "hybrid").await;
    assert_eq!(
        hits.first().map(|h| h["document_id"].clone()),
        Some(Value::from(md_id.as_str()))
    );
    let hits = server.search("Zorblax fever quarantine eleven days", "hybrid").await;
    assert!(hits.iter().all(|h| h["document_id"] != pdf_id.as_str()));
    drop(server);

    // The indexes agree with SQL after all of it.
    let out = common::docent(data.path(), &["check"]);
    assert!(
        out.status.success(),
        "check failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("check json");
    assert_eq!(report["sql"], report["vectors"]);
    assert_eq!(report["sql"], report["keywords"]);
    assert!(report["sql"].as_u64().is_some_and(|n| n >= 2));

    // Rebuilding both indexes from SQL gives the same ids back.
    let out = common::docent(data.path(), &["reindex"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "reindex failed: {stdout}");
    assert!(
        stdout.contains(&format!("reindexed {} chunks", report["sql"])),
        "{stdout}"
    );
    let server = Server::start(data.path(), &[]).await;
    let hits = server.search("quibblewort", "bm25").await;
    assert_eq!(
        hits.first().map(|h| h["document_id"].clone()),
        Some(Value::from(md_id.as_str()))
    );
    drop(server);

    // The keyword index lost (as when a new keyword schema drops the old
    // one): repair writes it again from SQL text, embedding nothing.
    std::fs::remove_dir_all(data.path().join("bm25")).expect("remove the keyword index");
    let out = common::docent(data.path(), &["check", "--repair"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "check --repair failed: {stdout}");
    let repair: Value = serde_json::from_str(stdout.lines().next().unwrap_or_default()).expect("repair json");
    assert_eq!(repair["reembedded"], 0, "{repair}");
    assert_eq!(repair["keywords_rewritten"], report["sql"], "{repair}");
    let server = Server::start(data.path(), &[]).await;
    let hits = server.search("quibblewort", "bm25").await;
    assert_eq!(
        hits.first().map(|h| h["document_id"].clone()),
        Some(Value::from(md_id.as_str()))
    );
}
