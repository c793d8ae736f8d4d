//! Scratch databases for tests: a fresh SQLite file, or a fresh database on the real
//! PostgreSQL or MariaDB server that `scripts/services.sh` starts, dropped afterwards.
//!
//! Server URLs come from `SCANLOGIN_TEST_POSTGRES` / `SCANLOGIN_TEST_MYSQL` (defaults:
//! the `scanlogin_test` login that `scripts/services.sh` creates on 127.0.0.1). A server
//! that does not answer fails the test: repository tests never skip a backend.

use std::time::Duration;

use sqlx::{AnyConnection, AssertSqlSafe, Connection, Executor, Row};

use super::{Backend, Db};
use crate::wall::unix_secs;

pub const POSTGRES_DEFAULT: &str = "postgres://scanlogin_test:scanlogin_test@127.0.0.1:5432/postgres";
pub const MYSQL_DEFAULT: &str = "mysql://scanlogin_test:scanlogin_test@127.0.0.1:3306";

/// Scratch databases older than this are left-overs of crashed runs: dropped on sight.
const STALE_SECS: i64 = 3600;

/// A migrated, empty database of one backend.
pub struct Scratch {
    pub db: Db,
    /// Server URL without a database (PostgreSQL: its maintenance database).
    admin_url: Option<String>,
    name: String,
    _dir: Option<tempfile::TempDir>,
}

fn server_url(b: Backend) -> String {
    match b {
        Backend::Postgres => std::env::var("SCANLOGIN_TEST_POSTGRES").unwrap_or_else(|_| POSTGRES_DEFAULT.into()),
        Backend::Mysql => std::env::var("SCANLOGIN_TEST_MYSQL").unwrap_or_else(|_| MYSQL_DEFAULT.into()),
        Backend::Sqlite => unreachable!("SQLite needs no server"),
    }
}

/// `scheme://user@host:port/<db>` from a server URL (its path replaced).
fn with_database(server: &str, name: &str) -> String {
    let mut u = url::Url::parse(server).expect("test server URL parses");
    u.set_path(&format!("/{name}"));
    u.to_string()
}

async fn admin(url: &str) -> AnyConnection {
    sqlx::any::install_default_drivers();
    match tokio::time::timeout(Duration::from_secs(10), AnyConnection::connect(url)).await {
        Ok(Ok(c)) => c,
        other => panic!(
            "test database server at {} does not answer ({:?}); run scripts/services.sh",
            url.split('@').next_back().unwrap_or(url),
            other.map(|r| r.err())
        ),
    }
}

/// Drops scratch databases of crashed runs (their name starts with the creation time).
async fn sweep(conn: &mut AnyConnection, b: Backend) {
    let list = match b {
        Backend::Postgres => "SELECT datname FROM pg_database WHERE datname LIKE 'scanlogin_test_%'",
        _ => "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'scanlogin_test_%'",
    };
    let Ok(rows) = conn.fetch_all(list).await else { return };
    for r in rows {
        let Ok(name) = r.try_get::<String, _>(0) else { continue };
        let born: i64 = name.split('_').nth(2).and_then(|t| t.parse().ok()).unwrap_or(i64::MAX);
        if unix_secs() as i64 - born > STALE_SECS {
            let _ = conn.execute(AssertSqlSafe(drop_sql(b, &name))).await;
        }
    }
}

fn drop_sql(b: Backend, name: &str) -> String {
    match b {
        Backend::Postgres => format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        _ => format!("DROP DATABASE IF EXISTS {name}"),
    }
}

/// A fresh, migrated database of backend `b`.
pub async fn scratch(b: Backend) -> Scratch {
    if b == Backend::Sqlite {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::connect(&format!("sqlite://{}/t.db?mode=rwc", dir.path().display())).await.expect("sqlite");
        db.migrate().await.expect("migrations");
        return Scratch { db, admin_url: None, name: String::new(), _dir: Some(dir) };
    }
    let server = server_url(b);
    let name = format!("scanlogin_test_{}_{}_{:08x}", unix_secs(), std::process::id(), rand::random::<u32>());
    let mut conn = admin(&server).await;
    sweep(&mut conn, b).await;
    conn.execute(AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.expect("create scratch database");
    let _ = conn.close().await;
    let db = Db::connect(&with_database(&server, &name)).await.expect("connect to scratch database");
    db.migrate().await.expect("migrations");
    Scratch { db, admin_url: Some(server), name, _dir: None }
}

impl Scratch {
    /// Closes the pool and drops the database (SQLite: the temp dir goes with `self`).
    pub async fn drop_db(self) {
        self.db.pool.close().await;
        if let Some(url) = &self.admin_url {
            let mut conn = admin(url).await;
            conn.execute(AssertSqlSafe(drop_sql(self.db.backend, &self.name))).await.expect("drop scratch database");
        }
    }
}

/// Runs `$body` (an `async fn(Db)`) as one test per backend: `sqlite::name`,
/// `postgres::name`, `mysql::name`, so a failure names its server.
#[macro_export]
macro_rules! each_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $name() { super::run(super::$name, $crate::store::Backend::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test] async fn $name() { super::run(super::$name, $crate::store::Backend::Postgres).await })*
        }
        mod mysql {
            $(#[tokio::test] async fn $name() { super::run(super::$name, $crate::store::Backend::Mysql).await })*
        }
        async fn run<F, Fut>(f: F, b: $crate::store::Backend)
        where
            F: FnOnce($crate::store::Db) -> Fut,
            Fut: std::future::Future<Output = ()>,
        {
            let s = $crate::store::testdb::scratch(b).await;
            f(s.db.clone()).await;
            s.drop_db().await;
        }
    };
}
