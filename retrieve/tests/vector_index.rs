//! Conformance suite of the dense-vector index ([`VectorIndex`]). Every case
//! runs against qdrant-edge in a temp directory (`edge::*`) and against a
//! Qdrant server (`server::*`) when `QDRANT_URL` names its gRPC endpoint
//! (e.g. `http://127.0.0.1:6334`; `QDRANT_API_KEY` if it wants one). Each
//! server test uses a collection of its own and deletes it at the end;
//! without `QDRANT_URL` the server variants print that they are skipped and
//! pass.
//!
//! Filters must be pushed into the queries: a chunk outside the filter never
//! comes back, even when it is the best match.

mod common;

use common::{chunk, dated, filter, unit, DAY, DIM};
use docent_core::{AccessFilter, IndexedChunk, VectorIndex};
use docent_retrieve::qdrant_server::ServerVectorIndex;
use docent_retrieve::vector::{EdgeVectorIndex, VectorSettings};
use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Where one test's index lives. Opening again reaches the same data.
trait Backend {
    fn open(&self, dim: usize, settings: VectorSettings) -> Arc<dyn VectorIndex>;
    /// After `maintain`: evidence that the int8 quantized copies of `points`
    /// vectors were built.
    fn assert_quantized(&self, points: u64);
}

struct Edge {
    dir: tempfile::TempDir,
}

impl Edge {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }
}

impl Backend for Edge {
    fn open(&self, dim: usize, settings: VectorSettings) -> Arc<dyn VectorIndex> {
        Arc::new(EdgeVectorIndex::open(self.dir.path(), dim, settings).expect("open qdrant-edge"))
    }

    fn assert_quantized(&self, _points: u64) {
        // The optimizer wrote an int8 copy of the vectors.
        fn has_file(dir: &std::path::Path, name: &str) -> bool {
            std::fs::read_dir(dir).into_iter().flatten().flatten().any(|e| {
                let p = e.path();
                p.file_name().is_some_and(|n| n == name) || (p.is_dir() && has_file(&p, name))
            })
        }
        assert!(
            has_file(self.dir.path(), "quantized.data"),
            "no quantized vectors written"
        );
    }
}

struct Server {
    url: String,
    api_key: Option<String>,
    collection: String,
    /// The latest handle, kept to delete the collection at the end.
    last: Mutex<Option<Arc<ServerVectorIndex>>>,
}

impl Server {
    /// `None` (after saying so) when no server is configured.
    fn from_env(case: &str) -> Option<Self> {
        let url = std::env::var("QDRANT_URL").ok().filter(|u| !u.trim().is_empty());
        let Some(url) = url else {
            println!("server::{case}: skipped: QDRANT_URL not set");
            return None;
        };
        Some(Self {
            url,
            api_key: std::env::var("QDRANT_API_KEY").ok().filter(|k| !k.is_empty()),
            collection: format!("docent_test_{case}_{}", Uuid::new_v4().simple()),
            last: Mutex::new(None),
        })
    }

    fn connect(&self, dim: usize, settings: VectorSettings) -> Arc<ServerVectorIndex> {
        let idx = Arc::new(
            ServerVectorIndex::connect(&self.url, &self.collection, dim, settings, self.api_key.clone())
                .expect("connect to the qdrant server"),
        );
        *self.last.lock() = Some(Arc::clone(&idx));
        idx
    }
}

impl Backend for Server {
    fn open(&self, dim: usize, settings: VectorSettings) -> Arc<dyn VectorIndex> {
        self.connect(dim, settings)
    }

    fn assert_quantized(&self, points: u64) {
        let idx = self.last.lock().clone().expect("opened");
        // The server builds HNSW graphs and int8 copies in the background.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let info = idx.info().expect("info");
            assert!(info.int8, "collection has no int8 quantization: {info:?}");
            if info.status == "Green" && info.indexed_vectors >= points {
                break;
            }
            assert!(Instant::now() < deadline, "server never indexed the vectors: {info:?}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(idx) = self.last.lock().take() {
            if let Err(e) = idx.delete_collection() {
                eprintln!("could not delete test collection {}: {e}", self.collection);
            }
        }
    }
}

