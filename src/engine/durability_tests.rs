//! Engine durability on tokio's paused clock over the memory store: write before
//! answer, restore with re-armed timers, waiting during recovery, supervision, shutdown.
//! (The same engine against a real Redis that pauses and restarts is tested beside the
//! Redis store, `store::snapshots::engine_outages`.)

use std::sync::Arc;
use std::time::Duration;

use super::persist::memory::MemoryStore;
use super::persist::{BoxFuture, Page, Probe, Snapshot, SnapshotStore, StoreError, WriterConfig};
use super::tests::{engine_on, hold_polls, settle, user};
use super::*;
use crate::ids::PollId;

const APP: &str = "app";

fn memory() -> Arc<MemoryStore> {
    Arc::new(MemoryStore::new())
}

/// What a crash leaves: the store's contents, in a store the old engine no longer feeds.
async fn survivor(s: &MemoryStore) -> Arc<MemoryStore> {
    let copy = MemoryStore::new();
    let page = s.load_page(None).await.unwrap();
    copy.write(&page.snapshots).await.unwrap();
    Arc::new(copy)
}

async fn stored(s: &dyn SnapshotStore, poll: &PollId) -> (Phase, u64, Option<Ending>) {
    let snap = s.load(poll).await.unwrap().expect("a snapshot is stored");
    (snap.state.phase, snap.state.version, snap.state.ending)
}

fn registered() -> Event {
    Event::Scanned { openid: "o_reg".into(), user: Some(user()) }
}

fn newcomer() -> Event {
    Event::Scanned { openid: "o_new".into(), user: None }
}

#[actix::test]
async fn every_answer_comes_after_its_snapshot() {
    tokio::time::pause();
    let s = memory();
    let clock = Clock::new();
    let (e, _) = engine_on(s.clone(), 10, WriterConfig::default(), clock);
    let c = e.create(APP, Duration::from_secs(300)).await.unwrap();
    assert_eq!(stored(&*s, &c.poll).await, (Phase::Loop, 0, None), "the QR is answered once it is stored");
    let o = e.apply_scene(APP, &c.scene, registered()).await.unwrap().unwrap();
    assert_eq!(o.phase, Phase::Reg);
    assert_eq!(stored(&*s, &c.poll).await, (Phase::Reg, 1, None));
    let o = e.poll(&c.poll, Duration::ZERO).await.unwrap();
    assert!(matches!(o.reply, Reply::Token(_)));
    assert_eq!(stored(&*s, &c.poll).await, (Phase::Expired, 2, Some(Ending::Consumed)), "consumed before the token");
}

/// An attempt an operator ended keeps answering `reason: ended` after a restart: its
/// ended snapshot carries the ending, and the restore remembers it until its deadline.
#[actix::test]
async fn an_ended_attempt_still_says_so_after_a_restart() {
    tokio::time::pause();
    let clock = Clock::new();
    let s = memory();
    let (a, _) = engine_on(s.clone(), 10, WriterConfig::default(), clock);
    let c = a.create(APP, Duration::from_secs(300)).await.unwrap();
    let other = a.create(APP, Duration::from_secs(300)).await.unwrap();
    a.apply_scene(APP, &other.scene, registered()).await.unwrap();
    assert!(matches!(a.poll(&other.poll, Duration::ZERO).await.unwrap().reply, Reply::Token(_)));
    a.admin_end(admin::AttemptId::of(&c.poll)).await.unwrap().expect("a live attempt");
    settle().await;
    assert_eq!(stored(&*s, &c.poll).await.2, Some(Ending::Ended));
    let (b, _) = engine_on(survivor(&s).await, 10, WriterConfig::default(), clock);
    b.restore().await;
    let o = b.poll(&c.poll, Duration::ZERO).await.unwrap();
    assert_eq!((o.phase, o.ending), (Phase::Expired, Some(Ending::Ended)));
    let o = b.poll(&other.poll, Duration::ZERO).await.unwrap();
    assert_eq!((o.phase, o.ending), (Phase::Expired, None), "a consumed attempt gives no reason");
    tokio::time::advance(Duration::from_secs(301)).await;
    assert_eq!(b.poll(&c.poll, Duration::ZERO).await.unwrap().ending, None, "forgotten at its deadline");
}

