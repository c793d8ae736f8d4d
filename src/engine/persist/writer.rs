//! `Persister`: the one way the engine reaches the snapshot store.
//!
//! - **Group commit.** Submitted snapshots wait in a map keyed by poll id (a newer version
//!   replaces an older one), and a single writer task takes everything waiting and writes
//!   it in one round trip per `max_batch` snapshots, then acknowledges each submitter.
//!   Under load many transitions share a round trip; memory stays bounded by the number
//!   of live attempts, whatever the store does.
//! - **Acknowledged means stored.** [`Persister::persist`] answers [`Stored::Durable`]
//!   only once the store took the snapshot. A store that is up but slow is waited for up
//!   to `ack_budget`, then answered [`Stored::Late`]: the caller must not acknowledge the
//!   step (the engine answers `overloaded`), though the snapshot stays queued.
//! - **Degraded mode.** Only a store *known* down (a write or probe failed; `/readyz`,
//!   `scanlogin_snapshot_store_up` and the log say so) answers [`Stored::StoreDown`] at
//!   once: the attempt in memory stays the truth and its snapshot stays queued.
//! - **Outages.** A failed write marks the store down, counts an error, and keeps the
//!   snapshots queued; the writer probes with exponential backoff, and when the store
//!   answers again (or a probe finds it emptied) it asks the engine, through
//!   [`Persister::on_store_back`], to write every live attempt again.
//! - **Fallback for consumed tokens.** With Redis as the store, a token's "consumed"
//!   snapshot that Redis cannot take is written to the user database instead
//!   ([`Persister::persist`] with `critical`), and restore merges both, newest version
//!   first: a token handed out during an outage is never handed out again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use crate::engine::clock::Clock;

use super::{Page, Probe, Snapshot, SnapshotStore, StoreError};
use crate::ids::PollId;
use crate::metrics::Metrics;
use crate::metrics::labels::{SnapshotOp, SnapshotWrite};

/// Tuning of the writer; `Default` is what production uses.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// The longest a transition's answer waits for its snapshot to be acknowledged by a
    /// store that is up; past it the answer is `overloaded`, never an acknowledgement.
    /// Above `call_budget`, so a store that hangs is marked down (degraded mode) before a
    /// submitter that found it up gives up.
    pub ack_budget: Duration,
    /// The longest one store call may take before it counts as failed.
    pub call_budget: Duration,
    /// Snapshots per round trip.
    pub max_batch: usize,
    /// How often a healthy store is probed (and an emptied Redis noticed).
    pub probe_every: Duration,
    /// Retry delays while the store is down: doubling from `min` up to `max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// How often expired rows are deleted (stores that do not expire by themselves).
    pub purge_every: Duration,
    /// The engine's clock: what "expired" means to a purge.
    pub clock: Clock,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            ack_budget: Duration::from_millis(2_500),
            call_budget: Duration::from_secs(2),
            max_batch: 1_000,
            probe_every: Duration::from_secs(1),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            purge_every: Duration::from_secs(60),
            clock: Clock::new(),
        }
    }
}

/// What became of a snapshot by the time its answer may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// The store has it (or a newer version of the same attempt).
    Durable,
    /// The store is known to be down: degraded mode, memory is the truth for now.
    StoreDown,
    /// The store is up but did not acknowledge within the ack budget: not stored yet.
    Late,
}

impl Stored {
    pub fn is_durable(self) -> bool {
        self == Stored::Durable
    }
}

/// The store as `/readyz` and the metrics see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    pub store: &'static str,
    pub up: bool,
    /// Snapshots waiting to be written (queued or in flight).
    pub pending: usize,
}

struct Job {
    snap: Snapshot,
    acks: Vec<oneshot::Sender<bool>>,
}

type Hook = Arc<dyn Fn() + Send + Sync>;

/// The writer's queue and what it writes to: the stores, the snapshots waiting for them,
/// and the primary's health as last seen.
struct WriteQueue {
    primary: Arc<dyn SnapshotStore>,
    fallback: Option<Arc<dyn SnapshotStore>>,
    pending: Mutex<HashMap<PollId, Job>>,
    /// Taken by the writer and not yet acknowledged.
    in_flight: AtomicUsize,
    wake: Notify,
    up: AtomicBool,
    store_back: Mutex<Option<Hook>>,
    cfg: WriterConfig,
    metrics: Metrics,
}

