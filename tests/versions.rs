//! Versions and deletes through the real pipeline (real models, SQLite,
//! qdrant-edge, tantivy): a changed file replaces its old version
//! atomically, identical bytes are a no-op, and the stores agree after.

mod common;

use docent::app::Components;
use docent::config::Config;
use docent_core::{AccessFilter, DocStatus, Principal};
use docent_ingest::pipeline::{NewDocument, Submitted};
use docent_retrieve::search::Mode;

fn new_doc(text: &str) -> NewDocument {
    NewDocument {
        bytes: text.as_bytes().to_vec(),
        file_name: "policy.md".into(),
        source: "/shares/policies/policy.md".into(),
        collection: "default".into(),
        access: vec!["everyone".into()],
        title: None,
        tags: Vec::new(),
        date: None,
    }
}

async fn texts(c: &Components, query: &str) -> Vec<String> {
    let f = AccessFilter::for_principal(&Principal::default_user());
    let mut out = Vec::new();
    for mode in [Mode::Bm25, Mode::Dense, Mode::Hybrid] {
        for h in c.searcher.search(query, &f, 10, mode).await.expect("search").hits {
            out.push(h.chunk.text);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_file_replaces_old_version_atomically() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut cfg = Config::default();
    cfg.storage.data_dir = data.path().to_path_buf();
    cfg.models.dir = common::models_dir();
    let c = Components::build(&cfg).await.expect("components");
    let noop = |_: uuid::Uuid, _: DocStatus, _: f32| {};

    let Submitted::Queued { doc: v1, job } = c
        .ingestor
        .submit(new_doc("# Badges\n\nThe visitor badge colour is green."))
        .await
        .expect("submit v1")
    else {
        panic!("v1 should be new");
    };
    c.ingestor.run(job.id, v1.id, &noop).await.expect("run v1");
    assert!(texts(&c, "visitor badge colour")
        .await
        .iter()
        .any(|t| t.contains("green")));

    // Identical bytes: nothing new.
    let again = c
        .ingestor
        .submit(new_doc("# Badges\n\nThe visitor badge colour is green."))
        .await
        .expect("submit again");
    assert!(matches!(again, Submitted::Duplicate { ref doc } if doc.id == v1.id));

    // A changed file: until its job finishes, searches see the old version only.
    let Submitted::Queued { doc: v2, job } = c
        .ingestor
        .submit(new_doc("# Badges\n\nThe visitor badge colour is purple."))
        .await
        .expect("submit v2")
    else {
        panic!("v2 should be new");
    };
    assert_eq!(v2.supersedes, Some(v1.id));
    let before = texts(&c, "visitor badge colour").await;
    assert!(before.iter().all(|t| !t.contains("purple")), "{before:?}");
    assert!(before.iter().any(|t| t.contains("green")), "{before:?}");

    c.ingestor.run(job.id, v2.id, &noop).await.expect("run v2");
    let after = texts(&c, "visitor badge colour").await;
    assert!(after.iter().any(|t| t.contains("purple")), "{after:?}");
    assert!(after.iter().all(|t| !t.contains("green")), "{after:?}");
    let docs = c
        .store
        .list_documents(&["everyone".to_owned()], &[])
        .await
        .expect("list");
    assert_eq!(docs.iter().map(|d| d.id).collect::<Vec<_>>(), vec![v2.id]);
    assert!(c.store.get_document(v1.id).await.expect("get").is_none());
    // The old version's blob went with it; the new one's stays.
    assert!(!data.path().join("blobs").join(&v1.content_hash).exists());
    assert!(data.path().join("blobs").join(&v2.content_hash).exists());

    // SQL and both indexes agree by chunk id.
    let ids = c.store.ready_chunk_ids().await.expect("ids");
    let report = c.consistency(&ids).expect("consistency");
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.sql, 1);

    // Delete reaches every store.
    assert!(c.ingestor.delete(v2.id).await.expect("delete"));
    assert!(texts(&c, "visitor badge colour").await.is_empty());
    let report = c.consistency(&[]).expect("consistency");
    assert!(report.ok() && report.vectors == 0 && report.keywords == 0, "{report:?}");
}