#[actix::test]
async fn restore_rearms_timers_from_the_absolute_expiry_and_drops_the_rest() {
    tokio::time::pause();
    let clock = Clock::new();
    let s = memory();
    let (a, _) = engine_on(s.clone(), 10, WriterConfig::default(), clock);
    let brief = a.create(APP, Duration::from_secs(5)).await.unwrap();
    let short = a.create(APP, Duration::from_secs(100)).await.unwrap();
    let long = a.create(APP, Duration::from_secs(300)).await.unwrap();
    let done = a.create(APP, Duration::from_secs(300)).await.unwrap();
    settle().await;
    a.apply_scene(APP, &long.scene, newcomer()).await.unwrap();
    a.apply_scene(APP, &done.scene, registered()).await.unwrap();
    assert!(matches!(a.poll(&done.poll, Duration::ZERO).await.unwrap().reply, Reply::Token(_)));
    tokio::time::advance(Duration::from_secs(3)).await;
    // The process dies here; it is down for 7 s.
    let s2 = survivor(&s).await;
    tokio::time::advance(Duration::from_secs(7)).await;
    let (b, metrics) = engine_on(s2, 10, WriterConfig::default(), clock);
    let report = b.restore().await;
    assert_eq!((report.restored, report.expired, report.ended, report.corrupt), (2, 1, 1, 0), "{report:?}");
    settle().await;
    let o = b.poll(&short.poll, Duration::ZERO).await.unwrap();
    assert_eq!((o.phase, o.expires_in), (Phase::Loop, 90));
    let o = b.poll(&long.poll, Duration::ZERO).await.unwrap();
    assert_eq!((o.phase, o.expires_in), (Phase::NotReg, 290));
    for gone in [&brief.poll, &done.poll] {
        assert_eq!(b.poll(gone, Duration::ZERO).await.unwrap().phase, Phase::Expired);
    }
    // The re-armed timer fires at the original deadline, not 100 s after the restore.
    tokio::time::advance(Duration::from_secs(89)).await;
    settle().await;
    assert_eq!(b.poll(&short.poll, Duration::ZERO).await.unwrap().phase, Phase::Loop);
    tokio::time::advance(Duration::from_millis(1001)).await;
    settle().await;
    assert_eq!(b.live(), 1);
    let m = metrics.render();
    assert!(m.contains("scanlogin_restore_attempts{outcome=\"restored\"} 2"), "{m}");
    // Restoring the same snapshots twice starts nothing twice.
    assert_eq!(b.restore().await.restored, 0);
}

/// Confirmation on the phone survives a crash: a `scanned` attempt comes back with its
/// ticket (and its requester), and a denied one still tells its reason.
#[actix::test]
async fn a_restart_keeps_a_scanned_attempt_its_ticket_and_a_denial_its_reason() {
    tokio::time::pause();
    let clock = Clock::new();
    let s = memory();
    let (a, _) = engine_on(s.clone(), 10, WriterConfig::default(), clock);
    let by = Requester::new("198.51.100.4", "Firefox/128.0");
    let waiting =
        a.create_by(APP, Duration::from_secs(300), crate::ids::PollKind::Direct, Some(by.clone())).await.unwrap();
    let denied = a.create(APP, Duration::from_secs(300)).await.unwrap();
    let scan = |ticket| Event::ScannedToConfirm { openid: "o_reg".into(), user: Some(user()), ticket };
    a.apply_scene(APP, &waiting.scene, scan([1; 32])).await.unwrap();
    a.apply_scene(APP, &denied.scene, scan([2; 32])).await.unwrap();
    let o = a.apply_ticket(&[2; 32], Event::Deny { ticket: [2; 32] }).await.unwrap().unwrap();
    assert_eq!(o.phase, Phase::Expired);
    settle().await;
    let (b, _) = engine_on(survivor(&s).await, 10, WriterConfig::default(), clock);
    b.restore().await;
    settle().await;
    let o = b.poll(&denied.poll, Duration::ZERO).await.unwrap();
    assert_eq!((o.phase, o.reason()), (Phase::Expired, Some("denied")));
    assert_eq!(b.poll(&waiting.poll, Duration::ZERO).await.unwrap().phase, Phase::Scanned);
    let seen = b.peek_ticket(&[1; 32]).await.unwrap().expect("the ticket finds its restored attempt");
    assert_eq!(seen.detail.and_then(|d| d.requester), Some(by));
    let o = b.apply_ticket(&[1; 32], Event::Confirm { ticket: [1; 32] }).await.unwrap().unwrap();
    assert_eq!(o.phase, Phase::Reg);
    assert!(matches!(b.poll(&waiting.poll, Duration::ZERO).await.unwrap().reply, Reply::Token(_)));
}

