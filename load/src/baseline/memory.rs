//! Memory per live attempt, measured the same way for each design: resident memory (or,
//! for the seed's Redis, Redis' `used_memory`) before and after creating `n` attempts.

use std::time::Duration;

use scanlogin::engine::{Clock, EngineConfig, LoginsHandle, Rules};
use scanlogin::metrics::Metrics;

use super::lean::Lean;
use super::seed::Seed;

/// Long enough that nothing expires while measuring.
const TTL_SECS: u64 = 3600;

/// This process' resident set, in bytes (Linux).
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// Our engine: one actor per attempt behind the registry (inside an actix System).
pub async fn engine(n: usize) -> f64 {
    let cfg = EngineConfig { live_attempts_max: n + 10_000, long_polls_max: 10, rules: Rules::default() };
    // Snapshots go to the in-process store here, so the figure includes a second copy
    // of every attempt (production's SQLite/Redis stores keep theirs outside the heap).
    let metrics = Metrics::new();
    let store = std::sync::Arc::new(scanlogin::engine::persist::memory::MemoryStore::new());
    let (persister, writer) = scanlogin::engine::persist::Persister::new(
        store,
        None,
        scanlogin::engine::persist::WriterConfig::default(),
        metrics.clone(),
    );
    tokio::spawn(writer);
    let handle = LoginsHandle::start(cfg, Clock::new(), metrics, persister, None);
    let ttl = Duration::from_secs(TTL_SECS);
    for _ in 0..1000 {
        handle.create("default", ttl).await.expect("room");
    }
    settle().await;
    let before = rss_bytes();
    for _ in 0..n {
        handle.create("default", ttl).await.expect("room");
    }
    settle().await;
    assert_eq!(handle.live(), n + 1000);
    (rss_bytes() - before) as f64 / n as f64
}

pub async fn lean(n: usize) -> f64 {
    let lean = Lean::start();
    for _ in 0..1000 {
        lean.create(TTL_SECS);
    }
    let before = rss_bytes();
    for _ in 0..n {
        lean.create(TTL_SECS);
    }
    settle().await;
    assert_eq!(lean.live(), n + 1000);
    (rss_bytes() - before) as f64 / n as f64
}

async fn used_memory(c: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO").arg("memory").query_async(c).await.expect("INFO");
    info.lines().find_map(|l| l.strip_prefix("used_memory:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// The seed: keys in Redis (`url` should name a scratch database: it is flushed).
pub async fn seed(url: &str, n: usize) -> f64 {
    let client = redis::Client::open(url).expect("redis url");
    let mut c = client.get_multiplexed_async_connection().await.expect("redis");
    let _: () = redis::cmd("FLUSHDB").query_async(&mut c).await.expect("FLUSHDB");
    let seed = Seed::connect(url).await.expect("redis");
    let before = used_memory(&mut c).await;
    for _ in 0..n {
        seed.create(TTL_SECS).await.expect("SET");
    }
    let after = used_memory(&mut c).await;
    let _: () = redis::cmd("FLUSHDB").query_async(&mut c).await.expect("FLUSHDB");
    (after - before) as f64 / n as f64
}
