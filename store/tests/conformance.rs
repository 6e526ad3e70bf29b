//! One conformance suite for the SQL store, run against SQLite and against
//! PostgreSQL (a fresh database per run on 127.0.0.1:5432, or
//! `DOCENT_TEST_POSTGRES_URL`).

use docent_core::{now_rfc3339, Chunk, DocStatus, Document, Job, SourceKind};
use docent_store::{Backend, Store};
use uuid::Uuid;

fn doc(collection: &str, hash: &str, access: &[&str]) -> Document {
    let now = now_rfc3339();
    Document {
        id: Uuid::now_v7(),
        collection: collection.into(),
        title: "Title".into(),
        source: "a.txt".into(),
        kind: SourceKind::Text,
        content_hash: hash.into(),
        size_bytes: 10,
        pages: None,
        access: access.iter().map(|s| (*s).to_owned()).collect(),
        status: DocStatus::Queued,
        error: None,
        chunk_count: 0,
        supersedes: None,
        parent_id: None,
        tags: vec!["policy".into()],
        date: Some("2024-03-01".into()),
        created_at: now.clone(),
        updated_at: now,
    }
}

fn chunk(doc_id: Uuid, ordinal: u32, page: Option<u32>) -> Chunk {
    Chunk {
        id: Uuid::now_v7(),
        doc_id,
        ordinal,
        text: format!("chunk {ordinal} ünïcode"),
        page,
        heading_path: vec!["H1".into(), "H2".into()],
        char_start: ordinal * 10,
        char_end: ordinal * 10 + 9,
        token_count: 4,
    }
}

