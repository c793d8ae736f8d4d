//! The cluster engine against a real, private `redis-server`: three engines in one
//! process play three nodes sharing it. Real time (Redis does not follow tokio's clock),
//! short waits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::engine::{EngineConfig, LoginsHandle, UserRef};

use crate::test_redis::RedisServer;

const APP: &str = "app";

fn node(redis: &RedisServer) -> (LoginsHandle, Metrics) {
    let kv = Kv::new(&redis.url(), "test-secret").unwrap();
    let metrics = Metrics::new();
    let cfg = EngineConfig { live_attempts_max: 1000, long_polls_max: 100, rules: Rules::default() };
    (
        LoginsHandle::start_cluster(
            cfg,
            kv,
            crate::engine::persist::seal::Seal::new(b"test-secret"),
            Clock::new(),
            metrics.clone(),
            None,
        ),
        metrics,
    )
}

fn nodes(redis: &RedisServer) -> [LoginsHandle; 3] {
    [node(redis).0, node(redis).0, node(redis).0]
}

fn user() -> UserRef {
    UserRef { id: "u1".into(), phone: Some("138****8000".into()) }
}

fn scan(openid: &str, user: Option<UserRef>) -> Event {
    Event::Scanned { openid: openid.into(), user }
}

fn cluster(n: &LoginsHandle) -> &ClusterEngine {
    n.backend().as_cluster().expect("a cluster node")
}

/// Lets the node's pub/sub listener subscribe before a test relies on wake-ups: a
/// throwaway attempt is committed until the node hears of it.
async fn subscribed(n: &LoginsHandle, metrics: &Metrics) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let c = n.create("warmup", Duration::from_secs(5)).await.unwrap();
        n.apply(&c.poll, Event::Discard).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        if metrics.render().lines().any(|l| l.starts_with("scanlogin_cluster_wakeups_total ") && !l.ends_with(" 0")) {
            return;
        }
    }
    panic!("the pub/sub listener never received a commit");
}

#[actix::test]
async fn an_attempt_made_on_one_node_is_scanned_on_a_second_and_polled_on_a_third() {
    let redis = RedisServer::start();
    let [a, b, c] = nodes(&redis);
    let made = a.create(APP, Duration::from_secs(60)).await.unwrap();
    assert_eq!(c.poll(&made.poll, Duration::ZERO).await.unwrap().phase, Phase::Loop);
    let o = b.apply_scene(APP, &made.scene, scan("o1", Some(user()))).await.unwrap().unwrap();
    assert_eq!(o.phase, Phase::Reg);
    let o = c.poll(&made.poll, Duration::ZERO).await.unwrap();
    assert_eq!(o.reply, Reply::Token(user()));
    assert_eq!(o.detail.unwrap().app, APP);
    for n in [&a, &b, &c] {
        assert_eq!(n.poll(&made.poll, Duration::ZERO).await.unwrap().phase, Phase::Expired, "token once");
    }
    assert!(b.apply_scene(APP, &made.scene, scan("o1", None)).await.unwrap().is_none(), "a used scene is unknown");
}

