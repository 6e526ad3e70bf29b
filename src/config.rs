//! Layered configuration: committed defaults, then an optional TOML file
//! (`--config FILE` or `DOCENT_CONFIG`), then `DOCENT__SECTION__KEY`
//! environment variables. Validated once at startup.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: Server,
    pub storage: Storage,
    pub models: Models,
    pub ingest: Ingest,
    pub retrieval: Retrieval,
    pub generation: Generation,
    pub access: Access,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Server {
    pub host: String,
    /// 0 picks a free port; the bound address is printed on stdout.
    pub port: u16,
    pub workers: usize,
    pub max_upload_mb: usize,
    pub max_json_kb: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Storage {
    /// Holds the SQLite database, the indexes and uploaded blobs.
    pub data_dir: PathBuf,
    /// Defaults to `sqlite://<data_dir>/docent.db`; `postgres://...` for production.
    pub database_url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Models {
    /// Base directory; the paths below are relative to it unless absolute.
    pub dir: PathBuf,
    pub chat_gguf: PathBuf,
    pub embedding_dir: PathBuf,
    /// Cross-encoder used when `retrieval.rerank` is on.
    pub reranker_dir: PathBuf,
    pub onnxruntime_lib: PathBuf,
    pub embed_threads: usize,
    pub embed_max_length: usize,
    pub query_prefix: String,
    pub passage_prefix: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ingest {
    pub chunk_tokens: usize,
    pub overlap_tokens: usize,
    pub embed_batch: usize,
    pub workers: usize,
    pub queue_capacity: usize,
    /// Per-document extraction deadline.
    pub extract_timeout_secs: u64,
    /// Documents with more pages are refused (`too_large`).
    pub max_pages: u32,
    /// Cap on what a DOCX may inflate to (zip-bomb guard), in MiB.
    pub max_unzipped_mb: u64,
    /// "auto": OCR scanned pages and images with tesseract when installed;
    /// "off": never (such pages are reported as `needs_ocr`).
    pub ocr: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retrieval {
    pub candidates: usize,
    /// "rrf" or "convex".
    pub fusion: String,
    pub rrf_k: f32,
    /// Weight of the dense leg in convex fusion.
    pub convex_alpha: f32,
    pub hnsw_m: usize,
    pub hnsw_ef_construct: usize,
    pub hnsw_ef: usize,
    /// Keep an int8 scalar-quantized copy of the vectors, search it and
    /// rescore `oversampling` x k candidates with the full vectors.
    pub int8: bool,
    pub oversampling: f64,
    /// Segments past this many KiB of vectors get an HNSW graph; 0 =
    /// qdrant's default (10,000 KiB).
    pub indexing_threshold_kb: usize,
    /// BM25 field boosts.
    pub title_boost: f32,
    pub heading_boost: f32,
    pub body_boost: f32,
    /// Rerank the fused top `rerank_top_n` with the cross-encoder in
    /// `models.reranker_dir`.
    pub rerank: bool,
    pub rerank_top_n: usize,
    /// Query + passage tokens the cross-encoder reads.
    pub rerank_max_length: usize,
    /// Passages retrieved for an answer.
    pub answer_k: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Generation {
    pub sources: usize,
    pub max_source_chars: usize,
    pub max_tokens: u32,
    pub temperature: f32,
    pub max_num_seqs: usize,
    pub prefix_cache_n: usize,
    /// Threads for model compute (RAYON_NUM_THREADS); 0 = all cores.
    pub threads: usize,
    /// Abstain without calling the model when the best passage's cosine
    /// similarity to the question is below this (see docs/results/abstention.md).
    pub min_evidence: f32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Access {
    pub default_collection: String,
    /// Labels given to documents uploaded without any.
    pub default_labels: Vec<String>,
}

impl Default for Server {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            workers: 2,
            max_upload_mb: 64,
            max_json_kb: 256,
        }
    }
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            database_url: None,
        }
    }
}

impl Default for Models {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("models"),
            chat_gguf: PathBuf::from("SmolLM2-135M-Instruct.Q4_1.gguf"),
            embedding_dir: PathBuf::from("all-MiniLM-L6-v2-int8"),
            reranker_dir: PathBuf::from("reranker"),
            onnxruntime_lib: PathBuf::from("onnxruntime/libonnxruntime.so.1.31.1"),
            embed_threads: 0,
            embed_max_length: 256,
            query_prefix: String::new(),
            passage_prefix: String::new(),
        }
    }
}

impl Default for Ingest {
    fn default() -> Self {
        Self {
            chunk_tokens: 200,
            overlap_tokens: 32,
            embed_batch: 32,
            workers: 1,
            queue_capacity: 256,
            extract_timeout_secs: 120,
            max_pages: 5000,
            max_unzipped_mb: 256,
            ocr: "auto".into(),
        }
    }
}

impl Default for Retrieval {
    fn default() -> Self {
        Self {
            candidates: 50,
            fusion: "convex".into(),
            rrf_k: 60.0,
            convex_alpha: 0.5,
            hnsw_m: 16,
            hnsw_ef_construct: 100,
            hnsw_ef: 128,
            int8: false,
            oversampling: 2.0,
            indexing_threshold_kb: 0,
            title_boost: 1.0,
            heading_boost: 1.0,
            body_boost: 1.0,
            rerank: false,
            rerank_top_n: 30,
            rerank_max_length: 512,
            answer_k: 8,
        }
    }
}