impl WriteQueue {
    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<PollId, Job>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_up(&self, up: bool) -> bool {
        let was = self.up.swap(up, Ordering::SeqCst);
        if was != up {
            self.metrics.snapshot_store_up(self.primary.name(), up);
            if up {
                tracing::info!(store = self.primary.name(), "snapshot store answers again");
            } else {
                tracing::warn!(store = self.primary.name(), "snapshot store is down; attempts live in memory only");
                // Whoever waits on a queued snapshot learns it now (degraded mode), not at
                // the end of the ack budget; the snapshots stay queued.
                for job in self.pending().values_mut() {
                    for a in job.acks.drain(..) {
                        let _ = a.send(false);
                    }
                }
            }
        }
        was
    }

    fn store_back(&self) {
        let hook = self.store_back.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(h) = hook {
            h();
        }
    }

    fn gauge(&self) {
        let n = self.pending().len() + self.in_flight.load(Ordering::SeqCst);
        self.metrics.snapshot_pending(n);
    }
}

/// Cheap to clone; every clone feeds the same writer.
#[derive(Clone)]
pub struct Persister(Arc<WriteQueue>);

impl Persister {
    /// A persister over `primary` (with `fallback` for consumed tokens) and the writer
    /// task to spawn on the runtime of the caller's choice.
    pub fn new(
        primary: Arc<dyn SnapshotStore>,
        fallback: Option<Arc<dyn SnapshotStore>>,
        cfg: WriterConfig,
        metrics: Metrics,
    ) -> (Self, impl std::future::Future<Output = ()> + Send + 'static) {
        metrics.snapshot_store_up(primary.name(), true);
        let shared = Arc::new(WriteQueue {
            primary,
            fallback,
            pending: Mutex::new(HashMap::new()),
            in_flight: AtomicUsize::new(0),
            wake: Notify::new(),
            up: AtomicBool::new(true),
            store_back: Mutex::new(None),
            cfg,
            metrics,
        });
        (Self(shared.clone()), run(shared))
    }

