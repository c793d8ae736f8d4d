//! The cluster engine: many nodes on one Redis, any node answers anything.
//!
//! Each attempt is one versioned record in Redis ([`record`]). A transition on any node
//! is: read the record → the same pure [`step`] the single-node actors run → one
//! compare-and-set to the next version, retried on conflict. The token hand-out is such
//! a transition, so exactly one node, one poll, wins it; and nothing is answered from a
//! state Redis has not taken (write before answer). Long polls held on this node wait
//! in local [`views`], woken through Redis pub/sub by a commit on any node.
//!
//! No membership, no owner, no adoption: a node killed with `kill -9` loses its open
//! connections only. Redis unreachable: every call fails within its short timeout and
//! the caller answers 503 `overloaded`; `/readyz` names `redis`.

pub mod record;
pub mod views;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};

use self::record::{Cas, Records};
use self::views::{CountViews, Views, Watch};
use super::attempt::{Detail, Outcome};
use super::clock::Clock;
use super::persist::{Health, Snapshot};
use super::registry::Created;
use super::state::{Actions, AttemptState, Event, Phase, Reply, Rules, Step, step};
use super::{EngineConfig, EngineError};
use crate::ids::{PollId, Scene};
use crate::kv::Kv;
use crate::metrics::Metrics;
use crate::metrics::labels::PollKind;

/// Compare-and-set rounds one transition may take before it gives up (`overloaded`).
/// Conflicts need concurrent writers to one attempt; a handful of rounds covers any
/// real burst (a duplicate-push storm, nine polls racing for one token).
const MAX_ROUNDS: usize = 16;
/// Wake-ups that found nothing changed before a held poll answers anyway.
const SPURIOUS_MAX: usize = 3;
/// How often Redis is pinged for `/readyz` while nothing else talks to it.
const PROBE_EVERY: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct ClusterEngine(Arc<Inner>);

struct Inner {
    records: Records,
    views: Addr<Views>,
    rules: Rules,
    clock: Clock,
    metrics: Metrics,
    /// Permits for held long polls on this node.
    holds: Arc<Semaphore>,
    closing: watch::Sender<bool>,
    /// Deadlines of the attempts created on this node and not yet past, oldest first
    /// (the TTL is one setting, so they are in order): the node's live-attempt cap.
    created: Mutex<VecDeque<u64>>,
    live_max: usize,
    /// Redis as last seen: any failed call marks it down, the probe brings it back.
    up: Arc<AtomicBool>,
}

impl ClusterEngine {
    /// Starts this node's views on `arbiter` (the current one when `None`), its pub/sub
    /// listener and its Redis probe.
    pub fn start(cfg: EngineConfig, kv: Kv, clock: Clock, metrics: Metrics, arbiter: Option<&ArbiterHandle>) -> Self {
        let records = Records::new(kv);
        let views = Views::new(clock, metrics.clone());
        let views = match arbiter {
            Some(a) => Views::start_in_arbiter(a, move |_| views),
            None => views.start(),
        };
        let listen = views::listen(
            records.kv().url().to_string(),
            records.channel().to_string(),
            views.clone(),
            metrics.clone(),
        );
        let up = Arc::new(AtomicBool::new(true));
        let probe = probe(Records::new(records.kv().clone()), up.clone(), metrics.clone());
        match arbiter {
            Some(a) => {
                a.spawn(listen);
                a.spawn(probe);
            }
            None => {
                actix::spawn(listen);
                actix::spawn(probe);
            }
        }
        Self(Arc::new(Inner {
            records,
            views,
            rules: cfg.rules,
            clock,
            metrics,
            holds: Arc::new(Semaphore::new(cfg.long_polls_max)),
            closing: watch::Sender::new(false),
            created: Mutex::new(VecDeque::new()),
            live_max: cfg.live_attempts_max,
            up,
        }))
    }

    pub fn clock(&self) -> Clock {
        self.0.clock
    }

    /// Marks Redis up or down from the result of a call.
    fn seen<T>(&self, r: Result<T, EngineError>) -> Result<T, EngineError> {
        let ok = r.is_ok();
        if self.0.up.swap(ok, Ordering::SeqCst) != ok {
            self.0.metrics.snapshot_store_up("redis", ok);
        }
        r
    }

    fn outcome(&self, s: &Snapshot, reply: Reply, now: u64) -> Outcome {
        // As the local engine: token answers name the app, scan answers the owner.
        let detail = matches!(reply, Reply::Token(_) | Reply::Ok)
            .then(|| Detail { app: s.app.clone(), openid: s.state.openid.clone() });
        Outcome {
            reply,
            actions: Actions::default(),
            phase: s.state.phase,
            expires_in: s.state.expires_in(now),
            detail,
        }
    }

