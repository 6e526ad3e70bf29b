//! The `docent` binary's library half: configuration and wiring. This is the
//! only place that picks concrete backends (SQLite or PostgreSQL, qdrant-edge,
//! tantivy, fastembed, mistral.rs) and hands them to the stages as traits.

pub mod app;
pub mod bench;
pub mod config;
pub mod eval;
pub mod load;
pub mod perf;