/// Generates `edge::case` and `server::case` for each conformance case.
macro_rules! conformance {
    ($($case:ident),+ $(,)?) => {
        mod edge {
            $(
                #[test]
                fn $case() {
                    super::$case(&super::Edge::new());
                }
            )+
        }
        mod server {
            $(
                #[test]
                fn $case() {
                    if let Some(b) = super::Server::from_env(stringify!($case)) {
                        super::$case(&b);
                    }
                }
            )+
        }
    };
}

conformance!(
    filters_inside_the_query,
    pushes_tags_and_dates_into_the_query,
    int8_quantized_search_agrees_with_exact_search,
    upsert_then_count_and_chunk_ids,
    delete_docs_removes_only_their_chunks,
    delete_chunks_removes_only_those,
    clear_empties_and_keeps_the_index_usable,
    empty_groups_and_empty_ranges_fail_closed,
    reupsert_of_the_same_id_replaces,
    malformed_requests_are_rejected,
    set_labels_changes_who_finds_a_document,
);

fn ids(hits: &[docent_core::LegHit]) -> Vec<Uuid> {
    hits.iter().map(|h| h.chunk_id).collect()
}

fn sorted(mut v: Vec<Uuid>) -> Vec<Uuid> {
    v.sort();
    v
}

fn filters_inside_the_query(b: &dyn Backend) {
    let (d1, d2) = (Uuid::now_v7(), Uuid::now_v7());
    let a = chunk(d1, "c1", &["everyone"], "a");
    let bee = chunk(d1, "c1", &["everyone"], "b");
    let secret = chunk(d2, "c1", &["hr"], "secret");
    {
        let idx = b.open(DIM, VectorSettings::default());
        idx.upsert(&[a.clone(), bee.clone(), secret.clone()], &[unit(0), unit(1), unit(2)])
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
        assert_eq!(hits[0].chunk_id, bee.chunk_id);
        assert!(
            idx.upsert(std::slice::from_ref(&a), &[vec![1.0; DIM + 1]]).is_err(),
            "wrong dimension accepted"
        );
        idx.delete_docs(&[d2]).expect("delete");
        idx.flush().expect("flush");
    }
    // Reopen after a clean close.
    let idx = b.open(DIM, VectorSettings::default());
    assert_eq!(
        sorted(idx.chunk_ids().expect("ids")),
        sorted(vec![a.chunk_id, bee.chunk_id])
    );
    assert_eq!(idx.count().expect("count"), 2);
}

/// Three documents: one tagged "policy" dated day 10, one tagged "memo"
/// dated day 20, one untagged dated day 30. The query always matches the
/// excluded one best.
fn pushes_tags_and_dates_into_the_query(b: &dyn Backend) {
    let idx = b.open(DIM, VectorSettings::default());
    let policy = dated(Uuid::now_v7(), &["policy"], 10, "p");
    let memo = dated(Uuid::now_v7(), &["memo"], 20, "m");
    let plain = dated(Uuid::now_v7(), &[], 30, "x");
    idx.upsert(
        &[policy.clone(), memo.clone(), plain.clone()],
        &[unit(0), unit(1), unit(2)],
    )
    .expect("upsert");
    // The query vector is the untagged chunk's own vector.
    let search = |f: &AccessFilter| -> Vec<Uuid> { ids(&idx.search(&unit(2), f, 10).expect("search")) };
    let everyone = filter(&["everyone"], &[]);
    assert_eq!(search(&everyone).first(), Some(&plain.chunk_id));
    let mut f = everyone.clone();
    f.tags = vec!["policy".into(), "memo".into()];
    let got = search(&f);
    assert_eq!(got.len(), 2);
    assert!(!got.contains(&plain.chunk_id));
    f.tags = vec!["nothing".into()];
    assert!(search(&f).is_empty());
    let mut f = everyone.clone();
    f.date_from = Some(15 * DAY);
    f.date_to = Some(25 * DAY);
    assert_eq!(search(&f), vec![memo.chunk_id]);
    // Inclusive bounds.
    let mut f = everyone.clone();
    f.date_from = Some(20 * DAY);
    f.date_to = Some(20 * DAY);
    assert_eq!(search(&f), vec![memo.chunk_id]);
    let mut f = everyone.clone();
    f.date_to = Some(10 * DAY);
    assert_eq!(search(&f), vec![policy.chunk_id]);
    // Exact search honours the same filter.
    let exact = ids(&idx.search_exact(&unit(2), &f, 10).expect("exact"));
    assert_eq!(exact, vec![policy.chunk_id]);
    // Tags and dates together.
    let mut f = everyone.clone();
    f.tags = vec!["memo".into(), "policy".into()];
    f.date_from = Some(11 * DAY);
    assert_eq!(search(&f), vec![memo.chunk_id]);
}

