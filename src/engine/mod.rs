//! The login engine: one actor per attempt, a registry that routes to them, a pure
//! state machine they execute, and the async handle everything else calls. Attempts
//! are snapshotted before every answer and restored on start (`recovery`).

pub mod attempt;
pub mod clock;
pub mod handle;
pub mod recovery;
pub mod registry;
pub mod state;
pub mod subscription;

pub use attempt::{Detail, Outcome};
pub use clock::Clock;
pub use handle::{EngineConfig, EngineError, LoginsHandle};
pub use recovery::RestoreReport;
pub use registry::Created;
pub use state::{Ending, Event, Phase, Reply, Rules, UserRef};
pub use subscription::Subscription;

#[cfg(test)]
mod durability_tests;
#[cfg(test)]
mod tests;
