//! The snapshot store: writes and their errors, what is still pending, the store's
//! health, the restore at start, attempt actors restarted from their snapshots, and
//! tokens withheld because their consumed state could not be stored.

use prometheus::{Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};

use super::labels::{Restart, SnapshotOp, SnapshotWrite};
use super::metric_names::*;
use super::{Metrics, counter, counter_vec, gauge, gauge_vec, register};

/// Snapshot writes are local and small: 50 µs .. 1 s.
const SNAPSHOT_BUCKETS: &[f64] = &[0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0];

/// How the snapshots of the last restore ended (`scanlogin_restore_attempts{outcome}`);
/// the restore names them as it counts them ([`Metrics::restore_finished`]).
const RESTORE_ENDINGS: &[&str] = &["restored", "expired", "ended", "corrupt"];

pub(super) struct StoreMetrics {
    writes: IntCounterVec,
    write_duration: Histogram,
    errors: IntCounterVec,
    restored: IntCounter,
    pending: IntGauge,
    sqlite_wal_pages: IntGauge,
    up: IntGaugeVec,
    restore_outcomes: IntGaugeVec,
    restore_duration: Gauge,
    attempt_restarts: IntCounterVec,
    tokens_withheld: IntCounter,
    records_rejected: IntCounter,
}

impl StoreMetrics {
    pub(super) fn new(r: &Registry) -> Self {
        let write_duration =
            HistogramOpts::new(SNAPSHOT_WRITE_DURATION, "Duration of one snapshot write (a batch: one round trip)")
                .buckets(SNAPSHOT_BUCKETS.to_vec());
        Self {
            writes: counter_vec(r, SNAPSHOT_WRITES, "Attempt snapshots written, by result", &["result"]),
            write_duration: register(r, Histogram::with_opts(write_duration).expect("valid metric")),
            errors: counter_vec(
                r,
                SNAPSHOT_ERRORS,
                "Snapshot store errors (retried), by store and operation",
                &["store", "op"],
            ),
            restored: counter(r, RESTORED_ATTEMPTS, "Attempts restored from snapshots at start"),
            pending: gauge(r, SNAPSHOT_PENDING, "Snapshots queued or in flight, not yet stored"),
            sqlite_wal_pages: gauge(
                r,
                SQLITE_WAL_PAGES,
                "Pages in SQLite's log after the latest background checkpoint",
            ),
            up: gauge_vec(r, SNAPSHOT_STORE_UP, "1 while the snapshot store answers", &["store"]),
            restore_outcomes: gauge_vec(r, RESTORE_OUTCOMES, "The last restore: snapshots by outcome", &["outcome"]),
            restore_duration: register(
                r,
                Gauge::new(RESTORE_DURATION, "How long the last restore took").expect("valid metric"),
            ),
            attempt_restarts: counter_vec(r, ATTEMPT_RESTARTS, "Attempt actors restarted by the registry", &["result"]),
            tokens_withheld: counter(
                r,
                TOKENS_WITHHELD,
                "Tokens not handed out because the consumed state could not be stored",
            ),
            records_rejected: counter(
                r,
                REDIS_RECORDS_REJECTED,
                "Attempt records in Redis that failed their authentication (treated as gone)",
            ),
        }
    }

    pub(super) fn preset(&self, store: &str) {
        for r in SnapshotWrite::ALL {
            self.writes.with_label_values(&[r.label()]);
        }
        for op in SnapshotOp::ALL {
            self.errors.with_label_values(&[store, op.label()]);
        }
        // Up until the writer says otherwise (it reports every change).
        self.up.with_label_values(&[store]).set(1);
        for outcome in RESTORE_ENDINGS {
            self.restore_outcomes.with_label_values(&[outcome]);
        }
        for r in Restart::ALL {
            self.attempt_restarts.with_label_values(&[r.label()]);
        }
    }
}

impl Metrics {
    fn store(&self) -> &StoreMetrics {
        &self.0.store
    }

    /// How long one round trip of the snapshot writer took (a batch, ok or failed).
    pub fn snapshot_write_took(&self, secs: f64) {
        self.store().write_duration.observe(secs);
    }

    /// `n` snapshots stored in one round trip of `store` (or failed to be).
    pub fn snapshot_written(&self, _store: &str, result: SnapshotWrite, n: usize) {
        self.store().writes.with_label_values(&[result.label()]).inc_by(n as u64);
    }

    /// An attempt record in Redis failed its authentication: not written by this
    /// deployment (or damaged), so it was treated as gone.
    pub fn redis_record_rejected(&self) {
        self.store().records_rejected.inc();
    }

    /// A snapshot store error of operation `op` (retried).
    pub fn snapshot_error(&self, store: &str, op: SnapshotOp) {
        self.store().errors.with_label_values(&[store, op.label()]).inc();
    }

    pub fn snapshot_pending(&self, n: usize) {
        self.store().pending.set(n as i64);
    }

    pub fn sqlite_wal_pages(&self, n: i64) {
        self.store().sqlite_wal_pages.set(n);
    }

    pub fn snapshot_store_up(&self, store: &str, up: bool) {
        self.store().up.with_label_values(&[store]).set(i64::from(up));
    }

    /// `n` attempts came back from snapshots at start.
    pub fn restored(&self, n: u64) {
        self.store().restored.inc_by(n);
    }

    /// The last restore: how many snapshots ended how (`restored`, `expired`, `ended`,
    /// `corrupt`), and how long it took.
    pub fn restore_finished(&self, counts: &[(&str, usize)], secs: f64) {
        for (outcome, n) in counts {
            self.store().restore_outcomes.with_label_values(&[outcome]).set(*n as i64);
            if *outcome == "restored" {
                self.restored(*n as u64);
            }
        }
        self.store().restore_duration.set(secs);
    }

    pub fn attempt_restart(&self, result: Restart) {
        self.store().attempt_restarts.with_label_values(&[result.label()]).inc();
    }

    pub fn token_withheld(&self) {
        self.store().tokens_withheld.inc();
    }
}
