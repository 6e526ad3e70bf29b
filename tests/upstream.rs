//! The OpenAI-compatible upstream backend end to end: the real `docent
//! serve` (port 0, real embedder, SQLite, both indexes) with
//! `generation.backend = "openai"` against a fake upstream this test runs on
//! 127.0.0.1. The fake records what it receives and streams a fixed answer
//! in OpenAI's SSE format, citing the source that holds the fact.

mod common;

use common::{make_pdf, Server, CLINIC_PAGE1, CLINIC_PAGE2, CLINIC_PAGE3};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const QUESTION: &str = "How long is the quarantine period for Zorblax fever?";
/// The sentence of page 2 the fake upstream's answer repeats.
const FACT: &str = "The quarantine period for Zorblax fever is eleven days.";
/// Usage the fake reports in its final chunk.
const PROMPT_TOKENS: u64 = 321;

/// What the fake upstream received.
#[derive(Debug, Clone)]
struct Recorded {
    request_line: String,
    /// Header lines, lowercased.
    headers: String,
    body: Value,
}

struct FakeUpstream {
    base: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    /// Answer HTTP 500 instead of a stream.
    fail: Arc<AtomicBool>,
}

impl FakeUpstream {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake upstream");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let fail = Arc::new(AtomicBool::new(false));
        let (reqs, fl) = (Arc::clone(&requests), Arc::clone(&fail));
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve_one(sock, Arc::clone(&reqs), fl.load(Ordering::SeqCst)));
            }
        });
        Self { base, requests, fail }
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("lock").clone()
    }
}

/// The `n` of the source whose text holds `needle` in a docent prompt,
/// whether sources are labelled `[n] title (page p)` or
/// `<source id="n" ...>`.
fn source_number(user: &str, needle: &str) -> Option<usize> {
    let before = &user[..user.find(needle)?];
    let digits = |s: &str| -> Option<usize> {
        let d: String = s.chars().take_while(char::is_ascii_digit).collect();
        d.parse().ok()
    };
    if let Some(i) = before.rfind("<source id=\"") {
        return digits(&before[i + "<source id=\"".len()..]);
    }
    let i = before
        .rfind("\n[")
        .map(|i| i + 2)
        .or_else(|| before.starts_with('[').then_some(1))?;
    digits(&before[i..])
}

/// The answer the fake streams, in pieces: the fact cited to source `n`; a
/// claim no source supports, also cited to `n`; and a supported sentence
/// given without a citation.
fn answer_tokens(n: usize) -> Vec<String> {
    vec![
        "The quarantine period".to_owned(),
        " for Zorblax fever".to_owned(),
        " is eleven days".to_owned(),
        format!(" [{n}]."),
        " Penguins in Antarctica sing opera".to_owned(),
        format!(" [{n}]."),
        " Patients with Zorblax fever stay in the east isolation wing.".to_owned(),
    ]
}

async fn serve_one(mut sock: tokio::net::TcpStream, requests: Arc<Mutex<Vec<Recorded>>>, fail: bool) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let (head_end, len) = loop {
        let n = sock.read(&mut buf).await.expect("read request");
        if n == 0 {
            return;
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..i]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (i + 4, len);
        }
    };
    while raw.len() < head_end + len {
        let n = sock.read(&mut buf).await.expect("read body");
        assert!(n > 0, "docent closed the request early");
        raw.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let (request_line, headers) = head.split_once("\r\n").unwrap_or((head.as_str(), ""));
    let body: Value = serde_json::from_slice(&raw[head_end..head_end + len]).expect("request body is JSON");
    let user = body["messages"][1]["content"].as_str().unwrap_or_default().to_owned();
    requests.lock().expect("lock").push(Recorded {
        request_line: request_line.to_owned(),
        headers: headers.to_ascii_lowercase(),
        body,
    });

    if fail {
        let body = r#"{"error":{"message":"upstream overloaded","type":"server_error","code":500}}"#;
        let resp = format!(
            "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = sock.write_all(resp.as_bytes()).await;
        let _ = sock.shutdown().await;
        return;
    }
    let n = source_number(&user, FACT).unwrap_or(1);
    let mut events = vec![format!(
        "data: {}\n\n",
        serde_json::json!({"id": "c1", "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": null}]})
    )];
    let tokens = answer_tokens(n);
    for (i, t) in tokens.iter().enumerate() {
        let finish = if i + 1 == tokens.len() {
            Value::from("stop")
        } else {
            Value::Null
        };
        events.push(format!(
            "data: {}\n\n",
            serde_json::json!({"id": "c1", "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {"content": t}, "finish_reason": finish}]})
        ));
    }
    events.push(format!(
        "data: {}\n\n",
        serde_json::json!({"id": "c1", "object": "chat.completion.chunk", "choices": [],
            "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": tokens.len(),
                      "total_tokens": PROMPT_TOKENS as usize + tokens.len()}})
    ));
    events.push("data: [DONE]\n\n".to_owned());
    let head =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n";
    if sock.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    for e in events {
        if sock.write_all(e.as_bytes()).await.is_err() {
            return;
        }
        let _ = sock.flush().await;
    }
    let _ = sock.shutdown().await;
}

