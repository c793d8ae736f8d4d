//! The engine's backends and the one place that dispatches to them: the primitives the
//! policy in [`super::LoginsHandle`] is built on.
//!
//! - [`LocalEngine`]: one process — a registry actor, an actor per acting attempt, idle
//!   attempts as records of a shared table, snapshots through the persistence seam.
//! - [`ClusterEngine`]: many nodes on one Redis — versioned records changed by
//!   compare-and-set, wake-ups over pub/sub into this node's views.
//!
//! Both run the same pure `step()`. A primitive does one thing to one attempt; what is
//! answered around it (holding polls, permits, caps, closing, deadlines) is the handle's.
//! An enum rather than a trait object: two known backends, no boxed future per call on
//! the poll path.

use futures_util::future::Either;

use super::admin::{AttemptId, AttemptInfo, Filter, Page};
use super::cluster::ClusterEngine;
use super::local::LocalEngine;
use super::outcome::{Created, EngineError, NewAttempt, Outcome, Watched};
use super::persist::Health;
use super::recovery::RestoreReport;
use super::state::Event;
use crate::ids::{PollId, Scene};

#[derive(Clone)]
pub enum Backend {
    Local(LocalEngine),
    Cluster(ClusterEngine),
}

impl Backend {
    /// A new attempt in `loop` for `app`, living `ttl`; answered once it is stored.
    pub async fn create(&self, new: NewAttempt) -> Result<Created, EngineError> {
        match self {
            Backend::Local(e) => e.create(new).await,
            Backend::Cluster(e) => e.create(new).await,
        }
    }

    /// Feeds `event` to the attempt whose confirmation ticket hashes to `ticket`; `None`
    /// if there is none (never was, or it ended).
    pub async fn apply_ticket(&self, ticket: &[u8; 32], event: Event) -> Result<Option<Outcome>, EngineError> {
        match self {
            Backend::Local(e) => e.apply_ticket(ticket, event).await,
            Backend::Cluster(e) => e.apply_ticket(ticket, event).await,
        }
    }

    /// The attempt whose confirmation ticket hashes to `ticket`, unchanged, with its detail.
    pub async fn peek_ticket(&self, ticket: &[u8; 32]) -> Result<Option<Outcome>, EngineError> {
        match self {
            Backend::Local(e) => e.peek_ticket(ticket).await,
            Backend::Cluster(e) => e.peek_ticket(ticket).await,
        }
    }

    /// Feeds `event` to the attempt polled by `poll`; an unknown one answers expired.
    pub async fn apply(&self, poll: &PollId, event: Event) -> Result<Outcome, EngineError> {
        match self {
            Backend::Local(e) => e.apply(poll, event).await,
            Backend::Cluster(e) => e.apply(poll, event).await,
        }
    }

    /// Feeds `event` to the live attempt of (`app`, `scene`); `None` if there is none.
    pub async fn apply_scene(&self, app: &str, scene: &Scene, event: Event) -> Result<Option<Outcome>, EngineError> {
        match self {
            Backend::Local(e) => e.apply_scene(app, scene, event).await,
            Backend::Cluster(e) => e.apply_scene(app, scene, event).await,
        }
    }

    /// The attempt's state and its detail, unchanged; an unknown one answers expired.
    pub async fn peek(&self, poll: &PollId) -> Result<Outcome, EngineError> {
        match self {
            Backend::Local(e) => e.peek(poll).await,
            Backend::Cluster(e) => e.peek(poll).await,
        }
    }

    /// Registers a waiter on the attempt, then reads it (a change after the read wakes
    /// the waiter; one before it shows in the state read).
    pub async fn watch(&self, poll: &PollId) -> Result<Watched, EngineError> {
        match self {
            Backend::Local(e) => e.watch(poll).await,
            Backend::Cluster(e) => e.watch(poll).await,
        }
    }

    /// Registers a waiter on the attempt, then claims (in `reg` that takes the token): a
    /// change after the claim's read wakes the waiter (`None`: not held). A held poll's
    /// first read, which is then also the read a registration needs.
    pub async fn claim_watching(
        &self,
        poll: &PollId,
    ) -> Result<(Outcome, Option<tokio::sync::oneshot::Receiver<()>>), EngineError> {
        match self {
            Backend::Local(e) => {
                let (_, rx) = e.watch(poll).await?;
                Ok((e.apply(poll, Event::Claim).await?, rx))
            }
            Backend::Cluster(e) => e.claim_watching(poll).await,
        }
    }

    /// One page of the live attempts `filter` admits, from `cursor` (a position the
    /// engine gave out, see [`super::admin::cursor_position`]).
    pub async fn list(&self, filter: &Filter, cursor: Option<&str>, limit: usize) -> Result<Page, EngineError> {
        match self {
            Backend::Local(e) => e.list(filter, cursor, limit).await,
            Backend::Cluster(e) => e.list(filter, cursor, limit).await,
        }
    }

    /// What an operator sees of the attempt `id` (`None`: none).
    pub async fn inspect(&self, id: AttemptId) -> Result<Option<AttemptInfo>, EngineError> {
        match self {
            Backend::Local(e) => e.inspect(id).await,
            Backend::Cluster(e) => e.inspect(id).await,
        }
    }

    /// Ends the live attempt `id` for an operator (`None`: no live attempt).
    pub async fn end(&self, id: AttemptId) -> Result<Option<AttemptInfo>, EngineError> {
        match self {
            Backend::Local(e) => e.end(id).await,
            Backend::Cluster(e) => e.end(id).await,
        }
    }

    /// Live attempts counted against this node's cap (cluster: made here, not yet over).
    pub fn live(&self) -> usize {
        match self {
            Backend::Local(e) => e.live(),
            Backend::Cluster(e) => e.live(),
        }
    }

    /// Whether the engine takes work (single node: its registry answers). A cluster's
    /// engine is Redis, whose health is [`Backend::health`].
    pub async fn responsive(&self) -> bool {
        match self {
            Backend::Local(e) => e.responsive().await,
            Backend::Cluster(_) => true,
        }
    }

    /// The store of the attempts as last seen (snapshot store, or the cluster's Redis).
    pub fn health(&self) -> Health {
        match self {
            Backend::Local(e) => e.store_health(),
            Backend::Cluster(e) => e.store_health(),
        }
    }

    /// Starts restoring snapshots. A cluster has nothing to restore: Redis is its truth.
    pub fn restore(&self) -> impl Future<Output = RestoreReport> + Send + 'static {
        match self {
            Backend::Local(e) => Either::Left(e.restore()),
            Backend::Cluster(_) => Either::Right(std::future::ready(RestoreReport::default())),
        }
    }

    /// `Some(restored so far)` while a restore is under way.
    pub fn recovering(&self) -> Option<usize> {
        match self {
            Backend::Local(e) => e.recovering(),
            Backend::Cluster(_) => None,
        }
    }

    /// Waits until every submitted snapshot is stored, at most until `deadline`. A
    /// cluster writes each transition before answering: nothing is ever pending.
    pub async fn flush(&self, deadline: tokio::time::Instant) -> bool {
        match self {
            Backend::Local(e) => e.flush(deadline).await,
            Backend::Cluster(_) => true,
        }
    }

    #[cfg(test)]
    pub fn as_local(&self) -> Option<&LocalEngine> {
        match self {
            Backend::Local(e) => Some(e),
            Backend::Cluster(_) => None,
        }
    }

    #[cfg(test)]
    pub fn as_cluster(&self) -> Option<&ClusterEngine> {
        match self {
            Backend::Local(_) => None,
            Backend::Cluster(e) => Some(e),
        }
    }
}