async fn suite(store: Store) {
    // Documents round-trip.
    let d = doc("c1", "h1", &["everyone"]);
    store.insert_document(&d).await.expect("insert");
    let got = store.get_document(d.id).await.expect("get").expect("exists");
    assert_eq!(got, d);
    assert!(store.get_document(Uuid::now_v7()).await.expect("get").is_none());

    // Hash lookup is per collection and ignores failed documents.
    assert_eq!(
        store.find_by_hash("c1", "h1").await.expect("find").map(|x| x.id),
        Some(d.id)
    );
    assert!(store.find_by_hash("c2", "h1").await.expect("find").is_none());

    // Jobs.
    let job = Job::queued(d.id);
    store.insert_job(&job).await.expect("job");
    store
        .update_job(job.id, DocStatus::Embedding, 0.5, None)
        .await
        .expect("update");
    let j = store.get_job(job.id).await.expect("get job").expect("job exists");
    assert_eq!(j.status, DocStatus::Embedding);
    assert!((j.progress - 0.5).abs() < 1e-6);
    assert_eq!(
        store.latest_job(d.id).await.expect("latest").map(|j| j.id),
        Some(job.id)
    );

    // Chunks are written atomically and hidden until the document is ready.
    let chunks = vec![chunk(d.id, 0, Some(1)), chunk(d.id, 1, Some(2))];
    store.put_chunks(&d, Some(2), &chunks).await.expect("put chunks");
    let got = store.get_document(d.id).await.expect("get").expect("exists");
    assert_eq!(got.status, DocStatus::Indexing);
    assert_eq!(got.chunk_count, 2);
    assert_eq!(got.pages, Some(2));
    let ids: Vec<Uuid> = chunks.iter().map(|c| c.id).collect();
    assert!(store.hydrate(&ids).await.expect("hydrate").is_empty(), "not ready yet");
    assert_eq!(store.unfinished_documents().await.expect("unfinished").len(), 1);
    store.set_status(d.id, DocStatus::Ready, None).await.expect("ready");
    let rows = store.hydrate(&ids).await.expect("hydrate");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[&chunks[1].id].0, chunks[1]);
    assert_eq!(rows[&chunks[1].id].1.id, d.id);
    // Reindexing carries tags and the document's own date (2024-03-01 UTC).
    let with_access = store.ready_chunks_with_access().await.expect("with access");
    let mine: Vec<_> = with_access.iter().filter(|r| r.chunk.doc_id == d.id).collect();
    assert_eq!(mine.len(), 2);
    assert_eq!(mine[0].tags, vec!["policy".to_owned()]);
    assert_eq!(mine[0].date, 1_709_251_200);
    assert_eq!(got.effective_date(), 1_709_251_200);
    // A collection is known to hold ready documents, or not.
    assert!(store.any_ready_in(&["c1".into()]).await.expect("any ready"));
    assert!(!store.any_ready_in(&["nowhere".into()]).await.expect("none ready"));
    assert_eq!(store.chunks_of(d.id).await.expect("chunks"), chunks);
    assert_eq!(store.ready_chunk_ids().await.expect("ids").len(), 2);
    let with_access = store.ready_chunks_with_access().await.expect("with access");
    assert_eq!(with_access[0].access, vec!["everyone".to_owned()]);
    assert_eq!(with_access[0].collection, "c1");

    // Replacing chunks replaces, never duplicates.
    let again = vec![chunk(d.id, 0, Some(1))];
    store.put_chunks(&d, Some(1), &again).await.expect("put again");
    assert_eq!(store.chunks_of(d.id).await.expect("chunks").len(), 1);
    store.set_status(d.id, DocStatus::Ready, None).await.expect("ready");

    // Listing respects labels and collections.
    let secret = doc("c1", "h2", &["hr"]);
    store.insert_document(&secret).await.expect("insert");
    let everyone = vec!["everyone".to_owned()];
    let listed = store.list_documents(&everyone, &[]).await.expect("list");
    assert_eq!(listed.iter().map(|x| x.id).collect::<Vec<_>>(), vec![d.id]);
    let hr = vec!["hr".to_owned(), "everyone".to_owned()];
    assert_eq!(store.list_documents(&hr, &[]).await.expect("list").len(), 2);
    assert!(store
        .list_documents(&hr, &["c9".to_owned()])
        .await
        .expect("list")
        .is_empty());
    assert!(store.list_documents(&[], &[]).await.expect("list").is_empty());

    // Failed documents do not count as duplicates.
    store
        .set_status(secret.id, DocStatus::Failed, Some("malformed: x"))
        .await
        .expect("fail");
    assert!(store.find_by_hash("c1", "h2").await.expect("find").is_none());
    assert!(store.find_any_by_hash("h2").await.expect("find").is_some());

    // Delete removes the document, its chunks and its jobs.
    assert!(store.delete_document(d.id).await.expect("delete"));
    assert!(!store.delete_document(d.id).await.expect("delete twice"));
    assert!(store.get_document(d.id).await.expect("get").is_none());
    assert!(store.chunks_of(d.id).await.expect("chunks").is_empty());
    assert!(store.get_job(job.id).await.expect("job").is_none());
    store.ping().await.expect("ping");

    // Children (attachments) name their carrier.
    let carrier = doc("c9", "mail", &["everyone"]);
    store.insert_document(&carrier).await.expect("carrier");
    let child = Document {
        parent_id: Some(carrier.id),
        ..doc("c9", "attachment", &["everyone"])
    };
    store.insert_document(&child).await.expect("child");
    let children = store.children_of(carrier.id).await.expect("children");
    assert_eq!(children.iter().map(|d| d.id).collect::<Vec<_>>(), vec![child.id]);
    assert_eq!(children[0].parent_id, Some(carrier.id));
    assert!(store.children_of(child.id).await.expect("none").is_empty());

    // Versions: the newest ready version of a source wins, atomically.
    let v1 = doc("c1", "v1", &["everyone"]);
    store.insert_document(&v1).await.expect("v1");
    assert!(store.commit_ready(v1.id).await.expect("commit v1").is_empty());
    assert_eq!(
        store
            .find_ready_by_source("c1", "a.txt")
            .await
            .expect("by source")
            .map(|d| d.id),
        Some(v1.id)
    );
    let v2 = Document {
        supersedes: Some(v1.id),
        ..doc("c1", "v2", &["everyone"])
    };
    let v3 = Document {
        supersedes: Some(v1.id),
        ..doc("c1", "v3", &["everyone"])
    };
    store.insert_document(&v2).await.expect("v2");
    store.insert_document(&v3).await.expect("v3");
    assert_eq!(
        store.get_document(v2.id).await.expect("get").and_then(|d| d.supersedes),
        Some(v1.id)
    );
    // v3 finishes first and replaces v1; v2 finishing later is stale.
    assert_eq!(
        store.commit_ready(v3.id).await.expect("commit v3"),
        vec![(v1.id, "v1".to_owned())]
    );
    assert_eq!(
        store.commit_ready(v2.id).await.expect("commit v2"),
        vec![(v2.id, "v2".to_owned())]
    );
    assert!(store.get_document(v1.id).await.expect("get").is_none());
    assert!(store.get_document(v2.id).await.expect("get").is_none());
    assert_eq!(
        store
            .find_ready_by_source("c1", "a.txt")
            .await
            .expect("by source")
            .map(|d| d.id),
        Some(v3.id)
    );
}

