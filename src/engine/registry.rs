//! The Registry actor: creates attempts, indexes them by poll id and by (app, scene),
//! enforces the live-attempt cap, restores snapshots, supervises, and is the only router
//! to attempts.
//!
//! Nothing outside the engine holds an attempt's `Addr`: this single routing point is
//! where snapshots restore and where multi-node forwarding will plug in.
//!
//! Supervision: an attempt whose actor stopped before the attempt was over (a panic in
//! a handler; actix reports it through `stopped()` while unwinding) or whose mailbox is
//! found closed while the registry still lists it, is restarted from its last snapshot,
//! and the command that found it dead is retried once. Without a live snapshot the
//! attempt is dropped. Both are counted (`scanlogin_attempt_restarts_total`).

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::EngineError;
use super::attempt::{Attempt, Cmd, Ended, Outcome, Timeline};
use super::clock::Clock;
use super::persist::{Persister, Snapshot, Stored};
use super::recovery::Recovery;
use super::state::{AttemptState, Rules};
use crate::ids::{PollId, Scene};
use crate::metrics::Metrics;

/// Mailbox depth of the registry: deep enough for bursts, bounded so a flood turns into
/// `overloaded` answers instead of memory.
pub const REGISTRY_MAILBOX: usize = 16_384;

struct Entry {
    addr: Addr<Attempt>,
    app: String,
    scene: Scene,
}

pub struct Registry {
    by_poll: HashMap<PollId, Entry>,
    by_scene: HashMap<(String, Scene), PollId>,
    /// Restarts under way: who waits for each.
    reviving: HashMap<PollId, Vec<oneshot::Sender<bool>>>,
    max_live: usize,
    rules: Rules,
    clock: Clock,
    metrics: Metrics,
    persister: Persister,
    recovery: Arc<Recovery>,
}

impl Registry {
    pub fn new(
        max_live: usize,
        rules: Rules,
        clock: Clock,
        metrics: Metrics,
        persister: Persister,
        recovery: Arc<Recovery>,
    ) -> Self {
        Self {
            by_poll: HashMap::new(),
            by_scene: HashMap::new(),
            reviving: HashMap::new(),
            max_live,
            rules,
            clock,
            metrics,
            persister,
            recovery,
        }
    }

    /// Starts the actor of `snap` and indexes it; `created_ms` is known for fresh attempts
    /// only (the others were loaded from the store, so their version is stored).
    fn spawn(&mut self, snap: Snapshot, created_ms: Option<u64>, ctx: &mut Context<Self>) -> Addr<Attempt> {
        let attempt = Attempt {
            poll: snap.poll.clone(),
            scene: snap.scene.clone(),
            app: snap.app.clone(),
            stored: created_ms.is_none().then_some(snap.state.version),
            state: snap.state,
            rules: self.rules,
            clock: self.clock,
            waiters: Vec::new(),
            registry: ctx.address().recipient(),
            metrics: self.metrics.clone(),
            persister: self.persister.clone(),
            timeline: Timeline { created_ms, scanned_ms: None },
        };
        let addr = attempt.start();
        self.by_scene.insert((snap.app.clone(), snap.scene.clone()), snap.poll.clone());
        self.by_poll.insert(snap.poll, Entry { addr: addr.clone(), app: snap.app, scene: snap.scene });
        addr
    }

    fn forget(&mut self, poll: &PollId) {
        if let Some(e) = self.by_poll.remove(poll) {
            self.by_scene.remove(&(e.app, e.scene));
        }
    }
}

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(REGISTRY_MAILBOX);
    }
}

/// A fresh attempt's public identity.
#[derive(Debug, Clone)]
pub struct Created {
    pub poll: PollId,
    pub scene: Scene,
    pub expires_at_ms: u64,
}

/// Start a new attempt for `app` that lives `ttl_ms`.
pub struct Create {
    pub app: String,
    pub ttl_ms: u64,
}

impl Message for Create {
    /// `Overloaded`: the live-attempt cap is reached, or the store did not take it in time.
    type Result = Result<Created, EngineError>;
}