    /// Live attempts created on this node (its share of the cap).
    fn live_here(&self, now: u64) -> usize {
        let mut q = self.0.created.lock().unwrap_or_else(|p| p.into_inner());
        while q.front().is_some_and(|t| *t <= now) {
            q.pop_front();
        }
        q.len()
    }

    pub async fn create(&self, app: &str, ttl: Duration) -> Result<Created, EngineError> {
        let now = self.0.clock.now_ms();
        if self.live_here(now) >= self.0.live_max {
            return Err(EngineError::Overloaded);
        }
        let expires_at_ms = now + ttl.as_millis() as u64;
        // A fresh random pair never collides in practice; the CAS refuses if it does.
        for _ in 0..3 {
            let snap = Snapshot {
                poll: PollId::generate(),
                scene: Scene::generate(),
                app: app.to_string(),
                state: AttemptState::new(expires_at_ms),
            };
            if self.seen(self.0.records.cas(None, &snap).await)? == Cas::Written {
                self.0.created.lock().unwrap_or_else(|p| p.into_inner()).push_back(expires_at_ms);
                return Ok(Created { poll: snap.poll, scene: snap.scene, expires_at_ms });
            }
        }
        Err(EngineError::Overloaded)
    }

    /// One transition: read → `step` → compare-and-set, retried on conflict. Answers the
    /// outcome and the attempt's deadline (`None`: no live attempt).
    async fn transition(&self, poll: &PollId, event: &Event) -> Result<(Outcome, Option<u64>), EngineError> {
        let rules = self.0.rules;
        for _ in 0..MAX_ROUNDS {
            let Some(snap) = self.seen(self.0.records.load(poll).await)? else {
                return Ok((Outcome::expired(), None));
            };
            let now = self.0.clock.now_ms();
            // Past its deadline an attempt is over, whatever the record says; Redis
            // deletes it by itself, so there is nothing to write.
            if now >= snap.state.expires_at_ms {
                return Ok((Outcome::expired(), None));
            }
            let Step { state: next, reply, actions } = step(&snap.state, event, now, &rules);
            if !actions.persist {
                let deadline = (next.phase != Phase::Expired).then_some(next.expires_at_ms);
                return Ok((self.outcome(&snap, reply, now), deadline));
            }
            let before = snap.state.phase;
            let expected = snap.state.version;
            let new = Snapshot { state: next, ..snap };
            match self.seen(self.0.records.cas(Some(expected), &new).await)? {
                Cas::Written => {
                    // Persisted; the commit's announcement wakes the waiters of every node.
                    self.committed(&new, before, event, actions);
                    let deadline = (new.state.phase != Phase::Expired).then_some(new.state.expires_at_ms);
                    let mut o = self.outcome(&new, reply, now);
                    o.actions = actions;
                    return Ok((o, deadline));
                }
                Cas::Conflict => self.0.metrics.cluster_cas_conflict(),
            }
        }
        tracing::warn!(poll = ?poll, "cluster: transition gave up after {MAX_ROUNDS} conflicting rounds");
        Err(EngineError::Overloaded)
    }

    fn committed(&self, s: &Snapshot, before: Phase, event: &Event, actions: Actions) {
        let m = &self.0.metrics;
        if before != s.state.phase {
            m.transition_counted(&s.app, before.into(), s.state.phase.into());
        }
        if let Some(why) = actions.end {
            m.finished(&s.app, super::labels::finish(why, event, s.state.openid.is_some()));
        }
    }

    pub async fn apply(&self, poll: &PollId, event: Event) -> Result<Outcome, EngineError> {
        Ok(self.transition(poll, &event).await?.0)
    }

    pub async fn apply_scene(&self, app: &str, scene: &Scene, event: Event) -> Result<Option<Outcome>, EngineError> {
        let Some(poll) = self.seen(self.0.records.poll_of(app, scene).await)? else { return Ok(None) };
        let (o, deadline) = self.transition(&poll, &event).await?;
        // An attempt that is over (consumed, expired) is no attempt for a scan.
        Ok(deadline.map(|_| o))
    }

