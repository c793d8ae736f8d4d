//! The Registry actor: creates attempts, indexes them by poll id and by (app, scene),
//! enforces the live-attempt cap, restores snapshots, supervises, and is the only router
//! to attempts.
//!
//! Passivation: a `loop` attempt is listed as an idle record of the [`LiveTable`] and
//! starts its actor only when it acts (see `table.rs`); the registry's one timer expires
//! the idle ones. Reads of idle attempts are answered from the table, here or on the
//! caller's thread ([`super::LocalEngine`]); every change still goes through here.
//!
//! Nothing outside the engine holds an attempt's `Addr`: every command, restore and
//! revive goes through this single routing point.
//!
//! Supervision: an attempt whose actor stopped before the attempt was over (a panic in
//! a handler; actix reports it through `stopped()` while unwinding) or whose mailbox is
//! found closed while the registry still lists it, is restarted from its last snapshot,
//! and the command that found it dead is retried once. Without a live snapshot the
//! attempt is dropped. Both are counted (`scanlogin_attempt_restarts_total`).

use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::attempt::{Attempt, Cmd, Ended};
use super::clock::Clock;
use super::commit;
use super::outcome::{Created, EngineError, NewAttempt, Outcome};
use super::persist::{Persister, Snapshot, Stored};
use super::recovering::Recovery;
use super::state::{AttemptState, Event, Phase, Reply, Rules, Step, step};
use super::table::{Body, Idle, Key, LiveTable};
use super::waiters::Waiters;
use crate::ids::{PollId, Scene};
use crate::metrics::Metrics;

mod revive;
pub use revive::Revive;

/// Mailbox depth of the registry: deep enough for bursts, bounded so a flood turns into
/// `overloaded` answers instead of memory.
pub const REGISTRY_MAILBOX: usize = 16_384;

pub struct Registry {
    /// Shared with [`super::LocalEngine`], which reads idle attempts without a hop.
    table: Arc<LiveTable>,
    /// Restarts under way: who waits for each.
    reviving: std::collections::HashMap<PollId, Vec<oneshot::Sender<bool>>>,
    /// The one timer for all idle attempts: when it fires, and its handle.
    armed: Option<(u64, SpawnHandle)>,
    rules: Rules,
    clock: Clock,
    metrics: Metrics,
    persister: Persister,
    recovery: Arc<Recovery>,
}

impl Registry {
    pub fn new(rules: Rules, clock: Clock, metrics: Metrics, persister: Persister, recovery: Arc<Recovery>) -> Self {
        Self {
            table: Arc::default(),
            reviving: Default::default(),
            armed: None,
            rules,
            clock,
            metrics,
            persister,
            recovery,
        }
    }

    /// The table, for reads of idle attempts from other threads.
    pub fn table(&self) -> Arc<LiveTable> {
        self.table.clone()
    }

    /// Starts an actor for the attempt of `snap`.
    fn start_actor(
        &self,
        snap: Snapshot,
        stored: Option<u64>,
        waiters: Waiters,
        ctx: &mut Context<Self>,
    ) -> Addr<Attempt> {
        Attempt {
            poll: snap.poll,
            scene: snap.scene,
            app: snap.app,
            stored,
            state: snap.state,
            table: self.table.clone(),
            rules: self.rules,
            clock: self.clock,
            waiters,
            registry: ctx.address().recipient(),
            metrics: self.metrics.clone(),
            persister: self.persister.clone(),
        }
        .start()
    }

    /// Lists a stored snapshot's attempt again, counted live (a revive).
    fn admit(&mut self, snap: Snapshot, ctx: &mut Context<Self>) {
        self.metrics.live_changed(&snap.app, None, Some(snap.state.phase.into()));
        self.list(snap, true, ctx);
    }

