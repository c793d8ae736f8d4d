//! The login engine: a pure state machine, two backends that run it (one process, or many
//! nodes on Redis), and the async handle everything else calls, which keeps the policy
//! both share.
//!
//! # Layout
//! - [`state`]: the pure `step()` — phases, events, replies, actions.
//! - `handle` ([`LoginsHandle`]): the policy around it — caps, held polls, closing;
//!   `subscription`: the one loop that waits on an attempt (polls and streams);
//!   `commit`: what is counted when an attempt is made or changed; `waiters`: the held
//!   polls of one attempt and their cap; `outcome`: what callers get back.
//! - `backend`: the primitives both engines offer, and the one dispatch to them.
//! - The single-node engine: `local`, `registry` (routing, supervision, idle expiry),
//!   `table` (the live attempts, idle ones as records), `attempt` (one actor per acting
//!   attempt), `recovery` and `recovering` (the restore at start), [`persist`] (the
//!   snapshot seam the stores of `crate::store` implement).
//! - [`cluster`]: the cluster engine — versioned records in Redis changed by
//!   compare-and-set, wake-ups over pub/sub into each node's views.

pub mod admin;
mod attempt;
pub(crate) mod backend;
pub mod clock;
pub mod cluster;
mod commit;
mod handle;
mod labels;
mod local;
mod outcome;
pub mod persist;
mod recovering;
mod recovery;
mod registry;
mod retired;
pub mod state;
pub mod subscription;
mod table;
mod tombstones;
mod waiters;

pub use clock::Clock;
pub use cluster::ClusterEngine;
pub use handle::LoginsHandle;
pub use local::LocalEngine;
pub use outcome::{Created, Detail, EngineConfig, EngineError, NewAttempt, Outcome};
pub use recovery::RestoreReport;
pub use state::{Ending, Event, Mark, Phase, Reply, Requester, Rules, UserRef};
pub use subscription::Subscription;

#[cfg(test)]
mod conformance;
#[cfg(test)]
mod durability_tests;
#[cfg(test)]
pub(crate) mod tests;
