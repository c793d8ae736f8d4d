//! Wake-ups on a Redis Cluster: sharded pub/sub (`SSUBSCRIBE`, RESP3 pushes) on the
//! [`BUCKETS`] bucket channels, each living in its bucket's slot next to the records it
//! announces (see [`super::record`]).
//!
//! Four ways to lose messages, four answers, each waking every view (whatever was
//! missed is re-read):
//! - the connection to a node drops (a restart, a failover): the client would dial the
//!   same address again, but after a failover the slots live on the promoted replica,
//!   so the whole connection is opened again (with backoff while the cluster has not
//!   promoted it yet) and every channel subscribed where its slot lives now;
//! - a node gives up a slot (a migration, a failover seen by a node that was primary)
//!   and sends `sunsubscribe` for its channel: the client does *not* follow that, so
//!   the channel is subscribed again here, at the slot's new owner;
//! - the whole connection ends: the same;
//! - a subscription is not answered in [`SUBSCRIBE_WAIT`] (a wedged connection): the
//!   same.

use actix::prelude::*;
use redis::{PushInfo, PushKind, Value};

use super::record::{BUCKETS, bucket_channel};
use super::views::{Backoff, Views, Wake, WakeEveryone};
use crate::engine::persist::seal::RecordId;
use crate::kv::{Kv, within};
use crate::metrics::{Metrics, Resubscribe};

/// Every bucket channel.
fn channels() -> Vec<String> {
    (0..BUCKETS).map(|b| bucket_channel(&format!("{b:02x}"))).collect()
}

/// The text of a push's `i`th value.
fn text(push: &PushInfo, i: usize) -> Option<&str> {
    match push.data.get(i)? {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

/// The longest a subscription may take. The connection has no response timeout of its
/// own (a subscriber waits for pushes, not answers), and a cluster connection can wedge
/// itself refreshing its slot map (see `crate::kv::conn::LazyCluster`): a listener
/// waiting on it for good would wake no poll again. Past this it starts over.
const SUBSCRIBE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

pub async fn listen(kv: Kv, views: Addr<Views>, metrics: Metrics) {
    let channels = channels();
    let mut backoff = Backoff::default();
    let mut first = true;
    loop {
        let subscribed = async {
            let (conn, pushes) = kv.cluster_pubsub().await?;
            // One slot per channel: one command each (the client routes it to the slot's
            // primary), all on the one multiplexed connection at once.
            let each = channels.iter().map(|ch| {
                let mut c = conn.clone();
                async move { c.ssubscribe(ch).await }
            });
            within(SUBSCRIBE_WAIT, futures_util::future::try_join_all(each)).await?;
            Ok::<_, redis::RedisError>((conn, pushes))
        };
        match subscribed.await {
            Ok((mut conn, mut pushes)) => {
                backoff = Backoff::default();
                tracing::info!(channels = channels.len(), "cluster: listening for wake-ups on sharded channels");
                if !std::mem::take(&mut first) {
                    metrics.cluster_resubscribed(Resubscribe::Reconnect);
                }
                views.do_send(WakeEveryone);
                while let Some(push) = pushes.recv().await {
                    match push.kind {
                        PushKind::SMessage => {
                            metrics.cluster_wakeup();
                            if let Some(id) = text(&push, 1).and_then(RecordId::parse) {
                                views.do_send(Wake(id));
                            }
                        }
                        // Ours are never sent: this is a node dropping a slot's channel.
                        PushKind::SUnsubscribe => {
                            let Some(channel) = text(&push, 0).map(str::to_string) else { continue };
                            tracing::info!(channel = %channel, "cluster: a channel's slot moved; subscribing again");
                            views.do_send(WakeEveryone);
                            if let Err(e) = within(SUBSCRIBE_WAIT, conn.ssubscribe(&channel)).await {
                                tracing::warn!(error = %e, "cluster: cannot subscribe again; reconnecting");
                                break;
                            }
                            metrics.cluster_resubscribed(Resubscribe::SlotMoved);
                        }
                        // A node's connection dropped. The client would only dial that
                        // address again; after a failover the channels live elsewhere
                        // and would stay unsubscribed for good (seen: a killed primary
                        // dialled every second, a third of the wake-ups gone). Start
                        // over: a new connection learns the slots afresh.
                        PushKind::Disconnection => break,
                        _ => {}
                    }
                }
                tracing::warn!("cluster: sharded pub/sub connection lost; reconnecting");
                views.do_send(WakeEveryone);
            }
            Err(e) => backoff.failed(&e).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bucket_has_its_own_tagged_channel() {
        let all = channels();
        assert_eq!(all.len(), 256);
        assert_eq!(all[0], "sl:w:{00}");
        assert_eq!(all[255], "sl:w:{ff}");
    }
}
