//! The BM25 keyword index on real storage (tantivy in a temp directory).
//! Filters must be pushed into the queries: a chunk outside the filter never
//! comes back, even when it is the best match. The dense-vector index has
//! its own conformance suite in `vector_index.rs`.

mod common;

use common::{chunk, dated, filter, DAY};
use docent_core::{AccessFilter, KeywordIndex};
use docent_retrieve::keyword::TantivyIndex;
use uuid::Uuid;

#[test]
fn keyword_index_filters_inside_the_query() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (d1, d2, d3) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let public = chunk(d1, "c1", &["everyone"], "The cafeteria opens at seven.");
    let secret = chunk(
        d2,
        "c1",
        &["hr"],
        "Salary bands: cafeteria cafeteria cafeteria staff pay.",
    );
    let other = chunk(d3, "c2", &["everyone"], "Parking rules for the cafeteria lot.");
    {
        let idx = TantivyIndex::open(dir.path()).expect("open");
        idx.upsert(&[public.clone(), secret.clone(), other.clone()])
            .expect("upsert");
        assert_eq!(idx.count().expect("count"), 3);

        let hits = idx
            .search("cafeteria", &filter(&["everyone"], &[]), 10)
            .expect("search");
        let ids: Vec<Uuid> = hits.iter().map(|h| h.chunk_id).collect();
        assert!(!ids.contains(&secret.chunk_id), "forbidden chunk returned");
        assert_eq!(ids.len(), 2);
        let hits = idx.search("cafeteria", &filter(&["hr"], &[]), 10).expect("search");
        assert_eq!(hits[0].chunk_id, secret.chunk_id);
        let hits = idx
            .search("cafeteria", &filter(&["everyone"], &["c2"]), 10)
            .expect("search");
        assert_eq!(
            hits.iter().map(|h| h.chunk_id).collect::<Vec<_>>(),
            vec![other.chunk_id]
        );
        assert!(idx
            .search("cafeteria", &filter(&[], &[]), 10)
            .expect("search")
            .is_empty());
        let mut f = filter(&["everyone"], &[]);
        f.doc_ids = vec![d3];
        assert_eq!(idx.search("cafeteria", &f, 10).expect("search").len(), 1);
        // Stemming and stop words: "opening" finds "opens".
        let hits = idx
            .search("the opening", &filter(&["everyone"], &[]), 10)
            .expect("search");
        assert_eq!(hits.first().map(|h| h.chunk_id), Some(public.chunk_id));
        // Upsert of the same chunk id replaces it.
        idx.upsert(std::slice::from_ref(&public)).expect("upsert again");
        assert_eq!(idx.count().expect("count"), 3);
        idx.delete_docs(&[d1]).expect("delete");
        assert_eq!(idx.count().expect("count"), 2);
    }
    // Reopen: data persisted.
    let idx = TantivyIndex::open(dir.path()).expect("reopen");
    let mut ids = idx.chunk_ids().expect("ids");
    ids.sort();
    let mut want = vec![secret.chunk_id, other.chunk_id];
    want.sort();
    assert_eq!(ids, want);
}

#[test]
fn keyword_index_pushes_tags_and_dates_into_the_query() {
    let dir = tempfile::tempdir().expect("tempdir");
    let idx = TantivyIndex::open(dir.path()).expect("open");
    let policy = dated(Uuid::now_v7(), &["policy", "hr"], 10, "Remote work policy for staff.");
    let memo = dated(
        Uuid::now_v7(),
        &["memo"],
        20,
        "Remote work remote work remote work memo.",
    );
    let plain = dated(
        Uuid::now_v7(),
        &[],
        30,
        "Remote work remote work remote work remote work.",
    );
    idx.upsert(&[policy.clone(), memo.clone(), plain.clone()])
        .expect("upsert");
    let ids = |f: &AccessFilter| -> Vec<Uuid> {
        idx.search("remote work", f, 10)
            .expect("search")
            .iter()
            .map(|h| h.chunk_id)
            .collect()
    };
    let everyone = filter(&["everyone"], &[]);
    assert_eq!(ids(&everyone).len(), 3);
    // Tags: any of the listed ones; the better-matching untagged chunk never shows.
    let mut f = everyone.clone();
    f.tags = vec!["policy".into()];
    assert_eq!(ids(&f), vec![policy.chunk_id]);
    f.tags = vec!["policy".into(), "memo".into()];
    let got = ids(&f);
    assert_eq!(got.len(), 2);
    assert!(!got.contains(&plain.chunk_id));
    f.tags = vec!["nothing".into()];
    assert!(ids(&f).is_empty());
    // Dates: inclusive bounds, open ends.
    let mut f = everyone.clone();
    f.date_from = Some(20 * DAY);
    let got = ids(&f);
    assert_eq!(got.len(), 2);
    assert!(!got.contains(&policy.chunk_id));
    f.date_to = Some(20 * DAY);
    assert_eq!(ids(&f), vec![memo.chunk_id]);
    let mut f = everyone.clone();
    f.date_to = Some(15 * DAY);
    assert_eq!(ids(&f), vec![policy.chunk_id]);
    // Tags and dates together.
    let mut f = everyone.clone();
    f.tags = vec!["memo".into(), "policy".into()];
    f.date_from = Some(11 * DAY);
    assert_eq!(ids(&f), vec![memo.chunk_id]);
    // An empty range denies everything.
    let mut f = everyone.clone();
    f.date_from = Some(20 * DAY);
    f.date_to = Some(10 * DAY);
    assert!(ids(&f).is_empty());
}

#[test]
fn quoted_phrases_match_word_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let idx = TantivyIndex::open(dir.path()).expect("open");
    let exact = chunk(
        Uuid::now_v7(),
        "c1",
        &["everyone"],
        "Patients with chronic kidney disease need review.",
    );
    let scattered = chunk(
        Uuid::now_v7(),
        "c1",
        &["everyone"],
        "Kidney stones are chronic for some; disease of the liver is different. Kidney kidney chronic.",
    );
    idx.upsert(&[exact.clone(), scattered.clone()]).expect("upsert");
    let everyone = filter(&["everyone"], &[]);
    let words = idx.search("chronic kidney disease", &everyone, 10).expect("words");
    assert_eq!(words.len(), 2);
    let phrase = idx.search("\"chronic kidney disease\"", &everyone, 10).expect("phrase");
    assert_eq!(
        phrase.iter().map(|h| h.chunk_id).collect::<Vec<_>>(),
        vec![exact.chunk_id]
    );
    // A phrase goes through the same analyzer: stemmed, stop words dropped.
    let phrase = idx
        .search("\"chronic kidneys diseases\"", &everyone, 10)
        .expect("phrase");
    assert_eq!(phrase.len(), 1);
}