fn job_for(doc_id: Uuid) -> Job {
    Job::queued(doc_id)
}

/// Job claims and the change log: what lets replicas share the store.
async fn replication_suite(store: Store) {
    use docent_store::ChangeOp;
    use std::collections::HashSet;

    // Whatever the main suite left claimable is cleared first.
    while let Some(c) = store.claim_job("sweeper", 600).await.expect("sweep") {
        store
            .update_job(c.job_id, DocStatus::Ready, 1.0, None)
            .await
            .expect("done");
    }
    assert_eq!(store.claimable_jobs().await.expect("depth"), 0);

    // 24 jobs, 4 workers claiming concurrently: every job exactly once.
    let mut ids = HashSet::new();
    for i in 0..24 {
        let d = doc("claims", &format!("claim{i}"), &["everyone"]);
        store.insert_document(&d).await.expect("doc");
        let j = job_for(d.id);
        store.insert_job(&j).await.expect("job");
        ids.insert(j.id);
    }
    assert_eq!(store.claimable_jobs().await.expect("depth"), 24);
    let mut tasks = Vec::new();
    for w in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(c) = store.claim_job(&format!("w{w}"), 600).await.expect("claim") {
                assert_eq!(c.attempt, 1);
                mine.push(c.job_id);
            }
            mine
        }));
    }
    let mut claimed = Vec::new();
    for t in tasks {
        claimed.extend(t.await.expect("join"));
    }
    assert_eq!(claimed.len(), 24, "each job claimed once");
    assert_eq!(claimed.iter().copied().collect::<HashSet<_>>(), ids);
    assert_eq!(store.claimable_jobs().await.expect("depth"), 0);
    // A job whose holder has others too (how the 24 spread over the four
    // workers depends on scheduling).
    let mut by_worker: std::collections::HashMap<String, Vec<Uuid>> = std::collections::HashMap::new();
    for id in &claimed {
        let j = store.get_job(*id).await.expect("get").expect("job");
        let w = j.worker.clone().expect("claimed job has a worker");
        assert!(w.starts_with('w'), "{j:?}");
        by_worker.entry(w).or_default().push(*id);
    }
    let first = by_worker
        .values()
        .find(|ids| ids.len() >= 2)
        .map(|ids| ids[0])
        .expect("24 jobs over 4 workers: one holds two");
    let j = store.get_job(first).await.expect("get").expect("job");

    // Handing back makes a job claimable again; renewing keeps the rest.
    let holder = j.worker.clone().expect("worker");
    assert!(store.release_job(first, &holder).await.expect("release"));
    assert!(!store.release_job(first, &holder).await.expect("release twice"));
    assert!(store.renew_all(&holder, 600).await.expect("renew") >= 1);
    let again = store.claim_job("w9", 600).await.expect("claim").expect("released job");
    assert_eq!(again.job_id, first);
    assert!(store.claim_job("w9", 600).await.expect("claim").is_none());

    // A lease that ran out (its replica died) lets another replica take over.
    let d = doc("claims", "expired", &["everyone"]);
    store.insert_document(&d).await.expect("doc");
    let j = job_for(d.id);
    store.insert_job(&j).await.expect("job");
    let c = store.claim_job("dead", -1).await.expect("claim").expect("job");
    assert_eq!(c.job_id, j.id);
    assert!(!store.renew_lease(j.id, "alive", 60).await.expect("renew not ours"));
    let c2 = store.claim_job("alive", 600).await.expect("claim").expect("taken over");
    assert_eq!((c2.job_id, c2.attempt), (j.id, 2));
    assert!(store.renew_lease(j.id, "alive", 60).await.expect("renew"));
    assert!(store.claim_job("other", 600).await.expect("claim").is_none());
    assert_eq!(store.release_claims_of("alive").await.expect("release all"), 1);
    store
        .update_job(j.id, DocStatus::Failed, 1.0, Some("x"))
        .await
        .expect("fail");

    // Jobs inserted already claimed (the CLI) are not claimable.
    let d = doc("claims", "cli", &["everyone"]);
    store.insert_document(&d).await.expect("doc");
    store
        .insert_job_claimed(&job_for(d.id), "cli", 600)
        .await
        .expect("claimed");
    assert!(store.claim_job("server", 600).await.expect("claim").is_none());

    // The change log: ready and delete, in commit order.
    let start = store.last_change_seq().await.expect("seq");
    let a = doc("log", "la", &["everyone"]);
    let b = Document {
        source: "b.txt".into(),
        ..doc("log", "lb", &["everyone"])
    };
    store.insert_document(&a).await.expect("a");
    store.insert_document(&b).await.expect("b");
    store
        .put_chunks(&a, Some(1), &[chunk(a.id, 0, Some(1))])
        .await
        .expect("chunks");
    store.commit_ready(a.id).await.expect("ready a");
    store.commit_ready(b.id).await.expect("ready b");
    assert!(store.delete_document(a.id).await.expect("delete a"));
    assert!(!store.delete_document(a.id).await.expect("delete again"));
    store.log_change(b.id, ChangeOp::Delete).await.expect("log");
    let log = store.changes_since(start, 100).await.expect("changes");
    let ops: Vec<(Uuid, ChangeOp)> = log.iter().map(|c| (c.doc_id, c.op)).collect();
    assert_eq!(
        ops,
        vec![
            (a.id, ChangeOp::Ready),
            (b.id, ChangeOp::Ready),
            (a.id, ChangeOp::Delete),
            (b.id, ChangeOp::Delete)
        ]
    );
    assert!(log.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(store.last_change_seq().await.expect("seq"), log[3].seq);
    assert_eq!(store.changes_since(log[1].seq, 1).await.expect("page").len(), 1);
    assert!(store.ready_chunks_of(a.id).await.expect("gone").is_empty());

    // Concurrent writers: sequence order is commit order, no gaps seen.
    let before = store.last_change_seq().await.expect("seq");
    let mut tasks = Vec::new();
    for w in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                store.log_change(Uuid::now_v7(), ChangeOp::Delete).await.expect("log");
            }
            w
        }));
    }
    for t in tasks {
        t.await.expect("join");
    }
    let log = store.changes_since(before, 1000).await.expect("changes");
    assert_eq!(log.len(), 40);
    let migrations = store.applied_migrations().await.expect("migrations");
    assert_eq!(migrations.last().map(|(v, _)| *v), Some(10));
}

