//! The ingest queue is the `jobs` table. Workers on every replica claim the
//! oldest unfinished job that no live replica holds (`FOR UPDATE SKIP
//! LOCKED` on PostgreSQL) and run it; a heartbeat renews this replica's
//! leases while it works. An upload wakes the local workers at once; other
//! replicas' workers find the job at their next poll.
//!
//! Shutdown (SIGTERM) stops claiming, lets running jobs finish within a
//! grace period, and hands back the ones that do not (claim cleared, so the
//! next replica runs them from the start; the pipeline is idempotent).

use crate::error::{IngestError, Result};
use crate::pipeline::{lock_set, Ingestor};
use docent_core::DocStatus;
use docent_store::MAX_ATTEMPTS;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{info, warn};
use uuid::Uuid;

/// How the workers run.
#[derive(Debug, Clone, Copy)]
pub struct QueueConfig {
    /// Concurrent jobs on this replica (0: an API-only replica that never
    /// runs jobs; others do).
    pub workers: usize,
    /// Claimable jobs allowed to wait before uploads are refused (503).
    pub capacity: usize,
    /// How often idle workers look for jobs other replicas queued.
    pub poll: Duration,
}

/// What shutdown did with the jobs in flight.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drained {
    pub finished: usize,
    pub handed_back: usize,
}

struct Shared {
    ingestor: Arc<Ingestor>,
    wake: Notify,
    stopping: AtomicBool,
    /// Jobs this replica is running.
    running: Mutex<HashSet<Uuid>>,
    finished_in_drain: std::sync::atomic::AtomicUsize,
}

/// The worker pool of one replica.
pub struct IngestQueue {
    shared: Arc<Shared>,
    cfg: QueueConfig,
    handles: Mutex<Vec<JoinHandle<()>>>,
}

impl IngestQueue {
    /// Starts the workers and the lease heartbeat.
    pub fn start(ingestor: Arc<Ingestor>, cfg: QueueConfig) -> Self {
        let shared = Arc::new(Shared {
            ingestor,
            wake: Notify::new(),
            stopping: AtomicBool::new(false),
            running: Mutex::new(HashSet::new()),
            finished_in_drain: Default::default(),
        });
        let mut handles = Vec::new();
        for w in 0..cfg.workers {
            let shared = Arc::clone(&shared);
            handles.push(tokio::spawn(worker(shared, w, cfg.poll)));
        }
        handles.push(spawn_heartbeat(Arc::clone(&shared.ingestor)));
        Self {
            shared,
            cfg,
            handles: Mutex::new(handles),
        }
    }

    /// Jobs waiting for a worker on any replica.
    pub async fn depth(&self) -> Result<u64> {
        Ok(self.shared.ingestor.store().claimable_jobs().await?)
    }

    /// Refuses new work while `capacity` jobs already wait (the caller maps
    /// `QueueFull` to 503 with Retry-After), before anything is stored.
    pub async fn admit(&self) -> Result<()> {
        if self.shared.stopping.load(Ordering::SeqCst) {
            return Err(IngestError::ShuttingDown);
        }
        if self.depth().await? >= self.cfg.capacity as u64 {
            return Err(IngestError::QueueFull);
        }
        Ok(())
    }

    /// True once shutdown began (readiness then fails, so a load balancer
    /// stops sending requests here).
    pub fn is_stopping(&self) -> bool {
        self.shared.stopping.load(Ordering::SeqCst)
    }

    /// A job was queued: wake a local worker now.
    pub fn wake(&self) {
        self.shared.wake.notify_one();
    }

    /// Stops claiming, waits up to `grace` for running jobs, hands back the
    /// rest. Safe to call once; later calls find nothing to do.
    pub async fn shutdown(&self, grace: Duration) -> Drained {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.wake.notify_waiters();
        let deadline = tokio::time::Instant::now() + grace;
        while !lock_set(&self.shared.running).is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let left: Vec<Uuid> = lock_set(&self.shared.running).iter().copied().collect();
        let handles: Vec<JoinHandle<()>> = std::mem::take(&mut *lock_set(&self.handles));
        for h in &handles {
            h.abort();
        }
        let ing = &self.shared.ingestor;
        let mut handed_back = 0;
        for job in left {
            match ing.store().release_job(job, ing.replica()).await {
                Ok(true) => {
                    handed_back += 1;
                    info!(%job, "job handed back for another replica");
                }
                Ok(false) => {}
                Err(e) => warn!(%job, error = %e, "could not hand the job back; its lease will expire"),
            }
        }
        Drained {
            finished: self.shared.finished_in_drain.load(Ordering::SeqCst),
            handed_back,
        }
    }
}

async fn worker(shared: Arc<Shared>, w: usize, poll: Duration) {
    let ing = Arc::clone(&shared.ingestor);
    loop {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let claim = match ing.store().claim_job(ing.replica(), ing.lease_secs()).await {
            Ok(c) => c,
            Err(e) => {
                warn!(worker = w, error = %e, "could not claim a job");
                tokio::time::sleep(poll).await;
                continue;
            }
        };
        let Some(claim) = claim else {
            // Idle: an upload here wakes us; other replicas' uploads are
            // found at the next poll.
            let _ = tokio::time::timeout(poll, shared.wake.notified()).await;
            continue;
        };
        if claim.attempt > MAX_ATTEMPTS {
            let msg = format!(
                "interrupted: gave up after {} attempts (each earlier worker stopped while running it)",
                claim.attempt - 1
            );
            warn!(job = %claim.job_id, doc_id = %claim.doc_id, "{msg}");
            let store = ing.store();
            let failed = async {
                store.set_status(claim.doc_id, DocStatus::Failed, Some(&msg)).await?;
                store.update_job(claim.job_id, DocStatus::Failed, 1.0, Some(&msg)).await
            };
            if let Err(e) = failed.await {
                warn!(job = %claim.job_id, error = %e, "could not fail the job");
            }
            continue;
        }
        lock_set(&shared.running).insert(claim.job_id);
        info!(worker = w, job = %claim.job_id, doc_id = %claim.doc_id, attempt = claim.attempt, "job claimed");
        let noop = |_: Uuid, _: DocStatus, _: f32| {};
        if let Err(e) = ing.run(claim.job_id, claim.doc_id, &noop).await {
            warn!(worker = w, job = %claim.job_id, code = e.code(), error = %e, "job failed");
        }
        lock_set(&shared.running).remove(&claim.job_id);
        if shared.stopping.load(Ordering::SeqCst) {
            shared.finished_in_drain.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Renews this process's leases every third of the lease, so that a
/// long job is never taken over while its worker lives.
pub fn spawn_heartbeat(ingestor: Arc<Ingestor>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let every = Duration::from_secs((ingestor.lease_secs() / 3).max(1) as u64);
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = ingestor
                .store()
                .renew_all(ingestor.replica(), ingestor.lease_secs())
                .await
            {
                warn!(error = %e, "could not renew job leases");
            }
        }
    })
}
