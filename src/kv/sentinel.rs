//! Redis Sentinel: which server is the primary, followed for as long as the node runs.
//!
//! The `redis` crate's sentinel client picks the primary once and does not follow a
//! failover. Here a task asks the sentinels (`SENTINEL get-master-addr-by-name`) at
//! start and every second, and at once when a sentinel announces `+switch-master`;
//! when the answer changes it opens connections to the new primary and every caller
//! uses them from its next call (a call in flight on the old primary fails, and its
//! request answers 503). The wake-up listener is told too ([`Follower::changes`]): its
//! subscription moves to the new primary.

use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use tokio::sync::watch;

use super::{CONNECT_TIMEOUT, Class};

/// How often the sentinels are asked even when none announced a switch (a missed
/// announcement, a sentinel connection lost).
const ASK_EVERY: Duration = Duration::from_secs(1);

pub struct Follower {
    sentinels: Vec<String>,
    master: String,
    /// `redis://user:pw@` (or `rediss://…`): a primary's URL is this + `host:port/0`.
    base: String,
    ca: Option<Vec<u8>>,
    current: RwLock<Option<Primary>>,
    changed: watch::Sender<u64>,
}

/// The connections to the primary the sentinels named last.
#[derive(Clone)]
struct Primary {
    addr: String,
    client: Arc<redis::Client>,
    fast: ConnectionManager,
    bulk: ConnectionManager,
}

impl Follower {
    /// Starts following (needs a Tokio runtime); no connection is open until the first
    /// sentinel answers.
    pub fn start(sentinels: Vec<String>, master: String, base: String, ca: Option<Vec<u8>>) -> Arc<Self> {
        let f =
            Arc::new(Self { sentinels, master, base, ca, current: RwLock::new(None), changed: watch::channel(0).0 });
        tokio::spawn(follow(Arc::downgrade(&f)));
        f
    }

    fn current(&self) -> Option<Primary> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A connection of `class` to the current primary (`None`: none known yet).
    pub fn conn(&self, class: Class) -> Option<ConnectionManager> {
        self.current().map(|p| match class {
            Class::Fast => p.fast,
            Class::Bulk => p.bulk,
        })
    }

    /// The client of the current primary, for a pub/sub connection.
    pub fn client(&self) -> Option<Arc<redis::Client>> {
        self.current().map(|p| p.client)
    }

    /// Bumped at every switch to another primary.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The primary's `host:port` by the first sentinel that answers.
    async fn ask(&self) -> Option<String> {
        for s in &self.sentinels {
            let asked = async {
                let mut c = redis::Client::open(s.as_str())?.get_multiplexed_async_connection().await?;
                redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(&self.master)
                    .query_async::<Option<(String, u16)>>(&mut c)
                    .await
            };
            if let Ok(Ok(Some((host, port)))) = tokio::time::timeout(CONNECT_TIMEOUT, asked).await {
                return Some(format!("{host}:{port}"));
            }
        }
        None
    }

    /// Opens connections to `addr` and makes them the ones every caller uses.
    fn switch_to(&self, addr: String) -> Result<(), redis::RedisError> {
        let url = format!("{}{addr}/0", self.base);
        let client = super::client_of(&url, self.ca.as_deref())?;
        let (fast, bulk) = (super::manager(&client, Class::Fast)?, super::manager(&client, Class::Bulk)?);
        let before = self.current.write().unwrap_or_else(|p| p.into_inner()).replace(Primary {
            addr: addr.clone(),
            client: client.into(),
            fast,
            bulk,
        });
        match before {
            Some(old) => {
                tracing::warn!(from = %old.addr, to = %addr, "redis sentinel: the primary changed; following it")
            }
            None => tracing::info!(primary = %addr, "redis sentinel: primary found"),
        }
        self.changed.send_modify(|n| *n += 1);
        Ok(())
    }

    /// A pub/sub connection to the first sentinel that answers, subscribed to the
    /// announcements of a switch.
    async fn announcements(&self) -> Option<redis::aio::PubSub> {
        for s in &self.sentinels {
            let subscribed = async {
                let mut p = redis::Client::open(s.as_str())?.get_async_pubsub().await?;
                p.subscribe("+switch-master").await?;
                Ok::<_, redis::RedisError>(p)
            };
            if let Ok(Ok(p)) = tokio::time::timeout(CONNECT_TIMEOUT, subscribed).await {
                return Some(p);
            }
        }
        None
    }
}

/// Asks the sentinels every [`ASK_EVERY`] and after every `+switch-master`, for as long
/// as the follower lives.
async fn follow(follower: Weak<Follower>) {
    let mut announced = None;
    loop {
        let Some(f) = follower.upgrade() else { return };
        if let Some(addr) = f.ask().await
            && f.current().is_none_or(|p| p.addr != addr)
            && let Err(e) = f.switch_to(addr)
        {
            tracing::warn!(error = %e, "redis sentinel: cannot use the primary named");
        }
        if announced.is_none() {
            announced = f.announcements().await.map(|p| Box::pin(p.into_on_message()));
        }
        drop(f);
        match announced.as_mut() {
            // A message (or none within the second): ask again; the stream ended: the
            // sentinel is gone, another is subscribed to on the next round.
            Some(stream) => {
                if let Ok(None) = tokio::time::timeout(ASK_EVERY, stream.next()).await {
                    announced = None;
                }
            }
            None => tokio::time::sleep(ASK_EVERY).await,
        }
    }
}
