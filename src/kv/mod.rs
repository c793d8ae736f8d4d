//! The one way into Redis: [`Kv`] builds the connections (one per timeout class) and
//! owns the key namespace, for everything scanlogin keeps there — snapshots, the cluster
//! engine's attempt records, push dedup keys, limit counters, revocations, the shared
//! WeChat access token and the sandbox's shared state.
//!
//! Redis is one server or a Redis Cluster ([`topology`]); callers see one connection
//! type either way ([`Conn`]). Connections are lazy and reconnect by themselves: a node
//! starts while Redis is down, and every caller resumes once it is back. Every key starts with [`PREFIX`]; a phone
//! number never appears in a key name, only its keyed hash ([`Kv::phone_tag`]).

mod conn;
mod sentinel;
pub mod topology;

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use redis::aio::ConnectionManagerConfig;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use sha2::{Digest, Sha256};

pub use self::conn::Conn;
use self::conn::LazyCluster;
pub(crate) use self::conn::within;
use self::sentinel::Follower;
pub use self::topology::{Topology, TopologyKind};

/// The first characters of every key scanlogin writes.
pub const PREFIX: &str = "sl:";

/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// How long a call may take before it counts as failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Calls on a request's path that have a fallback or answer 503 (limits, dedup,
    /// revocations, cluster transitions): short.
    Fast,
    /// Snapshot batches and restore pages: longer, each carries many attempts.
    Bulk,
}

impl Class {
    /// The most one call to a Redis Cluster may take, its retries and slot refreshes
    /// included: while a dead primary's replica is not yet promoted, a call answers
    /// "unavailable" (503 upstream) in this time instead of retrying on for seconds. Room
    /// for a slot move's redirect and refresh on a busy machine (1 s was seen too short).
    fn call_deadline(self) -> Duration {
        self.response_timeout() * 4
    }

    fn response_timeout(self) -> Duration {
        match self {
            Class::Fast => Duration::from_millis(500),
            Class::Bulk => Duration::from_secs(2),
        }
    }
}

#[derive(Clone)]
pub struct Kv {
    /// What opens the dedicated pub/sub connections.
    subscriber: Subscriber,
    fast: Conn,
    bulk: Conn,
    /// Replicas every attempt write waits for (`WAIT`), and for how long (ms).
    wait: Option<(u32, u64)>,
    /// Key of the phone-number hash in key names (derived from the token secret, so
    /// every node of one deployment agrees and a Redis dump does not list phones).
    phone_key: [u8; 32],
}

/// How a wake-up listener connects: a plain pub/sub connection to the one server, or a
/// RESP3 cluster connection that hands its pushes (sharded messages, server-sent
/// unsubscriptions, disconnections) to a channel.
#[derive(Clone)]
enum Subscriber {
    /// Boxed: a client is large, a `Kv` is cloned.
    Single(Arc<redis::Client>),
    Cluster(Arc<ClusterSeeds>),
    /// The primary Redis Sentinel names now.
    Sentinel(Arc<Follower>),
}

struct ClusterSeeds {
    nodes: Vec<String>,
    ca: Option<Vec<u8>>,
}

impl ClusterSeeds {
    fn builder(&self, response: Option<Duration>) -> ClusterClientBuilder {
        let mut b = ClusterClientBuilder::new(self.nodes.clone()).connection_timeout(CONNECT_TIMEOUT).retries(2);
        if let Some(t) = response {
            b = b.response_timeout(t);
        }
        if let Some(root) = &self.ca {
            b = b.certs(redis::TlsCertificates { client_tls: None, root_cert: Some(root.clone()) });
        }
        b
    }
}

/// What a cluster wake-up listener receives.
pub type Pushes = tokio::sync::mpsc::UnboundedReceiver<redis::PushInfo>;

impl Kv {
    /// Connections to `url` (not opened yet). `secret` keys the phone hash.
    pub fn new(url: &str, secret: &str) -> Result<Self, redis::RedisError> {
        Self::with_ca(url, secret, None)
    }

