//! Prometheus metrics, served at `/metrics` in the text format.
//!
//! One registry per server: HTTP latency per route pattern (never the raw
//! path, so ids do not explode cardinality), retrieval and generation
//! latency, generated tokens, time to first token, generation admission
//! (slots in use, queue, refusals, queue wait), the ingest queue and
//! stage durations, and how far this replica's indexes follow the change log.

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounter, IntGauge, Opts, Registry, TextEncoder};

pub struct Metrics {
    registry: Registry,
    pub http_seconds: HistogramVec,
    pub retrieval_seconds: HistogramVec,
    pub generation_seconds: HistogramVec,
    pub first_token_seconds: HistogramVec,
    pub tokens_generated: IntCounter,
    pub generations_cancelled: IntCounter,
    pub abstentions: IntCounter,
    /// Requests holding a generation slot / waiting for one (admission).
    pub generation_active: IntGauge,
    pub generation_queued: IntGauge,
    /// Chat requests refused with 503 `overloaded`, by reason.
    pub generation_refused: prometheus::IntCounterVec,
    pub generation_queue_wait_seconds: HistogramVec,
    pub ingest_queue_depth: IntGauge,
    pub ingest_stage_seconds: HistogramVec,
    pub ingest_documents: prometheus::IntCounterVec,
    pub change_log_applied: IntGauge,
    pub change_log_lag: IntGauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("docent".into()), None)?;
        let hist = |name: &str, help: &str, labels: &[&str]| -> Result<HistogramVec, prometheus::Error> {
            let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()), labels)?;
            registry.register(Box::new(h.clone()))?;
            Ok(h)
        };
        let http_seconds = hist(
            "http_request_duration_seconds",
            "HTTP request latency by route pattern, method and status",
            &["route", "method", "status"],
        )?;
        let retrieval_seconds = hist("retrieval_duration_seconds", "Hybrid retrieval latency", &["endpoint"])?;
        let generation_seconds = hist(
            "generation_duration_seconds",
            "Answer generation latency",
            &["endpoint"],
        )?;
        let first_token_seconds = hist(
            "time_to_first_token_seconds",
            "Time to the first generated token",
            &["endpoint"],
        )?;
        let tokens_generated = IntCounter::with_opts(Opts::new("tokens_generated_total", "Tokens generated"))?;
        registry.register(Box::new(tokens_generated.clone()))?;
        let generations_cancelled = IntCounter::with_opts(Opts::new(
            "generations_cancelled_total",
            "Generations stopped because the client went away",
        ))?;
        registry.register(Box::new(generations_cancelled.clone()))?;
        let abstentions = IntCounter::with_opts(Opts::new(
            "abstentions_total",
            "Questions answered with an abstention, without a model call",
        ))?;
        registry.register(Box::new(abstentions.clone()))?;
        let generation_active = IntGauge::with_opts(Opts::new(
            "generation_active",
            "Chat requests holding a generation slot (generation.max_active)",
        ))?;
        registry.register(Box::new(generation_active.clone()))?;
        let generation_queued = IntGauge::with_opts(Opts::new(
            "generation_queued",
            "Chat requests waiting for a generation slot (generation.max_queued)",
        ))?;
        registry.register(Box::new(generation_queued.clone()))?;
        let generation_refused = prometheus::IntCounterVec::new(
            Opts::new(
                "generation_refused_total",
                "Chat requests refused with 503 overloaded: queue_full or queue_timeout",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(generation_refused.clone()))?;
        let generation_queue_wait_seconds = hist(
            "generation_queue_wait_seconds",
            "Time an admitted chat request waited for a generation slot",
            &["endpoint"],
        )?;
        let ingest_queue_depth = IntGauge::with_opts(Opts::new(
            "ingest_queue_depth",
            "Ingest jobs waiting for a worker on any replica",
        ))?;
        registry.register(Box::new(ingest_queue_depth.clone()))?;
        let ingest_stage_seconds = hist(
            "ingest_stage_duration_seconds",
            "Time per ingest stage (extract, embed, index) per batch of documents",
            &["stage"],
        )?;
        let ingest_documents = prometheus::IntCounterVec::new(
            Opts::new(
                "ingest_documents_total",
                "Documents ingested by this replica, by outcome",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(ingest_documents.clone()))?;
        let change_log_applied = IntGauge::with_opts(Opts::new(
            "change_log_applied_seq",
            "Change-log sequence number this replica's indexes have applied",
        ))?;
        registry.register(Box::new(change_log_applied.clone()))?;
        let change_log_lag = IntGauge::with_opts(Opts::new(
            "change_log_lag",
            "Change-log entries not yet applied to this replica's indexes",
        ))?;
        registry.register(Box::new(change_log_lag.clone()))?;
        Ok(Self {
            registry,
            http_seconds,
            retrieval_seconds,
            generation_seconds,
            first_token_seconds,
            tokens_generated,
            generations_cancelled,
            abstentions,
            generation_active,
            generation_queued,
            generation_refused,
            generation_queue_wait_seconds,
            ingest_queue_depth,
            ingest_stage_seconds,
            ingest_documents,
            change_log_applied,
            change_log_lag,
        })
    }

    /// Records a finished answer (nothing for an abstention: no model ran).
    pub fn observe_answer(&self, endpoint: &str, usage: &docent_core::GenUsage, abstained: bool) {
        if abstained {
            self.abstentions.inc();
            return;
        }
        if usage.cancelled {
            self.generations_cancelled.inc();
        }
        self.generation_seconds
            .with_label_values(&[endpoint])
            .observe(usage.total_ms as f64 / 1000.0);
        self.first_token_seconds
            .with_label_values(&[endpoint])
            .observe(usage.time_to_first_token_ms as f64 / 1000.0);
        self.tokens_generated.inc_by(u64::from(usage.completion_tokens));
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if encoder.encode(&self.registry.gather(), &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl docent_ingest::pipeline::IngestObserver for Metrics {
    fn stage(&self, stage: &'static str, seconds: f64) {
        self.ingest_stage_seconds.with_label_values(&[stage]).observe(seconds);
    }

    fn outcome(&self, ready: bool) {
        self.ingest_documents
            .with_label_values(&[if ready { "ready" } else { "failed" }])
            .inc();
    }
}
