//! Snapshot benchmark (run by hand, not in CI):
//!
//! ```sh
//! cargo bench --bench snapshots                 # 100k and 1M attempts
//! SIZES=20000 cargo bench --bench snapshots     # a quick look
//! ```
//!
//! Prints, for Redis (a private `redis-server` on a free port) and for the SQLite table:
//! bytes per attempt in Redis, write throughput through the `Persister` (group commit:
//! every snapshot awaited by its own submitter, as transitions do), and the time to
//! restore N attempts into a fresh engine (load + decode + an idle record each in the
//! registry's table; `loop` attempts start no actor, one timer covers their deadlines).

// Test code: a failed unwrap is how a test fails.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use scanlogin::engine::persist::{Persister, Snapshot, SnapshotStore, WriterConfig};
use scanlogin::engine::state::{AttemptState, PendingCode, Phase};
use scanlogin::engine::{Clock, EngineConfig, LoginsHandle, Rules};
use scanlogin::ids::{PollId, Scene};
use scanlogin::metrics::Metrics;
use scanlogin::store::Db;
use scanlogin::store::snapshots::redis::RedisStore;
use scanlogin::store::snapshots::sql::SqlStore;

#[path = "../tests/support/redis_server.rs"]
mod redis_server;

const PREFIX: &str = "sl:";

/// Two in three attempts waiting in `loop`, one in three in `not_reg` with a code sent:
/// roughly what a login page under load holds.
fn attempt(i: usize, expires_at_ms: u64) -> Snapshot {
    let mut state = AttemptState::new(expires_at_ms);
    if i % 3 == 2 {
        state.phase = Phase::NotReg;
        state.openid = Some(format!("oJ3x0t5Ue2Vv9Lw7Qp1Rk{:07}", i % 10_000_000));
        state.sms_sent = 1;
        state.code = Some(PendingCode {
            phone: "13800138000".into(),
            hash: [i as u8; 32],
            sent_at_ms: expires_at_ms - 200_000,
            expires_at_ms,
            wrong: 0,
        });
        state.version = 2;
    }
    Snapshot { poll: PollId::generate(), scene: Scene::generate(), app: "default".into(), state }
}

fn attempts(n: usize) -> Vec<Snapshot> {
    let expires = Clock::new().now_ms() + 3_600_000;
    (0..n).map(|i| attempt(i, expires)).collect()
}

/// Writes `snaps` through a Persister, each awaited by its own task; snapshots/s.
async fn throughput(store: Arc<dyn SnapshotStore>, snaps: Vec<Snapshot>) -> f64 {
    let metrics = Metrics::new();
    let cfg = WriterConfig {
        ack_budget: Duration::from_secs(60),
        call_budget: Duration::from_secs(60),
        ..Default::default()
    };
    let (p, writer) = Persister::new(store, None, cfg, metrics.clone());
    tokio::spawn(writer);
    let n = snaps.len();
    let start = Instant::now();
    let tasks: Vec<_> = snaps
        .into_iter()
        .map(|s| {
            let p = p.clone();
            tokio::spawn(async move { p.persist(s, false).await })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap().is_durable(), "every snapshot is acknowledged");
    }
    let secs = start.elapsed().as_secs_f64();
    let batches: f64 = metrics
        .render()
        .lines()
        .filter(|l| l.starts_with("scanlogin_snapshot_write_duration_seconds_count"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    println!("    {n} snapshots in {secs:.2} s through {batches} round trips (mean batch {:.0})", n as f64 / batches);
    n as f64 / secs
}

/// Where a restore reads from.
enum Kind {
    Redis(String),
    Sqlite(String),
}

async fn open(kind: &Kind) -> Arc<dyn SnapshotStore> {
    match kind {
        Kind::Redis(url) => Arc::new(RedisStore::new(
            &scanlogin::kv::Kv::new(url, "").unwrap(),
            PREFIX,
            scanlogin::engine::persist::seal::Seal::new(b"test-secret"),
        )),
        Kind::Sqlite(url) => {
            let db = Db::connect(url).await.unwrap();
            db.migrate().await.unwrap();
            Arc::new(SqlStore::new(db))
        }
    }
}

/// Fills the store fast (direct batches of 1000), then restores into a fresh engine, all
/// in one actix System (a store's connections belong to the runtime that made them).
fn restore(label: &str, kind: &Kind, n: usize) {
    actix::System::new().block_on(async {
        let store = open(kind).await;
        let snaps = attempts(n);
        let t = Instant::now();
        for chunk in snaps.chunks(1_000) {
            store.write(chunk).await.unwrap();
        }
        drop(snaps);
        println!("    filled {n} in {:.2} s", t.elapsed().as_secs_f64());
        let metrics = Metrics::new();
        let (p, writer) = Persister::new(store, None, WriterConfig::default(), metrics.clone());
        actix::spawn(writer);
        let cfg = EngineConfig { live_attempts_max: n * 2, long_polls_max: 10, rules: Rules::default() };
        // As in production: the registry (and the attempts) on a thread of their own.
        let engine_thread = actix::Arbiter::new();
        let engine = LoginsHandle::start(cfg, Clock::new(), metrics, p, Some(&engine_thread.handle()));
        let report = engine.restore().await;
        assert_eq!(report.restored, n, "{report:?}");
        assert_eq!(engine.live(), n);
        let secs = report.duration.as_secs_f64();
        println!("  restore {label} {n:>8}: {secs:.2} s ({:.0} attempts/s)", n as f64 / secs);
        // Left running to the end of the process: stopping it would drop a million
        // actors, some still to start, for nothing.
        std::mem::forget(engine_thread);
    });
}

async fn clear(url: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection_with_config(&patient()).await.unwrap();
    let _: () = redis::cmd("FLUSHALL").query_async(&mut c).await.unwrap();
}

/// A loaded machine can take a while to answer.
fn patient() -> redis::AsyncConnectionConfig {
    redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(30)))
        .set_response_timeout(Some(Duration::from_secs(120)))
}