    pub fn store_name(&self) -> &'static str {
        self.0.primary.name()
    }

    pub fn config(&self) -> WriterConfig {
        self.0.cfg
    }

    pub fn health(&self) -> Health {
        let pending = self.0.pending().len() + self.0.in_flight.load(Ordering::SeqCst);
        Health { store: self.0.primary.name(), up: self.0.up.load(Ordering::SeqCst), pending }
    }

    /// Called whenever the store may have missed writes (it was down, or lost its data):
    /// the engine answers by submitting every live attempt again.
    pub fn on_store_back(&self, hook: impl Fn() + Send + Sync + 'static) {
        *self.0.store_back.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(hook));
    }

    /// Queues `snap` for writing; `ack` learns whether it (or a newer version of the same
    /// attempt) reached the store. A store known to be down answers `false` at once.
    pub fn submit(&self, snap: Snapshot, ack: Option<oneshot::Sender<bool>>) {
        let down = !self.0.up.load(Ordering::SeqCst);
        let ack = match ack {
            Some(tx) if down => {
                let _ = tx.send(false);
                None
            }
            other => other,
        };
        {
            let mut pending = self.0.pending();
            match pending.get_mut(&snap.poll) {
                Some(job) => {
                    if snap.version() >= job.snap.version() {
                        job.snap = snap;
                    }
                    job.acks.extend(ack);
                }
                None => {
                    pending.insert(snap.poll.clone(), Job { snap, acks: ack.into_iter().collect() });
                }
            }
        }
        self.0.wake.notify_one();
    }

    /// Writes `snap` and waits (at most the ack budget) until it is stored. With
    /// `critical` (the "consumed" state of a handed-out token) a primary that cannot take
    /// it is replaced by the fallback store, if there is one.
    pub async fn persist(&self, snap: Snapshot, critical: bool) -> Stored {
        let (tx, rx) = oneshot::channel();
        let copy = (critical && self.0.fallback.is_some()).then(|| snap.clone());
        self.submit(snap, Some(tx));
        let stored = match tokio::time::timeout(self.0.cfg.ack_budget, rx).await {
            Ok(Ok(true)) => return Stored::Durable,
            // `false` is only ever sent once the store is marked down (at submit, or by
            // the write that failed).
            Ok(Ok(false)) => Stored::StoreDown,
            // The writer is gone (the runtime is stopping): nothing says it was stored.
            Ok(Err(_)) => Stored::Late,
            Err(_) => {
                self.0.metrics.snapshot_error(self.0.primary.name(), SnapshotOp::Late);
                tracing::warn!(store = self.0.primary.name(), "snapshot not acknowledged within the ack budget");
                Stored::Late
            }
        };
        let (Some(fb), Some(snap)) = (&self.0.fallback, copy) else { return stored };
        match tokio::time::timeout(self.0.cfg.call_budget, fb.write(std::slice::from_ref(&snap))).await {
            Ok(Ok(())) => {
                self.0.metrics.snapshot_written(fb.name(), SnapshotWrite::Fallback, 1);
                Stored::Durable
            }
            Ok(Err(e)) => {
                self.0.metrics.snapshot_error(fb.name(), SnapshotOp::Fallback);
                tracing::warn!(store = fb.name(), error = %e, "fallback write failed");
                stored
            }
            Err(_) => {
                self.0.metrics.snapshot_error(fb.name(), SnapshotOp::Fallback);
                stored
            }
        }
    }

    /// The latest snapshot of `poll` (expiring at `expires_at_ms`) in the primary or the
    /// fallback, whichever is newer.
    pub async fn load(&self, poll: &PollId, expires_at_ms: u64) -> Result<Option<Snapshot>, StoreError> {
        let budget = self.0.cfg.call_budget;
        let main = bounded(budget, self.0.primary.load_at(poll, expires_at_ms)).await?;
        let Some(fb) = &self.0.fallback else { return Ok(main) };
        let other = bounded(budget, fb.load_at(poll, expires_at_ms)).await.unwrap_or(None);
        Ok(newest(main, other))
    }

    /// Starts walking every stored snapshot: loads the fallback's (few) entries first.
    pub async fn begin_restore(&self) -> Result<RestoreWalk, StoreError> {
        let mut overrides = HashMap::new();
        if let Some(fb) = &self.0.fallback {
            let mut cursor = None;
            loop {
                let page = bounded(self.0.cfg.call_budget, fb.load_page(cursor)).await?;
                for s in page.snapshots {
                    overrides.insert(s.poll.clone(), s);
                }
                match page.next {
                    Some(n) => cursor = Some(n),
                    None => break,
                }
            }
        }
        Ok(RestoreWalk { overrides, cursor: None, done: false })
    }

    /// The next page of the walk (`None` at the end), each snapshot replaced by a newer
    /// version from the fallback where there is one.
    pub async fn next_page(&self, r: &mut RestoreWalk) -> Result<Option<Page>, StoreError> {
        if r.done {
            return Ok(None);
        }
        let mut page = bounded(self.0.cfg.call_budget * 5, self.0.primary.load_page(r.cursor.clone())).await?;
        r.cursor = page.next.take();
        r.done = r.cursor.is_none();
        for s in &mut page.snapshots {
            if let Some(o) = r.overrides.get(&s.poll)
                && o.version() > s.version()
            {
                *s = o.clone();
            }
        }
        Ok(Some(page))
    }

    /// Waits until everything submitted so far is written, or `deadline` passes.
    /// `true` when nothing is left.
    pub async fn flush(&self, deadline: Instant) -> bool {
        loop {
            if self.health().pending == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            self.0.wake.notify_one();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// State of a restore walk ([`Persister::begin_restore`]).
pub struct RestoreWalk {
    overrides: HashMap<PollId, Snapshot>,
    cursor: Option<String>,
    done: bool,
}

fn newest(a: Option<Snapshot>, b: Option<Snapshot>) -> Option<Snapshot> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.version() > a.version() { b } else { a }),
        (a, b) => a.or(b),
    }
}

async fn bounded<T>(
    budget: Duration,
    f: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(budget, f).await.unwrap_or(Err(StoreError::Timeout))
}

