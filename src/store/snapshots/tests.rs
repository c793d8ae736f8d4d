//! One contract, every store: the same checks run against the memory store, the SQL
//! table on SQLite, PostgreSQL and MariaDB, and Redis (real servers, see
//! `scripts/services.sh`).

use std::collections::HashSet;

use super::{redis, sql};
use crate::engine::Clock;
use crate::engine::persist::testing::{consumed, loop_snapshot, not_reg_with_code, reg_snapshot};
use crate::engine::persist::{Probe, Snapshot, SnapshotStore, StoreError, memory};
use crate::ids::PollId;

/// Walks every page; returns the live snapshots found.
async fn live_ones(store: &dyn SnapshotStore) -> Vec<Snapshot> {
    let now = Clock::new().now_ms();
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.load_page(cursor).await.unwrap();
        assert_eq!(page.corrupt, 0);
        out.extend(page.snapshots.into_iter().filter(|s| s.is_live(now)));
        match page.next {
            Some(n) => cursor = Some(n),
            None => return out,
        }
    }
}

fn masked(mut s: Snapshot) -> Snapshot {
    if let Some(u) = &mut s.state.user {
        u.phone = u.phone.as_deref().map(crate::ids::mask_phone);
    }
    s
}

pub async fn newer_versions_win(store: &dyn SnapshotStore) {
    let first = loop_snapshot(60_000);
    store.write(std::slice::from_ref(&first)).await.unwrap();
    assert_eq!(store.load(&first.poll).await.unwrap(), Some(first.clone()));
    let mut second = not_reg_with_code(60_000);
    second.poll = first.poll.clone();
    second.scene = first.scene.clone();
    second.state.expires_at_ms = first.state.expires_at_ms;
    store.write(std::slice::from_ref(&second)).await.unwrap();
    assert_eq!(store.load(&first.poll).await.unwrap(), Some(second.clone()));
    // By key, as the engine asks when an actor died (SQLite's table is keyed by expiry).
    assert_eq!(store.load_at(&first.poll, first.state.expires_at_ms).await.unwrap(), Some(second.clone()));
    // A late write of an older version, and a different write of the same version, are ignored.
    store.write(std::slice::from_ref(&first)).await.unwrap();
    let mut same_version = second.clone();
    same_version.state.sms_sent = 3;
    store.write(&[same_version]).await.unwrap();
    assert_eq!(store.load(&first.poll).await.unwrap(), Some(second));
    assert_eq!(store.load(&PollId::generate()).await.unwrap(), None);
}

pub async fn consumed_mark_blocks_late_writes(store: &dyn SnapshotStore) {
    let reg = reg_snapshot(60_000);
    let done = consumed(&reg);
    store.write(std::slice::from_ref(&reg)).await.unwrap();
    store.write(std::slice::from_ref(&done)).await.unwrap();
    // The `reg` snapshot arrives again late (a retried batch): the token stays spent.
    store.write(std::slice::from_ref(&reg)).await.unwrap();
    assert_eq!(store.load(&reg.poll).await.unwrap(), Some(masked(done)));
    assert!(!live_ones(store).await.iter().any(|s| s.poll == reg.poll));
}

pub async fn pages_cover_every_live_attempt(store: &dyn SnapshotStore) {
    let live: Vec<Snapshot> =
        (0..6_100).map(|i| if i % 3 == 0 { not_reg_with_code(60_000) } else { loop_snapshot(60_000) }).collect();
    for chunk in live.chunks(1_000) {
        store.write(chunk).await.unwrap();
    }
    let mut gone = loop_snapshot(0);
    gone.state.expires_at_ms -= 1;
    store.write(std::slice::from_ref(&gone)).await.unwrap();
    let found: HashSet<PollId> = live_ones(store).await.into_iter().map(|s| s.poll).collect();
    let want: HashSet<PollId> = live.iter().map(|s| s.poll.clone()).collect();
    assert!(want.is_subset(&found), "missing {}", want.difference(&found).count());
    assert!(!found.contains(&gone.poll), "an expired attempt is not live");
    let purged = store.purge(Clock::new().now_ms()).await.unwrap();
    if store.name() == "sqlite" {
        assert!(purged >= 1);
    }
    let late = store.load(&gone.poll).await.unwrap();
    assert!(late.is_none(), "expired snapshots are gone after purge (or by themselves)");
}