    /// [`Kv::new`], a `rediss://` server's certificate checked against the CA(s) in
    /// `ca_pem` instead of the system's roots. A user and password come in the URL.
    pub fn with_ca(url: &str, secret: &str, ca_pem: Option<Vec<u8>>) -> Result<Self, redis::RedisError> {
        let phone_key: [u8; 32] = Sha256::digest(format!("scanlogin/redis-phone-key/v1/{secret}")).into();
        let topology = Topology::parse(url)
            .map_err(|e| redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "", e)))?;
        let nodes = match topology {
            Topology::Single(url) => return Self::single(&url, ca_pem, phone_key),
            Topology::Cluster(nodes) => nodes,
            Topology::Sentinel { sentinels, master, base } => {
                let f = Follower::start(sentinels, master, base, ca_pem);
                return Ok(Self {
                    fast: Conn::Sentinel(f.clone(), Class::Fast),
                    bulk: Conn::Sentinel(f.clone(), Class::Bulk),
                    subscriber: Subscriber::Sentinel(f),
                    wait: None,
                    phone_key,
                });
            }
        };
        let seeds = ClusterSeeds { nodes, ca: ca_pem };
        let conn = |class: Class| -> Result<Conn, redis::RedisError> {
            let client: ClusterClient = seeds.builder(Some(class.response_timeout())).build()?;
            Ok(Conn::Cluster(LazyCluster::new(Arc::new(client), class.call_deadline(), class.response_timeout())))
        };
        Ok(Self {
            fast: conn(Class::Fast)?,
            bulk: conn(Class::Bulk)?,
            subscriber: Subscriber::Cluster(seeds.into()),
            wait: None,
            phone_key,
        })
    }

    fn single(url: &str, ca_pem: Option<Vec<u8>>, phone_key: [u8; 32]) -> Result<Self, redis::RedisError> {
        let client = client_of(url, ca_pem.as_deref())?;
        let conn = |class: Class| manager(&client, class).map(Conn::Single);
        Ok(Self {
            fast: conn(Class::Fast)?,
            bulk: conn(Class::Bulk)?,
            subscriber: Subscriber::Single(client.into()),
            wait: None,
            phone_key,
        })
    }

    /// Every attempt write waits until `replicas` replicas have it, at most `ms`
    /// (`storage.redis_wait_replicas`; 0: no wait).
    pub fn with_wait(mut self, replicas: u32, ms: u64) -> Self {
        self.wait = (replicas > 0).then_some((replicas, ms));
        self
    }

    /// After a write of `key` through `conn` (a handle from [`Kv::conn`]): waits for the
    /// replicas asked for, on the connection that made the write (to `key`'s primary).
    /// `Err` when fewer had it in time: the write is not acknowledged. What this buys and
    /// what not (Redis's `WAIT` is no consensus): README "Running on Redis Cluster /
    /// Sentinel".
    pub async fn replicated(&self, key: &str, conn: &Conn) -> Result<(), redis::RedisError> {
        let Some((replicas, ms)) = self.wait else { return Ok(()) };
        let mut wait = redis::cmd("WAIT");
        wait.arg(replicas).arg(ms);
        let acked: i64 = match conn {
            // One multiplexed connection: the one that made the write.
            Conn::Single(_) | Conn::Sentinel(..) => wait.query_async(&mut conn.clone()).await?,
            Conn::Cluster(lazy) => lazy.wait_at(key, wait).await?,
        };
        if acked < i64::from(replicas) {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "too few replicas took the write in time",
                format!("{acked} of {replicas}"),
            )));
        }
        Ok(())
    }

    /// Which kind of Redis this is.
    pub fn topology(&self) -> TopologyKind {
        match self.subscriber {
            Subscriber::Single(_) => TopologyKind::Single,
            Subscriber::Cluster(_) => TopologyKind::Cluster,
            Subscriber::Sentinel(_) => TopologyKind::Sentinel,
        }
    }

    /// A connection of `class` (cheap: a handle onto one multiplexed connection).
    pub fn conn(&self, class: Class) -> Conn {
        match class {
            Class::Fast => self.fast.clone(),
            Class::Bulk => self.bulk.clone(),
        }
    }

    /// How many of `class`'s Redis Cluster connections were dropped as wedged and opened
    /// anew (see `conn::LazyCluster`); 0 on one server or Sentinel.
    pub fn reopened(&self, class: Class) -> u64 {
        match self.conn(class) {
            Conn::Cluster(lazy) => lazy.reopened(),
            Conn::Single(_) | Conn::Sentinel(..) => 0,
        }
    }

    /// A dedicated pub/sub connection (a subscriber cannot share the multiplexed one),
    /// opened now within the fast class's connect timeout. One server only: a cluster's
    /// listener uses [`Kv::cluster_pubsub`].
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub, redis::RedisError> {
        let client = match &self.subscriber {
            Subscriber::Single(client) => client.clone(),
            Subscriber::Sentinel(f) => f.client().ok_or_else(no_primary)?,
            Subscriber::Cluster(_) => {
                return Err(redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "pub/sub of a cluster")));
            }
        };
        tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub())
            .await
            .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "pub/sub connect timed out")))?
    }

    /// Bumped whenever the server behind this `Kv` changes (a Sentinel failover): a
    /// pub/sub connection opened before is on the old primary. `None`: it never changes.
    pub fn primary_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        match &self.subscriber {
            Subscriber::Sentinel(f) => Some(f.changes()),
            _ => None,
        }
    }

    /// A dedicated RESP3 connection to the cluster for sharded pub/sub, and the pushes
    /// it receives. The client subscribes again after a reconnect by itself; a
    /// server-sent `sunsubscribe` (the slot moved) is the listener's to follow.
    pub async fn cluster_pubsub(&self) -> Result<(redis::cluster_async::ClusterConnection, Pushes), redis::RedisError> {
        let Subscriber::Cluster(seeds) = &self.subscriber else {
            return Err(redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "sharded pub/sub of one server",
            )));
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let client = seeds.builder(None).use_protocol(redis::ProtocolVersion::RESP3).push_sender(tx).build()?;
        let conn = tokio::time::timeout(CONNECT_TIMEOUT * 4, client.get_async_connection())
            .await
            .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "cluster pub/sub connect timed out")))??;
        Ok((conn, rx))
    }

    /// `sl:` + the parts joined by `:`.
    pub fn key(&self, parts: &[&str]) -> String {
        key(parts)
    }

    /// What stands for `phone` in a key name: a keyed hash, 128 bits in hex.
    pub fn phone_tag(&self, phone: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.phone_key).expect("any key length");
        mac.update(phone.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }
}

