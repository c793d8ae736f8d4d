//! SQLite's write-ahead log, kept short without stalling the writer.
//!
//! Every commit appends pages to the log; a checkpoint copies them into the database
//! file and syncs it. SQLite's own automatic checkpoint runs inside the commit that
//! crosses its threshold, so every answer waiting on that commit (a scan's, a token's)
//! waited for the copy and two syncs too: the tail of the callback latency was those
//! stalls. Here a background task checkpoints instead, on a connection of its own
//! (`PASSIVE`: it never blocks the writer, which keeps appending meanwhile), and with
//! `synchronous = NORMAL` that checkpoint is also what syncs the log to disk.
//!
//! A passive checkpoint cannot rewind the log by itself: SQLite starts writing the log
//! from its beginning again only when a write begins after *every* page was copied. So
//! [`checkpoint_round`] repeats while it is behind (each pass copies only what came in
//! during the one before, so it converges unless writes never pause), and the writers
//! keep an automatic checkpoint at [`AUTOCHECKPOINT_PAGES`] as the bound: if the
//! background one never caught up, the commit past that size catches up itself (a
//! short copy, the rest being done) and the log rewinds.

use std::time::Duration;

use sqlx::Row;

use super::{Backend, Db};
use crate::metrics::Metrics;

/// How often the background checkpoint runs; with `synchronous = NORMAL` also about the
/// most a power loss can take of what was acknowledged.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(50);

/// Passes one round makes at most while new pages keep arriving.
const PASSES: usize = 8;

/// The writers' own automatic checkpoint (in log pages of 4 KiB: 16 MiB): only reached
/// when the background checkpoint fell behind for that long.
pub const AUTOCHECKPOINT_PAGES: u32 = 4_000;

/// What one checkpoint pass reported: pages in the log, and how many of them are now in
/// the database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub log_pages: i64,
    pub copied: i64,
}

impl Progress {
    fn caught_up(self) -> bool {
        self.copied >= self.log_pages
    }
}

/// One passive checkpoint pass.
pub async fn checkpoint(db: &Db) -> Result<Progress, sqlx::Error> {
    let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&db.pool).await?;
    // (busy, pages in the log, pages copied); -1 when the database is not in WAL mode.
    Ok(Progress { log_pages: row.try_get::<i64, _>(1)?.max(0), copied: row.try_get::<i64, _>(2)?.max(0) })
}

/// Checkpoints until every page in the log is copied, or [`PASSES`] passes.
pub async fn checkpoint_round(db: &Db) -> Result<Progress, sqlx::Error> {
    let mut p = checkpoint(db).await?;
    for _ in 1..PASSES {
        if p.caught_up() {
            break;
        }
        p = checkpoint(db).await?;
    }
    Ok(p)
}

