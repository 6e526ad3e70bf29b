//! HTTP handlers, one module per resource.

pub mod assets;
pub mod chat;
pub mod collections;
pub mod conversations;
pub mod documents;
pub mod health;
pub mod openai;
pub mod search;
pub mod session;