/// Code mode survives a crash: the restored attempt still holds its code's scene (a text
/// push of the code finds it, a new attempt cannot take it).
#[actix::test]
async fn a_restart_keeps_a_code_attempt_and_its_code() {
    tokio::time::pause();
    let clock = Clock::new();
    let s = memory();
    let (a, _) = engine_on(s.clone(), 10, WriterConfig::default(), clock);
    let scene = crate::ids::Scene::of_code(&[7; 16]);
    let new = || crate::engine::NewAttempt {
        app: APP.into(),
        ttl: Duration::from_secs(300),
        kind: crate::ids::PollKind::Direct,
        requester: None,
        scene: Some(scene.clone()),
    };
    let c = a.create_with(new()).await.unwrap();
    settle().await;
    let (b, _) = engine_on(survivor(&s).await, 10, WriterConfig::default(), clock);
    b.restore().await;
    settle().await;
    assert_eq!(b.create_with(new()).await.unwrap_err(), crate::engine::EngineError::SceneTaken);
    let o = b.apply_scene(APP, &scene, Event::Scanned { openid: "o_reg".into(), user: Some(user()) }).await.unwrap();
    assert_eq!(o.map(|o| o.phase), Some(Phase::Reg), "the code still works");
    assert!(matches!(b.poll(&c.poll, Duration::ZERO).await.unwrap().reply, Reply::Token(_)));
}

/// An engine that made one attempt and crashed, and the next one on what it left (on a
/// paused clock): the attempt's poll id, and the new engine, not yet restoring.
async fn crashed_with_one_attempt() -> (LoginsHandle, PollId) {
    tokio::time::pause();
    let clock = Clock::new();
    let s = memory();
    let (a, _) = engine_on(s.clone(), 10, WriterConfig::default(), clock);
    let c = a.create(APP, Duration::from_secs(60)).await.unwrap();
    let (b, _) = engine_on(survivor(&s).await, 10, WriterConfig::default(), clock);
    (b, c.poll)
}

#[actix::test]
async fn a_poll_during_recovery_waits_for_its_attempt() {
    let (b, poll) = crashed_with_one_attempt().await;
    let restoring = b.restore();
    assert_eq!(b.recovering(), Some(0));
    let b2 = b.clone();
    let waiting = actix::spawn(async move { b2.poll(&poll, Duration::ZERO).await });
    settle().await;
    assert!(!waiting.is_finished(), "an unknown uuid waits while restoring instead of answering expired");
    actix::spawn(restoring);
    let o = waiting.await.unwrap().unwrap();
    assert_eq!(o.phase, Phase::Loop);
    assert_eq!(b.recovering(), None);
    assert_eq!(b.poll(&PollId::generate(), Duration::ZERO).await.unwrap().phase, Phase::Expired);
}

/// A restore that does not finish: a poll for an attempt not yet restored waits exactly
/// [`RECOVERY_WAIT`] (3 s), then is refused as overloaded (503), never `expired`.
#[actix::test]
async fn a_poll_during_a_stuck_restore_waits_3_s_then_is_refused() {
    use super::recovering::RECOVERY_WAIT;
    let (b, poll) = crashed_with_one_attempt().await;
    let _stuck = b.restore(); // never run: the restore does not move on
    assert_eq!(b.recovering(), Some(0));
    let start = tokio::time::Instant::now();
    let waiting = actix::spawn(async move { b.poll(&poll, Duration::ZERO).await });
    tokio::time::sleep(RECOVERY_WAIT - Duration::from_millis(1)).await;
    assert!(!waiting.is_finished(), "still waiting just before {RECOVERY_WAIT:?}");
    let answer = waiting.await.unwrap();
    assert!(matches!(answer, Err(EngineError::Overloaded)), "{answer:?}");
    let waited = start.elapsed();
    assert!(waited >= RECOVERY_WAIT && waited < RECOVERY_WAIT + Duration::from_millis(10), "{waited:?}");
}

