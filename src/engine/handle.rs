//! `LoginsHandle`: the cloneable async façade over the engine, and the one place of the
//! policy around `step()` that both engines share.
//!
//! The handle owns what a caller experiences, whichever backend answers: the live-attempt
//! cap, long polls and event streams (the held-poll permits and their gauge, the one
//! waiting loop in [`super::subscription`]), and closing at shutdown. The backends
//! ([`Backend`]) only make, change, read and watch attempts; what is counted when they
//! commit is written once too, in [`super::commit`]. Nothing above this file knows which
//! backend runs.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

use super::admin::{AttemptId, AttemptInfo, Filter, Page};
use super::backend::Backend;
use super::clock::Clock;
use super::cluster::ClusterEngine;
use super::local::LocalEngine;
use super::outcome::{Created, EngineConfig, EngineError, NewAttempt, Outcome};
use super::persist::seal::Seal;
use super::persist::{Health, Persister};
use super::recovery::RestoreReport;
use super::state::{Event, Requester};
use super::subscription::{Subscription, Watcher, Woken};
use crate::ids::{self, PollId, Scene};
use crate::kv::Kv;
use crate::metrics::Metrics;
use crate::metrics::labels::{LimitKind, PollKind};

/// How long a held poll whose read failed waits before it reads again.
const REREAD_PAUSE: Duration = Duration::from_millis(200);

#[derive(Clone)]
pub struct LoginsHandle(Arc<Policy>);

struct Policy {
    backend: Backend,
    clock: Clock,
    metrics: Metrics,
    live_max: usize,
    /// Permits for held long polls and event streams on this node.
    holds: Arc<Semaphore>,
    /// Flips to `true` when the server shuts down: held polls answer at once.
    closing: watch::Sender<bool>,
}

impl LoginsHandle {
    /// The single-node engine (see [`LocalEngine::start`]).
    pub fn start(
        cfg: EngineConfig,
        clock: Clock,
        metrics: Metrics,
        persister: Persister,
        arbiter: Option<&actix::ArbiterHandle>,
    ) -> Self {
        let local = LocalEngine::start(cfg.rules, clock, metrics.clone(), persister, arbiter);
        Self::over(Backend::Local(local), cfg, clock, metrics)
    }

    /// The cluster engine on `kv`'s Redis, its records sealed with `seal` (see
    /// [`ClusterEngine::start`]).
    pub fn start_cluster(
        cfg: EngineConfig,
        kv: Kv,
        seal: Seal,
        clock: Clock,
        metrics: Metrics,
        arbiter: Option<&actix::ArbiterHandle>,
    ) -> Self {
        let cluster = ClusterEngine::start(cfg.rules, kv, seal, clock, metrics.clone(), arbiter);
        Self::over(Backend::Cluster(cluster), cfg, clock, metrics)
    }

    fn over(backend: Backend, cfg: EngineConfig, clock: Clock, metrics: Metrics) -> Self {
        Self(Arc::new(Policy {
            backend,
            clock,
            metrics,
            live_max: cfg.live_attempts_max,
            holds: Arc::new(Semaphore::new(cfg.long_polls_max)),
            closing: watch::Sender::new(false),
        }))
    }

    pub fn clock(&self) -> Clock {
        self.0.clock
    }

    /// The backend, for the tests that look behind the handle.
    #[cfg(test)]
    pub(crate) fn backend(&self) -> &Backend {
        &self.0.backend
    }

    /// A new attempt in `loop` for `app`, living `ttl`; answered once it is stored.
    /// `Overloaded` at the live-attempt cap.
    pub async fn create(&self, app: &str, ttl: Duration) -> Result<Created, EngineError> {
        self.create_for(app, ttl, ids::PollKind::Direct).await
    }

    /// A new attempt whose answers go to `kind` (see [`PollKind`]).
    pub async fn create_for(&self, app: &str, ttl: Duration, kind: ids::PollKind) -> Result<Created, EngineError> {
        self.create_by(app, ttl, kind, None).await
    }

