//! Embeddings with fastembed on ONNX Runtime, from local files only.
//!
//! ONNX Runtime is loaded dynamically from a configured library file
//! (`load-dynamic`), never downloaded. ORT allows one environment per process,
//! so it is created once and shared by every model.

use crate::batcher::{plan_calls, BatchPolicy, PassageModel};
use crate::error::{Result, RetrieveError, FETCH_MODELS};
use docent_core::{BackendError, BackendResult, Embedder, TokenCounter};
use fastembed::{InitOptionsUserDefined, Pooling, TextEmbedding, TokenizerFiles, UserDefinedEmbeddingModel};
use parking_lot::Mutex;
pub use sha2_free::short_hash;
use std::borrow::Cow;
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
    /// How passages are cut into model calls (direct calls and the
    /// [`crate::batcher::EmbedBatcher`] alike).
    pub batch: BatchPolicy,
}

impl Default for EmbedderOptions {
    fn default() -> Self {
        Self {
            max_length: 256,
            threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            query_prefix: String::new(),
            passage_prefix: String::new(),
            batch: BatchPolicy::default(),
        }
    }
}

pub struct FastEmbedder {
    /// Locked per model call, so a query waits for one call at most.
    model: Mutex<TextEmbedding>,
    /// The model's own tokenizer (truncation and special tokens as the model
    /// sees them), outside the lock: passages are measured on the callers'
    /// threads.
    tokenizer: tokenizers::Tokenizer,
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
        let tokenizer = model.tokenizer.clone();
        Ok(Self {
            model: Mutex::new(model),
            tokenizer,
            dim,
            id,
            opts,
        })
    }

    fn passage<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match self.opts.passage_prefix.as_str() {
            "" => Cow::Borrowed(text),
            p => Cow::Owned(format!("{p}{text}")),
        }
    }

    /// One model call: every text is padded to the longest.
    fn call(&self, texts: &[&str]) -> BackendResult<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        self.model
            .lock()
            .embed(texts, Some(texts.len()))
            .map_err(|e| BackendError::backend("fastembed", e.to_string()))
    }
}

impl PassageModel for FastEmbedder {
    fn passage_tokens(&self, text: &str) -> usize {
        match self.tokenizer.encode_fast(self.passage(text).as_ref(), true) {
            Ok(enc) => enc.len(),
            // Only used to order texts: a rough estimate will do.
            Err(_) => (text.len() / 4 + 2).min(self.opts.max_length),
        }
    }

    fn embed_passage_batch(&self, texts: &[&str]) -> BackendResult<Vec<Vec<f32>>> {
        let texts: Vec<Cow<'_, str>> = texts.iter().map(|t| self.passage(t)).collect();
        let refs: Vec<&str> = texts.iter().map(AsRef::as_ref).collect();
        self.call(&refs)
    }
}

impl Embedder for FastEmbedder {
    fn dim(&self) -> usize {
        self.dim
    }

    /// Direct (unbatched) passage embedding, for interactive callers such
    /// as the citation check: sorted by token count and cut into calls by
    /// the same policy as the batcher, but on the caller's thread.
    fn embed_passages(&self, texts: &[String]) -> BackendResult<Vec<Vec<f32>>> {
        let mut order: Vec<(usize, usize)> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| (self.passage_tokens(t), i))
            .collect();
        order.sort_unstable();
        let tokens: Vec<usize> = order.iter().map(|&(t, _)| t).collect();
        let mut out = vec![Vec::new(); texts.len()];
        for call in plan_calls(&tokens, self.opts.batch) {
            let part = &order[call];
            let batch: Vec<&str> = part.iter().map(|&(_, i)| texts[i].as_str()).collect();
            let vecs = self.embed_passage_batch(&batch)?;
            if vecs.len() != part.len() {
                return Err(BackendError::invalid(
                    "fastembed",
                    "vector count differs from text count",
                ));
            }
            for (&(_, i), v) in part.iter().zip(vecs) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    fn embed_query(&self, text: &str) -> BackendResult<Vec<f32>> {
        let q = match self.opts.query_prefix.as_str() {
            "" => Cow::Borrowed(text),
            p => Cow::Owned(format!("{p}{text}")),
        };
        self.call(&[q.as_ref()])?
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