#[actix::test]
async fn a_crashed_attempt_is_restarted_from_its_snapshot() {
    tokio::time::pause();
    let (e, metrics) = engine_on(memory(), 10, WriterConfig::default(), Clock::new());
    let c = e.create(APP, Duration::from_secs(300)).await.unwrap();
    let other = e.create(APP, Duration::from_secs(300)).await.unwrap();
    settle().await;
    e.apply_scene(APP, &c.scene, newcomer()).await.unwrap();
    tokio::time::advance(Duration::from_secs(10)).await;
    // The planted panic kills the actor; the command that killed it is not retried.
    assert_eq!(e.backend().as_local().unwrap().crash(&c.poll).await.unwrap(), None);
    let o = e.poll(&c.poll, Duration::ZERO).await.unwrap();
    assert_eq!((o.phase, o.expires_in), (Phase::NotReg, 290), "restarted with its state and deadline");
    assert_eq!(e.poll(&other.poll, Duration::ZERO).await.unwrap().phase, Phase::Loop, "neighbours unharmed");
    assert_eq!(e.live(), 2);
    let m = metrics.render();
    assert!(m.contains("scanlogin_attempt_restarts_total{result=\"restarted\"} 1"), "{m}");
    assert!(m.contains("scanlogin_live_attempts{app=\"app\",state=\"not_reg\"} 1"), "{m}");
    // The restarted actor keeps the original deadline.
    settle().await;
    tokio::time::advance(Duration::from_secs(291)).await;
    settle().await;
    assert_eq!(e.poll(&c.poll, Duration::ZERO).await.unwrap().phase, Phase::Expired);
}

#[actix::test]
async fn closing_answers_held_polls_at_once() {
    tokio::time::pause();
    let (e, _) = engine_on(memory(), 10, WriterConfig::default(), Clock::new());
    let c = e.create(APP, Duration::from_secs(300)).await.unwrap();
    settle().await;
    let (e2, poll) = (e.clone(), c.poll.clone());
    let held = actix::spawn(async move { e2.poll(&poll, Duration::from_secs(25)).await });
    settle().await;
    let t = tokio::time::Instant::now();
    e.close();
    let o = held.await.unwrap().unwrap();
    assert_eq!(o.phase, Phase::Loop);
    assert!(t.elapsed() < Duration::from_secs(1));
    let t = tokio::time::Instant::now();
    e.poll(&c.poll, Duration::from_secs(25)).await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(1), "no new poll is held while closing");
}

/// The memory store with a write latency: a store that is up (probes answer at once)
/// but slow to take writes.
#[derive(Default)]
struct SlowStore {
    inner: MemoryStore,
    write_ms: std::sync::atomic::AtomicU64,
}

impl SlowStore {
    fn set(&self, ms: u64) {
        self.write_ms.store(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl SnapshotStore for SlowStore {
    fn name(&self) -> &'static str {
        "memory"
    }
    fn write<'a>(&'a self, batch: &'a [Snapshot]) -> BoxFuture<'a, Result<(), StoreError>> {
        let ms = self.write_ms.load(std::sync::atomic::Ordering::SeqCst);
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            self.inner.write(batch).await
        })
    }
    fn load_page(&self, cursor: Option<String>) -> BoxFuture<'_, Result<Page, StoreError>> {
        self.inner.load_page(cursor)
    }
    fn load<'a>(&'a self, poll: &'a PollId) -> BoxFuture<'a, Result<Option<Snapshot>, StoreError>> {
        self.inner.load(poll)
    }
    fn probe(&self) -> BoxFuture<'_, Result<Probe, StoreError>> {
        self.inner.probe()
    }
    fn purge(&self, now_ms: u64) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.inner.purge(now_ms)
    }
}

