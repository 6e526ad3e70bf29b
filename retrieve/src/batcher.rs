//! One embedding worker shared by every passage embedder in the process.
//!
//! Ingest jobs (several workers, each with a window or two in flight), the
//! change-log follower, `repair`/`reindex` and `docent bench embed` hand
//! their passages to [`EmbedBatcher`] through the ordinary
//! [`Embedder::embed_passages`]. A dedicated OS thread (never a tokio or
//! HTTP worker) takes everything queued, up to [`BatchPolicy::max_round`]
//! texts, orders it by token length and runs the model in sub-batches cut
//! by a padded-token budget: a model call pads every text to the longest in
//! it, so sorted short chunks share big calls and long ones go in smaller
//! calls, and almost no compute is spent on padding. Each requester gets
//! its vectors back in its own order, when the round ends.
//!
//! Bounds: a request is at most `max_round` texts (longer inputs are split
//! and submitted one piece after the other), the queue holds at most
//! [`BatchPolicy::queue`] requests (submitters block beyond that), and a
//! round holds at most `max_round` texts. Failures stay with their owner: a
//! sub-batch that fails is retried text by text and only the requesters
//! whose own texts fail get the error; a panic fails that round's
//! requesters and the worker carries on. Dropping the batcher closes the
//! queue, lets the worker finish what was queued and joins it.
//!
//! Queries do not come here: [`Embedder::embed_query`] calls the model
//! directly, so a search waits at most for one sub-batch (the model lock is
//! taken per model call), never for a whole round.

use docent_core::{BackendError, BackendResult, Embedder};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;
use tracing::{debug, warn};

const BACKEND: &str = "embed-batcher";

/// What the batcher needs from a model beyond [`Embedder`].
pub trait PassageModel: Embedder {
    /// Tokens the model sees for this passage (special tokens, prefix and
    /// truncation included): what it pads to inside a model call.
    fn passage_tokens(&self, text: &str) -> usize;
    /// Embeds passages in ONE model call (every text padded to the longest).
    fn embed_passage_batch(&self, texts: &[&str]) -> BackendResult<Vec<Vec<f32>>>;
}

/// How rounds and model calls are sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPolicy {
    /// Texts one round takes from the queue at most (also the largest
    /// request; longer inputs are split).
    pub max_round: usize,
    /// Padded tokens per model call: texts x the longest text's tokens. A
    /// text longer than the budget goes alone.
    pub token_budget: usize,
    /// Texts per model call at most.
    pub max_batch: usize,
    /// Requests waiting in the queue at most.
    pub queue: usize,
}

impl Default for BatchPolicy {
    fn default() -> Self {
        Self {
            max_round: 1024,
            token_budget: 16_384,
            max_batch: 256,
            queue: 16,
        }
    }
}

impl BatchPolicy {
    fn sane(mut self) -> Self {
        self.max_round = self.max_round.max(1);
        self.token_budget = self.token_budget.max(1);
        self.max_batch = self.max_batch.max(1);
        self.queue = self.queue.max(1);
        self
    }
}

/// What went wrong inside the batcher itself (model errors pass through).
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("the embedding worker has stopped")]
    Stopped,
    #[error("the embedding worker panicked: {0}")]
    Panicked(String),
    #[error("the model returned {got} vectors for {expected} texts")]
    Count { expected: usize, got: usize },
    #[error("could not start the embedding worker: {0}")]
    Spawn(#[from] std::io::Error),
}

impl From<BatchError> for BackendError {
    fn from(e: BatchError) -> Self {
        BackendError::backend(BACKEND, e)
    }
}

/// Counters since start (for benchmarks and logs).
#[derive(Debug, Default)]
pub struct BatchStats {
    /// Requests handed to the queue.
    pub submitted: AtomicU64,
    pub rounds: AtomicU64,
    pub requests: AtomicU64,
    pub texts: AtomicU64,
    pub model_calls: AtomicU64,
    /// Tokens the texts have (what an unpadded model would process).
    pub tokens: AtomicU64,
    /// Tokens the model processed, padding included.
    pub padded_tokens: AtomicU64,
    /// The most texts one round held.
    pub largest_round: AtomicU64,
}

