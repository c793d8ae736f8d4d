//! Push deduplication (WECHAT.md §4): WeChat re-sends a push it got no answer to within
//! 5 s, up to three times. The first delivery is processed; every duplicate gets the
//! first one's reply, without touching the attempt.
//!
//! Keys live `wechat.dedup_ttl_secs`. In process by default; in Redis (`SET NX EX`)
//! whenever snapshots use Redis, so several nodes behind a load balancer dedupe together.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use tokio::sync::Notify;

/// Keys the in-process store holds at most; past it the oldest expire first.
const MEMORY_CAP: usize = 200_000;
/// Marker stored while the first delivery is still being processed.
const PENDING: &str = "\u{0}pending";
/// How often a duplicate re-reads a pending Redis key.
const REDIS_POLL: Duration = Duration::from_millis(25);

/// The outcome of claiming a push's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// First delivery: process it, then [`Dedup::complete`] with the reply.
    First,
    /// Already processed: answer with this reply (`None`: "nothing to say").
    Done(Option<String>),
    /// Still processing after the wait: answer "nothing to say" now.
    InFlight,
}

struct Entry {
    expires: Instant,
    /// `None` while pending; `Some(reply)` once done (`""` = no reply).
    reply: Option<String>,
    done: Arc<Notify>,
}

#[derive(Clone)]
enum Store {
    Memory(Arc<Mutex<HashMap<String, Entry>>>, Duration),
    Redis(crate::kv::Kv, Duration, Arc<crate::breaker::Breaker>),
}

/// The dedup store: cheap to clone, all clones share one memory.
#[derive(Clone)]
pub struct Dedup(Store);

fn encode(reply: Option<&str>) -> String {
    reply.unwrap_or("").to_string()
}

fn decode(stored: String) -> Option<String> {
    (!stored.is_empty()).then_some(stored)
}

impl Dedup {
    pub fn memory(ttl: Duration) -> Self {
        Dedup(Store::Memory(Arc::new(Mutex::new(HashMap::new())), ttl))
    }

    /// Dedup keys shared by every node through Redis.
    pub fn redis(kv: &crate::kv::Kv, ttl: Duration) -> Self {
        Dedup(Store::Redis(kv.clone(), ttl, Default::default()))
    }

    /// Claims `key`; a duplicate waits up to `wait` for the first delivery's reply.
    pub async fn claim(&self, key: &str, wait: Duration) -> Claim {
        match &self.0 {
            Store::Memory(map, ttl) => {
                let notify = {
                    let mut m = map.lock().unwrap_or_else(|e| e.into_inner());
                    let now = Instant::now();
                    match m.get(key).filter(|e| e.expires > now) {
                        Some(e) => match &e.reply {
                            Some(r) => return Claim::Done(decode(r.clone())),
                            None => e.done.clone(),
                        },
                        None => {
                            if m.len() >= MEMORY_CAP {
                                m.retain(|_, e| e.expires > now);
                            }
                            if m.len() >= MEMORY_CAP {
                                // Still full of live keys: forget the one closest to expiry.
                                if let Some(k) = m.iter().min_by_key(|(_, e)| e.expires).map(|(k, _)| k.clone()) {
                                    m.remove(&k);
                                }
                            }
                            m.insert(
                                key.to_string(),
                                Entry { expires: now + *ttl, reply: None, done: Arc::new(Notify::new()) },
                            );
                            return Claim::First;
                        }
                    }
                };
                let _ = tokio::time::timeout(wait, notify.notified()).await;
                let m = map.lock().unwrap_or_else(|e| e.into_inner());
                match m.get(key).and_then(|e| e.reply.clone()) {
                    Some(r) => Claim::Done(decode(r)),
                    None => Claim::InFlight,
                }
            }
            Store::Redis(kv, ttl, breaker) => {
                if !breaker.allows() {
                    return Claim::First;
                }
                let mut c = kv.conn(crate::kv::Class::Fast);
                let k = kv.key(&["dedup", key]);
                let set: Result<Option<String>, _> = redis::cmd("SET")
                    .arg(&k)
                    .arg(PENDING)
                    .arg("NX")
                    .arg("EX")
                    .arg(ttl.as_secs())
                    .query_async(&mut c)
                    .await;
                match set {
                    Ok(Some(_)) => return Claim::First,
                    Ok(None) => {}
                    // Redis down: better process twice (transitions are idempotent) than drop.
                    Err(e) => {
                        breaker.trip();
                        tracing::warn!(error = %e, "dedup store unavailable; processing the push");
                        return Claim::First;
                    }
                }
                let deadline = Instant::now() + wait;
                loop {
                    let got: Result<Option<String>, _> = c.get(&k).await;
                    match got {
                        Ok(Some(v)) if v != PENDING => return Claim::Done(decode(v)),
                        Ok(_) if Instant::now() < deadline => tokio::time::sleep(REDIS_POLL).await,
                        _ => return Claim::InFlight,
                    }
                }
            }
        }
    }