/// With the production budgets, a store that stops answering is marked down at the end
/// of one call's budget, and the steps waiting on it go on in degraded mode: the caller's
/// own wait for the engine must outlast the writer's ack budget, or it answers
/// `overloaded` first.
#[actix::test]
async fn a_store_that_hangs_is_marked_down_before_the_caller_gives_up() {
    tokio::time::pause();
    let s = Arc::new(SlowStore::default());
    let (e, _) = engine_on(s.clone(), 10, WriterConfig::default(), Clock::new());
    s.set(600_000);
    let started = tokio::time::Instant::now();
    let c = e.create(APP, Duration::from_secs(300)).await;
    assert!(c.is_ok(), "degraded mode, not overloaded: {:?} after {:?}", c.err(), started.elapsed());
    assert!(!e.store_health().up, "the hung store is known down");
    let waited = started.elapsed();
    assert!(waited >= WriterConfig::default().call_budget && waited < WriterConfig::default().ack_budget, "{waited:?}");
}

#[actix::test]
async fn a_store_that_is_up_but_slow_gets_no_acknowledgement_ahead_of_it() {
    tokio::time::pause();
    let s = Arc::new(SlowStore::default());
    let cfg = WriterConfig { ack_budget: Duration::from_millis(500), ..WriterConfig::default() };
    let (e, metrics) = engine_on(s.clone(), 10, cfg, Clock::new());
    s.set(1_000);
    assert_eq!(e.create(APP, Duration::from_secs(300)).await.unwrap_err(), EngineError::Overloaded, "no QR unstored");
    s.set(0);
    tokio::time::sleep(Duration::from_secs(1)).await; // the refused one's write lands
    let c = e.create(APP, Duration::from_secs(300)).await.unwrap();
    s.set(1_000);
    let scan = e.apply_scene(APP, &c.scene, newcomer()).await;
    assert_eq!(scan.unwrap_err(), EngineError::Overloaded, "a scan is not acknowledged before it is stored");
    assert_eq!(e.peek(&c.poll).await.unwrap().phase, Phase::NotReg, "memory has it; the store will");
    // WeChat's retry while that write is still under way: it waits, and is refused too.
    let retry = e.apply_scene(APP, &c.scene, newcomer()).await;
    assert_eq!(retry.unwrap_err(), EngineError::Overloaded, "a duplicate does not acknowledge blindly");
    s.set(0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let o = e.apply_scene(APP, &c.scene, newcomer()).await.unwrap().unwrap();
    assert_eq!(o.phase, Phase::NotReg, "the retry finds the state, stored");
    assert_eq!(stored(&s.inner, &c.poll).await.0, Phase::NotReg);
    assert!(e.store_health().up, "slow is not down: no degraded mode");
    assert!(metrics.render().contains("scanlogin_snapshot_errors_total{op=\"late\",store=\"memory\"} 3"));
}

#[actix::test]
async fn a_waiting_attempt_is_no_actor_until_it_acts() {
    tokio::time::pause();
    let s = memory();
    let (e, _) = engine_on(s.clone(), 10, WriterConfig::default(), Clock::new());
    let (a, b, c) = (
        e.create(APP, Duration::from_secs(60)).await.unwrap(),
        e.create(APP, Duration::from_secs(60)).await.unwrap(),
        e.create(APP, Duration::from_secs(60)).await.unwrap(),
    );
    settle().await;
    // Reads are answered from the idle records.
    for p in [&a.poll, &b.poll, &c.poll] {
        let o = e.poll(p, Duration::ZERO).await.unwrap();
        assert_eq!((o.phase, o.expires_in), (Phase::Loop, 60));
        assert_eq!(e.peek(p).await.unwrap().detail.unwrap().app, APP);
    }
    assert_eq!(e.backend().as_local().unwrap().active_actors().await, 0, "polls and peeks start no actor");
    // A scan is an act: the attempt is an actor from then on, and stored first.
    let o = e.apply_scene(APP, &a.scene, newcomer()).await.unwrap().unwrap();
    assert_eq!(o.phase, Phase::NotReg);
    assert_eq!(o.detail.unwrap().openid.as_deref(), Some("o_new"), "a scan answer names its owner");
    assert_eq!(stored(&*s, &a.poll).await, (Phase::NotReg, 1, None));
    assert_eq!(e.backend().as_local().unwrap().active_actors().await, 1);
    // A held poll waits on the idle record, no actor for it; the scan starts the actor,
    // which takes the poll over and wakes it.
    let (e2, bp) = (e.clone(), b.poll.clone());
    let held = tokio::spawn(async move { e2.poll(&bp, Duration::from_secs(30)).await });
    settle().await;
    assert_eq!(e.backend().as_local().unwrap().active_actors().await, 1, "a held poll starts no actor");
    e.apply_scene(APP, &b.scene, registered()).await.unwrap();
    assert!(matches!(held.await.unwrap().unwrap().reply, Reply::Token(_)));
    settle().await;
    assert_eq!((e.backend().as_local().unwrap().active_actors().await, e.live()), (1, 2), "the consumed one ended");
}

#[actix::test]
async fn polls_held_on_an_idle_attempt_wake_when_it_expires() {
    tokio::time::pause();
    let (e, _) = engine_on(memory(), 10, WriterConfig::default(), Clock::new());
    let c = e.create(APP, Duration::from_secs(5)).await.unwrap();
    settle().await;
    let started = tokio::time::Instant::now();
    let held = hold_polls(&e, &c.poll, 3, Duration::from_secs(30));
    settle().await;
    assert_eq!(e.backend().as_local().unwrap().active_actors().await, 0, "held polls start no actor");
    tokio::time::advance(Duration::from_millis(5_010)).await;
    for h in held {
        assert_eq!(h.await.unwrap().phase, Phase::Expired);
    }
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(5) && waited < Duration::from_secs(6), "woken at the deadline: {waited:?}");
    assert_eq!(e.backend().as_local().unwrap().active_actors().await, 0, "expiry needs no actor");
}

