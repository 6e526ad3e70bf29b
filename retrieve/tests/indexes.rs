//! The derived indexes on real storage: tantivy and qdrant-edge in temp
//! directories. Filters must be pushed into the queries: a chunk outside the
//! filter never comes back, even when it is the best match.

use docent_core::{AccessFilter, IndexedChunk, KeywordIndex, VectorIndex};
use docent_retrieve::keyword::TantivyIndex;
use docent_retrieve::vector::{EdgeVectorIndex, HnswSettings};
use uuid::Uuid;

const DIM: usize = 8;

fn chunk(doc: Uuid, collection: &str, access: &[&str], text: &str) -> IndexedChunk {
    IndexedChunk {
        chunk_id: Uuid::now_v7(),
        doc_id: doc,
        collection: collection.into(),
        access: access.iter().map(|s| (*s).to_owned()).collect(),
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
        doc_ids: Vec::new(),
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
        let idx = EdgeVectorIndex::open(dir.path(), DIM, HnswSettings::default()).expect("open");
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
    let idx = EdgeVectorIndex::open(dir.path(), DIM, HnswSettings::default()).expect("reopen");
    let mut ids = idx.chunk_ids().expect("ids");
    ids.sort();
    let mut want = vec![a.chunk_id, b.chunk_id];
    want.sort();
    assert_eq!(ids, want);
    assert_eq!(idx.count().expect("count"), 2);
}
