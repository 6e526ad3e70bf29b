//! HTTP handlers, one module per resource.

pub mod assets;
pub mod chat;
pub mod documents;
pub mod health;
pub mod openai;
pub mod search;
