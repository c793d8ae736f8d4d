//! Views: what a cluster node knows of the attempts it is serving right now — the polls
//! and streams it holds for each, nothing more. The truth stays in Redis; a view only
//! knows *when* to look again. Its waiters wake on the pub/sub message every committed
//! transition publishes (from any node), or all at once when the pub/sub connection was
//! lost (messages may have been missed). The attempt's deadline is the waiting poll's
//! own business (`engine::subscription`). A view whose waiters all gave up is dropped
//! (passivation): a node keeps views only for the attempts it is serving.
//!
//! [`Views`] is one actor per node holding every view, so holding a waiter, and the
//! waiter cap, is decided in one message.

use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;
use futures_util::StreamExt;
use tokio::sync::oneshot;

use crate::engine::persist::seal::RecordId;
use crate::engine::waiters::Waiters;
use crate::kv::Kv;
use crate::metrics::{Metrics, Resubscribe};

/// How often the views whose polls all gave up are dropped.
const IDLE_CHECK: Duration = Duration::from_secs(5);

pub struct Views {
    by_id: HashMap<RecordId, Waiters>,
    metrics: Metrics,
}

impl Views {
    pub fn new(metrics: Metrics) -> Self {
        Self { by_id: HashMap::new(), metrics }
    }

    fn counted(&self) {
        self.metrics.cluster_views(self.by_id.len());
    }
}

impl Actor for Views {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(16_384);
        ctx.run_interval(IDLE_CHECK, |act, _| {
            act.by_id.retain(|_, w| w.prune());
            act.counted();
        });
    }
}

/// Hold `tx` until the attempt stored under `id` changes; answers whether it was held
/// (past the waiter cap `tx` is dropped, and the poll answers at once).
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Watch {
    pub id: RecordId,
    pub tx: oneshot::Sender<()>,
}

impl Handler<Watch> for Views {
    type Result = bool;

    fn handle(&mut self, msg: Watch, _ctx: &mut Self::Context) -> bool {
        let held = self.by_id.entry(msg.id).or_default().hold(msg.tx);
        self.counted();
        held
    }
}

/// A transition of the attempt stored under this record id was committed (by any node).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Wake(pub RecordId);

impl Handler<Wake> for Views {
    type Result = ();

    fn handle(&mut self, msg: Wake, _ctx: &mut Self::Context) {
        if let Some(mut w) = self.by_id.remove(&msg.0) {
            w.wake();
            self.counted();
        }
    }
}

/// The pub/sub connection was lost (or is back): wake every view.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WakeEveryone;

impl Handler<WakeEveryone> for Views {
    type Result = ();

    fn handle(&mut self, _: WakeEveryone, _ctx: &mut Self::Context) {
        self.by_id.clear();
        self.counted();
    }
}

/// How many views this node holds.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CountViews;

impl Handler<CountViews> for Views {
    type Result = usize;

    fn handle(&mut self, _: CountViews, _ctx: &mut Self::Context) -> usize {
        self.by_id.len()
    }
}

/// Listens for committed transitions and wakes the views of this node: on `channel` of
/// one server, or on every sharded bucket channel of a Redis Cluster ([`sharded`]).
/// Reconnects with backoff for as long as the node runs; every (re)connection wakes
/// every view, since messages sent while it was away are lost.
pub async fn listen(kv: Kv, channel: String, views: Addr<Views>, metrics: Metrics) {
    if kv.topology() == crate::kv::TopologyKind::Cluster {
        return super::sharded::listen(kv, views, metrics).await;
    }
    let mut backoff = Backoff::default();
    loop {
        let subscribed = async {
            let mut pubsub = kv.pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match subscribed.await {
            Ok(pubsub) => {
                backoff = Backoff::default();
                tracing::info!(channel = %channel, "cluster: listening for wake-ups");
                views.do_send(WakeEveryone);
                let mut stream = pubsub.into_on_message();
                // A Sentinel failover moves the primary: subscribe there instead.
                let mut moved = kv.primary_changes();
                let why = loop {
                    let msg = tokio::select! {
                        msg = stream.next() => msg.ok_or(Resubscribe::Reconnect),
                        _ = async { moved.as_mut()?.changed().await.ok() }, if moved.is_some() => {
                            Err(Resubscribe::Failover)
                        }
                    };
                    let msg = match msg {
                        Ok(msg) => msg,
                        Err(why) => break why,
                    };
                    metrics.cluster_wakeup();
                    if let Some(poll) = std::str::from_utf8(msg.get_payload_bytes()).ok().and_then(RecordId::parse) {
                        views.do_send(Wake(poll));
                    }
                };
                tracing::warn!(why = ?why, "cluster: pub/sub connection lost or its primary moved; reconnecting");
                metrics.cluster_resubscribed(why);
                views.do_send(WakeEveryone);
            }
            Err(e) => backoff.failed(&e).await,
        }
    }
}

/// The pause before subscribing again after a failed attempt: 100 ms, doubling to 2 s.
pub struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Self(Duration::from_millis(100))
    }
}

impl Backoff {
    /// Logs why subscribing failed and waits before the next try.
    pub async fn failed(&mut self, e: &redis::RedisError) {
        tracing::warn!(error = %e, "cluster: cannot subscribe to wake-ups; retrying");
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(2));
    }
}
