//! The cluster engine: many nodes on one Redis, any node answers anything.
//!
//! Each attempt is one versioned record in Redis ([`record`]). A transition on any node
//! is: read the record → the same pure [`step`] the single-node actors run → one
//! compare-and-set to the next version, retried on conflict. The token hand-out is such
//! a transition, so exactly one node, one poll, wins it; and nothing is answered from a
//! state Redis has not taken (write before answer). Long polls held on this node wait
//! in its [`views`], woken through Redis pub/sub by a commit on any node.
//!
//! An attempt's end at its deadline is written too, by the node that made it (a sweep
//! steps `Timeout` through the same compare-and-set), so it is counted once like every
//! other transition; Redis keeps a record a grace period past its deadline for that, and
//! every other event reads a record past its deadline as `expired`.
//!
//! No membership, no owner, no adoption: a node killed with `kill -9` loses its open
//! connections only. Redis unreachable: every call fails within its short timeout and
//! the caller answers 503 `overloaded`; `/readyz` names `redis`.

mod admin;
pub mod index;
pub mod record;
mod sharded;
pub mod views;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

use self::index::Index;
use self::record::{Cas, Records};
use self::views::{CountViews, Views, Watch};
use super::clock::Clock;
use super::commit;
use super::outcome::{Created, Detail, EngineError, NewAttempt, Outcome, Watched};
use super::persist::seal::{RecordId, Seal};
use super::persist::{Health, Snapshot};
use super::state::{AttemptState, Event, Mark, Phase, Reply, Rules, Step, step};
use crate::ids::{PollId, Scene};
use crate::kv::Kv;
use crate::metrics::Metrics;

/// Compare-and-set rounds one transition may take before it gives up (`overloaded`).
/// Conflicts need concurrent writers to one attempt; a handful of rounds covers any
/// real burst (a duplicate-push storm, nine polls racing for one token).
const MAX_ROUNDS: usize = 16;
/// How often Redis is pinged for `/readyz` while nothing else talks to it.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How often the attempts made here that reached their deadline are ended.
const SWEEP_EVERY: Duration = Duration::from_millis(500);
/// How often a node's sweep prunes the admin index of attempts a dead node left.
const PRUNE_EVERY_MS: u64 = 60_000;
/// How long the registration of a waiter with this node's views may take.
const VIEWS_WAIT: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct ClusterEngine(Arc<Inner>);

struct Inner {
    records: Records,
    views: Addr<Views>,
    rules: Rules,
    clock: Clock,
    metrics: Metrics,
    /// The attempts made on this node that are not yet ended by its sweep, by deadline:
    /// the node's share of the live cap, and the ends it writes.
    made: Mutex<Made>,
    /// Redis as last seen: any failed call marks it down, the probe brings it back.
    up: Arc<AtomicBool>,
    /// The live attempts for the admin API ([`index`]).
    index: Index,
    /// This node's name, recorded with the attempts it makes (see [`ClusterEngine::name_node`]).
    node: OnceLock<String>,
    /// When this node's sweep last pruned the admin index (ms since the epoch).
    pruned_ms: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct Made {
    by_deadline: BTreeMap<u64, Vec<PollId>>,
    len: usize,
}

impl ClusterEngine {
    /// Starts this node's views on `arbiter` (the current one when `None`), its pub/sub
    /// listener, its Redis probe and its sweep.
    pub fn start(
        rules: Rules,
        kv: Kv,
        seal: Seal,
        clock: Clock,
        metrics: Metrics,
        arbiter: Option<&ArbiterHandle>,
    ) -> Self {
        metrics.redis_topology(kv.topology().name());
        let records = Records::new(kv.clone(), seal, metrics.clone());
        let views = Views::new(metrics.clone());
        let views = match arbiter {
            Some(a) => Views::start_in_arbiter(a, move |_| views),
            None => views.start(),
        };
        let up = Arc::new(AtomicBool::new(true));
        let engine = Self(Arc::new(Inner {
            records,
            views: views.clone(),
            rules,
            clock,
            metrics: metrics.clone(),
            made: Mutex::default(),
            up: up.clone(),
            index: Index::new(kv.clone()),
            node: OnceLock::new(),
            pruned_ms: Default::default(),
        }));
        let listen = views::listen(kv.clone(), engine.0.records.channel().to_string(), views, metrics.clone());
        let probe = probe(kv, up, metrics);
        let sweep = sweep(Arc::downgrade(&engine.0));
        match arbiter {
            Some(a) => {
                a.spawn(listen);
                a.spawn(probe);
                a.spawn(sweep);
            }
            None => {
                actix::spawn(listen);
                actix::spawn(probe);
                actix::spawn(sweep);
            }
        }
        engine
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
        let mut o = Outcome::of_state(reply, &s.state, now);
        // As the local engine: token answers name the app, scan answers the owner.
        if matches!(o.reply, Reply::Token(_) | Reply::Ok) {
            o.detail = Some(Detail::of(&s.app, &s.state));
        }
        o.ending = s.state.ending;
        o
    }

