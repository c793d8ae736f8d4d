//! The registry's table of live attempts: one compact record per attempt, found by poll
//! id or by (app, scene), and the deadlines of the idle ones.
//!
//! Passivation: a `loop` attempt that only waits (no scan yet, nobody holding a poll on
//! it) is not an actor. It is an [`Idle`] record here — its expiry, version and creation
//! time; the rest of a `loop` state is empty by definition — and the registry answers
//! reads of it (status polls, peeks) itself, in one hop. The first event that would make
//! it act (a scan, a held poll, its deadline) starts its actor from the record, and from
//! then on the attempt is an actor until it ends. That is what keeps a live attempt to a
//! few hundred bytes and a restore to inserting records (no actor per snapshot).
//!
//! Held polls on an idle record wait in the table too, not on an actor: a long poll of a
//! `loop` attempt is registered from the HTTP worker's thread, in the same lock as the
//! read that saw it idle, and starts nothing. When the record acts its actor takes them
//! over (they wake on its first change); when it goes away they are dropped, which wakes
//! them to read `expired`. So thousands of polls re-held at once (a timeout wave, every
//! browser back after a restart) cost the registry nothing, and a scan waiting behind
//! them in its mailbox is not delayed.
//!
//! Records sit in a slab addressed by [`Key`]; the two indexes map a keyed hash of the
//! poll id / of (app, scene) to the key, and every hit is checked against the record's
//! own ids, so neither index stores an id twice. The hash is keyed per process
//! (`RandomState`), so nobody outside can aim for a collision; a collision anyway (two
//! live attempts, one hash) goes to a small spill list and is still found.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::Arc;

use std::sync::{Mutex, MutexGuard};

use actix::Addr;
use tokio::sync::oneshot;

use super::attempt::{Attempt, Cmd};
use super::outcome::{Detail, Outcome};
use super::persist::Snapshot;
use super::retired::Retired;
use super::state::{AttemptState, Ending, Event, Phase, Reply, Requester, Rules, Step, step};
use super::tombstones::Tombstones;
use super::waiters::Waiters;
use crate::ids::{LoginMode, PollId, Scene};

/// An app name, shared by all its attempts.
pub type AppName = Arc<str>;

/// A passive `loop` attempt: what its actor needs to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Idle {
    pub expires_at_ms: u64,
    pub version: u64,
    /// When it was made (the login-latency histograms); `None` in older snapshots.
    pub created_ms: Option<u64>,
    /// The store acknowledged this version (restored ones, or a create that waited).
    pub stored: bool,
}

pub enum Body {
    Idle(Idle),
    /// A running actor, and the attempt's expiry (which never changes): should the actor
    /// die, its snapshot is found by key.
    Active(Addr<Attempt>, u64),
}

pub struct Record {
    pub poll: PollId,
    pub scene: Scene,
    pub app: AppName,
    pub body: Body,
    /// Who asked for the login: an idle record's state has no room for it.
    pub requester: Option<Box<Requester>>,
    /// The hash of its confirmation ticket, once it has one (the ticket index's key).
    pub ticket: Option<[u8; 32]>,
}

impl Record {
    /// This attempt in `state`, as a store keeps it.
    pub fn snapshot(&self, mut state: AttemptState) -> Snapshot {
        if state.requester.is_none() {
            state.requester = self.requester.as_deref().cloned();
        }
        Snapshot { poll: self.poll.clone(), scene: self.scene.clone(), app: self.app.to_string(), state }
    }

    /// The snapshot an idle record stands for; `None` for an active one (its actor has it).
    pub fn idle_snapshot(&self) -> Option<Snapshot> {
        match &self.body {
            Body::Idle(i) => Some(self.snapshot(i.state())),
            Body::Active(..) => None,
        }
    }
}

/// A record as a listing sees it: where it sits, its ids, and its state when idle (an
/// active one's state is its actor's).
pub struct Listed {
    pub slot: u32,
    pub poll: PollId,
    pub app: AppName,
    pub idle: Option<Idle>,
    /// An idle record's requester's address (an active one's is its actor's).
    pub client_ip: Option<String>,
    pub mode: LoginMode,
}

/// One record's place; stale (finds nothing) once that record is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    idx: u32,
    epoch: u32,
}

struct Slot {
    epoch: u32,
    rec: Option<Record>,
}

/// The hashes are already keyed SipHash output: the inner maps use them as they are.
#[derive(Default)]
struct Passthrough(u64);

impl Hasher for Passthrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type ByHash<V> = HashMap<u64, V, BuildHasherDefault<Passthrough>>;