    /// Lists an attempt without counting it live (a create counts it through
    /// [`commit::made`], a restore a page at once): a `loop` one as an idle record, any
    /// other as an actor. `stored`: the store already holds this version.
    fn list(&mut self, snap: Snapshot, stored: bool, ctx: &mut Context<Self>) {
        if snap.state.phase == Phase::Loop {
            let at = snap.state.expires_at_ms;
            self.arm(at, ctx);
            let idle =
                Idle { expires_at_ms: at, version: snap.state.version, created_ms: snap.state.created_ms, stored };
            let mut t = self.table.lock();
            let key = t.insert(snap.poll, snap.scene, &snap.app, Body::Idle(idle));
            if let Some(rec) = t.get_mut(key) {
                rec.requester = snap.state.requester.map(Box::new);
            }
        } else {
            let version = stored.then_some(snap.state.version);
            let (poll, scene, app) = (snap.poll.clone(), snap.scene.clone(), snap.app.clone());
            let (at, ticket) =
                (snap.state.expires_at_ms, snap.state.ticket.filter(|_| snap.state.phase == Phase::Scanned));
            let addr = self.start_actor(snap, version, Waiters::default(), ctx);
            let mut t = self.table.lock();
            t.insert(poll.clone(), scene, &app, Body::Active(addr, at));
            // A restored or revived `scanned` attempt is found by its ticket again.
            if let Some(ticket) = ticket {
                t.index_ticket(&poll, ticket);
            }
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
        // Starting an actor only queues it on this thread: nothing else runs meanwhile.
        let addr = self.start_actor(snap, i.stored.then_some(i.version), waiters, ctx);
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
            let lifetime = state.expires_at_ms.saturating_sub(state.created_ms.unwrap_or(now));
            self.table.lock().retire(&rec.app, &rec.scene, lifetime, now);
            let Step { state: next, actions, .. } = step(&state, &Event::Timeout, now, &self.rules);
            commit::committed(&self.metrics, &rec.app, Phase::Loop, &next, &Event::Timeout, actions, now);
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
        let read = Outcome::read(Reply::Ok, Phase::Loop, snap.state.expires_at_ms, self.clock.now_ms());
        self.persister.submit(snap, None);
        Some(read)
    }
}

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(REGISTRY_MAILBOX);
    }
}

/// Start a new attempt.
pub struct Create(pub NewAttempt);

impl Message for Create {
    /// `Overloaded`: the store did not take it in time.
    type Result = Result<Created, EngineError>;
}

impl Handler<Create> for Registry {
    type Result = ResponseFuture<Result<Created, EngineError>>;

    fn handle(&mut self, msg: Create, ctx: &mut Self::Context) -> Self::Result {
        let now = self.clock.now_ms();
        let Create(new) = msg;
        let expires_at_ms = now + new.ttl.as_millis() as u64;
        // A code mode scene is unique among the app's live attempts and those that ended
        // within the last attempt lifetime (a code is never reissued that soon).
        if let Some(scene) = &new.scene {
            let t = self.table.lock();
            if t.find_scene(&new.app, scene).is_some() || t.recently_ended_scene(&new.app, scene, now) {
                return Box::pin(async { Err(EngineError::SceneTaken) });
            }
        }
        let snap = Snapshot {
            poll: PollId::generate_for(new.kind),
            scene: new.scene.unwrap_or_else(Scene::generate),
            app: new.app,
            state: AttemptState { requester: new.requester, ..AttemptState::fresh(now, expires_at_ms) },
        };
        let created = Created { poll: snap.poll.clone(), scene: snap.scene.clone(), expires_at_ms };
        commit::made(&self.metrics, &snap.app);
        self.list(snap.clone(), false, ctx);
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
    Scene {
        app: String,
        scene: Scene,
    },
    /// The SHA-256 of a confirmation ticket.
    Ticket([u8; 32]),
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
                Target::Ticket(ticket) => t.find_ticket(ticket),
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
pub struct ListRestored(pub Vec<Snapshot>);

impl Message for ListRestored {
    type Result = usize;
}

impl Handler<ListRestored> for Registry {
    type Result = usize;

    fn handle(&mut self, msg: ListRestored, ctx: &mut Self::Context) -> usize {
        let now = self.clock.now_ms();
        let mut started = 0;
        // The live gauge moves once per (app, phase) of the page, not once per attempt.
        let mut counted: Vec<(String, Phase, i64)> = Vec::new();
        self.table.lock().reserve(msg.0.len());
        for snap in msg.0 {
            // An attempt that ended for a reason still tells it after the restart.
            if let Some(ending) = snap.state.ending.filter(|_| snap.state.phase == Phase::Expired) {
                self.table.lock().tombstone(&snap.poll, ending, snap.state.expires_at_ms, now);
                continue;
            }
            if snap.is_live(now) && self.table.lock().find_poll(&snap.poll).is_none() {
                match counted.iter_mut().find(|(a, p, _)| *a == snap.app && *p == snap.state.phase) {
                    Some(c) => c.2 += 1,
                    None => counted.push((snap.app.clone(), snap.state.phase, 1)),
                }
                self.list(snap, true, ctx);
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

/// Answers at once: the registry takes messages (readiness).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Ping;

impl Handler<Ping> for Registry {
    type Result = ();

    fn handle(&mut self, _: Ping, _ctx: &mut Self::Context) {}
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
