//! Engine tests on tokio's paused clock: expiry, long polls, the live cap, the token
//! handed out once — actors and registry exactly as in production, time controlled.

use std::sync::Arc;
use std::time::Duration;

use super::persist::memory::MemoryStore;
use super::persist::{Persister, SnapshotStore, WriterConfig};
use super::*;
use crate::ids::PollId;
use crate::metrics::Metrics;

/// An engine over `store` (its writer on the current runtime), with its metrics.
pub(crate) fn engine_on(
    store: Arc<dyn SnapshotStore>,
    max_live: usize,
    writer: WriterConfig,
    clock: Clock,
) -> (LoginsHandle, Metrics) {
    let metrics = Metrics::new();
    let (persister, task) = Persister::new(store, None, writer, metrics.clone());
    tokio::spawn(task);
    let cfg = EngineConfig { live_attempts_max: max_live, long_polls_max: 100, rules: Rules::default() };
    (LoginsHandle::start(cfg, clock, metrics.clone(), persister, None), metrics)
}

fn engine(max_live: usize) -> LoginsHandle {
    engine_on(Arc::new(MemoryStore::new()), max_live, WriterConfig::default(), Clock::new()).0
}

/// Lets freshly started actors run `started()` so timers are armed at t = 0.
pub(super) async fn settle() {
    for _ in 0..5 {
        tokio::task::yield_now().await;
    }
}

/// `n` long polls of `poll`, each held up to `wait`, running on this thread.
pub(super) fn hold_polls(
    e: &LoginsHandle,
    poll: &PollId,
    n: usize,
    wait: Duration,
) -> Vec<tokio::task::JoinHandle<Outcome>> {
    (0..n)
        .map(|_| {
            let (e, p) = (e.clone(), poll.clone());
            actix::spawn(async move { e.poll(&p, wait).await.unwrap() })
        })
        .collect()
}

pub(crate) fn user() -> UserRef {
    UserRef { id: "u1".into(), phone: Some("13800138000".into()) }
}

#[actix::test]
async fn attempt_expires_exactly_at_its_deadline() {
    tokio::time::pause();
    let e = engine(10);
    let c = e.create("app", Duration::from_secs(300)).await.unwrap();
    settle().await;
    tokio::time::advance(Duration::from_secs(299)).await;
    settle().await;
    let o = e.poll(&c.poll, Duration::ZERO).await.unwrap();
    assert_eq!((o.phase, o.expires_in), (Phase::Loop, 1));
    tokio::time::advance(Duration::from_millis(1001)).await;
    settle().await;
    assert_eq!(e.poll(&c.poll, Duration::ZERO).await.unwrap().phase, Phase::Expired);
    assert_eq!(e.live(), 0, "the expired actor left the registry");
}

#[actix::test]
async fn long_poll_wakes_on_scan_and_times_out_otherwise() {
    tokio::time::pause();
    let e = engine(10);
    let c = e.create("app", Duration::from_secs(300)).await.unwrap();
    settle().await;
    // Nobody scans: the poll returns after its wait, still in loop.
    let start = tokio::time::Instant::now();
    let o = e.poll(&c.poll, Duration::from_secs(25)).await.unwrap();
    assert_eq!(o.phase, Phase::Loop);
    let waited = start.elapsed();
    assert!(waited >= Duration::from_secs(25) && waited < Duration::from_secs(26), "{waited:?}");
    // A scan during the wait answers at once.
    let e2 = e.clone();
    let poll = c.poll.clone();
    let held = actix::spawn(async move { e2.poll(&poll, Duration::from_secs(25)).await });
    settle().await;
    tokio::time::advance(Duration::from_secs(3)).await;
    let before = tokio::time::Instant::now();
    let scanned = e.apply_scene("app", &c.scene, Event::Scanned { openid: "o1".into(), user: None }).await.unwrap();
    assert_eq!(scanned.unwrap().phase, Phase::NotReg);
    let o = held.await.unwrap().unwrap();
    assert_eq!(o.phase, Phase::NotReg);
    assert!(before.elapsed() < Duration::from_secs(1));
}