/// hash → key, with a spill list for the (keyed, so accidental) collision.
#[derive(Default)]
struct HashIndex {
    first: ByHash<Key>,
    spill: ByHash<Vec<Key>>,
}

impl HashIndex {
    fn insert(&mut self, h: u64, key: Key) {
        match self.first.entry(h) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(key);
            }
            std::collections::hash_map::Entry::Occupied(_) => self.spill.entry(h).or_default().push(key),
        }
    }

    fn find(&self, h: u64, is: impl Fn(Key) -> bool) -> Option<Key> {
        if let Some(k) = self.first.get(&h).copied().filter(|k| is(*k)) {
            return Some(k);
        }
        self.spill.get(&h)?.iter().copied().find(|k| is(*k))
    }

    fn remove(&mut self, h: u64, key: Key) {
        if self.first.get(&h) == Some(&key) {
            self.first.remove(&h);
            if let Some(v) = self.spill.get_mut(&h) {
                if let Some(k) = v.pop() {
                    self.first.insert(h, k);
                }
                if v.is_empty() {
                    self.spill.remove(&h);
                }
            }
        } else if let Some(v) = self.spill.get_mut(&h) {
            v.retain(|k| *k != key);
            if v.is_empty() {
                self.spill.remove(&h);
            }
        }
    }
}

#[derive(Default)]
pub struct Table {
    slots: Vec<Slot>,
    free: Vec<u32>,
    len: usize,
    by_poll: HashIndex,
    by_scene: HashIndex,
    apps: HashSet<AppName>,
    /// Records that were idle when listed, by deadline (ms). Entries are not taken out
    /// when a record goes active or away: `due` skips those (a key of a removed record
    /// never matches again), which keeps listing and ending a record cheap.
    deadlines: BTreeMap<u64, Vec<Key>>,
    /// Held polls on idle records (only those that have one): dropping a sender wakes
    /// its poll, which reads the state again.
    waiters: HashMap<Key, Waiters>,
    hasher: RandomState,
    /// Confirmation tickets (their SHA-256: random, nobody aims at it) → the record.
    tickets: HashMap<[u8; 32], Key>,
    /// Why attempts that left the table ended, where the answer tells it.
    ended: Tombstones,
    /// Code mode scenes of ended attempts, not to be issued again yet.
    retired: Retired,
}

impl Table {
    pub fn len(&self) -> usize {
        self.len
    }

    fn poll_hash(&self, poll: &PollId) -> u64 {
        self.hasher.hash_one(poll.as_str())
    }

    fn scene_hash(&self, app: &str, scene: &Scene) -> u64 {
        self.hasher.hash_one((app, scene.as_str()))
    }

    fn app(&mut self, app: &str) -> AppName {
        if let Some(a) = self.apps.get(app) {
            return a.clone();
        }
        let a: AppName = Arc::from(app);
        self.apps.insert(a.clone());
        a
    }

    /// Adds a record (the caller checked the poll id is not in the table).
    pub fn insert(&mut self, poll: PollId, scene: Scene, app: &str, body: Body) -> Key {
        let (ph, sh) = (self.poll_hash(&poll), self.scene_hash(app, &scene));
        let deadline = match &body {
            Body::Idle(i) => Some(i.expires_at_ms),
            Body::Active(..) => None,
        };
        let rec = Record { poll, scene, app: self.app(app), body, requester: None, ticket: None };
        let key = match self.free.pop() {
            Some(idx) => {
                let slot = &mut self.slots[idx as usize];
                slot.rec = Some(rec);
                Key { idx, epoch: slot.epoch }
            }
            None => {
                let idx = u32::try_from(self.slots.len()).expect("fewer than 2^32 live attempts");
                self.slots.push(Slot { epoch: 0, rec: Some(rec) });
                Key { idx, epoch: 0 }
            }
        };
        self.len += 1;
        self.by_poll.insert(ph, key);
        self.by_scene.insert(sh, key);
        if let Some(d) = deadline {
            self.deadlines.entry(d).or_default().push(key);
        }
        key
    }

    pub fn get(&self, key: Key) -> Option<&Record> {
        self.slots.get(key.idx as usize).filter(|s| s.epoch == key.epoch).and_then(|s| s.rec.as_ref())
    }

    pub fn get_mut(&mut self, key: Key) -> Option<&mut Record> {
        self.slots.get_mut(key.idx as usize).filter(|s| s.epoch == key.epoch).and_then(|s| s.rec.as_mut())
    }

    pub fn find_poll(&self, poll: &PollId) -> Option<Key> {
        let h = self.poll_hash(poll);
        self.by_poll.find(h, |k| self.get(k).is_some_and(|r| r.poll == *poll))
    }

