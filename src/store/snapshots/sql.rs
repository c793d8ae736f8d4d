//! Snapshots in the `attempt_snapshots` table of the user database
//! (`storage.snapshots = "sqlite"`; the same table works on PostgreSQL and MySQL).
//!
//! A batch is one multi-row upsert (a larger one: one transaction of several) whose
//! update only applies when the incoming version is newer, so a retried or late write
//! can never undo a newer state.
//! Rows of ended attempts stay until their expiry and are purged afterwards.

use std::time::Duration;

use futures_util::TryStreamExt;
use sqlx::Row;
use sqlx::sqlite::SqliteConnection;

use crate::engine::persist::codec::{self, version_u32};
use crate::engine::persist::{BoxFuture, Page, Probe, Snapshot, SnapshotStore, StoreError};
use crate::ids::PollId;
use crate::store::{Backend, Db};

/// Rows per statement: 7 parameters each stays far below every backend's limit
/// (SQLite 32766, PostgreSQL 65535), and a statement this size parses quickly.
const ROWS_PER_STATEMENT: usize = 200;
/// Rows per restore page.
const PAGE: i64 = 5_000;

pub struct SqlStore {
    db: Db,
    /// The restore walk's own connection on SQLite, held from its first page to its last.
    reader: tokio::sync::Mutex<Option<SqliteConnection>>,
}

impl SqlStore {
    pub fn new(db: Db) -> Self {
        Self { db, reader: tokio::sync::Mutex::new(None) }
    }

    /// `INSERT … VALUES (…) × rows` plus the dialect's "update only if newer" clause. An
    /// attempt's app, scene and expiry never change, so an update sets only what does:
    /// the indexes (poll, expiry) are then left alone and an update touches one page.
    fn upsert_sql(&self, rows: usize) -> String {
        let mut q = String::with_capacity(120 + rows * 24);
        q.push_str("INSERT INTO attempt_snapshots (poll, app, scene, expires_at, version, live, data) VALUES ");
        for i in 0..rows {
            if i > 0 {
                q.push(',');
            }
            q.push_str("(?, ?, ?, ?, ?, ?, ?)");
        }
        const NEWER: &str = " DO UPDATE SET version = excluded.version, live = excluded.live, \
                 data = excluded.data WHERE excluded.version > attempt_snapshots.version";
        match self.db.backend {
            // SQLite's key is (expires_at, poll) (migration 0006; an attempt's expiry never
            // changes, so each row of an attempt has the same key), its only constraint:
            // no conflict target is needed, and none is named, so that the statement is
            // valid for the table of either layout (a connection that read the schema before
            // the migration prepares it against the old one).
            Backend::Sqlite => {
                q.push_str(" ON CONFLICT");
                q.push_str(NEWER);
            }
            Backend::Postgres => {
                q.push_str(" ON CONFLICT (poll)");
                q.push_str(NEWER);
            }
            // MySQL applies assignments left to right: `version` must change last.
            Backend::Mysql => q.push_str(
                " ON DUPLICATE KEY UPDATE \
                 data = IF(VALUES(version) > version, VALUES(data), data), \
                 live = IF(VALUES(version) > version, VALUES(live), live), \
                 version = GREATEST(version, VALUES(version))",
            ),
        }
        q
    }

    async fn write_all(&self, batch: &[Snapshot]) -> Result<(), StoreError> {
        let mut encoded = Vec::with_capacity(batch.len());
        for s in batch {
            encoded.push((s, codec::encode(s)?));
        }
        // One group commit, one statement when it fits (see `Db::write_in_statements`).
        self.db.write_in_statements(&encoded, ROWS_PER_STATEMENT, |chunk| self.upsert(chunk)).await?;
        Ok(())
    }

