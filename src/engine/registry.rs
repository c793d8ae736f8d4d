//! The Registry actor: creates attempts, indexes them by poll id and by (app, scene),
//! enforces the live-attempt cap, restores snapshots, supervises, and is the only router
//! to attempts.
//!
//! Passivation: a `loop` attempt is listed as an idle record of the [`Shared`] table and
//! starts its actor only when it acts (see `table.rs`); the registry's one timer expires
//! the idle ones. Reads of idle attempts are answered from the table, here or on the
//! caller's thread ([`super::LocalEngine`]); every change still goes through here.
//!
//! Nothing outside the engine holds an attempt's `Addr`: this single routing point is
//! where snapshots restore and where multi-node forwarding will plug in.
//!
//! Supervision: an attempt whose actor stopped before the attempt was over (a panic in
//! a handler; actix reports it through `stopped()` while unwinding) or whose mailbox is
//! found closed while the registry still lists it, is restarted from its last snapshot,
//! and the command that found it dead is retried once. Without a live snapshot the
//! attempt is dropped. Both are counted (`scanlogin_attempt_restarts_total`).

use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::EngineError;
use super::attempt::{Attempt, Cmd, Ended, Outcome, Timeline};
use super::clock::Clock;
use super::persist::{Persister, Snapshot, Stored};
use super::recovery::Recovery;
use super::state::{AttemptState, Event, Phase, Reply, Rules, Step, step};
use super::table::{Body, Idle, Key, Shared};
use crate::ids::{PollId, Scene};
use crate::metrics::Metrics;

mod revive;
pub use revive::Revive;

/// Mailbox depth of the registry: deep enough for bursts, bounded so a flood turns into
/// `overloaded` answers instead of memory.
pub const REGISTRY_MAILBOX: usize = 16_384;

