//! Sign-in with OIDC ID tokens through the real server: bearer JWTs checked
//! against the issuer's JWKS (signature, issuer, audience, expiry, key id,
//! algorithm), the token's groups and role applied, and web-chat sessions
//! (cookie flags, CSRF on state changes, sign-out). Tokens are signed here
//! with the test-only keys in tests/fixtures/oidc (make-keys.sh).

mod common;

use base64::Engine;
use common::{command_with, docent, Server};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use reqwest::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

const ISSUER: &str = "https://sso.test/realms/staff";
const AUDIENCE: &str = "docent";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/oidc")
        .join(name)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// Claims of a valid token for `user`; tests break one thing at a time.
fn claims(user: &str, groups: &[&str], role: &str) -> Value {
    let t = now();
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": format!("id-{user}"), "preferred_username": user,
        "groups": groups, "docent_role": role, "iat": t, "nbf": t - 5, "exp": t + 600,
    })
}

/// Signs with a PEM key of the fixtures under `kid`.
fn sign(claims: &Value, alg: Algorithm, pem: &str, kid: &str) -> String {
    let pem = std::fs::read(fixture(pem)).expect("fixture key");
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        _ => EncodingKey::from_rsa_pem(&pem),
    }
    .expect("pem");
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    encode(&header, claims, &key).expect("sign")
}

fn rs256(claims: &Value) -> String {
    sign(claims, Algorithm::RS256, "issuer-rsa.pem", "test-rsa")
}

/// A token with `alg: none` and no signature.
fn unsigned(claims: &Value) -> String {
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": "test-rsa"})),
        b64(claims)
    )
}

/// An HS256 token keyed with the issuer's public JWKS text: the classic
/// algorithm-confusion forgery.
fn hs256(claims: &Value) -> String {
    let secret = std::fs::read(fixture("jwks.json")).expect("jwks");
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("test-rsa".to_owned());
    encode(&header, claims, &EncodingKey::from_secret(&secret)).expect("sign")
}

fn oidc_env(jwks_file: &str) -> Vec<(&'static str, String)> {
    vec![
        ("DOCENT__ACCESS__OIDC__ISSUER", ISSUER.to_owned()),
        ("DOCENT__ACCESS__OIDC__AUDIENCE", AUDIENCE.to_owned()),
        ("DOCENT__ACCESS__OIDC__JWKS_FILE", jwks_file.to_owned()),
    ]
}

fn env_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// What a request sends as its credentials.
#[derive(Clone, Copy)]
enum Auth<'a> {
    None,
    Bearer(&'a str),
    /// The session cookie, and the X-CSRF-Token header if any.
    Cookie(&'a str, Option<&'a str>),
}

fn with(rb: reqwest::RequestBuilder, auth: Auth<'_>) -> reqwest::RequestBuilder {
    match auth {
        Auth::None => rb,
        Auth::Bearer(t) => rb.header(AUTHORIZATION, format!("Bearer {t}")),
        Auth::Cookie(c, csrf) => {
            let rb = rb.header(COOKIE, format!("docent_session={c}"));
            match csrf {
                Some(t) => rb.header("X-CSRF-Token", t),
                None => rb,
            }
        }
    }
}

async fn search(server: &Server, auth: Auth<'_>) -> reqwest::Response {
    with(server.client.post(server.url("/v1/search")), auth)
        .json(&json!({"query": "linen room", "k": 3}))
        .send()
        .await
        .expect("search")
}

async fn upload(server: &Server, auth: Auth<'_>) -> reqwest::Response {
    let part = reqwest::multipart::Part::bytes(b"# Rooms\n\nThe linen room is on level two.\n".to_vec())
        .file_name("rooms.md")
        .mime_str("text/markdown")
        .expect("mime");
    with(server.client.post(server.url("/v1/documents")), auth)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .expect("upload")
}