/// int8 scalar quantization with rescoring, on enough random vectors for
/// the optimizer to build a quantized HNSW segment: the top hits match the
/// exact search, and the rescored scores are the full-precision cosines.
fn int8_quantized_search_agrees_with_exact_search(b: &dyn Backend) {
    const D: usize = 32;
    const N: usize = 3000;
    // xorshift64*: reproducible vectors without a dependency.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let x = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    let settings = VectorSettings {
        int8: true,
        // 3,000 x 32-d vectors are 375 KiB: index them (qdrant's default
        // threshold would leave them in a plain, exhaustive segment).
        indexing_threshold_kb: Some(100),
        ..VectorSettings::default()
    };
    let idx = b.open(D, settings);
    let mut chunks = Vec::new();
    let mut vectors = Vec::new();
    for _ in 0..N {
        chunks.push(chunk(Uuid::now_v7(), "c1", &["everyone"], "v"));
        vectors.push((0..D).map(|_| next()).collect::<Vec<f32>>());
    }
    for (c, v) in chunks.chunks(500).zip(vectors.chunks(500)) {
        idx.upsert(c, v).expect("upsert");
    }
    idx.maintain().expect("maintain");
    b.assert_quantized(N as u64);
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

/// More points than one page of ids (1,000) and one write batch.
fn upsert_then_count_and_chunk_ids(b: &dyn Backend) {
    let idx = b.open(DIM, VectorSettings::default());
    assert_eq!(idx.count().expect("count"), 0);
    assert!(idx.chunk_ids().expect("ids").is_empty());
    idx.upsert(&[], &[]).expect("empty upsert");
    let chunks: Vec<IndexedChunk> = (0..1_500)
        .map(|i| chunk(Uuid::now_v7(), if i % 2 == 0 { "c1" } else { "c2" }, &["everyone"], "t"))
        .collect();
    let vectors: Vec<Vec<f32>> = (0..chunks.len()).map(unit).collect();
    idx.upsert(&chunks, &vectors).expect("upsert");
    assert_eq!(idx.count().expect("count"), 1_500);
    let got = idx.chunk_ids().expect("ids");
    assert_eq!(got.len(), 1_500, "chunk ids repeated or missing");
    let want: HashSet<Uuid> = chunks.iter().map(|c| c.chunk_id).collect();
    assert_eq!(got.into_iter().collect::<HashSet<_>>(), want);
    // Visible to search right after the write returned.
    let hits = idx
        .search(&unit(3), &filter(&["everyone"], &["c2"]), 5)
        .expect("search");
    assert_eq!(hits.len(), 5);
    let c2: HashSet<Uuid> = chunks.iter().skip(1).step_by(2).map(|c| c.chunk_id).collect();
    assert!(hits.iter().all(|h| c2.contains(&h.chunk_id)));
    assert!(hits[0].score > 0.99);
}

