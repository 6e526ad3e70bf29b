//! docent-core: the domain types and the traits every stage is written
//! against. No I/O dependencies live here; concrete backends (SQLite, tantivy,
//! qdrant-edge, fastembed, mistral.rs) implement these traits in their own
//! crates and only the binary's wiring picks them.

pub mod access;
pub mod error;
pub mod model;
pub mod redact;
pub mod traits;

pub use access::{AccessFilter, AccessRole, Principal};
pub use error::{BackendError, BackendResult, BoxError};
pub use model::*;
pub use traits::*;
