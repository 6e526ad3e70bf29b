//! docent-generate: turning retrieved passages into a cited answer.
//!
//! - [`prompt`] — numbered sources and instructions, kept apart so document
//!   text is data, not instructions.
//! - [`citations`] — parse `[n]` markers, map them to passages, check each
//!   cited sentence against its passage, and flag what lacks support.
//! - [`rewrite`] — follow-up questions made standalone before retrieval.
//! - [`support`] — models that score claim support for the checker
//!   (embedding similarity, or the cross-encoder).
//! - [`mistral`] — the in-process mistral.rs chat model (GGUF, local files).
//! - [`upstream`] — an OpenAI-compatible upstream chat model (vLLM, TGI,
//!   mistralrs-server), refused unless its host is in the allowlist.

pub mod answer;
pub mod citations;
pub mod error;
pub mod gguf;
pub mod mistral;
pub mod prompt;
pub mod rewrite;
pub mod support;
pub mod upstream;

pub use error::{GenerateError, Result};