/// A permission change is a payload update: the document's points keep
/// their vectors, answer the new groups at once, and no longer the old.
fn set_labels_changes_who_finds_a_document(b: &dyn Backend) {
    let idx = b.open(DIM, VectorSettings::default());
    let (d1, d2) = (Uuid::now_v7(), Uuid::now_v7());
    let a1 = chunk(d1, "c1", &["hr"], "a1");
    let a2 = chunk(d1, "c1", &["hr"], "a2");
    let other = chunk(d2, "c1", &["hr"], "b1");
    idx.upsert(&[a1.clone(), a2.clone(), other.clone()], &[unit(0), unit(1), unit(2)])
        .expect("upsert");
    idx.set_labels(d1, &["legal".to_owned(), "audit".to_owned()])
        .expect("set labels");
    idx.set_labels(Uuid::now_v7(), &["x".to_owned()])
        .expect("an unknown document is a no-op");
    let hr = idx.search(&unit(0), &filter(&["hr"], &[]), 10).expect("search");
    assert_eq!(ids(&hr), vec![other.chunk_id], "old groups no longer reach d1");
    let legal = idx.search(&unit(0), &filter(&["legal"], &[]), 10).expect("search");
    assert_eq!(sorted(ids(&legal)), sorted(vec![a1.chunk_id, a2.chunk_id]));
    assert!(
        legal.iter().any(|h| h.chunk_id == a1.chunk_id && h.score > 0.99),
        "vectors kept"
    );
    assert_eq!(
        ids(&idx.search_exact(&unit(1), &filter(&["audit"], &[]), 1).expect("exact")),
        vec![a2.chunk_id]
    );
    idx.flush().expect("flush");
    assert_eq!(idx.count().expect("count"), 3);
}

fn delete_docs_removes_only_their_chunks(b: &dyn Backend) {
    let idx = b.open(DIM, VectorSettings::default());
    let (d1, d2, d3) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let a1 = chunk(d1, "c1", &["everyone"], "a1");
    let a2 = chunk(d1, "c2", &["everyone"], "a2");
    let b1 = chunk(d2, "c1", &["everyone"], "b1");
    let c1 = chunk(d3, "c1", &["everyone"], "c1");
    idx.upsert(
        &[a1.clone(), a2.clone(), b1.clone(), c1.clone()],
        &[unit(0), unit(1), unit(2), unit(3)],
    )
    .expect("upsert");
    idx.delete_docs(&[]).expect("delete nothing");
    idx.delete_docs(&[Uuid::now_v7()]).expect("delete an unknown doc");
    assert_eq!(idx.count().expect("count"), 4);
    idx.delete_docs(&[d1, d3]).expect("delete");
    assert_eq!(idx.count().expect("count"), 1);
    assert_eq!(idx.chunk_ids().expect("ids"), vec![b1.chunk_id]);
    // The deleted chunks' own vectors no longer find them.
    let everyone = filter(&["everyone"], &[]);
    assert_eq!(
        ids(&idx.search(&unit(0), &everyone, 10).expect("search")),
        vec![b1.chunk_id]
    );
    assert_eq!(
        ids(&idx.search_exact(&unit(1), &everyone, 10).expect("exact")),
        vec![b1.chunk_id]
    );
    let mut only_d1 = everyone.clone();
    only_d1.doc_ids = vec![d1];
    assert!(idx.search(&unit(0), &only_d1, 10).expect("search").is_empty());
}

fn delete_chunks_removes_only_those(b: &dyn Backend) {
    let idx = b.open(DIM, VectorSettings::default());
    let doc = Uuid::now_v7();
    let cs: Vec<IndexedChunk> = (0..4)
        .map(|i| chunk(doc, "c1", &["everyone"], &i.to_string()))
        .collect();
    idx.upsert(&cs, &(0..4).map(unit).collect::<Vec<_>>()).expect("upsert");
    idx.delete_chunks(&[]).expect("delete nothing");
    idx.delete_chunks(&[Uuid::now_v7()]).expect("delete an unknown chunk");
    assert_eq!(idx.count().expect("count"), 4);
    idx.delete_chunks(&[cs[0].chunk_id, cs[2].chunk_id]).expect("delete");
    assert_eq!(idx.count().expect("count"), 2);
    assert_eq!(
        sorted(idx.chunk_ids().expect("ids")),
        sorted(vec![cs[1].chunk_id, cs[3].chunk_id])
    );
    let hits = idx.search(&unit(0), &filter(&["everyone"], &[]), 10).expect("search");
    assert_eq!(hits.len(), 2);
    assert!(hits
        .iter()
        .all(|h| h.chunk_id != cs[0].chunk_id && h.chunk_id != cs[2].chunk_id));
    // The rest of the document stays searchable by its own filter.
    let mut f = filter(&["everyone"], &[]);
    f.doc_ids = vec![doc];
    assert_eq!(
        idx.search(&unit(3), &f, 1).expect("search").first().map(|h| h.chunk_id),
        Some(cs[3].chunk_id)
    );
}

