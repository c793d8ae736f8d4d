//! Storage: the user database (sqlx over SQLite, PostgreSQL or MySQL/MariaDB), its
//! migrations, and the snapshots of live login attempts ([`snapshots`]).
//!
//! Queries go through sqlx's `Any` driver; placeholders are rewritten by [`Db::sql`].
//! Most migrations are one portable file; where the dialects really differ (binary
//! columns, upserts, case-sensitive ids on MySQL) a migration has one file per backend.

pub mod admin;
mod audit;
pub mod known_ids;
pub mod oidc;
mod recent_cache;
pub mod signing_keys;
pub mod snapshots;
#[cfg(test)]
pub(crate) mod testdb;
pub mod user_cache;
pub mod users;
pub mod wal;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{AnyPool, AssertSqlSafe, ConnectOptions, Executor};

pub use users::{BindError, LoginRow, UserRow, Users};

use crate::config::SqliteSync;

/// The text of one migration: the same for every backend, or one file per dialect.
enum MigrationSql {
    Portable(&'static str),
    PerBackend { sqlite: &'static str, postgres: &'static str, mysql: &'static str },
}

impl MigrationSql {
    fn for_backend(&self, b: Backend) -> &'static str {
        match (self, b) {
            (MigrationSql::Portable(s), _) => s,
            (MigrationSql::PerBackend { sqlite, .. }, Backend::Sqlite) => sqlite,
            (MigrationSql::PerBackend { postgres, .. }, Backend::Postgres) => postgres,
            (MigrationSql::PerBackend { mysql, .. }, Backend::Mysql) => mysql,
        }
    }
}

/// Migrations, in order; each runs once per database, recorded in `scanlogin_migrations`.
const MIGRATIONS: &[(i64, &str, MigrationSql)] = &[
    (1, "init", MigrationSql::Portable(include_str!("../../migrations/0001_init.sql"))),
    (
        2,
        "snapshots",
        MigrationSql::PerBackend {
            sqlite: include_str!("../../migrations/0002_snapshots.sqlite.sql"),
            postgres: include_str!("../../migrations/0002_snapshots.postgres.sql"),
            mysql: include_str!("../../migrations/0002_snapshots.mysql.sql"),
        },
    ),
    (
        3,
        "case_sensitive_ids",
        MigrationSql::PerBackend {
            // SQLite and PostgreSQL compare text byte by byte already.
            sqlite: "",
            postgres: "",
            mysql: include_str!("../../migrations/0003_case_sensitive_ids.mysql.sql"),
        },
    ),
    (4, "logins", MigrationSql::Portable(include_str!("../../migrations/0004_logins.sql"))),
    (
        5,
        "snapshots_scene_index",
        MigrationSql::PerBackend {
            sqlite: include_str!("../../migrations/0005_snapshots_scene_index.sql"),
            postgres: include_str!("../../migrations/0005_snapshots_scene_index.sql"),
            mysql: include_str!("../../migrations/0005_snapshots_scene_index.mysql.sql"),
        },
    ),
    (
        6,
        "snapshots_by_expiry",
        MigrationSql::PerBackend {
            sqlite: include_str!("../../migrations/0006_snapshots_by_expiry.sqlite.sql"),
            // A server database's B-tree pages are its own business: the poll key stays.
            postgres: "",
            mysql: "",
        },
    ),
    (7, "logins_by_address", MigrationSql::Portable(include_str!("../../migrations/0007_logins_by_address.sql"))),
    (
        8,
        "signing_keys",
        MigrationSql::PerBackend {
            sqlite: include_str!("../../migrations/0008_signing_keys.sql"),
            postgres: include_str!("../../migrations/0008_signing_keys.sql"),
            mysql: include_str!("../../migrations/0008_signing_keys.mysql.sql"),
        },
    ),
    (9, "oidc", MigrationSql::Portable(include_str!("../../migrations/0009_oidc.sql"))),
    (10, "admin", MigrationSql::Portable(include_str!("../../migrations/0010_admin.sql"))),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    Mysql,
}

impl Backend {
    pub fn from_url(url: &str) -> Self {
        if url.starts_with("postgres") {
            Backend::Postgres
        } else if url.starts_with("mysql") || url.starts_with("mariadb") {
            Backend::Mysql
        } else {
            Backend::Sqlite
        }
    }
}

/// Connections of a PostgreSQL or MySQL pool, all opened at start (see [`Db::connect_with`]):
/// the hot reads of a login are served from memory, writes are batched, so a few suffice.
const SERVER_DB_CONNECTIONS: u32 = 8;

/// A pool plus the dialect it speaks.
#[derive(Clone)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
    /// A SQLite database file's URL (not an in-memory database's): what a connection
    /// outside the pool needs to reach the same data ([`Db::sqlite_reader`]).
    sqlite_file: Option<Arc<str>>,
}