/// The audit trail: concurrent appends form one chain; an edited or a
/// deleted row is found. `url` opens a second, raw connection to tamper.
async fn audit_suite(store: Store, url: &str) {
    let before = store.verify_audit().await.expect("verify").records;
    let mut tasks = Vec::new();
    for w in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..5 {
                let detail = serde_json::json!({"query": format!("q{w}-{i}"), "chunk_ids": [Uuid::now_v7()]});
                store
                    .audit(&format!("user{w}"), "search", &detail)
                    .await
                    .expect("audit");
            }
        }));
    }
    for t in tasks {
        t.await.expect("join");
    }
    let v = store.verify_audit().await.expect("verify");
    assert!(v.ok, "{v:?}");
    assert_eq!(v.records, before + 20);
    let records = store.audit_records(0, 1000).await.expect("records");
    assert_eq!(
        records.first().map(|r| r.prev_hash.as_str()),
        Some(docent_store::GENESIS)
    );
    assert!(records.windows(2).all(|w| w[1].prev_hash == w[0].hash));
    assert_eq!(v.head, records.last().map(|r| r.hash.clone()).unwrap_or_default());

    let raw = sqlx::AnyPool::connect(url).await.expect("raw connection");
    let victim = &records[records.len() / 2];
    sqlx::query("UPDATE audit_log SET detail = $1 WHERE seq = $2")
        .bind(victim.detail.replace("\"query\":\"q", "\"query\":\"x"))
        .bind(victim.seq)
        .execute(&raw)
        .await
        .expect("tamper");
    let v = store.verify_audit().await.expect("verify");
    assert!(!v.ok);
    assert_eq!(v.first_bad_seq, Some(victim.seq));
    assert!(v.problem.as_deref().is_some_and(|p| p.contains("edited")), "{v:?}");
    sqlx::query("UPDATE audit_log SET detail = $1 WHERE seq = $2")
        .bind(&victim.detail)
        .bind(victim.seq)
        .execute(&raw)
        .await
        .expect("restore");
    assert!(store.verify_audit().await.expect("verify").ok);
    sqlx::query("DELETE FROM audit_log WHERE seq = $1")
        .bind(victim.seq)
        .execute(&raw)
        .await
        .expect("delete a record");
    let v = store.verify_audit().await.expect("verify");
    let next = records[records.len() / 2 + 1].seq;
    assert_eq!((v.ok, v.first_bad_seq), (false, Some(next)), "{v:?}");
    raw.close().await;
}

