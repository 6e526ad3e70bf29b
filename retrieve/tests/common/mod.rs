//! Fixtures shared by the index test files.
// Each test file uses its own subset of these helpers.
#![allow(dead_code)]

use docent_core::{AccessFilter, IndexedChunk};
use uuid::Uuid;

pub const DIM: usize = 8;
pub const DAY: i64 = 86_400;

pub fn chunk(doc: Uuid, collection: &str, access: &[&str], text: &str) -> IndexedChunk {
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

/// A vector pointing (almost) along axis `i`: cosine 1 with itself, about 0
/// with the other axes.
pub fn unit(i: usize) -> Vec<f32> {
    let mut v = vec![0.01; DIM];
    v[i % DIM] = 1.0;
    v
}

pub fn filter(groups: &[&str], collections: &[&str]) -> AccessFilter {
    AccessFilter {
        groups: groups.iter().map(|s| (*s).to_owned()).collect(),
        collections: collections.iter().map(|s| (*s).to_owned()).collect(),
        ..AccessFilter::default()
    }
}

/// A chunk in collection "c1", visible to "everyone", with these tags and
/// dated `day` days after the epoch.
pub fn dated(doc: Uuid, tags: &[&str], day: i64, text: &str) -> IndexedChunk {
    IndexedChunk {
        tags: tags.iter().map(|s| (*s).to_owned()).collect(),
        date: day * DAY,
        ..chunk(doc, "c1", &["everyone"], text)
    }
}
