//! The server under load (issue #8): chat admission through the real
//! `docent serve` (port 0). Below capacity every concurrent chat is
//! answered; past `generation.max_active + generation.max_queued` the extra
//! requests get 503 `overloaded` with Retry-After and the JSON error shape,
//! nothing else, and the server keeps serving.
//!
//! One test holds a fake OpenAI-compatible upstream until it says so, which
//! makes queue occupancy exact (and checks that a queued client that hangs
//! up gives its place back); the other goes through the real mistral.rs
//! model. Neither asserts a timing.

mod common;

use common::Server;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DOSING: &str = "# Velocitrex dosing for Zorblax fever\n\n\
Adults with Zorblax fever take 500 mg of velocitrex twice a day for five days. \
Children with Zorblax fever take 250 mg of velocitrex once a day for five days. \
Velocitrex is taken with food to avoid nausea.\n";

const QUESTIONS: &[&str] = &[
    "How much velocitrex do adults with Zorblax fever take?",
    "How much velocitrex do children with Zorblax fever take?",
    "How long is velocitrex taken for Zorblax fever?",
    "Why is velocitrex taken with food?",
];

/// Which chat entry point a request uses.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Chat,
    Completions,
    CompletionsUnstreamed,
}

const KINDS: [Kind; 3] = [Kind::Chat, Kind::Completions, Kind::CompletionsUnstreamed];

/// What came back.
#[derive(Debug)]
struct Outcome {
    status: u16,
    retry_after: Option<String>,
    /// The error body of a non-200.
    body: Value,
    /// A 200 whose answer arrived whole (final event or body, no error).
    complete: bool,
}

impl Outcome {
    /// 503, a Retry-After of at least one whole second, and
    /// `{"error": {"code": "overloaded", "message": "..."}}`.
    fn clean_refusal(&self) -> bool {
        self.status == 503
            && self
                .retry_after
                .as_deref()
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|s| s >= 1)
            && self.body["error"]["code"] == "overloaded"
            && self.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty())
            && self.body.as_object().is_some_and(|o| o.len() == 1)
    }
}

/// Sends one chat request and reads the whole response.
async fn ask(client: &reqwest::Client, base: &str, kind: Kind, question: &str) -> Outcome {
    let (path, body) = match kind {
        Kind::Chat => ("/v1/chat", json!({ "question": question })),
        Kind::Completions | Kind::CompletionsUnstreamed => {
            let b = json!({
                "model": "docent",
                "messages": [{"role": "user", "content": question}],
                "stream": matches!(kind, Kind::Completions),
            });
            ("/v1/chat/completions", b)
        }
    };
    let resp = client
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .expect("chat request");
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if status != 200 {
        let body = resp.json().await.unwrap_or(Value::Null);
        return Outcome {
            status,
            retry_after,
            body,
            complete: false,
        };
    }
    let complete = match kind {
        Kind::CompletionsUnstreamed => {
            let v: Value = resp.json().await.expect("completion JSON");
            v["choices"][0]["message"]["content"].is_string() && v["usage"]["completion_tokens"].is_u64()
        }
        Kind::Chat | Kind::Completions => {
            let text = resp.text().await.expect("stream");
            let frames: Vec<&str> = text.split("\n\n").filter(|f| !f.trim().is_empty()).collect();
            let errored = frames
                .iter()
                .any(|f| f.contains("event: error") || f.contains("\"error\""));
            let finished = match kind {
                Kind::Chat => frames.iter().any(|f| f.starts_with("event: done")),
                _ => frames.iter().any(|f| f.contains("\"usage\"")) && text.contains("data: [DONE]"),
            };
            finished && !errored
        }
    };
    Outcome {
        status,
        retry_after,
        body: Value::Null,
        complete,
    }
}

/// Polls a `/metrics` series until it reads `want` (the server decides in
/// its own time; no timing is asserted, the bound only ends a hung test).
async fn wait_metric(server: &Server, series: &str, want: f64) {
    for _ in 0..1200 {
        if server.metric(series).await == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{series} never reached {want} (now {:?})", server.metric(series).await);
}

/// A fake OpenAI-compatible upstream that holds every answer until
/// released, so the test decides when generation ends.
struct HeldUpstream {
    base: String,
    /// Requests that reached it.
    arrived: Arc<AtomicUsize>,
    release: tokio::sync::watch::Sender<bool>,
}

impl HeldUpstream {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}/v1", listener.local_addr().expect("addr"));
        let arrived = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        let a = Arc::clone(&arrived);
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(held_one(sock, Arc::clone(&a), released.clone()));
            }
        });
        Self { base, arrived, release }
    }

    async fn wait_arrived(&self, n: usize) {
        for _ in 0..1200 {
            if self.arrived.load(Ordering::SeqCst) >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "only {} requests reached the upstream",
            self.arrived.load(Ordering::SeqCst)
        );
    }
}