    pub fn find_scene(&self, app: &str, scene: &Scene) -> Option<Key> {
        let h = self.scene_hash(app, scene);
        self.by_scene.find(h, |k| self.get(k).is_some_and(|r| &*r.app == app && r.scene == *scene))
    }

    pub fn remove(&mut self, key: Key) -> Option<Record> {
        let slot = self.slots.get_mut(key.idx as usize).filter(|s| s.epoch == key.epoch)?;
        let rec = slot.rec.take()?;
        slot.epoch = slot.epoch.wrapping_add(1);
        self.free.push(key.idx);
        self.len -= 1;
        let (ph, sh) = (self.poll_hash(&rec.poll), self.scene_hash(&rec.app, &rec.scene));
        self.by_poll.remove(ph, key);
        self.by_scene.remove(sh, key);
        if let Some(t) = &rec.ticket {
            self.tickets.remove(t);
        }
        // The attempt is gone: its held polls wake and read `expired`.
        self.waiters.remove(&key);
        Some(rec)
    }

    /// Lists the confirmation ticket (its hash) of the record of `poll`.
    pub fn index_ticket(&mut self, poll: &PollId, ticket: [u8; 32]) {
        let Some(key) = self.find_poll(poll) else { return };
        if let Some(rec) = self.get_mut(key) {
            rec.ticket = Some(ticket);
            self.tickets.insert(ticket, key);
        }
    }

    /// The record whose confirmation ticket hashes to `ticket`.
    pub fn find_ticket(&self, ticket: &[u8; 32]) -> Option<Key> {
        self.tickets.get(ticket).copied().filter(|k| self.get(*k).is_some_and(|r| r.ticket.as_ref() == Some(ticket)))
    }

    /// Remembers why `poll` ended, for answers after its record is gone (see
    /// [`Tombstones`]).
    pub fn tombstone(&mut self, poll: &PollId, ending: Ending, until_ms: u64, now_ms: u64) {
        self.ended.insert(poll.clone(), ending, until_ms, now_ms);
    }

    /// A code mode attempt of (`app`, `scene`) that lived `lifetime_ms` ended now: its
    /// code is not issued again for that long. Other scenes are not remembered.
    pub fn retire(&mut self, app: &str, scene: &Scene, lifetime_ms: u64, now_ms: u64) {
        if scene.mode() == LoginMode::Code {
            self.retired.insert(app, scene, now_ms + lifetime_ms, now_ms);
        }
    }

    /// Whether (`app`, `scene`) ended too recently to be issued again.
    pub fn recently_ended_scene(&self, app: &str, scene: &Scene, now_ms: u64) -> bool {
        self.retired.holds(app, scene, now_ms)
    }

    /// Why `poll`, no longer in the table, ended (if that is still told).
    pub fn ended(&self, poll: &PollId, now_ms: u64) -> Option<Ending> {
        self.ended.get(poll, now_ms)
    }

    /// Idle records whose deadline is at or before `now_ms`, taken off the deadline list.
    pub fn due(&mut self, now_ms: u64) -> Vec<Key> {
        let mut out = Vec::new();
        while let Some(entry) = self.deadlines.first_entry() {
            if *entry.key() > now_ms {
                break;
            }
            let keys = entry.remove();
            out.extend(keys.into_iter().filter(|k| self.get(*k).is_some_and(|r| matches!(r.body, Body::Idle(_)))));
        }
        out
    }

    /// The earliest deadline still listed.
    pub fn next_deadline(&self) -> Option<u64> {
        self.deadlines.first_key_value().map(|(at, _)| *at)
    }

    /// Holds `tx` on the idle record at `key` until it acts or goes away (within the
    /// waiter cap, as on an actor).
    fn hold(&mut self, key: Key, tx: oneshot::Sender<()>) -> bool {
        self.waiters.entry(key).or_default().hold(tx)
    }

    /// The polls held on the idle record at `key`, for the actor that takes it over.
    pub fn take_waiters(&mut self, key: Key) -> Waiters {
        let mut held = self.waiters.remove(&key).unwrap_or_default();
        held.prune();
        held
    }

    /// Idle records with a held poll.
    #[cfg(test)]
    pub fn held_records(&self) -> usize {
        self.waiters.len()
    }