async fn get(server: &Server, path: &str, auth: Auth<'_>) -> reqwest::Response {
    with(server.client.get(server.url(path)), auth)
        .send()
        .await
        .expect("get")
}

/// Status, error code and message of a response.
async fn refusal(r: reqwest::Response) -> (u16, String, String) {
    let status = r.status().as_u16();
    let v: Value = r.json().await.expect("error json");
    (
        status,
        v["error"]["code"].as_str().unwrap_or("").to_owned(),
        v["error"]["message"].as_str().unwrap_or("").to_owned(),
    )
}

/// The `docent_session` Set-Cookie header of a response.
fn session_set_cookie(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("docent_session="))
        .map(str::to_owned)
}

/// The attributes of a Set-Cookie value, lower-cased (`name=value` first).
fn cookie_attrs(set_cookie: &str) -> Vec<String> {
    set_cookie.split(';').map(|a| a.trim().to_ascii_lowercase()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_tokens_roles_groups_and_sessions() {
    let data = tempfile::tempdir().expect("tempdir");
    let jwks = fixture("jwks.json");
    let mut env = oidc_env(jwks.to_str().expect("utf-8 path"));
    env.push(("DOCENT__ACCESS__REQUIRE_AUTH", "true".to_owned()));
    let server = Server::start(data.path(), &env_refs(&env)).await;

    // An editor's token uploads; the document becomes searchable.
    let alice = rs256(&claims("alice", &["everyone"], "editor"));
    let r = upload(&server, Auth::Bearer(&alice)).await;
    assert_eq!(r.status(), 202);
    let job = r.json::<Value>().await.expect("upload json")["job_id"]
        .as_str()
        .expect("job id")
        .to_owned();
    let mut status = String::new();
    for _ in 0..600 {
        let j: Value = get(&server, &format!("/v1/jobs/{job}"), Auth::Bearer(&alice))
            .await
            .json()
            .await
            .expect("job json");
        status = j["status"].as_str().unwrap_or("").to_owned();
        if status == "ready" || status == "failed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, "ready");

    // A reader's token searches (and its groups apply) but cannot upload.
    let bob = rs256(&claims("bob", &["everyone"], "reader"));
    let r = search(&server, Auth::Bearer(&bob)).await;
    assert_eq!(r.status(), 200);
    let hits = r.json::<Value>().await.expect("search json")["hits"]
        .as_array()
        .map_or(0, Vec::len);
    assert!(hits > 0, "bob (group everyone) finds the document");
    let (s, code, _) = refusal(upload(&server, Auth::Bearer(&bob)).await).await;
    assert_eq!((s, code.as_str()), (403, "forbidden"));
    let carol = rs256(&claims("carol", &["radiology"], "reader"));
    let r = search(&server, Auth::Bearer(&carol)).await;
    assert_eq!(r.status(), 200);
    let hits = r.json::<Value>().await.expect("search json")["hits"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(hits, 0, "carol's groups do not include the document's label");
    // No role claim: reader. ES256 keys work too.
    let mut dave = claims("dave", &["everyone"], "reader");
    dave.as_object_mut().expect("object").remove("docent_role");
    let dave = sign(&dave, Algorithm::ES256, "issuer-ec.pem", "test-ec");
    assert_eq!(search(&server, Auth::Bearer(&dave)).await.status(), 200);
    let (s, code, _) = refusal(upload(&server, Auth::Bearer(&dave)).await).await;
    assert_eq!((s, code.as_str()), (403, "forbidden"));

    // Every failed check is a 401 that names the check.
    let base = claims("mallory", &["everyone"], "admin");
    let edited = |key: &str, value: Value| {
        let mut c = base.clone();
        c[key] = value;
        c
    };
    let mut no_sub = base.clone();
    no_sub.as_object_mut().expect("object").remove("sub");
    let cases: Vec<(&str, String, &str)> = vec![
        ("expired", rs256(&edited("exp", json!(now() - 3600))), "expired"),
        (
            "not yet valid",
            rs256(&edited("nbf", json!(now() + 3600))),
            "not valid yet",
        ),
        (
            "foreign issuer",
            rs256(&edited("iss", json!("https://evil.test"))),
            "issuer",
        ),
        (
            "wrong audience",
            rs256(&edited("aud", json!("another-app"))),
            "audience",
        ),
        (
            "foreign key, same kid",
            sign(&base, Algorithm::RS256, "foreign-rsa.pem", "test-rsa"),
            "signature",
        ),
        (
            "unknown kid",
            sign(&base, Algorithm::RS256, "foreign-rsa.pem", "someone-else"),
            "kid",
        ),
        (
            "RSA key for ES256",
            sign(&base, Algorithm::ES256, "issuer-ec.pem", "test-rsa"),
            "algorithm",
        ),
        ("alg none", unsigned(&base), "algorithm"),
        ("HS256", hs256(&base), "algorithm"),
        ("no sub", rs256(&no_sub), "sub"),
    ];
    for (what, token, reason) in &cases {
        let r = search(&server, Auth::Bearer(token)).await;
        assert_eq!(
            r.headers().get("www-authenticate").map(|v| v.as_bytes()),
            Some(&b"Bearer"[..]),
            "{what}"
        );
        let (s, code, message) = refusal(r).await;
        assert_eq!((s, code.as_str()), (401, "unauthorized"), "{what}: {message}");
        assert!(message.contains(reason), "{what}: {message}");
        assert!(!message.contains(token.as_str()), "{what}: the token is not echoed");
    }

    // Sign in to the web chat: the session cookie is HttpOnly, Secure and
    // SameSite=Strict; the CSRF token comes in the body.
    let r = server
        .client
        .post(server.url("/auth/session"))
        .header(AUTHORIZATION, format!("Bearer {alice}"))
        .send()
        .await
        .expect("sign in");
    assert_eq!(r.status(), 201);
    let set_cookie = session_set_cookie(&r).expect("Set-Cookie docent_session");
    let attrs = cookie_attrs(&set_cookie);
    for want in ["httponly", "secure", "samesite=strict", "path=/", "max-age=28800"] {
        assert!(attrs.iter().any(|a| a == want), "{want} in {set_cookie}");
    }
    let cookie = set_cookie
        .split(';')
        .next()
        .and_then(|kv| kv.strip_prefix("docent_session="))
        .expect("cookie value")
        .to_owned();
    assert!(cookie.len() >= 43, "256 random bits");
    let body: Value = r.json().await.expect("session json");
    assert_eq!(body["user"], "alice");
    assert_eq!(body["role"], "editor");
    assert_eq!(body["groups"], json!(["everyone"]));
    assert!(body["expires_at"].is_string());
    let csrf = body["csrf_token"].as_str().expect("csrf token").to_owned();

    // The ID token in a JSON body works too; an expired one does not.
    let r = server
        .client
        .post(server.url("/auth/session"))
        .json(&json!({"id_token": rs256(&claims("erin", &["everyone"], "reader"))}))
        .send()
        .await
        .expect("sign in");
    assert_eq!(r.status(), 201);
    let r = server
        .client
        .post(server.url("/auth/session"))
        .json(&json!({"id_token": cases[0].1}))
        .send()
        .await
        .expect("sign in");
    let (s, code, message) = refusal(r).await;
    assert_eq!((s, code.as_str()), (401, "unauthorized"), "{message}");

    // Reading by cookie needs no CSRF token; a state change does.
    assert_eq!(
        get(&server, "/v1/documents", Auth::Cookie(&cookie, None))
            .await
            .status(),
        200
    );
    let (s, code, _) = refusal(search(&server, Auth::Cookie(&cookie, None)).await).await;
    assert_eq!((s, code.as_str()), (403, "csrf_failed"));
    let wrong = "0".repeat(csrf.len());
    let (s, code, _) = refusal(search(&server, Auth::Cookie(&cookie, Some(&wrong))).await).await;
    assert_eq!((s, code.as_str()), (403, "csrf_failed"));
    let (s, code, _) = refusal(upload(&server, Auth::Cookie(&cookie, None)).await).await;
    assert_eq!((s, code.as_str()), (403, "csrf_failed"));
    assert_eq!(search(&server, Auth::Cookie(&cookie, Some(&csrf))).await.status(), 200);
    // Bearer credentials are not ambient: no CSRF token needed.
    assert_eq!(search(&server, Auth::Bearer(&alice)).await.status(), 200);

    // Who is signed in (the CSRF token again, e.g. after a page reload);
    // without a cookie, nobody (204).
    assert_eq!(get(&server, "/auth/session", Auth::None).await.status(), 204);
    let r = get(&server, "/auth/session", Auth::Cookie(&cookie, None)).await;
    assert_eq!(r.status(), 200);
    let who: Value = r.json().await.expect("session json");
    assert_eq!(
        (who["user"].as_str(), who["csrf_token"].as_str()),
        (Some("alice"), Some(csrf.as_str()))
    );

    // Signing out needs the CSRF token, clears the cookie, and the old
    // cookie is refused from then on (and cleared again).
    let r = with(
        server.client.delete(server.url("/auth/session")),
        Auth::Cookie(&cookie, None),
    )
    .send()
    .await
    .expect("sign out");
    let (s, code, _) = refusal(r).await;
    assert_eq!((s, code.as_str()), (403, "csrf_failed"));
    let r = with(
        server.client.delete(server.url("/auth/session")),
        Auth::Cookie(&cookie, Some(&csrf)),
    )
    .send()
    .await
    .expect("sign out");
    assert_eq!(r.status(), 204);
    let cleared = session_set_cookie(&r).expect("clearing Set-Cookie");
    assert!(cookie_attrs(&cleared).contains(&"max-age=0".to_owned()), "{cleared}");
    let r = get(&server, "/v1/documents", Auth::Cookie(&cookie, None)).await;
    assert!(session_set_cookie(&r).is_some(), "a stale cookie is cleared");
    let (s, code, _) = refusal(r).await;
    assert_eq!((s, code.as_str()), (401, "unauthorized"));
    let (s, _, _) = refusal(get(&server, "/auth/session", Auth::Cookie(&cookie, None)).await).await;
    assert_eq!(s, 401);
    let (s, _, _) = refusal(get(&server, "/v1/documents", Auth::Cookie("made-up", None)).await).await;
    assert_eq!(s, 401);
    drop(server);

    // Sign-in and sign-out are in the audit trail; only hashes of the
    // session and CSRF tokens are in the database.
    let out = docent(data.path(), &["audit", "export"]);
    assert!(out.status.success());
    let who: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json"))
        .map(|l| {
            (
                l["actor"].as_str().unwrap_or("").to_owned(),
                l["action"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    for want in [
        ("alice", "session.create"),
        ("erin", "session.create"),
        ("alice", "session.delete"),
    ] {
        assert!(
            who.contains(&(want.0.to_owned(), want.1.to_owned())),
            "{want:?} in {who:?}"
        );
    }
    assert!(who.contains(&("bob".to_owned(), "search".to_owned())), "{who:?}");
    let db = std::fs::read(data.path().join("docent.db")).expect("db");
    for secret in [&cookie, &csrf] {
        assert!(!db.windows(secret.len()).any(|w| w == secret.as_bytes()));
    }
}

/// Serves whatever JWKS `body` holds over plain HTTP (the issuer's
/// `jwks_uri` stand-in) and counts requests.
async fn jwks_server(body: Arc<Mutex<String>>, hits: Arc<Mutex<usize>>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let body = body.lock().expect("lock").clone();
            *hits.lock().expect("lock") += 1;
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    format!("http://{addr}/realms/staff/certs")
}

/// Keys fetched from the issuer's URL; a token naming a key published
/// later makes docent fetch again (rotation). Without required sign-in,
/// placeholder keys are ignored but a JWT is always checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_from_a_url_follow_rotation() {
    let body = Arc::new(Mutex::new(std::fs::read_to_string(fixture("jwks.json")).expect("jwks")));
    let hits = Arc::new(Mutex::new(0));
    let url = jwks_server(Arc::clone(&body), Arc::clone(&hits)).await;
    let data = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        data.path(),
        &[
            ("DOCENT__ACCESS__OIDC__ISSUER", ISSUER),
            ("DOCENT__ACCESS__OIDC__AUDIENCE", AUDIENCE),
            ("DOCENT__ACCESS__OIDC__JWKS_URL", &url),
            ("DOCENT__ACCESS__OIDC__JWKS_REFRESH_SECS", "0"),
        ],
    )
    .await;
    assert_eq!(*hits.lock().expect("lock"), 1, "fetched once at startup");

    let rotated = sign(
        &claims("frank", &["everyone"], "reader"),
        Algorithm::RS256,
        "foreign-rsa.pem",
        "rotated-rsa",
    );
    let (s, _, message) = refusal(search(&server, Auth::Bearer(&rotated)).await).await;
    assert_eq!(s, 401);
    assert!(message.contains("kid"), "{message}");
    assert_eq!(*hits.lock().expect("lock"), 2, "an unknown kid fetches the keys again");
    *body.lock().expect("lock") = std::fs::read_to_string(fixture("jwks-rotated.json")).expect("jwks");
    assert_eq!(search(&server, Auth::Bearer(&rotated)).await.status(), 200);
    // Keys already known are not fetched again.
    let known = rs256(&claims("frank", &["everyone"], "reader"));
    assert_eq!(search(&server, Auth::Bearer(&known)).await.status(), 200);
    assert_eq!(*hits.lock().expect("lock"), 3);

    // Sign-in not required: no credentials or an OpenAI placeholder key run
    // as the local user; an invalid JWT is refused all the same.
    assert_eq!(search(&server, Auth::None).await.status(), 200);
    assert_eq!(search(&server, Auth::Bearer("unused")).await.status(), 200);
    let expired = rs256(&json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": now() - 3600,
    }));
    let (s, code, _) = refusal(search(&server, Auth::Bearer(&expired)).await).await;
    assert_eq!((s, code.as_str()), (401, "unauthorized"));
}

/// A sign-in configuration that cannot work stops `serve` at once, naming
/// the setting or the file.
#[test]
fn misconfigured_oidc_stops_startup() {
    let data = tempfile::tempdir().expect("tempdir");
    let missing = data.path().join("no-such-jwks.json");
    let missing = missing.to_str().expect("utf-8 path");
    let cases: [(Vec<(&str, &str)>, &str); 3] = [
        (
            vec![
                ("DOCENT__ACCESS__OIDC__ISSUER", ISSUER),
                ("DOCENT__ACCESS__OIDC__AUDIENCE", AUDIENCE),
                ("DOCENT__ACCESS__OIDC__JWKS_FILE", missing),
            ],
            "no-such-jwks.json",
        ),
        (
            vec![
                ("DOCENT__ACCESS__OIDC__ISSUER", ISSUER),
                ("DOCENT__ACCESS__OIDC__JWKS_FILE", missing),
            ],
            "access.oidc.audience",
        ),
        (
            vec![
                ("DOCENT__ACCESS__OIDC__ISSUER", ISSUER),
                ("DOCENT__ACCESS__OIDC__AUDIENCE", AUDIENCE),
            ],
            "jwks_file",
        ),
    ];
    for (env, expect) in cases {
        let out = command_with(data.path(), &env)
            .args(["serve", "--port", "0"])
            .output()
            .expect("run docent serve");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{expect}: serve must refuse");
        assert!(stderr.contains(expect), "{expect}: {stderr}");
    }
}
