//! Restore on start: every unexpired snapshot becomes an Attempt actor again, its timer
//! re-armed from the absolute expiry; expired and ended ones are dropped.
//!
//! While it runs, [`Recovery`] is pending: `/readyz` answers 503 `{"recovering": n}`, and
//! a command for an attempt the registry does not know yet waits (bounded) for the
//! restore instead of answering `expired`. A store that does not answer is retried with
//! backoff; the service keeps serving new logins meanwhile.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix::Addr;
use tokio::sync::watch;

use super::persist::Persister;
use super::registry::{Registry, Restore};
use crate::engine::{Clock, Phase};
use crate::metrics::Metrics;

/// The longest a command for an unknown attempt waits for the restore to finish.
pub const RECOVERY_WAIT: Duration = Duration::from_secs(3);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Whether a restore is under way, and how far it got.
pub struct Recovery {
    pending: AtomicBool,
    restored: AtomicUsize,
    done: watch::Sender<bool>,
}

impl Recovery {
    pub fn new() -> Self {
        Self { pending: AtomicBool::new(false), restored: AtomicUsize::new(0), done: watch::Sender::new(true) }
    }

    pub fn begin(&self) {
        self.pending.store(true, Ordering::SeqCst);
        self.done.send_replace(false);
    }

    fn finish(&self) {
        self.pending.store(false, Ordering::SeqCst);
        self.done.send_replace(true);
    }

    pub fn is_pending(&self) -> bool {
        self.pending.load(Ordering::SeqCst)
    }

    /// Attempts restored so far.
    pub fn restored(&self) -> usize {
        self.restored.load(Ordering::SeqCst)
    }

    /// Waits until the restore is done, at most [`RECOVERY_WAIT`].
    pub async fn wait(&self) {
        let mut rx = self.done.subscribe();
        let _ = tokio::time::timeout(RECOVERY_WAIT, rx.wait_for(|d| *d)).await;
    }
}

impl Default for Recovery {
    fn default() -> Self {
        Self::new()
    }
}

/// What a restore found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Actors started again.
    pub restored: usize,
    /// Snapshots of attempts whose expiry passed while the service was down.
    pub expired: usize,
    /// Snapshots of attempts that had ended (token handed out, discarded).
    pub ended: usize,
    /// Entries that could not be decoded.
    pub corrupt: usize,
    pub duration: Duration,
}

/// Walks the store page by page and hands the live snapshots to the registry.
pub(super) async fn restore(
    registry: Addr<Registry>,
    persister: Persister,
    clock: Clock,
    metrics: Metrics,
    recovery: &Recovery,
) -> RestoreReport {
    let started = Instant::now();
    let store = persister.store_name();
    let mut report = RestoreReport::default();
    let mut backoff = BACKOFF_MIN;
    let mut walk = loop {
        match persister.begin_restore().await {
            Ok(w) => break w,
            Err(e) => {
                tracing::warn!(store, error = %e, "cannot read snapshots yet; retrying");
                metrics.snapshot_error(store, crate::metrics::labels::SnapshotOp::Load);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    };
    // The registry starts the actors of one page while the next page loads.
    let mut starting: Option<actix::dev::Request<Registry, Restore>> = None;
    loop {
        let page = match persister.next_page(&mut walk).await {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(store, error = %e, "reading snapshots failed; retrying");
                metrics.snapshot_error(store, crate::metrics::labels::SnapshotOp::Load);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        backoff = BACKOFF_MIN;
        report.corrupt += page.corrupt;
        report.expired += page.expired;
        let now = clock.now_ms();
        let mut live = Vec::with_capacity(page.snapshots.len());
        for s in page.snapshots {
            if s.state.phase == Phase::Expired {
                report.ended += 1;
            } else if s.state.expires_at_ms <= now {
                report.expired += 1;
            } else {
                live.push(s);
            }
        }
        if let Some(previous) = starting.take() {
            let n = previous.await.unwrap_or(0);
            report.restored += n;
            recovery.restored.fetch_add(n, Ordering::SeqCst);
        }
        starting = Some(registry.send(Restore(live)));
    }
    if let Some(last) = starting {
        let n = last.await.unwrap_or(0);
        report.restored += n;
        recovery.restored.fetch_add(n, Ordering::SeqCst);
    }
    report.duration = started.elapsed();
    recovery.finish();
    metrics.restore_finished(
        &[
            ("restored", report.restored),
            ("expired", report.expired),
            ("ended", report.ended),
            ("corrupt", report.corrupt),
        ],
        report.duration.as_secs_f64(),
    );
    tracing::info!(
        store,
        restored = report.restored,
        expired = report.expired,
        ended = report.ended,
        corrupt = report.corrupt,
        ms = report.duration.as_millis() as u64,
        "login attempts restored from snapshots"
    );
    report
}
