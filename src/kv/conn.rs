//! [`Conn`]: one connection type for every topology, so the callers of `Kv::conn` send
//! their commands, pipelines and scripts the same way to one server or to a Redis
//! Cluster.
//!
//! On a cluster the `redis` crate routes each command to its slot's primary and follows
//! `MOVED`/`ASK` and failovers by itself. It refuses a pipeline whose commands live in
//! several slots (before sending anything); such a pipeline (an index entry and its id
//! key, a revocation and a logout mark) is sent here as its single commands,
//! concurrently: the same commands, each to its own slot's node. A pipeline of one slot
//! stays one round trip; a transaction (`MULTI`) is passed through: ours touch one key.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::try_join_all;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};

use super::Class;
use super::sentinel::Follower;

/// A handle onto a multiplexed connection (cheap to clone).
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(LazyCluster),
    /// The primary Redis Sentinel names at the time of each call.
    Sentinel(Arc<Follower>, Class),
}

/// A cluster connection opened at its first use, again at the next use after an opening
/// that failed (a node starts while the cluster is down), and again when it is wedged.
///
/// Wedged: the `redis` crate's cluster connection can stop for good while it refreshes
/// its slot map after a slot moved (its refresh waits for a lock that a request it no
/// longer drives holds; seen in about one slot migration in four under held polls, with
/// redis 1.8.1 and 1.8.2), and every call through it times out from then on. So a call
/// that times out starts a probe (one at a time): a `PING` to any one node through the
/// same connection. A connection that runs answers it, even with a primary dead (the
/// `PING` goes to a node it is connected to); one that does not within the response
/// timeout is dropped, and the next call opens a fresh one.
#[derive(Clone)]
pub struct LazyCluster {
    client: Arc<ClusterClient>,
    shared: Arc<Shared>,
    /// The most one call may take, retries included (see `Class::call_deadline`).
    deadline: Duration,
    /// The connection this handle's last call went through: a `WAIT` must ask the
    /// connection that made the write, not one opened since.
    used: Option<ClusterConnection>,
}

struct Shared {
    now: Mutex<Health>,
    /// One opening at a time: callers that find no connection wait for it.
    opening: tokio::sync::Mutex<()>,
    /// How long a probe waits for its `PING`.
    probe_wait: Duration,
}

impl Shared {
    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.now.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The connection in use, and whether it is being probed.
#[derive(Default)]
struct Health {
    conn: Option<(u64, ClusterConnection)>,
    /// Bumped at each opening: a probe or a timeout on a connection since dropped
    /// judges nothing.
    generation: u64,
    /// The generation a probe is running on.
    probing: Option<u64>,
    /// Connections dropped as wedged, for tests and the log.
    reopened: u64,
}

/// `fut` within `deadline`, else a timeout ("timed out"; [`RedisError::is_timeout`]).
pub(crate) async fn within<T>(
    deadline: Duration,
    fut: impl Future<Output = Result<T, RedisError>>,
) -> Result<T, RedisError> {
    tokio::time::timeout(deadline, fut).await.map_err(|_| {
        RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, "redis cluster call timed out"))
    })?
}

/// How many nodes a probe pings: a connection that runs reaches at least one of them
/// even when one node is frozen (each `PING` goes to a node drawn at random).
const PROBE_PINGS: usize = 4;

/// Whether `conn` answers any of [`PROBE_PINGS`] `PING`s, each to one node, within
/// `wait` (an error from a node is an answer: the connection runs; a timeout is not).
async fn answers(conn: ClusterConnection, wait: Duration) -> bool {
    let pings = (0..PROBE_PINGS).map(|_| {
        let mut c = conn.clone();
        Box::pin(async move {
            let any = RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random);
            // The client's own response timeout is no answer either.
            match within(wait, c.route_command(redis::cmd("PING"), any)).await {
                Err(e) if e.is_timeout() => Err(()),
                _ => Ok(()),
            }
        })
    });
    futures_util::future::select_ok(pings).await.is_ok()
}

impl LazyCluster {
    /// `probe_wait`: how long a connection suspected wedged has to answer a `PING`.
    pub fn new(client: Arc<ClusterClient>, deadline: Duration, probe_wait: Duration) -> Self {
        let shared = Arc::new(Shared { now: Mutex::default(), opening: tokio::sync::Mutex::new(()), probe_wait });
        Self { client, shared, deadline, used: None }
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.shared.health()
    }