    /// Names this node: the attempts it makes from now on are listed as made here.
    pub fn name_node(&self, node: &str) {
        let _ = self.0.node.set(node.to_string());
    }

    fn made(&self) -> MutexGuard<'_, Made> {
        self.0.made.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub async fn create(&self, new: NewAttempt) -> Result<Created, EngineError> {
        let NewAttempt { app, ttl, kind, requester, scene } = new;
        let scene_given = scene.is_some();
        let app = app.as_str();
        let now = self.0.clock.now_ms();
        let expires_at_ms = now + ttl.as_millis() as u64;
        // A fresh random pair never collides in practice; the CAS refuses if it does.
        for _ in 0..3 {
            let (poll, scene) = aligned(kind, scene.as_ref());
            let snap = Snapshot {
                poll,
                scene,
                app: app.to_string(),
                state: AttemptState { requester: requester.clone(), ..AttemptState::fresh(now, expires_at_ms) },
            };
            let node = self.0.node.get().map_or("", String::as_str);
            let written = self.seen(self.0.records.cas(None, &snap, node).await)?;
            if written == Cas::SceneTaken && scene_given {
                return Err(EngineError::SceneTaken);
            }
            if written == Cas::Written {
                commit::made(&self.0.metrics, app);
                let mut made = self.made();
                made.by_deadline.entry(expires_at_ms).or_default().push(snap.poll.clone());
                made.len += 1;
                return Ok(Created { poll: snap.poll, scene: snap.scene, expires_at_ms });
            }
        }
        Err(EngineError::Overloaded)
    }

    /// One transition: read → `step` → compare-and-set, retried on conflict. Answers the
    /// outcome and the attempt's deadline (`None`: no live attempt).
    async fn transition(
        &self,
        id: &RecordId,
        poll: Option<&PollId>,
        event: &Event,
    ) -> Result<(Outcome, Option<u64>), EngineError> {
        self.transition_from(id, poll, event, None).await
    }

    /// [`ClusterEngine::transition`] whose first round starts from `read`, the record as a
    /// call just read it (`Some(None)`: it is gone), instead of reading it again.
    async fn transition_from(
        &self,
        id: &RecordId,
        poll: Option<&PollId>,
        event: &Event,
        mut read: Option<Option<Snapshot>>,
    ) -> Result<(Outcome, Option<u64>), EngineError> {
        let rules = self.0.rules;
        for _ in 0..MAX_ROUNDS {
            let loaded = match read.take() {
                Some(r) => r,
                None => self.seen(self.0.records.load(id, poll).await)?,
            };
            let Some(snap) = loaded else {
                return Ok((Outcome::expired(), None));
            };
            let now = self.0.clock.now_ms();
            // Past its deadline an attempt is over, whatever the record says; only the
            // sweep writes that end (see the module's doc).
            if now >= snap.state.expires_at_ms && *event != Event::Timeout {
                return Ok((Outcome::ended(snap.state.ending), None));
            }
            let Step { state: next, reply, actions } = step(&snap.state, event, now, &rules);
            let live = |s: &Snapshot| (s.state.phase != Phase::Expired).then_some(s.state.expires_at_ms);
            if !actions.persist {
                return Ok((self.outcome(&snap, reply, now), live(&snap)));
            }
            let before = snap.state.phase;
            let expected = snap.state.version;
            let mut next = next;
            // The phases this step entered were entered here.
            let node = self.0.node.get().map(|n| Mark::node_name(n));
            for m in next.trail.iter_mut().skip(snap.state.trail.len()) {
                m.node = node.clone();
            }
            let new = Snapshot { state: next, ..snap };
            match self.seen(self.0.records.cas(Some(expected), &new, "").await)? {
                Cas::Written => {
                    // Stored (an end out of the admin listing with it); the commit's
                    // announcement wakes the waiters of every node.
                    commit::committed(&self.0.metrics, &new.app, before, &new.state, event, actions, now);
                    let mut o = self.outcome(&new, reply, now);
                    o.actions = actions;
                    return Ok((o, live(&new)));
                }
                Cas::Conflict | Cas::SceneTaken => self.0.metrics.cluster_cas_conflict(),
            }
        }
        tracing::warn!(record = id.as_str(), "cluster: transition gave up after {MAX_ROUNDS} conflicting rounds");
        Err(EngineError::Overloaded)
    }

