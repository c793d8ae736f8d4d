//! The single-node engine behind [`super::LoginsHandle`]: the registry actor and one
//! actor per attempt in this process, snapshotted to the configured store.
//!
//! Callers never see `Addr`, `send` or `MailboxError`: a registry that does not answer a
//! message within the writer's ack budget (plus a margin) surfaces as
//! [`EngineError::Overloaded`], an unknown or ended attempt as `expired`, a transition
//! that could not be made durable where it must be as [`EngineError::Unavailable`].

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::admin::{AttemptId, AttemptInfo, Filter, Page};
use super::attempt::Cmd;
use super::clock::Clock;
use super::outcome::{Created, EngineError, NewAttempt, Outcome, Watched};
use super::persist::{Health, Persister};
use super::recovering::Recovery;
use super::recovery::{self, RestoreReport};
use super::registry::{Create, Ping, Registry, RewriteAll, Route, Target};
use super::state::{Ending, Event, Phase, Rules};
use super::table::LiveTable;
use crate::ids::{LoginMode, PollId, Scene};
use crate::metrics::Metrics;

/// How much longer than the snapshot writer's ack budget a caller waits for the
/// registry's answer (the message's wait in the mailbox, and the step itself).
const ASK_MARGIN: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct LocalEngine {
    registry: Addr<Registry>,
    /// The registry's table: a read of an idle attempt is answered from here, on the
    /// caller's thread; everything else goes to the registry.
    table: Arc<LiveTable>,
    rules: Rules,
    clock: Clock,
    metrics: Metrics,
    persister: Persister,
    recovery: Arc<Recovery>,
}

/// Slots of the table read per hold of its lock by the admin listing and lookup.
const SLICE: u32 = 1024;

impl LocalEngine {
    /// Starts the registry on `arbiter` (a dedicated thread in production; the current
    /// one in tests, so tokio's paused clock drives the timers). Whenever the snapshot
    /// store may have missed writes, every live attempt submits its state again.
    pub fn start(
        rules: Rules,
        clock: Clock,
        metrics: Metrics,
        persister: Persister,
        arbiter: Option<&ArbiterHandle>,
    ) -> Self {
        let recovery = Arc::new(Recovery::new());
        let registry = Registry::new(rules, clock, metrics.clone(), persister.clone(), recovery.clone());
        let table = registry.table();
        let registry = match arbiter {
            Some(a) => Registry::start_in_arbiter(a, move |_| registry),
            None => registry.start(),
        };
        let weak = registry.downgrade();
        persister.on_store_back(move || {
            if let Some(r) = weak.upgrade() {
                r.do_send(RewriteAll);
            }
        });
        Self { registry, table, rules, clock, metrics, persister, recovery }
    }