    pub async fn poll(&self, poll: &PollId, wait: Duration) -> Result<Outcome, EngineError> {
        let (first, deadline) = self.transition(poll, &Event::Claim).await?;
        let Some(expires_at_ms) = deadline else { return Ok(first) };
        if first.phase != Phase::Loop || wait.is_zero() || *self.0.closing.borrow() {
            self.0.metrics.poll(PollKind::Short);
            return Ok(first);
        }
        let Ok(_permit) = self.0.holds.clone().try_acquire_owned() else {
            self.0.metrics.limit_hit(crate::metrics::labels::LimitKind::LongPollsMax);
            return Ok(first);
        };
        self.0.metrics.poll(PollKind::Long);
        let _held = self.0.metrics.hold();
        let until = tokio::time::Instant::now() + wait;
        let mut closing = self.0.closing.subscribe();
        let mut spurious = 0;
        loop {
            let (tx, rx) = oneshot::channel();
            let watch = Watch { poll: poll.clone(), expires_at_ms, tx };
            let held =
                matches!(tokio::time::timeout(Duration::from_secs(2), self.0.views.send(watch)).await, Ok(Ok(true)));
            // Read again only after the view holds us: a commit in between wakes us.
            let (now, _) = self.transition(poll, &Event::Claim).await?;
            if now.phase != Phase::Loop || !held {
                return Ok(now);
            }
            tokio::select! {
                _ = tokio::time::timeout_at(until, rx) => {}
                _ = closing.wait_for(|c| *c) => {}
            }
            let (now, _) = self.transition(poll, &Event::Claim).await?;
            if now.phase != Phase::Loop || tokio::time::Instant::now() >= until || *self.0.closing.borrow() {
                return Ok(now);
            }
            // Woken, yet still `loop` (a lost pub/sub connection, a full view): hold
            // again, a few times at most and not in a tight loop.
            spurious += 1;
            if spurious >= SPURIOUS_MAX {
                return Ok(now);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn peek(&self, poll: &PollId) -> Result<Outcome, EngineError> {
        let Some(snap) = self.seen(self.0.records.load(poll).await)? else { return Ok(Outcome::expired()) };
        let now = self.0.clock.now_ms();
        if now >= snap.state.expires_at_ms {
            return Ok(Outcome::expired());
        }
        let mut o = self.outcome(&snap, Reply::Ok, now);
        o.detail = Some(Detail { app: snap.app.clone(), openid: snap.state.openid.clone() });
        Ok(o)
    }

    /// Attempts created on this node and still before their deadline.
    pub async fn live(&self) -> Result<usize, EngineError> {
        Ok(self.live_here(self.0.clock.now_ms()))
    }

    /// Views this node holds right now (tests and the dashboard's per-node view).
    pub async fn views(&self) -> usize {
        self.0.views.send(CountViews).await.unwrap_or(0)
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    pub(crate) fn hold_permit(&self) -> Option<OwnedSemaphorePermit> {
        let permit = self.0.holds.clone().try_acquire_owned().ok();
        if permit.is_none() {
            self.0.metrics.limit_hit(crate::metrics::labels::LimitKind::LongPollsMax);
        }
        permit
    }

    /// Registers a waiter in this node's view of the attempt, then reads the record: a
    /// commit after the read wakes the waiter, one before it shows in the state.
    pub(crate) async fn watch(&self, poll: &PollId) -> Result<(Option<Outcome>, oneshot::Receiver<()>), EngineError> {
        let (tx, rx) = oneshot::channel();
        let Some(snap) = self.seen(self.0.records.load(poll).await)? else { return Ok((None, rx)) };
        if self.0.clock.now_ms() >= snap.state.expires_at_ms || snap.state.phase == Phase::Expired {
            return Ok((Some(Outcome::expired()), rx));
        }
        let watch = Watch { poll: poll.clone(), expires_at_ms: snap.state.expires_at_ms, tx };
        let _ = tokio::time::timeout(Duration::from_secs(2), self.0.views.send(watch)).await;
        let seen = self.peek(poll).await?;
        Ok((Some(seen), rx))
    }

    pub(crate) fn is_closing(&self) -> bool {
        *self.0.closing.borrow()
    }

    pub(crate) async fn closed(&self) {
        let _ = self.0.closing.subscribe().wait_for(|c| *c).await;
    }

    pub fn store_health(&self) -> Health {
        Health { store: "redis", up: self.0.up.load(Ordering::SeqCst), pending: 0 }
    }

    pub fn close(&self) {
        self.0.closing.send_replace(true);
    }
}

/// Pings Redis every second while the node runs, so `/readyz` follows Redis even when
/// no request does.
async fn probe(records: Records, up: Arc<AtomicBool>, metrics: Metrics) {
    loop {
        let ok = records.ping().await;
        if up.swap(ok, Ordering::SeqCst) != ok {
            metrics.snapshot_store_up("redis", ok);
            if ok {
                tracing::info!("cluster: redis answers again");
            } else {
                tracing::warn!("cluster: redis does not answer");
            }
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}