fn upstream_env<'a>(url: &'a str, allow: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("DOCENT__GENERATION__BACKEND", "openai"),
        ("DOCENT__GENERATION__UPSTREAM_URL", url),
        ("DOCENT__GENERATION__UPSTREAM_MODEL", "fake-llm"),
        ("DOCENT__GENERATION__UPSTREAM_ALLOW", allow),
        ("DOCENT__GENERATION__UPSTREAM_API_KEY_ENV", "DOCENT_TEST_UPSTREAM_KEY"),
        ("DOCENT_TEST_UPSTREAM_KEY", "test-key-123"),
        ("DOCENT__GENERATION__MAX_TOKENS", "123"),
    ]
}

#[tokio::test]
async fn answers_stream_from_the_upstream_with_checked_citations() {
    let fake = FakeUpstream::start().await;
    let url = format!("{}/v1", fake.base);
    let data = tempfile::tempdir().expect("tempdir");
    // The list in the environment's array form.
    let server = Server::start(data.path(), &upstream_env(&url, "[127.0.0.0/8]")).await;

    let pdf = make_pdf(&[CLINIC_PAGE1, CLINIC_PAGE2, CLINIC_PAGE3]);
    let pdf_id = server.ingest("clinic-guide.pdf", pdf, "application/pdf").await;
    let models = server.get_json("/v1/models").await;
    assert!(
        models["data"]
            .as_array()
            .is_some_and(|d| d.iter().any(|m| m["id"] == "fake-llm")),
        "{models}"
    );

    // (a) The answer streams from the upstream and keeps a checked citation.
    let events = server.chat(serde_json::json!({ "question": QUESTION })).await;
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert!(!names.contains(&"error"), "{events:?}");
    let tokens: Vec<String> = events
        .iter()
        .filter(|(e, _)| e == "token")
        .map(|(_, d)| d["text"].as_str().expect("token text").to_owned())
        .collect();
    let requests = fake.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let user = requests[0].body["messages"][1]["content"]
        .as_str()
        .expect("user message")
        .to_owned();
    let n = source_number(&user, FACT).unwrap_or_else(|| panic!("the fact is not a numbered source in\n{user}"));
    assert_eq!(tokens, answer_tokens(n), "{events:?}");
    let ci = names.iter().position(|e| *e == "citations").expect("citations event");
    let citations = events[ci].1["citations"].as_array().cloned().unwrap_or_default();
    let cited = citations
        .iter()
        .find(|c| c["n"] == n)
        .unwrap_or_else(|| panic!("citation [{n}] not kept: {citations:?}"));
    assert_eq!(cited["document_id"], pdf_id.as_str(), "{cited}");
    assert_eq!(cited["page"], 2, "{cited}");
    assert_eq!(cited["title"], "clinic-guide.pdf", "{cited}");
    assert!(cited["passage"].as_str().is_some_and(|p| p.contains(FACT)), "{cited}");
    let sentences = events[ci].1["sentences"].as_array().cloned().unwrap_or_default();
    assert_eq!(sentences.len(), 3, "{sentences:?}");
    assert_eq!(sentences[0]["supported"], true, "{sentences:?}");
    assert_eq!(sentences[0]["citations"], serde_json::json!([n]), "{sentences:?}");
    // The unsupported claim loses its citation and is flagged.
    assert_eq!(sentences[1]["supported"], false, "{sentences:?}");
    assert_eq!(sentences[1]["citations"], serde_json::json!([]), "{sentences:?}");
    assert_eq!(sentences[1]["dropped"], serde_json::json!([n]), "{sentences:?}");
    // The uncited but supported sentence gets its source attached.
    assert_eq!(sentences[2]["supported"], true, "{sentences:?}");
    assert_eq!(sentences[2]["attached"], serde_json::json!([n]), "{sentences:?}");
    assert_eq!(events[ci].1["abstained"], false);
    let (last, done) = events.last().expect("events");
    assert_eq!(last, "done", "{events:?}");
    assert_eq!(done["model"], "fake-llm");
    assert_eq!(
        done["prompt_tokens"], PROMPT_TOKENS,
        "usage from the final chunk: {done}"
    );
    assert_eq!(done["completion_tokens"], 7, "{done}");

    // (b) The upstream got an OpenAI streaming request with the numbered
    // sources and the question.
    let r = &requests[0];
    assert_eq!(r.request_line, "POST /v1/chat/completions HTTP/1.1");
    assert!(
        r.headers.lines().any(|l| l == "authorization: bearer test-key-123"),
        "{}",
        r.headers
    );
    let body = &r.body;
    assert_eq!(body["model"], "fake-llm");
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert_eq!(body["max_tokens"], 123);
    assert_eq!(body["temperature"], 0.0);
    assert_eq!(body["messages"][0]["role"], "system");
    assert!(
        body["messages"][0]["content"]
            .as_str()
            .is_some_and(|s| s.contains("[1]")),
        "the system prompt asks for [n] citations: {body}"
    );
    assert_eq!(body["messages"][1]["role"], "user");
    assert!(user.contains(QUESTION), "{user}");
    assert!(user.contains(FACT), "{user}");
    assert!(
        user.contains(&format!("[{n}] clinic-guide.pdf (page 2)"))
            || user.contains(&format!("<source id=\"{n}\" title=\"clinic-guide.pdf\" page=\"2\">")),
        "source {n} is not labelled with its title and page:\n{user}"
    );

    // (d) An upstream failing with HTTP 500 ends the chat with an error event
    // naming the status and the upstream's message.
    fake.fail.store(true, Ordering::SeqCst);
    let events = server.chat(serde_json::json!({ "question": QUESTION })).await;
    assert_eq!(fake.requests().len(), 2);
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert!(!names.contains(&"done") && !names.contains(&"token"), "{events:?}");
    let (last, err) = events.last().expect("events");
    assert_eq!(last, "error", "{events:?}");
    assert_eq!(err["error"]["code"], "generation_failed", "{err}");
    let message = err["error"]["message"].as_str().expect("message");
    assert!(message.contains("answered HTTP 500"), "{message}");
    assert!(message.contains("upstream overloaded"), "{message}");
    assert!(message.contains("/v1/chat/completions"), "{message}");

    // The server is still healthy.
    let r = server.client.get(server.url("/healthz")).send().await.expect("healthz");
    assert_eq!(r.status(), 200);
}

