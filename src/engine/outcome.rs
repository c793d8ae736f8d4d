//! The engine's vocabulary at its edge, shared by both engines and the handle: what a
//! caller configures, what it gets back, and what it gets instead.

use std::time::Duration;

use tokio::sync::oneshot;

use super::state::{Actions, AttemptState, Ending, Mark, Phase, Reply, Requester, Rules};
use crate::ids::{PollId, PollKind, Scene};

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
    /// The scene asked for (a code mode code's) belongs to a live or recently ended
    /// attempt of the app: the caller draws another code.
    #[error("the scene is taken")]
    SceneTaken,
}

/// What a new attempt is made of.
#[derive(Debug, Clone)]
pub struct NewAttempt {
    pub app: String,
    pub ttl: Duration,
    /// Whom its answers go to.
    pub kind: PollKind,
    /// Who asked for it (shown to the scanner, and to operators).
    pub requester: Option<Requester>,
    /// Code mode: the scene derived from the code (unique among the app's attempts, or
    /// [`EngineError::SceneTaken`]); `None`: a fresh random scene for a QR code.
    pub scene: Option<Scene>,
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
    /// Why an `expired` attempt ended, where it is still known (its `reason`).
    pub ending: Option<Ending>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detail {
    pub app: String,
    pub openid: Option<String>,
    /// Who asked for the login (the confirmation shows it to the scanner, the admin API
    /// to operators).
    pub requester: Option<Requester>,
    /// When it was made and first scanned (ms since the epoch), where known: the
    /// operator's view of its transitions.
    pub created_ms: Option<u64>,
    pub scanned_ms: Option<u64>,
    /// The phases it entered after `loop`: when, and where.
    pub trail: Vec<Mark>,
}

impl Detail {
    /// The detail of an attempt of `app` in `state`.
    pub fn of(app: &str, state: &AttemptState) -> Self {
        Self {
            app: app.to_string(),
            openid: state.openid.clone(),
            requester: state.requester.clone(),
            created_ms: state.created_ms,
            scanned_ms: state.scanned_ms,
            trail: state.trail.clone(),
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

    /// `expired` for this reason (an attempt that ended, read after its end).
    pub fn ended(ending: Option<Ending>) -> Self {
        Self { ending, ..Self::expired() }
    }

    /// A reply read from a live state with deadline `deadline_ms`, at `now_ms`.
    pub fn read(reply: Reply, phase: Phase, deadline_ms: u64, now_ms: u64) -> Self {
        let expires_in = deadline_ms.saturating_sub(now_ms).div_ceil(1000);
        Self { reply, actions: Actions::default(), phase, expires_in, deadline_ms, detail: None, ending: None }
    }

    /// A reply read from `state` at `now_ms` (its phase, deadline and ending).
    pub fn of_state(reply: Reply, state: &AttemptState, now_ms: u64) -> Self {
        Self { ending: state.ending, ..Self::read(reply, state.phase, state.expires_at_ms, now_ms) }
    }

    /// The `reason` of an `expired` answer, if it has one.
    pub fn reason(&self) -> Option<&'static str> {
        if self.phase == Phase::Expired { self.ending.and_then(Ending::reason) } else { None }
    }
}

/// A waiter registered on an attempt: the state read after registering it (`None`: no
/// such attempt) and the receiver that resolves on its next change — `None` when the
/// attempt held no waiter (its list is full): read again now.
pub type Watched = (Option<Outcome>, Option<oneshot::Receiver<()>>);