async fn held_one(
    mut sock: tokio::net::TcpStream,
    arrived: Arc<AtomicUsize>,
    mut released: tokio::sync::watch::Receiver<bool>,
) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    let (head_end, len) = loop {
        let Ok(n) = sock.read(&mut buf).await else { return };
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
        match sock.read(&mut buf).await {
            Ok(n) if n > 0 => raw.extend_from_slice(&buf[..n]),
            _ => return,
        }
    }
    arrived.fetch_add(1, Ordering::SeqCst);
    if released.wait_for(|r| *r).await.is_err() {
        return;
    }
    let pieces = [
        "Adults take 500 mg",
        " of velocitrex twice a day",
        " for five days [1].",
    ];
    let mut out = String::from(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
    );
    for p in pieces {
        let e = json!({"id": "h", "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": null}]});
        out.push_str(&format!("data: {e}\n\n"));
    }
    let e = json!({"id": "h", "object": "chat.completion.chunk", "choices": [],
        "usage": {"prompt_tokens": 50, "completion_tokens": 3, "total_tokens": 53}});
    out.push_str(&format!("data: {e}\n\ndata: [DONE]\n\n"));
    let _ = sock.write_all(out.as_bytes()).await;
    let _ = sock.shutdown().await;
}

#[tokio::test]
async fn past_capacity_chats_get_503_with_retry_after_and_the_server_keeps_serving() {
    let upstream = HeldUpstream::start().await;
    let data = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        data.path(),
        &[
            ("DOCENT__GENERATION__BACKEND", "openai"),
            ("DOCENT__GENERATION__UPSTREAM_URL", upstream.base.as_str()),
            ("DOCENT__GENERATION__UPSTREAM_MODEL", "held"),
            ("DOCENT__GENERATION__UPSTREAM_ALLOW", "[127.0.0.0/8]"),
            ("DOCENT__GENERATION__UPSTREAM_TIMEOUT_SECS", "600"),
            // Every question reaches the model: no abstention.
            ("DOCENT__GENERATION__EVIDENCE", "dense"),
            ("DOCENT__GENERATION__MIN_EVIDENCE", "-1"),
            ("DOCENT__GENERATION__CITATION_SUPPORT", "lexical"),
            ("DOCENT__GENERATION__MAX_ACTIVE", "2"),
            ("DOCENT__GENERATION__MAX_QUEUED", "2"),
            ("DOCENT__GENERATION__QUEUE_TIMEOUT_SECS", "600"),
        ],
    )
    .await;
    server
        .ingest("velocitrex.md", DOSING.as_bytes().to_vec(), "text/markdown")
        .await;
    let client = reqwest::Client::new();
    let spawn = |kind: Kind, q: &'static str| {
        let (client, base) = (client.clone(), server.base.clone());
        tokio::spawn(async move { ask(&client, &base, kind, q).await })
    };

    // Two answers generate (held by the upstream) ...
    let mut admitted = vec![spawn(Kind::Chat, QUESTIONS[0]), spawn(Kind::Completions, QUESTIONS[1])];
    upstream.wait_arrived(2).await;
    wait_metric(&server, "docent_generation_active", 2.0).await;
    // ... two wait: one that stays, one whose client will hang up.
    admitted.push(spawn(Kind::CompletionsUnstreamed, QUESTIONS[2]));
    wait_metric(&server, "docent_generation_queued", 1.0).await;
    let leaving = spawn(Kind::Chat, QUESTIONS[3]);
    wait_metric(&server, "docent_generation_queued", 2.0).await;

    // Full: every entry point answers 503 overloaded with Retry-After, at once.
    for (i, kind) in KINDS.into_iter().chain(KINDS).enumerate() {
        let o = ask(&client, &server.base, kind, QUESTIONS[i % QUESTIONS.len()]).await;
        assert!(o.clean_refusal(), "{o:?}");
    }
    assert_eq!(
        server
            .metric("docent_generation_refused_total{reason=\"queue_full\"}")
            .await,
        Some(6.0)
    );
    // The rest of the API is not behind the gate.
    let health = client.get(server.url("/healthz")).send().await.expect("healthz");
    assert_eq!(health.status(), 200);
    assert!(!server.search("velocitrex dose", "hybrid").await.is_empty());

    // A queued client that hangs up gives its place back ...
    leaving.abort();
    let _ = leaving.await;
    wait_metric(&server, "docent_generation_queued", 1.0).await;
    // ... so the next request waits instead of being refused.
    admitted.push(spawn(Kind::Chat, QUESTIONS[0]));
    wait_metric(&server, "docent_generation_queued", 2.0).await;
    assert!(ask(&client, &server.base, Kind::Chat, QUESTIONS[1])
        .await
        .clean_refusal());

    // The upstream answers: every admitted request gets its whole answer.
    upstream.release.send_replace(true);
    for t in admitted {
        let o = t.await.expect("join");
        assert!(o.status == 200 && o.complete, "{o:?}");
    }
    wait_metric(&server, "docent_generation_active", 0.0).await;
    wait_metric(&server, "docent_generation_queued", 0.0).await;
    // The hung-up request never reached the model: 2 + 1 + 1 did.
    assert_eq!(upstream.arrived.load(Ordering::SeqCst), 4);

    // And the server goes on: a new chat of each kind is answered.
    for kind in KINDS {
        let o = ask(&client, &server.base, kind, QUESTIONS[0]).await;
        assert!(o.status == 200 && o.complete, "{o:?}");
    }
    assert_eq!(
        server
            .metric("docent_generation_refused_total{reason=\"queue_full\"}")
            .await,
        Some(7.0)
    );
}

