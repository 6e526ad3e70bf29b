//! Admission for generation: a bounded number of requests generating and a
//! bounded queue in front of them, shared by every chat entry point
//! (`/v1/chat` and `/v1/chat/completions`, streamed or not).
//!
//! A request takes a place (one of `max_active + max_queued`) at once or is
//! refused, then waits up to `queue_timeout` for one of `max_active`
//! generation slots, else it is refused too. Both refusals are 503
//! `overloaded` with a Retry-After estimated from the queue, and happen
//! before anything is written or a response starts. A request holds its
//! [`Permit`] for the whole answer, the stream included: the permit lives
//! in the handler or in the task that streams, and is given back when that
//! ends, however it ends (done, error, client gone). A client that goes away
//! while queued drops the handler (the server does not keep half-closed
//! connections), and its place with it.
//!
//! `max_active` defaults to mistral.rs's `max_num_seqs`, so the engine's
//! continuous batching gets every admitted request and never queues work of
//! its own (its internal queue has no bound).

use crate::error::ApiError;
use crate::metrics::Metrics;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::warn;

/// The bounds (`generation.max_active`, `generation.max_queued`,
/// `generation.queue_timeout_secs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AdmissionConfig {
    /// Requests generating at once (at least 1).
    pub max_active: usize,
    /// Requests waiting for a generation slot.
    pub max_queued: usize,
    /// How long a request may wait for a slot.
    pub queue_timeout: Duration,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// Every slot and every queue place was taken.
    QueueFull,
    /// The request waited `queue_timeout` without getting a slot.
    QueueTimeout,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::QueueFull => "queue_full",
            Refusal::QueueTimeout => "queue_timeout",
        }
    }
}

/// Until a request has finished, the hold time Retry-After assumes.
const DEFAULT_HOLD: Duration = Duration::from_secs(10);
/// Weight of the newest hold time in the moving average.
const HOLD_WEIGHT: f64 = 0.2;
/// Retry-After never exceeds this.
const MAX_RETRY_AFTER_SECS: u64 = 3600;

struct Inner {
    cfg: AdmissionConfig,
    /// `max_active + max_queued` places: generating or waiting.
    places: Arc<Semaphore>,
    /// `max_active` generation slots.
    slots: Arc<Semaphore>,
    active: AtomicUsize,
    waiting: AtomicUsize,
    admitted: AtomicU64,
    refused_full: AtomicU64,
    refused_timeout: AtomicU64,
    /// Longest wait for a slot of an admitted request (ms).
    max_wait_ms: AtomicU64,
    /// Moving average of how long a request held a slot (seconds).
    hold_secs: Mutex<Option<f64>>,
    metrics: Arc<Metrics>,
}

impl Inner {
    fn gauges(&self) {
        self.metrics
            .generation_active
            .set(i64::try_from(self.active.load(Ordering::SeqCst)).unwrap_or(i64::MAX));
        self.metrics
            .generation_queued
            .set(i64::try_from(self.waiting.load(Ordering::SeqCst)).unwrap_or(i64::MAX));
    }

    fn hold(&self) -> Option<f64> {
        *self.hold_secs.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn record_hold(&self, secs: f64) {
        let mut h = self.hold_secs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *h = Some(match *h {
            Some(avg) => avg + HOLD_WEIGHT * (secs - avg),
            None => secs,
        });
    }
}

/// The gate every chat entry point passes (cheap to clone).
#[derive(Clone)]
pub struct Admission {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("cfg", &self.inner.cfg)
            .field("stats", &self.stats())
            .finish()
    }
}

/// A generation slot and its queue place, held until the answer ends.
pub struct Permit {
    _slot: OwnedSemaphorePermit,
    _place: OwnedSemaphorePermit,
    since: Instant,
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit").field("held", &self.since.elapsed()).finish()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.inner.active.fetch_sub(1, Ordering::SeqCst);
        self.inner.record_hold(self.since.elapsed().as_secs_f64());
        self.inner.gauges();
    }
}

/// Counts a request as waiting until it gets a slot or gives up (also
/// when its handler is dropped because the client went away).
struct Waiting<'a>(&'a Inner);

impl<'a> Waiting<'a> {
    fn new(inner: &'a Inner) -> Self {
        inner.waiting.fetch_add(1, Ordering::SeqCst);
        inner.gauges();
        Self(inner)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
        self.0.gauges();
    }
}