impl Default for Generation {
    fn default() -> Self {
        Self {
            sources: 4,
            max_source_chars: 3000,
            max_tokens: 200,
            temperature: 0.0,
            max_num_seqs: 8,
            prefix_cache_n: 16,
            threads: 0,
            min_evidence: 0.25,
        }
    }
}

impl Default for Access {
    fn default() -> Self {
        Self {
            default_collection: docent_core::access::DEFAULT_COLLECTION.into(),
            default_labels: vec![docent_core::access::DEFAULT_GROUP.into()],
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration: {0}")]
    Invalid(String),
}

impl Config {
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        use figment::providers::{Env, Format, Serialized, Toml};
        let mut fig = figment::Figment::from(Serialized::defaults(Config::default()));
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("DOCENT_CONFIG").map(PathBuf::from));
        if let Some(f) = file {
            if !f.is_file() {
                return Err(ConfigError::Invalid(format!("config file {} not found", f.display())));
            }
            fig = fig.merge(Toml::file(f));
        }
        fig = fig.merge(Env::prefixed("DOCENT__").split("__"));
        let cfg: Config = fig.extract().map_err(Box::new)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The per-document extraction limits the ingest config describes.
    pub fn extract_limits(&self) -> docent_ingest::extract::Limits {
        use docent_ingest::extract::{Limits, OcrMode};
        Limits {
            timeout: std::time::Duration::from_secs(self.ingest.extract_timeout_secs),
            max_pages: self.ingest.max_pages,
            max_unzipped_bytes: self.ingest.max_unzipped_mb.saturating_mul(1 << 20),
            ocr: if self.ingest.ocr == "off" {
                OcrMode::Off
            } else {
                OcrMode::Auto
            },
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.ingest.chunk_tokens < 16 {
            return bad("ingest.chunk_tokens must be at least 16");
        }
        if self.ingest.overlap_tokens >= self.ingest.chunk_tokens {
            return bad("ingest.overlap_tokens must be smaller than ingest.chunk_tokens");
        }
        if self.ingest.chunk_tokens + 2 > self.models.embed_max_length {
            return bad("ingest.chunk_tokens + 2 must fit models.embed_max_length");
        }
        if !matches!(self.ingest.ocr.as_str(), "auto" | "off") {
            return bad("ingest.ocr must be \"auto\" or \"off\"");
        }
        if self.ingest.max_unzipped_mb == 0 {
            return bad("ingest.max_unzipped_mb must be positive");
        }
        if self.retrieval.rrf_k <= 0.0 {
            return bad("retrieval.rrf_k must be positive");
        }
        if !(0.0..=1.0).contains(&self.retrieval.convex_alpha) {
            return bad("retrieval.convex_alpha must be between 0 and 1");
        }
        if self.retrieval.oversampling < 1.0 {
            return bad("retrieval.oversampling must be at least 1");
        }
        let boosts = [
            self.retrieval.title_boost,
            self.retrieval.heading_boost,
            self.retrieval.body_boost,
        ];
        if boosts.iter().any(|b| !(b.is_finite() && *b >= 0.0)) {
            return bad("retrieval boosts must be finite and non-negative");
        }
        if self.retrieval.rerank && self.retrieval.rerank_top_n == 0 {
            return bad("retrieval.rerank_top_n must be positive when retrieval.rerank is on");
        }
        if !matches!(self.retrieval.fusion.as_str(), "rrf" | "convex") {
            return bad("retrieval.fusion must be \"rrf\" or \"convex\"");
        }
        if self.access.default_labels.is_empty() {
            return bad("access.default_labels must name at least one label");
        }
        if let Some(url) = &self.storage.database_url {
            if !(url.starts_with("sqlite:") || url.starts_with("postgres:") || url.starts_with("postgresql:")) {
                return bad("storage.database_url must start with sqlite:, postgres: or postgresql:");
            }
        }
        Ok(())
    }

    fn model_path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.models.dir.join(p)
        }
    }

    pub fn chat_gguf(&self) -> PathBuf {
        self.model_path(&self.models.chat_gguf)
    }

    pub fn embedding_dir(&self) -> PathBuf {
        self.model_path(&self.models.embedding_dir)
    }

    pub fn reranker_dir(&self) -> PathBuf {
        self.model_path(&self.models.reranker_dir)
    }

    pub fn onnxruntime_lib(&self) -> PathBuf {
        self.model_path(&self.models.onnxruntime_lib)
    }

    pub fn database_url(&self) -> String {
        self.storage
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.storage.data_dir.join("docent.db").display()))
    }

    pub fn fusion(&self) -> docent_retrieve::fusion::Fusion {
        use docent_retrieve::fusion::Fusion;
        match self.retrieval.fusion.as_str() {
            "convex" => Fusion::Convex {
                alpha: self.retrieval.convex_alpha,
            },
            _ => Fusion::Rrf {
                k: self.retrieval.rrf_k,
            },
        }
    }

    pub fn compute_threads(&self) -> usize {
        match self.generation.threads {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            n => n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn bad_overlap_is_rejected_with_a_clear_message() {
        let mut c = Config::default();
        c.ingest.overlap_tokens = 500;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("overlap_tokens"), "{e}");
    }
}