#[actix::test]
async fn an_idle_attempt_holds_a_bounded_number_of_polls() {
    tokio::time::pause();
    let (e, _) = engine_on(memory(), 10, WriterConfig::default(), Clock::new());
    let c = e.create(APP, Duration::from_secs(60)).await.unwrap();
    settle().await;
    let held = hold_polls(&e, &c.poll, crate::engine::waiters::MAX_WAITERS, Duration::from_secs(30));
    settle().await;
    // One more than the cap answers at once, still `loop`.
    let before = tokio::time::Instant::now();
    let extra = e.poll(&c.poll, Duration::from_secs(30)).await.unwrap();
    assert_eq!((extra.phase, before.elapsed()), (Phase::Loop, Duration::ZERO));
    // The held ones are all woken by the scan.
    e.apply_scene(APP, &c.scene, newcomer()).await.unwrap();
    for h in held {
        assert_eq!(h.await.unwrap().phase, Phase::NotReg);
    }
}

#[actix::test]
async fn an_idle_attempt_expires_on_the_registry_timer() {
    tokio::time::pause();
    let s = memory();
    let (e, metrics) = engine_on(s.clone(), 10, WriterConfig::default(), Clock::new());
    let short = e.create(APP, Duration::from_secs(5)).await.unwrap();
    let long = e.create(APP, Duration::from_secs(50)).await.unwrap();
    settle().await;
    // (Timers tick in whole milliseconds: a few either side of the deadline.)
    tokio::time::advance(Duration::from_millis(4_990)).await;
    settle().await;
    assert_eq!(e.live(), 2, "not before its deadline");
    tokio::time::advance(Duration::from_millis(20)).await;
    settle().await;
    assert_eq!(e.live(), 1, "at its deadline");
    assert_eq!(e.poll(&short.poll, Duration::ZERO).await.unwrap().phase, Phase::Expired);
    e.flush(tokio::time::Instant::now() + Duration::from_secs(1)).await;
    assert_eq!(stored(&*s, &short.poll).await, (Phase::Expired, 1, Some(Ending::Timeout)));
    let m = metrics.render();
    assert!(m.contains("scanlogin_attempts_finished_total{app=\"app\",outcome=\"expired\"} 1"), "{m}");
    assert!(m.contains("scanlogin_live_attempts{app=\"app\",state=\"loop\"} 1"), "{m}");
    assert_eq!(e.backend().as_local().unwrap().active_actors().await, 0, "expiry needs no actor");
    // The timer re-arms for the next deadline.
    tokio::time::advance(Duration::from_secs(45)).await;
    settle().await;
    assert_eq!(e.live(), 0);
    assert_eq!(e.poll(&long.poll, Duration::ZERO).await.unwrap().phase, Phase::Expired);
}