    pub async fn apply(&self, poll: &PollId, event: Event) -> Result<Outcome, EngineError> {
        Ok(self.transition(&self.0.records.id(poll), Some(poll), &event).await?.0)
    }

    pub async fn apply_scene(&self, app: &str, scene: &Scene, event: Event) -> Result<Option<Outcome>, EngineError> {
        // The scene's key and the record in one call; the transition starts from that read.
        let Some((id, snap)) = self.seen(self.0.records.load_by_scene(app, scene).await)? else { return Ok(None) };
        let (o, deadline) = self.transition_from(&id, None, &event, Some(snap)).await?;
        // An attempt that is over (consumed, expired) is no attempt for a scan.
        Ok(deadline.map(|_| o))
    }

    pub async fn apply_ticket(&self, ticket: &[u8; 32], event: Event) -> Result<Option<Outcome>, EngineError> {
        let Some(id) = self.seen(self.0.records.id_of_ticket(ticket).await)? else { return Ok(None) };
        Ok(Some(self.transition(&id, None, &event).await?.0))
    }

    pub async fn peek_ticket(&self, ticket: &[u8; 32]) -> Result<Option<Outcome>, EngineError> {
        let Some(id) = self.seen(self.0.records.id_of_ticket(ticket).await)? else { return Ok(None) };
        Ok(Some(self.peek_id(&id, None).await?))
    }

    pub async fn peek(&self, poll: &PollId) -> Result<Outcome, EngineError> {
        self.peek_id(&self.0.records.id(poll), Some(poll)).await
    }

    /// The record `id` as a peek answers it (`poll`, when known, spares its decryption).
    async fn peek_id(&self, id: &RecordId, poll: Option<&PollId>) -> Result<Outcome, EngineError> {
        let Some(snap) = self.seen(self.0.records.load(id, poll).await)? else { return Ok(Outcome::expired()) };
        let now = self.0.clock.now_ms();
        if now >= snap.state.expires_at_ms {
            return Ok(Outcome::ended(snap.state.ending));
        }
        let mut o = self.outcome(&snap, Reply::Ok, now);
        o.detail = Some(Detail::of(&snap.app, &snap.state));
        Ok(o)
    }

    /// Registers a waiter in this node's views, then reads the record: a commit after
    /// the read wakes the waiter, one before it shows in the state read. One round trip.
    pub async fn watch(&self, poll: &PollId) -> Result<Watched, EngineError> {
        let id = self.0.records.id(poll);
        let held = self.hold(id.clone()).await;
        Ok((Some(self.peek_id(&id, Some(poll)).await?), held))
    }

    /// Registers a waiter in this node's views, then claims (see
    /// [`super::backend::Backend::claim_watching`]): one read, where a claim and then a
    /// watch read twice.
    pub async fn claim_watching(&self, poll: &PollId) -> Result<(Outcome, Option<oneshot::Receiver<()>>), EngineError> {
        let held = self.hold(self.0.records.id(poll)).await;
        Ok((self.apply(poll, Event::Claim).await?, held))
    }

