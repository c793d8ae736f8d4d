//! Snapshots in Redis (`storage.snapshots = "redis://host:port/db"`).
//!
//! Layout, under a prefix (`sl:` in production):
//! - `sl:a:<record id>`: the snapshot, sealed (`engine::persist::seal`: stored under a
//!   keyed hash of its poll id, the poll id inside encrypted, the whole authenticated, so
//!   reading Redis gives nobody a login and writing to it mints none), expiring at the
//!   attempt's own expiry (`SET … PXAT`), so Redis forgets attempts by itself;
//! - `sl:scenes`: a hash `<app>:<scene>` → record id of every live attempt: the index
//!   that restore walks;
//! - `sl:epoch`: a marker; when it is gone, Redis lost its data (restarted without
//!   persistence) and the service writes every live attempt again.
//!
//! A write is a small Lua script (compare the stored version, set if newer, maintain the
//! index), and a batch of them is one pipeline: one round trip per batch. The connection
//! is `kv`'s bulk connection (lazy: the service starts and serves while Redis is
//! down and reconnects when it returns.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::kv::Conn;
use redis::{AsyncCommands, ErrorKind, Script, ServerErrorKind};

use crate::engine::Phase;
use crate::engine::persist::codec::{self, version_u32};
use crate::engine::persist::seal::{RecordId, Seal};
use crate::engine::persist::{BoxFuture, Page, Probe, Snapshot, SnapshotStore, StoreError};
use crate::ids::PollId;
use crate::kv::{Class, Kv};

/// Compare-and-set by version, then keep the scene index in step.
/// KEYS: attempt key, index hash. ARGV: version, expires_at_ms, data, index field, poll, live.
const WRITE_LUA: &str = r"
if v >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[3], 'PXAT', ARGV[2])
if ARGV[6] == '1' then
  redis.call('HSET', KEYS[2], ARGV[4], ARGV[5])
else
  redis.call('HDEL', KEYS[2], ARGV[4])
end
return 1
";

/// Index entries read per restore page (each page is one HSCAN and one MGET).
const PAGE: usize = 5_000;

pub struct RedisStore {
    conn: Conn,
    seal: Seal,
    script: Script,
    prefix: String,
    index: String,
    epoch: String,
    /// Whether a probe of this process found or set the epoch marker: a marker missing
    /// after that is a loss, one missing before is a new store ([`Probe::New`]).
    marked: AtomicBool,
}

impl RedisStore {
    /// A store on `kv`'s connections whose keys start with `prefix`, its records sealed
    /// with `seal`. Does not connect yet.
    pub fn new(kv: &Kv, prefix: &str, seal: Seal) -> Self {
        Self {
            conn: kv.conn(Class::Bulk),
            seal,
            script: Script::new(&codec::lua_with_version(WRITE_LUA)),
            prefix: prefix.to_string(),
            index: format!("{prefix}scenes"),
            epoch: format!("{prefix}epoch"),
            marked: AtomicBool::new(false),
        }
    }

    fn key(&self, id: &RecordId) -> String {
        format!("{}a:{}", self.prefix, id.as_str())
    }