impl Handler<Create> for Registry {
    type Result = ResponseFuture<Result<Created, EngineError>>;

    fn handle(&mut self, msg: Create, ctx: &mut Self::Context) -> Self::Result {
        if self.by_poll.len() >= self.max_live {
            return Box::pin(async { Err(EngineError::Overloaded) });
        }
        let now = self.clock.now_ms();
        let expires_at_ms = now + msg.ttl_ms;
        let snap = Snapshot {
            poll: PollId::generate(),
            scene: Scene::generate(),
            app: msg.app,
            state: AttemptState::new(expires_at_ms),
        };
        let created = Created { poll: snap.poll.clone(), scene: snap.scene.clone(), expires_at_ms };
        self.spawn(snap.clone(), Some(now), ctx);
        // The QR code reaches the screen only once the attempt would survive a crash (or
        // the store is known down: degraded mode). A store that is up but slow gets its
        // bounded chance, then the create is refused; the attempt expires unseen.
        let persister = self.persister.clone();
        Box::pin(async move {
            match persister.persist(snap, false).await {
                Stored::Durable | Stored::StoreDown => Ok(created),
                Stored::Late => Err(EngineError::Overloaded),
            }
        })
    }
}

/// Where a routed command goes.
pub enum Target {
    Poll(PollId),
    Scene { app: String, scene: Scene },
}

/// Route `cmd` to the attempt named by `target`.
pub struct Route {
    pub target: Target,
    pub cmd: Cmd,
    /// Set on the one retry after a restart, so a command that kills its attempt every
    /// time is not retried forever.
    retried: bool,
}

impl Route {
    pub fn new(target: Target, cmd: Cmd) -> Self {
        Self { target, cmd, retried: false }
    }
}

impl Message for Route {
    /// `Ok(None)`: no such live attempt (never existed, ended, or just stopping).
    type Result = Result<Option<Outcome>, EngineError>;
}

impl Handler<Route> for Registry {
    type Result = ResponseFuture<Result<Option<Outcome>, EngineError>>;

    fn handle(&mut self, msg: Route, ctx: &mut Self::Context) -> Self::Result {
        let poll = match &msg.target {
            Target::Poll(p) => Some(p.clone()),
            Target::Scene { app, scene } => self.by_scene.get(&(app.clone(), scene.clone())).cloned(),
        };
        let found = poll.and_then(|p| self.by_poll.get(&p).map(|e| (p, e.addr.clone())));
        let me = ctx.address();
        let recovery = self.recovery.clone();
        Box::pin(async move {
            let Some((poll, addr)) = found else {
                // Still restoring: the attempt may be on its way; wait (bounded) and look again.
                if recovery.is_pending() {
                    recovery.wait().await;
                    if recovery.is_pending() {
                        return Err(EngineError::Unavailable);
                    }
                    return me.send(msg).await.unwrap_or(Err(EngineError::Overloaded));
                }
                return Ok(None);
            };
            let retry = if msg.retried { None } else { msg.cmd.try_clone() };
            match addr.send(msg.cmd).await {
                Ok(r) => r.map(Some),
                // The mailbox closed. After a normal end the registry already forgot the
                // attempt (`Ended` came first) and the revive finds nothing to do.
                Err(_) => {
                    let alive = me.send(Revive { poll: poll.clone(), dead: addr }).await.unwrap_or(false);
                    match (alive, retry) {
                        (true, Some(cmd)) => {
                            let again = Route { target: Target::Poll(poll), cmd, retried: true };
                            me.send(again).await.unwrap_or(Err(EngineError::Overloaded))
                        }
                        _ => Ok(None),
                    }
                }
            }
        })
    }
}

impl Handler<Ended> for Registry {
    type Result = ();

    fn handle(&mut self, msg: Ended, ctx: &mut Self::Context) {
        match msg.died {
            None => self.forget(&msg.poll),
            // Nobody waits for this revive's answer: the next command will route to it.
            Some(dead) => drop(self.revive(msg.poll, dead, ctx)),
        }
    }
}

