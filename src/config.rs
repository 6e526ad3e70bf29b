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
    /// On SIGTERM/SIGINT: seconds to let in-flight requests and ingest jobs
    /// finish before unfinished jobs are handed back to other replicas.
    pub shutdown_grace_secs: u64,
    /// Origins (`scheme://host[:port]`) whose browser pages may call the
    /// API; empty = none (same-origin only, the web chat included).
    pub cors_allowed_origins: Vec<String>,
    /// This process's name in job claims. Empty: a stable id kept in
    /// `<data_dir>/replica_id` (so a restarted replica takes back its own
    /// interrupted jobs at once).
    pub replica_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Storage {
    /// Holds the SQLite database, the indexes and uploaded blobs.
    pub data_dir: PathBuf,
    /// Defaults to `sqlite://<data_dir>/docent.db`; `postgres://...` for production.
    pub database_url: Option<String>,
    /// Uploaded originals. Defaults to `<data_dir>/blobs`. Replicas sharing
    /// one database must share this directory too (a shared volume).
    pub blob_dir: Option<PathBuf>,
    /// A Qdrant server or cluster (gRPC, e.g. `http://qdrant:6334`) instead
    /// of the embedded qdrant-edge index; shared by all replicas.
    pub qdrant_url: Option<String>,
    pub qdrant_collection: String,
    /// Environment variable holding the Qdrant API key, if any.
    pub qdrant_api_key_env: Option<String>,
    /// Seconds allowed to reach PostgreSQL / Qdrant at startup.
    pub connect_timeout_secs: u64,
    /// How often (ms) this replica applies the SQL change log to its own
    /// indexes (what other replicas ingested or deleted).
    pub follow_interval_ms: u64,
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
    /// Passages the shared embedding worker takes from its queue per round
    /// (sorted by token count together, whichever ingests they came from).
    pub embed_round: usize,
    /// Padded tokens per model call (passages x the longest one's tokens).
    pub embed_call_tokens: usize,
    /// Passages per model call at most.
    pub embed_call_max: usize,
    pub query_prefix: String,
    pub passage_prefix: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ingest {
    pub chunk_tokens: usize,
    pub overlap_tokens: usize,
    /// Passages an ingest job hands the embedding worker at a time (a
    /// window; its progress moves per window).
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
    /// Seconds a claimed job stays this replica's without a heartbeat; a
    /// replica that dies loses its jobs to the others after this.
    pub lease_secs: u64,
    /// How often (ms) idle workers look for jobs queued by other replicas.
    pub poll_ms: u64,
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
    /// Prompt tokens (by the model's own tokenizer, chat template included);
    /// the model's context window minus `max_tokens` caps it too. Prompt
    /// reading dominates latency on CPU, hence a bound well under the window.
    pub max_prompt_tokens: usize,
    /// Withhold directive-like sentences in sources ("ignore previous
    /// instructions ...") from the prompt; stored text is untouched.
    pub withhold_directives: bool,
    /// What checks that a cited passage supports a sentence, besides word
    /// overlap: "embedding" (cosine of MiniLM embeddings), "reranker" (the
    /// cross-encoder in models.reranker_dir), "auto" (the reranker when
    /// retrieval.rerank is on, else embedding) or "lexical" (overlap only).
    pub citation_support: String,
    /// Follow-up questions made standalone before retrieval: "merge" (join
    /// to the previous question), "model" (the chat model rewrites; checked,
    /// falling back to merge) or "off".
    pub rewrite: String,
    /// Cosine similarity mapped to support 0 and to support 1.
    pub support_cos_floor: f32,
    pub support_cos_full: f32,
    /// A cited source whose support is below this is dropped.
    pub citation_drop_below: f32,
    /// An uncited sentence gets the best source at or above this.
    pub citation_attach_above: f32,
    /// A cited source is replaced by one that supports the sentence at
    /// least `citation_attach_above` and by this margin more.
    pub citation_repoint_margin: f32,
    pub max_tokens: u32,
    pub temperature: f32,
    pub max_num_seqs: usize,
    pub prefix_cache_n: usize,
    /// GPU builds (`--features cuda`): PagedAttention for the KV cache. No
    /// effect on CPU, where mistral.rs does not support it.
    pub paged_attention: bool,
    /// Tokens per KV block (8, 16 or 32).
    pub paged_block_size: usize,
    /// KV cache size in MiB on the GPU; 0 = `gpu_memory_utilization`.
    pub kv_cache_mb: usize,
    /// Share of GPU memory (weights included) mistral.rs may fill when
    /// `kv_cache_mb` is 0.
    pub gpu_memory_utilization: f32,
    /// "auto" (the model's dtype) or "f8e4m3" (half the bytes per token).
    pub kv_cache_type: String,
    /// Threads for model compute (RAYON_NUM_THREADS); 0 = all cores.
    pub threads: usize,
    /// Abstain without calling the model when the best passage's cosine
    /// similarity to the question is below this (see docs/results/abstention.md).
    pub min_evidence: f32,
    /// What judges whether the documents hold an answer: "cross-encoder"
    /// (the reranker in models.reranker_dir scores the top
    /// `evidence_rerank_n` passages, which it also reorders) or "dense"
    /// (cosine similarity only; no reranker needed).
    pub evidence: String,
    pub evidence_rerank_n: usize,
    /// Abstain when the best passage's cross-encoder relevance probability
    /// is below this (see docs/results/abstention.md).
    pub min_cross_evidence: f32,
    /// The chat model: "mistralrs" (in process, models.chat_gguf) or
    /// "openai" (an OpenAI-compatible server: vLLM, TGI, mistralrs-server).
    pub backend: String,
    /// Base URL of the OpenAI-compatible server, e.g.
    /// "http://10.0.0.5:8000/v1" (requests go to `{url}/chat/completions`).
    pub upstream_url: Option<String>,
    /// The `model` name sent upstream (the name the server serves).
    pub upstream_model: String,
    /// Name of an environment variable holding the upstream API key (sent
    /// as a bearer token), so no secret sits in the config file.
    pub upstream_api_key_env: Option<String>,
    /// Hosts ("llm.internal") and IPs/CIDRs ("10.0.0.0/8") the upstream may
    /// be on. Fail closed: empty refuses any upstream, and a host name that
    /// is not listed must resolve only to addresses inside listed CIDRs.
    /// From the environment: `[a, b]` or `a,b`.
    #[serde(deserialize_with = "list_or_comma_string")]
    pub upstream_allow: Vec<String>,
    /// Bound on one upstream request, the streamed answer included.
    pub upstream_timeout_secs: u64,
    /// Chat requests (web chat and /v1/chat/completions, streamed or not)
    /// generating at once. 0 = automatic: `max_num_seqs` (mistral.rs
    /// batches every admitted request and queues none of its own) on a GPU
    /// build or with an OpenAI-compatible upstream; 1 for the in-process
    /// model on the CPU, where mistral.rs has no PagedAttention and only
    /// batches sequences of equal length (see [`Config::max_active`]).
    pub max_active: usize,
    /// Chat requests waiting for a generation slot; past them, 503
    /// `overloaded` with Retry-After.
    pub max_queued: usize,
    /// How long a chat request may wait for a slot before it gets 503.
    pub queue_timeout_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Access {
    pub default_collection: String,
    /// Labels given to documents uploaded without any.
    pub default_labels: Vec<String>,
    /// Refuse `/v1` requests without an API key (`docent keys create`).
    /// Off: a request without a key runs as the local default user (the
    /// embedded one-user setup); a wrong or revoked key is refused anyway.
    pub require_auth: bool,
    /// Requests per principal per minute, per replica (0 = unlimited);
    /// past it, 429 with Retry-After.
    pub rate_limit_per_minute: u32,
    /// Mask PHI/PII (e-mail, phone, date of birth, SSN/NI, policy/member/
    /// record numbers, titled or labelled names) in audit records:
    /// "healthcare" or "off".
    pub redact_audit: String,
    /// Sign-in with an OpenID Connect provider's ID tokens (bearer JWTs
    /// and web-chat sessions); off unless `issuer` is set.
    pub oidc: Oidc,
    /// How long a web-chat session lasts from sign-in (seconds),
    /// independent of the ID token's own lifetime.
    pub session_ttl_secs: u64,
}

/// `[access.oidc]`: ID tokens are JWTs checked against the issuer's keys
/// (RS256/ES256 only): signature, `iss`, `aud`, `exp`/`nbf`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Oidc {
    /// The exact `iss` of accepted tokens; setting it turns OIDC on.
    pub issuer: Option<String>,
    /// What the tokens' `aud` must contain (docent's client id).
    pub audience: Option<String>,
    /// The issuer's keys as a local JWKS file (air-gapped setups) ...
    pub jwks_file: Option<PathBuf>,
    /// ... or the issuer's `jwks_uri`, fetched at startup.
    pub jwks_url: Option<String>,
    /// Least seconds between two reloads of the keys (a token naming an
    /// unknown `kid` triggers one: key rotation).
    pub jwks_refresh_secs: u64,
    /// The claim naming the user (falls back to `sub`).
    pub user_claim: String,
    /// The claim listing the user's groups (a dotted path reaches into
    /// objects, e.g. "realm_access.roles"); no claim = no groups.
    pub groups_claim: String,
    /// The claim holding "reader", "editor" or "admin"; missing = reader.
    pub role_claim: String,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway_secs: u64,
}

impl Default for Server {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            workers: 2,
            max_upload_mb: 64,
            max_json_kb: 256,
            shutdown_grace_secs: 20,
            cors_allowed_origins: Vec::new(),
            replica_id: String::new(),
        }
    }
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            database_url: None,
            blob_dir: None,
            qdrant_url: None,
            qdrant_collection: "docent_chunks".into(),
            qdrant_api_key_env: None,
            connect_timeout_secs: 10,
            follow_interval_ms: 500,
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
            embed_round: 1024,
            embed_call_tokens: 16_384,
            embed_call_max: 256,
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
            embed_batch: 256,
            workers: 1,
            queue_capacity: 256,
            extract_timeout_secs: 120,
            max_pages: 5000,
            max_unzipped_mb: 256,
            ocr: "auto".into(),
            lease_secs: 60,
            poll_ms: 500,
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
            max_prompt_tokens: 1024,
            withhold_directives: true,
            citation_support: "auto".into(),
            rewrite: "merge".into(),
            support_cos_floor: 0.2,
            support_cos_full: 0.8,
            citation_drop_below: 0.2,
            citation_attach_above: 0.5,
            citation_repoint_margin: 0.1,
            max_tokens: 200,
            temperature: 0.0,
            max_num_seqs: 8,
            prefix_cache_n: 16,
            paged_attention: true,
            paged_block_size: 32,
            kv_cache_mb: 0,
            gpu_memory_utilization: 0.9,
            kv_cache_type: "auto".into(),
            threads: 0,
            min_evidence: 0.25,
            evidence: "cross-encoder".into(),
            evidence_rerank_n: 8,
            min_cross_evidence: 0.65,
            backend: "mistralrs".into(),
            upstream_url: None,
            upstream_model: String::new(),
            upstream_api_key_env: None,
            upstream_allow: Vec::new(),
            upstream_timeout_secs: 120,
            max_active: 0,
            max_queued: 64,
            queue_timeout_secs: 300,
        }
    }
}

