//! What the fake WeChat platform remembers: the tickets of the QR codes it made (and how
//! often the sandbox phone scanned each) and the access tokens it issued. In process, or in Redis when the nodes of a cluster share
//! one sandbox (a QR made through one node is scanned through another's
//! `/_sandbox/scan`, a token issued by one node is accepted by all). Bounded both ways:
//! entries expire with the ticket or token, and at most [`MAX_TICKETS`] are kept.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::kv::{Class, Kv};
use crate::wall::unix_secs;

/// Tickets and tokens the sandbox remembers at most (oldest dropped first).
pub const MAX_TICKETS: usize = 200_000;
pub const TOKEN_LIFE_SECS: i64 = 7200;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TicketInfo {
    pub app_id: String,
    pub scene: String,
    pub url: String,
    pub expires_at: i64,
    /// Scans through the sandbox phone so far (kept beside the ticket in Redis, so it is
    /// never part of the stored ticket itself).
    #[serde(default, skip_serializing)]
    pub scans: u32,
}

pub enum SandboxState {
    Memory { tickets: Mutex<HashMap<String, TicketInfo>>, tokens: Mutex<HashMap<String, (String, i64)>> },
    Redis(Kv),
}

/// The sandbox's own storage failed (Redis down): the call answers WeChat's "system busy".
#[derive(Debug)]
pub struct Busy;

fn busy(e: redis::RedisError) -> Busy {
    tracing::warn!(error = %e, "sandbox: redis call failed");
    Busy
}

impl SandboxState {
    pub fn memory() -> Self {
        SandboxState::Memory { tickets: Mutex::default(), tokens: Mutex::default() }
    }

    /// Remembers `ticket`; `false` when the sandbox is full.
    pub async fn put_ticket(&self, ticket: &str, info: &TicketInfo) -> Result<bool, Busy> {
        let now = unix_secs() as i64;
        match self {
            SandboxState::Memory { tickets, .. } => {
                let mut t = tickets.lock().unwrap_or_else(|e| e.into_inner());
                if t.len() >= MAX_TICKETS {
                    t.retain(|_, i| i.expires_at > now);
                    if t.len() >= MAX_TICKETS {
                        return Ok(false);
                    }
                }
                t.insert(ticket.to_string(), info.clone());
                Ok(true)
            }
            SandboxState::Redis(kv) => {
                let index = kv.key(&["sbx", "tickets"]);
                let mut c = kv.conn(Class::Fast);
                let data = serde_json::to_string(info).map_err(|_| Busy)?;
                let ttl = (info.expires_at - now).max(1);
                let (_, _, n): ((), (), usize) = redis::pipe()
                    .cmd("ZREMRANGEBYSCORE")
                    .arg(&index)
                    .arg("-inf")
                    .arg(now)
                    .cmd("SET")
                    .arg(kv.key(&["sbx", "ticket", ticket]))
                    .arg(data)
                    .arg("EX")
                    .arg(ttl)
                    .cmd("ZADD")
                    .arg(&index)
                    .arg(info.expires_at)
                    .arg(ticket)
                    .ignore()
                    .cmd("ZCARD")
                    .arg(&index)
                    .query_async(&mut c)
                    .await
                    .map_err(busy)?;
                if n > MAX_TICKETS {
                    let _: Result<(), _> =
                        redis::cmd("ZPOPMIN").arg(&index).arg(n - MAX_TICKETS).query_async(&mut c).await;
                }
                Ok(true)
            }
        }
    }