    async fn write_all(&self, batch: &[Snapshot]) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        for s in batch {
            let data = self.seal.seal(s)?;
            let id = self.seal.record_id(&s.poll);
            let live = if s.state.phase == Phase::Expired { "0" } else { "1" };
            pipe.cmd("EVALSHA")
                .arg(self.script.get_hash())
                .arg(2)
                .arg(self.key(&id))
                .arg(&self.index)
                .arg(version_u32(s.version()))
                .arg(s.state.expires_at_ms)
                .arg(data)
                .arg(format!("{}:{}", s.app, s.scene.as_str()))
                .arg(id.as_str())
                .arg(live)
                .ignore();
        }
        let mut conn = self.conn.clone();
        match pipe.exec_async(&mut conn).await {
            // Redis forgot the script (restart, SCRIPT FLUSH): load it and send again;
            // the writes are versioned, so the ones that did run are harmless twice.
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.script.load_async(&mut conn).await?;
                pipe.exec_async(&mut conn).await?;
                Ok(())
            }
            other => Ok(other?),
        }
    }

    async fn page(&self, cursor: Option<String>) -> Result<Page, StoreError> {
        let mut conn = self.conn.clone();
        let (next, pairs): (String, Vec<(String, String)>) = redis::cmd("HSCAN")
            .arg(&self.index)
            .arg(cursor.as_deref().unwrap_or("0"))
            .arg("COUNT")
            .arg(PAGE)
            .query_async(&mut conn)
            .await?;
        let mut page = Page { next: (next != "0").then_some(next), ..Page::default() };
        if pairs.is_empty() {
            return Ok(page);
        }
        // An index value that is no record id (a forged entry) names no key: MGET finds nothing.
        let ids: Vec<Option<RecordId>> = pairs.iter().map(|(_, id)| RecordId::parse(id)).collect();
        let keys: Vec<String> =
            ids.iter().map(|id| id.as_ref().map_or_else(|| format!("{}a:-", self.prefix), |id| self.key(id))).collect();
        let blobs: Vec<Option<Vec<u8>>> = redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
        let mut stale = Vec::new();
        for (((field, _), id), blob) in pairs.into_iter().zip(ids).zip(blobs) {
            match (id, blob) {
                (Some(id), Some(b)) => match self.seal.open(&id, &b) {
                    Ok(s) => page.snapshots.push(s),
                    // Damaged, or not written by this deployment: not believed.
                    Err(e) => {
                        tracing::error!(error = %e, "snapshot in redis refused; treated as gone");
                        page.corrupt += 1;
                    }
                },
                // The attempt expired (its key is gone) but its index entry stayed: the
                // process was down when it expired. Tidy up.
                (_, None) => {
                    page.expired += 1;
                    stale.push(field);
                }
                (None, Some(_)) => page.corrupt += 1,
            }
        }
        if !stale.is_empty() {
            let _: () = conn.hdel(&self.index, stale).await?;
        }
        Ok(page)
    }

    async fn one(&self, poll: &PollId) -> Result<Option<Snapshot>, StoreError> {
        let mut conn = self.conn.clone();
        let id = self.seal.record_id(poll);
        let blob: Option<Vec<u8>> = conn.get(self.key(&id)).await?;
        match blob.map(|b| self.seal.open(&id, &b)) {
            None => Ok(None),
            Some(Ok(s)) => Ok(Some(s)),
            Some(Err(e)) => {
                tracing::error!(error = %e, "snapshot in redis refused; treated as gone");
                Ok(None)
            }
        }
    }

    async fn check(&self) -> Result<Probe, StoreError> {
        let mut conn = self.conn.clone();
        // SET NX answers whether the marker was missing: then Redis lost its data since
        // this process last looked (and the caller writes every live attempt again), or,
        // at this process's first look, it is new to the service.
        let created: bool = redis::cmd("SET").arg(&self.epoch).arg(1).arg("NX").query_async(&mut conn).await?;
        let looked_before = self.marked.swap(true, Ordering::SeqCst);
        Ok(match (created, looked_before) {
            (false, _) => Probe::Intact,
            (true, true) => Probe::Lost,
            (true, false) => Probe::New,
        })
    }
}

impl SnapshotStore for RedisStore {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn write<'a>(&'a self, batch: &'a [Snapshot]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.write_all(batch))
    }

    fn load_page(&self, cursor: Option<String>) -> BoxFuture<'_, Result<Page, StoreError>> {
        Box::pin(self.page(cursor))
    }

    fn load<'a>(&'a self, poll: &'a PollId) -> BoxFuture<'a, Result<Option<Snapshot>, StoreError>> {
        Box::pin(self.one(poll))
    }

    fn probe(&self) -> BoxFuture<'_, Result<Probe, StoreError>> {
        Box::pin(self.check())
    }

    fn purge(&self, _now_ms: u64) -> BoxFuture<'_, Result<u64, StoreError>> {
        // Keys expire by themselves (PXAT); stale index entries are dropped by restore.
        Box::pin(async { Ok(0) })
    }
}
