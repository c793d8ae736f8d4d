//! The engine's vocabulary at its edge, shared by both engines and the handle: what a
//! caller configures, what it gets back, and what it gets instead.

use tokio::sync::oneshot;

use super::state::{Actions, Ending, Phase, Reply, Rules};
use crate::ids::{PollId, Scene};

/// Settings of the engine itself.
#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    pub live_attempts_max: usize,
    pub long_polls_max: usize,
    pub rules: Rules,
}

/// What the engine answers instead of an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The live-attempt cap is reached, or the engine cannot take more work right now.
    #[error("the login engine is at capacity")]
    Overloaded,
    /// The answer depends on a state that could not be stored (a token whose consumed
    /// mark the store did not take), or the engine is still restoring.
    #[error("the login engine cannot answer durably right now")]
    Unavailable,
}

/// A fresh attempt's public identity.
#[derive(Debug, Clone)]
pub struct Created {
    pub poll: PollId,
    pub scene: Scene,
    pub expires_at_ms: u64,
}

/// What callers learn after any command: the reply and the state it left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub reply: Reply,
    /// What the step that answered did (nothing for a read): the caller performs the
    /// parts that live outside the engine, such as sending the code.
    pub actions: Actions,
    pub phase: Phase,
    /// Seconds left, rounded up (0 once over).
    pub expires_in: u64,
    /// The attempt's deadline (ms since the epoch; 0 once over): a held poll's view of
    /// the attempt wakes at it.
    pub deadline_ms: u64,
    /// Filled by a peek, a scan's answer and token replies: who scanned, and the app.
    pub detail: Option<Detail>,
    /// Why an `expired` attempt ended, where the engine still knows (its `reason`).
    pub ending: Option<Ending>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detail {
    pub app: String,
    pub openid: Option<String>,
    /// When it was made and first scanned (ms since the epoch), where known: the
    /// operator's view of its transitions.
    pub created_ms: Option<u64>,
    pub scanned_ms: Option<u64>,
}

impl Detail {
    /// The detail of an attempt of `app` in `state`.
    pub fn of(app: &str, state: &super::state::AttemptState) -> Self {
        Self {
            app: app.to_string(),
            openid: state.openid.clone(),
            created_ms: state.created_ms,
            scanned_ms: state.scanned_ms,
        }
    }
}

impl Outcome {
    pub fn expired() -> Self {
        Self {
            reply: Reply::Expired,
            actions: Actions::default(),
            phase: Phase::Expired,
            expires_in: 0,
            deadline_ms: 0,
            detail: None,
            ending: None,
        }
    }

    /// An attempt that is over for `why`.
    pub fn ended(why: Option<Ending>) -> Self {
        Self { ending: why, ..Self::expired() }
    }

    /// A reply read from a live state with deadline `deadline_ms`, at `now_ms`.
    pub fn read(reply: Reply, phase: Phase, deadline_ms: u64, now_ms: u64) -> Self {
        let expires_in = deadline_ms.saturating_sub(now_ms).div_ceil(1000);
        Self { reply, actions: Actions::default(), phase, expires_in, deadline_ms, detail: None, ending: None }
    }
}

/// A waiter registered on an attempt: the state read after registering it (`None`: no
/// such attempt) and the receiver that resolves on its next change — `None` when the
/// attempt held no waiter (its list is full): read again now.
pub type Watched = (Option<Outcome>, Option<oneshot::Receiver<()>>);
