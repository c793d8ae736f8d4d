//! Views: the local actors of a cluster node for the attempts it is serving right now.
//!
//! A node that holds long polls (or event streams) for an attempt keeps one [`View`]
//! actor for it: the waiters and a timer to the attempt's deadline. The truth stays in
//! Redis; a view only knows *when* to look again. It is woken by the pub/sub message
//! every committed transition publishes (from any node), by its deadline, or by a lost
//! pub/sub connection (then every view wakes: messages may have been missed). A view
//! with no waiters left stops (passivation): a node holds actors only for the attempts
//! it is serving.
//!
//! [`Views`] is the registry of one node's views: it starts them on demand, routes
//! wake-ups to them, and forgets them when they stop.

use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;
use futures_util::StreamExt;
use tokio::sync::oneshot;

use crate::engine::clock::Clock;
use crate::ids::PollId;
use crate::metrics::Metrics;

/// Waiters one view holds at most; further long polls answer at once.
const MAX_WAITERS: usize = 32;
/// How often a view drops the waiters whose polls gave up, and stops when none is left.
const IDLE_CHECK: Duration = Duration::from_secs(5);

pub struct Views {
    by_poll: HashMap<PollId, Addr<View>>,
    clock: Clock,
    metrics: Metrics,
}

impl Views {
    pub fn new(clock: Clock, metrics: Metrics) -> Self {
        Self { by_poll: HashMap::new(), clock, metrics }
    }
}

impl Actor for Views {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(16_384);
    }
}

/// Hold `tx` until the attempt `poll` (deadline `expires_at_ms`) changes. Answers
/// `false` when the view is full (the poll should answer at once).
pub struct Watch {
    pub poll: PollId,
    pub expires_at_ms: u64,
    pub tx: oneshot::Sender<()>,
}

impl Message for Watch {
    type Result = bool;
}

impl Handler<Watch> for Views {
    type Result = bool;

    fn handle(&mut self, msg: Watch, ctx: &mut Self::Context) -> bool {
        let addr = match self.by_poll.get(&msg.poll).filter(|a| a.connected()) {
            Some(a) => a.clone(),
            None => {
                let view = View {
                    poll: msg.poll.clone(),
                    expires_at_ms: msg.expires_at_ms,
                    waiters: Vec::new(),
                    clock: self.clock,
                    views: ctx.address(),
                };
                let addr = view.start();
                self.by_poll.insert(msg.poll.clone(), addr.clone());
                self.metrics.cluster_views(self.by_poll.len());
                addr
            }
        };
        // A view that just stopped drops the message, and with it `tx`: the poll wakes
        // and reads again, which is always safe.
        addr.try_send(Hold(msg.tx)).is_ok()
    }
}

/// A transition of `poll` was committed (by any node).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Wake(pub PollId);

impl Handler<Wake> for Views {
    type Result = ();

    fn handle(&mut self, msg: Wake, _ctx: &mut Self::Context) {
        if let Some(v) = self.by_poll.get(&msg.0) {
            v.do_send(WakeAll);
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
        for v in self.by_poll.values() {
            v.do_send(WakeAll);
        }
    }
}

/// A view stopped.
#[derive(Message)]
#[rtype(result = "()")]
struct Gone {
    poll: PollId,
    addr: Addr<View>,
}

impl Handler<Gone> for Views {
    type Result = ();

    fn handle(&mut self, msg: Gone, _ctx: &mut Self::Context) {
        if self.by_poll.get(&msg.poll).is_some_and(|a| *a == msg.addr) {
            self.by_poll.remove(&msg.poll);
            self.metrics.cluster_views(self.by_poll.len());
        }
    }
}

/// How many views this node holds.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CountViews;

impl Handler<CountViews> for Views {
    type Result = usize;

    fn handle(&mut self, _: CountViews, _ctx: &mut Self::Context) -> usize {
        self.by_poll.len()
    }
}

/// One attempt as this node serves it: waiters and a timer, no state of its own.
pub struct View {
    poll: PollId,
    expires_at_ms: u64,
    waiters: Vec<oneshot::Sender<()>>,
    clock: Clock,
    views: Addr<Views>,
}

impl Actor for View {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(64);
        // The deadline is a change too: held polls answer `expired` at once.
        ctx.run_later(self.clock.until(self.expires_at_ms), |_, ctx| ctx.stop());
        ctx.run_interval(IDLE_CHECK, |act, ctx| {
            act.waiters.retain(|w| !w.is_closed());
            if act.waiters.is_empty() {
                ctx.stop();
            }
        });
    }

    fn stopped(&mut self, ctx: &mut Self::Context) {
        // Dropping the senders wakes every held poll; they read the record again.
        self.waiters.clear();
        self.views.do_send(Gone { poll: self.poll.clone(), addr: ctx.address() });
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Hold(oneshot::Sender<()>);

impl Handler<Hold> for View {
    type Result = ();

    fn handle(&mut self, msg: Hold, _ctx: &mut Self::Context) {
        self.waiters.retain(|w| !w.is_closed());
        if self.waiters.len() < MAX_WAITERS {
            self.waiters.push(msg.0);
        }
        // else: `msg.0` drops here and that poll reads again at once.
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct WakeAll;

impl Handler<WakeAll> for View {
    type Result = ();

    fn handle(&mut self, _: WakeAll, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// Listens on `channel` for committed transitions and wakes the views of this node.
/// Reconnects with backoff for as long as the node runs; every (re)connection wakes
/// every view, since messages sent while it was away are lost.
pub async fn listen(url: String, channel: String, views: Addr<Views>, metrics: Metrics) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let subscribed = async {
            let client = redis::Client::open(url.as_str())?;
            let mut pubsub = tokio::time::timeout(Duration::from_secs(2), client.get_async_pubsub())
                .await
                .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "pub/sub connect timed out")))??;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match subscribed.await {
            Ok(pubsub) => {
                backoff = Duration::from_millis(100);
                tracing::info!(channel = %channel, "cluster: listening for wake-ups");
                views.do_send(WakeEveryone);
                let mut stream = pubsub.into_on_message();
                while let Some(msg) = stream.next().await {
                    metrics.cluster_wakeup();
                    if let Some(poll) = std::str::from_utf8(msg.get_payload_bytes()).ok().and_then(PollId::parse) {
                        views.do_send(Wake(poll));
                    }
                }
                tracing::warn!("cluster: pub/sub connection lost; reconnecting");
                views.do_send(WakeEveryone);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cluster: cannot subscribe to wake-ups; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}
