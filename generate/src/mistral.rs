//! The in-process chat model: mistral.rs on a local GGUF file.
//!
//! The model runs on mistral.rs's own engine thread; requests are async and
//! never block the HTTP workers. Streaming is used for every request, so that
//! dropping the stream (the client went away, or the sink said stop) cancels
//! generation within about one decode step.

use crate::error::{GenerateError, Result};
use docent_core::{BackendError, BackendResult, ChatMessage, ChatModel, GenParams, GenUsage, Role, TokenSink};
use mistralrs::{
    GgufModelBuilder, MemoryGpuConfig, Model, PagedAttentionConfig, PagedAttentionMetaBuilder, PagedCacheType,
    RequestBuilder, Response, TextMessageRole, TextMessages, TokenSource,
};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tracing::info;

/// The kernel that quantized Q4_1 matmuls of 16 rows or more (reading a
/// prompt) take on this CPU, chosen at run time by the patched candle:
/// `"amx"`, `"avx512-vnni-tiles"`, `"avx512-vnni"`, `"avx2"` or `"scalar"`.
pub fn q4_1_prompt_kernel() -> &'static str {
    candle_core::quantized::q4_1_prompt_kernel()
}

/// Settings for the local model.
#[derive(Debug, Clone)]
pub struct MistralOptions {
    /// The GGUF file. Its directory must hold no stray *_config.json files:
    /// mistral.rs reads such files from the model's directory.
    pub gguf: PathBuf,
    pub max_num_seqs: usize,
    pub prefix_cache_n: usize,
    /// PagedAttention settings; applied only where mistral.rs supports it
    /// (CUDA and Metal builds), ignored on CPU.
    pub paged: Option<PagedKv>,
}

/// The KV cache of a GPU build (see docs/gpu.md).
#[derive(Debug, Clone, Copy)]
pub struct PagedKv {
    /// Tokens per KV block (8, 16 or 32).
    pub block_size: usize,
    /// KV cache size in MiB; 0 = `gpu_memory_utilization`.
    pub kv_cache_mb: usize,
    /// Share of GPU memory mistral.rs may fill when `kv_cache_mb` is 0.
    pub gpu_memory_utilization: f32,
    /// FP8 (E4M3) KV entries: half the memory and bandwidth per token.
    pub fp8: bool,
}

impl PagedKv {
    fn config(&self) -> Result<PagedAttentionConfig> {
        let mem = if self.kv_cache_mb > 0 {
            MemoryGpuConfig::MbAmount(self.kv_cache_mb)
        } else {
            MemoryGpuConfig::Utilization(self.gpu_memory_utilization)
        };
        let cache_type = if self.fp8 {
            PagedCacheType::F8E4M3
        } else {
            PagedCacheType::Auto
        };
        PagedAttentionMetaBuilder::default()
            .with_block_size(self.block_size)
            .with_gpu_memory(mem)
            .with_paged_cache_type(cache_type)
            .build()
            .map_err(|e| GenerateError::Load {
                path: "generation.paged_attention".to_owned(),
                message: e.to_string(),
            })
    }
}

pub struct MistralChat {
    model: Model,
    name: String,
    context_window: Option<usize>,
}

fn role(r: Role) -> TextMessageRole {
    match r {
        Role::System => TextMessageRole::System,
        Role::User => TextMessageRole::User,
        Role::Assistant => TextMessageRole::Assistant,
    }
}