    /// A new attempt asked for by `requester` (kept with it: the confirmation on the
    /// phone shows it, operators see it).
    pub async fn create_by(
        &self,
        app: &str,
        ttl: Duration,
        kind: ids::PollKind,
        requester: Option<Requester>,
    ) -> Result<Created, EngineError> {
        self.create_with(NewAttempt { app: app.to_string(), ttl, kind, requester, scene: None }).await
    }

    /// A new attempt as `new` says; with a scene (code mode) `SceneTaken` when the app
    /// has a live or recently ended attempt of that scene, on any node.
    pub async fn create_with(&self, new: NewAttempt) -> Result<Created, EngineError> {
        if self.0.backend.live() >= self.0.live_max {
            return Err(EngineError::Overloaded);
        }
        self.0.backend.create(new).await
    }

    /// Feeds `event` (a confirmation or a denial) to the attempt whose confirmation
    /// ticket hashes to `ticket`; `None` if there is none.
    pub async fn apply_ticket(&self, ticket: &[u8; 32], event: Event) -> Result<Option<Outcome>, EngineError> {
        self.0.backend.apply_ticket(ticket, event).await
    }

    /// The attempt whose confirmation ticket hashes to `ticket`, with its detail.
    pub async fn peek_ticket(&self, ticket: &[u8; 32]) -> Result<Option<Outcome>, EngineError> {
        self.0.backend.peek_ticket(ticket).await
    }

    /// Feeds `event` to the attempt polled by `poll`; an unknown one answers expired.
    pub async fn apply(&self, poll: &PollId, event: Event) -> Result<Outcome, EngineError> {
        self.0.backend.apply(poll, event).await
    }

    /// Feeds `event` to the attempt of (`app`, `scene`); `None` if there is none.
    pub async fn apply_scene(&self, app: &str, scene: &Scene, event: Event) -> Result<Option<Outcome>, EngineError> {
        self.0.backend.apply_scene(app, scene, event).await
    }

    /// The attempt's state and detail, unchanged; an unknown one answers expired.
    pub async fn peek(&self, poll: &PollId) -> Result<Outcome, EngineError> {
        self.0.backend.peek(poll).await
    }

