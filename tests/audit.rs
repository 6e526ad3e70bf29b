//! The audit trail through the real server: searches, chats, answers and
//! document changes are recorded with the query, the chunks retrieved, the
//! access decision and the citations; `docent audit verify` accepts the
//! chain and reports a row edited directly in the database; `docent audit
//! export` writes JSON lines.

mod common;

use common::{docent, make_pdf, Server, CLINIC_PAGE1, CLINIC_PAGE2, CLINIC_PAGE3};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_search_and_answer_is_audited_and_tampering_is_detected() {
    let data = tempfile::tempdir().expect("tempdir");
    let server = Server::start(data.path(), &[]).await;
    let pdf = make_pdf(&[CLINIC_PAGE1, CLINIC_PAGE2, CLINIC_PAGE3]);
    let doc = server.ingest("clinic-guide.pdf", pdf, "application/pdf").await;
    let hits = server.search("quarantine period Zorblax fever", "hybrid").await;
    assert_eq!(hits[0]["document_id"], doc.as_str());
    let top_chunk = hits[0]["chunk_id"].as_str().expect("chunk id").to_owned();
    // A query carrying PHI: the audit record keeps its shape, not the data.
    server
        .search(
            "quarantine for patient: John Doe, DOB: 03/12/1980, jane.doe@example.org",
            "bm25",
        )
        .await;
    // A question nothing covers: retrieval runs, the model does not.
    let events = server
        .chat(serde_json::json!({"question": "What is the boiling point of tungsten in kelvin?"}))
        .await;
    assert!(events.iter().any(|(e, _)| e == "done"), "{events:?}");
    let r = server
        .client
        .delete(server.url(&format!("/v1/documents/{doc}")))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 204);
    drop(server);

    let out = docent(data.path(), &["audit", "verify"]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("verify json");
    assert!(out.status.success(), "{v}");
    assert_eq!(v["ok"], true);

    let export = data.path().join("audit.jsonl");
    let out = docent(
        data.path(),
        &["audit", "export", "--out", export.to_str().expect("utf-8")],
    );
    assert!(out.status.success());
    let records: Vec<Value> = std::fs::read_to_string(&export)
        .expect("export")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(records.len() as u64, v["records"].as_u64().expect("count"));
    let actions: Vec<&str> = records.iter().filter_map(|r| r["action"].as_str()).collect();
    assert_eq!(
        actions,
        [
            "document.upload",
            "search",
            "search",
            "chat",
            "answer",
            "document.delete"
        ],
        "{records:?}"
    );
    let search = &records[1];
    assert_eq!(search["actor"], "local");
    assert_eq!(search["detail"]["query"], "quarantine period Zorblax fever");
    assert!(search["detail"]["access"]["groups"].is_array(), "{search}");
    let ids: Vec<&str> = search["detail"]["chunk_ids"]
        .as_array()
        .expect("chunk ids")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(ids.contains(&top_chunk.as_str()), "{search}");
    assert_eq!(
        records[2]["detail"]["query"], "quarantine for [NAME], [DOB], [EMAIL]",
        "PHI masked in the audit trail (access.redact_audit = healthcare)"
    );
    assert_eq!(records[4]["detail"]["abstained"], true);
    assert!(records[4]["detail"]["model"].is_string());
    assert!(records.windows(2).all(|w| w[1]["prev_hash"] == w[0]["hash"]));

    // Someone edits the search record directly in the database.
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}", data.path().join("docent.db").display());
    let pool = sqlx::AnyPool::connect(&url).await.expect("open the database");
    let seq = search["seq"].as_i64().expect("seq");
    let raw = search["detail_raw"].as_str().expect("raw detail");
    let edited = raw.replace("Zorblax", "Zorbl4x");
    assert_ne!(raw, edited);
    sqlx::query("UPDATE audit_log SET detail = $1 WHERE seq = $2")
        .bind(edited)
        .bind(seq)
        .execute(&pool)
        .await
        .expect("tamper");
    pool.close().await;
    let out = docent(data.path(), &["audit", "verify"]);
    assert!(!out.status.success(), "an edited record must fail verification");
    let v: Value = serde_json::from_slice(&out.stdout).expect("verify json");
    assert_eq!(v["ok"], false);
    assert_eq!(v["first_bad_seq"], seq, "{v}");
}