    /// A waiter for the record `id` in this node's views, woken by its next commit; none
    /// when the views do not answer in time or are full (the poll is then not held).
    async fn hold(&self, id: RecordId) -> Option<oneshot::Receiver<()>> {
        let (tx, rx) = oneshot::channel();
        let sent = tokio::time::timeout(VIEWS_WAIT, self.0.views.send(Watch { id, tx })).await;
        matches!(sent, Ok(Ok(true))).then_some(rx)
    }

    /// Attempts made on this node and not yet past their deadline.
    pub fn live(&self) -> usize {
        let now = self.0.clock.now_ms();
        let made = self.made();
        let due: usize = made.by_deadline.range(..=now).map(|(_, v)| v.len()).sum();
        made.len - due
    }

    /// Polls this node holds waiters for right now (tests and the per-node dashboard).
    pub async fn views(&self) -> usize {
        self.0.views.send(CountViews).await.unwrap_or(0)
    }

    pub fn store_health(&self) -> Health {
        Health { store: "redis", up: self.0.up.load(Ordering::SeqCst), pending: 0 }
    }

    #[cfg(test)]
    pub(crate) fn records(&self) -> &Records {
        &self.0.records
    }

    /// Ends the attempts made here whose deadline passed (one `Timeout` step each). One
    /// that Redis cannot take now is tried again on the next sweep, while its record is
    /// still kept.
    async fn sweep_due(&self) {
        let now = self.0.clock.now_ms();
        if self.0.pruned_ms.load(Ordering::Relaxed) + PRUNE_EVERY_MS <= now {
            self.0.pruned_ms.store(now, Ordering::Relaxed);
            let _ = self.0.index.prune(now).await;
        }
        let due: Vec<(u64, PollId)> = {
            let mut made = self.made();
            let later = made.by_deadline.split_off(&(now + 1));
            let due = std::mem::replace(&mut made.by_deadline, later);
            let due: Vec<_> = due.into_iter().flat_map(|(at, v)| v.into_iter().map(move |p| (at, p))).collect();
            made.len -= due.len();
            due
        };
        for (at, poll) in due {
            if self.transition(&self.0.records.id(&poll), Some(&poll), &Event::Timeout).await.is_err()
                && now < at + record::GRACE_MS / 2
            {
                let mut made = self.made();
                made.by_deadline.entry(at).or_default().push(poll);
                made.len += 1;
            }
        }
    }
}

/// The sweep of one node, for as long as its engine lives.
async fn sweep(engine: Weak<Inner>) {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let Some(inner) = engine.upgrade() else { return };
        ClusterEngine(inner).sweep_due().await;
    }
}

/// Pings Redis every second while the node runs, so `/readyz` follows Redis even when
/// no request does; and counts the Redis Cluster connections opened anew since.
async fn probe(kv: Kv, up: Arc<AtomicBool>, metrics: Metrics) {
    use crate::kv::Class;
    let mut reopened = 0;
    loop {
        // Counted by the connections themselves (no metrics there): carried over here.
        let now = kv.reopened(Class::Fast) + kv.reopened(Class::Bulk);
        if now > reopened {
            metrics.redis_reopened(now - reopened);
            reopened = now;
        }
        let ok = redis::cmd("PING").query_async::<String>(&mut kv.conn(Class::Fast)).await.is_ok();
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

/// A new attempt's poll id and scene in one bucket (see [`Scene::bucket`]): a random
/// scene is drawn in the poll id's bucket ([`Scene::generate_in`]), a given scene (code
/// mode) keeps its own and the poll id is drawn until it matches (about 256 draws of a
/// SHA-256 each: a bucket is a hash of the poll id, which cannot be steered).
fn aligned(kind: crate::ids::PollKind, scene: Option<&Scene>) -> (PollId, Scene) {
    use crate::engine::admin::AttemptId;
    match scene {
        Some(s) => loop {
            let poll = PollId::generate_for(kind);
            if AttemptId::of(&poll).bucket() == s.bucket() {
                return (poll, s.clone());
            }
        },
        None => {
            let poll = PollId::generate_for(kind);
            let b = AttemptId::of(&poll).bucket();
            (poll, Scene::generate_in(b))
        }
    }
}