/// API keys: stored hashed, found by the key, gone once revoked.
async fn keys_suite(store: Store) {
    use docent_core::AccessRole;
    let groups = vec!["ward-a".to_owned(), "everyone".to_owned()];
    let (key, plaintext) = store
        .create_api_key("alice", &groups, AccessRole::Editor)
        .await
        .expect("create");
    assert!(plaintext.starts_with("dk_"));
    let found = store.find_api_key(&plaintext).await.expect("find").expect("live key");
    assert_eq!(found, key);
    assert_eq!(found.principal().groups, groups);
    assert_eq!(found.principal().role, AccessRole::Editor);
    assert!(store.find_api_key("dk_wrong").await.expect("find").is_none());
    let mut tampered = plaintext.clone();
    tampered.pop();
    assert!(store.find_api_key(&tampered).await.expect("find").is_none());
    assert!(store.revoke_api_key(key.id).await.expect("revoke"));
    assert!(!store.revoke_api_key(key.id).await.expect("revoke twice"));
    assert!(store.find_api_key(&plaintext).await.expect("find").is_none());
    let listed = store.list_api_keys().await.expect("list");
    assert!(listed.iter().any(|k| k.id == key.id && k.revoked_at.is_some()));
}

/// Collections and document permissions: inheriting documents follow
/// their collection, explicit ones do not, attachments follow their
/// carrier, chunks carry the same labels, and each change is logged.
async fn access_suite(store: Store) {
    use docent_store::ChangeOp;
    let list = |xs: &[&str]| xs.iter().map(|s| (*s).to_owned()).collect::<Vec<String>>();
    // No row yet: a document naming no labels gets the fallback (the
    // default labels, passed in `access`).
    let plain = doc("wards", "acc1", &["everyone"]);
    assert_eq!(
        store.insert_document_inheriting(&plain).await.expect("insert"),
        list(&["everyone"])
    );
    let (coll, changed) = store
        .put_collection("wards", &list(&["nurses", "doctors"]), true)
        .await
        .expect("put");
    assert_eq!(coll.groups, list(&["nurses", "doctors"]));
    assert!(coll.redact_answers);
    assert_eq!(changed, vec![plain.id], "the inheriting document follows");
    let inherit = doc("wards", "acc2", &["ignored"]);
    assert_eq!(
        store.insert_document_inheriting(&inherit).await.expect("insert"),
        list(&["nurses", "doctors"])
    );
    let explicit = doc("wards", "acc3", &["surgeons"]);
    store.insert_document(&explicit).await.expect("insert");
    let mut child = doc("wards", "acc4", &["surgeons"]);
    child.parent_id = Some(explicit.id);
    store.insert_document(&child).await.expect("insert");
    store
        .put_chunks(&explicit, Some(1), &[chunk(explicit.id, 0, Some(1))])
        .await
        .expect("chunks");
    store
        .put_chunks(&inherit, Some(1), &[chunk(inherit.id, 0, Some(1))])
        .await
        .expect("chunks");

    let before = store.last_change_seq().await.expect("seq");
    let (_, changed) = store
        .put_collection("wards", &list(&["nurses"]), false)
        .await
        .expect("put again");
    let mut want = vec![plain.id, inherit.id];
    want.sort();
    let mut changed = changed;
    changed.sort();
    assert_eq!(changed, want, "explicit documents keep their labels");
    assert_eq!(
        store.get_document(explicit.id).await.expect("get").expect("doc").access,
        list(&["surgeons"])
    );
    let chunks = store.chunks_with_access_of(inherit.id).await.expect("chunks");
    assert_eq!(chunks[0].access, list(&["nurses"]), "chunks carry the new labels");
    let logged = store.changes_since(before, 100).await.expect("changes");
    assert!(logged.iter().all(|c| c.op == ChangeOp::Access));
    assert_eq!(logged.len(), 2);
    assert_eq!(
        store.redacting_collections().await.expect("redacting"),
        Vec::<String>::new()
    );

    // An admin sets explicit labels: the attachment follows, chunks too.
    let ids = store
        .set_document_access(explicit.id, Some(&list(&["legal"])), &list(&["everyone"]))
        .await
        .expect("set")
        .expect("exists");
    assert_eq!(ids, vec![explicit.id, child.id]);
    assert_eq!(
        store.get_document(child.id).await.expect("get").expect("child").access,
        list(&["legal"])
    );
    assert_eq!(
        store.chunks_with_access_of(explicit.id).await.expect("chunks")[0].access,
        list(&["legal"])
    );
    assert_eq!(store.access_inherited(explicit.id).await.expect("flag"), Some(false));
    // Back to inheriting: the collection's groups, and it follows them.
    store
        .set_document_access(explicit.id, None, &list(&["everyone"]))
        .await
        .expect("inherit")
        .expect("exists");
    assert_eq!(store.access_inherited(explicit.id).await.expect("flag"), Some(true));
    assert_eq!(
        store.get_document(explicit.id).await.expect("get").expect("doc").access,
        list(&["nurses"])
    );
    let (_, changed) = store
        .put_collection("wards", &list(&["pharmacy"]), true)
        .await
        .expect("put");
    assert!(changed.contains(&explicit.id) && changed.contains(&child.id));
    assert_eq!(
        store.get_document(child.id).await.expect("get").expect("child").access,
        list(&["pharmacy"])
    );
    assert_eq!(
        store.redacting_collections().await.expect("redacting"),
        list(&["wards"])
    );
    assert!(store
        .set_document_access(Uuid::now_v7(), None, &[])
        .await
        .expect("missing")
        .is_none());
    assert_eq!(store.list_collections().await.expect("list").len(), 1);
}