/// A client of the one server at `url` (its certificate checked against `ca_pem`'s
/// CA(s) when given, else the system's roots).
fn client_of(url: &str, ca_pem: Option<&[u8]>) -> Result<redis::Client, redis::RedisError> {
    match ca_pem {
        Some(root) => redis::Client::build_with_tls(
            url,
            redis::TlsCertificates { client_tls: None, root_cert: Some(root.to_vec()) },
        ),
        None => redis::Client::open(url),
    }
}

/// A lazy, reconnecting connection of `class` to `client`'s server.
fn manager(client: &redis::Client, class: Class) -> Result<redis::aio::ConnectionManager, redis::RedisError> {
    let cfg = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(class.response_timeout()))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(1));
    client.get_connection_manager_lazy(cfg)
}

/// No primary known yet (no sentinel answered so far).
fn no_primary() -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, "no primary named by the sentinels yet"))
}

/// `sl:` + the parts joined by `:` (for code that has no [`Kv`] at hand, e.g. stores
/// built before one).
pub fn key(parts: &[&str]) -> String {
    let mut k = String::with_capacity(PREFIX.len() + parts.iter().map(|p| p.len() + 1).sum::<usize>());
    k.push_str(PREFIX);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(':');
        }
        k.push_str(p);
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_share_one_prefix_and_hide_phones() {
        let kv = Kv::new("redis://127.0.0.1:1/0", "s").unwrap();
        assert_eq!(kv.key(&["limit", "qr_per_ip", "1.2.3.4", "9"]), "sl:limit:qr_per_ip:1.2.3.4:9");
        let tag = kv.phone_tag("13800138000");
        assert_eq!(tag.len(), 32);
        assert!(!tag.contains("13800138000"));
        assert_eq!(tag, kv.phone_tag("13800138000"), "stable");
        assert_ne!(tag, Kv::new("redis://127.0.0.1:1/0", "other").unwrap().phone_tag("13800138000"));
    }
}

