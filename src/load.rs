//! `docent bench load` (issue #8, "the server under load"): the real server
//! in this process on 127.0.0.1 (port 0, a temporary data directory, built
//! the way `serve` builds it), a small corpus uploaded over HTTP, then
//! concurrent chat sessions over loopback HTTP with streaming.
//!
//! - **Load phase.** `--sessions` sessions start together; each asks
//!   `--turns` questions one after the other (the web chat continues its
//!   conversation; the OpenAI-compatible endpoint resends the earlier
//!   turns). Per request: time to the first streamed token (client side,
//!   from sending the request), completion tokens, status, errors. Total
//!   tokens/s = completion tokens of the phase / its wall time.
//! - **Overload phase.** A second server on the same components and model,
//!   with a small admission capacity (`--overload-active` generating,
//!   `--overload-queued` waiting), gets `--overload-factor` times that many
//!   requests at once (web chat, streamed and unstreamed completions in
//!   turn). Each answer is a complete 200, a clean 503 (`overloaded`, a
//!   Retry-After of whole seconds, the JSON error shape) or "other"; then
//!   the server must still answer `/healthz`, `/readyz` and a chat.
//!
//! Peak RSS is this process's VmHWM (server and client: the client is a few
//! hundred KiB of connections and records).

use crate::app::{Components, WebParts};
use crate::bench::{Machine, Percentiles};
use crate::config::Config;
use anyhow::{bail, Context};
use docent_web::admission::{AdmissionConfig, AdmissionStats};
use futures::future::BoxFuture;
use futures::StreamExt;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Which chat entry point the load phase uses.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `POST /v1/chat` (server-sent events).
    Chat,
    /// `POST /v1/chat/completions` with `stream: true`.
    Completions,
    /// Even sessions the web chat, odd ones completions.
    Mixed,
}

#[derive(clap::Args, Debug, Clone)]
pub struct LoadOptions {
    /// SQuAD-format articles and questions (COVID-QA).
    #[arg(long, default_value = "../shared/data/covidqa/covidqa.json")]
    pub dataset: PathBuf,
    /// Articles of the dataset to upload (the first ones, in file order);
    /// the questions are theirs.
    #[arg(long, default_value_t = 4)]
    pub articles: usize,
    /// Upload these files instead of dataset articles (needs --questions).
    #[arg(long, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Questions, one per line (instead of the dataset's).
    #[arg(long)]
    pub questions: Option<PathBuf>,
    /// Concurrent chat sessions.
    #[arg(long, default_value_t = 64)]
    pub sessions: usize,
    /// Questions per session, asked one after the other.
    #[arg(long, default_value_t = 1)]
    pub turns: usize,
    /// Completion tokens per answer (`generation.max_tokens`).
    #[arg(long, default_value_t = 16)]
    pub max_tokens: u32,
    /// Prompt budget (`generation.max_prompt_tokens`, 1024 in a served
    /// config): small, so that 64 sessions finish in minutes on a few cores.
    #[arg(long, default_value_t = 256)]
    pub max_prompt_tokens: usize,
    #[arg(long, value_enum, default_value = "mixed")]
    pub endpoint: Endpoint,
    /// Load-phase admission: answers generating (default: the config's).
    #[arg(long)]
    pub max_active: Option<usize>,
    /// Load-phase admission: answers waiting (default: the config's).
    #[arg(long)]
    pub max_queued: Option<usize>,
    /// Load-phase admission: wait bound in seconds. Longer than a served
    /// config's (300 s), so that the phase measures service with a full
    /// queue rather than the clock; the report gives the longest wait.
    #[arg(long, default_value_t = 3600)]
    pub queue_timeout_secs: u64,
    /// Overload phase: answers generating.
    #[arg(long, default_value_t = 2)]
    pub overload_active: usize,
    /// Overload phase: answers waiting.
    #[arg(long, default_value_t = 2)]
    pub overload_queued: usize,
    /// Overload phase: requests sent at once, as a multiple of its capacity.
    #[arg(long, default_value_t = 4)]
    pub overload_factor: usize,
    /// Skip the overload phase.
    #[arg(long)]
    pub no_overload: bool,
    /// Print the report as JSON instead of the tables.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON report (every request included) to this file.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
    /// Also (re)write this Markdown results file (notes after its marker line are kept).
    #[arg(long)]
    pub markdown: Option<PathBuf>,
}

/// One request as the client saw it.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub session: usize,
    pub turn: usize,
    /// "chat", "completions" (streamed) or "completions-unstreamed".
    pub endpoint: &'static str,
    /// HTTP status; 0 when no response arrived.
    pub status: u16,
    /// A 200 whose answer arrived complete (final event, no error event).
    pub ok: bool,
    /// Request sent -> first non-empty streamed token.
    pub ttft_ms: Option<f64>,
    /// Request sent -> end of the response.
    pub total_ms: f64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Answered without a model call (not enough evidence).
    pub abstained: bool,
    pub retry_after: Option<String>,
    /// `error.code` of an error body or error event.
    pub error_code: Option<String>,
    pub error: Option<String>,
    /// For a non-200: the body is `{"error": {"code", "message"}}`.
    pub error_shape: bool,
}

impl Record {
    fn new(session: usize, turn: usize, endpoint: &'static str) -> Self {
        Self {
            session,
            turn,
            endpoint,
            status: 0,
            ok: false,
            ttft_ms: None,
            total_ms: 0.0,
            prompt_tokens: 0,
            completion_tokens: 0,
            abstained: false,
            retry_after: None,
            error_code: None,
            error: None,
            error_shape: false,
        }
    }

    /// What went wrong, for counting (None for a complete answer).
    fn failure(&self) -> Option<String> {
        if self.ok {
            return None;
        }
        Some(match (self.status, &self.error_code) {
            (0, _) => "no response".to_owned(),
            (s, Some(code)) => format!("{s} {code}"),
            (s, None) => format!("{s} incomplete"),
        })
    }
}