pub struct Registry {
    /// Shared with [`super::LocalEngine`], which reads idle attempts without a hop.
    table: Arc<Shared>,
    /// Restarts under way: who waits for each.
    reviving: std::collections::HashMap<PollId, Vec<oneshot::Sender<bool>>>,
    /// The one timer for all idle attempts: when it fires, and its handle.
    armed: Option<(u64, SpawnHandle)>,
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
            table: Arc::default(),
            reviving: Default::default(),
            armed: None,
            max_live,
            rules,
            clock,
            metrics,
            persister,
            recovery,
        }
    }

    /// The table, for reads of idle attempts from other threads.
    pub fn table(&self) -> Arc<Shared> {
        self.table.clone()
    }

    /// Starts an actor for the attempt of `snap`.
    fn start_actor(
        &self,
        snap: Snapshot,
        stored: Option<u64>,
        timeline: Timeline,
        waiters: Vec<oneshot::Sender<()>>,
        ctx: &mut Context<Self>,
    ) -> Addr<Attempt> {
        Attempt {
            poll: snap.poll,
            scene: snap.scene,
            app: snap.app,
            stored,
            state: snap.state,
            rules: self.rules,
            clock: self.clock,
            waiters,
            registry: ctx.address().recipient(),
            metrics: self.metrics.clone(),
            persister: self.persister.clone(),
            timeline,
        }
        .start()
    }

    /// Lists a snapshot's attempt: a `loop` one as an idle record, any other as an actor.
    /// `created_ms` is known for fresh attempts only (the others came from the store, so
    /// their version is stored).
    fn admit(&mut self, snap: Snapshot, created_ms: Option<u64>, ctx: &mut Context<Self>) {
        self.metrics.live_changed(&snap.app, None, Some(snap.state.phase.into()));
        self.list(snap, created_ms, ctx);
    }

    /// [`Registry::admit`] without counting it live (a restore counts a page at once).
    fn list(&mut self, snap: Snapshot, created_ms: Option<u64>, ctx: &mut Context<Self>) {
        let stored = created_ms.is_none();
        if snap.state.phase == Phase::Loop {
            let at = snap.state.expires_at_ms;
            self.arm(at, ctx);
            let idle = Idle { expires_at_ms: at, version: snap.state.version, created_ms, stored };
            self.table.lock().insert(snap.poll, snap.scene, &snap.app, Body::Idle(idle));
        } else {
            let timeline = Timeline { created_ms, scanned_ms: None };
            let version = stored.then_some(snap.state.version);
            let (poll, scene, app) = (snap.poll.clone(), snap.scene.clone(), snap.app.clone());
            let at = snap.state.expires_at_ms;
            let addr = self.start_actor(snap, version, timeline, Vec::new(), ctx);
            self.table.lock().insert(poll, scene, &app, Body::Active(addr, at));
        }
    }

    /// The idle attempt at `key` starts acting: its actor starts from the record.
    /// Its held polls go with it, in one hold of the lock: a poll registered on the idle
    /// record from another thread is either handed over here or finds the actor.
    fn activate(&mut self, key: Key, ctx: &mut Context<Self>) -> Option<Addr<Attempt>> {
        let mut t = self.table.lock();
        let rec = t.get(key)?;
        let i = match &rec.body {
            Body::Active(a, _) => return Some(a.clone()),
            Body::Idle(i) => *i,
        };
        let snap = rec.snapshot(i.state());
        let waiters = t.take_waiters(key);
        let timeline = Timeline { created_ms: i.created_ms, scanned_ms: None };
        // Starting an actor only queues it on this thread: nothing else runs meanwhile.
        let addr = self.start_actor(snap, i.stored.then_some(i.version), timeline, waiters, ctx);
        t.activate(key, addr.clone());
        Some(addr)
    }

    /// Makes sure the idle timer fires by `at_ms`.
    fn arm(&mut self, at_ms: u64, ctx: &mut Context<Self>) {
        if let Some((armed_at, handle)) = self.armed {
            if armed_at <= at_ms {
                return;
            }
            ctx.cancel_future(handle);
        }
        let handle = ctx.run_later(self.clock.until(at_ms), |act, ctx| {
            act.armed = None;
            act.expire_due(ctx);
        });
        self.armed = Some((at_ms, handle));
    }

    /// Idle attempts past their deadline end here, without an actor: the registry runs
    /// the machine's timeout step, submits the ended state and counts it as the actor
    /// would; polls held on the record wake as it goes and read `expired`. That answer
    /// is the deadline's, not the write's, so the write need not be awaited: a crash
    /// before it lands restores a snapshot whose deadline has passed, which the restore
    /// drops.
    fn expire_due(&mut self, ctx: &mut Context<Self>) {
        let now = self.clock.now_ms();
        let ended: Vec<_> = {
            let mut t = self.table.lock();
            let due = t.due(now);
            due.into_iter().filter_map(|k| t.remove(k)).collect()
        };
        for rec in ended {
            let Body::Idle(i) = rec.body else { continue };
            let state = i.state();
            let Step { state: next, actions, .. } = step(&state, &Event::Timeout, now, &self.rules);
            self.metrics.transition(&rec.app, Phase::Loop.into(), next.phase.into());
            if let Some(why) = actions.end {
                self.metrics.finished(&rec.app, super::labels::finish(why, &Event::Timeout, false));
            }
            let snap = Snapshot { poll: rec.poll, scene: rec.scene, app: rec.app.to_string(), state: next };
            self.persister.submit(snap, None);
        }
        let next = self.table.lock().next_deadline();
        if let Some(next) = next {
            self.arm(next, ctx);
        }
    }

    fn forget(&mut self, poll: &PollId) {
        let mut t = self.table.lock();
        if let Some(k) = t.find_poll(poll) {
            t.remove(k);
        }
    }

    /// An idle attempt's snapshot, submitted again (the store was down or lost data).
    fn resnapshot_idle(&self, key: Key) -> Option<Outcome> {
        let snap = self.table.lock().get(key)?.idle_snapshot()?;
        let expires_in = snap.state.expires_in(self.clock.now_ms());
        self.persister.submit(snap, None);
        Some(Outcome { reply: Reply::Ok, actions: Default::default(), phase: Phase::Loop, expires_in, detail: None })
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
        if self.table.lock().len() >= self.max_live {
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
        self.admit(snap.clone(), Some(now), ctx);
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
        let now = self.clock.now_ms();
        let (key, read) = {
            let t = self.table.lock();
            let key = match &msg.target {
                Target::Poll(p) => t.find_poll(p),
                Target::Scene { app, scene } => t.find_scene(app, scene),
            };
            (key, key.and_then(|k| t.read(k, &msg.cmd, now, &self.rules)))
        };
        let read = read.or_else(|| match msg.cmd {
            Cmd::Resnapshot => key.and_then(|k| self.resnapshot_idle(k)),
            _ => None,
        });
        if let Some(o) = read {
            return Box::pin(std::future::ready(Ok(Some(o))));
        }
        let found = key.and_then(|k| {
            let poll = self.table.lock().get(k)?.poll.clone();
            Some((poll, self.activate(k, ctx)?))
        });
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

/// List restored snapshots (live ones; an attempt already listed is kept): `loop` ones
/// as idle records, the others as actors. Answers how many were listed.
pub struct Restore(pub Vec<Snapshot>);

impl Message for Restore {
    type Result = usize;
}

impl Handler<Restore> for Registry {
    type Result = usize;

    fn handle(&mut self, msg: Restore, ctx: &mut Self::Context) -> usize {
        let now = self.clock.now_ms();
        let mut started = 0;
        // The live gauge moves once per (app, phase) of the page, not once per attempt.
        let mut counted: Vec<(String, Phase, i64)> = Vec::new();
        self.table.lock().reserve(msg.0.len());
        for snap in msg.0 {
            if snap.is_live(now) && self.table.lock().find_poll(&snap.poll).is_none() {
                match counted.iter_mut().find(|(a, p, _)| *a == snap.app && *p == snap.state.phase) {
                    Some(c) => c.2 += 1,
                    None => counted.push((snap.app.clone(), snap.state.phase, 1)),
                }
                self.list(snap, None, ctx);
                started += 1;
            }
        }
        for (app, phase, n) in counted {
            self.metrics.live_added(&app, phase.into(), n);
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
        let t = self.table.lock();
        for r in t.records() {
            match &r.body {
                // `do_send` queues even into a full mailbox: a rewrite must not be dropped.
                Body::Active(a, _) => a.do_send(Cmd::Resnapshot),
                Body::Idle(i) => self.persister.submit(r.snapshot(i.state()), None),
            }
        }
        t.len()
    }
}

/// How many attempts are live.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CountLive;

impl Handler<CountLive> for Registry {
    type Result = usize;

    fn handle(&mut self, _: CountLive, _ctx: &mut Self::Context) -> usize {
        self.table.lock().len()
    }
}

/// How many attempts have a running actor (the passivation tests).
#[cfg(test)]
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CountActive;

#[cfg(test)]
impl Handler<CountActive> for Registry {
    type Result = usize;

    fn handle(&mut self, _: CountActive, _ctx: &mut Self::Context) -> usize {
        self.table.lock().records().filter(|r| matches!(r.body, Body::Active(..))).count()
    }
}