/// Redis over TLS and with an ACL user, as a managed or locked-down Redis is reached.
#[cfg(test)]
mod tls_tests {
    use std::process::{Command, Stdio};
    use std::time::Duration;

    use super::*;
    use crate::test_redis::free_port;

    /// A redis-server that speaks TLS only (a fresh self-signed certificate) and knows
    /// the user `app` with password `s3cret`; killed on drop.
    struct TlsRedis {
        port: u16,
        ca: Vec<u8>,
        child: std::process::Child,
        _dir: tempfile::TempDir,
    }

    impl Drop for TlsRedis {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn tls_redis() -> TlsRedis {
        let dir = tempfile::tempdir().unwrap();
        // A CA, and a certificate for 127.0.0.1 signed by it (EC keys: quick to make).
        let script = "set -e
            ec='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'
            openssl req -x509 $ec -days 1 -subj /CN=test-ca -keyout ca.key -out ca.pem
            openssl req $ec -subj /CN=localhost -keyout key.pem -out req.csr
            echo 'subjectAltName=IP:127.0.0.1,DNS:localhost' > ext.cnf
            openssl x509 -req -days 1 -in req.csr -CA ca.pem -CAkey ca.key -CAcreateserial -extfile ext.cnf -out cert.pem";
        let made = Command::new("sh")
            .args(["-c", script])
            .current_dir(dir.path())
            .stderr(Stdio::null())
            .status()
            .expect("sh runs");
        assert!(made.success(), "openssl made the certificates");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .arg("--tls-cert-file")
            .arg(&cert)
            .arg("--tls-key-file")
            .arg(&key)
            .args(["--tls-auth-clients", "no", "--user", "default", "off", "--user", "app", "on", ">s3cret"])
            .args(["~*", "&*", "+@all"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "TLS redis on {port} does not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        TlsRedis { port, ca: std::fs::read(dir.path().join("ca.pem")).unwrap(), child, _dir: dir }
    }

    async fn set_get(kv: &Kv) -> Result<String, redis::RedisError> {
        let mut c = kv.conn(Class::Fast);
        redis::cmd("SET").arg("sl:probe").arg("yes").query_async::<()>(&mut c).await?;
        redis::cmd("GET").arg("sl:probe").query_async(&mut c).await
    }

    #[tokio::test]
    async fn rediss_with_an_acl_user_works_and_the_certificate_is_checked() {
        crate::install_crypto();
        let r = tls_redis();
        let url = format!("rediss://app:s3cret@127.0.0.1:{}/0", r.port);
        let kv = Kv::with_ca(&url, "s", Some(r.ca.clone())).unwrap();
        assert_eq!(set_get(&kv).await.unwrap(), "yes");
        // Its pub/sub connection (the cluster's wake-ups) goes the same way.
        kv.pubsub().await.unwrap().subscribe("sl:wake").await.unwrap();
        // A self-signed certificate the system does not trust is refused…
        assert!(set_get(&Kv::new(&url, "s").unwrap()).await.is_err(), "certificate not checked");
        // …and so is a wrong password.
        let wrong = format!("rediss://app:nope@127.0.0.1:{}/0", r.port);
        assert!(set_get(&Kv::with_ca(&wrong, "s", Some(r.ca.clone())).unwrap()).await.is_err());
    }
}
