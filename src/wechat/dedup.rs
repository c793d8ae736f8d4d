//! Push deduplication (docs/wechat.md, "Timeouts, resends, dedup"): WeChat re-sends a
//! push it got no answer to within 5 s, up to three times. The first delivery is
//! processed; a duplicate gets the first one's reply once that one is done, without
//! touching the attempt.
//!
//! A claim is a *lease*, not a promise: the first delivery holds the key as "pending"
//! for `lease` (the callback budget) only. A duplicate waits for the outcome while the
//! lease runs; should the holder die (a crash, a failed task), the lease ends and the
//! retry takes the claim over and processes the push again — transitions are idempotent,
//! so that is safe, whereas answering `success` for a push nobody processed loses it. A
//! finished delivery's reply is kept `wechat.dedup_ttl_secs`.
//!
//! In process by default; in Redis (`SET NX PX`) whenever snapshots use Redis, so several
//! nodes behind a load balancer dedupe together.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::AsyncCommands;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Keys the in-process store holds at most; past it the oldest expire first.
const MEMORY_CAP: usize = 200_000;
/// Marker stored while the first delivery is still being processed.
const PENDING: &str = "\u{0}pending";
/// How often a duplicate re-reads a pending Redis key.
const REDIS_POLL: Duration = Duration::from_millis(25);

/// The outcome of claiming a push's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Process it (first delivery, or a take-over of a lapsed lease), then
    /// [`Dedup::complete`] with the reply or [`Dedup::release`] on failure.
    First,
    /// Already processed: answer with this reply (`None`: "nothing to say").
    Done(Option<String>),
    /// Another delivery holds a live lease and had no outcome within the wait: do not
    /// acknowledge (WeChat will send it again).
    InFlight,
}

struct Entry {
    expires: Instant,
    /// `None` while pending; `Some(reply)` once done (`""` = no reply).
    reply: Option<String>,
    /// While pending: when the holder's lease lapses.
    lease_until: Instant,
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

/// What a look at the in-process entry found.
enum Seen {
    Claim(Claim),
    Pending(tokio::sync::futures::OwnedNotified, Instant),
}

impl Dedup {
    pub fn memory(ttl: Duration) -> Self {
        Dedup(Store::Memory(Arc::new(Mutex::new(HashMap::new())), ttl))
    }

    /// Dedup keys shared by every node through Redis.
    pub fn redis(kv: &crate::kv::Kv, ttl: Duration) -> Self {
        Dedup(Store::Redis(kv.clone(), ttl, Default::default()))
    }

