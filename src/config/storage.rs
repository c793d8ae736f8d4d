//! `[storage]`: the user database, where live attempts are snapshotted (and which
//! Redis topology holds them), and how Redis acknowledges a write.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct StorageSettings {
    pub database_url: String,
    pub snapshots: SnapshotBackend,
    /// When a SQLite database syncs to disk (ignored by PostgreSQL and MySQL).
    pub sqlite_synchronous: SqliteSync,
    /// A PEM file of the CA(s) a `rediss://` server's certificate must chain to; empty:
    /// the system's trusted roots.
    pub redis_ca_file: String,
    /// Cluster mode: a transition is acknowledged only once this many replicas have it
    /// (Redis `WAIT`); 0: once the primary has it.
    pub redis_wait_replicas: u32,
    /// How long a transition waits for those replicas before it answers 503.
    pub redis_wait_ms: u64,
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            database_url: "sqlite://data/scanlogin.db?mode=rwc".into(),
            snapshots: SnapshotBackend::Sql,
            sqlite_synchronous: SqliteSync::default(),
            redis_ca_file: String::new(),
            redis_wait_replicas: 0,
            redis_wait_ms: 200,
        }
    }
}

/// `storage.sqlite_synchronous`: SQLite's `synchronous` setting, in WAL mode.
///
/// Either way a committed write survives the process being killed (it is in the
/// operating system's page cache and the log file); they differ on a power loss or a
/// kernel crash.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSync {
    /// Commits are not synced one by one; the background checkpoint syncs the log
    /// every `CHECKPOINT_EVERY` (see `store::wal`), which bounds what a power loss can
    /// take to about that much of the latest acknowledged steps.
    #[default]
    Normal,
    /// Every commit waits for the disk (an fsync per group commit): nothing
    /// acknowledged is lost on a power loss either, at the cost of the disk's sync
    /// latency in the tail of every answer that waits for a write.
    Full,
}

impl SqliteSync {
    /// The value of `PRAGMA synchronous`.
    pub fn pragma(self) -> &'static str {
        match self {
            SqliteSync::Normal => "NORMAL",
            SqliteSync::Full => "FULL",
        }
    }
}

/// Where attempt snapshots live (`storage.snapshots`): parsed once, here.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum SnapshotBackend {
    /// `"memory"`: nothing durable (tests, benchmarks).
    Memory,
    /// `"sqlite"` (the historical name): the `attempt_snapshots` table of the user
    /// database, whichever database that is.
    Sql,
    /// `redis://host:port/db` (or `rediss://` for TLS; a user and password may come in
    /// the URL): Redis, which then also holds everything nodes share; or a Redis Cluster,
    /// `redis+cluster://host1:port1,host2:port2,…` (cluster mode only); or the primary
    /// Redis Sentinel names, `redis+sentinel://host1:port1,…/master_name`.
    Redis(String),
}

/// Never prints a Redis password.
impl std::fmt::Debug for SnapshotBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotBackend::Memory => f.write_str("Memory"),
            SnapshotBackend::Sql => f.write_str("Sql"),
            SnapshotBackend::Redis(url) => write!(f, "Redis({})", redacted_url(url)),
        }
    }
}

/// `url` with its password (if any) replaced, for messages and logs.
pub fn redacted_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        // Not a URL at all: it may still hold a password; show only its scheme.
        Err(_) => url.split_once("://").map_or_else(|| "<not a URL>".into(), |(scheme, _)| format!("{scheme}://…")),
    }
}

impl SnapshotBackend {
    /// The store's name in `/readyz`, logs and metric labels.
    pub fn name(&self) -> &'static str {
        match self {
            SnapshotBackend::Memory => "memory",
            SnapshotBackend::Sql => "sqlite",
            SnapshotBackend::Redis(_) => "redis",
        }
    }

    /// The Redis URL, when Redis is configured.
    pub fn redis_url(&self) -> Option<&str> {
        match self {
            SnapshotBackend::Redis(url) => Some(url),
            _ => None,
        }
    }
}

impl TryFrom<String> for SnapshotBackend {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "memory" => Ok(Self::Memory),
            "sqlite" | "sql" => Ok(Self::Sql),
            url if url::Url::parse(url)
                .is_ok_and(|u| matches!(u.scheme(), "redis" | "rediss") && u.host_str().is_some()) =>
            {
                Ok(Self::Redis(s))
            }
            url if matches!(
                crate::kv::Topology::parse(url),
                Ok(crate::kv::Topology::Cluster(_) | crate::kv::Topology::Sentinel { .. })
            ) =>
            {
                Ok(Self::Redis(s))
            }
            _ => Err(format!(
                "storage.snapshots: `{}` must be \"sqlite\", \"memory\", redis://host:port/db, rediss://host:port/db, redis+cluster://host1:port1,host2:port2,… or redis+sentinel://host1:port1,…/master_name",
                redacted_url(&s)
            )),
        }
    }
}

#[cfg(test)]
mod redis_url_tests {
    use super::*;

    #[test]
    fn redis_urls_are_accepted_with_tls_and_credentials_and_never_echo_a_password() {
        for ok in [
            "redis://127.0.0.1:6379/0",
            "rediss://app:pw@redis.internal:6380/0",
            "redis+cluster://a:1,b:2",
            "redis+sentinel://s:1/m",
        ] {
            assert!(matches!(SnapshotBackend::try_from(ok.to_string()), Ok(SnapshotBackend::Redis(_))), "{ok}");
        }
        let refused = SnapshotBackend::try_from("redis+wrong://app:hunter2@h:1/0".to_string()).unwrap_err();
        assert!(refused.contains("storage.snapshots") && !refused.contains("hunter2"), "{refused}");
        let garbled = SnapshotBackend::try_from("rediss//app:hunter2@h".to_string()).unwrap_err();
        assert!(!garbled.contains("hunter2"), "{garbled}");
        let parsed = SnapshotBackend::try_from("rediss://app:hunter2@h:1/0".to_string()).unwrap();
        assert!(!format!("{parsed:?}").contains("hunter2"));
        let cluster = SnapshotBackend::try_from("redis+cluster://app:hunter2@a:1,b:2".to_string()).unwrap();
        assert!(!format!("{cluster:?}").contains("hunter2"), "{cluster:?}");
    }
}
