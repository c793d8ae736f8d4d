//! The login engine: one actor per attempt, a registry that routes to them, a pure
//! state machine they execute, and the async handle everything else calls. Attempts
//! are snapshotted before every answer and restored on start (`recovery`).

mod attempt;
pub mod clock;
pub mod cluster;
mod handle;
mod labels;
mod local;
pub mod persist;
mod recovery;
mod registry;
pub mod state;
pub mod subscription;
mod table;

pub use attempt::{Detail, Outcome};
pub use clock::Clock;
pub use cluster::ClusterEngine;
pub use handle::{EngineConfig, LoginsHandle};
pub use local::LocalEngine;
pub use recovery::RestoreReport;
pub use registry::Created;
pub use state::{Ending, Event, Phase, Reply, Rules, UserRef};
pub use subscription::Subscription;

/// What the engine answers instead of an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The live-attempt cap is reached, or the registry's mailbox is full.
    #[error("the login engine is at capacity")]
    Overloaded,
    /// The answer depends on a state that could not be stored (a token whose consumed
    /// mark the snapshot store did not take), or the engine is still restoring.
    #[error("the login engine cannot answer durably right now")]
    Unavailable,
}

#[cfg(test)]
mod durability_tests;
#[cfg(test)]
pub(crate) mod tests;