/// A snapshot of [`BatchStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BatchCounts {
    pub submitted: u64,
    pub rounds: u64,
    pub requests: u64,
    pub texts: u64,
    pub model_calls: u64,
    pub tokens: u64,
    pub padded_tokens: u64,
    pub largest_round: u64,
}

impl BatchStats {
    pub fn snapshot(&self) -> BatchCounts {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        BatchCounts {
            submitted: g(&self.submitted),
            rounds: g(&self.rounds),
            requests: g(&self.requests),
            texts: g(&self.texts),
            model_calls: g(&self.model_calls),
            tokens: g(&self.tokens),
            padded_tokens: g(&self.padded_tokens),
            largest_round: g(&self.largest_round),
        }
    }
}

type Reply = BackendResult<Vec<Vec<f32>>>;

struct Request {
    texts: Vec<String>,
    tokens: Vec<usize>,
    reply: SyncSender<Reply>,
}

/// The shared passage embedder: an [`Embedder`] whose `embed_passages`
/// goes through the one worker thread.
pub struct EmbedBatcher {
    model: Arc<dyn PassageModel>,
    policy: BatchPolicy,
    queue: Option<SyncSender<Request>>,
    worker: Option<JoinHandle<()>>,
    stats: Arc<BatchStats>,
}

impl EmbedBatcher {
    /// Starts the worker thread.
    pub fn start(model: Arc<dyn PassageModel>, policy: BatchPolicy) -> Result<Self, BatchError> {
        let policy = policy.sane();
        let (tx, rx) = sync_channel(policy.queue);
        let stats = Arc::new(BatchStats::default());
        let worker = {
            let model = Arc::clone(&model);
            let stats = Arc::clone(&stats);
            std::thread::Builder::new()
                .name("docent-embed".to_owned())
                .spawn(move || run_worker(model.as_ref(), policy, &rx, &stats))?
        };
        Ok(Self {
            model,
            policy,
            queue: Some(tx),
            worker: Some(worker),
            stats,
        })
    }

    pub fn policy(&self) -> BatchPolicy {
        self.policy
    }

    pub fn stats(&self) -> BatchCounts {
        self.stats.snapshot()
    }

    /// One request of at most `max_round` texts: queue it, wait for its round.
    fn submit(&self, texts: &[String]) -> Reply {
        let queue = self.queue.as_ref().ok_or(BatchError::Stopped)?;
        // Counted here, on the caller's thread, while the worker computes.
        let tokens = texts.iter().map(|t| self.model.passage_tokens(t)).collect();
        let (reply, answer) = sync_channel(1);
        queue
            .send(Request {
                texts: texts.to_vec(),
                tokens,
                reply,
            })
            .map_err(|_| BatchError::Stopped)?;
        self.stats.submitted.fetch_add(1, Ordering::Relaxed);
        answer.recv().map_err(|_| BatchError::Stopped)?
    }
}

impl Embedder for EmbedBatcher {
    fn dim(&self) -> usize {
        self.model.dim()
    }

    fn embed_passages(&self, texts: &[String]) -> BackendResult<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        for piece in texts.chunks(self.policy.max_round) {
            out.extend(self.submit(piece)?);
        }
        Ok(out)
    }

    fn embed_query(&self, text: &str) -> BackendResult<Vec<f32>> {
        self.model.embed_query(text)
    }

    fn model_id(&self) -> String {
        self.model.model_id()
    }
}

impl Drop for EmbedBatcher {
    fn drop(&mut self) {
        // Closing the queue ends the worker once it has served what is queued.
        drop(self.queue.take());
        if let Some(w) = self.worker.take() {
            if w.join().is_err() {
                warn!("the embedding worker ended with a panic");
            }
        }
    }
}