/// The writer task: drains the queue while the store answers, probes it while it does
/// not, and tells the engine when it may have missed writes.
async fn run(s: Arc<WriteQueue>) {
    let name = s.primary.name();
    let mut backoff = s.cfg.backoff_min;
    let mut next_probe = Instant::now();
    // Not at once: the restore at start must still see expired rows to count them.
    let mut next_purge = Instant::now() + s.cfg.purge_every;
    loop {
        if !s.up.load(Ordering::SeqCst) {
            tokio::time::sleep(backoff).await;
            match bounded(s.cfg.call_budget, s.primary.probe()).await {
                Ok(_) => {
                    s.set_up(true);
                    backoff = s.cfg.backoff_min;
                    next_probe = Instant::now() + s.cfg.probe_every;
                    // Whatever was written while it was away may be missing (a restarted
                    // Redis is empty): every live attempt is written again.
                    s.store_back();
                }
                Err(_) => {
                    s.metrics.snapshot_error(name, SnapshotOp::Probe);
                    backoff = (backoff * 2).min(s.cfg.backoff_max);
                }
            }
            continue;
        }
        let jobs: Vec<Job> = {
            let mut pending = s.pending();
            if pending.is_empty() { Vec::new() } else { std::mem::take(&mut *pending).into_values().collect() }
        };
        if !jobs.is_empty() {
            s.in_flight.store(jobs.len(), Ordering::SeqCst);
            s.gauge();
            write_jobs(&s, jobs).await;
            s.in_flight.store(0, Ordering::SeqCst);
            s.gauge();
            continue;
        }
        let now = Instant::now();
        if now >= next_probe {
            next_probe = now + s.cfg.probe_every;
            match bounded(s.cfg.call_budget, s.primary.probe()).await {
                Ok(Probe::Intact) => {}
                Ok(Probe::New) => {
                    tracing::info!(store = name, "snapshot store new to this service: marked");
                    // Nothing was lost; only what may have been written before this
                    // first look (nothing, at a start) is written again.
                    s.store_back();
                }
                Ok(Probe::Lost) => {
                    tracing::warn!(store = name, "snapshot store lost its data; writing every live attempt again");
                    s.store_back();
                }
                Err(e) => {
                    tracing::warn!(store = name, error = %e, "snapshot store probe failed");
                    s.metrics.snapshot_error(name, SnapshotOp::Probe);
                    s.set_up(false);
                    continue;
                }
            }
            if now >= next_purge {
                next_purge = now + s.cfg.purge_every;
                let cutoff = s.cfg.clock.now_ms();
                for store in std::iter::once(&s.primary).chain(s.fallback.as_ref()) {
                    if let Err(e) = bounded(s.cfg.call_budget, store.purge(cutoff)).await {
                        tracing::warn!(store = store.name(), error = %e, "purging expired snapshots failed");
                    }
                }
            }
        }
        tokio::select! {
            _ = s.wake.notified() => {}
            _ = tokio::time::sleep_until(next_probe) => {}
        }
    }
}

/// Writes `jobs` in batches of `max_batch`, one round trip each. On the first failure the
/// store is marked down and every unwritten job goes back to the queue, unless a newer
/// version of the same attempt arrived meanwhile.
async fn write_jobs(s: &WriteQueue, jobs: Vec<Job>) {
    let name = s.primary.name();
    let mut jobs = jobs.into_iter().peekable();
    while jobs.peek().is_some() {
        let chunk: Vec<Job> = jobs.by_ref().take(s.cfg.max_batch).collect();
        let snaps: Vec<Snapshot> = chunk.iter().map(|j| j.snap.clone()).collect();
        let started = std::time::Instant::now();
        let result = bounded(s.cfg.call_budget, s.primary.write(&snaps)).await;
        s.metrics.snapshot_write_took(started.elapsed().as_secs_f64());
        match result {
            Ok(()) => {
                s.metrics.snapshot_written(name, SnapshotWrite::Ok, snaps.len());
                for j in chunk {
                    for a in j.acks {
                        let _ = a.send(true);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(store = name, error = %e, batch = snaps.len(), "snapshot write failed; will retry");
                s.metrics.snapshot_error(name, SnapshotOp::Write);
                s.set_up(false);
                let mut pending = s.pending();
                for j in chunk.into_iter().chain(jobs) {
                    for a in j.acks {
                        let _ = a.send(false);
                    }
                    pending.entry(j.snap.poll.clone()).or_insert(Job { snap: j.snap, acks: Vec::new() });
                }
                return;
            }
        }
    }
}