    /// Forgets `key` after the first delivery failed, so WeChat's retry is processed anew.
    pub async fn release(&self, key: &str) {
        match &self.0 {
            Store::Memory(map, _) => {
                let mut m = map.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(e) = m.remove(key) {
                    e.done.notify_waiters();
                }
            }
            Store::Redis(kv, _, _) => {
                let mut c = kv.conn(crate::kv::Class::Fast);
                let _: Result<(), _> = c.del(kv.key(&["dedup", key])).await;
            }
        }
    }

    /// Records the reply of the first delivery and wakes waiting duplicates.
    pub async fn complete(&self, key: &str, reply: Option<&str>) {
        match &self.0 {
            Store::Memory(map, _) => {
                let mut m = map.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(e) = m.get_mut(key) {
                    e.reply = Some(encode(reply));
                    e.done.notify_waiters();
                }
            }
            Store::Redis(kv, ttl, breaker) => {
                if !breaker.allows() {
                    return;
                }
                let mut c = kv.conn(crate::kv::Class::Fast);
                let k = kv.key(&["dedup", key]);
                let r: Result<(), _> = redis::cmd("SET")
                    .arg(&k)
                    .arg(encode(reply))
                    .arg("XX")
                    .arg("EX")
                    .arg(ttl.as_secs())
                    .query_async(&mut c)
                    .await;
                if let Err(e) = r {
                    breaker.trip();
                    tracing::warn!(error = %e, "dedup store: could not record a reply");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn exercise(d: Dedup, key: &str) {
        assert_eq!(d.claim(key, Duration::from_millis(10)).await, Claim::First);
        assert_eq!(d.claim(key, Duration::from_millis(10)).await, Claim::InFlight);
        let waiter = {
            let d = d.clone();
            let key = key.to_string();
            tokio::spawn(async move { d.claim(&key, Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        d.complete(key, Some("<xml>r</xml>")).await;
        assert_eq!(waiter.await.unwrap(), Claim::Done(Some("<xml>r</xml>".into())));
        assert_eq!(d.claim(key, Duration::ZERO).await, Claim::Done(Some("<xml>r</xml>".into())));
        let other = format!("{key}-none");
        assert_eq!(d.claim(&other, Duration::ZERO).await, Claim::First);
        d.complete(&other, None).await;
        assert_eq!(d.claim(&other, Duration::ZERO).await, Claim::Done(None));
        let failed = format!("{key}-failed");
        assert_eq!(d.claim(&failed, Duration::ZERO).await, Claim::First);
        d.release(&failed).await;
        assert_eq!(d.claim(&failed, Duration::ZERO).await, Claim::First, "a released key is processed again");
    }

    #[tokio::test]
    async fn memory_dedup() {
        exercise(Dedup::memory(Duration::from_secs(300)), "o|1|scan|s").await;
    }

    #[tokio::test]
    async fn memory_keys_expire() {
        let d = Dedup::memory(Duration::from_millis(20));
        assert_eq!(d.claim("k", Duration::ZERO).await, Claim::First);
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(d.claim("k", Duration::ZERO).await, Claim::First);
    }

    /// Against the real Redis of the test environment (scripts/services.sh starts it).
    #[tokio::test]
    async fn redis_dedup() {
        let url = std::env::var("SCANLOGIN_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
        let d = Dedup::redis(&crate::kv::Kv::new(&url, "test").unwrap(), Duration::from_secs(30));
        let key = format!("test-{}", crate::ids::PollId::generate().as_str());
        exercise(d, &key).await;
    }
}