#[actix::test]
async fn token_is_claimed_once_among_concurrent_polls() {
    tokio::time::pause();
    let e = engine(10);
    let c = e.create("app", Duration::from_secs(300)).await.unwrap();
    settle().await;
    let held = hold_polls(&e, &c.poll, 5, Duration::from_secs(20));
    settle().await;
    e.apply_scene("app", &c.scene, Event::Scanned { openid: "o1".into(), user: Some(user()) }).await.unwrap();
    let mut tokens = 0;
    for h in held {
        let o = h.await.unwrap();
        if matches!(o.reply, Reply::Token(_)) {
            tokens += 1;
        } else {
            assert_eq!(o.phase, Phase::Expired);
        }
    }
    assert_eq!(tokens, 1);
}

#[actix::test]
async fn live_cap_and_unknown_ids() {
    tokio::time::pause();
    let e = engine(2);
    e.create("app", Duration::from_secs(60)).await.unwrap();
    e.create("app", Duration::from_secs(60)).await.unwrap();
    assert_eq!(e.create("app", Duration::from_secs(60)).await.unwrap_err(), EngineError::Overloaded);
    let unknown = PollId::generate();
    assert_eq!(e.poll(&unknown, Duration::from_secs(5)).await.unwrap().phase, Phase::Expired);
    // After expiry the slots free up.
    settle().await;
    tokio::time::advance(Duration::from_secs(61)).await;
    settle().await;
    assert!(e.create("app", Duration::from_secs(60)).await.is_ok());
}

#[actix::test]
async fn scene_of_another_app_does_not_match() {
    tokio::time::pause();
    let e = engine(10);
    let c = e.create("a", Duration::from_secs(60)).await.unwrap();
    let none = e.apply_scene("b", &c.scene, Event::Scanned { openid: "o".into(), user: None }).await.unwrap();
    assert!(none.is_none());
    assert_eq!(e.poll(&c.poll, Duration::ZERO).await.unwrap().phase, Phase::Loop);
}

/// The latency histograms and outcomes are fed by the engine itself: a registered scan
/// 4 s after creation, claimed 2 s later; another attempt expires after a scan.
#[actix::test]
async fn login_latency_and_outcomes_are_recorded() {
    tokio::time::pause();
    let (e, metrics) = engine_on(Arc::new(MemoryStore::new()), 10, WriterConfig::default(), Clock::new());
    let c = e.create("app", Duration::from_secs(300)).await.unwrap();
    let lost = e.create("app", Duration::from_secs(300)).await.unwrap();
    settle().await;
    tokio::time::advance(Duration::from_secs(4)).await;
    let scan = |u: Option<UserRef>| Event::Scanned { openid: "o1".into(), user: u };
    e.apply_scene("app", &c.scene, scan(Some(user()))).await.unwrap();
    e.apply_scene("app", &lost.scene, scan(None)).await.unwrap();
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(matches!(e.poll(&c.poll, Duration::ZERO).await.unwrap().reply, Reply::Token(_)));
    tokio::time::advance(Duration::from_secs(300)).await;
    settle().await;
    let text = metrics.render();
    for line in [
        "scanlogin_scan_to_token_seconds_bucket{app=\"app\",how=\"scan\",le=\"1\"} 0",
        "scanlogin_scan_to_token_seconds_bucket{app=\"app\",how=\"scan\",le=\"2.5\"} 1",
        "scanlogin_create_to_token_seconds_bucket{app=\"app\",how=\"scan\",le=\"5\"} 0",
        "scanlogin_create_to_token_seconds_bucket{app=\"app\",how=\"scan\",le=\"10\"} 1",
        "scanlogin_attempts_finished_total{app=\"app\",outcome=\"reg\"} 1",
        "scanlogin_attempts_finished_total{app=\"app\",outcome=\"abandoned\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing `{line}` in\n{text}");
    }
}
