//! docent-generate: turning retrieved passages into a cited answer.
//!
//! - [`prompt`] — numbered sources and instructions, kept apart so document
//!   text is data, not instructions.
//! - [`citations`] — parse `[n]` markers, map them to passages, check each
//!   cited sentence against its passage, and flag what lacks support.
//! - [`mistral`] — the in-process mistral.rs chat model (GGUF, local files).

pub mod answer;
pub mod citations;
pub mod error;
pub mod gguf;
pub mod mistral;
pub mod prompt;

pub use error::{GenerateError, Result};