    /// The status poll. In `reg` this takes the token (once, across every node). With a
    /// `wait`, a `loop` (or `scanned`) attempt is held until it changes, its deadline or
    /// `wait` passes, or the server shuts down; without a permit left (or with the
    /// attempt's waiters full) it answers at once instead.
    pub async fn poll(&self, poll: &PollId, wait: Duration) -> Result<Outcome, EngineError> {
        let short = wait.is_zero() || self.is_closing();
        // Only a poll that waits gets a watcher: the short poll, the commonest request,
        // costs one read; a long one registers its waiter before its first read.
        let mut watcher = self.watcher(poll);
        let until = Instant::now() + wait;
        let first = if short {
            self.0.backend.apply(poll, Event::Claim).await?
        } else {
            loop {
                match watcher.claim_held().await {
                    Ok(first) => break first,
                    Err(e) if self.may_read_again(&e, until) => tokio::time::sleep(REREAD_PAUSE).await,
                    Err(e) => return Err(e),
                }
            }
        };
        if !first.phase.is_waiting() || short {
            self.0.metrics.poll(PollKind::Short);
            return Ok(first);
        }
        // The attempt holds no more waiters (or this node's views none): answer now.
        if !watcher.is_held() {
            self.0.metrics.poll(PollKind::Short);
            return Ok(first);
        }
        let Some(_permit) = self.hold_permit() else { return Ok(first) };
        self.0.metrics.poll(PollKind::Long);
        let _held = self.0.metrics.hold();
        loop {
            let read = async {
                let woken = watcher.changed(first.phase, Some(until)).await?;
                Ok::<_, EngineError>((woken, watcher.claim().await?))
            };
            let (woken, now) = match read.await {
                Ok(read) => read,
                Err(e) if self.may_read_again(&e, until) => {
                    tokio::time::sleep(REREAD_PAUSE).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            // Still where it was after a wake-up that changed nothing (a lost pub/sub
            // connection): hold again until the poll's own limit.
            if now.phase != first.phase || woken == Woken::NotHeld || Instant::now() >= until || self.is_closing() {
                return Ok(now);
            }
        }
    }

    /// Whether a long poll whose read failed with `e` reads again (after
    /// [`REREAD_PAUSE`]) instead of answering it: the store failed it (a Redis Cluster
    /// slot moving, a wedged connection being opened anew) while the poll still has
    /// time before `until`. The poll was promised its wait, not the first error in it;
    /// it answers the error when its time is up or the server shuts down.
    fn may_read_again(&self, e: &EngineError, until: Instant) -> bool {
        matches!(e, EngineError::Overloaded | EngineError::Unavailable)
            && Instant::now() + REREAD_PAUSE < until
            && !self.is_closing()
    }

    /// The states of the attempt polled by `poll`, one per change, for an event stream.
    /// It holds one of the node's held-poll permits while it lives (`Overloaded` when
    /// none is left).
    pub fn subscribe(&self, poll: &PollId) -> Result<Subscription, EngineError> {
        let permit = self.hold_permit().ok_or(EngineError::Overloaded)?;
        self.0.metrics.poll(PollKind::Long);
        Ok(Subscription::new(self.watcher(poll), permit, self.0.metrics.hold()))
    }

    fn watcher(&self, poll: &PollId) -> Watcher {
        Watcher::new(self.0.backend.clone(), poll.clone(), self.0.clock, self.0.closing.subscribe())
    }

    /// One of the node's held-poll permits (long polls and event streams share them);
    /// `None`, counted as a limit hit, when all are taken.
    fn hold_permit(&self) -> Option<OwnedSemaphorePermit> {
        let permit = self.0.holds.clone().try_acquire_owned().ok();
        if permit.is_none() {
            self.0.metrics.limit_hit(LimitKind::LongPollsMax);
        }
        permit
    }

    /// Whether [`LoginsHandle::close`] was called.
    pub fn is_closing(&self) -> bool {
        *self.0.closing.borrow()
    }

    /// Shutting down: every held poll answers now, new ones are not held.
    pub fn close(&self) {
        self.0.closing.send_replace(true);
    }

    /// Live attempts counted against this node's cap (cluster: made here, not yet over).
    pub fn live(&self) -> usize {
        self.0.backend.live()
    }

    /// Names this node for the attempts it makes (the admin API shows where one was
    /// made; a single node is always this one).
    pub fn name_node(&self, node: &str) {
        if let Backend::Cluster(e) = &self.0.backend {
            e.name_node(node);
        }
    }

    /// The admin API's listing: one page of live attempts (see [`super::admin`]).
    pub async fn admin_list(&self, filter: &Filter, cursor: Option<&str>, limit: usize) -> Result<Page, EngineError> {
        self.0.backend.list(filter, cursor, limit.clamp(1, super::admin::MAX_PAGE)).await
    }

    /// The admin API's look at one attempt.
    pub async fn admin_inspect(&self, id: AttemptId) -> Result<Option<AttemptInfo>, EngineError> {
        self.0.backend.inspect(id).await
    }

    /// The admin API's end: the attempt answers `expired` with `reason: ended` at once,
    /// to its held polls and streams too.
    pub async fn admin_end(&self, id: AttemptId) -> Result<Option<AttemptInfo>, EngineError> {
        self.0.backend.end(id).await
    }

    /// Whether the engine takes work (readiness).
    pub async fn responsive(&self) -> bool {
        self.0.backend.responsive().await
    }

    /// Starts restoring snapshots (single node); the engine counts as recovering from
    /// this call on. A cluster has nothing to restore.
    pub fn restore(&self) -> impl Future<Output = RestoreReport> + Send + 'static {
        self.0.backend.restore()
    }

    /// `Some(restored so far)` while a restore is under way.
    pub fn recovering(&self) -> Option<usize> {
        self.0.backend.recovering()
    }

    /// The store of the attempts as last seen (snapshot store, or the cluster's Redis).
    pub fn store_health(&self) -> Health {
        self.0.backend.health()
    }

    /// Waits until every submitted snapshot is stored, at most until `deadline`.
    pub async fn flush(&self, deadline: tokio::time::Instant) -> bool {
        self.0.backend.flush(deadline).await
    }
}
