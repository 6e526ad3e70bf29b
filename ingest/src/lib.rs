//! docent-ingest: extract -> normalize -> chunk -> embed -> index, as one job.
//!
//! - [`extract`] turns bytes into positioned text blocks (page, heading path).
//! - [`chunk`] packs blocks into token-budgeted chunks with overlap.
//! - [`pipeline`] runs a document through the stages as a job whose state is
//!   kept in the SQL store, and writes the derived indexes.

pub mod chunk;
pub mod error;
pub mod extract;
pub mod pipeline;

pub use error::{IngestError, Result};