/// The attempt `poll` was found dead at `dead`: restart it from its last snapshot.
/// Answers whether the attempt lives (restarted now or by a concurrent revive).
pub struct Revive {
    pub poll: PollId,
    pub dead: Addr<Attempt>,
}

impl Message for Revive {
    type Result = bool;
}

impl Handler<Revive> for Registry {
    type Result = ResponseFuture<bool>;

    fn handle(&mut self, msg: Revive, ctx: &mut Self::Context) -> Self::Result {
        let rx = self.revive(msg.poll, msg.dead, ctx);
        Box::pin(async move { rx.await.unwrap_or(false) })
    }
}

impl Registry {
    /// Restarts the attempt `poll`, found dead at `dead`, from its last snapshot (once,
    /// however many callers found it dead). The receiver learns whether it lives.
    fn revive(&mut self, poll: PollId, dead: Addr<Attempt>, ctx: &mut Context<Self>) -> oneshot::Receiver<bool> {
        let (tx, rx) = oneshot::channel();
        match self.by_poll.get(&poll) {
            None => {
                let _ = tx.send(false);
                return rx;
            }
            // Already replaced by an earlier revive.
            Some(e) if e.addr != dead => {
                let _ = tx.send(true);
                return rx;
            }
            Some(_) => {}
        }
        if let Some(waiters) = self.reviving.get_mut(&poll) {
            waiters.push(tx);
            return rx;
        }
        self.reviving.insert(poll.clone(), vec![tx]);
        let persister = self.persister.clone();
        let key = poll.clone();
        let load = async move { persister.load(&key).await };
        ctx.spawn(load.into_actor(self).map(move |loaded, act, ctx| {
            let now = act.clock.now_ms();
            let alive = match loaded {
                Ok(Some(snap)) if snap.is_live(now) && snap.poll == poll => {
                    act.spawn(snap, None, ctx);
                    act.metrics.attempt_restart(crate::metrics::labels::Restart::Restarted);
                    tracing::warn!(poll = ?poll, "attempt died unexpectedly; restarted from its snapshot");
                    true
                }
                other => {
                    act.forget(&poll);
                    act.metrics.attempt_restart(crate::metrics::labels::Restart::Lost);
                    let found = other.map(|s| s.map(|s| s.state.phase));
                    tracing::error!(poll = ?poll, ?found, "attempt died unexpectedly and has no live snapshot");
                    false
                }
            };
            for w in act.reviving.remove(&poll).unwrap_or_default() {
                let _ = w.send(alive);
            }
        }));
        rx
    }
}

/// Start actors for restored snapshots (live ones; an attempt already running is kept).
/// Answers how many were started.
pub struct Restore(pub Vec<Snapshot>);

impl Message for Restore {
    type Result = usize;
}

impl Handler<Restore> for Registry {
    type Result = usize;

    fn handle(&mut self, msg: Restore, ctx: &mut Self::Context) -> usize {
        let now = self.clock.now_ms();
        let mut started = 0;
        for snap in msg.0 {
            if snap.is_live(now) && !self.by_poll.contains_key(&snap.poll) {
                self.spawn(snap, None, ctx);
                started += 1;
            }
        }
        started
    }
}

/// Every attempt submits its current state again (the store was down or lost its data).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct RewriteAll;

impl Handler<RewriteAll> for Registry {
    type Result = usize;

    fn handle(&mut self, _: RewriteAll, _ctx: &mut Self::Context) -> usize {
        for e in self.by_poll.values() {
            // `do_send` queues even into a full mailbox: a rewrite must not be dropped.
            e.addr.do_send(Cmd::Resnapshot);
        }
        self.by_poll.len()
    }
}

/// How many attempts are live.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CountLive;

impl Handler<CountLive> for Registry {
    type Result = usize;

    fn handle(&mut self, _: CountLive, _ctx: &mut Self::Context) -> usize {
        self.by_poll.len()
    }
}
