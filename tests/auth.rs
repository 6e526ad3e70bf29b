//! Sign-in by API key through the real server: keys created by the CLI
//! (shown once, stored hashed), roles (reader may search, not upload),
//! revocation, 401 without or with a wrong key, and 429 past the rate limit.

mod common;

use common::{docent, Server};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use serde_json::Value;

fn create_key(data: &std::path::Path, user: &str, role: &str) -> (String, String) {
    let out = docent(
        data,
        &["keys", "create", "--user", user, "--groups", "everyone", "--role", role],
    );
    assert!(out.status.success(), "keys create");
    let v: Value = serde_json::from_slice(&out.stdout).expect("key json");
    (
        v["id"].as_str().expect("id").to_owned(),
        v["key"].as_str().expect("key").to_owned(),
    )
}

fn client(key: &str) -> reqwest::Client {
    let mut h = HeaderMap::new();
    h.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {key}")).expect("header"),
    );
    reqwest::Client::builder().default_headers(h).build().expect("client")
}

async fn search(c: &reqwest::Client, server: &Server) -> reqwest::Response {
    c.post(server.url("/v1/search"))
        .json(&serde_json::json!({"query": "linen room", "k": 3}))
        .send()
        .await
        .expect("search")
}

async fn error_code(r: reqwest::Response) -> String {
    let v: Value = r.json().await.expect("error json");
    v["error"]["code"].as_str().unwrap_or("").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_roles_revocation_and_rate_limits() {
    let data = tempfile::tempdir().expect("tempdir");
    let (_, editor) = create_key(data.path(), "alice", "editor");
    let (reader_id, reader) = create_key(data.path(), "bob", "reader");
    // Only a hash is stored: the key text is nowhere in the database file.
    let db = std::fs::read(data.path().join("docent.db")).expect("db");
    assert!(!db.windows(editor.len()).any(|w| w == editor.as_bytes()));

    let server = Server::start(data.path(), &[("DOCENT__ACCESS__REQUIRE_AUTH", "true")]).await;
    let anon = reqwest::Client::new();
    // Health and readiness stay public; the API does not.
    assert_eq!(
        anon.get(server.url("/healthz")).send().await.expect("healthz").status(),
        200
    );
    let r = search(&anon, &server).await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers().get("www-authenticate").map(|v| v.as_bytes()),
        Some(&b"Bearer"[..])
    );
    assert_eq!(error_code(r).await, "unauthorized");
    let r = search(&client("dk_not_a_real_key"), &server).await;
    assert_eq!(r.status(), 401);

    // An editor uploads; a reader may search but not upload.
    let alice = client(&editor);
    let bob = client(&reader);
    let upload = |c: reqwest::Client| {
        let url = server.url("/v1/documents");
        async move {
            let part = reqwest::multipart::Part::bytes(b"# Rooms\n\nThe linen room is on level two.\n".to_vec())
                .file_name("rooms.md")
                .mime_str("text/markdown")
                .expect("mime");
            c.post(url)
                .multipart(reqwest::multipart::Form::new().part("file", part))
                .send()
                .await
                .expect("upload")
        }
    };
    let r = upload(bob.clone()).await;
    assert_eq!(r.status(), 403);
    assert_eq!(error_code(r).await, "forbidden");
    let r = upload(alice.clone()).await;
    assert_eq!(r.status(), 202);
    let r = search(&bob, &server).await;
    assert_eq!(r.status(), 200);

    // A revoked key is refused from the next request on.
    let out = docent(data.path(), &["keys", "revoke", &reader_id]);
    assert!(out.status.success());
    let r = search(&bob, &server).await;
    assert_eq!(r.status(), 401);
    assert_eq!(error_code(r).await, "unauthorized");
    drop(server);

    // The audit trail names who did what, key changes included.
    let out = docent(data.path(), &["audit", "export"]);
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let who: Vec<(String, String)> = lines
        .iter()
        .map(|l| {
            (
                l["actor"].as_str().unwrap_or("").to_owned(),
                l["action"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert!(
        who.contains(&("alice".to_owned(), "document.upload".to_owned())),
        "{who:?}"
    );
    assert!(who.contains(&("bob".to_owned(), "search".to_owned())), "{who:?}");
    assert!(who.iter().filter(|(_, a)| a == "key.create").count() == 2, "{who:?}");
    assert!(who.iter().any(|(_, a)| a == "key.revoke"), "{who:?}");

    // Past the rate limit: 429 with Retry-After, for that principal only.
    let server = Server::start(
        data.path(),
        &[
            ("DOCENT__ACCESS__REQUIRE_AUTH", "true"),
            ("DOCENT__ACCESS__RATE_LIMIT_PER_MINUTE", "3"),
        ],
    )
    .await;
    let (_, carol) = create_key(data.path(), "carol", "reader");
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..4 {
        let r = search(&alice, &server).await;
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            let retry = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            limited = Some((retry, error_code(r).await));
        }
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    let (retry, code) = limited.expect("a 429");
    assert!(retry.is_some_and(|s| s >= 1), "Retry-After: {retry:?}");
    assert_eq!(code, "rate_limited");
    assert_eq!(search(&client(&carol), &server).await.status(), 200);
}

/// CORS is strict: only listed origins get a preflight answer and an
/// `Access-Control-Allow-Origin` echo; others get 403 on preflight and no
/// CORS headers (the browser withholds the response).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_allows_only_listed_origins() {
    let data = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        data.path(),
        &[("DOCENT__SERVER__CORS_ALLOWED_ORIGINS", "[\"https://intranet.example\"]")],
    )
    .await;
    let c = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        c.request(reqwest::Method::OPTIONS, server.url("/v1/search"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "authorization, content-type")
            .send()
    };
    let r = preflight("https://intranet.example").await.expect("preflight");
    assert_eq!(r.status(), 204);
    assert_eq!(
        r.headers().get("access-control-allow-origin").map(|v| v.as_bytes()),
        Some(&b"https://intranet.example"[..])
    );
    assert!(r.headers().contains_key("access-control-allow-headers"));
    let r = preflight("https://evil.example").await.expect("preflight");
    assert_eq!(r.status(), 403);
    assert_eq!(error_code(r).await, "forbidden");

    let get = |origin: &'static str| c.get(server.url("/v1/documents")).header("Origin", origin).send();
    let r = get("https://intranet.example").await.expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers().get("access-control-allow-origin").map(|v| v.as_bytes()),
        Some(&b"https://intranet.example"[..])
    );
    let r = get("https://evil.example").await.expect("get");
    assert!(!r.headers().contains_key("access-control-allow-origin"));
}
