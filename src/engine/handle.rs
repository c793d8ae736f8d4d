//! `LoginsHandle`: the cloneable async façade over the engine.
//!
//! HTTP and callback code call these methods and never see `Addr`, `send` or
//! `MailboxError`: a registry that cannot take a message within the send budget
//! surfaces as [`EngineError::Overloaded`], an unknown or ended attempt as `expired`.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::{Semaphore, oneshot};

use super::attempt::{Cmd, Outcome};
use super::clock::Clock;
use super::registry::{CountLive, Create, Created, Registry, Route, Target};
use super::state::{Event, Phase, Rules};
use crate::ids::{PollId, Scene};
use crate::metrics::Metrics;

/// The longest a caller waits for the registry to accept a message.
const SEND_BUDGET: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The live-attempt cap is reached, or the registry's mailbox is full.
    #[error("the login engine is at capacity")]
    Overloaded,
}

/// Settings of the engine itself.
#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    pub live_attempts_max: usize,
    pub long_polls_max: usize,
    pub rules: Rules,
}

#[derive(Clone)]
pub struct LoginsHandle {
    registry: Addr<Registry>,
    clock: Clock,
    /// Permits for held long polls, server-wide.
    holds: Arc<Semaphore>,
    metrics: Metrics,
}

impl LoginsHandle {
    /// Starts the registry on `arbiter` (a dedicated thread in production; the current
    /// one in tests, so tokio's paused clock drives the timers).
    pub fn start(cfg: EngineConfig, clock: Clock, metrics: Metrics, arbiter: Option<&ArbiterHandle>) -> Self {
        let registry = Registry::new(cfg.live_attempts_max, cfg.rules, clock, metrics.clone());
        let registry = match arbiter {
            Some(a) => Registry::start_in_arbiter(a, move |_| registry),
            None => registry.start(),
        };
        Self { registry, clock, holds: Arc::new(Semaphore::new(cfg.long_polls_max)), metrics }
    }

    pub fn clock(&self) -> Clock {
        self.clock
    }

    async fn ask<M>(&self, msg: M) -> Result<M::Result, EngineError>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        Registry: Handler<M>,
    {
        match tokio::time::timeout(SEND_BUDGET, self.registry.send(msg)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) | Err(_) => Err(EngineError::Overloaded),
        }
    }

    /// A new attempt in `loop` for `app`, living `ttl`.
    pub async fn create(&self, app: &str, ttl: Duration) -> Result<Created, EngineError> {
        let created = self
            .ask(Create { app: app.to_string(), ttl_ms: ttl.as_millis() as u64 })
            .await?
            .ok_or(EngineError::Overloaded)?;
        Ok(created)
    }

    /// Feeds `event` to the attempt polled by `poll`; an unknown one answers expired.
    pub async fn apply(&self, poll: &PollId, event: Event) -> Result<Outcome, EngineError> {
        let r = self.ask(Route { target: Target::Poll(poll.clone()), cmd: Cmd::Apply(event) }).await?;
        Ok(r.unwrap_or_else(Outcome::expired))
    }

    /// Feeds `event` to the attempt of (`app`, `scene`); `None` if there is none.
    pub async fn apply_scene(&self, app: &str, scene: &Scene, event: Event) -> Result<Option<Outcome>, EngineError> {
        self.ask(Route { target: Target::Scene { app: app.to_string(), scene: scene.clone() }, cmd: Cmd::Apply(event) })
            .await
    }

    /// The status poll. In `reg` this takes the token (once). With a `wait`, a `loop`
    /// attempt is held until it changes or `wait` passes; when the server-wide hold
    /// cap is reached the poll answers at once instead.
    pub async fn poll(&self, poll: &PollId, wait: Duration) -> Result<Outcome, EngineError> {
        let first = self.apply(poll, Event::Claim).await?;
        if first.phase != Phase::Loop || wait.is_zero() {
            self.metrics.poll("short");
            return Ok(first);
        }
        let Ok(_permit) = self.holds.clone().try_acquire_owned() else {
            self.metrics.limit_hit("long_polls_max");
            return Ok(first);
        };
        self.metrics.poll("long");
        let _held = self.metrics.hold();
        let (tx, rx) = oneshot::channel();
        let seen = self.ask(Route { target: Target::Poll(poll.clone()), cmd: Cmd::Watch(tx) }).await?;
        if seen.is_some_and(|o| o.phase == Phase::Loop) {
            // Woken by a change (the sender dropped) or timed out: either way re-read.
            let _ = tokio::time::timeout(wait, rx).await;
        }
        self.apply(poll, Event::Claim).await
    }

    /// The attempt's state and detail, unchanged; an unknown one answers expired.
    pub async fn peek(&self, poll: &PollId) -> Result<Outcome, EngineError> {
        let r = self.ask(Route { target: Target::Poll(poll.clone()), cmd: Cmd::Peek }).await?;
        Ok(r.unwrap_or_else(Outcome::expired))
    }

    /// Live attempts right now.
    pub async fn live(&self) -> Result<usize, EngineError> {
        self.ask(CountLive).await
    }
}