fn clear_empties_and_keeps_the_index_usable(b: &dyn Backend) {
    let idx = b.open(DIM, VectorSettings::default());
    idx.clear().expect("clear an empty index");
    let doc = Uuid::now_v7();
    let before: Vec<IndexedChunk> = (0..3)
        .map(|i| chunk(doc, "c1", &["everyone"], &i.to_string()))
        .collect();
    idx.upsert(&before, &(0..3).map(unit).collect::<Vec<_>>())
        .expect("upsert");
    assert_eq!(idx.count().expect("count"), 3);
    idx.clear().expect("clear");
    assert_eq!(idx.count().expect("count"), 0);
    assert!(idx.chunk_ids().expect("ids").is_empty());
    let everyone = filter(&["everyone"], &[]);
    assert!(idx.search(&unit(0), &everyone, 10).expect("search").is_empty());
    assert!(idx.search_exact(&unit(0), &everyone, 10).expect("exact").is_empty());
    // Writes and filtered searches work after a clear (a rebuild from SQL).
    let x = dated(Uuid::now_v7(), &["memo"], 5, "x");
    let y = chunk(Uuid::now_v7(), "c2", &["everyone"], "y");
    idx.upsert(&[x.clone(), y.clone()], &[unit(4), unit(5)])
        .expect("upsert again");
    idx.flush().expect("flush");
    assert_eq!(idx.count().expect("count"), 2);
    assert_eq!(
        ids(&idx
            .search(&unit(5), &filter(&["everyone"], &["c1"]), 10)
            .expect("search")),
        vec![x.chunk_id]
    );
    let mut f = everyone.clone();
    f.tags = vec!["memo".into()];
    f.date_to = Some(5 * DAY);
    assert_eq!(ids(&idx.search(&unit(5), &f, 10).expect("search")), vec![x.chunk_id]);
}

fn empty_groups_and_empty_ranges_fail_closed(b: &dyn Backend) {
    let idx = b.open(DIM, VectorSettings::default());
    let doc = Uuid::now_v7();
    let c = IndexedChunk {
        tags: vec!["t".into()],
        date: 10 * DAY,
        ..chunk(doc, "c1", &["everyone"], "c")
    };
    idx.upsert(std::slice::from_ref(&c), &[unit(0)]).expect("upsert");
    let full = AccessFilter {
        collections: vec!["c1".into()],
        groups: vec!["everyone".into()],
        doc_ids: vec![doc],
        tags: vec!["t".into()],
        date_from: Some(10 * DAY),
        date_to: Some(10 * DAY),
    };
    // The filter passes the chunk...
    assert_eq!(ids(&idx.search(&unit(0), &full, 10).expect("search")), vec![c.chunk_id]);
    assert_eq!(
        ids(&idx.search_exact(&unit(0), &full, 10).expect("exact")),
        vec![c.chunk_id]
    );
    // ...but not without groups, however well everything else matches.
    let no_groups = AccessFilter {
        groups: Vec::new(),
        ..full.clone()
    };
    assert!(idx.search(&unit(0), &no_groups, 10).expect("search").is_empty());
    assert!(idx.search_exact(&unit(0), &no_groups, 10).expect("exact").is_empty());
    assert!(idx
        .search(&unit(0), &AccessFilter::default(), 10)
        .expect("search")
        .is_empty());
    // Groups that the chunk does not carry.
    let other = AccessFilter {
        groups: vec!["hr".into()],
        ..full.clone()
    };
    assert!(idx.search(&unit(0), &other, 10).expect("search").is_empty());
    // An empty date range.
    let reversed = AccessFilter {
        date_from: Some(11 * DAY),
        date_to: Some(9 * DAY),
        ..full.clone()
    };
    assert!(idx.search(&unit(0), &reversed, 10).expect("search").is_empty());
    assert!(idx.search_exact(&unit(0), &reversed, 10).expect("exact").is_empty());
    // k = 0 asks for nothing.
    assert!(idx.search(&unit(0), &full, 0).expect("search").is_empty());
}

