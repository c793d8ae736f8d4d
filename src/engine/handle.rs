//! `LoginsHandle`: the cloneable async façade over the engine — the one seam between
//! the login flow and whichever engine runs.
//!
//! Two engines sit behind it: [`LocalEngine`] (one process: a registry actor, an actor
//! per attempt, snapshots) and [`ClusterEngine`] (many nodes on one Redis: versioned
//! records changed by compare-and-set, local view actors for the polls held here).
//! Both run the same pure `step()`; nothing above this file knows which one answers.

use std::time::Duration;

use futures_util::future::Either;
use tokio::sync::{OwnedSemaphorePermit, oneshot};

use super::EngineError;
use super::attempt::Outcome;
use super::clock::Clock;
use super::cluster::ClusterEngine;
use super::local::LocalEngine;
use super::persist::Health;
use super::recovery::RestoreReport;
use super::registry::Created;
use super::state::{Event, Rules};
use super::subscription::Subscription;
use crate::ids::{PollId, Scene};

/// Settings of the engine itself.
#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    pub live_attempts_max: usize,
    pub long_polls_max: usize,
    pub rules: Rules,
}

#[derive(Clone)]
pub enum LoginsHandle {
    Local(LocalEngine),
    Cluster(ClusterEngine),
}

impl From<LocalEngine> for LoginsHandle {
    fn from(e: LocalEngine) -> Self {
        LoginsHandle::Local(e)
    }
}

impl From<ClusterEngine> for LoginsHandle {
    fn from(e: ClusterEngine) -> Self {
        LoginsHandle::Cluster(e)
    }
}

impl LoginsHandle {
    /// The single-node engine (see [`LocalEngine::start`]).
    pub fn start(
        cfg: EngineConfig,
        clock: Clock,
        metrics: crate::metrics::Metrics,
        persister: super::persist::Persister,
        arbiter: Option<&actix::ArbiterHandle>,
    ) -> Self {
        LocalEngine::start(cfg, clock, metrics, persister, arbiter).into()
    }

    pub fn clock(&self) -> Clock {
        match self {
            LoginsHandle::Local(e) => e.clock(),
            LoginsHandle::Cluster(e) => e.clock(),
        }
    }

    /// A new attempt in `loop` for `app`, living `ttl`; answered once it is stored.
    pub async fn create(&self, app: &str, ttl: Duration) -> Result<Created, EngineError> {
        match self {
            LoginsHandle::Local(e) => e.create(app, ttl).await,
            LoginsHandle::Cluster(e) => e.create(app, ttl).await,
        }
    }

    /// Feeds `event` to the attempt polled by `poll`; an unknown one answers expired.
    pub async fn apply(&self, poll: &PollId, event: Event) -> Result<Outcome, EngineError> {
        match self {
            LoginsHandle::Local(e) => e.apply(poll, event).await,
            LoginsHandle::Cluster(e) => e.apply(poll, event).await,
        }
    }

    /// Feeds `event` to the attempt of (`app`, `scene`); `None` if there is none.
    pub async fn apply_scene(&self, app: &str, scene: &Scene, event: Event) -> Result<Option<Outcome>, EngineError> {
        match self {
            LoginsHandle::Local(e) => e.apply_scene(app, scene, event).await,
            LoginsHandle::Cluster(e) => e.apply_scene(app, scene, event).await,
        }
    }

    /// The status poll. In `reg` this takes the token (once, across every node). With a
    /// `wait`, a `loop` attempt is held until it changes, `wait` passes, or the server
    /// shuts down; when the server-wide hold cap is reached it answers at once instead.
    pub async fn poll(&self, poll: &PollId, wait: Duration) -> Result<Outcome, EngineError> {
        match self {
            LoginsHandle::Local(e) => e.poll(poll, wait).await,
            LoginsHandle::Cluster(e) => e.poll(poll, wait).await,
        }
    }

    /// The states of the attempt polled by `poll`, one per change, for an event stream.
    /// It holds one of the node's held-poll permits while it lives (`Overloaded` when
    /// none is left).
    pub fn subscribe(&self, poll: &PollId) -> Result<Subscription, EngineError> {
        let permit = self.hold_permit().ok_or(EngineError::Overloaded)?;
        let metrics = match self {
            LoginsHandle::Local(e) => e.metrics(),
            LoginsHandle::Cluster(e) => e.metrics(),
        };
        metrics.poll(crate::metrics::labels::PollKind::Long);
        let held = metrics.hold();
        Ok(Subscription::new(self.clone(), poll.clone(), permit, held))
    }