    /// The live ticket, if any.
    pub async fn ticket(&self, ticket: &str) -> Result<Option<TicketInfo>, Busy> {
        let now = unix_secs() as i64;
        let found = match self {
            SandboxState::Memory { tickets, .. } => {
                tickets.lock().unwrap_or_else(|e| e.into_inner()).get(ticket).cloned()
            }
            SandboxState::Redis(kv) => {
                let mut c = kv.conn(Class::Fast);
                let (raw, scans): (Option<String>, Option<u32>) = redis::pipe()
                    .get(kv.key(&["sbx", "ticket", ticket]))
                    .get(kv.key(&["sbx", "scans", ticket]))
                    .query_async(&mut c)
                    .await
                    .map_err(busy)?;
                raw.and_then(|r| serde_json::from_str::<TicketInfo>(&r).ok())
                    .map(|info| TicketInfo { scans: scans.unwrap_or(0), ..info })
            }
        };
        Ok(found.filter(|t| t.expires_at > now))
    }

    /// Counts one scan of `ticket` through the sandbox phone (a ticket no longer live is
    /// left alone).
    pub async fn count_scan(&self, ticket: &str) -> Result<(), Busy> {
        match self {
            SandboxState::Memory { tickets, .. } => {
                let now = unix_secs() as i64;
                let mut tickets = tickets.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(t) = tickets.get_mut(ticket).filter(|t| t.expires_at > now) {
                    t.scans = t.scans.saturating_add(1);
                }
                Ok(())
            }
            SandboxState::Redis(kv) => {
                let Some(info) = self.ticket(ticket).await? else { return Ok(()) };
                let key = kv.key(&["sbx", "scans", ticket]);
                let mut c = kv.conn(Class::Fast);
                redis::pipe()
                    .incr(&key, 1)
                    .ignore()
                    .cmd("EXPIREAT")
                    .arg(&key)
                    .arg(info.expires_at)
                    .ignore()
                    .query_async(&mut c)
                    .await
                    .map_err(busy)
            }
        }
    }

    /// Up to `n` live tickets, newest first.
    pub async fn live_tickets(&self, n: usize) -> Result<Vec<(String, TicketInfo)>, Busy> {
        let now = unix_secs() as i64;
        let mut list: Vec<(String, TicketInfo)> = match self {
            SandboxState::Memory { tickets, .. } => {
                let t = tickets.lock().unwrap_or_else(|e| e.into_inner());
                t.iter().filter(|(_, i)| i.expires_at > now).map(|(k, i)| (k.clone(), i.clone())).collect()
            }
            SandboxState::Redis(kv) => {
                let mut c = kv.conn(Class::Fast);
                let newest: Vec<String> = redis::cmd("ZREVRANGE")
                    .arg(kv.key(&["sbx", "tickets"]))
                    .arg(0)
                    .arg(n.saturating_sub(1))
                    .query_async(&mut c)
                    .await
                    .map_err(busy)?;
                let mut out = Vec::with_capacity(newest.len());
                for t in newest {
                    if let Some(info) = self.ticket(&t).await? {
                        out.push((t, info));
                    }
                }
                out
            }
        };
        list.sort_by_key(|(_, i)| std::cmp::Reverse(i.expires_at));
        list.truncate(n);
        Ok(list)
    }

    /// A token for `app_id`: with `reuse` (stable_token in normal mode) the current one
    /// while it has more than 5 minutes left, else a new one from `fresh`.
    pub async fn issue_token(&self, app_id: &str, reuse: bool, fresh: String) -> Result<(String, i64), Busy> {
        let now = unix_secs() as i64;
        match self {
            SandboxState::Memory { tokens, .. } => {
                let mut tokens = tokens.lock().unwrap_or_else(|e| e.into_inner());
                tokens.retain(|_, (_, exp)| *exp > now);
                if reuse
                    && let Some((t, (_, exp))) = tokens.iter().find(|(_, (a, exp))| a == app_id && *exp - now > 300)
                {
                    return Ok((t.clone(), exp - now));
                }
                tokens.insert(fresh.clone(), (app_id.to_string(), now + TOKEN_LIFE_SECS));
                Ok((fresh, TOKEN_LIFE_SECS))
            }
            SandboxState::Redis(kv) => {
                let mut c = kv.conn(Class::Fast);
                let current = kv.key(&["sbx", "app-token", app_id]);
                if reuse {
                    let (tok, ttl): (Option<String>, i64) =
                        redis::pipe().get(&current).ttl(&current).query_async(&mut c).await.map_err(busy)?;
                    if let Some(t) = tok.filter(|_| ttl > 300) {
                        return Ok((t, ttl));
                    }
                }
                let _: () = redis::pipe()
                    .cmd("SET")
                    .arg(kv.key(&["sbx", "token", &fresh]))
                    .arg(app_id)
                    .arg("EX")
                    .arg(TOKEN_LIFE_SECS)
                    .ignore()
                    .cmd("SET")
                    .arg(&current)
                    .arg(&fresh)
                    .arg("EX")
                    .arg(TOKEN_LIFE_SECS)
                    .ignore()
                    .query_async(&mut c)
                    .await
                    .map_err(busy)?;
                Ok((fresh, TOKEN_LIFE_SECS))
            }
        }
    }

