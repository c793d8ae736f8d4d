//! The login audit's write-behind queue.
//!
//! One `INSERT` (and, on SQLite, one fsync under the single write lock) per token held
//! every login answer behind the disk and capped a node near 500 logins/s. Now a token
//! answer queues its row and goes on; one writer task stores everything queued in one
//! transaction, so many logins share a commit (group commit, as the snapshot writer does).
//!
//! - **Read your writes.** [`AuditLog::recent`] merges queued rows with the stored ones,
//!   without waiting for a commit: it looks at the queue before its query, so a row is
//!   never missed; a row stored meanwhile comes back from both and is shown once
//!   (identical rows of one user in the same second may then show as one).
//! - **Bounded.** Past `cap` queued rows a caller writes its own row (the old path):
//!   memory stays bounded and a slow disk slows logins instead of losing rows.
//! - **Not lost on shutdown.** [`AuditLog::flush`] waits until the queue is empty; a
//!   failed write keeps the rows queued and is retried with backoff.
//! - Without a running writer (repository tests, tools) every row is written at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::recent_cache::{KEEP, RecentCache};
use super::{Db, LoginRow};

/// Rows queued at most before callers write their own.
const QUEUE_CAP: usize = 50_000;
/// Rows per transaction, and per multi-row `INSERT` statement.
const MAX_BATCH: usize = 2_000;
const ROWS_PER_STATEMENT: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Queued {
    pub user_id: String,
    pub row: LoginRow,
}

struct Inner {
    queue: Mutex<Vec<Queued>>,
    /// Set on a node that is the audit's only writer (see [`RecentCache`]).
    recent: Option<RecentCache>,
    wake: Notify,
    drained: Notify,
    running: AtomicBool,
    cap: usize,
}

#[derive(Clone)]
pub struct AuditLog(Arc<Inner>);

impl Default for AuditLog {
    fn default() -> Self {
        Self::with_capacity(QUEUE_CAP)
    }
}

impl AuditLog {
    pub fn with_capacity(cap: usize) -> Self {
        Self::build(cap, false)
    }

    /// The audit of a node that is its only writer: `/me` reads come from memory once
    /// each user's entry is complete.
    pub fn sole_writer() -> Self {
        Self::build(QUEUE_CAP, true)
    }