    /// Marks an idle record active (from now on the actor keeps its own timer). The
    /// caller took its held polls first ([`Table::take_waiters`]), in the same lock.
    pub fn activate(&mut self, key: Key, addr: Addr<Attempt>) -> Option<Idle> {
        let rec = self.get_mut(key)?;
        let expires_at_ms = match &rec.body {
            Body::Idle(i) => i.expires_at_ms,
            Body::Active(_, at) => *at,
        };
        match std::mem::replace(&mut rec.body, Body::Active(addr, expires_at_ms)) {
            Body::Idle(i) => Some(i),
            Body::Active(..) => None,
        }
    }

    /// Room for `n` more records without growing on the way (a restored page).
    pub fn reserve(&mut self, n: usize) {
        let spare = self.free.len();
        self.slots.reserve(n.saturating_sub(spare));
        self.by_poll.first.reserve(n);
        self.by_scene.first.reserve(n);
    }

    /// The records in slots `from..from + n` (the admin listing reads the table in such
    /// slices, each in one short hold of the lock), and the slot after the slice (`None`:
    /// the end of the table).
    pub fn slice(&self, from: u32, n: u32) -> (Vec<Listed>, Option<u32>) {
        let end = from.saturating_add(n);
        let listed = (from..end.min(self.slots.len() as u32))
            .filter_map(|idx| {
                let rec = self.slots[idx as usize].rec.as_ref()?;
                let idle = match &rec.body {
                    Body::Idle(i) => Some(*i),
                    Body::Active(..) => None,
                };
                let client_ip = rec.requester.as_ref().map(|r| r.ip.clone());
                let mode = rec.scene.mode();
                Some(Listed { slot: idx, poll: rec.poll.clone(), app: rec.app.clone(), idle, client_ip, mode })
            })
            .collect();
        (listed, ((end as usize) < self.slots.len()).then_some(end))
    }

    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.slots.iter().filter_map(|s| s.rec.as_ref())
    }

    /// What the idle attempt at `key` answers to `cmd` without acting, if it can: a read
    /// that changes nothing (a status poll, a peek). `None`: the command makes it act,
    /// or it is not idle, or its deadline passed (its actor must start and expire it).
    pub fn read(&self, key: Key, cmd: &Cmd, now_ms: u64, rules: &Rules) -> Option<Outcome> {
        let rec = self.get(key)?;
        let Body::Idle(i) = &rec.body else { return None };
        if now_ms >= i.expires_at_ms {
            return None;
        }
        let state = i.state();
        let read = |reply| Outcome::read(reply, Phase::Loop, i.expires_at_ms, now_ms);
        match cmd {
            Cmd::Peek => {
                let mut o = read(Reply::Ok);
                o.detail = Some(Detail::of(&rec.app, &rec.snapshot(state).state));
                Some(o)
            }
            Cmd::Apply(ev) => {
                let Step { state: next, reply, actions } = step(&state, ev, now_ms, rules);
                // A repeated scan must wait for the stored state: that is the actor's job.
                let acknowledges = matches!(ev, Event::Scanned { .. } | Event::CodeIssued { .. });
                let quiet = actions == Default::default() && next.phase == Phase::Loop;
                (quiet && (i.stored || !acknowledges)).then(|| read(reply))
            }
            _ => None,
        }
    }
}

impl Idle {
    /// The full machine state this record stands for.
    pub fn state(&self) -> AttemptState {
        AttemptState { version: self.version, created_ms: self.created_ms, ..AttemptState::new(self.expires_at_ms) }
    }
}

/// The table, shared: the registry actor is its only writer (every change of an attempt
/// still goes through the registry and the attempt's actor), while status polls and
/// peeks of idle attempts read it straight from the HTTP workers — no hop to another
/// thread for the commonest request. Every hold of the lock is a few hash lookups.
#[derive(Default)]
pub struct LiveTable(Mutex<Table>);

impl LiveTable {
    pub fn lock(&self) -> MutexGuard<'_, Table> {
        // A panic while holding it leaves the table consistent (no multi-step edits
        // are interrupted half-way that a reader could trip on): keep serving.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The answer to a read of the idle attempt `poll`, if it is one.
    pub fn read(&self, poll: &PollId, cmd: &Cmd, now_ms: u64, rules: &Rules) -> Option<Outcome> {
        let t = self.lock();
        let key = t.find_poll(poll)?;
        t.read(key, cmd, now_ms, rules)
    }