impl Default for Access {
    fn default() -> Self {
        Self {
            default_collection: docent_core::access::DEFAULT_COLLECTION.into(),
            default_labels: vec![docent_core::access::DEFAULT_GROUP.into()],
            require_auth: false,
            rate_limit_per_minute: 0,
            redact_audit: "healthcare".into(),
            oidc: Oidc::default(),
            session_ttl_secs: 8 * 3600,
        }
    }
}

impl Default for Oidc {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: None,
            jwks_file: None,
            jwks_url: None,
            jwks_refresh_secs: 60,
            user_claim: "preferred_username".into(),
            groups_claim: "groups".into(),
            role_claim: "docent_role".into(),
            leeway_secs: 30,
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
        if self.models.embed_round == 0 || self.models.embed_call_tokens == 0 || self.models.embed_call_max == 0 {
            return bad("models.embed_round, embed_call_tokens and embed_call_max must be positive");
        }
        if !matches!(self.ingest.ocr.as_str(), "auto" | "off") {
            return bad("ingest.ocr must be \"auto\" or \"off\"");
        }
        if self.ingest.max_unzipped_mb == 0 {
            return bad("ingest.max_unzipped_mb must be positive");
        }
        if !matches!(
            self.generation.citation_support.as_str(),
            "auto" | "embedding" | "reranker" | "lexical"
        ) {
            return bad("generation.citation_support must be \"auto\", \"embedding\", \"reranker\" or \"lexical\"");
        }
        if !matches!(self.generation.paged_block_size, 8 | 16 | 32) {
            return bad("generation.paged_block_size must be 8, 16 or 32");
        }
        if !(self.generation.gpu_memory_utilization > 0.0 && self.generation.gpu_memory_utilization <= 1.0) {
            return bad("generation.gpu_memory_utilization must be in (0, 1]");
        }
        if !matches!(self.generation.kv_cache_type.as_str(), "auto" | "f8e4m3") {
            return bad("generation.kv_cache_type must be \"auto\" or \"f8e4m3\"");
        }
        if !matches!(self.generation.evidence.as_str(), "cross-encoder" | "dense") {
            return bad("generation.evidence must be \"cross-encoder\" or \"dense\"");
        }
        if !(0.0..=1.0).contains(&self.generation.min_cross_evidence) {
            return bad("generation.min_cross_evidence must be between 0 and 1");
        }
        if docent_generate::rewrite::RewriteMode::parse(&self.generation.rewrite).is_none() {
            return bad("generation.rewrite must be \"merge\", \"model\" or \"off\"");
        }
        if self.generation.support_cos_full <= self.generation.support_cos_floor {
            return bad("generation.support_cos_full must be above generation.support_cos_floor");
        }
        if self.generation.max_prompt_tokens < 64 {
            return bad("generation.max_prompt_tokens must be at least 64");
        }
        if self.generation.queue_timeout_secs == 0 {
            return bad("generation.queue_timeout_secs must be positive");
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
        if docent_core::redact::Preset::parse(&self.access.redact_audit).is_none() {
            return bad("access.redact_audit must be \"healthcare\" or \"off\"");
        }
        for o in &self.server.cors_allowed_origins {
            let ok = url::Url::parse(o)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.path() == "/" && !o.ends_with('/'));
            if !ok {
                return Err(ConfigError::Invalid(format!(
                    "server.cors_allowed_origins entries must be origins like https://intranet.example, not {o:?}"
                )));
            }
        }
        if self.access.default_labels.is_empty() {
            return bad("access.default_labels must name at least one label");
        }
        self.validate_storage()?;
        self.validate_upstream()?;
        self.validate_oidc()?;
        Ok(())
    }

    /// `access.oidc` and the session lifetime.
    fn validate_oidc(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let a = &self.access;
        if !(60..=30 * 86_400).contains(&a.session_ttl_secs) {
            return invalid("access.session_ttl_secs must be between 60 and 2592000 (30 days)".to_owned());
        }
        let o = &a.oidc;
        let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
        if !set(&o.issuer) {
            if set(&o.audience) || o.jwks_file.is_some() || set(&o.jwks_url) {
                return invalid("access.oidc.issuer is required to turn on OIDC sign-in".to_owned());
            }
            return Ok(());
        }
        if !set(&o.audience) {
            return invalid(
                "access.oidc.audience (docent's client id at the issuer) is required with access.oidc.issuer"
                    .to_owned(),
            );
        }
        match (&o.jwks_file, &o.jwks_url) {
            (Some(_), None) => {}
            (None, Some(url)) => match url::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                _ => return invalid(format!("access.oidc.jwks_url must be an http(s) URL, not {url:?}")),
            },
            _ => {
                return invalid(
                    "access.oidc needs exactly one of jwks_file (a local JWKS JSON file) or jwks_url (the issuer's \
                     jwks_uri)"
                        .to_owned(),
                )
            }
        }
        for (name, v) in [
            ("user_claim", &o.user_claim),
            ("groups_claim", &o.groups_claim),
            ("role_claim", &o.role_claim),
        ] {
            if v.trim().is_empty() {
                return invalid(format!("access.oidc.{name} must name a claim"));
            }
        }
        if o.leeway_secs > 600 {
            return invalid("access.oidc.leeway_secs must be at most 600".to_owned());
        }
        Ok(())
    }

    /// What the OIDC verifier needs; `None` when OIDC sign-in is off.
    /// Call after [`Config::validate`].
    pub fn oidc_settings(&self) -> Option<docent_web::oidc::OidcSettings> {
        use docent_web::oidc::{JwksSource, OidcSettings};
        let o = &self.access.oidc;
        let issuer = o.issuer.clone().filter(|s| !s.trim().is_empty())?;
        let jwks = match (&o.jwks_file, &o.jwks_url) {
            (Some(f), _) => JwksSource::File(f.clone()),
            (None, Some(u)) => JwksSource::Url(u.clone()),
            (None, None) => return None,
        };
        Some(OidcSettings {
            issuer,
            audience: o.audience.clone().unwrap_or_default(),
            jwks,
            user_claim: o.user_claim.clone(),
            groups_claim: o.groups_claim.clone(),
            role_claim: o.role_claim.clone(),
            leeway_secs: o.leeway_secs,
            jwks_refresh_secs: o.jwks_refresh_secs,
        })
    }

    /// Database and vector-store URLs, the replication knobs.
    fn validate_storage(&self) -> Result<(), ConfigError> {
        let st = &self.storage;
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if let Some(url) = &st.database_url {
            let scheme_ok =
                url.starts_with("sqlite:") || url.starts_with("postgres:") || url.starts_with("postgresql:");
            if !scheme_ok {
                return invalid(format!(
                    "storage.database_url must start with sqlite:, postgres: or postgresql:, not {:?}",
                    redact_url(url)
                ));
            }
            if !url.starts_with("sqlite:") {
                if let Err(e) = url::Url::parse(url) {
                    return invalid(format!(
                        "storage.database_url {:?} is not a valid URL: {e}",
                        redact_url(url)
                    ));
                }
            }
        }
        if let Some(q) = &st.qdrant_url {
            match url::Url::parse(q) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                Ok(_) => {
                    return invalid(format!(
                        "storage.qdrant_url must be an http(s) URL of Qdrant's gRPC port (e.g. http://qdrant:6334), not {q:?}"
                    ))
                }
                Err(e) => return invalid(format!("storage.qdrant_url {q:?} is not a valid URL: {e}")),
            }
            if st.qdrant_collection.trim().is_empty() {
                return invalid("storage.qdrant_collection must not be empty".to_owned());
            }
        }
        if let Some(var) = &st.qdrant_api_key_env {
            if var.trim().is_empty() || var.contains('=') {
                return invalid(format!(
                    "storage.qdrant_api_key_env must name an environment variable, not {var:?}"
                ));
            }
        }
        if st.connect_timeout_secs == 0 || st.follow_interval_ms == 0 {
            return invalid("storage.connect_timeout_secs and storage.follow_interval_ms must be positive".to_owned());
        }
        if self.ingest.lease_secs < 5 || self.ingest.poll_ms == 0 {
            return invalid("ingest.lease_secs must be at least 5 and ingest.poll_ms positive".to_owned());
        }
        Ok(())
    }

    /// Where uploaded originals live.
    pub fn blob_dir(&self) -> PathBuf {
        self.storage
            .blob_dir
            .clone()
            .unwrap_or_else(|| self.storage.data_dir.join("blobs"))
    }

    /// The generation backend settings (the allowlist itself is checked
    /// against the resolved host at startup, see `Components::chat_model`).
    fn validate_upstream(&self) -> Result<(), ConfigError> {
        use docent_generate::upstream::{parse_upstream_url, AllowEntry};
        let g = &self.generation;
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        match g.backend.as_str() {
            "mistralrs" => {}
            "openai" => {
                if g.upstream_url.is_none() {
                    return invalid(
                        "generation.upstream_url is required when generation.backend is \"openai\"".to_owned(),
                    );
                }
                if g.upstream_model.trim().is_empty() {
                    return invalid(
                        "generation.upstream_model (the model name the upstream serves) is required when \
                         generation.backend is \"openai\""
                            .to_owned(),
                    );
                }
            }
            other => {
                return invalid(format!(
                    "generation.backend must be \"mistralrs\" or \"openai\", not {other:?}"
                ))
            }
        }
        if let Some(url) = &g.upstream_url {
            if let Err(e) = parse_upstream_url(url) {
                return invalid(e.to_string());
            }
        }
        for entry in &g.upstream_allow {
            if let Err(e) = AllowEntry::parse(entry) {
                return invalid(e.to_string());
            }
        }
        if g.upstream_timeout_secs == 0 {
            return invalid("generation.upstream_timeout_secs must be positive".to_owned());
        }
        if let Some(var) = &g.upstream_api_key_env {
            if var.trim().is_empty() || var.contains('=') {
                return invalid(format!(
                    "generation.upstream_api_key_env must name an environment variable, not {var:?}"
                ));
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

    /// How the embedding worker sizes rounds and model calls.
    pub fn embed_policy(&self) -> docent_retrieve::batcher::BatchPolicy {
        docent_retrieve::batcher::BatchPolicy {
            max_round: self.models.embed_round,
            token_budget: self.models.embed_call_tokens,
            max_batch: self.models.embed_call_max,
            ..Default::default()
        }
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

    /// Chat requests generating at once: `generation.max_active`, else
    /// `generation.max_num_seqs`, except for the in-process model on the
    /// CPU, where it is 1. There mistral.rs runs without PagedAttention and
    /// its scheduler batches only sequences of the same length; requests of
    /// different lengths take turns step by step, and measured with
    /// `docent bench load` (8 sessions, SmolLM2, 2 cores) that took 65.7 s
    /// against 19.8 s one at a time. So the CPU queue is docent's admission
    /// gate (bounded, with Retry-After), not the engine's.
    pub fn max_active(&self) -> usize {
        match self.generation.max_active {
            0 if self.generation.backend == "mistralrs" && !cfg!(feature = "cuda") => 1,
            0 => self.generation.max_num_seqs.max(1),
            n => n,
        }
    }

    pub fn compute_threads(&self) -> usize {
        match self.generation.threads {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            n => n,
        }
    }
}

/// A list given as a list (TOML, `[a, b]` in the environment) or as one
/// comma-separated string (`a,b` in the environment); blank items dropped.
fn list_or_comma_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct ListVisitor;
    impl<'de> serde::de::Visitor<'de> for ListVisitor {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of strings or a comma-separated string")
        }

        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect())
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element::<String>()? {
                out.push(item);
            }
            Ok(out)
        }
    }
    d.deserialize_any(ListVisitor)
}

