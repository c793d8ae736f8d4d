//! Event streams behind the login service. A stream is a held long poll for as long as
//! it lives, under the same policy as a held status poll: one of the address's held-poll
//! slots (see [`LoginService::hold_slot`]) and one of the engine's server-wide permits.
//! What it tells are the statuses a poll would answer, a token included (issued and
//! audited by [`LoginService::answer`]).

use std::sync::Arc;

use super::{LoginService, LoginStatus};
use crate::engine::{EngineError, Subscription};
use crate::error::ApiError;
use crate::ids::PollId;
use crate::limits::HoldSlot;
use crate::net::ClientInfo;

/// `Retry-After` of a stream refused for the address's held-poll cap. Held streams end
/// when their attempt does (minutes away), so asking again within a second is pointless.
const HELD_RETRY_AFTER_SECS: u64 = 5;

/// One open stream of an attempt's statuses; it holds its slot until dropped.
pub struct StatusEvents {
    login: Arc<LoginService>,
    sub: Subscription,
    client: ClientInfo,
    poll: PollId,
    _slot: HoldSlot,
}

impl LoginService {
    /// `GET /api/v1/login/events`: the current status, and the stream of the later ones.
    /// A status poll over the address's share is answered at once instead of held; a
    /// stream, which cannot be answered at once, is refused.
    pub async fn events(
        self: &Arc<Self>,
        poll: &PollId,
        client: ClientInfo,
    ) -> Result<(LoginStatus, StatusEvents), ApiError> {
        let slot = self.hold_slot(&client).ok_or_else(|| ApiError::RateLimited {
            what: "too many held polls and event streams from this address".into(),
            retry_after_secs: HELD_RETRY_AFTER_SECS,
        })?;
        let mut sub = self.engine.subscribe(poll)?;
        let first = sub.next().await?.ok_or_else(|| ApiError::internal("a new subscription tells nothing"))?;
        let first = self.answer(poll, first, &client).await;
        Ok((first, StatusEvents { login: Arc::clone(self), sub, client, poll: poll.clone(), _slot: slot }))
    }
}

impl StatusEvents {
    /// Whether the stream is over: nothing more will be told.
    pub fn finished(&self) -> bool {
        self.sub.finished()
    }

    /// Waits until the attempt may have changed, or the server shuts down. Cancel-safe,
    /// so it can race a heartbeat timer.
    pub async fn changed(&mut self) -> Result<(), EngineError> {
        self.sub.changed().await
    }

    /// The status to tell now, if any (`None`: nothing new). Never race it against a
    /// timer: in `reg` it claims the token.
    pub async fn next(&mut self) -> Result<Option<LoginStatus>, EngineError> {
        match self.sub.next().await? {
            Some(o) => Ok(Some(self.login.answer(&self.poll, o, &self.client).await)),
            None => Ok(None),
        }
    }
}