fn reupsert_of_the_same_id_replaces(b: &dyn Backend) {
    let idx = b.open(DIM, VectorSettings::default());
    let doc = Uuid::now_v7();
    let a = chunk(doc, "c1", &["everyone"], "a");
    let others = [
        chunk(doc, "c1", &["everyone"], "b"),
        chunk(doc, "c1", &["everyone"], "c"),
    ];
    idx.upsert(
        &[a.clone(), others[0].clone(), others[1].clone()],
        &[unit(0), unit(1), unit(2)],
    )
    .expect("upsert");
    // Same id, new labels, collection and vector.
    let moved = IndexedChunk {
        access: vec!["hr".into()],
        collection: "c2".into(),
        ..a.clone()
    };
    idx.upsert(std::slice::from_ref(&moved), &[unit(3)]).expect("re-upsert");
    idx.upsert(std::slice::from_ref(&moved), &[unit(3)])
        .expect("re-upsert twice");
    assert_eq!(idx.count().expect("count"), 3);
    let got = idx.chunk_ids().expect("ids");
    assert_eq!(got.len(), 3);
    assert_eq!(got.iter().filter(|id| **id == a.chunk_id).count(), 1, "duplicate point");
    // The old payload is gone: "everyone" and "c1" no longer see it.
    let everyone = filter(&["everyone"], &[]);
    assert!(!ids(&idx.search(&unit(3), &everyone, 10).expect("search")).contains(&a.chunk_id));
    assert!(!ids(&idx.search(&unit(3), &filter(&["hr"], &["c1"]), 10).expect("search")).contains(&a.chunk_id));
    // The new vector and payload are what is scored.
    let hits = idx.search(&unit(3), &filter(&["hr"], &["c2"]), 10).expect("search");
    assert_eq!(ids(&hits), vec![a.chunk_id]);
    assert!(hits[0].score > 0.99);
    let old = idx.search(&unit(0), &filter(&["hr"], &[]), 10).expect("search");
    assert_eq!(ids(&old), vec![a.chunk_id]);
    assert!(old[0].score < 0.5, "old vector still scored: {}", old[0].score);
}

fn malformed_requests_are_rejected(b: &dyn Backend) {
    let idx = b.open(DIM, VectorSettings::default());
    let c = chunk(Uuid::now_v7(), "c1", &["everyone"], "c");
    assert!(
        idx.upsert(std::slice::from_ref(&c), &[unit(0), unit(1)]).is_err(),
        "chunks and vectors of different lengths accepted"
    );
    assert!(
        idx.upsert(std::slice::from_ref(&c), &[vec![1.0; DIM - 1]]).is_err(),
        "short vector accepted"
    );
    assert_eq!(idx.count().expect("count"), 0, "a rejected write left points");
    idx.upsert(std::slice::from_ref(&c), &[unit(0)]).expect("upsert");
    let everyone = filter(&["everyone"], &[]);
    assert!(
        idx.search(&[1.0; DIM + 1], &everyone, 10).is_err(),
        "wrong query dimension accepted"
    );
    assert!(
        idx.search_exact(&[1.0; 2], &everyone, 10).is_err(),
        "wrong query dimension accepted"
    );
    assert_eq!(
        ids(&idx.search(&unit(0), &everyone, 10).expect("search")),
        vec![c.chunk_id]
    );
}

// ---- Qdrant server only -------------------------------------------------

/// Needs no server: nothing listens on loopback port 1. Failing connects
/// from plain code and from inside a runtime return errors, never panic.
#[test]
fn server_connect_fails_cleanly_when_unreachable() {
    fn check() {
        let started = Instant::now();
        let e = ServerVectorIndex::connect("http://127.0.0.1:1", "docent_x", DIM, VectorSettings::default(), None)
            .expect_err("connected to nothing");
        let msg = e.to_string();
        assert!(msg.starts_with("qdrant-server:"), "{msg}");
        assert!(
            msg.contains("cannot reach the Qdrant server at http://127.0.0.1:1"),
            "{msg}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "took {:?}",
            started.elapsed()
        );
        let e = ServerVectorIndex::connect("not a url", "docent_x", DIM, VectorSettings::default(), None)
            .expect_err("accepted a bad url");
        assert!(e.to_string().starts_with("qdrant-server:"), "{e}");
        let e = ServerVectorIndex::connect("http://127.0.0.1:1", "docent_x", 0, VectorSettings::default(), None)
            .expect_err("accepted dimension 0");
        assert!(e.to_string().contains("invalid request"), "{e}");
    }
    check();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async { check() });
}