#[derive(Debug, Serialize)]
pub struct Settings {
    pub model: String,
    pub compute_threads: usize,
    pub http_workers: usize,
    pub max_tokens: u32,
    pub max_prompt_tokens: usize,
    pub max_num_seqs: usize,
    pub prefix_cache_n: usize,
    pub evidence: String,
    pub citation_support: String,
    pub rerank: bool,
}

#[derive(Debug, Serialize)]
pub struct Corpus {
    pub documents: usize,
    pub chunks: u64,
    pub questions: usize,
    pub ingest_seconds: f64,
    pub names: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Bounds {
    pub max_active: usize,
    pub max_queued: usize,
    pub queue_timeout_secs: u64,
}

impl From<AdmissionConfig> for Bounds {
    fn from(a: AdmissionConfig) -> Self {
        Self {
            max_active: a.max_active,
            max_queued: a.max_queued,
            queue_timeout_secs: a.queue_timeout.as_secs(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct LoadPhase {
    pub sessions: usize,
    pub turns: usize,
    pub endpoint: Endpoint,
    pub admission: Bounds,
    pub requests: usize,
    pub ok: usize,
    pub errors: usize,
    pub error_rate: f64,
    pub failures: BTreeMap<String, usize>,
    /// Complete answers without a model call (too little evidence).
    pub abstained: usize,
    /// Over complete, generated (not abstained) answers.
    pub ttft: Percentiles,
    /// Request latency over complete answers.
    pub latency: Percentiles,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub wall_seconds: f64,
    pub completion_tokens_per_second: f64,
    pub requests_per_minute: f64,
    /// Highest numbers of answers generating and waiting seen (sampled
    /// every 100 ms).
    pub peak_active: usize,
    pub peak_waiting: usize,
    pub admission_end: AdmissionStats,
    /// VmRSS before the phase and its sampled maximum during it.
    pub rss_before_bytes: u64,
    pub rss_max_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct OverloadPhase {
    pub admission: Bounds,
    pub requests: usize,
    pub ok: usize,
    /// 503, Retry-After in whole seconds, `{"error": {"code": "overloaded", ...}}`.
    pub refused_clean: usize,
    pub other: usize,
    pub statuses: BTreeMap<u16, usize>,
    pub retry_after_min: Option<u64>,
    pub retry_after_max: Option<u64>,
    pub admission_end: AdmissionStats,
    /// After the burst (the admitted answers done).
    pub healthz_status: u16,
    pub readyz_status: u16,
    pub chat_after_ok: bool,
    pub wall_seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct LoadReport {
    pub date: String,
    pub command: String,
    pub machine: Machine,
    pub settings: Settings,
    pub corpus: Corpus,
    /// One chat before the phases (loads lazily built state, fills the
    /// prefix cache with the system prompt); not counted.
    pub warmup: Record,
    pub load: LoadPhase,
    pub overload: Option<OverloadPhase>,
    /// VmHWM of this process at the end (model load and ingest included).
    pub peak_rss_bytes: u64,
    pub records: Vec<Record>,
    pub overload_records: Vec<Record>,
}

/// A temporary directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("docent-load-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A server running in this process.
struct Running {
    base: String,
    stop: Option<Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn start(state: docent_web::AppState, workers: usize) -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).context("binding 127.0.0.1:0")?;
        let base = format!("http://{}", listener.local_addr()?);
        let server = docent_web::server(listener, state, workers, 5)?;
        let handle = server.handle();
        let task = tokio::spawn(async move {
            if let Err(e) = server.await {
                tracing::error!(error = %e, "bench server failed");
            }
        });
        Ok(Self {
            base,
            stop: Some(Box::new(move || -> BoxFuture<'static, ()> {
                Box::pin(handle.stop(true))
            })),
            task,
        })
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            stop().await;
        }
        let _ = (&mut self.task).await;
    }
}

/// Documents to upload (name, bytes) and the questions to ask.
/// A document to upload: file name and bytes.
type Upload = (String, Vec<u8>);

fn corpus(opts: &LoadOptions) -> anyhow::Result<(Vec<Upload>, Vec<String>)> {
    let mut questions: Vec<String> = match &opts.questions {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("reading {}", p.display()))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        None => Vec::new(),
    };
    if !opts.files.is_empty() {
        if questions.is_empty() {
            bail!("--files needs --questions (one question per line)");
        }
        let mut docs = Vec::new();
        for f in &opts.files {
            let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
            let name = f
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("document.txt")
                .to_owned();
            docs.push((name, bytes));
        }
        return Ok((docs, questions));
    }
    let text = std::fs::read_to_string(&opts.dataset)
        .with_context(|| format!("reading {} (--dataset)", opts.dataset.display()))?;
    let squad: Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", opts.dataset.display()))?;
    let articles = squad["data"].as_array().context("a SQuAD file has a `data` list")?;
    let mut docs = Vec::new();
    let mut per_article: Vec<Vec<String>> = Vec::new();
    for (i, a) in articles.iter().take(opts.articles.max(1)).enumerate() {
        let mut qs = Vec::new();
        let mut context = String::new();
        for p in a["paragraphs"].as_array().into_iter().flatten() {
            if let Some(c) = p["context"].as_str() {
                context.push_str(c);
                context.push_str("\n\n");
            }
            for q in p["qas"].as_array().into_iter().flatten() {
                if let Some(q) = q["question"].as_str() {
                    qs.push(q.trim().to_owned());
                }
            }
        }
        let id = a["paragraphs"][0]["document_id"]
            .as_u64()
            .map(|d| d.to_string())
            .unwrap_or_else(|| i.to_string());
        docs.push((format!("covidqa-{id}.txt"), context.into_bytes()));
        per_article.push(qs);
    }
    if questions.is_empty() {
        // Round robin over the articles, so sessions spread over them.
        let most = per_article.iter().map(Vec::len).max().unwrap_or(0);
        for j in 0..most {
            for qs in &per_article {
                if let Some(q) = qs.get(j) {
                    questions.push(q.clone());
                }
            }
        }
    }
    if docs.is_empty() || questions.is_empty() {
        bail!("{} holds no articles with questions", opts.dataset.display());
    }
    Ok((docs, questions))
}

async fn upload_and_wait(client: &reqwest::Client, base: &str, docs: Vec<Upload>) -> anyhow::Result<()> {
    let mut jobs = Vec::new();
    for (name, bytes) in docs {
        let part = reqwest::multipart::Part::bytes(bytes)
            .file_name(name.clone())
            .mime_str("text/plain")?;
        let form = reqwest::multipart::Form::new().part("file", part);
        let resp = client
            .post(format!("{base}/v1/documents"))
            .multipart(form)
            .send()
            .await
            .with_context(|| format!("uploading {name}"))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("uploading {name}: {status} {body}");
        }
        if let Some(job) = body["job_id"].as_str() {
            jobs.push((name, job.to_owned()));
        }
    }
    for (name, job) in jobs {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let j: Value = client.get(format!("{base}/v1/jobs/{job}")).send().await?.json().await?;
            match j["status"].as_str() {
                Some("ready") => break,
                Some("failed") => bail!("ingest of {name} failed: {j}"),
                _ if Instant::now() > deadline => bail!("ingest of {name} did not finish in 600 s"),
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
    Ok(())
}

/// One request to a chat entry point.
enum Call<'a> {
    Chat {
        question: &'a str,
        conversation_id: Option<&'a str>,
    },
    Completions {
        messages: &'a [Value],
        stream: bool,
    },
}

/// Sends one request and reads the whole answer; returns the record, the
/// streamed text and (web chat) the conversation id.
async fn call(
    client: &reqwest::Client,
    base: &str,
    call: Call<'_>,
    max_tokens: u32,
    mut rec: Record,
) -> (Record, String, Option<String>) {
    let started = Instant::now();
    let (url, body, streamed) = match &call {
        Call::Chat {
            question,
            conversation_id,
        } => {
            let mut b = json!({ "question": question });
            if let Some(id) = conversation_id {
                b["conversation_id"] = json!(id);
            }
            (format!("{base}/v1/chat"), b, true)
        }
        Call::Completions { messages, stream } => (
            format!("{base}/v1/chat/completions"),
            json!({"model": "docent", "messages": messages, "stream": stream, "max_tokens": max_tokens}),
            *stream,
        ),
    };
    let mut text = String::new();
    let mut conversation = None;
    let resp = match client.post(&url).json(&body).send().await {
        Ok(r) => r,
        Err(e) => {
            rec.error = Some(e.to_string());
            rec.total_ms = ms(started);
            return (rec, text, conversation);
        }
    };
    rec.status = resp.status().as_u16();
    rec.retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if rec.status != 200 {
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        rec.error_shape = body["error"]["code"].is_string() && body["error"]["message"].is_string();
        rec.error_code = body["error"]["code"].as_str().map(str::to_owned);
        rec.error = body["error"]["message"].as_str().map(str::to_owned);
        rec.total_ms = ms(started);
        return (rec, text, conversation);
    }
    if !streamed {
        match resp.json::<Value>().await {
            Ok(v) => {
                text = v["choices"][0]["message"]["content"].as_str().unwrap_or("").to_owned();
                rec.prompt_tokens = v["usage"]["prompt_tokens"].as_u64().unwrap_or(0);
                rec.completion_tokens = v["usage"]["completion_tokens"].as_u64().unwrap_or(0);
                rec.abstained = v["abstained"].as_bool().unwrap_or(false);
                rec.ok = v["choices"][0]["message"].is_object();
            }
            Err(e) => rec.error = Some(e.to_string()),
        }
        rec.total_ms = ms(started);
        return (rec, text, conversation);
    }
    let mut stream = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut finished = false;
    'read: while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                rec.error = Some(e.to_string());
                break;
            }
        };
        buf.extend_from_slice(&chunk);
        while let Some(i) = buf.windows(2).position(|w| w == b"\n\n") {
            let frame: Vec<u8> = buf.drain(..i + 2).collect();
            let frame = String::from_utf8_lossy(&frame);
            let mut event = "message";
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if data == "[DONE]" {
                break 'read;
            }
            let v: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
            let mut token = |t: &str, rec: &mut Record| {
                if !t.is_empty() {
                    rec.ttft_ms.get_or_insert_with(|| ms(started));
                    text.push_str(t);
                }
            };
            match (&call, event) {
                (Call::Chat { .. }, "token") => token(v["text"].as_str().unwrap_or(""), &mut rec),
                (Call::Chat { .. }, "citations") => rec.abstained = v["abstained"].as_bool().unwrap_or(false),
                (Call::Chat { .. }, "done") => {
                    rec.prompt_tokens = v["prompt_tokens"].as_u64().unwrap_or(0);
                    rec.completion_tokens = v["completion_tokens"].as_u64().unwrap_or(0);
                    conversation = v["conversation_id"].as_str().map(str::to_owned);
                    finished = true;
                }
                (_, "error") => {
                    rec.error_code = v["error"]["code"].as_str().map(str::to_owned);
                    rec.error = v["error"]["message"].as_str().map(str::to_owned);
                }
                (Call::Completions { .. }, _) => {
                    if v.get("error").is_some() {
                        rec.error_code = v["error"]["code"].as_str().map(str::to_owned);
                        rec.error = v["error"]["message"].as_str().map(str::to_owned);
                    }
                    token(v["choices"][0]["delta"]["content"].as_str().unwrap_or(""), &mut rec);
                    if v["usage"].is_object() {
                        rec.prompt_tokens = v["usage"]["prompt_tokens"].as_u64().unwrap_or(0);
                        rec.completion_tokens = v["usage"]["completion_tokens"].as_u64().unwrap_or(0);
                        rec.abstained = v["abstained"].as_bool().unwrap_or(false);
                        finished = true;
                    }
                }
                _ => {}
            }
        }
    }
    rec.ok = finished && rec.error.is_none() && rec.error_code.is_none();
    rec.total_ms = ms(started);
    (rec, text, conversation)
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