    /// How many connections were dropped as wedged so far.
    pub fn reopened(&self) -> u64 {
        self.health().reopened
    }

    async fn get(&self) -> Result<(u64, ClusterConnection), RedisError> {
        if let Some(c) = self.health().conn.clone() {
            return Ok(c);
        }
        let _one = self.shared.opening.lock().await;
        if let Some(c) = self.health().conn.clone() {
            return Ok(c);
        }
        let conn = self.client.get_async_connection().await?;
        let mut h = self.health();
        h.generation += 1;
        h.conn = Some((h.generation, conn.clone()));
        Ok((h.generation, conn))
    }

    /// After a call on `generation` that timed out: probes that connection, unless a
    /// probe runs already or it was dropped meanwhile, and drops it if it is wedged.
    fn suspect(&self, generation: u64) {
        let conn = {
            let mut h = self.health();
            match &h.conn {
                Some((g, c)) if *g == generation && h.probing != Some(generation) => {
                    let c = c.clone();
                    h.probing = Some(generation);
                    c
                }
                _ => return,
            }
        };
        let shared = self.shared.clone();
        tracing::debug!(generation, "redis cluster call timed out: probing its connection");
        tokio::spawn(async move {
            let alive = answers(conn, shared.probe_wait).await;
            tracing::debug!(generation, alive, "redis cluster connection probed");
            let mut h = shared.health();
            h.probing = None;
            if !alive && h.conn.as_ref().is_some_and(|(g, _)| *g == generation) {
                h.conn = None;
                h.reopened += 1;
                tracing::warn!(
                    reopened = h.reopened,
                    "redis cluster connection wedged (a call and a probe timed out): opening a new one"
                );
            }
        });
    }

    /// `call` on the connection in use (opened if none), within the deadline (the
    /// opening included), judged.
    async fn call<T, F>(&mut self, call: impl FnOnce(ClusterConnection) -> F) -> Result<T, RedisError>
    where
        F: Future<Output = Result<T, RedisError>>,
    {
        let mut on = None;
        let result = within(self.deadline, async {
            let (generation, conn) = self.get().await?;
            on = Some(generation);
            self.used = Some(conn.clone());
            call(conn).await
        })
        .await;
        if let Some(generation) = on.filter(|_| result.as_ref().is_err_and(RedisError::is_timeout)) {
            self.suspect(generation);
        }
        result
    }

    /// `cmd` (a keyless one, as `WAIT`) sent to the primary of `key`'s slot, on the
    /// connection this handle wrote through (else the one in use), instead of to every
    /// primary.
    pub async fn wait_at(&self, key: &str, cmd: Cmd) -> Result<i64, RedisError> {
        let route = Route::with_key(key, SlotAddr::Master);
        let mut conn = match &self.used {
            Some(c) => c.clone(),
            None => within(self.deadline, self.get()).await?.1,
        };
        let to = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
        let v = within(self.deadline, conn.route_command(cmd, to)).await?;
        Ok(redis::from_redis_value(v)?)
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(lazy) => Box::pin(lazy.call(move |mut c| async move { c.req_packed_command(cmd).await })),
            Conn::Sentinel(f, class) => {
                let c = f.conn(*class);
                Box::pin(async move { c.ok_or_else(super::no_primary)?.req_packed_command(cmd).await })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Sentinel(f, class) => {
                let c = f.conn(*class);
                Box::pin(
                    async move { c.ok_or_else(super::no_primary)?.req_packed_commands(pipeline, offset, count).await },
                )
            }
            Conn::Cluster(lazy) => Box::pin(lazy.call(move |conn| async move {
                let whole = conn.clone().req_packed_commands(pipeline, offset, count).await;
                let cross_slot = redis::ErrorKind::from(redis::ServerErrorKind::CrossSlot);
                if pipeline.is_transaction() || !whole.as_ref().is_err_and(|e| e.kind() == cross_slot) {
                    return whole;
                }
                try_join_all(pipeline.cmd_iter().map(|cmd| {
                    let mut c = conn.clone();
                    async move { c.req_packed_command(cmd).await }
                }))
                .await
            })),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(_) | Conn::Sentinel(..) => 0,
        }
    }
}