    /// One of the node's held-poll permits (long polls and event streams share them);
    /// `None`, counted as a limit hit, when all are taken.
    pub(super) fn hold_permit(&self) -> Option<OwnedSemaphorePermit> {
        match self {
            LoginsHandle::Local(e) => e.hold_permit(),
            LoginsHandle::Cluster(e) => e.hold_permit(),
        }
    }

    /// Registers a waiter on the attempt: the receiver resolves on its next change (on
    /// any node). The attempt's state at registration comes with it (`None`: gone).
    pub(super) async fn watch(&self, poll: &PollId) -> Result<(Option<Outcome>, oneshot::Receiver<()>), EngineError> {
        match self {
            LoginsHandle::Local(e) => e.watch(poll).await,
            LoginsHandle::Cluster(e) => e.watch(poll).await,
        }
    }

    /// Whether [`LoginsHandle::close`] was called.
    pub fn is_closing(&self) -> bool {
        match self {
            LoginsHandle::Local(e) => e.is_closing(),
            LoginsHandle::Cluster(e) => e.is_closing(),
        }
    }

    /// Resolves once the server shuts down.
    pub(super) async fn closed(&self) {
        match self {
            LoginsHandle::Local(e) => e.closed().await,
            LoginsHandle::Cluster(e) => e.closed().await,
        }
    }

    /// The attempt's state and detail, unchanged; an unknown one answers expired.
    pub async fn peek(&self, poll: &PollId) -> Result<Outcome, EngineError> {
        match self {
            LoginsHandle::Local(e) => e.peek(poll).await,
            LoginsHandle::Cluster(e) => e.peek(poll).await,
        }
    }

    /// Live attempts this node knows of (cluster: created here and not yet expired).
    pub async fn live(&self) -> Result<usize, EngineError> {
        match self {
            LoginsHandle::Local(e) => e.live().await,
            LoginsHandle::Cluster(e) => e.live().await,
        }
    }

    /// Starts restoring snapshots (single node). Redis is the truth of a cluster: there
    /// is nothing to restore.
    pub fn restore(&self) -> impl Future<Output = RestoreReport> + Send + 'static {
        match self {
            LoginsHandle::Local(e) => Either::Left(e.restore()),
            LoginsHandle::Cluster(_) => Either::Right(std::future::ready(RestoreReport::default())),
        }
    }

    /// `Some(restored so far)` while a restore is under way.
    pub fn recovering(&self) -> Option<usize> {
        match self {
            LoginsHandle::Local(e) => e.recovering(),
            LoginsHandle::Cluster(_) => None,
        }
    }

    /// The store of the attempts as last seen (snapshot store, or the cluster's Redis).
    pub fn store_health(&self) -> Health {
        match self {
            LoginsHandle::Local(e) => e.store_health(),
            LoginsHandle::Cluster(e) => e.store_health(),
        }
    }

    /// Shutting down: every held poll answers now, new ones are not held.
    pub fn close(&self) {
        match self {
            LoginsHandle::Local(e) => e.close(),
            LoginsHandle::Cluster(e) => e.close(),
        }
    }

    /// Waits until every submitted snapshot is stored, at most until `deadline` (a
    /// cluster writes each transition before answering: nothing is pending).
    pub async fn flush(&self, deadline: tokio::time::Instant) -> bool {
        match self {
            LoginsHandle::Local(e) => e.flush(deadline).await,
            LoginsHandle::Cluster(_) => true,
        }
    }

    /// Plants a panic in the attempt's actor (the supervision test; single node).
    #[cfg(test)]
    pub async fn crash(&self, poll: &PollId) -> Result<Option<Outcome>, EngineError> {
        match self {
            LoginsHandle::Local(e) => e.crash(poll).await,
            LoginsHandle::Cluster(_) => Ok(None),
        }
    }

    /// How many attempts have a running actor (the others are idle records).
    #[cfg(test)]
    pub async fn active_actors(&self) -> usize {
        match self {
            LoginsHandle::Local(e) => e.active_actors().await,
            LoginsHandle::Cluster(_) => 0,
        }
    }
}