async fn used_memory(url: &str) -> i64 {
    let mut c = redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO").arg("memory").query_async(&mut c).await.unwrap();
    info.lines().find_map(|l| l.strip_prefix("used_memory:")).unwrap().trim().parse().unwrap()
}

async fn memory_usage(url: &str, key: &str) -> i64 {
    let mut c = redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap();
    redis::cmd("MEMORY").arg("USAGE").arg(key).query_async(&mut c).await.unwrap()
}

fn main() {
    scanlogin::install_crypto();
    let sizes: Vec<usize> = std::env::var("SIZES")
        .unwrap_or_else(|_| "100000,1000000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("SIZES: numbers"))
        .collect();
    let redis = redis_server::RedisServer::start();
    let url = redis.url();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();

    println!("== redis (private redis-server on port {})", redis.port);
    rt.block_on(async {
        let store = Arc::new(RedisStore::new(
            &scanlogin::kv::Kv::new(&url, "").unwrap(),
            PREFIX,
            scanlogin::engine::persist::seal::Seal::new(b"test-secret"),
        ));
        let n = 100_000;
        clear(&url).await;
        let before = used_memory(&url).await;
        let snaps = attempts(n);
        let (one_loop, one_not_reg) = (snaps[0].poll.clone(), snaps[2].poll.clone());
        for chunk in snaps.chunks(1_000) {
            store.write(chunk).await.unwrap();
        }
        let per = (used_memory(&url).await - before) as f64 / n as f64;
        println!("  bytes per attempt in Redis (used_memory growth / {n}, key + scene index entry): {per:.0}");
        let mut c = redis::Client::open(url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
        let hlen: usize = c.hlen(format!("{PREFIX}scenes")).await.unwrap();
        assert_eq!(hlen, n);
        println!(
            "    MEMORY USAGE of one key: loop {} B, not_reg with a code {} B; index hash {} B for {n}",
            memory_usage(&url, &format!("{PREFIX}a:{}", one_loop.as_str())).await,
            memory_usage(&url, &format!("{PREFIX}a:{}", one_not_reg.as_str())).await,
            memory_usage(&url, &format!("{PREFIX}scenes")).await,
        );
        clear(&url).await;
        let before = used_memory(&url).await;
        let expires = Clock::new().now_ms() + 3_600_000;
        let loops: Vec<Snapshot> = (0..n).map(|i| attempt(i * 3, expires)).collect();
        for chunk in loops.chunks(1_000) {
            store.write(chunk).await.unwrap();
        }
        let per = (used_memory(&url).await - before) as f64 / n as f64;
        println!("    the same with every attempt in loop: {per:.0}");
        clear(&url).await;
        let rate = throughput(store, attempts(n)).await;
        println!("  write throughput, Redis: {rate:.0} snapshots/s");
    });

    let dir = tempfile::tempdir().unwrap();
    println!("== sqlite (file in {})", dir.path().display());
    let sqlite = |name: &str| Kind::Sqlite(format!("sqlite://{}/{name}.db?mode=rwc", dir.path().display()));
    let rate = rt.block_on(async { throughput(open(&sqlite("throughput")).await, attempts(100_000)).await });
    println!("  write throughput, SQLite: {rate:.0} snapshots/s");
    drop(rt);

    println!("== restore (load, decode, an idle record each, one deadline timer)");
    for &n in &sizes {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(clear(&url));
        drop(rt);
        restore("redis ", &Kind::Redis(url.clone()), n);
        restore("sqlite", &sqlite(&format!("restore{n}")), n);
    }
}
