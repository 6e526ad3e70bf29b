//! docent-retrieve: the derived indexes and hybrid retrieval.
//!
//! - [`embed`] — fastembed (ONNX Runtime, loaded from a local library file)
//!   as the [`docent_core::Embedder`], and its tokenizer as the chunker's
//!   [`docent_core::TokenCounter`].
//! - [`batcher`] — the one passage-embedding worker shared by concurrent
//!   ingests: rounds sorted by token length, model calls cut by a
//!   padded-token budget.
//! - [`keyword`] — tantivy BM25 with an English analyzer.
//! - [`vector`] — qdrant-edge, in-process, on disk.
//! - [`fusion`] — reciprocal rank fusion and convex score fusion.
//! - [`rerank`] — a cross-encoder (fastembed `TextRerank`) for the fused top-N.
//! - [`search`] — the hybrid searcher: both legs under one access filter,
//!   fused, hydrated from SQL (ready documents only).

pub mod batcher;
pub mod embed;
pub mod error;
pub mod fusion;
pub mod keyword;
pub mod qdrant_server;
pub mod rerank;
pub mod search;
pub mod vector;

pub use error::{Result, RetrieveError};