#[tokio::test]
async fn the_real_model_answers_every_chat_below_capacity_and_refuses_cleanly_above() {
    let data = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        data.path(),
        &[
            ("DOCENT__GENERATION__MAX_TOKENS", "8"),
            ("DOCENT__GENERATION__MAX_PROMPT_TOKENS", "200"),
            ("DOCENT__GENERATION__EVIDENCE", "dense"),
            ("DOCENT__GENERATION__CITATION_SUPPORT", "lexical"),
            ("DOCENT__GENERATION__MAX_ACTIVE", "2"),
            ("DOCENT__GENERATION__MAX_QUEUED", "4"),
            ("DOCENT__GENERATION__QUEUE_TIMEOUT_SECS", "1800"),
        ],
    )
    .await;
    server
        .ingest("velocitrex.md", DOSING.as_bytes().to_vec(), "text/markdown")
        .await;
    let client = reqwest::Client::new();
    let burst = |n: usize| {
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let (client, base) = (client.clone(), server.base.clone());
                tokio::spawn(async move { ask(&client, &base, KINDS[i % 3], QUESTIONS[i % QUESTIONS.len()]).await })
            })
            .collect();
        async move {
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.expect("join"));
            }
            out
        }
    };

    // Capacity (2 generating + 4 waiting) at once: all answered.
    for o in burst(6).await {
        assert!(o.status == 200 && o.complete, "{o:?}");
    }
    wait_metric(&server, "docent_generation_active", 0.0).await;

    // Three times capacity at once: the first six to arrive are always
    // admitted (places only free up); the rest are answered or refused
    // cleanly, depending on when they arrive. Nothing else.
    let outcomes = burst(18).await;
    let answered = outcomes.iter().filter(|o| o.status == 200 && o.complete).count();
    let refused = outcomes.iter().filter(|o| o.clean_refusal()).count();
    assert_eq!(answered + refused, outcomes.len(), "{outcomes:?}");
    assert!(answered >= 6, "{outcomes:?}");
    let metric_refused = server
        .metric("docent_generation_refused_total{reason=\"queue_full\"}")
        .await
        .unwrap_or(0.0);
    assert_eq!(metric_refused, refused as f64);

    // A streaming client that hangs up after its first token gives its
    // slot back.
    let resp = client
        .post(server.url("/v1/chat/completions"))
        .json(&json!({"messages": [{"role": "user", "content": QUESTIONS[0]}], "stream": true, "max_tokens": 400}))
        .send()
        .await
        .expect("completion");
    assert_eq!(resp.status(), 200);
    {
        use futures::StreamExt;
        let mut stream = resp.bytes_stream();
        let mut seen = String::new();
        while let Some(chunk) = stream.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
            if seen.contains("\"content\"") {
                break;
            }
        }
    }
    wait_metric(&server, "docent_generation_active", 0.0).await;
    wait_metric(&server, "docent_generation_queued", 0.0).await;

    // Still serving.
    let health = client.get(server.url("/healthz")).send().await.expect("healthz");
    assert_eq!(health.status(), 200);
    let o = ask(&client, &server.base, Kind::Chat, QUESTIONS[1]).await;
    assert!(o.status == 200 && o.complete, "{o:?}");
}