/// The background checkpoint of a SQLite database, for as long as the runtime runs it
/// (nothing for other backends). A failed pass is logged and retried on the next tick:
/// the writers' automatic checkpoint still bounds the log meanwhile. The log's size after
/// each round is `scanlogin_sqlite_wal_pages`: one that stays near or above
/// [`AUTOCHECKPOINT_PAGES`] means this task is falling behind the writers.
pub async fn checkpointer(db: Db, metrics: Metrics) {
    if db.backend != Backend::Sqlite {
        return;
    }
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        match checkpoint_round(&db).await {
            Ok(p) => {
                metrics.sqlite_wal_pages(p.log_pages);
                failing = false;
            }
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "background checkpoint failed; retrying");
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SqliteSync;

    async fn db(dir: &tempfile::TempDir, sync: SqliteSync) -> Db {
        let db = Db::connect_with(&format!("sqlite://{}/w.db?mode=rwc", dir.path().display()), sync).await.unwrap();
        sqlx::query("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)").execute(&db.pool).await.unwrap();
        db
    }

    fn wal_bytes(dir: &tempfile::TempDir) -> u64 {
        std::fs::metadata(dir.path().join("w.db-wal")).map(|m| m.len()).unwrap_or(0)
    }

    /// Writes row `k % 500` with a value that differs from its last one (SQLite writes
    /// no page for an update that changes no byte).
    async fn write(db: &Db, k: i64) {
        sqlx::query("INSERT INTO t (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v")
            .bind(k % 500)
            .bind(vec![(k / 500 + 1) as u8; 3000])
            .execute(&db.pool)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn the_setting_reaches_every_connection() {
        for (sync, want) in [(SqliteSync::Normal, 1), (SqliteSync::Full, 2)] {
            let dir = tempfile::tempdir().unwrap();
            let db = db(&dir, sync).await;
            // Several at once, so the pool opens more than one connection.
            let reads = (0..4).map(|_| async {
                let mut c = db.pool.acquire().await.unwrap();
                let row = sqlx::query("PRAGMA synchronous").fetch_one(&mut *c).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
                row.try_get::<i64, _>(0).unwrap()
            });
            for got in futures_util::future::join_all(reads).await {
                assert_eq!(got, want, "{sync:?}");
            }
        }
    }

    #[tokio::test]
    async fn a_round_copies_every_page_and_the_next_write_rewinds_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(&dir, SqliteSync::Normal).await;
        for k in 0..300 {
            write(&db, k).await;
        }
        let before = checkpoint(&db).await.unwrap();
        assert!(before.log_pages >= 300, "one page or more per commit: {before:?}");
        let p = checkpoint_round(&db).await.unwrap();
        assert_eq!(p.copied, p.log_pages, "{p:?}");
        // The log is rewritten from its start: it holds only the newest commit.
        write(&db, 1_001).await;
        let after = checkpoint(&db).await.unwrap();
        assert!(after.log_pages < 10, "log not rewound: {after:?}");
    }

    #[tokio::test]
    async fn the_checkpointer_reports_the_log_size() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(&dir, SqliteSync::Normal).await;
        for k in 0..50 {
            write(&db, k).await;
        }
        let metrics = Metrics::new();
        let task = tokio::spawn(checkpointer(db.clone(), metrics.clone()));
        let gauge = || {
            metrics
                .render()
                .lines()
                .find_map(|l| l.strip_prefix("scanlogin_sqlite_wal_pages ").map(|v| v.parse::<i64>().unwrap()))
                .unwrap()
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while gauge() == 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        task.abort();
        assert!(gauge() >= 50, "one page or more per commit: {}", gauge());
        let p = checkpoint(&db).await.unwrap();
        assert_eq!(p.copied, p.log_pages, "the background rounds copied everything: {p:?}");
    }

    /// The hazard of checkpointing beside the writer: a log that is never entirely
    /// copied when a write begins is never rewound and grows without end. Writes here
    /// never pause; the log must stay within the writers' automatic bound anyway.
    #[tokio::test]
    async fn the_log_stays_bounded_under_writes_that_never_pause() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(&dir, SqliteSync::Normal).await;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let bg = {
            let (db, stop) = (db.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    checkpoint_round(&db).await.unwrap();
                    tokio::task::yield_now().await;
                }
            })
        };
        let mut largest = 0;
        for k in 0..12_000 {
            write(&db, k).await;
            if k % 500 == 0 {
                largest = largest.max(wal_bytes(&dir));
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        bg.await.unwrap();
        // 12,000 commits of a 3 KB row are ≥ 12,000 log pages (47 MiB) if never rewound.
        // A bounded log stays near the automatic checkpoint; on a loaded machine the
        // checkpointer lags one more round (CI saw 24.7 MB), still far below that.
        let bound = (2 * u64::from(AUTOCHECKPOINT_PAGES) + 1_000) * 4_120;
        assert!(bound < 12_000 * 4_096, "the bound still tells a log that is never rewound");
        assert!(largest > 0 && largest < bound, "log grew to {largest} bytes (bound {bound})");
        let rows: i64 = sqlx::query("SELECT count(*) FROM t").fetch_one(&db.pool).await.unwrap().get(0);
        assert_eq!(rows, 500);
    }
}