    fn build(cap: usize, sole_writer: bool) -> Self {
        Self(Arc::new(Inner {
            queue: Mutex::new(Vec::new()),
            recent: sole_writer.then(RecentCache::default),
            wake: Notify::new(),
            drained: Notify::new(),
            running: AtomicBool::new(false),
            cap,
        }))
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Vec<Queued>> {
        self.0.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Rows queued and not yet stored.
    pub fn pending(&self) -> usize {
        self.queue().len()
    }

    /// Appends a row: queued when a writer runs and there is room, else written now.
    pub(super) async fn record(&self, db: &Db, q: Queued) -> Result<(), sqlx::Error> {
        if let Some(c) = &self.0.recent {
            c.recorded(&q.user_id, &q.row);
        }
        if self.0.running.load(Ordering::SeqCst) {
            let mut queue = self.queue();
            if queue.len() < self.0.cap {
                queue.push(q);
                drop(queue);
                self.0.wake.notify_one();
                return Ok(());
            }
        }
        insert(db, std::slice::from_ref(&q)).await
    }

    /// The newest `n` rows of `user_id`, stored or queued, newest first.
    pub(super) async fn recent(&self, db: &Db, user_id: &str, n: i64) -> Result<Vec<LoginRow>, sqlx::Error> {
        let want = n.max(0) as usize;
        let Some(cache) = self.0.recent.as_ref().filter(|_| want <= KEEP) else {
            return self.read(db, user_id, n).await;
        };
        if let Some(rows) = cache.get(user_id, want) {
            return Ok(rows);
        }
        let read = self.read(db, user_id, KEEP as i64).await?;
        Ok(cache.complete(user_id, read, want))
    }

    /// [`AuditLog::recent`] from the database and the queue.
    async fn read(&self, db: &Db, user_id: &str, n: i64) -> Result<Vec<LoginRow>, sqlx::Error> {
        // The queue first: a row leaves it only once stored, so the query then sees it.
        let queued: Vec<LoginRow> =
            self.queue().iter().rev().filter(|r| r.user_id == user_id).map(|r| r.row.clone()).collect();
        let mut stored = stored_recent(db, user_id, n).await?;
        // Rows stored since the look at the queue are in both: once each.
        for w in &queued {
            if let Some(i) = stored.iter().position(|s| s == w) {
                stored.remove(i);
            }
        }
        let mut rows = queued;
        rows.extend(stored);
        // Stable: among rows of the same second, queued ones (newer) stay first.
        rows.sort_by_key(|r| std::cmp::Reverse(r.at));
        rows.truncate(n.max(0) as usize);
        Ok(rows)
    }

    /// The writer task: run it on a runtime that outlives the HTTP workers. Once this is
    /// called, rows are queued.
    pub fn writer(&self, db: Db) -> impl Future<Output = ()> + Send + 'static {
        self.0.running.store(true, Ordering::SeqCst);
        let inner = self.0.clone();
        async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                let wake = inner.wake.notified();
                tokio::pin!(wake);
                wake.as_mut().enable();
                let batch: Vec<Queued> = {
                    let q = inner.queue.lock().unwrap_or_else(|e| e.into_inner());
                    q[..q.len().min(MAX_BATCH)].to_vec()
                };
                if batch.is_empty() {
                    inner.drained.notify_waiters();
                    wake.await;
                    continue;
                }
                let stored = insert(&db, &batch).await;
                if stored.is_ok() {
                    // Only this task removes rows, and callers only append: the batch is
                    // still the queue's head.
                    inner.queue.lock().unwrap_or_else(|e| e.into_inner()).drain(..batch.len());
                }
                match stored {
                    Ok(()) => backoff = Duration::from_millis(100),
                    Err(e) => {
                        tracing::error!(error = %e, rows = batch.len(), "could not store login audit rows; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        }
    }

    /// Waits until every queued row is stored, at most until `deadline`.
    pub async fn flush(&self, deadline: tokio::time::Instant) -> bool {
        loop {
            let drained = self.0.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.pending() == 0 {
                return true;
            }
            self.0.wake.notify_one();
            if tokio::time::timeout_at(deadline, drained).await.is_err() {
                return self.pending() == 0;
            }
        }
    }
}

/// Stores `rows` at once (see [`Db::write_in_statements`]).
async fn insert(db: &Db, rows: &[Queued]) -> Result<(), sqlx::Error> {
    db.write_in_statements(rows, ROWS_PER_STATEMENT, |chunk| statement(db, chunk)).await
}

/// The address block a login's address counts in (its limit bucket), as text; an
/// address that does not parse counts in no block.
pub(crate) fn bucket_of(ip: &str) -> String {
    ip.parse().map(|ip| crate::net::limit_bucket(ip).to_string()).unwrap_or_default()
}

/// One multi-row `INSERT` of `rows`, with its parameters bound.
fn statement<'q>(db: &Db, rows: &[Queued]) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    let values = vec!["(?, ?, ?, ?, ?, ?, ?)"; rows.len()].join(", ");
    let sql = format!("INSERT INTO logins (user_id, app, how, ip, bucket, user_agent, at) VALUES {values}");
    let mut q = sqlx::query(db.sql(&sql));
    for r in rows {
        q = q
            .bind(r.user_id.clone())
            .bind(r.row.app.clone())
            .bind(r.row.how.clone())
            .bind(r.row.ip.clone())
            .bind(bucket_of(&r.row.ip))
            .bind(r.row.user_agent.clone())
            .bind(r.row.at);
    }
    q
}

async fn stored_recent(db: &Db, user_id: &str, n: i64) -> Result<Vec<LoginRow>, sqlx::Error> {
    use sqlx::Row;
    let rows = sqlx::query(
        db.sql("SELECT app, how, ip, user_agent, at FROM logins WHERE user_id = ? ORDER BY at DESC LIMIT ?"),
    )
    .bind(user_id)
    .bind(n)
    .fetch_all(&db.pool)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(LoginRow {
                app: r.try_get(0)?,
                how: r.try_get(1)?,
                ip: r.try_get(2)?,
                user_agent: r.try_get(3)?,
                at: r.try_get(4)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Users;

    async fn users() -> (tempfile::TempDir, Users) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}/a.db?mode=rwc", dir.path().display())).await.unwrap();
        db.migrate().await.unwrap();
        (dir, Users::new(db))
    }

    async fn stored(u: &Users) -> i64 {
        let n: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM logins").fetch_one(&u.db().pool).await.unwrap();
        n.0
    }

    /// With the writer running, rows are read back at once and all stored by a flush.
    #[tokio::test]
    async fn queued_rows_are_read_back_and_flushed() {
        let (_dir, u) = users().await;
        let writer = tokio::spawn(u.audit_writer());
        let logins = (0..500).map(|i| {
            let u = u.clone();
            tokio::spawn(
                async move { u.record_login(&format!("user{}", i % 5), "default", "scan", "10.0.0.1", "ua").await },
            )
        });
        for l in logins.collect::<Vec<_>>() {
            l.await.unwrap().unwrap();
        }
        assert_eq!(u.recent_logins("user3", 5).await.unwrap().len(), 5, "queued or stored, the newest are seen");
        assert!(u.flush(tokio::time::Instant::now() + Duration::from_secs(10)).await);
        assert_eq!(u.audit_pending(), 0);
        assert_eq!(stored(&u).await, 500, "every row reached the database");
        writer.abort();
    }

    /// No writer: a row is in the database when `record_login` returns.
    #[tokio::test]
    async fn without_a_writer_rows_are_written_at_once() {
        let (_dir, u) = users().await;
        u.record_login("u1", "default", "bind", "10.0.0.1", "ua").await.unwrap();
        assert_eq!(stored(&u).await, 1);
        assert!(u.flush(tokio::time::Instant::now()).await);
    }

    /// A full queue makes the caller write its own row: nothing is dropped.
    #[tokio::test]
    async fn a_full_queue_writes_through() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}/a.db?mode=rwc", dir.path().display())).await.unwrap();
        db.migrate().await.unwrap();
        let log = AuditLog::with_capacity(3);
        log.0.running.store(true, Ordering::SeqCst); // a writer that never gets to run
        for i in 0..10 {
            let row = LoginRow { app: "a".into(), how: "scan".into(), ip: "ip".into(), user_agent: "ua".into(), at: i };
            log.record(&db, Queued { user_id: "u".into(), row }).await.unwrap();
        }
        assert_eq!(log.pending(), 3);
        let n: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM logins").fetch_one(&db.pool).await.unwrap();
        assert_eq!(n.0, 7);
        let recent = log.recent(&db, "u", 10).await.unwrap();
        assert_eq!(recent.iter().map(|r| r.at).collect::<Vec<_>>(), (0..10).rev().collect::<Vec<_>>());
        // A queued row that reached the database meanwhile is shown once.
        let q = log.queue()[0].clone();
        insert(&db, std::slice::from_ref(&q)).await.unwrap();
        let recent = log.recent(&db, "u", 20).await.unwrap();
        assert_eq!(recent.len(), 10, "{recent:?}");
    }

    /// A sole writer answers `/me` from memory once an entry is complete, and never
    /// misses a row stored before it started.
    #[tokio::test]
    async fn a_sole_writer_reads_recent_logins_from_memory() {
        let (_dir, u) = users().await;
        u.record_login("u", "default", "scan", "10.0.0.1", "old").await.unwrap();
        let log = AuditLog::sole_writer();
        let db = u.db().clone();
        let row = |at: i64| Queued {
            user_id: "u".into(),
            row: LoginRow { app: "a".into(), how: "bind".into(), ip: "ip".into(), user_agent: "new".into(), at },
        };
        log.record(&db, row(i64::MAX - 1)).await.unwrap();
        let first = log.recent(&db, "u", 5).await.unwrap();
        assert_eq!(first.iter().map(|r| r.user_agent.as_str()).collect::<Vec<_>>(), ["new", "old"]);
        // From now on memory answers: with the table gone a query would fail.
        sqlx::query("DROP TABLE logins").execute(&db.pool).await.unwrap();
        log.0.running.store(true, Ordering::SeqCst); // rows now stay queued (no table to write to)
        log.record(&db, row(i64::MAX)).await.unwrap();
        let again = log.recent(&db, "u", 5).await.unwrap();
        assert_eq!(again.len(), 3);
        assert_eq!(again[0].at, i64::MAX);
        assert!(log.recent(&db, "u", 6).await.is_err(), "more than memory keeps: the database is asked");
    }
}