#[actix::test]
async fn a_long_poll_held_on_one_node_wakes_when_the_scan_lands_on_another() {
    let redis = RedisServer::start();
    let ((a, metrics), (b, _)) = (node(&redis), node(&redis));
    subscribed(&a, &metrics).await;
    let made = a.create(APP, Duration::from_secs(60)).await.unwrap();
    let held = {
        let (a, poll) = (a.clone(), made.poll.clone());
        tokio::spawn(async move {
            let t = Instant::now();
            (a.poll(&poll, Duration::from_secs(20)).await.unwrap(), t)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while cluster(&a).views().await != 1 {
        assert!(Instant::now() < deadline, "the held poll has a view on its node");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let scanned = Instant::now();
    b.apply_scene(APP, &made.scene, scan("o_new", None)).await.unwrap().unwrap();
    let (o, _) = held.await.unwrap();
    let woke = scanned.elapsed();
    assert_eq!(o.phase, Phase::NotReg);
    assert!(woke < Duration::from_secs(2), "woken by the scan, not the timeout: {woke:?}");
    assert_eq!(cluster(&a).views().await, 0, "the view goes once its poll is woken");
}

#[actix::test]
async fn the_same_push_on_three_nodes_is_one_transition_and_one_of_two_scanners_owns_it() {
    let redis = RedisServer::start();
    let ns = Arc::new(nodes(&redis));
    let made = ns[0].create(APP, Duration::from_secs(60)).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..3 {
        let (ns, scene) = (ns.clone(), made.scene.clone());
        tasks.push(tokio::spawn(async move { ns[i].apply_scene(APP, &scene, scan("o_same", None)).await }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().unwrap().phase, Phase::NotReg);
    }
    let records = cluster(&ns[0]).records();
    let stored = records.load(&records.id(&made.poll), None).await.unwrap().unwrap();
    assert_eq!(stored.state.version, 1, "one transition, whoever won");
    // Two different people scan a fresh code at once on two nodes: one owns it.
    let made = ns[0].create(APP, Duration::from_secs(60)).await.unwrap();
    let (x, y) = tokio::join!(
        ns[1].apply_scene(APP, &made.scene, scan("o_x", None)),
        ns[2].apply_scene(APP, &made.scene, scan("o_y", None)),
    );
    x.unwrap().unwrap();
    y.unwrap().unwrap();
    let records = cluster(&ns[0]).records();
    let stored = records.load(&records.id(&made.poll), None).await.unwrap().unwrap();
    assert_eq!(stored.state.version, 1);
    let owner = stored.state.openid.unwrap();
    assert!(owner == "o_x" || owner == "o_y");
}

#[actix::test]
async fn nine_polls_on_three_nodes_get_exactly_one_token() {
    let redis = RedisServer::start();
    let ns = Arc::new(nodes(&redis));
    for _ in 0..5 {
        let made = ns[0].create(APP, Duration::from_secs(60)).await.unwrap();
        ns[1].apply_scene(APP, &made.scene, scan("o1", Some(user()))).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..9 {
            let (ns, poll) = (ns.clone(), made.poll.clone());
            tasks.push(tokio::spawn(async move { ns[i % 3].poll(&poll, Duration::ZERO).await.unwrap() }));
        }
        let mut tokens = 0;
        for t in tasks {
            if matches!(t.await.unwrap().reply, Reply::Token(_)) {
                tokens += 1;
            }
        }
        assert_eq!(tokens, 1);
    }
}

#[actix::test]
async fn redis_down_is_unavailable_then_service_resumes() {
    let redis = RedisServer::start();
    let (a, metrics) = node(&redis);
    let made = a.create(APP, Duration::from_secs(60)).await.unwrap();
    redis.pause();
    let t = Instant::now();
    assert_eq!(a.create(APP, Duration::from_secs(60)).await.unwrap_err(), EngineError::Unavailable);
    assert_eq!(a.poll(&made.poll, Duration::ZERO).await.unwrap_err(), EngineError::Unavailable);
    assert!(t.elapsed() < Duration::from_secs(3), "bounded: {:?}", t.elapsed());
    assert!(!a.store_health().up);
    assert!(metrics.render().contains("scanlogin_snapshot_store_up{store=\"redis\"} 0"));
    redis.resume();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !a.store_health().up {
        assert!(Instant::now() < deadline, "the probe sees Redis again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(a.poll(&made.poll, Duration::ZERO).await.unwrap().phase, Phase::Loop, "nothing was lost");
    a.create(APP, Duration::from_secs(60)).await.unwrap();
}

#[actix::test]
async fn the_live_cap_counts_the_attempts_made_here() {
    let redis = RedisServer::start();
    let kv = Kv::new(&redis.url(), "s").unwrap();
    let cfg = EngineConfig { live_attempts_max: 2, long_polls_max: 10, rules: Rules::default() };
    let a = LoginsHandle::start_cluster(
        cfg,
        kv,
        crate::engine::persist::seal::Seal::new(b"test-secret"),
        Clock::new(),
        Metrics::new(),
        None,
    );
    a.create(APP, Duration::from_millis(800)).await.unwrap();
    a.create(APP, Duration::from_secs(60)).await.unwrap();
    assert_eq!(a.create(APP, Duration::from_secs(60)).await.unwrap_err(), EngineError::Overloaded);
    tokio::time::sleep(Duration::from_millis(900)).await;
    a.create(APP, Duration::from_secs(60)).await.unwrap();
}

#[actix::test]
async fn an_event_stream_on_one_node_follows_scans_and_binds_on_others() {
    let redis = RedisServer::start();
    let ((a, metrics), (b, _), (c, _)) = (node(&redis), node(&redis), node(&redis));
    subscribed(&a, &metrics).await;
    let made = b.create(APP, Duration::from_secs(60)).await.unwrap();
    let mut sub = a.subscribe(&made.poll).unwrap();
    assert_eq!(sub.next().await.unwrap().map(|o| o.phase), Some(Phase::Loop));
    let told = async |sub: &mut crate::engine::Subscription| loop {
        tokio::time::timeout(Duration::from_secs(5), sub.changed()).await.expect("woken").unwrap();
        if let Some(o) = sub.next().await.unwrap() {
            return o;
        }
    };
    b.apply_scene(APP, &made.scene, scan("o_new", None)).await.unwrap();
    assert_eq!(told(&mut sub).await.phase, Phase::NotReg);
    let code = Event::CodeIssued { phone: "13800138000".into(), hash: [7; 32], ttl_ms: 60_000 };
    assert!(a.apply(&made.poll, code).await.unwrap().actions.send_sms);
    let entered = Event::CodeEntered { phone: "13800138000".into(), hash: [7; 32] };
    assert!(matches!(b.apply(&made.poll, entered).await.unwrap().reply, Reply::CodeAccepted { .. }));
    let bound = c.apply(&made.poll, Event::Bound { user: user() }).await;
    assert!(matches!(bound.unwrap().reply, Reply::Token(_)));
    let last = told(&mut sub).await;
    assert_eq!((last.phase, &last.reply), (Phase::Expired, &Reply::Expired), "the bind's token is not told again");
    assert!(sub.finished());
}

/// Calls of one Redis command so far (`INFO commandstats`).
fn calls(redis: &RedisServer, cmd: &str) -> u64 {
    let mut c = redis::Client::open(redis.url()).unwrap().get_connection().unwrap();
    let info: String = redis::cmd("INFO").arg("commandstats").query(&mut c).unwrap();
    let prefix = format!("cmdstat_{cmd}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[actix::test]
async fn a_held_poll_costs_two_reads_and_no_write() {
    let redis = RedisServer::start();
    let (a, _) = node(&redis);
    let made = a.create(APP, Duration::from_secs(60)).await.unwrap();
    let (gets, evals) = (calls(&redis, "get"), calls(&redis, "evalsha") + calls(&redis, "eval"));
    // Nothing happens: the poll is held, read (its waiter registered first, so that one
    // read is also the watch's), and read again at the end of its wait.
    let o = a.poll(&made.poll, Duration::from_millis(800)).await.unwrap();
    assert_eq!(o.phase, Phase::Loop);
    assert_eq!(calls(&redis, "get") - gets, 2, "the claim after holding, the claim at the end");
    assert_eq!(calls(&redis, "evalsha") + calls(&redis, "eval") - evals, 0, "a read writes nothing");
}

#[actix::test]
async fn a_record_not_sealed_by_this_deployment_is_treated_as_gone_and_counted() {
    let redis = RedisServer::start();
    let (a, metrics) = node(&redis);
    let made = a.create(APP, Duration::from_secs(60)).await.unwrap();
    let records = cluster(&a).records();
    let id = records.id(&made.poll);
    assert!(!id.as_str().contains(made.poll.as_str()), "stored under a keyed hash");
    // Someone with write access to Redis but not the secret writes a `reg` state for a
    // user of their choice, sealed with a key of their own.
    let mut forged = records.load(&id, None).await.unwrap().unwrap();
    forged.state.phase = Phase::Reg;
    forged.state.openid = Some("o_attacker".into());
    forged.state.user = Some(UserRef { id: "victim".into(), phone: None });
    let bytes = crate::engine::persist::seal::Seal::new(b"not the secret").seal(&forged).unwrap();
    let mut c = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SET").arg(format!("sl:a:{}", id.as_str())).arg(bytes).query_async(&mut c).await.unwrap();
    let o = a.poll(&made.poll, Duration::ZERO).await.unwrap();
    assert_eq!((o.phase, &o.reply), (Phase::Expired, &Reply::Expired), "no token from a forged record");
    assert!(metrics.render().contains("scanlogin_redis_records_rejected_total 1"), "counted");
}

/// `storage.redis_wait_replicas = 1`: a transition is acknowledged once a replica has
/// it; with the replica frozen it is not (the caller answers 503), and again when the
/// replica is back.
#[actix::test]
async fn with_a_replica_to_wait_for_a_write_is_acknowledged_only_once_the_replica_has_it() {
    // A replica's full sync starts at once (a diskless one otherwise waits 5 s).
    let primary = RedisServer::start_with(crate::test_redis::free_port(), &["--repl-diskless-sync-delay", "0"]);
    let port = crate::test_redis::free_port();
    let replica = RedisServer::start_with(port, &["--replicaof", "127.0.0.1", &primary.port.to_string()]);
    let synced = Instant::now() + Duration::from_secs(10);
    while !replica.cli(&["INFO", "replication"]).is_some_and(|r| r.contains("master_link_status:up")) {
        assert!(Instant::now() < synced, "the replica never synced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let kv = Kv::new(&primary.url(), "test-secret").unwrap().with_wait(1, 100);
    let cfg = EngineConfig { live_attempts_max: 1000, long_polls_max: 100, rules: Rules::default() };
    let seal = crate::engine::persist::seal::Seal::new(b"test-secret");
    let n = LoginsHandle::start_cluster(cfg, kv, seal, Clock::new(), Metrics::new(), None);
    // The first acknowledged write proves the replica in sync (a link that is up may
    // still answer its first `WAIT` late on a busy machine).
    let made = loop {
        match n.create(APP, Duration::from_secs(60)).await {
            Ok(made) => break made,
            Err(e) => assert!(Instant::now() < synced, "no write acknowledged with the replica up: {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    replica.pause();
    let started = Instant::now();
    assert_eq!(n.apply_scene(APP, &made.scene, scan("o1", None)).await.err(), Some(EngineError::Unavailable));
    assert!(started.elapsed() < Duration::from_millis(450), "the wait is bounded: {:?}", started.elapsed());
    assert_eq!(n.create(APP, Duration::from_secs(60)).await.err(), Some(EngineError::Unavailable));
    replica.resume();
    let acked = Instant::now() + Duration::from_secs(5);
    while n.create(APP, Duration::from_secs(60)).await.is_err() {
        assert!(Instant::now() < acked, "writes are not acknowledged again after the replica is back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A held poll whose read fails (Redis frozen when the attempt's deadline wakes it)
/// reads again while its own wait lasts, and answers what it reads once Redis is back:
/// the poll was promised its wait, not the first error in it.
#[actix::test]
async fn a_held_poll_whose_read_fails_reads_again_within_its_wait() {
    let redis = RedisServer::start();
    let (n, _) = node(&redis);
    let made = n.create(APP, Duration::from_millis(1500)).await.unwrap();
    let started = Instant::now();
    let held = {
        let (n, poll) = (n.clone(), made.poll.clone());
        tokio::spawn(async move { n.poll(&poll, Duration::from_secs(10)).await })
    };
    while cluster(&n).views().await == 0 {
        assert!(started.elapsed() < Duration::from_secs(1), "the poll was not held");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    redis.pause();
    // The deadline (1.5 s) wakes the poll; its read times out (0.5 s) while Redis is
    // frozen, and again until it is back.
    tokio::time::sleep(Duration::from_millis(2800).saturating_sub(started.elapsed())).await;
    redis.resume();
    let answer = held.await.unwrap();
    let took = started.elapsed();
    assert_eq!(answer.map(|o| o.phase), Ok(Phase::Expired), "the state read once Redis is back");
    assert!(took < Duration::from_secs(5), "answered after Redis came back, not at the wait's end: {took:?}");
}
