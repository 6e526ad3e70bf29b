//! The derived indexes on real storage: tantivy and qdrant-edge in temp
//! directories. Filters must be pushed into the queries: a chunk outside the
//! filter never comes back, even when it is the best match.

use docent_core::{AccessFilter, IndexedChunk, KeywordIndex, VectorIndex};
use docent_retrieve::keyword::TantivyIndex;
use docent_retrieve::vector::{EdgeVectorIndex, VectorSettings};
use uuid::Uuid;

const DIM: usize = 8;

fn chunk(doc: Uuid, collection: &str, access: &[&str], text: &str) -> IndexedChunk {
    IndexedChunk {
        chunk_id: Uuid::now_v7(),
        doc_id: doc,
        collection: collection.into(),
        access: access.iter().map(|s| (*s).to_owned()).collect(),
        tags: Vec::new(),
        date: 0,
        title: "Doc".into(),
        heading: String::new(),
        text: text.into(),
    }
}

fn unit(i: usize) -> Vec<f32> {
    let mut v = vec![0.01; DIM];
    v[i % DIM] = 1.0;
    v
}

fn filter(groups: &[&str], collections: &[&str]) -> AccessFilter {
    AccessFilter {
        groups: groups.iter().map(|s| (*s).to_owned()).collect(),
        collections: collections.iter().map(|s| (*s).to_owned()).collect(),
        ..AccessFilter::default()
    }
}

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
fn vector_index_filters_inside_the_query() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (d1, d2) = (Uuid::now_v7(), Uuid::now_v7());
    let a = chunk(d1, "c1", &["everyone"], "a");
    let b = chunk(d1, "c1", &["everyone"], "b");
    let secret = chunk(d2, "c1", &["hr"], "secret");
    {
        let idx = EdgeVectorIndex::open(dir.path(), DIM, VectorSettings::default()).expect("open");
        idx.upsert(&[a.clone(), b.clone(), secret.clone()], &[unit(0), unit(1), unit(2)])
            .expect("upsert");
        idx.flush().expect("flush");
        assert_eq!(idx.count().expect("count"), 3);
        // The query vector equals the secret chunk's vector: still not returned.
        let hits = idx.search(&unit(2), &filter(&["everyone"], &[]), 10).expect("search");
        assert_eq!(hits.len(), 2);
        assert!(hits.iter().all(|h| h.chunk_id != secret.chunk_id));
        let hits = idx.search(&unit(2), &filter(&["hr"], &[]), 10).expect("search");
        assert_eq!(hits[0].chunk_id, secret.chunk_id);
        assert!(hits[0].score > 0.99);
        assert!(idx
            .search(&unit(0), &filter(&["everyone"], &["other"]), 10)
            .expect("search")
            .is_empty());
        assert!(idx.search(&unit(0), &filter(&[], &[]), 10).expect("search").is_empty());
        let hits = idx
            .search(&unit(1), &filter(&["everyone", "hr"], &[]), 1)
            .expect("search");
        assert_eq!(hits[0].chunk_id, b.chunk_id);
        assert!(
            idx.upsert(std::slice::from_ref(&a), &[vec![1.0; DIM + 1]]).is_err(),
            "wrong dimension accepted"
        );
        idx.delete_docs(&[d2]).expect("delete");
        idx.flush().expect("flush");
    }
    // Reopen after a clean close.
    let idx = EdgeVectorIndex::open(dir.path(), DIM, VectorSettings::default()).expect("reopen");
    let mut ids = idx.chunk_ids().expect("ids");
    ids.sort();
    let mut want = vec![a.chunk_id, b.chunk_id];
    want.sort();
    assert_eq!(ids, want);
    assert_eq!(idx.count().expect("count"), 2);
}

const DAY: i64 = 86_400;

