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
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::try_join_all;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};
use tokio::sync::OnceCell;

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

/// A cluster connection opened at its first use, and again at the next use after an
/// opening that failed (a node starts while the cluster is down).
#[derive(Clone)]
pub struct LazyCluster {
    client: Arc<ClusterClient>,
    conn: Arc<OnceCell<ClusterConnection>>,
    /// The most one call may take, retries included (see `Class::call_deadline`).
    deadline: Duration,
}

/// `fut` within `deadline`, else an I/O error ("timed out").
async fn within<T>(deadline: Duration, fut: impl Future<Output = Result<T, RedisError>>) -> Result<T, RedisError> {
    tokio::time::timeout(deadline, fut)
        .await
        .map_err(|_| RedisError::from((redis::ErrorKind::Io, "redis cluster call timed out")))?
}

impl LazyCluster {
    pub fn new(client: Arc<ClusterClient>, deadline: Duration) -> Self {
        Self { client, conn: Arc::default(), deadline }
    }

    async fn get(&self) -> Result<ClusterConnection, RedisError> {
        self.conn.get_or_try_init(|| self.client.get_async_connection()).await.cloned()
    }

    /// `cmd` (a keyless one, as `WAIT`) sent to the primary of `key`'s slot, on the
    /// connection that wrote it, instead of to every primary.
    pub async fn wait_at(&self, key: &str, cmd: Cmd) -> Result<i64, RedisError> {
        let route = Route::with_key(key, SlotAddr::Master);
        let v = self
            .get()
            .await?
            .route_command(cmd, RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)))
            .await?;
        Ok(redis::from_redis_value(v)?)
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(lazy) => {
                Box::pin(within(lazy.deadline, async move { lazy.get().await?.req_packed_command(cmd).await }))
            }
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
            Conn::Cluster(lazy) => Box::pin(within(lazy.deadline, async move {
                let conn = lazy.get().await?;
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