    /// A held poll on the idle attempt `poll`, registered here if it is one: its state
    /// now (read in the same lock, so no change can fall between) and the receiver that
    /// resolves on its next change. `None`: not idle (or past its deadline), ask the
    /// registry.
    /// The receiver is `None` when the record's waiters are full.
    pub fn watch(&self, poll: &PollId, now_ms: u64, rules: &Rules) -> Option<(Outcome, Option<oneshot::Receiver<()>>)> {
        let mut t = self.lock();
        let key = t.find_poll(poll)?;
        let seen = t.read(key, &Cmd::Apply(Event::Claim), now_ms, rules)?;
        let (tx, rx) = oneshot::channel();
        let held = t.hold(key, tx);
        Some((seen, held.then_some(rx)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle(at: u64) -> Body {
        Body::Idle(Idle { expires_at_ms: at, version: 0, created_ms: None, stored: false })
    }

    #[test]
    fn finds_by_poll_and_scene_and_forgets() {
        let mut t = Table::default();
        let (p, s) = (PollId::generate(), Scene::generate());
        let k = t.insert(p.clone(), s.clone(), "web", idle(10));
        assert_eq!(t.find_poll(&p), Some(k));
        assert_eq!(t.find_scene("web", &s), Some(k));
        assert_eq!(t.find_scene("tv", &s), None, "the scene belongs to its app");
        assert_eq!(t.find_poll(&PollId::generate()), None);
        assert_eq!(t.len(), 1);
        assert!(t.remove(k).is_some());
        assert_eq!((t.find_poll(&p), t.find_scene("web", &s), t.len()), (None, None, 0));
        // The slot is reused; the old key stays dead.
        let k2 = t.insert(PollId::generate(), Scene::generate(), "web", idle(10));
        assert_eq!(k2.idx, k.idx);
        assert!(t.get(k).is_none() && t.get(k2).is_some());
    }

    #[test]
    fn colliding_hashes_are_still_told_apart() {
        let mut idx = HashIndex::default();
        let (a, b, c) = (Key { idx: 1, epoch: 0 }, Key { idx: 2, epoch: 0 }, Key { idx: 3, epoch: 0 });
        idx.insert(7, a);
        idx.insert(7, b);
        idx.insert(7, c);
        assert_eq!(idx.find(7, |k| k == b), Some(b));
        idx.remove(7, a);
        assert_eq!(idx.find(7, |k| k == c), Some(c));
        assert_eq!(idx.find(7, |k| k == b), Some(b));
        assert_eq!(idx.find(7, |k| k == a), None);
        idx.remove(7, c);
        idx.remove(7, b);
        assert!(idx.first.is_empty() && idx.spill.is_empty());
    }

    #[test]
    fn held_polls_wake_when_their_record_goes_and_move_to_its_actor() {
        let shared = LiveTable::default();
        let rules = Rules::default();
        let (p, q) = (PollId::generate(), PollId::generate());
        let (kp, kq) = {
            let mut t = shared.lock();
            (
                t.insert(p.clone(), Scene::generate(), "web", idle(10_000)),
                t.insert(q.clone(), Scene::generate(), "web", idle(10_000)),
            )
        };
        let (seen, gone) = shared.watch(&p, 0, &rules).expect("an idle record holds the poll");
        let mut gone = gone.expect("held");
        assert_eq!(seen.phase, Phase::Loop);
        let mut moved = shared.watch(&q, 0, &rules).unwrap().1.expect("held");
        assert_eq!(shared.lock().held_records(), 2);
        assert!(shared.watch(&PollId::generate(), 0, &rules).is_none(), "unknown: ask the registry");
        assert!(shared.watch(&p, 10_000, &rules).is_none(), "past its deadline: its actor ends it");
        assert!(gone.try_recv().is_err_and(|e| e == oneshot::error::TryRecvError::Empty));
        shared.lock().remove(kp);
        assert_eq!(gone.try_recv(), Err(oneshot::error::TryRecvError::Closed), "woken as the record goes");
        // Handed over, not woken: the actor wakes it on its first change.
        let taken = shared.lock().take_waiters(kq);
        assert_eq!((taken.len(), shared.lock().held_records()), (1, 0));
        assert!(moved.try_recv().is_err_and(|e| e == oneshot::error::TryRecvError::Empty));
        drop(taken);
        assert_eq!(moved.try_recv(), Err(oneshot::error::TryRecvError::Closed));
    }

    #[test]
    fn due_returns_idle_records_in_deadline_order() {
        let mut t = Table::default();
        let late = t.insert(PollId::generate(), Scene::generate(), "web", idle(30));
        let early = t.insert(PollId::generate(), Scene::generate(), "web", idle(10));
        let gone = t.insert(PollId::generate(), Scene::generate(), "web", idle(20));
        t.remove(gone);
        assert_eq!(t.next_deadline(), Some(10));
        assert_eq!(t.due(5), vec![]);
        assert_eq!(t.due(30), vec![early, late]);
        assert_eq!(t.next_deadline(), None);
    }
}