#[test]
fn server_rejects_a_collection_of_another_dimension() {
    let Some(s) = Server::from_env("server_rejects_a_collection_of_another_dimension") else {
        return;
    };
    let idx = s.connect(DIM, VectorSettings::default());
    idx.upsert(&[chunk(Uuid::now_v7(), "c1", &["everyone"], "c")], &[unit(0)])
        .expect("upsert");
    let e = ServerVectorIndex::connect(
        &s.url,
        &s.collection,
        DIM + 1,
        VectorSettings::default(),
        s.api_key.clone(),
    )
    .expect_err("opened with another dimension");
    let msg = e.to_string();
    assert!(msg.contains(&format!("holds {DIM}-dimensional vectors")), "{msg}");
    assert!(msg.contains(&s.collection), "{msg}");
    // The data is untouched.
    assert_eq!(idx.count().expect("count"), 1);
}

#[test]
fn server_collection_has_its_settings_and_payload_indexes() {
    let Some(s) = Server::from_env("server_collection_has_its_settings_and_payload_indexes") else {
        return;
    };
    let idx = s.connect(DIM, VectorSettings::default());
    let want = ["collection", "date", "doc_id", "labels", "tags"]
        .map(String::from)
        .to_vec();
    let info = idx.info().expect("info");
    assert_eq!(info.vector_size, DIM as u64);
    assert!(!info.int8);
    assert_eq!(info.payload_indexes, want);
    idx.upsert(&[chunk(Uuid::now_v7(), "c1", &["everyone"], "c")], &[unit(0)])
        .expect("upsert");
    assert_eq!(idx.info().expect("info").points, 1);
    // A clear keeps the collection and its indexes; a reconnect finds them.
    idx.clear().expect("clear");
    let again = s.connect(DIM, VectorSettings::default());
    let info = again.info().expect("info");
    assert_eq!(info.points, 0);
    assert_eq!(info.payload_indexes, want);
}

/// The synchronous trait from a plain thread, from `spawn_blocking`, and
/// straight from async code on both runtime flavours; dropping the index
/// inside a runtime must not panic either.
#[test]
fn server_calls_work_from_any_thread_and_runtime() {
    let Some(s) = Server::from_env("server_calls_work_from_any_thread_and_runtime") else {
        return;
    };
    let idx = s.connect(DIM, VectorSettings::default());
    let c = chunk(Uuid::now_v7(), "c1", &["everyone"], "c");
    let everyone = filter(&["everyone"], &[]);
    std::thread::scope(|sc| {
        sc.spawn(|| idx.upsert(std::slice::from_ref(&c), &[unit(0)]).expect("upsert"));
    });
    for flavour in ["current_thread", "multi_thread"] {
        let rt = match flavour {
            "current_thread" => tokio::runtime::Builder::new_current_thread().enable_all().build(),
            _ => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build(),
        }
        .expect("runtime");
        rt.block_on(async {
            // Called directly on an async worker thread.
            assert_eq!(idx.count().expect("count"), 1, "{flavour}");
            let hits = idx.search(&unit(0), &everyone, 10).expect("search");
            assert_eq!(ids(&hits), vec![c.chunk_id], "{flavour}");
            // And from a blocking-pool thread.
            let shared = Arc::clone(&idx);
            let f = everyone.clone();
            let n = tokio::task::spawn_blocking(move || shared.search_exact(&unit(0), &f, 10).map(|h| h.len()))
                .await
                .expect("join")
                .expect("search");
            assert_eq!(n, 1, "{flavour}");
            // A second handle opened and dropped inside the runtime.
            let other =
                ServerVectorIndex::connect(&s.url, &s.collection, DIM, VectorSettings::default(), s.api_key.clone())
                    .expect("connect inside a runtime");
            assert_eq!(other.count().expect("count"), 1);
            drop(other);
        });
    }
}
