//! Operations: graceful shutdown on SIGTERM (in-flight ingest handed back,
//! nothing lost), readiness per backend, `docent migrate`, the PostgreSQL
//! serve path end to end, and startup refusing bad configuration with a
//! clear message.

mod common;

use common::{docent, PgDb, Server};
use serde_json::Value;
use std::time::Duration;

fn report(pages: usize) -> String {
    let mut text = String::from("# Ward handbook\n\n");
    for p in 0..pages {
        text.push_str(&format!(
            "Section {p}. The handbook section {p} covers ward staffing, medication rounds, \
             infection audits and discharge planning, with marker zq{p}handbook.\n\n"
        ));
    }
    text
}

async fn upload_md(server: &Server, name: &str, body: String) -> (String, String) {
    let r = server.upload(name, body.into_bytes(), "text/markdown").await;
    assert_eq!(r.status(), 202, "upload {name}");
    let v: Value = r.json().await.expect("json");
    (
        v["id"].as_str().expect("id").to_owned(),
        v["job_id"].as_str().expect("job").to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_back_unfinished_jobs_and_nothing_is_lost() {
    let data = tempfile::tempdir().expect("tempdir");
    // No grace: whatever is in flight at SIGTERM is handed back at once.
    let server = Server::start(data.path(), &[("DOCENT__SERVER__SHUTDOWN_GRACE_SECS", "0")]).await;
    let ready = server.get_json("/readyz").await;
    assert_eq!(ready["status"], "ready", "{ready}");
    for check in ["sql", "vector_index", "keyword_index", "change_log"] {
        assert!(ready["checks"][check].get("error").is_none(), "{check}: {ready}");
    }
    let (doc, job) = upload_md(&server, "handbook.md", report(400)).await;
    let status = server.terminate(Duration::from_secs(60)).await;
    assert!(status.success(), "docent exited with {status} after SIGTERM");

    // A replica that runs no workers sees the job unclaimed: handed back
    // (or never claimed), not stuck under a dead claim, and not lost.
    let idle = Server::start(data.path(), &[("DOCENT__INGEST__WORKERS", "0")]).await;
    let j = idle.get_json(&format!("/v1/jobs/{job}")).await;
    let status = j["status"].as_str().unwrap_or("");
    if status != "ready" {
        assert!(j["worker"].is_null(), "an unfinished job must not stay claimed: {j}");
        assert_ne!(status, "failed", "{j}");
    }
    drop(idle);

    // A replica with workers takes it over and finishes it.
    let server = Server::start(data.path(), &[]).await;
    let done = server.wait_ready(&job).await;
    assert_eq!(done["document_id"], doc.as_str());
    let hits = server.search("zq7handbook", "bm25").await;
    assert_eq!(
        hits.first().map(|h| h["document_id"].clone()),
        Some(Value::from(doc.clone()))
    );
    let status = server.terminate(Duration::from_secs(60)).await;
    assert!(status.success());

    // A clean stop leaves SQL and both indexes in agreement.
    let out = docent(data.path(), &["check"]);
    assert!(out.status.success(), "check: {}", String::from_utf8_lossy(&out.stdout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_serve_path_migrate_and_readiness() {
    let db = PgDb::create().await;
    let data = tempfile::tempdir().expect("tempdir");
    let env = [("DOCENT__STORAGE__DATABASE_URL", db.url.as_str())];

    // `docent migrate` applies the schema and reports it.
    let out = common::command_with(data.path(), &env)
        .arg("migrate")
        .output()
        .expect("migrate");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "migrate: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("schema at migration 10 collections"), "{stdout}");

    let server = Server::start(data.path(), &env).await;
    let ready = server.get_json("/readyz").await;
    assert_eq!(ready["status"], "ready", "{ready}");
    let (doc, job) = upload_md(&server, "pg-handbook.md", report(5)).await;
    let done = server.wait_ready(&job).await;
    assert!(done["worker"].is_string(), "{done}");
    let hits = server.search("zq3handbook", "hybrid").await;
    assert_eq!(hits[0]["document_id"], doc.as_str(), "{hits:?}");
    let status = server.terminate(Duration::from_secs(60)).await;
    assert!(status.success());
    let out = common::command_with(data.path(), &env)
        .arg("check")
        .output()
        .expect("check");
    assert!(out.status.success(), "check: {}", String::from_utf8_lossy(&out.stdout));
    db.drop_db().await;
}

/// Startup refuses what it cannot run with, saying what and where.
#[test]
fn bad_configuration_is_refused_with_a_clear_message() {
    let data = tempfile::tempdir().expect("tempdir");
    let empty_models = tempfile::tempdir().expect("tempdir");
    let missing_model = empty_models.path().to_str().expect("utf-8").to_owned();
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("DOCENT__STORAGE__DATABASE_URL", "mysql://db/docent")],
            "storage.database_url must start with sqlite:, postgres: or postgresql:",
        ),
        (
            vec![("DOCENT__STORAGE__QDRANT_URL", "qdrant:6334")],
            "storage.qdrant_url must be an http(s) URL",
        ),
        (vec![("DOCENT__MODELS__DIR", missing_model.as_str())], "fetch-models.sh"),
        (
            // Nothing listens on port 1: an unreachable PostgreSQL.
            vec![
                (
                    "DOCENT__STORAGE__DATABASE_URL",
                    "postgres://postgres:secret@127.0.0.1:1/docent",
                ),
                ("DOCENT__STORAGE__CONNECT_TIMEOUT_SECS", "5"),
            ],
            // sqlx retries a refused connection until the timeout.
            "the SQL store at postgres://postgres:***@127.0.0.1:1/docent did not answer within 5 s",
        ),
    ];
    for (env, expected) in cases {
        let out = common::command_with(data.path(), &env)
            .args(["serve", "--port", "0"])
            .output()
            .expect("run docent");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{env:?} was accepted");
        assert!(stderr.contains(expected), "{env:?}: expected {expected:?} in\n{stderr}");
        assert!(!stderr.contains("secret"), "a password reached the log: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// `--json-logs` / `DOCENT_JSON_LOGS=1`: every log line is one JSON object
/// with the structured fields kept.
#[test]
fn json_logs_are_one_object_per_line() {
    let data = tempfile::tempdir().expect("tempdir");
    let file = data.path().join("note.md");
    std::fs::write(&file, "# Note\n\nThe linen room is on level two.\n").expect("write");
    let out = common::command_with(data.path(), &[("DOCENT_JSON_LOGS", "1")])
        .args(["ingest", file.to_str().expect("utf-8")])
        .output()
        .expect("run docent");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "no log lines");
    let mut ready = false;
    for line in lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{line}");
        if v["fields"]["message"] == "document ready" {
            assert!(v["fields"]["doc_id"].is_string(), "structured field kept: {line}");
            ready = true;
        }
    }
    assert!(ready, "the ingest logged its document as ready:\n{stderr}");
}
