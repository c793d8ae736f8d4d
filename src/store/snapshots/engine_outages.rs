//! The engine over a real Redis snapshot store that pauses and restarts (a private
//! `redis-server` per test, real time): a token withheld while its consumed state cannot
//! be stored, and every live attempt written again when an emptied Redis comes back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::redis::RedisStore;
use crate::engine::persist::{SnapshotStore, WriterConfig};
use crate::engine::tests::{engine_on, user};
use crate::engine::{Clock, Ending, EngineError, Event, Phase, Reply};
use crate::ids::PollId;

use crate::test_redis::RedisServer;

const APP: &str = "app";

fn registered() -> Event {
    Event::Scanned { openid: "o_reg".into(), user: Some(user()) }
}

fn newcomer() -> Event {
    Event::Scanned { openid: "o_new".into(), user: None }
}

async fn stored(s: &dyn SnapshotStore, poll: &PollId) -> (Phase, u64, Option<Ending>) {
    let snap = s.load(poll).await.unwrap().expect("a snapshot is stored");
    (snap.state.phase, snap.state.version, snap.state.ending)
}

/// Short budgets so the outage tests run in seconds of real time.
fn quick() -> WriterConfig {
    WriterConfig {
        ack_budget: Duration::from_millis(600),
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
    let store = Arc::new(RedisStore::new(
        &crate::kv::Kv::new(&redis.url(), "test").unwrap(),
        "sl:",
        crate::engine::persist::seal::Seal::new(b"test-secret"),
    ));
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
    let store = Arc::new(RedisStore::new(
        &crate::kv::Kv::new(&redis.url(), "test").unwrap(),
        "sl:",
        crate::engine::persist::seal::Seal::new(b"test-secret"),
    ));
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
