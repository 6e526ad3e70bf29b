//! docent-ingest: extract -> normalize -> chunk -> embed -> index, as one job.
//!
//! - [`extract`] turns bytes into positioned text blocks (page, heading path).
//! - [`chunk`] packs blocks into token-budgeted chunks with overlap.
//! - [`pipeline`] runs a document through the stages as a job whose state is
//!   kept in the SQL store, and writes the derived indexes.
//! - [`windows`] hands a job's passages to the (shared, batching) embedder
//!   in windows, two in flight, so progress moves on long documents.
//! - [`queue`] is the worker pool: jobs claimed from SQL under a lease, so
//!   any replica can run them; graceful drain on shutdown.
//! - [`follow`] keeps this replica's derived indexes in step with the SQL
//!   change log (what other replicas ingested or deleted).

pub mod chunk;
pub mod error;
pub mod extract;
pub mod follow;
pub mod pipeline;
pub mod queue;
pub mod windows;

pub use error::{IngestError, Result};
