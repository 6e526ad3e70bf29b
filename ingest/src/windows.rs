//! A job's passages go to the embedder in windows.
//!
//! A window is big enough for the shared batcher to sort well (the
//! `ingest.embed_batch` setting, 256 by default) and small enough that a
//! long document's progress moves. `depth` windows are in flight at once,
//! so the embedding worker finds the next window queued while the job
//! records the previous one's progress (and may take both in one round).
//! Each window runs in `spawn_blocking`: the embedder's calls block.

use crate::error::{IngestError, Result};
use docent_core::{BackendResult, Embedder};
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::task::JoinHandle;

type Pending = JoinHandle<BackendResult<Vec<Vec<f32>>>>;

/// The windows of one batch of passages, yielded in order.
pub struct EmbedWindows {
    embedder: Arc<dyn Embedder>,
    windows: std::vec::IntoIter<Vec<String>>,
    in_flight: VecDeque<(usize, Pending)>,
    depth: usize,
}

impl EmbedWindows {
    /// Splits `texts` into windows of `window` passages; `depth` of them
    /// are submitted ahead (at least 1).
    pub fn new(embedder: Arc<dyn Embedder>, texts: Vec<String>, window: usize, depth: usize) -> Self {
        let window = window.max(1);
        let mut windows = Vec::with_capacity(texts.len().div_ceil(window));
        let mut rest = texts.into_iter().peekable();
        while rest.peek().is_some() {
            windows.push(rest.by_ref().take(window).collect::<Vec<String>>());
        }
        Self {
            embedder,
            windows: windows.into_iter(),
            in_flight: VecDeque::new(),
            depth: depth.max(1),
        }
    }

    fn fill(&mut self) {
        while self.in_flight.len() < self.depth {
            let Some(w) = self.windows.next() else { break };
            let embedder = Arc::clone(&self.embedder);
            let n = w.len();
            self.in_flight
                .push_back((n, tokio::task::spawn_blocking(move || embedder.embed_passages(&w))));
        }
    }

    /// The next window's vectors (in input order), or `None` when done.
    /// Windows already submitted when an error is returned still finish in
    /// the background; their vectors are dropped.
    pub async fn next(&mut self) -> Option<Result<Vec<Vec<f32>>>> {
        self.fill();
        let (n, pending) = self.in_flight.pop_front()?;
        self.fill();
        Some(match pending.await {
            Err(e) => Err(IngestError::Interrupted(format!("embedding task: {e}"))),
            Ok(Err(e)) => Err(IngestError::Embed(e)),
            Ok(Ok(v)) if v.len() != n => Err(IngestError::Embed(docent_core::BackendError::invalid(
                "embedder",
                format!("{} vectors for {n} passages", v.len()),
            ))),
            Ok(Ok(v)) => Ok(v),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use docent_core::BackendError;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting {
        calls: AtomicUsize,
        largest: AtomicUsize,
    }

    impl Embedder for Counting {
        fn dim(&self) -> usize {
            1
        }
        fn embed_passages(&self, texts: &[String]) -> BackendResult<Vec<Vec<f32>>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.largest.fetch_max(texts.len(), Ordering::SeqCst);
            if texts.iter().any(|t| t == "bad") {
                return Err(BackendError::invalid("test", "bad text"));
            }
            texts
                .iter()
                .map(|t| Ok(vec![t.parse::<f32>().unwrap_or(-1.0)]))
                .collect()
        }
        fn embed_query(&self, _: &str) -> BackendResult<Vec<f32>> {
            Ok(vec![0.0])
        }
        fn model_id(&self) -> String {
            "counting".into()
        }
    }

    #[tokio::test]
    async fn windows_come_back_in_order() {
        let e = Arc::new(Counting {
            calls: AtomicUsize::new(0),
            largest: AtomicUsize::new(0),
        });
        let texts: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
        let mut w = EmbedWindows::new(e.clone(), texts, 256, 2);
        let mut all = Vec::new();
        let mut sizes = Vec::new();
        while let Some(v) = w.next().await {
            let v = v.unwrap();
            sizes.push(v.len());
            all.extend(v);
        }
        assert_eq!(sizes, vec![256, 256, 256, 232]);
        assert_eq!(all, (0..1000).map(|i| vec![i as f32]).collect::<Vec<_>>());
        assert_eq!(e.calls.load(Ordering::SeqCst), 4);
        assert_eq!(e.largest.load(Ordering::SeqCst), 256);
        let mut empty = EmbedWindows::new(e, Vec::new(), 256, 2);
        assert!(empty.next().await.is_none());
    }

    #[tokio::test]
    async fn an_error_is_the_windows_error() {
        let e = Arc::new(Counting {
            calls: AtomicUsize::new(0),
            largest: AtomicUsize::new(0),
        });
        let texts = vec!["1".to_owned(), "bad".to_owned(), "3".to_owned()];
        let mut w = EmbedWindows::new(e, texts, 1, 2);
        assert!(w.next().await.unwrap().is_ok());
        assert!(matches!(w.next().await, Some(Err(IngestError::Embed(_)))));
    }
}