fn run_worker(model: &dyn PassageModel, policy: BatchPolicy, rx: &Receiver<Request>, stats: &BatchStats) {
    // A request that did not fit the previous round opens the next one.
    let mut carry: Option<Request> = None;
    loop {
        let first = match carry.take() {
            Some(r) => r,
            None => match rx.recv() {
                Ok(r) => r,
                Err(_) => break,
            },
        };
        let mut texts = first.texts.len();
        let mut round = vec![first];
        while texts < policy.max_round {
            match rx.try_recv() {
                Ok(r) if texts + r.texts.len() > policy.max_round => {
                    carry = Some(r);
                    break;
                }
                Ok(r) => {
                    texts += r.texts.len();
                    round.push(r);
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let replies: Vec<SyncSender<Reply>> = round.iter().map(|r| r.reply.clone()).collect();
        match std::panic::catch_unwind(AssertUnwindSafe(|| serve_round(model, policy, round, stats))) {
            Ok(()) => {}
            Err(panic) => {
                let msg = panic_message(panic.as_ref());
                warn!(error = %msg, requests = replies.len(), "embedding round panicked");
                for r in replies {
                    // A full slot means that requester was answered already.
                    let _ = r.try_send(Err(BatchError::Panicked(msg.clone()).into()));
                }
            }
        }
    }
    debug!("embedding worker stopped");
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

/// Cuts texts sorted by ascending token count into model calls: each call
/// is a range whose size x its last (longest) text's tokens stays within the
/// budget and whose size stays within `max_batch`.
pub fn plan_calls(sorted_tokens: &[usize], policy: BatchPolicy) -> Vec<std::ops::Range<usize>> {
    let policy = policy.sane();
    let mut calls = Vec::new();
    let mut start = 0;
    while start < sorted_tokens.len() {
        let mut end = start + 1;
        while end < sorted_tokens.len()
            && end + 1 - start <= policy.max_batch
            && (end + 1 - start) * sorted_tokens[end].max(1) <= policy.token_budget
        {
            end += 1;
        }
        calls.push(start..end);
        start = end;
    }
    calls
}

/// Embeds one round and answers every request in it.
fn serve_round(model: &dyn PassageModel, policy: BatchPolicy, round: Vec<Request>, stats: &BatchStats) {
    let started = Instant::now();
    // (request, position, tokens) for every text, by ascending length.
    let mut items: Vec<(usize, usize, usize)> = round
        .iter()
        .enumerate()
        .flat_map(|(r, req)| req.tokens.iter().enumerate().map(move |(i, &t)| (r, i, t)))
        .collect();
    items.sort_by_key(|&(r, i, t)| (t, r, i));
    let tokens: Vec<usize> = items.iter().map(|&(_, _, t)| t).collect();
    let calls = plan_calls(&tokens, policy);

    let mut out: Vec<Vec<Vec<f32>>> = round.iter().map(|r| vec![Vec::new(); r.texts.len()]).collect();
    let mut failed: Vec<Option<BackendError>> = round.iter().map(|_| None).collect();
    let mut padded = 0usize;
    for call in &calls {
        let part = &items[call.clone()];
        padded += part.len() * part.last().map_or(0, |&(_, _, t)| t);
        let texts: Vec<&str> = part.iter().map(|&(r, i, _)| round[r].texts[i].as_str()).collect();
        match embed_checked(model, &texts) {
            Ok(vs) => {
                for (&(r, i, _), v) in part.iter().zip(vs) {
                    out[r][i] = v;
                }
            }
            Err(e) => {
                // Find whose text fails: only its requester gets the error.
                warn!(error = %e, texts = texts.len(), "embedding call failed; retrying its texts one by one");
                for &(r, i, _) in part {
                    if failed[r].is_some() {
                        continue;
                    }
                    match embed_checked(model, &[round[r].texts[i].as_str()]) {
                        Ok(mut v) => out[r][i] = v.pop().unwrap_or_default(),
                        Err(e) => failed[r] = Some(e),
                    }
                }
            }
        }
    }
    let n_texts = items.len();
    let n_tokens: usize = tokens.iter().sum();
    stats.rounds.fetch_add(1, Ordering::Relaxed);
    stats.requests.fetch_add(round.len() as u64, Ordering::Relaxed);
    stats.texts.fetch_add(n_texts as u64, Ordering::Relaxed);
    stats.model_calls.fetch_add(calls.len() as u64, Ordering::Relaxed);
    stats.tokens.fetch_add(n_tokens as u64, Ordering::Relaxed);
    stats.padded_tokens.fetch_add(padded as u64, Ordering::Relaxed);
    stats.largest_round.fetch_max(n_texts as u64, Ordering::Relaxed);
    debug!(
        requests = round.len(),
        texts = n_texts,
        model_calls = calls.len(),
        tokens = n_tokens,
        padded_tokens = padded,
        ms = started.elapsed().as_secs_f64() * 1000.0,
        "embedding round"
    );
    for ((req, vecs), err) in round.into_iter().zip(out).zip(failed) {
        // A requester that went away is no one else's concern.
        let _ = req.reply.send(match err {
            Some(e) => Err(e),
            None => Ok(vecs),
        });
    }
}

fn embed_checked(model: &dyn PassageModel, texts: &[&str]) -> BackendResult<Vec<Vec<f32>>> {
    let vs = model.embed_passage_batch(texts)?;
    if vs.len() != texts.len() {
        return Err(BatchError::Count {
            expected: texts.len(),
            got: vs.len(),
        }
        .into());
    }
    Ok(vs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;
    use std::sync::mpsc::channel;
    use std::time::Duration;

    /// Vectors that encode the text: [len, first byte, hash], one token per
    /// byte (+2 for the special tokens).
    struct Fake {
        calls: Mutex<Vec<Vec<String>>>,
        /// While set, the next model call waits until the gate opens.
        gate: Mutex<Option<Receiver<()>>>,
        /// Model calls begun.
        entered: AtomicU64,
    }

    impl Fake {
        fn new() -> Arc<Self> {
            Arc::new(Self {
                calls: Mutex::new(Vec::new()),
                gate: Mutex::new(None),
                entered: AtomicU64::new(0),
            })
        }
    }

    fn vec_of(t: &str) -> Vec<f32> {
        let h = t
            .bytes()
            .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        vec![
            t.len() as f32,
            f32::from(t.bytes().next().unwrap_or(0)),
            (h % 100_003) as f32,
        ]
    }

    impl Embedder for Fake {
        fn dim(&self) -> usize {
            3
        }
        fn embed_passages(&self, texts: &[String]) -> BackendResult<Vec<Vec<f32>>> {
            Ok(texts.iter().map(|t| vec_of(t)).collect())
        }
        fn embed_query(&self, text: &str) -> BackendResult<Vec<f32>> {
            Ok(vec_of(text))
        }
        fn model_id(&self) -> String {
            "fake".into()
        }
    }

    impl PassageModel for Fake {
        fn passage_tokens(&self, text: &str) -> usize {
            text.len() + 2
        }
        fn embed_passage_batch(&self, texts: &[&str]) -> BackendResult<Vec<Vec<f32>>> {
            self.entered.fetch_add(1, Ordering::SeqCst);
            if let Some(gate) = self.gate.lock().take() {
                let _ = gate.recv_timeout(Duration::from_secs(10));
            }
            self.calls.lock().push(texts.iter().map(|t| (*t).to_owned()).collect());
            if texts.iter().any(|t| t.contains("poison")) {
                return Err(BackendError::invalid("fake", "poisoned text"));
            }
            if texts.iter().any(|t| t.contains("panic")) {
                panic!("fake model panicked");
            }
            Ok(texts.iter().map(|t| vec_of(t)).collect())
        }
    }

    fn texts(prefix: &str, n: usize) -> Vec<String> {
        // Lengths vary so that sorting reorders them.
        (0..n)
            .map(|i| format!("{prefix}{i}{}", "x".repeat((i * 37) % 23)))
            .collect()
    }

    /// Waits until `n` requests are queued or being served.
    fn wait_submitted(b: &EmbedBatcher, n: u64) {
        wait_for(|| b.stats().submitted >= n, "requests to arrive");
    }

    fn wait_for(done: impl Fn() -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn policy() -> BatchPolicy {
        BatchPolicy {
            max_round: 64,
            token_budget: 200,
            max_batch: 16,
            queue: 4,
        }
    }

    #[test]
    fn plan_respects_budget_and_max_batch() {
        let p = BatchPolicy {
            token_budget: 100,
            max_batch: 4,
            ..policy()
        };
        let tokens = [3, 5, 10, 20, 20, 30, 40, 60, 200];
        let calls = plan_calls(&tokens, p);
        assert_eq!(calls.iter().map(ExactSizeIterator::len).sum::<usize>(), tokens.len());
        for c in &calls {
            assert!(c.len() <= 4);
            let padded = c.len() * tokens[c.end - 1];
            assert!(padded <= 100 || c.len() == 1, "{c:?} pads to {padded}");
        }
        // Contiguous, in order.
        assert!(calls.windows(2).all(|w| w[0].end == w[1].start));
        // Short texts share calls, a text over budget goes alone.
        assert_eq!(calls[0], 0..4);
        assert_eq!(calls.last(), Some(&(8..9)));
        assert!(plan_calls(&[], p).is_empty());
    }

    #[test]
    fn vectors_come_back_in_input_order() {
        let fake = Fake::new();
        let b = EmbedBatcher::start(fake.clone(), policy()).unwrap();
        let input = texts("a", 150); // > max_round: split into pieces
        let got = b.embed_passages(&input).unwrap();
        let want: Vec<Vec<f32>> = input.iter().map(|t| vec_of(t)).collect();
        assert_eq!(got, want);
        assert!(b.embed_passages(&[]).unwrap().is_empty());
        let s = b.stats();
        assert_eq!(s.texts, 150);
        assert!(s.largest_round <= 64);
        assert!(s.padded_tokens >= s.tokens);
        // Each model call got texts in ascending length.
        for call in fake.calls.lock().iter() {
            assert!(call.windows(2).all(|w| w[0].len() <= w[1].len()), "{call:?}");
            let longest = call.iter().map(|t| t.len() + 2).max().unwrap_or(0);
            assert!(call.len() <= 16);
            assert!(call.len() * longest <= 200 || call.len() == 1);
        }
    }

    #[test]
    fn concurrent_requesters_get_their_own_vectors_in_shared_rounds() {
        let fake = Fake::new();
        let (open, gate) = channel();
        *fake.gate.lock() = Some(gate);
        let b = Arc::new(EmbedBatcher::start(fake.clone(), policy()).unwrap());
        // The first request holds the worker at the gate, so the next ones
        // queue up and must share one round.
        let first = {
            let b = Arc::clone(&b);
            std::thread::spawn(move || b.embed_passages(&texts("first", 3)))
        };
        // The worker is inside the first model call, holding its round.
        wait_for(|| fake.entered.load(Ordering::SeqCst) >= 1, "the first call");
        let handles: Vec<_> = (0..4)
            .map(|k| {
                let b = Arc::clone(&b);
                std::thread::spawn(move || {
                    let input = texts(&format!("r{k}-"), 10 + k);
                    (input.clone(), b.embed_passages(&input))
                })
            })
            .collect();
        wait_submitted(&b, 5);
        open.send(()).unwrap();
        assert_eq!(first.join().unwrap().unwrap().len(), 3);
        for h in handles {
            let (input, got) = h.join().unwrap();
            let want: Vec<Vec<f32>> = input.iter().map(|t| vec_of(t)).collect();
            assert_eq!(got.unwrap(), want);
        }
        let s = b.stats();
        assert_eq!(s.rounds, 2, "the four queued requests shared one round: {s:?}");
        assert_eq!(s.largest_round, 10 + 11 + 12 + 13);
        // Texts of different requesters went into the same model call.
        assert!(fake
            .calls
            .lock()
            .iter()
            .any(|c| c.iter().any(|t| t.starts_with("r0-")) && c.iter().any(|t| t.starts_with("r3-"))));
    }

    #[test]
    fn a_round_never_exceeds_max_round() {
        let fake = Fake::new();
        let (open, gate) = channel();
        *fake.gate.lock() = Some(gate);
        let p = BatchPolicy {
            max_round: 20,
            queue: 8,
            ..policy()
        };
        let b = Arc::new(EmbedBatcher::start(fake.clone(), p).unwrap());
        let hs: Vec<_> = (0..6)
            .map(|k| {
                let b = Arc::clone(&b);
                std::thread::spawn(move || b.embed_passages(&texts(&format!("q{k}-"), 8)).map(|v| v.len()))
            })
            .collect();
        wait_submitted(&b, 6);
        open.send(()).unwrap();
        for h in hs {
            assert_eq!(h.join().unwrap().unwrap(), 8);
        }
        let s = b.stats();
        assert!(s.largest_round <= 20, "{s:?}");
        assert_eq!(s.texts, 48);
    }

    #[test]
    fn an_error_reaches_only_its_requester() {
        let fake = Fake::new();
        let (open, gate) = channel();
        *fake.gate.lock() = Some(gate);
        let b = Arc::new(EmbedBatcher::start(fake.clone(), policy()).unwrap());
        let hold = {
            let b = Arc::clone(&b);
            std::thread::spawn(move || b.embed_passages(&texts("hold", 2)))
        };
        wait_submitted(&b, 1);
        let good: Vec<_> = (0..2)
            .map(|k| {
                let b = Arc::clone(&b);
                std::thread::spawn(move || b.embed_passages(&texts(&format!("ok{k}-"), 12)))
            })
            .collect();
        let bad = {
            let b = Arc::clone(&b);
            std::thread::spawn(move || {
                let mut t = texts("bad-", 5);
                t[2] = "a poison pill".to_owned();
                b.embed_passages(&t)
            })
        };
        wait_submitted(&b, 4);
        open.send(()).unwrap();
        assert!(hold.join().unwrap().is_ok());
        for h in good {
            assert_eq!(h.join().unwrap().unwrap().len(), 12);
        }
        let err = bad.join().unwrap().unwrap_err();
        assert!(err.to_string().contains("poisoned"), "{err}");
        // The batcher still works.
        assert_eq!(b.embed_passages(&texts("after", 3)).unwrap().len(), 3);
    }

    #[test]
    fn a_panic_fails_its_round_and_the_worker_carries_on() {
        let fake = Fake::new();
        let b = EmbedBatcher::start(fake.clone(), policy()).unwrap();
        let err = b.embed_passages(&["do not panic".to_owned()]).unwrap_err();
        assert!(err.to_string().contains("panicked"), "{err}");
        assert_eq!(b.embed_passages(&texts("fine", 4)).unwrap().len(), 4);
    }

    #[test]
    fn drop_serves_the_queue_and_joins_the_worker() {
        let fake = Fake::new();
        let (open, gate) = channel();
        *fake.gate.lock() = Some(gate);
        let b = Arc::new(EmbedBatcher::start(fake.clone(), policy()).unwrap());
        let hs: Vec<_> = (0..3)
            .map(|k| {
                let b = Arc::clone(&b);
                std::thread::spawn(move || b.embed_passages(&texts(&format!("d{k}"), 5)).map(|v| v.len()))
            })
            .collect();
        wait_submitted(&b, 3);
        // Our handle goes; the requesters' handles keep the batcher alive
        // until they have their vectors, and the last one shuts it down.
        drop(b);
        open.send(()).unwrap();
        for h in hs {
            assert_eq!(h.join().unwrap().unwrap(), 5);
        }
        // The worker thread (which held a clone of the model) has ended.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&fake) > 1 {
            assert!(Instant::now() < deadline, "the worker still holds the model");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn queries_bypass_the_queue() {
        let fake = Fake::new();
        let b = EmbedBatcher::start(fake.clone(), policy()).unwrap();
        assert_eq!(b.embed_query("hello").unwrap(), vec_of("hello"));
        assert!(fake.calls.lock().is_empty());
        assert_eq!(b.dim(), 3);
        assert_eq!(b.model_id(), "fake");
    }
}
