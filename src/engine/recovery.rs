//! Restore on start: every unexpired snapshot becomes a live attempt again (an idle
//! record, or an actor once scanned), its deadline re-armed; expired and ended ones are dropped.
//!
//! While it runs, [`Recovery`] is pending: `/readyz` answers 503 `{"recovering": n}`, and
//! a command for an attempt the registry does not know yet waits (bounded) for the
//! restore instead of answering `expired`. A store that does not answer is retried with
//! backoff; the service keeps serving new logins meanwhile.

use std::time::{Duration, Instant};

use actix::Addr;

use super::persist::Persister;
use super::recovering::Recovery;
use super::registry::{ListRestored, Registry};
use crate::engine::{Clock, Phase};
use crate::metrics::Metrics;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

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
    ended: &super::admin::Tombstones,
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
    let mut starting: Option<actix::dev::Request<Registry, ListRestored>> = None;
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
                // Ended by an operator: its polls keep saying so after the restart.
                if s.state.ending == Some(super::state::Ending::Ended) && s.state.expires_at_ms > now {
                    ended.insert(&s.poll, s.state.expires_at_ms, now);
                }
            } else if s.state.expires_at_ms <= now {
                report.expired += 1;
            } else {
                live.push(s);
            }
        }
        if let Some(previous) = starting.take() {
            let n = previous.await.unwrap_or(0);
            report.restored += n;
            recovery.add_restored(n);
        }
        starting = Some(registry.send(ListRestored(live)));
    }
    if let Some(last) = starting {
        let n = last.await.unwrap_or(0);
        report.restored += n;
        recovery.add_restored(n);
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