/// What the gate has seen so far.
#[derive(Debug, Clone, Serialize)]
pub struct AdmissionStats {
    pub max_active: usize,
    pub max_queued: usize,
    pub queue_timeout_secs: f64,
    pub active: usize,
    pub waiting: usize,
    pub admitted: u64,
    pub refused_queue_full: u64,
    pub refused_queue_timeout: u64,
    /// Longest wait for a slot of an admitted request.
    pub max_wait_secs: f64,
    /// Moving average of the time a request held a slot.
    pub mean_hold_secs: Option<f64>,
}

impl Admission {
    pub fn new(cfg: AdmissionConfig, metrics: Arc<Metrics>) -> Self {
        let cfg = AdmissionConfig {
            max_active: cfg.max_active.max(1),
            ..cfg
        };
        let inner = Inner {
            places: Arc::new(Semaphore::new(cfg.max_active.saturating_add(cfg.max_queued))),
            slots: Arc::new(Semaphore::new(cfg.max_active)),
            cfg,
            active: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            admitted: AtomicU64::new(0),
            refused_full: AtomicU64::new(0),
            refused_timeout: AtomicU64::new(0),
            max_wait_ms: AtomicU64::new(0),
            hold_secs: Mutex::new(None),
            metrics,
        };
        inner.gauges();
        Self { inner: Arc::new(inner) }
    }

    pub fn config(&self) -> AdmissionConfig {
        self.inner.cfg
    }