    /// One multi-row upsert of `rows`, with its parameters bound.
    fn upsert<'q>(&self, rows: &[(&Snapshot, Vec<u8>)]) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
        let mut q = sqlx::query(self.db.sql(&self.upsert_sql(rows.len())));
        for (s, data) in rows {
            q = q
                .bind(s.poll.as_str().to_string())
                .bind(s.app.clone())
                .bind(s.scene.as_str().to_string())
                .bind(s.state.expires_at_ms as i64)
                .bind(i64::from(version_u32(s.version())))
                .bind(i64::from(s.state.phase != crate::engine::Phase::Expired))
                .bind(data.clone());
        }
        q
    }

    async fn page(&self, cursor: Option<String>) -> Result<Page, StoreError> {
        // Expired rows come too (until purged): restore counts what it drops. SQLite
        // walks its table in key order, (expiry, poll), which is the order its rows are
        // stored in: read sequentially, where the poll-id order of the server databases'
        // key would fetch every row from a random page. Rows written during the walk
        // may come or not; their attempts are in the registry already.
        if self.db.backend == Backend::Sqlite {
            let (after_expiry, after_poll) = cursor.as_deref().and_then(expiry_cursor).unwrap_or((-1, String::new()));
            const BY_EXPIRY: &str = "SELECT poll, data, expires_at FROM attempt_snapshots \
                 WHERE (expires_at, poll) > (?, ?) ORDER BY expires_at, poll LIMIT ?";
            let mut reader = self.reader.lock().await;
            // Opened once, on a walk's first page: a walk that could not open it (or lost it
            // to an error) goes on through the pool rather than trying again every page.
            if cursor.is_none() {
                *reader = match self.db.sqlite_reader(PAGE as usize).await {
                    Some(Ok(c)) => Some(c),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "no reader connection for the restore; reading through the pool");
                        None
                    }
                    None => None,
                };
            }
            let page = match reader.as_mut() {
                Some(conn) => {
                    let q = sqlx::query(BY_EXPIRY).bind(after_expiry).bind(after_poll).bind(PAGE);
                    collect_page(q.fetch(&mut *conn), true).await
                }
                None => {
                    let q = sqlx::query(self.db.sql(BY_EXPIRY)).bind(after_expiry).bind(after_poll).bind(PAGE);
                    collect_page(q.fetch(&self.db.pool), true).await
                }
            };
            // The walk is over (or failed): the reader's thread is not kept for nothing.
            if page.as_ref().map_or(true, |p| p.next.is_none()) {
                *reader = None;
            }
            return page;
        }
        let q =
            sqlx::query(self.db.sql("SELECT poll, data FROM attempt_snapshots WHERE poll > ? ORDER BY poll LIMIT ?"))
                .bind(cursor.unwrap_or_default())
                .bind(PAGE);
        collect_page(q.fetch(&self.db.pool), false).await
    }

    /// One attempt's snapshot. On SQLite the poll id alone is no key: without the expiry
    /// this scans the table (tests and tools); the engine gives the expiry, and the row is
    /// found by its key.
    async fn one(&self, poll: &PollId, expires_at_ms: Option<u64>) -> Result<Option<Snapshot>, StoreError> {
        let query = match expires_at_ms {
            Some(at) if self.db.backend == Backend::Sqlite => {
                sqlx::query(self.db.sql("SELECT data FROM attempt_snapshots WHERE expires_at = ? AND poll = ?"))
                    .bind(at as i64)
            }
            _ => sqlx::query(self.db.sql("SELECT data FROM attempt_snapshots WHERE poll = ?")),
        };
        let row = query.bind(poll.as_str().to_string()).fetch_optional(&self.db.pool).await?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some(codec::decode(poll.clone(), &r.try_get::<Vec<u8>, _>(0)?)?)),
        }
    }
}

/// One restore page from the rows of its query: `(poll, data)`, plus `expires_at` when
/// the walk is by expiry. Each row is decoded as it arrives, while the connection's thread
/// reads the next ones.
async fn collect_page<R>(
    mut rows: impl futures_util::Stream<Item = Result<R, sqlx::Error>> + Unpin,
    by_expiry: bool,
) -> Result<Page, StoreError>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let mut page = Page::default();
    page.snapshots.reserve(PAGE as usize);
    let (mut n, mut last) = (0, None);
    while let Some(r) = rows.try_next().await? {
        n += 1;
        let poll: String = r.try_get(0)?;
        let data: Vec<u8> = r.try_get(1)?;
        match PollId::parse(&poll).map(|p| codec::decode(p, &data)) {
            Some(Ok(s)) => page.snapshots.push(s),
            _ => page.corrupt += 1,
        }
        let expiry = if by_expiry { Some(r.try_get::<i64, _>(2)?) } else { None };
        last = Some((expiry, poll));
    }
    if n == PAGE {
        page.next = last.map(|(expiry, poll)| match expiry {
            Some(e) => format!("{e}:{poll}"),
            None => poll,
        });
    }
    Ok(page)
}

/// A SQLite restore cursor, `"<expires_at>:<poll>"`: the key of the last row read.
fn expiry_cursor(c: &str) -> Option<(i64, String)> {
    let (expiry, poll) = c.split_once(':')?;
    Some((expiry.parse().ok()?, poll.to_string()))
}

impl SnapshotStore for SqlStore {
    fn name(&self) -> &'static str {
        // The name operators configure (`storage.snapshots = "sqlite"`), whatever the
        // database behind it.
        "sqlite"
    }

    fn write<'a>(&'a self, batch: &'a [Snapshot]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.write_all(batch))
    }

    fn load_page(&self, cursor: Option<String>) -> BoxFuture<'_, Result<Page, StoreError>> {
        Box::pin(self.page(cursor))
    }

    fn load<'a>(&'a self, poll: &'a PollId) -> BoxFuture<'a, Result<Option<Snapshot>, StoreError>> {
        Box::pin(self.one(poll, None))
    }

    fn load_at<'a>(
        &'a self,
        poll: &'a PollId,
        expires_at_ms: u64,
    ) -> BoxFuture<'a, Result<Option<Snapshot>, StoreError>> {
        Box::pin(self.one(poll, Some(expires_at_ms)))
    }

    fn probe(&self) -> BoxFuture<'_, Result<Probe, StoreError>> {
        Box::pin(async {
            match tokio::time::timeout(Duration::from_secs(2), sqlx::query("SELECT 1").execute(&self.db.pool)).await {
                Ok(Ok(_)) => Ok(Probe::Intact),
                Ok(Err(e)) => Err(e.into()),
                Err(_) => Err(StoreError::Timeout),
            }
        })
    }

    fn purge(&self, now_ms: u64) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let r = sqlx::query(self.db.sql("DELETE FROM attempt_snapshots WHERE expires_at <= ?"))
                .bind(now_ms as i64)
                .execute(&self.db.pool)
                .await?;
            Ok(r.rows_affected())
        })
    }
}
