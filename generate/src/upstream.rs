//! An OpenAI-compatible upstream chat model: vLLM, TGI or mistralrs-server
//! inside the data center, the scale-out path next to the in-process
//! mistral.rs model.
//!
//! Fail closed: [`check_upstream`] refuses any upstream whose host is not in
//! `generation.upstream_allow` (a host name listed exactly, or every address
//! the host resolves to inside a listed CIDR), and an empty list refuses
//! every upstream. [`OpenAiUpstream`] can only be built from the result of
//! that check, and its client keeps enforcing the list at every connection
//! (its DNS resolver refuses addresses outside it), follows no redirects and
//! ignores proxy environment variables, so requests go to the checked host
//! and nowhere else.
//!
//! Generation streams (`stream: true`) and reads the server-sent events as
//! they arrive; every content delta goes to the sink. When the sink says
//! stop, the response is dropped, which closes the connection and aborts
//! the upstream request.

use docent_core::{BackendError, BackendResult, ChatMessage, ChatModel, GenParams, GenUsage, Role, TokenSink};
use futures::StreamExt;
use ipnet::IpNet;
use reqwest::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// The name errors carry (`BackendError`'s backend).
const BACKEND: &str = "openai-upstream";
/// An SSE line longer than this is refused (a misbehaving upstream must not
/// grow our buffer without bound).
const MAX_LINE_BYTES: usize = 4 << 20;
/// How much of an error body is read and quoted.
const MAX_ERROR_BODY: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("generation.upstream_url {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("generation.upstream_allow entry {entry:?} is not an IP address, a CIDR (like 10.0.0.0/8) or a host name")]
    BadEntry { entry: String },
    #[error("could not resolve upstream host {host}: {message}")]
    Resolve { host: String, message: String },
    #[error("upstream host {host} (resolved to [{addrs}]) is not in generation.upstream_allow [{allow}]{hint}")]
    NotAllowed {
        host: String,
        addrs: String,
        allow: String,
        hint: &'static str,
    },
    #[error("could not build the upstream HTTP client: {0}")]
    Client(String),
}

/// Parses an upstream base URL (e.g. `http://10.0.0.5:8000/v1`): http or
/// https, with a host, without credentials (the API key comes from the
/// environment, never from the URL).
pub fn parse_upstream_url(url: &str) -> Result<Url, UpstreamError> {
    let bad = |reason: &str| UpstreamError::BadUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let parsed = Url::parse(url.trim()).map_err(|e| bad(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad(&format!("scheme {:?} is not http or https", parsed.scheme())));
    }
    if parsed.host().is_none() {
        return Err(bad("has no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad(
            "must not carry credentials; name an environment variable in generation.upstream_api_key_env",
        ));
    }
    if parsed.fragment().is_some() {
        return Err(bad("must not have a fragment"));
    }
    Ok(parsed)
}

/// One `generation.upstream_allow` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowEntry {
    /// A host name, matched exactly (case-insensitive) against the URL's host.
    Host(String),
    /// An address range; a bare IP is a one-address range.
    Net(IpNet),
}

impl AllowEntry {
    pub fn parse(entry: &str) -> Result<Self, UpstreamError> {
        let s = entry.trim();
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(Self::Net(net.trunc()));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Self::Net(IpNet::from(ip.to_canonical())));
        }
        if is_host_name(s) {
            return Ok(Self::Host(normalize_host(s)));
        }
        Err(UpstreamError::BadEntry {
            entry: entry.to_owned(),
        })
    }
}

impl fmt::Display for AllowEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Host(h) => f.write_str(h),
            Self::Net(n) => write!(f, "{n}"),
        }
    }
}

fn normalize_host(h: &str) -> String {
    h.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// An RFC 1123 host name: dot-separated labels of letters, digits and
/// hyphens (no leading or trailing hyphen), not all-numeric at the end (that
/// would be an IPv4 address).
fn is_host_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    if s.is_empty() || s.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = s.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    labels.iter().all(label_ok) && labels.last().is_some_and(|l| !l.bytes().all(|b| b.is_ascii_digit()))
}

/// The parsed `generation.upstream_allow`.
#[derive(Debug, Clone, Default)]
pub struct Allowlist {
    entries: Vec<AllowEntry>,
}

