//! Who may see what, randomized (issue #7): at least 10,000 seeded cases on
//! each backend (SQLite, and PostgreSQL with the embedded vector index),
//! through the real `docent serve`.
//!
//! Users hold random groups; documents sit in collections and carry random
//! labels, set at upload or inherited from their collection. Each case picks
//! a user and, most of the time, a document that user may NOT read, and
//! asks for it as precisely as possible: its unique code word plus its topic
//! words, so that it is the best match for BM25 and for dense retrieval.
//! Requests go through search (hybrid, BM25, dense), chat, the
//! OpenAI-compatible endpoint (streamed and not), document listing and
//! fetching, conversations and collection listing. Every so often an admin
//! changes a document's groups or a collection's, and the following cases
//! expect the new permissions at once (the change reaches both indexes
//! before the admin's call returns).
//!
//! Each document holds two words of its own: a code word queries use, and a
//! secret word only its title and text hold (never a query, so a response
//! cannot contain it by repeating the question). A leak is any response,
//! or any prompt the model receives, that contains a forbidden document's
//! secret word, id, or one of its chunk ids. The model is an adversarial
//! stand-in on 127.0.0.1 that repeats every secret word of its prompt, so
//! anything forbidden that reached the prompt would also reach the answer;
//! its prompts are checked directly too. The test also
//! checks that it is not vacuous: readable targets are found.

mod common;

use common::{command_with, read_sse, PgDb, Server};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const GROUPS: [&str; 8] = [
    "cardiology",
    "oncology",
    "billing",
    "hr",
    "legal",
    "claims",
    "pharmacy",
    "radiology",
];
const COLLECTIONS: [&str; 4] = ["clinical", "finance", "staff", "default"];
const TOPICS: [&str; 24] = [
    "dosage",
    "invoice",
    "referral",
    "discharge",
    "allergy",
    "premium",
    "deductible",
    "payroll",
    "contract",
    "imaging",
    "biopsy",
    "infusion",
    "formulary",
    "appeal",
    "audit",
    "vaccine",
    "triage",
    "sedation",
    "overtime",
    "warranty",
    "settlement",
    "radiation",
    "ultrasound",
    "pension",
];
const DOCS: usize = 36;
const USERS: usize = 10;

/// SplitMix64, seeded: the same cases on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }

    fn groups(&mut self, min: usize, max: usize) -> Vec<String> {
        let n = min + self.below(max - min + 1);
        let mut out = BTreeSet::new();
        while out.len() < n {
            out.insert(self.pick(&GROUPS).to_string());
        }
        out.into_iter().collect()
    }
}

#[derive(Debug, Clone)]
struct Doc {
    id: String,
    /// The word queries use to ask for this document.
    code: String,
    /// A word only the document's text and title hold (never a query): a
    /// response or prompt containing it carries the document's content.
    secret: String,
    collection: String,
    labels: Vec<String>,
    inherited: bool,
    topics: Vec<&'static str>,
    chunk_ids: Vec<String>,
}

struct User {
    name: String,
    groups: Vec<String>,
    client: reqwest::Client,
    conversations: Vec<String>,
}

impl User {
    fn named(name: &str, client: &reqwest::Client) -> Self {
        Self {
            name: name.to_owned(),
            groups: Vec::new(),
            client: client.clone(),
            conversations: Vec::new(),
        }
    }
}

/// The permission model the server must follow.
struct Model {
    docs: Vec<Doc>,
    /// Collection groups (collections without a row: the default labels).
    collections: BTreeMap<String, Vec<String>>,
}

impl Model {
    fn readable(&self, user: &User, d: &Doc) -> bool {
        d.labels.iter().any(|l| user.groups.contains(l))
    }

    fn inherited_labels(&self, collection: &str) -> Vec<String> {
        self.collections
            .get(collection)
            .cloned()
            .unwrap_or_else(|| vec!["everyone".to_owned()])
    }
}