    async fn ask<M>(&self, msg: M) -> Result<M::Result, EngineError>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        Registry: Handler<M>,
    {
        // The answer to a step may wait for its snapshot: up to the writer's ack budget,
        // which outlasts one store call, so a store that hangs is marked down and the
        // step answered in degraded mode; a shorter wait would answer `overloaded` before
        // degraded mode could come.
        let budget = self.persister.config().ack_budget + ASK_MARGIN;
        match tokio::time::timeout(budget, self.registry.send(msg)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) | Err(_) => Err(EngineError::Overloaded),
        }
    }

    async fn route(&self, target: Target, cmd: Cmd) -> Result<Option<Outcome>, EngineError> {
        self.ask(Route::new(target, cmd)).await?
    }

    /// A new attempt in `loop` for `app`, living `ttl`; answered once its snapshot is
    /// stored (or the store is known down), else `Overloaded`.
    pub async fn create(&self, new: NewAttempt) -> Result<Created, EngineError> {
        self.ask(Create(new)).await?
    }

    /// The answer for `poll` when no attempt of it is listed: `expired`, with the reason
    /// it ended for while that is still told.
    fn gone(&self, poll: &PollId) -> Outcome {
        Outcome::ended(self.table.lock().ended(poll, self.clock.now_ms()))
    }

    /// Feeds `event` to the attempt polled by `poll`; an unknown one answers expired.
    pub async fn apply(&self, poll: &PollId, event: Event) -> Result<Outcome, EngineError> {
        let cmd = Cmd::Apply(event);
        if let Some(o) = self.read(poll, &cmd) {
            return Ok(o);
        }
        let r = self.route(Target::Poll(poll.clone()), cmd).await?;
        Ok(r.unwrap_or_else(|| self.gone(poll)))
    }

    /// The answer to `cmd` if it is a read of an idle attempt (a status poll of a `loop`
    /// attempt, a peek), taken from the table without a hop to the registry.
    fn read(&self, poll: &PollId, cmd: &Cmd) -> Option<Outcome> {
        self.table.read(poll, cmd, self.clock.now_ms(), &self.rules)
    }

    /// Feeds `event` to the attempt of (`app`, `scene`); `None` if there is none.
    pub async fn apply_scene(&self, app: &str, scene: &Scene, event: Event) -> Result<Option<Outcome>, EngineError> {
        self.route(Target::Scene { app: app.to_string(), scene: scene.clone() }, Cmd::Apply(event)).await
    }

    /// Registers a waiter on the attempt: the receiver resolves on its next change. The
    /// attempt's state at registration comes with it (`None`: no such attempt).
    pub(super) async fn watch(&self, poll: &PollId) -> Result<Watched, EngineError> {
        // An idle attempt holds it in the table, from this thread: no hop, no actor.
        if let Some((seen, rx)) = self.table.watch(poll, self.clock.now_ms(), &self.rules) {
            return Ok((Some(seen), rx));
        }
        let (tx, mut rx) = oneshot::channel();
        let seen = self.route(Target::Poll(poll.clone()), Cmd::Watch(tx)).await?;
        // An actor drops a waiter it cannot hold; one it held is woken only by a change,
        // which the next read shows. Either way a closed receiver means: read now.
        let held = rx.try_recv() != Err(oneshot::error::TryRecvError::Closed);
        Ok((seen, held.then_some(rx)))
    }

    /// The attempt's state and detail, unchanged; an unknown one answers expired.
    pub async fn peek(&self, poll: &PollId) -> Result<Outcome, EngineError> {
        if let Some(o) = self.read(poll, &Cmd::Peek) {
            return Ok(o);
        }
        let r = self.route(Target::Poll(poll.clone()), Cmd::Peek).await?;
        Ok(r.unwrap_or_else(|| self.gone(poll)))
    }

    /// Feeds `event` to the attempt whose confirmation ticket hashes to `ticket`; `None`
    /// if there is none.
    pub async fn apply_ticket(&self, ticket: &[u8; 32], event: Event) -> Result<Option<Outcome>, EngineError> {
        self.route(Target::Ticket(*ticket), Cmd::Apply(event)).await
    }

    /// The state and detail of the attempt whose ticket hashes to `ticket`, unchanged.
    pub async fn peek_ticket(&self, ticket: &[u8; 32]) -> Result<Option<Outcome>, EngineError> {
        self.route(Target::Ticket(*ticket), Cmd::Peek).await
    }

    /// What an operator sees of the live attempt `poll` (`None`: not live).
    async fn info(&self, poll: &PollId, mode: LoginMode) -> Result<Option<AttemptInfo>, EngineError> {
        let o = self.peek(poll).await?;
        Ok(o.detail.filter(|_| o.phase != Phase::Expired).map(|d| AttemptInfo {
            id: AttemptId::of(poll),
            app: d.app,
            phase: o.phase,
            ending: o.ending,
            created_ms: d.created_ms,
            scanned_ms: d.scanned_ms,
            trail: d.trail,
            expires_at_ms: o.deadline_ms,
            openid: d.openid,
            kind: poll.kind(),
            provider_key: super::admin::provider_key(poll),
            made_on: None,
            client_ip: d.requester.map(|r| r.ip),
            mode,
        }))
    }

    /// One page of the live attempts `filter` admits, in slot order from `cursor`.
    pub async fn list(&self, filter: &Filter, cursor: Option<&str>, limit: usize) -> Result<Page, EngineError> {
        let mut from = match cursor.map(|c| c.strip_prefix("l:").and_then(|n| n.parse().ok())) {
            None => 0u32,
            Some(Some(n)) => n,
            // Another engine's cursor (a node restarted in another mode): nothing after it.
            Some(None) => return Ok(Page::default()),
        };
        let mut page = Page::default();
        loop {
            let (listed, next) = self.table.lock().slice(from, SLICE);
            for l in listed {
                if filter.app.as_deref().is_some_and(|a| a != &*l.app) {
                    continue;
                }
                let info = match l.idle {
                    Some(i) => Some(AttemptInfo {
                        id: AttemptId::of(&l.poll),
                        app: l.app.to_string(),
                        phase: Phase::Loop,
                        ending: None,
                        created_ms: i.created_ms,
                        scanned_ms: None,
                        trail: Vec::new(),
                        expires_at_ms: i.expires_at_ms,
                        openid: None,
                        kind: l.poll.kind(),
                        provider_key: super::admin::provider_key(&l.poll),
                        made_on: None,
                        client_ip: l.client_ip.clone(),
                        mode: l.mode,
                    }),
                    None => self.info(&l.poll, l.mode).await?,
                };
                if let Some(info) = info.filter(|i| filter.admits(i)) {
                    page.attempts.push(info);
                    if page.attempts.len() >= limit {
                        page.next = Some(format!("l:{}", l.slot + 1));
                        return Ok(page);
                    }
                }
            }
            match next {
                Some(n) => from = n,
                None => return Ok(page),
            }
        }
    }

    /// The poll id of the live attempt `id`, looked up slice by slice (hashing outside
    /// the lock).
    fn find(&self, id: AttemptId) -> Option<(PollId, LoginMode)> {
        let mut from = 0;
        loop {
            let (listed, next) = self.table.lock().slice(from, SLICE);
            if let Some(l) = listed.into_iter().find(|l| AttemptId::of(&l.poll) == id) {
                return Some((l.poll, l.mode));
            }
            from = next?;
        }
    }

    /// The live attempt `id` (`None`: none).
    pub async fn inspect(&self, id: AttemptId) -> Result<Option<AttemptInfo>, EngineError> {
        match self.find(id) {
            Some((poll, mode)) => self.info(&poll, mode).await,
            None => Ok(None),
        }
    }

    /// Ends the live attempt `id` (`None`: none), waking its held polls and streams; its
    /// polls answer `reason: ended` until its deadline.
    pub async fn end(&self, id: AttemptId) -> Result<Option<AttemptInfo>, EngineError> {
        let Some((poll, mode)) = self.find(id) else { return Ok(None) };
        let Some(before) = self.info(&poll, mode).await? else { return Ok(None) };
        // The attempt's commit tombstones it with its ending before it wakes anyone, so
        // no poll woken by the end finds the record gone and the reason not yet told.
        let o = self.apply(&poll, Event::End).await?;
        if o.ending != Some(Ending::Ended) {
            return Ok(None);
        }
        Ok(Some(AttemptInfo { phase: o.phase, ending: o.ending, ..before }))
    }

    /// Whether the registry answers a message within the ask budget.
    pub async fn responsive(&self) -> bool {
        self.ask(Ping).await.is_ok()
    }

    /// Live attempts right now (read from the table, without a hop).
    pub fn live(&self) -> usize {
        self.table.lock().len()
    }

    /// Starts restoring the attempts of the snapshot store. The engine counts as
    /// recovering from this call on (not from the first poll of the future), so a server
    /// started right after never answers `expired` for an attempt still to come.
    pub fn restore(&self) -> impl Future<Output = RestoreReport> + 'static {
        self.recovery.begin();
        let (registry, persister, clock, metrics, recovery) =
            (self.registry.clone(), self.persister.clone(), self.clock, self.metrics.clone(), self.recovery.clone());
        async move { recovery::restore(registry, persister, clock, metrics, &recovery).await }
    }

    /// `Some(restored so far)` while a restore is under way.
    pub fn recovering(&self) -> Option<usize> {
        self.recovery.is_pending().then(|| self.recovery.restored())
    }

    /// The snapshot store as the writer last saw it.
    pub fn store_health(&self) -> Health {
        self.persister.health()
    }

    /// Plants a panic in the attempt's actor (the supervision test).
    #[cfg(test)]
    pub async fn crash(&self, poll: &PollId) -> Result<Option<Outcome>, EngineError> {
        self.route(Target::Poll(poll.clone()), Cmd::Crash).await
    }

    /// How many attempts have a running actor.
    #[cfg(test)]
    pub async fn active_actors(&self) -> usize {
        self.ask(super::registry::CountActive).await.unwrap_or(usize::MAX)
    }

    /// Waits until every submitted snapshot is stored, at most until `deadline`.
    pub async fn flush(&self, deadline: tokio::time::Instant) -> bool {
        self.persister.flush(deadline).await
    }
}