    /// The app a live token was issued to.
    pub async fn app_of_token(&self, token: &str) -> Result<Option<String>, Busy> {
        match self {
            SandboxState::Memory { tokens, .. } => {
                let tokens = tokens.lock().unwrap_or_else(|e| e.into_inner());
                Ok(tokens.get(token).filter(|(_, exp)| *exp > unix_secs() as i64).map(|(app, _)| app.clone()))
            }
            SandboxState::Redis(kv) => {
                if token.is_empty() || token.len() > 512 {
                    return Ok(None);
                }
                let mut c = kv.conn(Class::Fast);
                redis::cmd("GET").arg(kv.key(&["sbx", "token", token])).query_async(&mut c).await.map_err(busy)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(expires_in: i64) -> TicketInfo {
        TicketInfo {
            app_id: "wx1".into(),
            scene: "s1".into(),
            url: "http://weixin.qq.com/q/x".into(),
            expires_at: unix_secs() as i64 + expires_in,
            scans: 0,
        }
    }

    async fn contract(a: &SandboxState, b: &SandboxState) {
        assert!(a.put_ticket("T1", &info(60)).await.unwrap());
        assert!(a.put_ticket("T0", &info(-1)).await.unwrap());
        assert_eq!(b.ticket("T1").await.unwrap().unwrap().scene, "s1", "seen by the other node");
        assert!(b.ticket("T0").await.unwrap().is_none(), "an expired ticket is gone");
        let live = b.live_tickets(50).await.unwrap();
        assert_eq!(live.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(), ["T1"]);
        assert_eq!(live[0].1.scans, 0);
        a.count_scan("T1").await.unwrap();
        b.count_scan("T1").await.unwrap();
        a.count_scan("T0").await.unwrap();
        assert_eq!(b.ticket("T1").await.unwrap().unwrap().scans, 2, "scans through either node count");
        assert_eq!(a.live_tickets(50).await.unwrap()[0].1.scans, 2);
        let (t1, _) = a.issue_token("wx1", true, "tok-a".into()).await.unwrap();
        let (t2, _) = b.issue_token("wx1", true, "tok-b".into()).await.unwrap();
        assert_eq!(t1, t2, "stable_token hands out the live token, whichever node is asked");
        assert_eq!(b.app_of_token(&t1).await.unwrap().as_deref(), Some("wx1"));
        let (t3, _) = b.issue_token("wx1", false, "tok-c".into()).await.unwrap();
        assert_eq!(t3, "tok-c");
        assert_eq!(a.app_of_token("tok-c").await.unwrap().as_deref(), Some("wx1"));
        assert!(a.app_of_token("nope").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn one_process() {
        let s = SandboxState::memory();
        contract(&s, &s).await;
    }

    #[tokio::test]
    async fn nodes_share_it_in_redis() {
        let redis = crate::test_redis::RedisServer::start();
        let node = || SandboxState::Redis(Kv::new(&redis.url(), "s").unwrap());
        contract(&node(), &node()).await;
    }
}
