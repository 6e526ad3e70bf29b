//! Cross-encoder reranking with fastembed's `TextRerank`, from local files.
//!
//! A cross-encoder reads the query and a passage together and returns one
//! relevance logit, so it sees word interactions that neither BM25 nor a
//! bi-encoder can. It is slow (one forward pass per pair), so the searcher
//! applies it only to the fused top-N.

use crate::embed::{onnxruntime, read};
use crate::error::{Result, RetrieveError};
use docent_core::{BackendError, BackendResult, Reranker};
use fastembed::{RerankInitOptionsUserDefined, TextRerank, TokenizerFiles, UserDefinedRerankingModel};
use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use tracing::info;

/// Where the reranker's files are.
#[derive(Debug, Clone)]
pub struct RerankerPaths {
    /// Directory with model.onnx (inputs input_ids, attention_mask and
    /// optionally token_type_ids; output `logits` of shape [batch, 1]),
    /// tokenizer.json, config.json, tokenizer_config.json and
    /// special_tokens_map.json.
    pub model_dir: PathBuf,
    pub onnxruntime_lib: PathBuf,
}

pub struct FastReranker {
    model: Mutex<TextRerank>,
    id: String,
    batch: usize,
}

impl FastReranker {
    /// Loads the model; `max_length` caps query + passage tokens.
    pub fn load(paths: &RerankerPaths, max_length: usize, threads: usize) -> Result<Self> {
        let dir: &Path = &paths.model_dir;
        let onnx_path = dir.join("model.onnx");
        let onnx = read(onnx_path)?;
        let files = TokenizerFiles {
            tokenizer_file: read(dir.join("tokenizer.json"))?,
            config_file: read(dir.join("config.json"))?,
            special_tokens_map_file: read(dir.join("special_tokens_map.json"))?,
            tokenizer_config_file: read(dir.join("tokenizer_config.json"))?,
        };
        let env = onnxruntime(&paths.onnxruntime_lib)?;
        let id = format!(
            "{}@{}",
            dir.file_name().and_then(|s| s.to_str()).unwrap_or("reranker"),
            crate::embed::short_hash(&onnx)
        );
        let opts = RerankInitOptionsUserDefined::new()
            .with_environment(env)
            .with_max_length(max_length)
            .with_intra_threads(threads.max(1));
        let model = TextRerank::try_new_from_user_defined(UserDefinedRerankingModel::new(onnx, files), opts)
            .map_err(|e| RetrieveError::Embedding(format!("reranker: {e}")))?;
        info!(model = %id, max_length, "reranker loaded");
        Ok(Self {
            model: Mutex::new(model),
            id,
            batch: 16,
        })
    }
}

impl Reranker for FastReranker {
    fn rerank(&self, query: &str, passages: &[&str]) -> BackendResult<Vec<f32>> {
        if passages.is_empty() {
            return Ok(Vec::new());
        }
        let results = self
            .model
            .lock()
            .rerank(query, passages, false, Some(self.batch))
            .map_err(|e| BackendError::backend("fastembed-rerank", e.to_string()))?;
        // fastembed returns results sorted by score; put them back in input order.
        let mut scores = vec![f32::NEG_INFINITY; passages.len()];
        for r in results {
            if let Some(s) = scores.get_mut(r.index) {
                *s = r.score;
            }
        }
        Ok(scores)
    }

    fn model_id(&self) -> String {
        self.id.clone()
    }
}
