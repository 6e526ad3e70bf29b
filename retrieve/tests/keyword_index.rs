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

/// The pruned search (block-max WAND over a flattened disjunction, the
/// filter as a per-segment bitset) must return what the plain exhaustive
/// boolean query returns: the same chunks, in the same order, with the
/// same scores, across several segments, deletions and selective filters,
/// on both of its paths (pruning with the filter as a cursor, and text and
/// filter intersected when the filter allows few documents), and for
/// queries that keep their parsed form (phrases, operators).
#[test]
fn pruned_search_equals_the_exhaustive_query() {
    let dir = tempfile::tempdir().expect("tempdir");
    let idx = TantivyIndex::open(dir.path()).expect("open");
    const WORDS: [&str; 40] = [
        "kidney",
        "renal",
        "dialysis",
        "insulin",
        "glucose",
        "diabetes",
        "cardiac",
        "arrest",
        "stroke",
        "sepsis",
        "antibiotic",
        "vaccine",
        "trial",
        "placebo",
        "dose",
        "mortality",
        "cohort",
        "biopsy",
        "tumor",
        "chemotherapy",
        "nurse",
        "ward",
        "discharge",
        "triage",
        "pediatric",
        "fever",
        "cough",
        "asthma",
        "allergy",
        "infection",
        "surgery",
        "anesthesia",
        "fracture",
        "imaging",
        "scan",
        "protocol",
        "consent",
        "privacy",
        "billing",
        "claim",
    ];
    // SplitMix64, seeded: the same corpus every run.
    let mut state = 0x1234_5678_u64;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let groups = ["everyone", "hr", "oncology"];
    let mut docs = Vec::new();
    // Five commits: five segments (the writer does not merge this few).
    for batch in 0..5 {
        let mut chunks = Vec::new();
        for _ in 0..300 {
            let len = 5 + (next() % 60) as usize;
            let text: Vec<&str> = (0..len)
                .map(|_| {
                    // Zipf-ish: low word indexes are far more common.
                    let r = (next() % 1000) as f64 / 1000.0;
                    WORDS[((r * r * r) * WORDS.len() as f64) as usize]
                })
                .collect();
            let doc = Uuid::now_v7();
            // About one document in 50 is "rare": under 1/16 of a segment,
            // so a "rare" filter takes the intersection path, the others
            // the pruning path.
            let g = if next() % 50 == 0 {
                "rare"
            } else {
                groups[(next() % 3) as usize]
            };
            let coll = if next() % 4 == 0 { "c2" } else { "c1" };
            let mut c = chunk(doc, coll, &[g], &text.join(" "));
            c.title = WORDS[(next() % 40) as usize].to_owned();
            docs.push(doc);
            chunks.push(c);
        }
        idx.upsert(&chunks).expect("upsert");
        if batch == 3 {
            // Deletions leave tombstones in earlier segments.
            let gone: Vec<Uuid> = docs.iter().step_by(7).copied().collect();
            idx.delete_docs(&gone).expect("delete");
        }
    }
    let queries = [
        "kidney",
        "renal dialysis",
        "privacy consent billing claim",
        "fever cough asthma allergy infection vaccine trial",
        "the stroke of a cardiac arrest",
        "kidney kidney glucose",
        "\"kidney renal\" insulin",
        "+diabetes glucose",
        "sepsis -antibiotic",
        "title:claim scan",
        "nonexistentword",
    ];
    let mut some_docs = filter(&["everyone", "hr", "oncology", "rare"], &[]);
    some_docs.doc_ids = docs.iter().step_by(53).copied().collect();
    let filters = [
        filter(&["everyone"], &[]),
        filter(&["everyone", "hr", "oncology", "rare"], &[]),
        filter(&["hr"], &["c2"]),
        filter(&["oncology", "nobody"], &["c1"]),
        filter(&["rare"], &[]),
        filter(&["rare", "hr"], &["c2"]),
        some_docs,
    ];
    let mut compared = 0;
    for q in queries {
        for f in &filters {
            for k in [1, 10, 50] {
                let got = idx.search(q, f, k).expect("pruned");
                let want = idx.search_exhaustive(q, f, k).expect("exhaustive");
                assert_eq!(got.len(), want.len(), "{q:?} k={k}: hit counts differ");
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g.score - w.score).abs() <= 1e-4 * w.score.abs().max(1.0),
                        "{q:?} k={k} rank {i}: score {} vs {}",
                        g.score,
                        w.score
                    );
                    // Float summation order may swap exact ties only.
                    if g.chunk_id != w.chunk_id {
                        assert!(
                            got.iter().any(|h| h.chunk_id == w.chunk_id)
                                || (w.score - want[want.len() - 1].score).abs() <= 1e-4,
                            "{q:?} k={k} rank {i}: a different chunk"
                        );
                    }
                }
                compared += got.len();
            }
        }
    }
    assert!(compared > 1000, "the queries matched too little to compare: {compared}");
}