    /// Claims `key` for `lease`; a duplicate waits up to `wait` for the first delivery's
    /// reply, and takes the claim over if the holder's lease lapses meanwhile.
    pub async fn claim(&self, key: &str, lease: Duration, wait: Duration) -> Claim {
        let deadline = Instant::now() + wait;
        match &self.0 {
            Store::Memory(map, ttl) => loop {
                match memory_look(map, key, *ttl, lease) {
                    Seen::Claim(c) => return c,
                    Seen::Pending(_, _) if Instant::now() >= deadline => return Claim::InFlight,
                    Seen::Pending(done, lease_until) => {
                        let _ = tokio::time::timeout_at(deadline.min(lease_until), done).await;
                    }
                }
            },
            Store::Redis(kv, _, breaker) => {
                if !breaker.allows() {
                    return Claim::First;
                }
                let mut c = kv.conn(crate::kv::Class::Fast);
                let k = kv.key(&["dedup", key]);
                loop {
                    let set: Result<Option<String>, _> = redis::cmd("SET")
                        .arg(&k)
                        .arg(PENDING)
                        .arg("NX")
                        .arg("PX")
                        .arg(lease.as_millis().max(1) as u64)
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
                    let got: Result<Option<String>, _> = c.get(&k).await;
                    match got {
                        Ok(Some(v)) if v != PENDING => return Claim::Done(decode(v)),
                        // Gone between the two calls (lease lapsed, released): claim again.
                        Ok(None) => continue,
                        Ok(Some(_)) if Instant::now() < deadline => tokio::time::sleep(REDIS_POLL).await,
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

    /// Records the reply of the processed delivery (whoever holds the key now: a retry
    /// that took a lapsed lease over did the same idempotent work) and wakes duplicates.
    pub async fn complete(&self, key: &str, reply: Option<&str>) {
        match &self.0 {
            Store::Memory(map, ttl) => {
                let mut m = map.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                let e = m.entry(key.to_string()).or_insert_with(|| Entry {
                    expires: now + *ttl,
                    reply: None,
                    lease_until: now,
                    done: Arc::new(Notify::new()),
                });
                e.reply = Some(encode(reply));
                e.done.notify_waiters();
            }
            Store::Redis(kv, ttl, breaker) => {
                if !breaker.allows() {
                    return;
                }
                let mut c = kv.conn(crate::kv::Class::Fast);
                let k = kv.key(&["dedup", key]);
                let r: Result<(), _> =
                    redis::cmd("SET").arg(&k).arg(encode(reply)).arg("EX").arg(ttl.as_secs()).query_async(&mut c).await;
                if let Err(e) = r {
                    breaker.trip();
                    tracing::warn!(error = %e, "dedup store: could not record a reply");
                }
            }
        }
    }
}

/// One look at the in-process entry of `key`: done, pending under a live lease (with a
/// wake-up registered before the lock is let go, so no completion is missed), or
/// claimed now — fresh, or taken over from a lapsed lease.
fn memory_look(map: &Mutex<HashMap<String, Entry>>, key: &str, ttl: Duration, lease: Duration) -> Seen {
    let mut m = map.lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    match m.get(key).filter(|e| e.expires > now) {
        Some(Entry { reply: Some(r), .. }) => return Seen::Claim(Claim::Done(decode(r.clone()))),
        Some(e) if e.lease_until > now => return Seen::Pending(e.done.clone().notified_owned(), e.lease_until),
        _ => {}
    }
    if m.len() >= MEMORY_CAP {
        m.retain(|_, e| e.expires > now);
    }
    if m.len() >= MEMORY_CAP {
        // Still full of live keys: forget the one closest to expiry.
        if let Some(k) = m.iter().min_by_key(|(_, e)| e.expires).map(|(k, _)| k.clone()) {
            m.remove(&k);
        }
    }
    let done = m.remove(key).map_or_else(|| Arc::new(Notify::new()), |e| e.done);
    m.insert(key.to_string(), Entry { expires: now + ttl, reply: None, lease_until: now + lease, done });
    Seen::Claim(Claim::First)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(30);

    async fn claim(d: &Dedup, key: &str, wait: Duration) -> Claim {
        d.claim(key, LEASE, wait).await
    }

    async fn exercise(d: Dedup, key: &str) {
        assert_eq!(claim(&d, key, Duration::from_millis(10)).await, Claim::First);
        assert_eq!(claim(&d, key, Duration::from_millis(10)).await, Claim::InFlight, "not acknowledged blindly");
        let waiter = {
            let d = d.clone();
            let key = key.to_string();
            tokio::spawn(async move { claim(&d, &key, Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        d.complete(key, Some("<xml>r</xml>")).await;
        assert_eq!(waiter.await.unwrap(), Claim::Done(Some("<xml>r</xml>".into())));
        assert_eq!(claim(&d, key, Duration::ZERO).await, Claim::Done(Some("<xml>r</xml>".into())));
        let other = format!("{key}-none");
        assert_eq!(claim(&d, &other, Duration::ZERO).await, Claim::First);
        d.complete(&other, None).await;
        assert_eq!(claim(&d, &other, Duration::ZERO).await, Claim::Done(None));
        let failed = format!("{key}-failed");
        assert_eq!(claim(&d, &failed, Duration::ZERO).await, Claim::First);
        d.release(&failed).await;
        assert_eq!(claim(&d, &failed, Duration::ZERO).await, Claim::First, "a released key is processed again");
        // A holder that dies: its lease lapses and a waiting retry takes the claim over.
        let dead = format!("{key}-dead");
        assert_eq!(d.claim(&dead, Duration::from_millis(300), Duration::ZERO).await, Claim::First);
        let t = Instant::now();
        assert_eq!(d.claim(&dead, Duration::from_millis(300), Duration::from_secs(5)).await, Claim::First);
        let waited = t.elapsed();
        assert!(waited >= Duration::from_millis(200) && waited < Duration::from_secs(2), "{waited:?}");
        assert_eq!(claim(&d, &dead, Duration::ZERO).await, Claim::InFlight, "the new holder's lease runs");
        d.complete(&dead, None).await;
        assert_eq!(claim(&d, &dead, Duration::ZERO).await, Claim::Done(None));
    }

    #[tokio::test]
    async fn memory_dedup() {
        exercise(Dedup::memory(Duration::from_secs(300)), "o|1|scan|s").await;
    }

    #[tokio::test]
    async fn memory_keys_expire() {
        let d = Dedup::memory(Duration::from_millis(20));
        assert_eq!(claim(&d, "k", Duration::ZERO).await, Claim::First);
        d.complete("k", None).await;
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(claim(&d, "k", Duration::ZERO).await, Claim::First);
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