/// A URL with any password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
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

    fn from_toml(toml: &str) -> Result<Config, ConfigError> {
        use figment::providers::{Format, Serialized, Toml};
        let cfg: Config = figment::Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(toml))
            .extract()
            .map_err(Box::new)?;
        cfg.validate()?;
        Ok(cfg)
    }

    #[test]
    fn upstream_backend_settings_load_and_validate() {
        let c = from_toml(
            r#"
            [generation]
            backend = "openai"
            upstream_url = "http://10.0.0.5:8000/v1"
            upstream_model = "mistral-small"
            upstream_api_key_env = "DOCENT_UPSTREAM_KEY"
            upstream_allow = ["10.0.0.0/8", "llm.internal", "::1/128"]
            upstream_timeout_secs = 30
            "#,
        )
        .expect("valid");
        assert_eq!(c.generation.backend, "openai");
        assert_eq!(c.generation.upstream_allow, ["10.0.0.0/8", "llm.internal", "::1/128"]);
        assert_eq!(c.generation.upstream_timeout_secs, 30);
        // One comma-separated string (how a plain env value arrives) is a list too.
        let c = from_toml("[generation]\nupstream_allow = \"10.0.0.0/8, llm.internal\"").expect("valid");
        assert_eq!(c.generation.upstream_allow, ["10.0.0.0/8", "llm.internal"]);
        assert_eq!(Config::default().generation.backend, "mistralrs");
    }

    #[test]
    fn oidc_settings_load_and_validate() {
        assert!(Config::default().oidc_settings().is_none());
        let c = from_toml(
            r#"
            [access]
            session_ttl_secs = 3600
            [access.oidc]
            issuer = "https://sso.example/realms/staff"
            audience = "docent"
            jwks_url = "https://sso.example/realms/staff/protocol/openid-connect/certs"
            groups_claim = "realm_access.roles"
            "#,
        )
        .expect("valid");
        let s = c.oidc_settings().expect("on");
        assert_eq!(s.audience, "docent");
        assert_eq!(s.groups_claim, "realm_access.roles");
        assert_eq!(
            (s.role_claim.as_str(), s.user_claim.as_str()),
            ("docent_role", "preferred_username")
        );
        assert_eq!(s.leeway_secs, 30);
        assert_eq!(c.access.session_ttl_secs, 3600);
        let cases = [
            ("audience = \"docent\"", "access.oidc.issuer is required"),
            ("issuer = \"https://i\"\njwks_file = \"k.json\"", "access.oidc.audience"),
            ("issuer = \"https://i\"\naudience = \"d\"", "exactly one of jwks_file"),
            (
                "issuer = \"https://i\"\naudience = \"d\"\njwks_file = \"k.json\"\njwks_url = \"https://i/k\"",
                "exactly one of jwks_file",
            ),
            (
                "issuer = \"https://i\"\naudience = \"d\"\njwks_url = \"file:///k\"",
                "jwks_url must be",
            ),
            (
                "issuer = \"https://i\"\naudience = \"d\"\njwks_file = \"k.json\"\nrole_claim = \"\"",
                "role_claim",
            ),
        ];
        for (toml, expect) in cases {
            let e = from_toml(&format!("[access.oidc]\n{toml}"))
                .expect_err(toml)
                .to_string();
            assert!(e.contains(expect), "{toml}: {e}");
        }
        let e = from_toml("[access]\nsession_ttl_secs = 5")
            .expect_err("ttl")
            .to_string();
        assert!(e.contains("session_ttl_secs"), "{e}");
    }

    #[test]
    fn bad_upstream_settings_are_rejected_with_clear_messages() {
        let cases = [
            ("backend = \"gpt\"", "generation.backend must be"),
            (
                "backend = \"openai\"\nupstream_model = \"m\"",
                "generation.upstream_url is required",
            ),
            (
                "backend = \"openai\"\nupstream_url = \"http://10.0.0.5/v1\"",
                "generation.upstream_model",
            ),
            (
                "backend = \"openai\"\nupstream_model = \"m\"\nupstream_url = \"ftp://10.0.0.5/v1\"",
                "is not http or https",
            ),
            (
                "upstream_allow = [\"10.0.0.0/33\"]",
                "generation.upstream_allow entry \"10.0.0.0/33\"",
            ),
            ("upstream_allow = [\"*.internal\"]", "generation.upstream_allow entry"),
            ("upstream_timeout_secs = 0", "upstream_timeout_secs"),
            ("upstream_api_key_env = \"\"", "upstream_api_key_env"),
        ];
        for (toml, expect) in cases {
            let e = from_toml(&format!("[generation]\n{toml}")).expect_err(toml).to_string();
            assert!(e.contains(expect), "{toml}: {e}");
        }
    }

    #[test]
    fn admission_bounds_default_to_the_engine_and_fit_64_chats() {
        let c = Config::default();
        // The in-process model on the CPU generates one answer at a time;
        // a GPU build or an upstream server batches max_num_seqs.
        let expected = if cfg!(feature = "cuda") {
            c.generation.max_num_seqs
        } else {
            1
        };
        assert_eq!(c.max_active(), expected);
        assert!(c.max_active() + c.generation.max_queued >= 64);
        let mut c = Config::default();
        c.generation.backend = "openai".into();
        assert_eq!(c.max_active(), c.generation.max_num_seqs);
        let c = from_toml("[generation]\nmax_active = 3\nmax_queued = 0\nqueue_timeout_secs = 5").expect("valid");
        assert_eq!((c.max_active(), c.generation.max_queued), (3, 0));
        let e = from_toml("[generation]\nqueue_timeout_secs = 0")
            .expect_err("zero timeout")
            .to_string();
        assert!(e.contains("generation.queue_timeout_secs"), "{e}");
    }
}