fn client(key: &str) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {key}")).expect("header"),
    );
    reqwest::Client::builder().default_headers(h).build().expect("client")
}

fn create_key(data: &std::path::Path, env: &[(&str, &str)], user: &str, groups: &[String], role: &str) -> String {
    let groups = groups.join(",");
    let out = command_with(data, env)
        .args(["keys", "create", "--user", user, "--groups", &groups, "--role", role])
        .output()
        .expect("run docent keys create");
    assert!(
        out.status.success(),
        "keys create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("key json");
    v["key"].as_str().expect("key").to_owned()
}

/// The adversarial model: an OpenAI-compatible upstream that answers with
/// every code word in its prompt, and keeps the prompts.
struct EchoModel {
    base: String,
    prompts: Arc<Mutex<Vec<String>>>,
}

/// What the stand-in model answers with.
#[derive(Clone, Copy)]
enum Echo {
    /// Every code word of the prompt, in one piece.
    Codes,
    /// The whole prompt, in pieces of 5 bytes (so that names and numbers
    /// are split across streamed tokens).
    Everything,
}

fn code_words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| {
            w.len() == 7 && w.starts_with("sx") && w.ends_with('m') && w[2..6].bytes().all(|b| b.is_ascii_digit())
        })
        .map(str::to_owned)
        .collect()
}

impl EchoModel {
    async fn start() -> Self {
        Self::start_with(Echo::Codes).await
    }

    async fn start_with(mode: Echo) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}/v1", listener.local_addr().expect("addr"));
        let prompts = Arc::new(Mutex::new(Vec::new()));
        let p = Arc::clone(&prompts);
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(echo_one(sock, Arc::clone(&p), mode));
            }
        });
        Self { base, prompts }
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.prompts.lock().expect("lock"))
    }
}

