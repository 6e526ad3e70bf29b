//! Embeddings with fastembed on ONNX Runtime, from local files only.
//!
//! ONNX Runtime is loaded dynamically from a configured library file
//! (`load-dynamic`), never downloaded. ORT allows one environment per process,
//! so it is created once and shared by every model.

use crate::error::{Result, RetrieveError, FETCH_MODELS};
use docent_core::{BackendError, BackendResult, Embedder, TokenCounter};
use fastembed::{InitOptionsUserDefined, Pooling, TextEmbedding, TokenizerFiles, UserDefinedEmbeddingModel};
use parking_lot::Mutex;
pub use sha2_free::short_hash;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tracing::info;

static ORT_ENV: OnceLock<std::result::Result<ort::environment::Environment, String>> = OnceLock::new();

/// Loads ONNX Runtime from `lib` once per process.
pub fn onnxruntime(lib: &Path) -> Result<ort::environment::Environment> {
    let res = ORT_ENV.get_or_init(|| {
        if !lib.is_file() {
            return Err(format!("file not found (run `{FETCH_MODELS}`)"));
        }
        ort::init_from(lib)
            .map_err(|e| e.to_string())?
            .with_name("docent")
            .with_telemetry(false)
            .build()
            .map_err(|e| e.to_string())
    });
    res.clone().map_err(|message| RetrieveError::OnnxRuntime {
        path: lib.display().to_string(),
        message,
    })
}

/// Where the embedding model's files are.
#[derive(Debug, Clone)]
pub struct EmbedderPaths {
    /// Directory with model.onnx, tokenizer.json, config.json,
    /// tokenizer_config.json and special_tokens_map.json.
    pub model_dir: PathBuf,
    pub onnxruntime_lib: PathBuf,
}

#[derive(Debug, Clone)]
pub struct EmbedderOptions {
    /// Max tokens per input (longer input is truncated by the model).
    pub max_length: usize,
    pub threads: usize,
    /// Prefixes some models (e5, bge) expect; empty for MiniLM.
    pub query_prefix: String,
    pub passage_prefix: String,
}

impl Default for EmbedderOptions {
    fn default() -> Self {
        Self {
            max_length: 256,
            threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            query_prefix: String::new(),
            passage_prefix: String::new(),
        }
    }
}

pub struct FastEmbedder {
    model: Mutex<TextEmbedding>,
    dim: usize,
    id: String,
    opts: EmbedderOptions,
}

/// Reads a model file; a missing one names the fetch script.
pub(crate) fn read(path: PathBuf) -> Result<Vec<u8>> {
    if !path.is_file() {
        return Err(RetrieveError::ModelMissing {
            path: path.display().to_string(),
            fetch: FETCH_MODELS,
        });
    }
    Ok(std::fs::read(path)?)
}

impl FastEmbedder {
    pub fn load(paths: &EmbedderPaths, opts: EmbedderOptions) -> Result<Self> {
        let dir = &paths.model_dir;
        let onnx = read(dir.join("model.onnx"))?;
        let files = TokenizerFiles {
            tokenizer_file: read(dir.join("tokenizer.json"))?,
            config_file: read(dir.join("config.json"))?,
            special_tokens_map_file: read(dir.join("special_tokens_map.json"))?,
            tokenizer_config_file: read(dir.join("tokenizer_config.json"))?,
        };
        let env = onnxruntime(&paths.onnxruntime_lib)?;
        let id = format!(
            "{}@{}",
            dir.file_name().and_then(|s| s.to_str()).unwrap_or("model"),
            short_hash(&onnx)
        );
        let model = UserDefinedEmbeddingModel::new(onnx, files).with_pooling(Pooling::Mean);
        let init = InitOptionsUserDefined::new()
            .with_max_length(opts.max_length)
            .with_intra_threads(opts.threads.max(1))
            .with_environment(env);
        let mut model = TextEmbedding::try_new_from_user_defined(model, init)
            .map_err(|e| RetrieveError::Embedding(e.to_string()))?;
        let probe = model
            .embed(vec!["dimension probe"], None)
            .map_err(|e| RetrieveError::Embedding(e.to_string()))?;
        let dim = probe.first().map(Vec::len).unwrap_or(0);
        if dim == 0 {
            return Err(RetrieveError::Embedding("model returned an empty vector".to_owned()));
        }
        info!(model = %id, dim, "embedding model loaded");
        Ok(Self {
            model: Mutex::new(model),
            dim,
            id,
            opts,
        })
    }

    fn embed_all(&self, texts: Vec<String>) -> BackendResult<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        // Sort by length so each batch pads to similar lengths, then restore order.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| texts[i].len());
        let sorted: Vec<&str> = order.iter().map(|&i| texts[i].as_str()).collect();
        let vecs = self
            .model
            .lock()
            .embed(sorted, Some(32))
            .map_err(|e| BackendError::backend("fastembed", e.to_string()))?;
        let mut out = vec![Vec::new(); texts.len()];
        for (v, &i) in vecs.into_iter().zip(order.iter()) {
            out[i] = v;
        }
        Ok(out)
    }
}

impl Embedder for FastEmbedder {
    fn dim(&self) -> usize {
        self.dim
    }

    fn embed_passages(&self, texts: &[String]) -> BackendResult<Vec<Vec<f32>>> {
        let p = &self.opts.passage_prefix;
        self.embed_all(texts.iter().map(|t| format!("{p}{t}")).collect())
    }

    fn embed_query(&self, text: &str) -> BackendResult<Vec<f32>> {
        let p = &self.opts.query_prefix;
        self.embed_all(vec![format!("{p}{text}")])?
            .pop()
            .ok_or_else(|| BackendError::invalid("fastembed", "no vector returned"))
    }

    fn model_id(&self) -> String {
        self.id.clone()
    }
}

/// Counts tokens with the embedding model's own tokenizer (no special tokens,
/// no truncation), so chunk budgets match what the model sees.
pub struct HfTokenCounter {
    tokenizer: tokenizers::Tokenizer,
}

impl HfTokenCounter {
    pub fn load(tokenizer_json: &Path) -> Result<Self> {
        if !tokenizer_json.is_file() {
            return Err(RetrieveError::ModelMissing {
                path: tokenizer_json.display().to_string(),
                fetch: FETCH_MODELS,
            });
        }
        let mut tokenizer =
            tokenizers::Tokenizer::from_file(tokenizer_json).map_err(|e| RetrieveError::Tokenizer(e.to_string()))?;
        tokenizer
            .with_truncation(None)
            .map_err(|e| RetrieveError::Tokenizer(e.to_string()))?;
        tokenizer.with_padding(None);
        Ok(Self { tokenizer })
    }
}

impl TokenCounter for HfTokenCounter {
    fn count(&self, text: &str) -> usize {
        match self.tokenizer.encode_fast(text, false) {
            Ok(enc) => enc.len(),
            // Never under-count: fall back to a conservative estimate.
            Err(_) => text.len(),
        }
    }
}

mod sha2_free {
    //! A short, stable content fingerprint for model ids (FNV-1a 64).
    pub fn short_hash(bytes: &[u8]) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    }
}