impl Db {
    /// Connects with the default settings (creating a SQLite file's directory if needed).
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        Self::connect_with(url, SqliteSync::default()).await
    }

    /// Connects; `sync` is SQLite's `synchronous` (other backends ignore it).
    pub async fn connect_with(url: &str, sync: SqliteSync) -> Result<Self, sqlx::Error> {
        install_default_drivers();
        let backend = Backend::from_url(url);
        let url =
            if url.starts_with("mariadb://") { url.replacen("mariadb://", "mysql://", 1) } else { url.to_string() };
        if backend == Backend::Sqlite
            && let Some(path) = sqlite_path(&url)
            && let Some(dir) = std::path::Path::new(&path).parent().filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)?;
        }
        // A PostgreSQL or MySQL connection's socket belongs to the runtime that opened it,
        // and each HTTP worker has its own: one opened by a worker breaks when that worker
        // stops, and during a graceful stop the workers stop one by one, so a request still
        // running on another worker that took such a connection failed (`500 internal`, "a
        // Tokio context … is being shutdown", seen in the rolling-restart test). So the pool
        // opens all its connections at once, here on the runtime that builds the server and
        // outlives the workers, and never recycles them: a worker only opens one to replace a
        // connection that failed. SQLite connections are threads of their own, opened lazily.
        let sqlite = backend == Backend::Sqlite;
        let server_pool = if sqlite { 0 } else { SERVER_DB_CONNECTIONS };
        let mut options = AnyPoolOptions::new();
        if !sqlite {
            options = options.min_connections(server_pool).idle_timeout(None).max_lifetime(None);
        }
        let pool = options
            .max_connections(if sqlite { 4 } else { server_pool })
            .acquire_timeout(Duration::from_secs(3))
            // A pooled SQLite connection is a file handle in this process, not a socket
            // that can break while idle: the ping before every acquire was one more round
            // trip to its worker thread per query, for nothing.
            .test_before_acquire(!sqlite)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the one writer; the busy timeout turns
                        // writer contention into a short wait instead of an error.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        conn.execute(AssertSqlSafe(format!("PRAGMA synchronous = {}", sync.pragma()))).await?;
                        // Checkpoints run in the background (`wal::checkpointer`), off the
                        // commits that answers wait for; this one is only the bound for
                        // when that falls behind (see the `wal` module).
                        conn.execute(AssertSqlSafe(format!(
                            "PRAGMA wal_autocheckpoint = {}",
                            wal::AUTOCHECKPOINT_PAGES
                        )))
                        .await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                    }
                    if backend == Backend::Postgres {
                        // PostgreSQL sends a NOTICE for what only informs ("relation …
                        // already exists, skipping" from the migrations' IF NOT EXISTS, on
                        // every start), and the driver logs each one: only warnings and
                        // errors are worth a line in our log.
                        conn.execute("SET client_min_messages = warning").await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        // Open them all now, before any worker asks for one (the pool's own fill runs in
        // the background and could lose that race).
        let mut opened = Vec::with_capacity(server_pool as usize);
        for _ in 0..server_pool {
            opened.push(pool.acquire().await?);
        }
        drop(opened);
        // (`sqlite_path` already refuses `:memory:`; `mode=memory` names a file it never opens.)
        let sqlite_file = sqlite_path(&url).filter(|_| !url.contains("mode=memory")).map(|_| Arc::from(url.as_str()));
        Ok(Self { pool, backend, sqlite_file })
    }

    /// A connection of its own to a SQLite database file, outside the pool, whose thread
    /// may run up to `rows_ahead` rows ahead of the reader (the pool's connections, behind
    /// sqlx's `Any` driver, keep sqlx's default of 50, and a long read then hands every
    /// row from one thread to the other as it is made). `None` for another backend or an
    /// in-memory database, which a second connection would not see.
    pub(crate) async fn sqlite_reader(&self, rows_ahead: usize) -> Option<Result<SqliteConnection, sqlx::Error>> {
        let url = self.sqlite_file.as_deref()?;
        let options = match SqliteConnectOptions::from_str(url) {
            Ok(o) => o.row_buffer_size(rows_ahead),
            Err(e) => return Some(Err(e)),
        };
        Some(options.connect().await)
    }

    /// Executes the statements `statement` builds for `rows`, `per_statement` rows each,
    /// as one atomic write. A batch that fits in one statement is that statement alone:
    /// one statement is atomic by itself, and on SQLite that saves the BEGIN and COMMIT
    /// round trips to the connection's thread (the statement takes the write lock for its
    /// own duration and waits out another writer with the busy timeout, like
    /// `BEGIN IMMEDIATE` does). Larger ones run in one write transaction.
    pub(crate) async fn write_in_statements<'q, T>(
        &self,
        rows: &'q [T],
        per_statement: usize,
        statement: impl Fn(&'q [T]) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> Result<(), sqlx::Error> {
        if rows.len() <= per_statement {
            return statement(rows).execute(&self.pool).await.map(drop);
        }
        let mut tx = self.begin_write().await?;
        for chunk in rows.chunks(per_statement) {
            statement(chunk).execute(&mut *tx).await?;
        }
        tx.commit().await
    }

    /// A write transaction. On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`):
    /// two deferred transactions that both read and then write would deadlock, and
    /// SQLite answers that with `database is locked` instead of waiting.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            _ => self.pool.begin().await,
        }
    }

    /// Rewrites `?` placeholders for PostgreSQL (`$1`, `$2`, …).
    /// Only ever called with literals from this crate, hence safe to assert.
    pub fn sql(&self, q: &str) -> AssertSqlSafe<String> {
        if self.backend != Backend::Postgres {
            return AssertSqlSafe(q.to_string());
        }
        let mut out = String::with_capacity(q.len() + 8);
        let mut n = 0;
        for ch in q.chars() {
            if ch == '?' {
                n += 1;
                out.push_str(&format!("${n}"));
            } else {
                out.push(ch);
            }
        }
        AssertSqlSafe(out)
    }

    /// Applies the migrations not yet recorded; returns how many ran.
    pub async fn migrate(&self) -> Result<usize, sqlx::Error> {
        self.migrate_through(i64::MAX).await
    }

    /// [`Db::migrate`] up to version `last` (tests build a database of an older layout).
    ///
    /// All on one connection: a SQLite connection that read the schema before a migration
    /// committed keeps that schema for statements it prepares later (only a statement run
    /// notices the change), and prepares an upsert against a key that no longer exists
    /// (migration 6 changed it) as an error. The pool opens its other connections after.
    pub(crate) async fn migrate_through(&self, last: i64) -> Result<usize, sqlx::Error> {
        use sqlx::Connection as _;
        let mut conn = self.pool.acquire().await?;
        conn.execute("CREATE TABLE IF NOT EXISTS scanlogin_migrations (version BIGINT NOT NULL PRIMARY KEY, name VARCHAR(64) NOT NULL, applied_at BIGINT NOT NULL)")
            .await?;
        let mut ran = 0;
        for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 <= last) {
            let done: Option<(i64,)> =
                sqlx::query_as(self.sql("SELECT version FROM scanlogin_migrations WHERE version = ?"))
                    .bind(*version)
                    .fetch_optional(&mut *conn)
                    .await?;
            if done.is_some() {
                continue;
            }
            let mut tx = conn.begin().await?;
            for stmt in split_statements(sql.for_backend(self.backend)) {
                sqlx::query(AssertSqlSafe(stmt)).execute(&mut *tx).await?;
            }
            sqlx::query(self.sql("INSERT INTO scanlogin_migrations (version, name, applied_at) VALUES (?, ?, ?)"))
                .bind(*version)
                .bind(*name)
                .bind(crate::wall::unix_secs() as i64)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            ran += 1;
        }
        Ok(ran)
    }

    /// Answers while the database does (for `/readyz`).
    pub async fn ping(&self) -> bool {
        tokio::time::timeout(Duration::from_secs(2), sqlx::query("SELECT 1").execute(&self.pool))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

fn sqlite_path(url: &str) -> Option<String> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| path.to_string())
}

