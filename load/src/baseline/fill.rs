//! Fills a snapshot store with `n` live `loop` attempts, written through the service's
//! own store code, so `load/bench.sh` can time how long a server started on it takes to
//! restore them all (the `/readyz` flip) and check a sample of them by polling.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use scanlogin::engine::persist::{Snapshot, SnapshotStore};
use scanlogin::engine::{Clock, state::AttemptState};
use scanlogin::ids::{PollId, Scene};
use scanlogin::store::Db;
use scanlogin::store::snapshots::{redis::RedisStore, sql::SqlStore};

/// Rows per write: what the service's own writer batches at most is far smaller; a
/// larger batch only makes the fill faster.
const BATCH: usize = 5_000;

/// Where the snapshots go, as the server's `storage.snapshots` would name it.
pub enum Target {
    Sql(String),
    /// A Redis URL, and the `token.secret` its records are sealed with.
    Redis(String, String),
}

/// What the fill wrote: the expiry of every attempt and a sample of poll ids.
pub struct Filled {
    pub expires_at_ms: u64,
    pub sample: Vec<PollId>,
}

async fn store(target: &Target) -> Result<Arc<dyn SnapshotStore>, String> {
    Ok(match target {
        Target::Sql(url) => {
            let db = Db::connect(url).await.map_err(|e| e.to_string())?;
            db.migrate().await.map_err(|e| e.to_string())?;
            Arc::new(SqlStore::new(db))
        }
        Target::Redis(url, secret) => Arc::new(RedisStore::new(
            &scanlogin::kv::Kv::new(url, secret).map_err(|e| e.to_string())?,
            scanlogin::kv::PREFIX,
            scanlogin::engine::persist::seal::Seal::new(secret.as_bytes()),
        )),
    })
}

/// Writes `n` attempts of `app` that expire `ttl` from now; keeps `sample` poll ids.
pub async fn fill(target: &Target, app: &str, n: usize, ttl: Duration, sample: usize) -> Result<Filled, String> {
    let store = store(target).await?;
    // What a server does on its first start: the store's marker is set, so the server
    // started on the filled store restores it instead of taking it for one that lost
    // its data (and rewriting every attempt).
    store.probe().await.map_err(|e| e.to_string())?;
    let expires_at_ms = Clock::new().now_ms() + ttl.as_millis() as u64;
    let mut kept = Vec::with_capacity(sample.min(n));
    // The sample is spread over the batches: the first few of each.
    let per_batch = sample.div_ceil(n.div_ceil(BATCH).max(1));
    let mut left = n;
    while left > 0 {
        let batch: Vec<Snapshot> = (0..left.min(BATCH))
            .map(|_| Snapshot {
                poll: PollId::generate(),
                scene: Scene::generate(),
                app: app.to_string(),
                state: AttemptState::new(expires_at_ms),
            })
            .collect();
        left -= batch.len();
        let room = sample - kept.len();
        kept.extend(batch.iter().take(per_batch.min(room)).map(|s| s.poll.clone()));
        store.write(&batch).await.map_err(|e| e.to_string())?;
    }
    Ok(Filled { expires_at_ms, sample: kept })
}

/// Writes the sample, one poll id per line, for the script to poll.
pub fn write_sample(path: &str, f: &Filled) -> std::io::Result<()> {
    let mut out = std::fs::File::create(path)?;
    for p in &f.sample {
        writeln!(out, "{}", p.as_str())?;
    }
    Ok(())
}