/// Three documents: one tagged "policy" dated day 10, one tagged "memo"
/// dated day 20, one untagged dated day 30. The query always matches the
/// excluded one best.
fn dated(doc: Uuid, tags: &[&str], day: i64, text: &str) -> IndexedChunk {
    IndexedChunk {
        tags: tags.iter().map(|s| (*s).to_owned()).collect(),
        date: day * DAY,
        ..chunk(doc, "c1", &["everyone"], text)
    }
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

#[test]
fn vector_index_pushes_tags_and_dates_into_the_query() {
    let dir = tempfile::tempdir().expect("tempdir");
    let idx = EdgeVectorIndex::open(dir.path(), DIM, VectorSettings::default()).expect("open");
    let policy = dated(Uuid::now_v7(), &["policy"], 10, "p");
    let memo = dated(Uuid::now_v7(), &["memo"], 20, "m");
    let plain = dated(Uuid::now_v7(), &[], 30, "x");
    idx.upsert(
        &[policy.clone(), memo.clone(), plain.clone()],
        &[unit(0), unit(1), unit(2)],
    )
    .expect("upsert");
    // The query vector is the untagged chunk's own vector.
    let ids = |f: &AccessFilter| -> Vec<Uuid> {
        idx.search(&unit(2), f, 10)
            .expect("search")
            .iter()
            .map(|h| h.chunk_id)
            .collect()
    };
    let everyone = filter(&["everyone"], &[]);
    assert_eq!(ids(&everyone).first(), Some(&plain.chunk_id));
    let mut f = everyone.clone();
    f.tags = vec!["policy".into(), "memo".into()];
    let got = ids(&f);
    assert_eq!(got.len(), 2);
    assert!(!got.contains(&plain.chunk_id));
    let mut f = everyone.clone();
    f.date_from = Some(15 * DAY);
    f.date_to = Some(25 * DAY);
    assert_eq!(ids(&f), vec![memo.chunk_id]);
    let mut f = everyone.clone();
    f.date_to = Some(10 * DAY);
    assert_eq!(ids(&f), vec![policy.chunk_id]);
    // Exact search honours the same filter.
    let exact: Vec<Uuid> = idx
        .search_exact(&unit(2), &f, 10)
        .expect("exact")
        .iter()
        .map(|h| h.chunk_id)
        .collect();
    assert_eq!(exact, vec![policy.chunk_id]);
}

/// int8 scalar quantization with rescoring, on enough random vectors for
/// the optimizer to build a quantized HNSW segment: the top hits match the
/// exact search, and the rescored scores are the full-precision cosines.
#[test]
fn int8_quantized_search_agrees_with_exact_search() {
    const D: usize = 32;
    // xorshift64*: reproducible vectors without a dependency.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let x = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = VectorSettings {
        int8: true,
        // 3,000 x 32-d vectors are 375 KiB: index them (qdrant's default
        // threshold would leave them in a plain, exhaustive segment).
        indexing_threshold_kb: Some(100),
        ..VectorSettings::default()
    };
    let idx = EdgeVectorIndex::open(dir.path(), D, settings).expect("open");
    let mut chunks = Vec::new();
    let mut vectors = Vec::new();
    for _ in 0..3000 {
        chunks.push(chunk(Uuid::now_v7(), "c1", &["everyone"], "v"));
        vectors.push((0..D).map(|_| next()).collect::<Vec<f32>>());
    }
    for (c, v) in chunks.chunks(500).zip(vectors.chunks(500)) {
        idx.upsert(c, v).expect("upsert");
    }
    idx.optimize().expect("optimize");
    // The optimizer wrote an int8 copy of the vectors.
    fn has_file(dir: &std::path::Path, name: &str) -> bool {
        std::fs::read_dir(dir).into_iter().flatten().flatten().any(|e| {
            let p = e.path();
            p.file_name().is_some_and(|n| n == name) || (p.is_dir() && has_file(&p, name))
        })
    }
    assert!(has_file(dir.path(), "quantized.data"), "no quantized vectors written");
    let everyone = filter(&["everyone"], &[]);
    let mut overlap = 0usize;
    for q in vectors.iter().take(50) {
        let approx = idx.search(q, &everyone, 10).expect("approx");
        let exact = idx.search_exact(q, &everyone, 10).expect("exact");
        assert_eq!(exact.len(), 10);
        // The query is a stored vector: both find it first, at cosine 1.
        assert_eq!(approx[0].chunk_id, exact[0].chunk_id);
        assert!((approx[0].score - 1.0).abs() < 1e-4, "rescored with full vectors");
        overlap += approx
            .iter()
            .filter(|a| exact.iter().any(|e| e.chunk_id == a.chunk_id))
            .count();
    }
    // Recall@10 of the quantized index against exhaustive search.
    assert!(overlap as f64 / 500.0 > 0.8, "recall {}", overlap as f64 / 500.0);
}