/// Runs `docent serve --port 0` expecting it to stop at startup; returns
/// (exit success, stdout, stderr).
async fn serve_expecting_exit(env: &[(&str, &str)]) -> (bool, String, String) {
    let data = tempfile::tempdir().expect("tempdir");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_docent"));
    cmd.env("DOCENT__STORAGE__DATA_DIR", data.path())
        .env("DOCENT__MODELS__DIR", common::models_dir())
        .env("DOCENT_LOG", "warn")
        .env_remove("DOCENT_CONFIG")
        .env_remove("DOCENT_TEST_UPSTREAM_KEY")
        .args(["serve", "--port", "0"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn docent serve");
    let id = child.id();
    // A guard against a hang, not a timing assertion: should serve start
    // after all, it is killed and the test fails.
    let out = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await;
    match out {
        Ok(joined) => {
            let out = joined.expect("join").expect("docent serve output");
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
        Err(_) => {
            let _ = std::process::Command::new("kill").arg(id.to_string()).status();
            panic!("docent serve kept running with an upstream it should refuse");
        }
    }
}

#[tokio::test]
async fn an_upstream_outside_the_allowlist_stops_startup() {
    let fake = FakeUpstream::start().await;
    let url = format!("{}/v1", fake.base);

    // (c) 127.0.0.1 is outside 10.0.0.0/8 (the list in the environment's
    // plain form).
    let (ok, stdout, stderr) = serve_expecting_exit(&upstream_env(&url, "10.0.0.0/8")).await;
    assert!(!ok, "serve must fail; stderr:\n{stderr}");
    assert!(!stdout.contains("docent listening on"), "{stdout}");
    assert!(
        stderr.contains(
            "upstream host 127.0.0.1 (resolved to [127.0.0.1]) is not in generation.upstream_allow [10.0.0.0/8]"
        ),
        "{stderr}"
    );

    // An empty list refuses every upstream.
    let env: Vec<(&str, &str)> = upstream_env(&url, "")
        .into_iter()
        .filter(|(k, _)| *k != "DOCENT__GENERATION__UPSTREAM_ALLOW")
        .collect();
    let (ok, _, stderr) = serve_expecting_exit(&env).await;
    assert!(!ok, "serve must fail; stderr:\n{stderr}");
    assert!(
        stderr.contains("is not in generation.upstream_allow [] (the list is empty, which allows no upstream)"),
        "{stderr}"
    );

    // A named API key variable that is not set stops startup too.
    let env: Vec<(&str, &str)> = upstream_env(&url, "127.0.0.0/8")
        .into_iter()
        .filter(|(k, _)| *k != "DOCENT_TEST_UPSTREAM_KEY")
        .collect();
    let (ok, _, stderr) = serve_expecting_exit(&env).await;
    assert!(!ok, "serve must fail; stderr:\n{stderr}");
    assert!(
        stderr.contains("generation.upstream_api_key_env names DOCENT_TEST_UPSTREAM_KEY, which is not set"),
        "{stderr}"
    );

    // So does an openai backend without a URL (config validation).
    let (ok, _, stderr) = serve_expecting_exit(&[
        ("DOCENT__GENERATION__BACKEND", "openai"),
        ("DOCENT__GENERATION__UPSTREAM_MODEL", "fake-llm"),
    ])
    .await;
    assert!(!ok);
    assert!(stderr.contains("generation.upstream_url is required"), "{stderr}");

    // None of them sent the upstream anything.
    assert!(fake.requests().is_empty(), "{:?}", fake.requests());
}