    /// A slot for one answer, or 503 `overloaded` when the queue is full or
    /// the wait for a slot exceeds `queue_timeout`.
    pub async fn admit(&self, endpoint: &'static str) -> Result<Permit, ApiError> {
        let inner = &self.inner;
        let Ok(place) = Arc::clone(&inner.places).try_acquire_owned() else {
            return Err(self.refuse(Refusal::QueueFull, endpoint));
        };
        let started = Instant::now();
        let slot = {
            let _waiting = Waiting::new(inner);
            tokio::time::timeout(inner.cfg.queue_timeout, Arc::clone(&inner.slots).acquire_owned()).await
        };
        let slot = match slot {
            Ok(Ok(slot)) => slot,
            Ok(Err(_)) => return Err(ApiError::Unavailable("generation has stopped".to_owned())),
            Err(_) => {
                drop(place);
                return Err(self.refuse(Refusal::QueueTimeout, endpoint));
            }
        };
        inner.active.fetch_add(1, Ordering::SeqCst);
        inner.admitted.fetch_add(1, Ordering::Relaxed);
        inner.gauges();
        let waited = started.elapsed();
        inner
            .max_wait_ms
            .fetch_max(u64::try_from(waited.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
        inner
            .metrics
            .generation_queue_wait_seconds
            .with_label_values(&[endpoint])
            .observe(waited.as_secs_f64());
        Ok(Permit {
            _slot: slot,
            _place: place,
            since: Instant::now(),
            inner: Arc::clone(inner),
        })
    }

    /// When a refused client should come back: the time the requests now
    /// waiting, plus this one, take to get through the slots, at the moving
    /// average of how long a request holds one (10 s until one finished).
    pub fn retry_after_secs(&self) -> u64 {
        let inner = &self.inner;
        let hold = inner.hold().unwrap_or(DEFAULT_HOLD.as_secs_f64());
        let ahead = inner.waiting.load(Ordering::SeqCst) as f64 + 1.0;
        let secs = (hold * ahead / inner.cfg.max_active as f64).ceil();
        if secs.is_finite() {
            (secs as u64).clamp(1, MAX_RETRY_AFTER_SECS)
        } else {
            MAX_RETRY_AFTER_SECS
        }
    }

    fn refuse(&self, why: Refusal, endpoint: &'static str) -> ApiError {
        let inner = &self.inner;
        match why {
            Refusal::QueueFull => inner.refused_full.fetch_add(1, Ordering::Relaxed),
            Refusal::QueueTimeout => inner.refused_timeout.fetch_add(1, Ordering::Relaxed),
        };
        inner
            .metrics
            .generation_refused
            .with_label_values(&[why.as_str()])
            .inc();
        let retry_after_secs = self.retry_after_secs();
        let active = inner.active.load(Ordering::SeqCst);
        let waiting = inner.waiting.load(Ordering::SeqCst);
        warn!(
            endpoint,
            reason = why.as_str(),
            active,
            waiting,
            max_active = inner.cfg.max_active,
            max_queued = inner.cfg.max_queued,
            retry_after_secs,
            "generation at capacity; request refused"
        );
        let message = match why {
            Refusal::QueueFull => format!(
                "the server is at capacity ({active} answers generating, {waiting} waiting); retry in {retry_after_secs} s"
            ),
            Refusal::QueueTimeout => format!(
                "no generation slot within {} s ({active} answers generating, {waiting} waiting); retry in {retry_after_secs} s",
                inner.cfg.queue_timeout.as_secs()
            ),
        };
        ApiError::Overloaded {
            message,
            retry_after_secs,
        }
    }

    pub fn stats(&self) -> AdmissionStats {
        let inner = &self.inner;
        AdmissionStats {
            max_active: inner.cfg.max_active,
            max_queued: inner.cfg.max_queued,
            queue_timeout_secs: inner.cfg.queue_timeout.as_secs_f64(),
            active: inner.active.load(Ordering::SeqCst),
            waiting: inner.waiting.load(Ordering::SeqCst),
            admitted: inner.admitted.load(Ordering::Relaxed),
            refused_queue_full: inner.refused_full.load(Ordering::Relaxed),
            refused_queue_timeout: inner.refused_timeout.load(Ordering::Relaxed),
            max_wait_secs: inner.max_wait_ms.load(Ordering::Relaxed) as f64 / 1000.0,
            mean_hold_secs: inner.hold(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(max_active: usize, max_queued: usize, timeout_ms: u64) -> Admission {
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        Admission::new(
            AdmissionConfig {
                max_active,
                max_queued,
                queue_timeout: Duration::from_millis(timeout_ms),
            },
            metrics,
        )
    }

    fn overloaded(r: Result<Permit, ApiError>) -> u64 {
        match r {
            Err(ApiError::Overloaded { retry_after_secs, .. }) => retry_after_secs,
            other => panic!("expected overloaded, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn queue_full_is_refused_at_once_and_places_come_back() {
        let g = gate(1, 1, 60_000);
        let first = g.admit("chat").await.expect("a slot");
        let g2 = g.clone();
        let queued = tokio::spawn(async move { g2.admit("chat").await.map(|_| ()) });
        while g.stats().waiting == 0 {
            tokio::task::yield_now().await;
        }
        let retry = overloaded(g.admit("chat").await);
        // Nothing finished yet: 10 s per request, two ahead, one slot.
        assert_eq!(retry, 20);
        assert_eq!(g.stats().refused_queue_full, 1);
        drop(first);
        queued.await.expect("join").expect("the queued request gets the slot");
        let s = g.stats();
        assert_eq!((s.active, s.waiting, s.admitted), (0, 0, 2));
        assert!(s.mean_hold_secs.is_some());
        // Free again.
        drop(g.admit("completions").await.expect("a slot"));
    }

    #[tokio::test]
    async fn a_long_wait_times_out() {
        let g = gate(1, 4, 20);
        let _held = g.admit("chat").await.expect("a slot");
        overloaded(g.admit("chat").await);
        let s = g.stats();
        assert_eq!((s.refused_queue_timeout, s.waiting, s.active), (1, 0, 1));
    }

    #[tokio::test]
    async fn a_dropped_waiter_leaves_the_queue() {
        let g = gate(1, 1, 60_000);
        let _held = g.admit("chat").await.expect("a slot");
        {
            let wait = g.admit("chat");
            tokio::pin!(wait);
            // Poll once: it takes the place and waits.
            assert!(futures::poll!(wait.as_mut()).is_pending());
            assert_eq!(g.stats().waiting, 1);
            overloaded(g.admit("chat").await);
        }
        assert_eq!(g.stats().waiting, 0);
        // Its place is free again: the next request may wait.
        let wait = g.admit("chat");
        tokio::pin!(wait);
        assert!(futures::poll!(wait.as_mut()).is_pending());
    }

    #[tokio::test]
    async fn a_refusal_is_503_overloaded_with_retry_after() {
        use actix_web::ResponseError;
        let g = gate(1, 0, 1000);
        let _held = g.admit("chat").await.expect("a slot");
        let e = g.admit("chat").await.expect_err("no place left");
        let resp = e.error_response();
        assert_eq!(resp.status(), 503);
        assert_eq!(
            resp.headers().get("retry-after").and_then(|v| v.to_str().ok()),
            Some("10")
        );
        let body = actix_web::body::to_bytes(resp.into_body()).await.expect("body");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(v["error"]["code"], "overloaded");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("retry in 10 s")),
            "{v}"
        );
    }

    #[test]
    fn retry_after_follows_the_queue() {
        let g = gate(2, 8, 1000);
        g.inner.record_hold(30.0);
        assert_eq!(g.retry_after_secs(), 15);
        g.inner.waiting.store(5, Ordering::SeqCst);
        assert_eq!(g.retry_after_secs(), 90);
        g.inner.record_hold(0.001);
        assert!(g.retry_after_secs() >= 1);
    }
}