/// Splits a migration file into statements, dropping `--` comment lines.
fn split_statements(sql: &str) -> Vec<String> {
    let cleaned: String = sql.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n");
    cleaned.split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// `2026-11-24T11:53:37Z` for Unix seconds (UTC), without a date crate.
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Unix seconds of a UTC time written as [`rfc3339`] writes it (`Z`, whole seconds);
/// `None` for anything else.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let shape = b.len() == 20
        && [4, 7].iter().all(|&i| b[i] == b'-')
        && b[10] == b'T'
        && [13, 16].iter().all(|&i| b[i] == b':')
        && b[19] == b'Z';
    if !shape {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    // Days-from-civil (Howard Hinnant's algorithm), the inverse of `rfc3339`'s.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    // A day the month does not have (31 April) comes back as another date: refused.
    (rfc3339(secs) == s).then_some(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_parses_what_it_writes() {
        for secs in [0, 951_782_400, 1_795_953_217, 4_102_444_799] {
            assert_eq!(parse_rfc3339(&rfc3339(secs)), Some(secs));
        }
        for bad in
            ["2026-04-31T00:00:00Z", "2026-13-01T00:00:00Z", "2026-01-01 00:00:00Z", "2026-01-01T00:00:00+08:00", ""]
        {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn rfc3339_known_points() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_953_217), "2026-11-29T11:53:37Z");
    }

    #[test]
    fn splits_and_rewrites() {
        assert_eq!(split_statements("-- c\nA;\n\nB ;"), vec!["A", "B"]);
        assert_eq!(sqlite_path("sqlite://data/x.db?mode=rwc").as_deref(), Some("data/x.db"));
        assert_eq!(Backend::from_url("mariadb://root@h/db"), Backend::Mysql);
    }
}