/// Web-chat sessions: found by the token only, hashes stored, the CSRF
/// token checked, gone once revoked or expired.
async fn sessions_suite(store: Store) {
    use docent_core::{AccessRole, Principal};
    let p = Principal {
        user: "alice".to_owned(),
        groups: vec!["ward-a".to_owned()],
        role: AccessRole::Editor,
    };
    let token = format!("session-{}", Uuid::new_v4());
    let s = store.create_session(&p, &token, 3600).await.expect("create");
    let found = store.find_session(&token).await.expect("find").expect("live session");
    assert_eq!(found, s);
    assert_eq!(found.principal(), p);
    assert!(found.csrf_matches(&s.csrf_token));
    assert!(!found.csrf_matches("wrong"));
    assert!(!found.csrf_matches(&token));
    assert_ne!(s.csrf_token, token);
    assert!(store.find_session("session-wrong").await.expect("find").is_none());
    // Expired (a lifetime of 0 s ends within the current second).
    let old = format!("session-{}", Uuid::new_v4());
    store.create_session(&p, &old, 0).await.expect("create");
    assert!(store.find_session(&old).await.expect("find").is_none());
    assert!(store.revoke_session(s.id).await.expect("revoke"));
    assert!(!store.revoke_session(s.id).await.expect("revoke twice"));
    assert!(store.find_session(&token).await.expect("find").is_none());
}

#[tokio::test]
async fn sqlite_conformance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::connect(&url).await.expect("connect sqlite");
    assert_eq!(store.backend(), Backend::Sqlite);
    suite(store.clone()).await;
    replication_suite(store.clone()).await;
    println!("store conformance: sqlite replication (claims, leases, change log) passed");
    audit_suite(store.clone(), &url).await;
    keys_suite(store.clone()).await;
    sessions_suite(store.clone()).await;
    access_suite(store.clone()).await;
    // Reopening runs migrations idempotently.
    store.close().await;
    Store::connect(&url).await.expect("reopen");
    println!("store conformance: sqlite passed");
}

#[tokio::test]
async fn postgres_conformance() {
    let admin = std::env::var("DOCENT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let name = format!("docent_test_{}", Uuid::new_v4().simple());
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is required (scripts/ensure-postgres.sh): {e}"));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&pool)
        .await
        .expect("create database");
    let url = match admin.rfind('/') {
        Some(i) => format!("{}/{name}", &admin[..i]),
        None => panic!("bad url"),
    };
    let store = Store::connect(&url).await.expect("connect postgres");
    assert_eq!(store.backend(), Backend::Postgres);
    suite(store.clone()).await;
    replication_suite(store.clone()).await;
    println!("store conformance: postgres replication (SKIP LOCKED claims, leases, change log) passed");
    audit_suite(store.clone(), &url).await;
    keys_suite(store.clone()).await;
    sessions_suite(store.clone()).await;
    access_suite(store.clone()).await;
    store.close().await;
    // The server may still count the just-closed sessions for a moment;
    // FORCE (PostgreSQL 13+) ends any that linger.
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&pool)
        .await
        .expect("drop database");
    println!("store conformance: postgres passed");
}