pub async fn probe_answers(store: &dyn SnapshotStore) {
    store.probe().await.unwrap();
    assert_eq!(store.probe().await.unwrap(), Probe::Intact);
}

mod memory_store {
    use super::*;

    #[tokio::test]
    async fn contract() {
        let s = memory::MemoryStore::new();
        newer_versions_win(&s).await;
        consumed_mark_blocks_late_writes(&s).await;
        pages_cover_every_live_attempt(&s).await;
        probe_answers(&s).await;
    }
}

mod sql_store {
    use super::*;
    use crate::store::Db;

    crate::each_backend!(contract);

    async fn contract(db: Db) {
        let s = sql::SqlStore::new(db);
        newer_versions_win(&s).await;
        consumed_mark_blocks_late_writes(&s).await;
        pages_cover_every_live_attempt(&s).await;
        probe_answers(&s).await;
    }
}

mod sqlite_layout {
    use super::*;
    use crate::engine::persist::codec;
    use crate::store::Db;

    /// Writes `part` as batches of 1, 2, 3, … snapshots, all at once.
    async fn batches_of_growing_size(store: &sql::SqlStore, mut part: &[Snapshot]) -> Result<(), StoreError> {
        let mut jobs = Vec::new();
        for n in 1.. {
            if part.is_empty() {
                break;
            }
            let (now, later) = part.split_at(n.min(part.len()));
            jobs.push(store.write(now));
            part = later;
        }
        futures_util::future::try_join_all(jobs).await.map(|_| ())
    }

    /// A database of the layout before migration 6 (rows keyed by poll id) keeps every
    /// snapshot through it, and the store writes and pages the new layout.
    #[tokio::test]
    async fn snapshots_of_the_poll_keyed_table_survive_the_move_to_the_expiry_key() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}/old.db?mode=rwc", dir.path().display())).await.unwrap();
        assert_eq!(db.migrate_through(5).await.unwrap(), 5);
        let old: Vec<Snapshot> = (0..50).map(|_| loop_snapshot(60_000)).collect();
        for s in &old {
            sqlx::query(
                "INSERT INTO attempt_snapshots (poll, app, scene, expires_at, version, live, data) \
                 VALUES (?, ?, ?, ?, ?, 1, ?)",
            )
            .bind(s.poll.as_str().to_string())
            .bind(s.app.clone())
            .bind(s.scene.as_str().to_string())
            .bind(s.state.expires_at_ms as i64)
            .bind(i64::from(codec::version_u32(s.version())))
            .bind(codec::encode(s).unwrap())
            .execute(&db.pool)
            .await
            .unwrap();
        }
        // Two pooled connections read the old schema, as a running pool's would.
        let (mut a, mut b) = (db.pool.acquire().await.unwrap(), db.pool.acquire().await.unwrap());
        for c in [&mut a, &mut b] {
            sqlx::query("SELECT COUNT(*) FROM attempt_snapshots").fetch_one(&mut **c).await.unwrap();
        }
        drop((a, b));
        assert_eq!(db.migrate_through(6).await.unwrap(), 1, "the move to the expiry key");
        db.migrate().await.unwrap();
        let store = sql::SqlStore::new(db.clone());
        // Batches of every size up to 12 from two writers at once prepare the upsert on
        // both connections, the stale one included.
        let fresh: Vec<Snapshot> = (0..78).map(|_| loop_snapshot(60_000)).collect();
        let (left, right) = fresh.split_at(39);
        let (l, r) = tokio::join!(batches_of_growing_size(&store, left), batches_of_growing_size(&store, right));
        l.unwrap();
        r.unwrap();
        let found: HashSet<PollId> = live_ones(&store).await.into_iter().map(|s| s.poll).collect();
        assert_eq!(found, old.iter().chain(&fresh).map(|s| s.poll.clone()).collect::<HashSet<_>>());
        // A newer state of a moved attempt replaces its row: still one row per attempt.
        let mut next = not_reg_with_code(60_000);
        (next.poll, next.scene, next.state.expires_at_ms) =
            (old[0].poll.clone(), old[0].scene.clone(), old[0].state.expires_at_ms);
        store.write(std::slice::from_ref(&next)).await.unwrap();
        assert_eq!(store.load(&next.poll).await.unwrap(), Some(next));
        let rows: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM attempt_snapshots").fetch_one(&db.pool).await.unwrap();
        assert_eq!(rows.0, 50 + 78);
        let without_rowid: (String,) = sqlx::query_as("SELECT sql FROM sqlite_master WHERE name = 'attempt_snapshots'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert!(without_rowid.0.contains("WITHOUT ROWID"), "{}", without_rowid.0);
    }
}