/// One chat session: `questions` asked in turn on one endpoint.
async fn session(
    client: reqwest::Client,
    base: String,
    index: usize,
    questions: Vec<String>,
    completions: bool,
    max_tokens: u32,
) -> Vec<Record> {
    let mut out = Vec::new();
    let mut conversation: Option<String> = None;
    let mut messages: Vec<Value> = Vec::new();
    for (turn, q) in questions.iter().enumerate() {
        let (rec, _, conv) = if completions {
            messages.push(json!({"role": "user", "content": q}));
            let r = call(
                &client,
                &base,
                Call::Completions {
                    messages: &messages,
                    stream: true,
                },
                max_tokens,
                Record::new(index, turn, "completions"),
            )
            .await;
            messages.push(json!({"role": "assistant", "content": r.1}));
            r
        } else {
            call(
                &client,
                &base,
                Call::Chat {
                    question: q,
                    conversation_id: conversation.as_deref(),
                },
                max_tokens,
                Record::new(index, turn, "chat"),
            )
            .await
        };
        if conv.is_some() {
            conversation = conv;
        }
        let failed = !rec.ok;
        out.push(rec);
        if failed {
            // A session does not go on after a failed turn.
            break;
        }
    }
    out
}

/// Samples the admission gate and RSS until stopped; (peak active, peak
/// waiting, max VmRSS).
fn sampler(
    admission: docent_web::admission::Admission,
) -> (Arc<AtomicBool>, tokio::task::JoinHandle<(usize, usize, u64)>) {
    let stop = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&stop);
    let task = tokio::spawn(async move {
        let (mut active, mut waiting, mut rss) = (0, 0, 0);
        while !s.load(Ordering::SeqCst) {
            let st = admission.stats();
            active = active.max(st.active);
            waiting = waiting.max(st.waiting);
            rss = rss.max(crate::bench::rss().0);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (active, waiting, rss)
    });
    (stop, task)
}