async fn echo_one(mut sock: tokio::net::TcpStream, prompts: Arc<Mutex<Vec<String>>>, mode: Echo) {
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
    let body: Value = serde_json::from_slice(&raw[head_end..head_end + len]).unwrap_or(Value::Null);
    let prompt: String = body["messages"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .filter_map(|m| m["content"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    let codes = code_words(&prompt);
    let pieces: Vec<String> = match mode {
        Echo::Codes if codes.is_empty() => vec!["Nothing in the sources.".to_owned()],
        Echo::Codes => vec![format!("The sources mention {} [1].", codes.join(" "))],
        Echo::Everything => {
            let all = format!("{prompt} [1].");
            let mut out = Vec::new();
            let mut cur = String::new();
            for ch in all.chars() {
                cur.push(ch);
                if cur.len() >= 5 {
                    out.push(std::mem::take(&mut cur));
                }
            }
            out.push(cur);
            out
        }
    };
    prompts.lock().expect("lock").push(prompt);
    let mut out = String::from(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
    );
    for p in &pieces {
        let e = json!({"id": "e", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": null}]});
        out.push_str(&format!("data: {e}\n\n"));
    }
    let e = json!({"id": "e", "object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": 100, "completion_tokens": pieces.len(), "total_tokens": 100 + pieces.len()}});
    out.push_str(&format!("data: {e}\n\n"));
    out.push_str("data: [DONE]\n\n");
    let _ = sock.write_all(out.as_bytes()).await;
    let _ = sock.shutdown().await;
}

fn doc_text(code: &str, secret: &str, topics: &[&str], rng: &mut Rng) -> String {
    let mut s = format!("# Memo {code} {secret}\n\n");
    for n in 0..6 {
        let a = topics[n % topics.len()];
        let b = *rng.pick(&TOPICS);
        s.push_str(&format!(
            "Record {code} ({secret}) covers {a} and {b}: the {a} procedure for {code} is reviewed each quarter alongside {b}.\n\n"
        ));
    }
    s
}

#[derive(Default)]
struct Tally {
    cases: usize,
    leaks: Vec<String>,
    /// Cases and total milliseconds per kind of request.
    by_op: BTreeMap<&'static str, (usize, u128)>,
    /// Readable targets asked for by BM25, and found.
    targets: (usize, usize),
    relabels: usize,
    withheld: usize,
}

impl Tally {
    /// Records a leak if `body` names a document `user` may not read.
    fn check(&mut self, model: &Model, user: &User, op: &str, body: &str) {
        for d in &model.docs {
            if model.readable(user, d) {
                continue;
            }
            let hit = if body.contains(&d.secret) {
                Some("secret word")
            } else if body.contains(&d.id) {
                Some("document id")
            } else if d.chunk_ids.iter().any(|c| body.contains(c.as_str())) {
                Some("chunk id")
            } else {
                None
            };
            if let Some(what) = hit {
                self.leaks.push(format!(
                    "{op}: {} (groups {:?}) saw the {what} of {} (labels {:?})",
                    user.name, user.groups, d.code, d.labels
                ));
            }
        }
    }
}

async fn wait_ready(server: &Server, admin: &reqwest::Client, job: &str) {
    for _ in 0..600 {
        let j: Value = admin
            .get(server.url(&format!("/v1/jobs/{job}")))
            .send()
            .await
            .expect("job")
            .json()
            .await
            .expect("job json");
        match j["status"].as_str() {
            Some("ready") => return,
            Some("failed") => panic!("ingest failed: {j}"),
            _ => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    panic!("job {job} did not finish");
}

async fn chunk_ids(db_url: &str) -> BTreeMap<String, Vec<String>> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(db_url)
        .await
        .expect("connect to the test database");
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT doc_id, id FROM chunks")
        .fetch_all(&pool)
        .await
        .expect("chunks");
    pool.close().await;
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (doc, id) in rows {
        out.entry(doc).or_default().push(id);
    }
    out
}

async fn run(backend: &str, pg: Option<&PgDb>) {
    let cases: usize = std::env::var("DOCENT_LEAK_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let data = tempfile::tempdir().expect("tempdir");
    let echo = EchoModel::start().await;
    let mut env: Vec<(&str, &str)> = vec![
        ("DOCENT__ACCESS__REQUIRE_AUTH", "true"),
        ("DOCENT__ACCESS__RATE_LIMIT_PER_MINUTE", "0"),
        ("DOCENT__GENERATION__BACKEND", "openai"),
        ("DOCENT__GENERATION__UPSTREAM_URL", echo.base.as_str()),
        ("DOCENT__GENERATION__UPSTREAM_MODEL", "echo"),
        ("DOCENT__GENERATION__UPSTREAM_ALLOW", "[127.0.0.0/8]"),
        // Evidence is judged by dense similarity and citations by word
        // overlap: the cross-encoder stages decide what an answer keeps,
        // not what a caller may see, and would make 10,000 cases slow.
        ("DOCENT__GENERATION__EVIDENCE", "dense"),
        ("DOCENT__GENERATION__CITATION_SUPPORT", "lexical"),
        ("DOCENT_LOG", "warn"),
    ];
    if let Some(db) = pg {
        env.push(("DOCENT__STORAGE__DATABASE_URL", db.url.as_str()));
    }
    let db_url = match pg {
        Some(db) => db.url.clone(),
        None => format!("sqlite://{}?mode=ro", data.path().join("docent.db").display()),
    };
    let mut rng = Rng(0x5eed_0007 ^ backend.len() as u64);

    let admin_key = create_key(data.path(), &env, "admin", &["admins".to_owned()], "admin");
    let mut users = Vec::new();
    for u in 0..USERS {
        // One user holds a group no document carries: it may read nothing.
        let groups = if u == 0 {
            vec!["visitors".to_owned()]
        } else {
            rng.groups(1, 3)
        };
        let name = format!("user{u}");
        let key = create_key(data.path(), &env, &name, &groups, "reader");
        users.push(User {
            name,
            groups,
            client: client(&key),
            conversations: Vec::new(),
        });
    }
    let server = Server::start(data.path(), &env).await;
    let admin = client(&admin_key);

    let mut model = Model {
        docs: Vec::new(),
        collections: BTreeMap::new(),
    };
    for (c, groups) in [
        ("clinical", vec!["cardiology", "oncology"]),
        ("finance", vec!["billing", "claims"]),
        ("staff", vec!["hr"]),
    ] {
        let groups: Vec<String> = groups.into_iter().map(str::to_owned).collect();
        let r = admin
            .put(server.url(&format!("/v1/collections/{c}")))
            .json(&json!({"groups": groups}))
            .send()
            .await
            .expect("put collection");
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
        model.collections.insert(c.to_owned(), groups);
    }
    for i in 0..DOCS {
        let code = format!("qz{i:04}k");
        let secret = format!("sx{i:04}m");
        let collection = rng.pick(&COLLECTIONS).to_string();
        let topics = vec![*rng.pick(&TOPICS), *rng.pick(&TOPICS)];
        let explicit = rng.below(2) == 0;
        let labels = if explicit {
            rng.groups(1, 2)
        } else {
            model.inherited_labels(&collection)
        };
        let mut form = reqwest::multipart::Form::new()
            .part(
                "file",
                reqwest::multipart::Part::bytes(doc_text(&code, &secret, &topics, &mut rng).into_bytes())
                    .file_name(format!("memo-{code}.md"))
                    .mime_str("text/markdown")
                    .expect("mime"),
            )
            .text("collection", collection.clone());
        if explicit {
            form = form.text("access", labels.join(","));
        }
        let r = admin
            .post(server.url("/v1/documents"))
            .multipart(form)
            .send()
            .await
            .expect("upload");
        assert_eq!(r.status(), 202);
        let v: Value = r.json().await.expect("upload json");
        wait_ready(&server, &admin, v["job_id"].as_str().expect("job id")).await;
        let id = v["id"].as_str().expect("id").to_owned();
        // The server gave the labels the model expects (explicit or
        // inherited from the collection).
        let got: Value = admin
            .get(server.url(&format!("/v1/documents/{id}")))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        let got: Vec<String> = serde_json::from_value(got["access"].clone()).expect("access");
        assert_eq!(got, labels, "{code} in {collection}");
        model.docs.push(Doc {
            id,
            code,
            secret,
            collection,
            labels,
            inherited: !explicit,
            topics,
            chunk_ids: Vec::new(),
        });
    }
    let chunks = chunk_ids(&db_url).await;
    for d in &mut model.docs {
        d.chunk_ids = chunks.get(&d.id).cloned().unwrap_or_default();
        assert!(!d.chunk_ids.is_empty(), "{} has no chunks", d.code);
    }

    let mut t = Tally::default();
    echo.take();
    while t.cases < cases {
        // An admin changes permissions every 200 cases.
        if t.cases > 0 && t.cases % 200 == 0 {
            relabel(&server, &admin, &mut model, &mut rng).await;
            t.relabels += 1;
        }
        let u = rng.below(users.len());
        let forbidden: Vec<usize> = (0..model.docs.len())
            .filter(|&i| !model.readable(&users[u], &model.docs[i]))
            .collect();
        let target = if !forbidden.is_empty() && rng.below(10) < 7 {
            *rng.pick(&forbidden)
        } else {
            rng.below(model.docs.len())
        };
        let d = model.docs[target].clone();
        let query = match rng.below(3) {
            0 => format!("{} {}", d.code, d.topics.join(" ")),
            1 => format!("What does record {} say about {}?", d.code, d.topics[0]),
            _ => format!("{} procedure {}", d.topics[0], d.topics[1]),
        };
        let roll = rng.below(100);
        let started = std::time::Instant::now();
        let mut new_conversation = None;
        let user = &users[u];
        let (op, body): (&'static str, String) = match roll {
            0..=24 => ("search hybrid", search(&server, user, &query, "hybrid").await),
            25..=39 => {
                let body = search(&server, user, &query, "bm25").await;
                if model.readable(user, &d) && query.contains(&d.code) {
                    t.targets.0 += 1;
                    if body.contains(&d.secret) {
                        t.targets.1 += 1;
                    }
                }
                ("search bm25", body)
            }
            40..=54 => ("search dense", search(&server, user, &query, "dense").await),
            55..=63 => {
                let r = user.client.get(server.url("/v1/documents")).send().await.expect("list");
                assert_eq!(r.status(), 200);
                let body = r.text().await.expect("body");
                // Every readable document is listed.
                for doc in model.docs.iter().filter(|x| model.readable(user, x)) {
                    assert!(body.contains(&doc.id), "{} misses readable {}", user.name, doc.code);
                }
                ("list documents", body)
            }
            64..=72 => {
                let r = user
                    .client
                    .get(server.url(&format!("/v1/documents/{}", d.id)))
                    .send()
                    .await
                    .expect("get");
                let want = if model.readable(user, &d) { 200 } else { 404 };
                assert_eq!(r.status(), want, "{} GET {} (labels {:?})", user.name, d.code, d.labels);
                ("get document", r.text().await.expect("body"))
            }
            73..=78 => {
                let (body, conv) = chat(&server, user, &query).await;
                new_conversation = conv;
                ("chat", body)
            }
            79..=84 => ("openai stream", completion(&server, user, &query, true).await),
            85..=89 => ("openai", completion(&server, user, &query, false).await),
            90..=95 => {
                let body = conversation(&server, &users, u, &mut rng).await;
                if body.contains("\"withheld\":true") {
                    t.withheld += 1;
                }
                ("conversation", body)
            }
            _ => {
                let r = user
                    .client
                    .get(server.url("/v1/collections"))
                    .send()
                    .await
                    .expect("collections");
                assert_eq!(r.status(), 200);
                let v: Value = r.json().await.expect("json");
                for c in v["collections"].as_array().expect("list") {
                    let groups: Vec<String> = serde_json::from_value(c["groups"].clone()).expect("groups");
                    assert!(
                        groups.iter().any(|g| user.groups.contains(g)),
                        "{} sees collection {c}",
                        user.name
                    );
                }
                ("collections", v.to_string())
            }
        };
        users[u].conversations.extend(new_conversation);
        let user = &users[u];
        t.check(&model, user, op, &body);
        for prompt in echo.take() {
            t.check(&model, user, "prompt", &prompt);
        }
        let e = t.by_op.entry(op).or_default();
        e.0 += 1;
        e.1 += started.elapsed().as_millis();
        t.cases += 1;
    }
    println!(
        "permission leak test ({backend}): {} cases, {} permission changes, {} leaks; readable targets found by BM25: {}/{}; withheld conversation answers: {}",
        t.cases,
        t.relabels,
        t.leaks.len(),
        t.targets.1,
        t.targets.0,
        t.withheld
    );
    for (op, (n, ms)) in &t.by_op {
        println!("  {op}: {n} cases, mean {} ms", ms / (*n as u128).max(1));
    }
    assert!(t.leaks.is_empty(), "leaks:\n{}", t.leaks.join("\n"));
    assert!(t.cases >= cases);
    // Not vacuous: what a user may read is found.
    assert!(
        t.targets.0 > 0 && t.targets.1 * 10 >= t.targets.0 * 9,
        "targets {:?}",
        t.targets
    );
    drop(server);
}

async fn search(server: &Server, user: &User, query: &str, mode: &str) -> String {
    let r = user
        .client
        .post(server.url("/v1/search"))
        .json(&json!({"query": query, "k": 10, "mode": mode}))
        .send()
        .await
        .expect("search");
    assert_eq!(r.status(), 200);
    r.text().await.expect("body")
}

async fn chat(server: &Server, user: &User, question: &str) -> (String, Option<String>) {
    let r = user
        .client
        .post(server.url("/v1/chat"))
        .json(&json!({"question": question}))
        .send()
        .await
        .expect("chat");
    assert_eq!(r.status(), 200);
    let events = read_sse(r).await;
    let conv = events
        .iter()
        .find(|(e, _)| e == "done")
        .and_then(|(_, v)| v["conversation_id"].as_str().map(str::to_owned));
    let body = events
        .iter()
        .map(|(e, v)| format!("{e} {v}"))
        .collect::<Vec<_>>()
        .join("\n");
    (body, conv)
}

async fn completion(server: &Server, user: &User, question: &str, stream: bool) -> String {
    let r = user
        .client
        .post(server.url("/v1/chat/completions"))
        .json(&json!({"model": "docent", "stream": stream, "messages": [{"role": "user", "content": question}]}))
        .send()
        .await
        .expect("completion");
    assert_eq!(r.status(), 200);
    r.text().await.expect("body")
}

/// One of the user's own conversations, or (sometimes) another user's,
/// which must be a 404.
async fn conversation(server: &Server, users: &[User], u: usize, rng: &mut Rng) -> String {
    let user = &users[u];
    let other = rng.below(4) == 0;
    let pool = if other {
        &users[(u + 1 + rng.below(users.len() - 1)) % users.len()].conversations
    } else {
        &user.conversations
    };
    if pool.is_empty() {
        let r = user
            .client
            .get(server.url("/v1/conversations"))
            .send()
            .await
            .expect("list");
        assert_eq!(r.status(), 200);
        return r.text().await.expect("body");
    }
    let id = rng.pick(pool).clone();
    let r = user
        .client
        .get(server.url(&format!("/v1/conversations/{id}")))
        .send()
        .await
        .expect("conversation");
    if other {
        assert_eq!(r.status(), 404, "another user's conversation");
    } else {
        assert_eq!(r.status(), 200);
    }
    r.text().await.expect("body")
}

/// An admin changes one document's groups (explicitly, or back to
/// inheriting) or one collection's groups, and the model follows.
async fn relabel(server: &Server, admin: &reqwest::Client, model: &mut Model, rng: &mut Rng) {
    match rng.below(3) {
        0 | 1 => {
            let i = rng.below(model.docs.len());
            let inherit = rng.below(3) == 0;
            let body = if inherit {
                json!({"inherit": true})
            } else {
                json!({"access": rng.groups(1, 2)})
            };
            let r = admin
                .patch(server.url(&format!("/v1/documents/{}", model.docs[i].id)))
                .json(&body)
                .send()
                .await
                .expect("patch");
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
            let v: Value = r.json().await.expect("json");
            let labels = if inherit {
                model.inherited_labels(&model.docs[i].collection)
            } else {
                serde_json::from_value(body["access"].clone()).expect("labels")
            };
            let got: Vec<String> = serde_json::from_value(v["access"].clone()).expect("access");
            assert_eq!(got, labels, "PATCH answers with the new labels");
            model.docs[i].labels = labels;
            model.docs[i].inherited = inherit;
        }
        _ => {
            let c = ["clinical", "finance", "staff"][rng.below(3)];
            let groups = rng.groups(1, 2);
            let r = admin
                .put(server.url(&format!("/v1/collections/{c}")))
                .json(&json!({"groups": groups}))
                .send()
                .await
                .expect("put collection");
            assert_eq!(r.status(), 200);
            model.collections.insert(c.to_owned(), groups.clone());
            for d in model.docs.iter_mut().filter(|d| d.collection == c && d.inherited) {
                d.labels = groups.clone();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_leaks_across_10k_random_cases_on_sqlite() {
    run("sqlite", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_leaks_across_10k_random_cases_on_postgres() {
    let db = PgDb::create().await;
    run("postgres", Some(&db)).await;
    db.drop_db().await;
}

/// Collections: documents uploaded without labels inherit the collection's
/// groups and follow changes to them; with `redact_answers` on, what
/// answers and hits show is PHI-masked (streamed tokens, the checked
/// answer, citations, the stored conversation, search hits), while the
/// stored text is not. The stand-in model repeats its whole prompt, in
/// 5-byte pieces, so names and numbers arrive split across tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collections_inherit_groups_and_mask_answers() {
    let data = tempfile::tempdir().expect("tempdir");
    let echo = EchoModel::start_with(Echo::Everything).await;
    let env: Vec<(&str, &str)> = vec![
        ("DOCENT__ACCESS__REQUIRE_AUTH", "true"),
        ("DOCENT__GENERATION__BACKEND", "openai"),
        ("DOCENT__GENERATION__UPSTREAM_URL", echo.base.as_str()),
        ("DOCENT__GENERATION__UPSTREAM_MODEL", "echo"),
        ("DOCENT__GENERATION__UPSTREAM_ALLOW", "[127.0.0.0/8]"),
    ];
    let admin = client(&create_key(data.path(), &env, "admin", &["admins".to_owned()], "admin"));
    let nurse = client(&create_key(
        data.path(),
        &env,
        "nurse",
        &["ward-a".to_owned()],
        "reader",
    ));
    let clerk = client(&create_key(
        data.path(),
        &env,
        "clerk",
        &["billing".to_owned()],
        "reader",
    ));
    let server = Server::start(data.path(), &env).await;

    let r = admin
        .put(server.url("/v1/collections/patients"))
        .json(&json!({"groups": ["ward-a"], "redact_answers": true}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 200);
    // A reader may not change a collection; an empty group list is refused.
    let r = nurse
        .put(server.url("/v1/collections/patients"))
        .json(&json!({"groups": ["ward-a"]}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 403);
    let r = admin
        .put(server.url("/v1/collections/patients"))
        .json(&json!({"groups": []}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 400);

    let note = "# Discharge note\n\nPatient: John Carter, DOB: 03/12/1980, phone +1 415-555-0132, \
                was treated for Zorblax fever. The quarantine period for Zorblax fever is eleven days.\n";
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(note.as_bytes().to_vec())
                .file_name("discharge.md")
                .mime_str("text/markdown")
                .expect("mime"),
        )
        .text("collection", "patients");
    let r = admin
        .post(server.url("/v1/documents"))
        .multipart(form)
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.expect("json");
    let id = v["id"].as_str().expect("id").to_owned();
    wait_ready(&server, &admin, v["job_id"].as_str().expect("job")).await;
    let doc: Value = admin
        .get(server.url(&format!("/v1/documents/{id}")))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(doc["access"], json!(["ward-a"]), "inherited from the collection");

    // Search hits from the collection are masked; the clerk sees nothing.
    let q = "quarantine period Zorblax fever John Carter";
    let hits = search(&server, &User::named("nurse", &nurse), q, "bm25").await;
    assert!(hits.contains(&id), "{hits}");
    assert!(
        hits.contains("[NAME]") && hits.contains("[PHONE]") && hits.contains("[DOB]"),
        "{hits}"
    );
    for phi in ["Carter", "0132", "1980"] {
        assert!(!hits.contains(phi), "{phi} shown in a hit: {hits}");
    }
    let none = search(&server, &User::named("clerk", &clerk), q, "bm25").await;
    assert!(!none.contains(&id), "{none}");

    // Chat: the model repeats the PHI; nothing of it is shown or kept in
    // the conversation.
    let (events, conv) = chat(
        &server,
        &User::named("nurse", &nurse),
        "How long is the quarantine for Zorblax fever?",
    )
    .await;
    let prompts = echo.take();
    assert!(
        prompts.iter().any(|p| p.contains("John Carter")),
        "the model saw the source"
    );
    assert!(events.contains("[NAME]"), "{events}");
    for phi in ["Carter", "0132", "1980"] {
        assert!(!events.contains(phi), "{phi} shown in chat: {events}");
    }
    let conv = conv.expect("conversation id");
    let stored = nurse
        .get(server.url(&format!("/v1/conversations/{conv}")))
        .send()
        .await
        .expect("conversation")
        .text()
        .await
        .expect("body");
    assert!(!stored.contains("Carter") && stored.contains("[NAME]"), "{stored}");
    // The OpenAI-compatible endpoint, streamed and not.
    for stream in [true, false] {
        let body = completion(
            &server,
            &User::named("nurse", &nurse),
            "Zorblax fever quarantine",
            stream,
        )
        .await;
        assert!(body.contains("[NAME]"), "{body}");
        for phi in ["Carter", "0132", "1980"] {
            assert!(!body.contains(phi), "{phi} shown (stream {stream}): {body}");
        }
    }
    // Stored text is never masked.
    let chunks = chunk_ids(&format!("sqlite://{}?mode=ro", data.path().join("docent.db").display())).await;
    assert_eq!(chunks.get(&id).map(Vec::len), Some(1));
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&format!("sqlite://{}?mode=ro", data.path().join("docent.db").display()))
        .await
        .expect("db");
    let (text,): (String,) = sqlx::query_as("SELECT text FROM chunks WHERE doc_id = $1")
        .bind(&id)
        .fetch_one(&pool)
        .await
        .expect("chunk");
    assert!(text.contains("John Carter") && text.contains("415-555-0132"), "{text}");
    pool.close().await;

    // Masking off: hits show the text as stored.
    let r = admin
        .put(server.url("/v1/collections/patients"))
        .json(&json!({"groups": ["ward-a"], "redact_answers": false}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 200);
    let hits = search(&server, &User::named("nurse", &nurse), q, "bm25").await;
    assert!(hits.contains("John Carter"), "{hits}");

    // The collection moves to billing: the inheriting note follows in both
    // legs as soon as the call returns, and the nurse's conversation
    // citing it is withheld from her.
    let r = admin
        .put(server.url("/v1/collections/patients"))
        .json(&json!({"groups": ["billing"]}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["relabelled_documents"], 1);
    for mode in ["bm25", "dense"] {
        let clerk_hits = search(&server, &User::named("clerk", &clerk), q, mode).await;
        assert!(clerk_hits.contains(&id), "{mode}: {clerk_hits}");
        let nurse_hits = search(&server, &User::named("nurse", &nurse), q, mode).await;
        assert!(!nurse_hits.contains(&id), "{mode}: {nurse_hits}");
    }
    let stored = nurse
        .get(server.url(&format!("/v1/conversations/{conv}")))
        .send()
        .await
        .expect("conversation")
        .text()
        .await
        .expect("body");
    assert!(
        stored.contains("\"withheld\":true") && !stored.contains(&id),
        "{stored}"
    );
    // An explicit label wins over the collection; `inherit` brings it back.
    let r = admin
        .patch(server.url(&format!("/v1/documents/{id}")))
        .json(&json!({"access": ["ward-a"]}))
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), 200);
    let r = admin
        .put(server.url("/v1/collections/patients"))
        .json(&json!({"groups": ["legal"]}))
        .send()
        .await
        .expect("put");
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["relabelled_documents"], 0, "explicit labels do not follow");
    let r = admin
        .patch(server.url(&format!("/v1/documents/{id}")))
        .json(&json!({"inherit": true}))
        .send()
        .await
        .expect("patch");
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["access"], json!(["legal"]));
    // Bad requests: neither or both, an unknown document, a reader.
    for (who, body, want) in [
        (&admin, json!({}), 400),
        (&admin, json!({"access": []}), 400),
        (&admin, json!({"access": ["a"], "inherit": true}), 400),
        (&nurse, json!({"access": ["ward-a"]}), 403),
    ] {
        let r = who
            .patch(server.url(&format!("/v1/documents/{id}")))
            .json(&body)
            .send()
            .await
            .expect("patch");
        assert_eq!(r.status(), want, "{body}");
    }
    let r = admin
        .patch(server.url(&format!("/v1/documents/{}", uuid::Uuid::now_v7())))
        .json(&json!({"inherit": true}))
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), 404);
    drop(server);
}