mod sqlite_reader {
    use super::*;
    use crate::store::Db;

    /// The restore walk reads a SQLite file through a connection of its own (sqlx's row
    /// buffer of the pool's connections made it hand rows over one by one), and sees what
    /// the pool wrote; an in-memory database, which another connection would not see, is
    /// read through the pool.
    #[tokio::test]
    async fn a_file_is_walked_through_its_own_connection_an_in_memory_database_through_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}/t.db?mode=rwc", dir.path().display())).await.unwrap();
        db.migrate().await.unwrap();
        let s = sql::SqlStore::new(db.clone());
        let written = loop_snapshot(60_000);
        s.write(std::slice::from_ref(&written)).await.unwrap();
        assert!(matches!(db.sqlite_reader(10).await, Some(Ok(_))), "a file gets its own reader");
        assert_eq!(live_ones(&s).await.iter().map(|s| &s.poll).collect::<Vec<_>>(), vec![&written.poll]);

        let mem = Db::connect("sqlite::memory:").await.unwrap();
        assert!(mem.sqlite_reader(10).await.is_none(), "another connection would see another database");
        let mem = Db::connect("sqlite://x.db?mode=memory").await.unwrap();
        assert!(mem.sqlite_reader(10).await.is_none());
    }
}

mod sqlite_revive {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::engine::persist::{BoxFuture, Page, WriterConfig};
    use crate::engine::{Event, Phase};
    use crate::store::Db;

    /// SQLite's table, reachable only by key: a lookup by id alone (a table scan) fails.
    struct KeyOnly(sql::SqlStore);

    impl SnapshotStore for KeyOnly {
        fn name(&self) -> &'static str {
            "sqlite"
        }
        fn write<'a>(&'a self, batch: &'a [Snapshot]) -> BoxFuture<'a, Result<(), StoreError>> {
            self.0.write(batch)
        }
        fn load_page(&self, cursor: Option<String>) -> BoxFuture<'_, Result<Page, StoreError>> {
            self.0.load_page(cursor)
        }
        fn load<'a>(&'a self, _: &'a PollId) -> BoxFuture<'a, Result<Option<Snapshot>, StoreError>> {
            Box::pin(async { Err(StoreError::Timeout) })
        }
        fn load_at<'a>(&'a self, poll: &'a PollId, at: u64) -> BoxFuture<'a, Result<Option<Snapshot>, StoreError>> {
            self.0.load_at(poll, at)
        }
        fn probe(&self) -> BoxFuture<'_, Result<Probe, StoreError>> {
            self.0.probe()
        }
        fn purge(&self, now_ms: u64) -> BoxFuture<'_, Result<u64, StoreError>> {
            self.0.purge(now_ms)
        }
    }

    /// An actor that dies is started again from its row, found by (expiry, poll): the
    /// registry keeps each active attempt's expiry for that.
    #[actix::test]
    async fn a_crashed_attempt_is_restarted_from_its_row_found_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}/r.db?mode=rwc", dir.path().display())).await.unwrap();
        db.migrate().await.unwrap();
        let store = Arc::new(KeyOnly(sql::SqlStore::new(db)));
        let (e, _) = crate::engine::tests::engine_on(store, 10, WriterConfig::default(), Clock::new());
        let c = e.create("app", Duration::from_secs(300)).await.unwrap();
        let scan = Event::Scanned { openid: "o_new".into(), user: None };
        assert_eq!(e.apply_scene("app", &c.scene, scan).await.unwrap().unwrap().phase, Phase::NotReg);
        assert_eq!(e.backend().as_local().unwrap().crash(&c.poll).await.unwrap(), None);
        let o = e.poll(&c.poll, Duration::ZERO).await.unwrap();
        assert_eq!(o.phase, Phase::NotReg, "restarted from its row, not lost");
    }
}