async fn status_of(client: &reqwest::Client, url: String) -> u16 {
    client.get(url).send().await.map(|r| r.status().as_u16()).unwrap_or(0)
}

/// Runs both phases and returns the report.
pub async fn run(cfg: &Config, opts: &LoadOptions) -> anyhow::Result<LoadReport> {
    let load_before = crate::bench::loadavg();
    let (docs, questions) = corpus(opts)?;
    if opts.sessions == 0 || opts.turns == 0 {
        bail!("--sessions and --turns must be positive");
    }
    let scratch = Scratch::new()?;
    let mut cfg = cfg.clone();
    cfg.storage.data_dir = scratch.0.join("data");
    cfg.storage.database_url = None;
    cfg.storage.blob_dir = None;
    cfg.storage.qdrant_url = None;
    cfg.access.require_auth = false;
    cfg.access.rate_limit_per_minute = 0;
    cfg.access.oidc = Default::default();
    cfg.generation.max_tokens = opts.max_tokens;
    cfg.generation.max_prompt_tokens = opts.max_prompt_tokens;
    if let Some(n) = opts.max_active {
        cfg.generation.max_active = n;
    }
    if let Some(n) = opts.max_queued {
        cfg.generation.max_queued = n;
    }
    cfg.generation.queue_timeout_secs = opts.queue_timeout_secs;
    cfg.validate()?;

    // The server, built the way `serve` builds it.
    let c = Components::build(&cfg).await?;
    let chat = c.chat_model().await?;
    let support = c.support_model().await?;
    let evidence = c.evidence_reranker().await?;
    let ingestor = Arc::clone(&c.ingestor);
    ingestor.set_claim_on_submit(false);
    let metrics = Arc::new(docent_web::metrics::Metrics::new().context("creating the metrics registry")?);
    ingestor.set_observer(metrics.clone());
    let log_start = c.store.last_change_seq().await?;
    let follower = Arc::new(docent_ingest::follow::Follower::new(Arc::clone(&ingestor), log_start));
    let following = Arc::clone(&follower).spawn(Duration::from_millis(cfg.storage.follow_interval_ms));
    let queue = Arc::new(docent_ingest::queue::IngestQueue::start(
        Arc::clone(&ingestor),
        docent_ingest::queue::QueueConfig {
            workers: cfg.ingest.workers,
            capacity: cfg.ingest.queue_capacity,
            poll: Duration::from_millis(cfg.ingest.poll_ms),
        },
    ));
    let parts = |metrics: Arc<docent_web::metrics::Metrics>, admission: AdmissionConfig| WebParts {
        chat: Arc::clone(&chat),
        support: support.clone(),
        evidence: evidence.clone(),
        queue: Arc::clone(&queue),
        follower: Arc::clone(&follower),
        metrics,
        oidc: None,
        provenance: docent_web::ModelProvenance::new(|| Ok(Vec::new())),
        admission,
    };
    let load_bounds = c.admission_config();
    let state = c.web_state(parts(Arc::clone(&metrics), load_bounds));
    let gate = state.admission.clone();
    let server = Running::start(state, cfg.server.workers)?;
    let base = server.base.clone();
    // Nothing may end the run but the server: no overall client timeout
    // below the queue bound plus a generous answer time.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(opts.sessions.max(64))
        .timeout(Duration::from_secs(cfg.generation.queue_timeout_secs + 1800))
        .build()?;

    let names: Vec<String> = docs.iter().map(|(n, _)| n.clone()).collect();
    let t = Instant::now();
    if !opts.json {
        eprintln!("uploading {} documents to {base} ...", docs.len());
    }
    upload_and_wait(&client, &base, docs).await?;
    let ingest_seconds = t.elapsed().as_secs_f64();
    let stored = c.store.list_documents(&cfg.access.default_labels, &[]).await?;
    let corpus = Corpus {
        documents: stored.len(),
        chunks: stored.iter().map(|d| u64::from(d.chunk_count)).sum(),
        questions: questions.len(),
        ingest_seconds,
        names,
    };

    if !opts.json {
        eprintln!("warm-up chat ...");
    }
    let (warmup, _, _) = call(
        &client,
        &base,
        Call::Chat {
            question: &questions[0],
            conversation_id: None,
        },
        opts.max_tokens,
        Record::new(0, 0, "chat"),
    )
    .await;
    if !warmup.ok {
        bail!("the warm-up chat failed: {warmup:?}");
    }

    // Load phase.
    if !opts.json {
        eprintln!(
            "load: {} sessions x {} turns, {:?}, max_active {} max_queued {} ...",
            opts.sessions, opts.turns, opts.endpoint, load_bounds.max_active, load_bounds.max_queued
        );
    }
    let rss_before = crate::bench::rss().0;
    let (stop, sampling) = sampler(gate.clone());
    let t = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..opts.sessions {
        let qs: Vec<String> = (0..opts.turns)
            .map(|j| questions[(s * opts.turns + j) % questions.len()].clone())
            .collect();
        let completions = match opts.endpoint {
            Endpoint::Chat => false,
            Endpoint::Completions => true,
            Endpoint::Mixed => s % 2 == 1,
        };
        tasks.push(tokio::spawn(session(
            client.clone(),
            base.clone(),
            s,
            qs,
            completions,
            opts.max_tokens,
        )));
    }
    let mut records = Vec::new();
    for t in futures::future::join_all(tasks).await {
        records.extend(t.context("session task")?);
    }
    let wall = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    let (peak_active, peak_waiting, rss_max) = sampling.await.context("sampler")?;
    let load = load_phase(
        opts,
        load_bounds,
        &records,
        wall,
        (peak_active, peak_waiting),
        gate.stats(),
        rss_before,
        rss_max,
    );

    // Overload phase: a second server on the same components and model,
    // with a small capacity.
    let mut overload = None;
    let mut overload_records = Vec::new();
    if !opts.no_overload {
        let bounds = AdmissionConfig {
            max_active: opts.overload_active.max(1),
            max_queued: opts.overload_queued,
            queue_timeout: Duration::from_secs(cfg.generation.queue_timeout_secs),
        };
        let capacity = bounds.max_active + bounds.max_queued;
        let n = capacity * opts.overload_factor.max(1);
        if !opts.json {
            eprintln!(
                "overload: {n} requests at once against max_active {} + max_queued {} ...",
                bounds.max_active, bounds.max_queued
            );
        }
        let m2 = Arc::new(docent_web::metrics::Metrics::new().context("creating the metrics registry")?);
        let state = c.web_state(parts(m2, bounds));
        let gate2 = state.admission.clone();
        let server2 = Running::start(state, cfg.server.workers)?;
        let base2 = server2.base.clone();
        let t = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..n {
            let client = client.clone();
            let base2 = base2.clone();
            let q = questions[i % questions.len()].clone();
            let max_tokens = opts.max_tokens;
            tasks.push(tokio::spawn(async move {
                let messages = [json!({"role": "user", "content": q})];
                let call_ = match i % 3 {
                    0 => Call::Chat {
                        question: &q,
                        conversation_id: None,
                    },
                    1 => Call::Completions {
                        messages: &messages,
                        stream: true,
                    },
                    _ => Call::Completions {
                        messages: &messages,
                        stream: false,
                    },
                };
                let name = ["chat", "completions", "completions-unstreamed"][i % 3];
                call(&client, &base2, call_, max_tokens, Record::new(i, 0, name))
                    .await
                    .0
            }));
        }
        for t in futures::future::join_all(tasks).await {
            overload_records.push(t.context("overload task")?);
        }
        let wall = t.elapsed().as_secs_f64();
        let healthz_status = status_of(&client, format!("{base2}/healthz")).await;
        let readyz_status = status_of(&client, format!("{base2}/readyz")).await;
        let (after, _, _) = call(
            &client,
            &base2,
            Call::Chat {
                question: &questions[0],
                conversation_id: None,
            },
            opts.max_tokens,
            Record::new(n, 0, "chat"),
        )
        .await;
        overload = Some(overload_phase(
            bounds,
            &overload_records,
            gate2.stats(),
            (healthz_status, readyz_status, after.ok),
            wall,
        ));
        server2.stop().await;
    }

    server.stop().await;
    let drained = queue.shutdown(Duration::from_secs(5)).await;
    tracing::debug!(finished = drained.finished, "bench ingest queue stopped");
    following.stop().await;
    let report = LoadReport {
        date: docent_core::now_rfc3339(),
        command: crate::bench::command_line(),
        machine: crate::bench::machine(load_before),
        settings: Settings {
            model: chat.name(),
            compute_threads: cfg.compute_threads(),
            http_workers: cfg.server.workers,
            max_tokens: opts.max_tokens,
            max_prompt_tokens: cfg.generation.max_prompt_tokens,
            max_num_seqs: cfg.generation.max_num_seqs,
            prefix_cache_n: cfg.generation.prefix_cache_n,
            evidence: cfg.generation.evidence.clone(),
            citation_support: cfg.generation.citation_support.clone(),
            rerank: cfg.retrieval.rerank,
        },
        corpus,
        warmup,
        load,
        overload,
        peak_rss_bytes: crate::bench::rss().1,
        records,
        overload_records,
    };
    // Everything holding the indexes drops before `scratch` (declared
    // first, dropped last) removes their directory.
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
fn load_phase(
    opts: &LoadOptions,
    bounds: AdmissionConfig,
    records: &[Record],
    wall: f64,
    (peak_active, peak_waiting): (usize, usize),
    admission_end: AdmissionStats,
    rss_before: u64,
    rss_max: u64,
) -> LoadPhase {
    let ok: Vec<&Record> = records.iter().filter(|r| r.ok).collect();
    let mut failures = BTreeMap::new();
    for f in records.iter().filter_map(Record::failure) {
        *failures.entry(f).or_insert(0) += 1;
    }
    let generated: Vec<f64> = ok.iter().filter(|r| !r.abstained).filter_map(|r| r.ttft_ms).collect();
    let completion_tokens: u64 = records.iter().map(|r| r.completion_tokens).sum();
    let requests = records.len();
    // Sessions stop at a failed turn: the turns never sent count as failed.
    let planned = opts.sessions * opts.turns;
    let errors = planned - ok.len();
    LoadPhase {
        sessions: opts.sessions,
        turns: opts.turns,
        endpoint: opts.endpoint,
        admission: bounds.into(),
        requests,
        ok: ok.len(),
        errors,
        error_rate: errors as f64 / planned.max(1) as f64,
        failures,
        abstained: ok.iter().filter(|r| r.abstained).count(),
        ttft: crate::bench::percentiles(generated),
        latency: crate::bench::percentiles(ok.iter().map(|r| r.total_ms).collect()),
        prompt_tokens: records.iter().map(|r| r.prompt_tokens).sum(),
        completion_tokens,
        wall_seconds: wall,
        completion_tokens_per_second: if wall > 0.0 {
            completion_tokens as f64 / wall
        } else {
            0.0
        },
        requests_per_minute: if wall > 0.0 { ok.len() as f64 * 60.0 / wall } else { 0.0 },
        peak_active,
        peak_waiting,
        admission_end,
        rss_before_bytes: rss_before,
        rss_max_bytes: rss_max,
    }
}

/// A clean refusal: 503, Retry-After in whole seconds (at least 1) and the
/// error shape with code `overloaded`.
fn clean_refusal(r: &Record) -> Option<u64> {
    let secs = r.retry_after.as_deref()?.trim().parse::<u64>().ok()?;
    (r.status == 503 && secs >= 1 && r.error_shape && r.error_code.as_deref() == Some("overloaded")).then_some(secs)
}

fn overload_phase(
    bounds: AdmissionConfig,
    records: &[Record],
    admission_end: AdmissionStats,
    (healthz_status, readyz_status, chat_after_ok): (u16, u16, bool),
    wall: f64,
) -> OverloadPhase {
    let mut statuses = BTreeMap::new();
    for r in records {
        *statuses.entry(r.status).or_insert(0) += 1;
    }
    let retry: Vec<u64> = records.iter().filter_map(clean_refusal).collect();
    let ok = records.iter().filter(|r| r.ok).count();
    OverloadPhase {
        admission: bounds.into(),
        requests: records.len(),
        ok,
        refused_clean: retry.len(),
        other: records.len() - ok - retry.len(),
        statuses,
        retry_after_min: retry.iter().copied().min(),
        retry_after_max: retry.iter().copied().max(),
        admission_end,
        healthz_status,
        readyz_status,
        chat_after_ok,
        wall_seconds: wall,
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// The report as plain-text tables.
pub fn table(r: &LoadReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let l = &r.load;
    let _ = writeln!(
        s,
        "model {}  threads {}  max_tokens {}  max_prompt_tokens {}  max_num_seqs {}",
        r.settings.model,
        r.settings.compute_threads,
        r.settings.max_tokens,
        r.settings.max_prompt_tokens,
        r.settings.max_num_seqs
    );
    let _ = writeln!(
        s,
        "corpus: {} documents, {} chunks, {} questions (ingest {:.1} s)",
        r.corpus.documents, r.corpus.chunks, r.corpus.questions, r.corpus.ingest_seconds
    );
    let _ = writeln!(
        s,
        "\nload: {} sessions x {} turns ({:?}), max_active {} + max_queued {}, queue timeout {} s",
        l.sessions, l.turns, l.endpoint, l.admission.max_active, l.admission.max_queued, l.admission.queue_timeout_secs
    );
    let _ = writeln!(
        s,
        "{:<34} {:>12}",
        "requests (ok / planned)",
        format!("{} / {}", l.ok, l.sessions * l.turns)
    );
    let _ = writeln!(s, "{:<34} {:>11.2}%", "error rate", 100.0 * l.error_rate);
    for (k, v) in &l.failures {
        let _ = writeln!(s, "  {k:<32} {v:>12}");
    }
    let _ = writeln!(s, "{:<34} {:>12}", "abstained (no model call)", l.abstained);
    let _ = writeln!(s, "{:<34} {:>12.0}", "TTFT p50 ms", l.ttft.p50_ms);
    let _ = writeln!(s, "{:<34} {:>12.0}", "TTFT p95 ms", l.ttft.p95_ms);
    let _ = writeln!(s, "{:<34} {:>12.0}", "latency p50 ms", l.latency.p50_ms);
    let _ = writeln!(s, "{:<34} {:>12.0}", "latency p95 ms", l.latency.p95_ms);
    let _ = writeln!(s, "{:<34} {:>12}", "completion tokens", l.completion_tokens);
    let _ = writeln!(s, "{:<34} {:>12.1}", "wall s", l.wall_seconds);
    let _ = writeln!(
        s,
        "{:<34} {:>12.2}",
        "completion tokens/s (total)", l.completion_tokens_per_second
    );
    let _ = writeln!(
        s,
        "{:<34} {:>12}",
        "peak generating / waiting",
        format!("{} / {}", l.peak_active, l.peak_waiting)
    );
    let _ = writeln!(
        s,
        "{:<34} {:>12}",
        "RSS MiB before / max during",
        format!("{:.0} / {:.0}", mib(l.rss_before_bytes), mib(l.rss_max_bytes))
    );
    let _ = writeln!(
        s,
        "{:<34} {:>12.1}",
        "longest wait for a slot s", l.admission_end.max_wait_secs
    );
    let _ = writeln!(s, "{:<34} {:>12.0}", "peak RSS MiB (VmHWM)", mib(r.peak_rss_bytes));
    if let Some(o) = &r.overload {
        let _ = writeln!(
            s,
            "\noverload: {} requests at once, max_active {} + max_queued {}",
            o.requests, o.admission.max_active, o.admission.max_queued
        );
        let _ = writeln!(s, "{:<34} {:>12}", "200, complete answer", o.ok);
        let _ = writeln!(s, "{:<34} {:>12}", "503 overloaded + Retry-After", o.refused_clean);
        let _ = writeln!(s, "{:<34} {:>12}", "anything else", o.other);
        if let (Some(a), Some(b)) = (o.retry_after_min, o.retry_after_max) {
            let _ = writeln!(s, "{:<34} {:>12}", "Retry-After s (min - max)", format!("{a} - {b}"));
        }
        let _ = writeln!(
            s,
            "{:<34} {:>12}",
            "after: /healthz /readyz chat",
            format!(
                "{} {} {}",
                o.healthz_status,
                o.readyz_status,
                if o.chat_after_ok { "ok" } else { "FAILED" }
            )
        );
    }
    s
}

/// docs/results/load.md: method, machine and figures; hand-written notes
/// after [`crate::bench::NOTES_MARKER`] in `previous` are kept.
pub fn markdown(r: &LoadReport, previous: Option<&str>) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let gib = |b: u64| b as f64 / (1024.0 * 1024.0 * 1024.0);
    let l = &r.load;
    let _ = writeln!(s, "# The server under load\n");
    let _ = writeln!(
        s,
        "Issue #8: {} concurrent chat sessions against the real server over loopback HTTP, \
         then more requests than its admission bounds allow. Generated by `docent bench load` \
         (src/load.rs); rerun the command to regenerate this file.\n",
        l.sessions
    );
    let _ = writeln!(s, "```sh\n{}\n```\n", r.command);
    let _ = writeln!(
        s,
        "- Date: {}\n- Machine: {} CPUs (nproc), {}, {:.1} GiB RAM\n- Build profile: {}\n\
         - Load average (1/5/15 min): {} before the run, {} after it\n",
        r.date,
        r.machine.nproc,
        r.machine.cpu_model,
        gib(r.machine.mem_total_bytes),
        r.machine.profile,
        r.machine.loadavg_before,
        r.machine.loadavg_after
    );
    let st = &r.settings;
    let _ = writeln!(s, "## Method\n");
    let _ = writeln!(
        s,
        "- **Server.** `docent serve`'s components in the bench process (SQLite, qdrant-edge, tantivy in a \
         temporary data directory), {} HTTP workers on 127.0.0.1, port 0. Chat model {} on {} compute threads, \
         mistral.rs with `max_num_seqs` = {} and prefix cache `prefix_cache_n` = {}, behind the admission \
         gate that lets {} answer(s) generate at once{}; answers of at most {} tokens from \
         prompts of at most {} tokens; evidence judged by `{}`, citation support `{}`.",
        st.http_workers,
        st.model,
        st.compute_threads,
        st.max_num_seqs,
        st.prefix_cache_n,
        r.load.admission.max_active,
        if r.load.admission.max_active < st.max_num_seqs {
            " (`generation.max_active` below `max_num_seqs`: mistral.rs on a CPU build batches only \
             sequences of equal length, so answers take turns)"
        } else {
            ""
        },
        st.max_tokens,
        st.max_prompt_tokens,
        st.evidence,
        st.citation_support
    );
    let _ = writeln!(
        s,
        "- **Corpus.** {} documents ({}), {} chunks, uploaded over HTTP and ingested in {:.1} s; {} questions \
         (their COVID-QA questions, round robin over the articles).",
        r.corpus.documents,
        r.corpus.names.join(", "),
        r.corpus.chunks,
        r.corpus.ingest_seconds,
        r.corpus.questions
    );
    let _ = writeln!(
        s,
        "- **Load phase.** After one warm-up chat ({:.1} s, not counted), {} sessions start together; each asks \
         {} question(s) in turn ({}), streaming. Admission: at most {} answers generating and {} waiting, \
         a wait bound of {} s (a served config's default is 300 s; the longest wait is reported). TTFT is measured by the client, from sending the request to the first \
         non-empty streamed token, over complete answers that called the model (abstentions answer \
         without it). Tokens/s = all completion tokens / the phase's wall time.",
        r.warmup.total_ms / 1000.0,
        l.sessions,
        l.turns,
        match l.endpoint {
            Endpoint::Chat => "`POST /v1/chat`",
            Endpoint::Completions => "`POST /v1/chat/completions`, `stream: true`",
            Endpoint::Mixed =>
                "even sessions `POST /v1/chat`, odd ones `POST /v1/chat/completions` with `stream: true`",
        },
        l.admission.max_active,
        l.admission.max_queued,
        l.admission.queue_timeout_secs
    );
    if let Some(o) = &r.overload {
        let _ = writeln!(
            s,
            "- **Overload phase.** A second server on the same components and model with max_active = {} and \
             max_queued = {} gets {} requests at once (web chat, streamed and unstreamed completions in turn). \
             A clean refusal is a 503 with a Retry-After of whole seconds and the body \
             `{{\"error\": {{\"code\": \"overloaded\", \"message\": ...}}}}`. Then `/healthz`, `/readyz` and one \
             more chat.",
            o.admission.max_active, o.admission.max_queued, o.requests
        );
    }
    let _ = writeln!(
        s,
        "- **Memory.** Peak RSS is the bench process's VmHWM (server and client; model load and ingest \
         included); RSS during the phase is sampled every 100 ms.\n"
    );
    let _ = writeln!(s, "## Load: {} concurrent sessions\n", l.sessions);
    let _ = writeln!(s, "| figure | value |\n|---|---:|");
    let _ = writeln!(
        s,
        "| requests complete / planned | {} / {} |",
        l.ok,
        l.sessions * l.turns
    );
    let _ = writeln!(s, "| error rate | {:.2}% |", 100.0 * l.error_rate);
    let _ = writeln!(s, "| abstained (no model call) | {} |", l.abstained);
    let _ = writeln!(s, "| TTFT p50 | {:.2} s |", l.ttft.p50_ms / 1000.0);
    let _ = writeln!(s, "| TTFT p95 | {:.2} s |", l.ttft.p95_ms / 1000.0);
    let _ = writeln!(s, "| TTFT mean | {:.2} s |", l.ttft.mean_ms / 1000.0);
    let _ = writeln!(
        s,
        "| request latency p50 / p95 | {:.2} / {:.2} s |",
        l.latency.p50_ms / 1000.0,
        l.latency.p95_ms / 1000.0
    );
    let _ = writeln!(
        s,
        "| prompt / completion tokens | {} / {} |",
        l.prompt_tokens, l.completion_tokens
    );
    let _ = writeln!(s, "| wall time | {:.1} s |", l.wall_seconds);
    let _ = writeln!(
        s,
        "| completion tokens/s (all sessions) | {:.2} |",
        l.completion_tokens_per_second
    );
    let _ = writeln!(s, "| answers per minute | {:.1} |", l.requests_per_minute);
    let _ = writeln!(
        s,
        "| peak generating / waiting | {} / {} |",
        l.peak_active, l.peak_waiting
    );
    let _ = writeln!(
        s,
        "| mean slot hold (admission's moving average) | {} |",
        l.admission_end
            .mean_hold_secs
            .map(|h| format!("{h:.1} s"))
            .unwrap_or_else(|| "-".to_owned())
    );
    let _ = writeln!(
        s,
        "| longest wait for a generation slot | {:.1} s |",
        l.admission_end.max_wait_secs
    );
    let _ = writeln!(s, "| RSS before the phase | {:.0} MiB |", mib(l.rss_before_bytes));
    let _ = writeln!(s, "| RSS max during the phase | {:.0} MiB |", mib(l.rss_max_bytes));
    let _ = writeln!(s, "| peak RSS (VmHWM) | {:.0} MiB |", mib(r.peak_rss_bytes));
    if !l.failures.is_empty() {
        let _ = writeln!(s, "\nFailures:\n");
        for (k, v) in &l.failures {
            let _ = writeln!(s, "- {k}: {v}");
        }
    }
    if let Some(o) = &r.overload {
        let _ = writeln!(
            s,
            "\n## Past capacity: {} requests against {} + {}\n",
            o.requests, o.admission.max_active, o.admission.max_queued
        );
        let _ = writeln!(s, "| outcome | requests |\n|---|---:|");
        let _ = writeln!(s, "| 200, complete answer | {} |", o.ok);
        let _ = writeln!(
            s,
            "| 503 `overloaded` with Retry-After and the error shape | {} |",
            o.refused_clean
        );
        let _ = writeln!(s, "| anything else | {} |", o.other);
        let statuses: Vec<String> = o.statuses.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let _ = writeln!(
            s,
            "\nStatuses: {}. Retry-After: {}. Refused by the gate: {} with the queue full, {} after the wait bound. \
             After the burst: `/healthz` {}, `/readyz` {}, a chat {}. Phase wall time {:.1} s.",
            statuses.join(", "),
            match (o.retry_after_min, o.retry_after_max) {
                (Some(a), Some(b)) if a == b => format!("{a} s"),
                (Some(a), Some(b)) => format!("{a}-{b} s"),
                _ => "-".to_owned(),
            },
            o.admission_end.refused_queue_full,
            o.admission_end.refused_queue_timeout,
            o.healthz_status,
            o.readyz_status,
            if o.chat_after_ok { "answered" } else { "FAILED" },
            o.wall_seconds
        );
    }
    let _ = writeln!(s, "\n{}", crate::bench::NOTES_MARKER);
    if let Some(notes) = previous.and_then(crate::bench::kept_notes) {
        s.push('\n');
        s.push_str(notes);
        s.push('\n');
    }
    s
}

/// `docent bench load`: runs, prints, writes the requested files.
pub async fn command(cfg: &Config, opts: &LoadOptions) -> anyhow::Result<()> {
    let r = run(cfg, opts).await?;
    let body = serde_json::to_string_pretty(&r)?;
    if let Some(path) = &opts.json_out {
        std::fs::write(path, &body).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &opts.markdown {
        let previous = std::fs::read_to_string(path).ok();
        std::fs::write(path, markdown(&r, previous.as_deref()))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if opts.json {
        println!("{body}");
    } else {
        print!("{}", table(&r));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(status: u16, retry: Option<&str>, code: Option<&str>, shape: bool) -> Record {
        let mut r = Record::new(0, 0, "chat");
        r.status = status;
        r.retry_after = retry.map(str::to_owned);
        r.error_code = code.map(str::to_owned);
        r.error_shape = shape;
        r
    }

    #[test]
    fn only_a_503_with_retry_after_and_the_shape_is_clean() {
        assert_eq!(clean_refusal(&rec(503, Some("7"), Some("overloaded"), true)), Some(7));
        assert_eq!(clean_refusal(&rec(503, None, Some("overloaded"), true)), None);
        assert_eq!(clean_refusal(&rec(503, Some("0"), Some("overloaded"), true)), None);
        assert_eq!(clean_refusal(&rec(503, Some("7"), Some("unavailable"), true)), None);
        assert_eq!(clean_refusal(&rec(503, Some("7"), Some("overloaded"), false)), None);
        assert_eq!(clean_refusal(&rec(429, Some("7"), Some("overloaded"), true)), None);
    }

    #[test]
    fn failures_are_named_by_status_and_code() {
        assert_eq!(rec(0, None, None, false).failure().as_deref(), Some("no response"));
        assert_eq!(
            rec(503, Some("3"), Some("overloaded"), true).failure().as_deref(),
            Some("503 overloaded")
        );
        assert_eq!(rec(200, None, None, false).failure().as_deref(), Some("200 incomplete"));
        let mut ok = rec(200, None, None, false);
        ok.ok = true;
        assert_eq!(ok.failure(), None);
    }

    #[test]
    fn markdown_keeps_notes() {
        let prev = format!("old\n{}\n\nA note.\n", crate::bench::NOTES_MARKER);
        assert_eq!(crate::bench::kept_notes(&prev), Some("A note."));
    }
}