impl MistralChat {
    pub async fn load(opts: &MistralOptions) -> Result<Self> {
        let path = &opts.gguf;
        if !path.is_file() {
            return Err(GenerateError::ModelMissing {
                path: path.display().to_string(),
            });
        }
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let file = path
            .file_name()
            .and_then(|f| f.to_str())
            .ok_or_else(|| GenerateError::Load {
                path: path.display().to_string(),
                message: "not a file name".to_owned(),
            })?;
        // mistral.rs treats the first argument as a local directory only when
        // it exists; make it absolute so nothing falls through to a hub.
        let dir = std::fs::canonicalize(dir).map_err(|e| GenerateError::Load {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let started = Instant::now();
        let mut builder = GgufModelBuilder::new(dir.display().to_string(), vec![file.to_owned()])
            .with_token_source(TokenSource::None)
            .with_max_num_seqs(opts.max_num_seqs.max(1))
            .with_prefix_cache_n(Some(opts.prefix_cache_n));
        // A CUDA build runs on the GPU (mistral.rs picks device 0); the CPU
        // build must never probe for one.
        if !cfg!(feature = "cuda") {
            builder = builder.with_force_cpu();
        }
        if let Some(paged) = &opts.paged {
            // A no-op where PagedAttention is unsupported (CPU).
            builder = builder.with_paged_attn(paged.config()?);
        }
        let model = builder.build().await.map_err(|e| GenerateError::Load {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        // The usable window: what the file was trained for, capped by what
        // the engine was sized for.
        let trained = crate::gguf::read_file(path)
            .ok()
            .and_then(|i| i.context_length())
            .and_then(|n| usize::try_from(n).ok());
        let engine = model.max_sequence_length().ok().flatten();
        let context_window = match (trained, engine) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        info!(
            model = file,
            context_window,
            elapsed_ms = started.elapsed().as_millis() as u64,
            q4_1_prompt_kernel = q4_1_prompt_kernel(),
            "chat model loaded"
        );
        Ok(Self {
            model,
            name: file.trim_end_matches(".gguf").to_owned(),
            context_window,
        })
    }
}

#[async_trait::async_trait]
impl ChatModel for MistralChat {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn context_window(&self) -> Option<usize> {
        self.context_window
    }

    async fn count_prompt_tokens(&self, messages: &[ChatMessage]) -> BackendResult<Option<usize>> {
        let mut msgs = TextMessages::new();
        for m in messages {
            msgs = msgs.add_message(role(m.role), m.content.clone());
        }
        let ids = self
            .model
            .tokenize(either::Either::Left(msgs), None, true, true, None)
            .await
            .map_err(|e| BackendError::backend("mistral.rs", format!("tokenize: {e}")))?;
        Ok(Some(ids.len()))
    }

    async fn generate(
        &self,
        messages: Vec<ChatMessage>,
        params: GenParams,
        sink: &mut (dyn TokenSink + Send),
    ) -> BackendResult<(String, GenUsage)> {
        let mut req = RequestBuilder::new()
            .set_sampler_max_len(params.max_tokens as usize)
            .set_sampler_temperature(f64::from(params.temperature));
        if params.temperature <= 0.0 {
            req = req.set_sampler_topk(1);
        }
        for m in messages {
            req = req.add_message(role(m.role), m.content);
        }
        let started = Instant::now();
        let mut first_token_ms = None;
        let mut text = String::new();
        let mut usage = GenUsage::default();
        let mut chunks = 0u32;
        let mut stream = self
            .model
            .stream_chat_request(req)
            .await
            .map_err(|e| BackendError::backend("mistral.rs", e.to_string()))?;
        while let Some(resp) = stream.next().await {
            match resp {
                Response::Chunk(chunk) => {
                    if let Some(delta) = chunk.choices.first().and_then(|c| c.delta.content.as_deref()) {
                        if !delta.is_empty() {
                            first_token_ms.get_or_insert(started.elapsed().as_millis() as u64);
                            chunks += 1;
                            text.push_str(delta);
                            if !sink.token(delta) {
                                // Dropping the stream cancels the sequence.
                                usage.cancelled = true;
                                break;
                            }
                        }
                    }
                    if let Some(u) = chunk.usage {
                        usage.prompt_tokens = u.prompt_tokens as u32;
                        usage.completion_tokens = u.completion_tokens as u32;
                    }
                }
                Response::ModelError(e, _) => return Err(BackendError::backend("mistral.rs", e)),
                Response::InternalError(e) => return Err(BackendError::backend("mistral.rs", e.to_string())),
                Response::ValidationError(e) => return Err(BackendError::invalid("mistral.rs", e.to_string())),
                _ => {}
            }
        }
        if usage.completion_tokens == 0 {
            // No final usage chunk (cancelled): one streamed chunk per token.
            usage.completion_tokens = chunks;
        }
        usage.time_to_first_token_ms = first_token_ms.unwrap_or(0);
        usage.total_ms = started.elapsed().as_millis() as u64;
        Ok((text, usage))
    }
}