mod redis_store {
    use ::redis::AsyncCommands;

    use super::*;

    pub fn url() -> String {
        std::env::var("SCANLOGIN_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
    }

    /// Deletes every key under `prefix` (the shared server outlives the test).
    async fn clean(prefix: &str) {
        let mut c = ::redis::Client::open(url()).unwrap().get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = c.keys(format!("{prefix}*")).await.unwrap();
        if !keys.is_empty() {
            let _: () = c.del(keys).await.unwrap();
        }
    }

    #[tokio::test]
    async fn contract() {
        let prefix = format!("t{:08x}:", rand::random::<u32>());
        let s = redis::RedisStore::new(
            &crate::kv::Kv::new(&url(), "test").unwrap(),
            &prefix,
            crate::engine::persist::seal::Seal::new(b"test-secret"),
        );
        newer_versions_win(&s).await;
        consumed_mark_blocks_late_writes(&s).await;
        pages_cover_every_live_attempt(&s).await;
        probe_answers(&s).await;
        clean(&prefix).await;
    }

    #[tokio::test]
    async fn an_emptied_redis_is_noticed_and_stale_index_entries_are_dropped() {
        let prefix = format!("t{:08x}:", rand::random::<u32>());
        let seal = crate::engine::persist::seal::Seal::new(b"test-secret");
        let s = redis::RedisStore::new(&crate::kv::Kv::new(&url(), "test").unwrap(), &prefix, seal.clone());
        // No marker at the first look: a store new to the service, not a loss.
        assert_eq!(s.probe().await.unwrap(), Probe::New);
        assert_eq!(s.probe().await.unwrap(), Probe::Intact);
        // Another process on the same Redis finds the marker: nothing new, nothing lost.
        let other = redis::RedisStore::new(&crate::kv::Kv::new(&url(), "test").unwrap(), &prefix, seal.clone());
        assert_eq!(other.probe().await.unwrap(), Probe::Intact);
        let snap = loop_snapshot(60_000);
        s.write(std::slice::from_ref(&snap)).await.unwrap();
        let mut c = ::redis::Client::open(url()).unwrap().get_multiplexed_async_connection().await.unwrap();
        // The attempt's key vanishes but its index entry stays (a crash before the end was written).
        let _: () = c.del(format!("{prefix}a:{}", seal.record_id(&snap.poll).as_str())).await.unwrap();
        assert!(live_ones(&s).await.is_empty());
        let left: usize = c.hlen(format!("{prefix}scenes")).await.unwrap();
        assert_eq!(left, 0, "the stale index entry was dropped");
        let _: () = c.del(format!("{prefix}epoch")).await.unwrap();
        assert_eq!(s.probe().await.unwrap(), Probe::Lost);
        assert_eq!(s.probe().await.unwrap(), Probe::Intact);
        clean(&prefix).await;
    }

    /// What one attempt costs Redis (`MEMORY USAGE`, the key and its sealed value): a
    /// `loop` one, and a `not_reg` one holding an SMS code; both expire with the attempt.
    #[tokio::test]
    async fn loop_and_not_reg_snapshots_are_small_in_redis() {
        let prefix = format!("t{:08x}:", rand::random::<u32>());
        let seal = crate::engine::persist::seal::Seal::new(b"test-secret");
        let s = redis::RedisStore::new(&crate::kv::Kv::new(&url(), "test").unwrap(), &prefix, seal.clone());
        let mut c = ::redis::Client::open(url()).unwrap().get_multiplexed_async_connection().await.unwrap();
        for (snap, most) in [(loop_snapshot(60_000), 250), (not_reg_with_code(60_000), 400)] {
            s.write(std::slice::from_ref(&snap)).await.unwrap();
            let key = format!("{prefix}a:{}", seal.record_id(&snap.poll).as_str());
            let bytes: i64 = ::redis::cmd("MEMORY").arg("USAGE").arg(&key).query_async(&mut c).await.unwrap();
            assert!(bytes > 50 && bytes < most, "MEMORY USAGE of a {:?} snapshot: {bytes}", snap.state.phase);
            let ttl: i64 = c.pttl(&key).await.unwrap();
            assert!(ttl > 55_000 && ttl <= 60_000, "expires with the attempt: {ttl}");
        }
        clean(&prefix).await;
    }
}