impl Allowlist {
    pub fn parse(entries: &[String]) -> Result<Self, UpstreamError> {
        Ok(Self {
            entries: entries.iter().map(|e| AllowEntry::parse(e)).collect::<Result<_, _>>()?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `host` is listed by name.
    pub fn names(&self, host: &str) -> bool {
        let host = normalize_host(host);
        self.entries
            .iter()
            .any(|e| matches!(e, AllowEntry::Host(h) if *h == host))
    }

    /// Whether `ip` is inside a listed range (IPv4-mapped IPv6 addresses
    /// count as their IPv4 address).
    pub fn covers(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.entries
            .iter()
            .any(|e| matches!(e, AllowEntry::Net(n) if n.contains(&ip)))
    }

    /// The decision for a host and the addresses it resolved to: allowed when
    /// the host is listed by name, or when there is at least one address and
    /// every one is inside a listed range.
    pub fn decide(&self, host: &str, addrs: &[IpAddr]) -> Result<(), UpstreamError> {
        if self.names(host) || (!addrs.is_empty() && addrs.iter().all(|a| self.covers(*a))) {
            return Ok(());
        }
        Err(UpstreamError::NotAllowed {
            host: host.to_owned(),
            addrs: join(addrs),
            allow: join(&self.entries),
            hint: if self.is_empty() {
                " (the list is empty, which allows no upstream)"
            } else {
                " (list the host name, or CIDRs covering every address it resolves to)"
            },
        })
    }
}

fn join<T: fmt::Display>(items: &[T]) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// An upstream that passed the allowlist; the only way to build an
/// [`OpenAiUpstream`].
#[derive(Debug, Clone)]
pub struct CheckedUpstream {
    url: Url,
    allow: Allowlist,
    addrs: Vec<IpAddr>,
}

impl CheckedUpstream {
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The addresses the host resolved to at the check (empty when the host
    /// was allowed by name).
    pub fn addrs(&self) -> &[IpAddr] {
        &self.addrs
    }
}

/// Checks an upstream base URL against `generation.upstream_allow`: the URL
/// must be http(s), and its host must be listed by name or resolve only to
/// addresses inside listed ranges. Anything else is refused.
pub async fn check_upstream(url: &str, allow: &[String]) -> Result<CheckedUpstream, UpstreamError> {
    let parsed = parse_upstream_url(url)?;
    let allow = Allowlist::parse(allow)?;
    let host_str = parsed.host_str().unwrap_or_default();
    // The URL parser has already normalized IP literals (IPv6 in brackets).
    let literal = host_str
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host_str)
        .parse::<IpAddr>()
        .ok();
    let host = match literal {
        Some(ip) => ip.to_string(),
        None => host_str.to_owned(),
    };
    let addrs: Vec<IpAddr> = match literal {
        Some(ip) => vec![ip],
        None if allow.names(&host) => Vec::new(),
        None => {
            let port = parsed.port_or_known_default().unwrap_or(80);
            let mut addrs: Vec<IpAddr> = tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| UpstreamError::Resolve {
                    host: host.clone(),
                    message: e.to_string(),
                })?
                .map(|a| a.ip())
                .collect();
            addrs.sort();
            addrs.dedup();
            addrs
        }
    };
    match allow.decide(&host, &addrs) {
        Ok(()) => {
            info!(upstream = %parsed, host = %host, addrs = %join(&addrs), "upstream allowed");
            Ok(CheckedUpstream {
                url: parsed,
                allow,
                addrs,
            })
        }
        Err(e) => {
            warn!(upstream = %parsed, host = %host, addrs = %join(&addrs), "upstream refused by generation.upstream_allow");
            Err(e)
        }
    }
}

/// Resolves names for the upstream client and refuses any answer the
/// allowlist does not cover, so a DNS change after startup cannot point
/// docent elsewhere.
struct AllowResolver {
    allow: Arc<Allowlist>,
}

impl reqwest::dns::Resolve for AllowResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = Arc::clone(&self.allow);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let ips: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
            allow.decide(&host, &ips)?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Settings for the upstream client.
#[derive(Clone)]
pub struct UpstreamOptions {
    /// The `model` field sent upstream (the name the server serves).
    pub model: String,
    /// Sent as `Authorization: Bearer ...` when set.
    pub api_key: Option<String>,
    /// Bound on establishing the connection.
    pub connect_timeout: Duration,
    /// Bound on the whole request, the streamed answer included.
    pub timeout: Duration,
}

impl fmt::Debug for UpstreamOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamOptions")
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A chat model served by an OpenAI-compatible `/chat/completions` endpoint.
pub struct OpenAiUpstream {
    client: reqwest::Client,
    endpoint: Url,
    model: String,
    api_key: Option<String>,
    timeout: Duration,
}

impl fmt::Debug for OpenAiUpstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiUpstream")
            .field("endpoint", &self.endpoint.as_str())
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl OpenAiUpstream {
    pub fn new(upstream: CheckedUpstream, opts: UpstreamOptions) -> Result<Self, UpstreamError> {
        let mut endpoint = upstream.url.clone();
        endpoint
            .path_segments_mut()
            .map_err(|()| UpstreamError::BadUrl {
                url: upstream.url.to_string(),
                reason: "cannot be a base URL".to_owned(),
            })?
            .pop_if_empty()
            .extend(["chat", "completions"]);
        let client = reqwest::Client::builder()
            .connect_timeout(opts.connect_timeout)
            .timeout(opts.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(AllowResolver {
                allow: Arc::new(upstream.allow),
            }))
            .user_agent(concat!("docent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| UpstreamError::Client(error_chain(&e)))?;
        Ok(Self {
            client,
            endpoint,
            model: opts.model,
            api_key: opts.api_key,
            timeout: opts.timeout,
        })
    }

    /// The URL requests go to (`{upstream_url}/chat/completions`).
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    fn transport_error(&self, e: &reqwest::Error) -> BackendError {
        let message = if e.is_timeout() {
            format!(
                "no complete answer from {} within {} s (generation.upstream_timeout_secs)",
                self.endpoint,
                self.timeout.as_secs()
            )
        } else if e.is_connect() {
            format!("could not connect to {}: {}", self.endpoint, error_chain(e))
        } else {
            format!("request to {} failed: {}", self.endpoint, error_chain(e))
        };
        warn!(endpoint = %self.endpoint, error = %message, "upstream transport error");
        BackendError::backend(BACKEND, message)
    }

    async fn status_error(&self, status: StatusCode, resp: reqwest::Response) -> BackendError {
        let body = read_bounded(resp, MAX_ERROR_BODY).await;
        let detail = error_detail(&body);
        let hint = match status.as_u16() {
            300..=399 => " (redirects are not followed: point generation.upstream_url at the server itself)",
            401 | 403 => " (check the key in the variable generation.upstream_api_key_env names)",
            404 => " (check generation.upstream_url, usually ending in /v1, and generation.upstream_model)",
            _ => "",
        };
        let message = format!("{} answered HTTP {status}: {detail}{hint}", self.endpoint);
        warn!(endpoint = %self.endpoint, status = status.as_u16(), error = %message, "upstream refused the request");
        if matches!(status.as_u16(), 400 | 413 | 422) {
            BackendError::invalid(BACKEND, message)
        } else {
            BackendError::backend(BACKEND, message)
        }
    }
}

/// An error with its causes, `outer: inner: innermost` (causes already in
/// the text are not repeated).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Reads at most `max` bytes of a body (for error messages).
async fn read_bounded(resp: reqwest::Response, max: usize) -> String {
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::new();
    while let Some(Ok(chunk)) = stream.next().await {
        buf.extend_from_slice(&chunk);
        if buf.len() >= max {
            buf.truncate(max);
            break;
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// The message in an upstream error body: OpenAI's `{"error": {"message"}}`,
/// `{"error": "..."}` (TGI), `{"message"}` or `{"detail"}` (FastAPI), else
/// the text itself, shortened.
fn error_detail(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        let found = v
            .pointer("/error/message")
            .or_else(|| v.get("error"))
            .or_else(|| v.get("message"))
            .or_else(|| v.get("detail"));
        match found {
            Some(serde_json::Value::String(s)) => return clip(s, 500),
            Some(other) if !other.is_null() => return clip(&other.to_string(), 500),
            _ => {}
        }
    }
    let text = body.trim();
    if text.is_empty() {
        "(empty body)".to_owned()
    } else {
        clip(text, 500)
    }
}

fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    max_tokens: u32,
    temperature: f32,
    stream: bool,
    stream_options: StreamOptions,
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

/// One streamed `chat.completion.chunk` (or a whole `chat.completion` when
/// the server ignored `stream`), reduced to what docent reads.
#[derive(Debug, Default, Deserialize)]
struct WireChunk {
    #[serde(default)]
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
struct WireChoice {
    #[serde(default)]
    delta: Option<WireDelta>,
    #[serde(default)]
    message: Option<WireDelta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct WireDelta {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u32,
    #[serde(default)]
    completion_tokens: u32,
}

/// Splits a byte stream into server-sent events and yields each event's
/// data (multiple `data:` lines joined with newlines). Comments and other
/// fields are skipped.
#[derive(Debug, Default)]
struct SseParser {
    buf: Vec<u8>,
    data: String,
    has_data: bool,
}

impl SseParser {
    fn push(&mut self, bytes: &[u8]) -> Result<Vec<String>, String> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=i).collect();
            let line = String::from_utf8_lossy(&line);
            self.line(line.trim_end_matches(['\n', '\r']), &mut out);
        }
        if self.buf.len() > MAX_LINE_BYTES {
            return Err(format!("a stream line exceeds {MAX_LINE_BYTES} bytes"));
        }
        Ok(out)
    }

    /// The last event when the stream ends without a blank line.
    fn finish(&mut self) -> Option<String> {
        let mut out = Vec::new();
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            let line = String::from_utf8_lossy(&rest);
            self.line(line.trim_end_matches(['\n', '\r']), &mut out);
        }
        self.line("", &mut out);
        out.pop()
    }

    fn line(&mut self, line: &str, out: &mut Vec<String>) {
        if line.is_empty() {
            if self.has_data {
                out.push(std::mem::take(&mut self.data));
                self.has_data = false;
            }
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        if field == "data" {
            if self.has_data {
                self.data.push('\n');
            }
            self.data.push_str(value);
            self.has_data = true;
        }
    }
}

/// What to do after an event.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Done,
    Cancelled,
}

/// The answer as it streams in.
struct Progress {
    started: Instant,
    text: String,
    first_token_ms: Option<u64>,
    content_chunks: u32,
    usage: Option<WireUsage>,
    finish_reason: Option<String>,
    /// The sink asked to stop.
    cancelled: bool,
}

impl Progress {
    fn new(started: Instant) -> Self {
        Self {
            started,
            text: String::new(),
            first_token_ms: None,
            content_chunks: 0,
            usage: None,
            finish_reason: None,
            cancelled: false,
        }
    }

    /// Applies one chunk: its content goes to the sink.
    fn apply(&mut self, chunk: WireChunk, sink: &mut (dyn TokenSink + Send)) -> BackendResult<Flow> {
        if let Some(err) = chunk.error {
            let detail = error_detail(&serde_json::json!({ "error": err }).to_string());
            return Err(BackendError::backend(
                BACKEND,
                format!("the upstream reported an error mid-answer: {detail}"),
            ));
        }
        if let Some(u) = chunk.usage {
            self.usage = Some(u);
        }
        for choice in chunk.choices {
            if let Some(r) = choice.finish_reason {
                self.finish_reason = Some(r);
            }
            let content = choice
                .delta
                .and_then(|d| d.content)
                .or_else(|| choice.message.and_then(|m| m.content));
            let Some(content) = content.filter(|c| !c.is_empty()) else {
                continue;
            };
            self.first_token_ms
                .get_or_insert(self.started.elapsed().as_millis() as u64);
            self.content_chunks += 1;
            self.text.push_str(&content);
            if !sink.token(&content) {
                self.cancelled = true;
                return Ok(Flow::Cancelled);
            }
        }
        Ok(Flow::Continue)
    }

    /// Applies one SSE event's data.
    fn event(&mut self, data: &str, sink: &mut (dyn TokenSink + Send)) -> BackendResult<Flow> {
        let data = data.trim();
        if data == "[DONE]" {
            return Ok(Flow::Done);
        }
        if data.is_empty() {
            return Ok(Flow::Continue);
        }
        let chunk: WireChunk = serde_json::from_str(data).map_err(|e| {
            BackendError::backend(
                BACKEND,
                format!("unreadable stream chunk from the upstream ({e}): {}", clip(data, 200)),
            )
        })?;
        self.apply(chunk, sink)
    }

    fn finish(self) -> (String, GenUsage) {
        let (prompt_tokens, completion_tokens) = match self.usage {
            Some(u) => (u.prompt_tokens, u.completion_tokens),
            None => (0, self.content_chunks),
        };
        let usage = GenUsage {
            prompt_tokens,
            completion_tokens,
            time_to_first_token_ms: self.first_token_ms.unwrap_or(0),
            total_ms: self.started.elapsed().as_millis() as u64,
            cancelled: self.cancelled,
        };
        (self.text, usage)
    }
}

fn role(r: Role) -> &'static str {
    match r {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
    }
}

#[async_trait::async_trait]
impl ChatModel for OpenAiUpstream {
    fn name(&self) -> String {
        self.model.clone()
    }

    async fn generate(
        &self,
        messages: Vec<ChatMessage>,
        params: GenParams,
        sink: &mut (dyn TokenSink + Send),
    ) -> BackendResult<(String, GenUsage)> {
        let body = WireRequest {
            model: &self.model,
            messages: messages
                .iter()
                .map(|m| WireMessage {
                    role: role(m.role),
                    content: &m.content,
                })
                .collect(),
            max_tokens: params.max_tokens,
            temperature: params.temperature,
            stream: true,
            stream_options: StreamOptions { include_usage: true },
        };
        let started = Instant::now();
        let mut req = self
            .client
            .post(self.endpoint.clone())
            .header(ACCEPT, HeaderValue::from_static("text/event-stream"))
            .json(&body);
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        debug!(
            endpoint = %self.endpoint,
            model = %self.model,
            messages = body.messages.len(),
            max_tokens = params.max_tokens,
            "upstream request"
        );
        let resp = req.send().await.map_err(|e| self.transport_error(&e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(self.status_error(status, resp).await);
        }
        let json_body = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let mut progress = Progress::new(started);
        if json_body {
            // The server ignored `stream`: one whole completion.
            let chunk: WireChunk = resp.json().await.map_err(|e| self.transport_error(&e))?;
            progress.apply(chunk, sink)?;
            return Ok(self.finished(progress, "complete"));
        }
        let mut stream = resp.bytes_stream();
        let mut parser = SseParser::default();
        let mut flow = Flow::Continue;
        'read: while let Some(bytes) = stream.next().await {
            let bytes = bytes.map_err(|e| self.transport_error(&e))?;
            let events = parser
                .push(&bytes)
                .map_err(|m| BackendError::backend(BACKEND, format!("{}: {m}", self.endpoint)))?;
            for data in events {
                flow = progress.event(&data, sink)?;
                if flow != Flow::Continue {
                    break 'read;
                }
            }
        }
        if flow == Flow::Continue {
            if let Some(data) = parser.finish() {
                flow = progress.event(&data, sink)?;
            }
        }
        match flow {
            Flow::Cancelled => {
                // Dropping the stream closes the connection, which aborts the
                // upstream request.
                drop(stream);
                info!(endpoint = %self.endpoint, "generation stopped: the sink closed");
                Ok(self.finished(progress, "cancelled"))
            }
            Flow::Done => Ok(self.finished(progress, "done")),
            Flow::Continue if progress.finish_reason.is_some() => Ok(self.finished(progress, "done")),
            Flow::Continue => Err(BackendError::backend(
                BACKEND,
                format!(
                    "{} closed the stream before it finished (no [DONE] and no finish_reason after {} chunks)",
                    self.endpoint, progress.content_chunks
                ),
            )),
        }
    }
}

impl OpenAiUpstream {
    fn finished(&self, progress: Progress, outcome: &'static str) -> (String, GenUsage) {
        let finish_reason = progress.finish_reason.clone().unwrap_or_default();
        let (text, usage) = progress.finish();
        info!(
            endpoint = %self.endpoint,
            model = %self.model,
            outcome,
            finish_reason = %finish_reason,
            prompt_tokens = usage.prompt_tokens,
            completion_tokens = usage.completion_tokens,
            time_to_first_token_ms = usage.time_to_first_token_ms,
            total_ms = usage.total_ms,
            "upstream generation finished"
        );
        (text, usage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn entries_parse_as_ranges_addresses_or_host_names() {
        assert_eq!(
            AllowEntry::parse("10.0.0.0/8").expect("cidr"),
            AllowEntry::Net("10.0.0.0/8".parse().expect("net"))
        );
        // Host bits are dropped; a bare address is a one-address range.
        assert_eq!(
            AllowEntry::parse("10.1.2.3/8").expect("cidr"),
            AllowEntry::Net("10.0.0.0/8".parse().expect("net"))
        );
        assert_eq!(
            AllowEntry::parse("127.0.0.1").expect("ip"),
            AllowEntry::Net("127.0.0.1/32".parse().expect("net"))
        );
        assert_eq!(
            AllowEntry::parse("::1/128").expect("v6"),
            AllowEntry::Net("::1/128".parse().expect("net"))
        );
        assert_eq!(
            AllowEntry::parse(" LLM.Internal. ").expect("host"),
            AllowEntry::Host("llm.internal".into())
        );
        for bad in [
            "10.0.0.0/33",
            "300.1.1.1",
            "*.internal",
            "llm_internal",
            "-bad.host",
            "",
            "http://x",
        ] {
            let e = AllowEntry::parse(bad).expect_err(bad).to_string();
            assert!(e.contains("generation.upstream_allow entry"), "{e}");
        }
    }

    #[test]
    fn decide_needs_a_name_match_or_every_address_covered() {
        let allow = Allowlist::parse(&list(&["10.0.0.0/8", "llm.internal", "::1/128"])).expect("allow");
        let ten = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
        let google = IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8));
        assert!(allow.decide("LLM.internal", &[google]).is_ok(), "name match wins");
        assert!(allow.decide("gpu.example", &[ten]).is_ok());
        assert!(allow
            .decide("gpu.example", &[ten, IpAddr::V6(Ipv6Addr::LOCALHOST)])
            .is_ok());
        // IPv4-mapped IPv6 counts as its IPv4 address.
        let mapped: IpAddr = "::ffff:10.0.0.7".parse().expect("ip");
        assert!(allow.decide("gpu.example", &[mapped]).is_ok());
        // One address outside is enough to refuse; no address never passes.
        let e = allow
            .decide("gpu.example", &[ten, google])
            .expect_err("refused")
            .to_string();
        assert!(e.contains("upstream host gpu.example"), "{e}");
        assert!(e.contains("[10.1.2.3, 8.8.8.8]"), "{e}");
        assert!(
            e.contains("not in generation.upstream_allow [10.0.0.0/8, llm.internal, ::1/128]"),
            "{e}"
        );
        assert!(allow.decide("gpu.example", &[]).is_err());
    }

    #[test]
    fn empty_list_refuses_everything() {
        let allow = Allowlist::parse(&[]).expect("allow");
        let e = allow
            .decide("127.0.0.1", &[IpAddr::V4(Ipv4Addr::LOCALHOST)])
            .expect_err("refused")
            .to_string();
        assert!(e.contains("not in generation.upstream_allow []"), "{e}");
        assert!(e.contains("empty"), "{e}");
    }

    #[tokio::test]
    async fn check_upstream_refuses_outside_addresses_with_a_clear_message() {
        let e = check_upstream("http://8.8.8.8:8000/v1", &list(&["10.0.0.0/8"]))
            .await
            .expect_err("refused")
            .to_string();
        assert_eq!(
            e,
            "upstream host 8.8.8.8 (resolved to [8.8.8.8]) is not in generation.upstream_allow [10.0.0.0/8] \
             (list the host name, or CIDRs covering every address it resolves to)"
        );
        let ok = check_upstream("http://10.0.0.5:8000/v1", &list(&["10.0.0.0/8"]))
            .await
            .expect("allowed");
        assert_eq!(ok.addrs(), &[IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5))]);
        let ok = check_upstream("https://[::1]:8443/v1", &list(&["::1/128"]))
            .await
            .expect("v6");
        assert_eq!(ok.url().scheme(), "https");
        assert!(check_upstream("http://10.0.0.5/v1", &[]).await.is_err());
    }

    #[tokio::test]
    async fn check_upstream_resolves_names() {
        // localhost resolves from /etc/hosts, to 127.0.0.1 and possibly ::1.
        let both = list(&["127.0.0.0/8", "::1/128"]);
        let ok = check_upstream("http://localhost:9/v1", &both).await.expect("allowed");
        assert!(!ok.addrs().is_empty());
        assert!(ok.addrs().iter().all(|a| a.is_loopback()));
        // Listed by name: allowed without looking at the addresses.
        let by_name = check_upstream("http://LOCALHOST:9/v1", &list(&["localhost"]))
            .await
            .expect("by name");
        assert!(by_name.addrs().is_empty());
        let e = check_upstream("http://localhost:9/v1", &list(&["10.0.0.0/8"]))
            .await
            .expect_err("refused")
            .to_string();
        assert!(
            e.starts_with("upstream host localhost (resolved to [") && e.contains("127.0.0.1"),
            "{e}"
        );
        assert!(e.contains("not in generation.upstream_allow [10.0.0.0/8]"), "{e}");
    }

    #[tokio::test]
    async fn only_http_urls_with_a_host_and_no_credentials() {
        let allow = list(&["0.0.0.0/0", "::/0"]);
        for (url, expect) in [
            ("ftp://10.0.0.5/v1", "is not http or https"),
            ("file:///etc/passwd", "is not http or https"),
            ("http://user:pw@10.0.0.5/v1", "credentials"),
            ("not a url", "generation.upstream_url"),
        ] {
            let e = check_upstream(url, &allow).await.expect_err(url).to_string();
            assert!(e.contains(expect), "{url}: {e}");
        }
        let e = check_upstream("http://10.0.0.5/v1", &list(&["bad entry!"]))
            .await
            .expect_err("bad entry")
            .to_string();
        assert!(e.contains("\"bad entry!\""), "{e}");
    }

    #[test]
    fn sse_parser_handles_split_chunks_crlf_comments_and_multiline_data() {
        let mut p = SseParser::default();
        assert_eq!(p.push(b"data: {\"a\"").expect("push"), Vec::<String>::new());
        assert_eq!(p.push(b":1}\r\n\r\n: keep-alive\n\n").expect("push"), vec!["{\"a\":1}"]);
        assert_eq!(
            p.push(b"event: x\ndata: one\ndata: two\n\ndata:[DONE]\n\n")
                .expect("push"),
            vec!["one\ntwo", "[DONE]"]
        );
        assert_eq!(p.push(b"data: tail").expect("push"), Vec::<String>::new());
        assert_eq!(p.finish().as_deref(), Some("tail"));
        assert_eq!(p.finish(), None);
        // A multi-byte character split across reads survives.
        let mut p = SseParser::default();
        let bytes = "data: é\n\n".as_bytes();
        assert!(p.push(&bytes[..7]).expect("push").is_empty());
        assert_eq!(p.push(&bytes[7..]).expect("push"), vec!["é"]);
    }

    struct Collect {
        tokens: Vec<String>,
        stop_after: usize,
    }

    impl TokenSink for Collect {
        fn token(&mut self, text: &str) -> bool {
            self.tokens.push(text.to_owned());
            self.tokens.len() < self.stop_after
        }
    }

    #[test]
    fn progress_reads_deltas_usage_and_errors() {
        let mut sink = Collect {
            tokens: Vec::new(),
            stop_after: usize::MAX,
        };
        let mut p = Progress::new(Instant::now());
        let events = [
            r#"{"choices":[{"delta":{"role":"assistant"}}],"usage":null}"#,
            r#"{"choices":[{"delta":{"content":"Hello"}}]}"#,
            r#"{"choices":[{"delta":{"content":" world"},"finish_reason":"stop"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":2,"total_tokens":14}}"#,
        ];
        for e in events {
            assert_eq!(p.event(e, &mut sink).expect("event"), Flow::Continue);
        }
        assert_eq!(p.event("[DONE]", &mut sink).expect("done"), Flow::Done);
        let (text, usage) = p.finish();
        assert_eq!(text, "Hello world");
        assert_eq!(sink.tokens, vec!["Hello", " world"]);
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (12, 2));

        // Without a usage chunk, completion tokens are the content chunks.
        let mut p = Progress::new(Instant::now());
        for _ in 0..3 {
            p.event(r#"{"choices":[{"delta":{"content":"x"}}]}"#, &mut sink)
                .expect("event");
        }
        assert_eq!(p.finish().1.completion_tokens, 3);

        let mut p = Progress::new(Instant::now());
        let e = p
            .event(r#"{"error":{"message":"CUDA out of memory","code":500}}"#, &mut sink)
            .expect_err("error chunk")
            .to_string();
        assert!(e.contains("CUDA out of memory"), "{e}");
        let e = p.event("{not json", &mut sink).expect_err("bad chunk").to_string();
        assert!(e.contains("unreadable stream chunk"), "{e}");
    }

    #[test]
    fn error_bodies_become_short_messages() {
        assert_eq!(
            error_detail(r#"{"error":{"message":"model not found","type":"invalid_request_error"}}"#),
            "model not found"
        );
        assert_eq!(
            error_detail(r#"{"error":"Input validation error"}"#),
            "Input validation error"
        );
        assert_eq!(error_detail(r#"{"detail":"Not Found"}"#), "Not Found");
        assert_eq!(error_detail("  "), "(empty body)");
        assert_eq!(error_detail("gateway exploded"), "gateway exploded");
        assert!(error_detail(&"x".repeat(2000)).len() < 600);
    }

    /// A one-connection fake upstream: answers with the given head and
    /// events, one write each. With `hold_open` it then waits for the client
    /// to close the connection and reports the request and whether it saw
    /// the close; otherwise it closes the connection itself.
    async fn fake_upstream(
        head: String,
        events: Vec<String>,
        hold_open: bool,
    ) -> (String, tokio::sync::oneshot::Receiver<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.expect("accept");
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            // Headers, then the body by Content-Length.
            let (head_end, len) = loop {
                let n = sock.read(&mut buf).await.expect("read");
                assert!(n > 0, "client closed early");
                req.extend_from_slice(&buf[..n]);
                if let Some(i) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                    let h = String::from_utf8_lossy(&req[..i]).to_ascii_lowercase();
                    let len = h
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    break (i + 4, len);
                }
            };
            while req.len() < head_end + len {
                let n = sock.read(&mut buf).await.expect("read body");
                assert!(n > 0, "client closed early");
                req.extend_from_slice(&buf[..n]);
            }
            sock.write_all(head.as_bytes()).await.expect("write head");
            for e in events {
                if sock.write_all(e.as_bytes()).await.is_err() {
                    break;
                }
                let _ = sock.flush().await;
            }
            // Wait for the client to close (EOF or reset).
            let closed = hold_open && matches!(sock.read(&mut buf).await, Ok(0) | Err(_));
            drop(sock);
            let _ = tx.send(format!("{}\n--closed:{closed}", String::from_utf8_lossy(&req)));
        });
        (format!("http://{addr}/v1"), rx)
    }

    async fn upstream(url: &str, key: Option<&str>) -> OpenAiUpstream {
        let checked = check_upstream(url, &list(&["127.0.0.0/8"])).await.expect("allowed");
        OpenAiUpstream::new(
            checked,
            UpstreamOptions {
                model: "served-model".into(),
                api_key: key.map(str::to_owned),
                connect_timeout: Duration::from_secs(10),
                timeout: Duration::from_secs(60),
            },
        )
        .expect("client")
    }

    fn messages() -> Vec<ChatMessage> {
        vec![
            ChatMessage {
                role: Role::System,
                content: "sys".into(),
            },
            ChatMessage {
                role: Role::User,
                content: "question?".into(),
            },
        ]
    }

    const SSE_HEAD: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";

    fn delta(text: &str) -> String {
        format!(
            "data: {}\n\n",
            serde_json::json!({"choices": [{"delta": {"content": text}}]})
        )
    }

    #[tokio::test]
    async fn streams_tokens_and_sends_the_openai_request() {
        let events = vec![
            delta("Eleven"),
            delta(" days."),
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":40,\"completion_tokens\":2}}\n\n".into(),
            "data: [DONE]\n\n".into(),
        ];
        let (url, seen) = fake_upstream(SSE_HEAD.to_owned(), events, true).await;
        let model = upstream(&url, Some("s3cret")).await;
        assert_eq!(model.endpoint().path(), "/v1/chat/completions");
        assert_eq!(model.name(), "served-model");
        let mut sink = Collect {
            tokens: Vec::new(),
            stop_after: usize::MAX,
        };
        let params = GenParams {
            max_tokens: 77,
            temperature: 0.0,
        };
        let (text, usage) = model.generate(messages(), params, &mut sink).await.expect("generate");
        assert_eq!(text, "Eleven days.");
        assert_eq!(sink.tokens, vec!["Eleven", " days."]);
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (40, 2));
        assert!(!usage.cancelled);
        let req = seen.await.expect("request seen");
        assert!(req.starts_with("POST /v1/chat/completions HTTP/1.1\r\n"), "{req}");
        assert!(
            req.to_ascii_lowercase().contains("authorization: bearer s3cret"),
            "{req}"
        );
        let body = req
            .split_once("\r\n\r\n")
            .and_then(|(_, b)| b.split_once("\n--closed"))
            .map(|(b, _)| b)
            .expect("body");
        let body: serde_json::Value = serde_json::from_str(body).expect("json body");
        assert_eq!(body["model"], "served-model");
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["max_tokens"], 77);
        assert_eq!(
            body["messages"][0],
            serde_json::json!({"role": "system", "content": "sys"})
        );
        assert_eq!(
            body["messages"][1],
            serde_json::json!({"role": "user", "content": "question?"})
        );
    }

    #[tokio::test]
    async fn a_stopped_sink_closes_the_upstream_connection() {
        // The fake sends one token and then keeps the stream open: only the
        // client closing the connection ends it.
        let (url, seen) = fake_upstream(SSE_HEAD.to_owned(), vec![delta("first"), delta("second")], true).await;
        let model = upstream(&url, None).await;
        let mut sink = Collect {
            tokens: Vec::new(),
            stop_after: 1,
        };
        let params = GenParams {
            max_tokens: 10,
            temperature: 0.0,
        };
        let (text, usage) = model.generate(messages(), params, &mut sink).await.expect("generate");
        assert_eq!(text, "first");
        assert!(usage.cancelled);
        assert_eq!(usage.completion_tokens, 1);
        assert_eq!(sink.tokens, vec!["first"]);
        let req = tokio::time::timeout(Duration::from_secs(60), seen)
            .await
            .expect("the upstream saw the connection close")
            .expect("report");
        assert!(req.ends_with("--closed:true"), "{req}");
        assert!(!req.to_ascii_lowercase().contains("authorization:"), "{req}");
    }

    #[tokio::test]
    async fn http_errors_carry_the_upstream_message() {
        let body = r#"{"error":{"message":"The model `x` does not exist.","code":404}}"#;
        let head = format!(
            "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let (url, _seen) = fake_upstream(head, vec![body.to_owned()], false).await;
        let model = upstream(&url, None).await;
        let mut sink = Collect {
            tokens: Vec::new(),
            stop_after: usize::MAX,
        };
        let params = GenParams {
            max_tokens: 10,
            temperature: 0.0,
        };
        let e = model
            .generate(messages(), params, &mut sink)
            .await
            .expect_err("404")
            .to_string();
        assert!(e.starts_with("openai-upstream: http://127.0.0.1:"), "{e}");
        assert!(
            e.contains("answered HTTP 404 Not Found: The model `x` does not exist."),
            "{e}"
        );
        assert!(e.contains("generation.upstream_model"), "{e}");
        assert!(sink.tokens.is_empty());
    }

    #[tokio::test]
    async fn a_stream_cut_short_is_an_error() {
        // The upstream sends one token and closes without [DONE].
        let (url, _seen) = fake_upstream(SSE_HEAD.to_owned(), vec![delta("partial")], false).await;
        let model = upstream(&url, None).await;
        let mut sink = Collect {
            tokens: Vec::new(),
            stop_after: usize::MAX,
        };
        let params = GenParams {
            max_tokens: 10,
            temperature: 0.0,
        };
        let e = model
            .generate(messages(), params, &mut sink)
            .await
            .expect_err("cut short")
            .to_string();
        assert!(e.contains("closed the stream before it finished"), "{e}");
        assert_eq!(sink.tokens, vec!["partial"]);
    }

    #[tokio::test]
    async fn a_refused_connection_names_the_endpoint() {
        // Bind and drop: nothing listens on the port afterwards.
        let port = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let model = upstream(&format!("http://127.0.0.1:{port}/v1"), None).await;
        let mut sink = Collect {
            tokens: Vec::new(),
            stop_after: usize::MAX,
        };
        let params = GenParams {
            max_tokens: 10,
            temperature: 0.0,
        };
        let e = model
            .generate(messages(), params, &mut sink)
            .await
            .expect_err("refused")
            .to_string();
        assert!(
            e.contains(&format!(
                "could not connect to http://127.0.0.1:{port}/v1/chat/completions"
            )),
            "{e}"
        );
    }

    #[tokio::test]
    async fn the_client_refuses_addresses_outside_the_list_at_connect_time() {
        // As if DNS changed after the startup check: the name now resolves
        // outside the list, and the client's resolver refuses it.
        let checked = CheckedUpstream {
            url: parse_upstream_url("http://localhost:9/v1").expect("url"),
            allow: Allowlist::parse(&list(&["10.0.0.0/8"])).expect("allow"),
            addrs: Vec::new(),
        };
        let opts = UpstreamOptions {
            model: "m".into(),
            api_key: None,
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(60),
        };
        let model = OpenAiUpstream::new(checked, opts).expect("client");
        let mut sink = Collect {
            tokens: Vec::new(),
            stop_after: usize::MAX,
        };
        let params = GenParams {
            max_tokens: 10,
            temperature: 0.0,
        };
        let e = model
            .generate(messages(), params, &mut sink)
            .await
            .expect_err("refused")
            .to_string();
        assert!(e.contains("not in generation.upstream_allow [10.0.0.0/8]"), "{e}");
    }
}
