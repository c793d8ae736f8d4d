//! Engine durability. On tokio's paused clock over the memory store: write before
//! answer, restore with re-armed timers, waiting during recovery, supervision, shutdown.
//! On real time against a private Redis (paused, restarted): a token withheld while its
//! consumed state cannot be stored, and every live attempt written again when an
//! emptied Redis comes back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::tests::{engine_on, settle, user};
use super::*;
use crate::ids::PollId;
use crate::store::snapshots::memory::MemoryStore;
use crate::store::snapshots::redis::RedisStore;
use crate::store::snapshots::{SnapshotStore, WriterConfig};

#[path = "../../tests/support/redis_server.rs"]
mod redis_server;
use redis_server::RedisServer;

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
    assert_eq!(b.live().await.unwrap(), 1);
    let m = metrics.render();
    assert!(m.contains("scanlogin_restore_attempts{outcome=\"restored\"} 2"), "{m}");
    // Restoring the same snapshots twice starts nothing twice.
    assert_eq!(b.restore().await.restored, 0);
}

#[actix::test]
async fn a_poll_during_recovery_waits_for_its_attempt() {
    tokio::time::pause();
    let clock = Clock::new();
    let s = memory();
    let (a, _) = engine_on(s.clone(), 10, WriterConfig::default(), clock);
    let c = a.create(APP, Duration::from_secs(60)).await.unwrap();
    let (b, _) = engine_on(survivor(&s).await, 10, WriterConfig::default(), clock);
    let restoring = b.restore();
    assert_eq!(b.recovering(), Some(0));
    let (b2, poll) = (b.clone(), c.poll.clone());
    let waiting = actix::spawn(async move { b2.poll(&poll, Duration::ZERO).await });
    settle().await;
    assert!(!waiting.is_finished(), "an unknown uuid waits while restoring instead of answering expired");
    actix::spawn(restoring);
    let o = waiting.await.unwrap().unwrap();
    assert_eq!(o.phase, Phase::Loop);
    assert_eq!(b.recovering(), None);
    assert_eq!(b.poll(&PollId::generate(), Duration::ZERO).await.unwrap().phase, Phase::Expired);
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
    assert_eq!(e.crash(&c.poll).await.unwrap(), None);
    let o = e.poll(&c.poll, Duration::ZERO).await.unwrap();
    assert_eq!((o.phase, o.expires_in), (Phase::NotReg, 290), "restarted with its state and deadline");
    assert_eq!(e.poll(&other.poll, Duration::ZERO).await.unwrap().phase, Phase::Loop, "neighbours unharmed");
    assert_eq!(e.live().await.unwrap(), 2);
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

/// Short budgets so the outage tests run in seconds of real time.
fn quick() -> WriterConfig {
    WriterConfig {
        ack_budget: Duration::from_millis(200),
        call_budget: Duration::from_millis(400),
        probe_every: Duration::from_millis(100),
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        ..WriterConfig::default()
    }
}

async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix::test]
async fn a_token_is_withheld_while_its_consumed_state_cannot_be_stored() {
    let redis = RedisServer::start();
    let store = Arc::new(RedisStore::new(&redis.url(), "sl:").unwrap());
    let (e, metrics) = engine_on(store.clone(), 10, quick(), Clock::new());
    let c = e.create(APP, Duration::from_secs(300)).await.unwrap();
    e.apply_scene(APP, &c.scene, registered()).await.unwrap();
    redis.pause();
    for _ in 0..2 {
        let t = Instant::now();
        assert_eq!(e.poll(&c.poll, Duration::ZERO).await.unwrap_err(), EngineError::Unavailable);
        assert!(t.elapsed() < Duration::from_secs(2), "bounded wait: {:?}", t.elapsed());
    }
    // Ordinary transitions go on in memory, each answered within the ack budget.
    let t = Instant::now();
    let other = e.create(APP, Duration::from_secs(300)).await.unwrap();
    let o = e.apply_scene(APP, &other.scene, newcomer()).await.unwrap().unwrap();
    assert_eq!(o.phase, Phase::NotReg);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert!(!e.store_health().up);
    redis.resume();
    until("the store is back", async || e.store_health().up).await;
    let o = e.poll(&c.poll, Duration::ZERO).await.unwrap();
    assert!(matches!(o.reply, Reply::Token(_)), "the owed token is handed out once the store takes it");
    assert_eq!(e.poll(&c.poll, Duration::ZERO).await.unwrap().phase, Phase::Expired);
    assert_eq!(stored(&*store, &c.poll).await.2, Some(Ending::Consumed));
    until("the attempt changed during the outage is stored", async || {
        store.load(&other.poll).await.ok().flatten().is_some_and(|s| s.state.phase == Phase::NotReg)
    })
    .await;
    let m = metrics.render();
    assert!(m.contains("scanlogin_tokens_withheld_total 2"), "{m}");
    assert!(m.contains("scanlogin_snapshot_errors_total{op=\"write\",store=\"redis\"}"), "{m}");
}

#[actix::test]
async fn an_emptied_redis_gets_every_live_attempt_again() {
    let mut redis = RedisServer::start();
    let store = Arc::new(RedisStore::new(&redis.url(), "sl:").unwrap());
    let (e, _) = engine_on(store.clone(), 10, quick(), Clock::new());
    let a = e.create(APP, Duration::from_secs(300)).await.unwrap();
    let b = e.create(APP, Duration::from_secs(300)).await.unwrap();
    e.apply_scene(APP, &a.scene, newcomer()).await.unwrap();
    until("the writer saw the store", async || store.load(&b.poll).await.ok().flatten().is_some()).await;
    redis.restart();
    until("both attempts are written again", async || {
        let a = store.load(&a.poll).await.ok().flatten();
        let b = store.load(&b.poll).await.ok().flatten();
        a.is_some_and(|s| s.state.phase == Phase::NotReg) && b.is_some_and(|s| s.state.phase == Phase::Loop)
    })
    .await;
}
