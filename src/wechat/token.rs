//! The access-token manager of one official account (docs/wechat.md, "Access tokens").
//!
//! - cached, and refreshed in the background once it is within 5 minutes of expiry, so
//!   callers keep using the still-valid token and never wait for a refresh;
//! - single flight: when there is no usable token, one fetch runs and everyone waits for it;
//! - `stable_token` by default (several nodes fetching converge on the same token);
//! - compare-and-invalidate: a token reported bad (40001/40014/42001) is dropped only if
//!   it is still the cached one, so a token another caller just refreshed survives;
//! - errcode -1 ("system busy") is retried with backoff; fetching a token is idempotent;
//! - shared by the nodes of a cluster ([`ClusterToken`]): the token lives in Redis; the node
//!   that needs a new one takes a short lease and fetches it, the others wait for it and
//!   read it (a lease won just after a holder published finds that token instead of
//!   fetching a second one: [`ClusterToken::claim`]; a holder whose fetch fails frees
//!   the lease at once, and a waiting node takes it); a token reported bad is
//!   invalidated there once for all (compare-and-delete).
//!   Redis unreachable: each node fetches for itself, as a single node does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::Mutex;

use super::client::{WechatError, parse_json, send};
use crate::metrics::Metrics;
use crate::metrics::labels::{TokenRefresh, WechatApi};

/// Start refreshing this long before WeChat's stated expiry.
const REFRESH_AHEAD: Duration = Duration::from_secs(300);
/// Stop handing a token out this long before its expiry (clock skew, in-flight calls).
const SAFETY: Duration = Duration::from_secs(30);
/// Backoff between attempts after errcode -1.
const BUSY_BACKOFF: [Duration; 2] = [Duration::from_millis(100), Duration::from_millis(400)];

#[derive(Deserialize)]
struct TokenBody {
    access_token: String,
    expires_in: u64,
}

struct Cached {
    token: String,
    refresh_at: Instant,
    usable_until: Instant,
}

/// How long a node may hold the right to fetch an account's token.
const LEASE: Duration = Duration::from_secs(10);
/// How long a node without the lease waits for the holder's token before fetching itself.
const LEASE_WAIT: Duration = Duration::from_secs(5);

/// Deletes a key only if it still holds ARGV[1]: the shared token only if it is still
/// the one reported bad, the lease only if this node still holds it.
const CAD_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// What [`ClusterToken::claim`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// This node holds the lease: it fetches and publishes.
    Lease,
    /// Another node holds the lease: its token arrives in Redis shortly.
    Held,
    /// A token published after the caller's read, and how long it stays usable.
    Published(String, Duration),
}

/// The access token of one account as the nodes of a cluster share it in Redis.
pub struct ClusterToken {
    kv: crate::kv::Kv,
    token_key: String,
    lease_key: String,
    node: String,
}

impl ClusterToken {
    pub fn new(kv: &crate::kv::Kv, app_id: &str, node: &str) -> Self {
        Self {
            kv: kv.clone(),
            token_key: kv.key(&["wxtoken", app_id]),
            lease_key: kv.key(&["wxtoken-lease", app_id]),
            node: node.to_string(),
        }
    }

    /// The shared token and how long it stays usable.
    async fn read(&self) -> Result<Option<(String, Duration)>, redis::RedisError> {
        let mut c = self.kv.conn(crate::kv::Class::Fast);
        let (token, pttl): (Option<String>, i64) =
            redis::pipe().get(&self.token_key).pttl(&self.token_key).query_async(&mut c).await?;
        Ok(token.filter(|_| pttl > 0).map(|t| (t, Duration::from_millis(pttl as u64))))
    }

    async fn take_lease(&self) -> Result<bool, redis::RedisError> {
        let mut c = self.kv.conn(crate::kv::Class::Fast);
        let r: Option<String> = redis::cmd("SET")
            .arg(&self.lease_key)
            .arg(&self.node)
            .arg("NX")
            .arg("PX")
            .arg(LEASE.as_millis() as u64)
            .query_async(&mut c)
            .await?;
        Ok(r.is_some())
    }

    /// For a node whose read found no usable token: the right to fetch one, unless a
    /// token other than `stale` was published meanwhile. A holder publishes its token
    /// before it frees the lease, so a lease won after that finds the token on a second
    /// read; without that read, a node that read "none" just before another node
    /// published would win the freed lease and fetch a second token.
    pub async fn claim(&self, stale: Option<&str>) -> Result<Claim, redis::RedisError> {
        if !self.take_lease().await? {
            return Ok(Claim::Held);
        }
        match worth_using(self.read().await?, stale) {
            Some((token, usable)) => {
                self.release().await;
                Ok(Claim::Published(token, usable))
            }
            None => Ok(Claim::Lease),
        }
    }

    /// Frees the lease if this node still holds it.
    async fn release(&self) {
        let mut c = self.kv.conn(crate::kv::Class::Fast);
        let r: Result<i64, _> =
            redis::Script::new(CAD_LUA).key(&self.lease_key).arg(&self.node).invoke_async(&mut c).await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "could not free the access-token lease (it expires by itself)");
        }
    }

    /// Shares `token` for `usable`, then frees the lease. Two calls in that order, not
    /// one pipeline: on a Redis Cluster the two keys may live on different primaries,
    /// and the lease must not be free before the token can be read (see [`Self::claim`]).
    pub async fn publish(&self, token: &str, usable: Duration) -> Result<(), redis::RedisError> {
        let mut c = self.kv.conn(crate::kv::Class::Fast);
        let () = redis::cmd("SET")
            .arg(&self.token_key)
            .arg(token)
            .arg("PX")
            .arg(usable.as_millis().max(1) as u64)
            .query_async(&mut c)
            .await?;
        self.release().await;
        Ok(())
    }

    async fn invalidate(&self, failed: &str) {
        let mut c = self.kv.conn(crate::kv::Class::Fast);
        let r: Result<i64, _> = redis::Script::new(CAD_LUA).key(&self.token_key).arg(failed).invoke_async(&mut c).await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "could not invalidate the shared access token");
        }
    }
}

/// A shared token `found` in Redis, if it is worth using: not `stale` (the one being
/// refreshed away from) and usable for longer than [`SAFETY`].
fn worth_using(found: Option<(String, Duration)>, stale: Option<&str>) -> Option<(String, Duration)> {
    found.filter(|(t, usable)| Some(t.as_str()) != stale && *usable > SAFETY)
}

/// A token that stays usable `usable` from now (refreshed ahead as usual).
fn cached(token: String, usable: Duration) -> Cached {
    let now = Instant::now();
    Cached { token, refresh_at: now + (usable + SAFETY).saturating_sub(REFRESH_AHEAD), usable_until: now + usable }
}

/// Where and how to fetch tokens for one account.
pub struct TokenSource {
    pub app: String,
    pub app_id: String,
    pub secret: crate::config::Secret,
    pub api_base: String,
    pub use_stable: bool,
}

pub struct TokenManager {
    src: TokenSource,
    http: reqwest::Client,
    metrics: Metrics,
    shared: Option<ClusterToken>,
    slot: Mutex<Option<Cached>>,
    refreshing: AtomicBool,
}

impl TokenManager {
    /// `shared`: the cluster's copy of this account's token (none on a single node).
    pub fn new(src: TokenSource, http: reqwest::Client, metrics: Metrics, shared: Option<ClusterToken>) -> Arc<Self> {
        Arc::new(Self { src, http, metrics, shared, slot: Mutex::new(None), refreshing: AtomicBool::new(false) })
    }

    /// A usable access token.
    pub async fn get(self: &Arc<Self>) -> Result<String, WechatError> {
        let mut slot = self.slot.lock().await;
        let now = Instant::now();
        if let Some(c) = slot.as_ref().filter(|c| now < c.usable_until) {
            if now >= c.refresh_at && !self.refreshing.swap(true, Ordering::AcqRel) {
                let me = Arc::clone(self);
                actix_web::rt::spawn(async move {
                    if let Err(e) = me.refresh().await {
                        tracing::warn!(app = %me.src.app, error = %e, "background access-token refresh failed");
                    }
                    me.refreshing.store(false, Ordering::Release);
                });
            }
            return Ok(c.token.clone());
        }
        // No usable token: fetch while holding the lock, so concurrent callers wait for
        // this one fetch instead of each starting their own.
        let current = slot.as_ref().map(|c| c.token.clone());
        let cached = self.obtain(current.as_deref()).await?;
        let token = cached.token.clone();
        *slot = Some(cached);
        Ok(token)
    }

    async fn refresh(&self) -> Result<(), WechatError> {
        let current = self.slot.lock().await.as_ref().map(|c| c.token.clone());
        let cached = self.obtain(current.as_deref()).await?;
        *self.slot.lock().await = Some(cached);
        Ok(())
    }

    /// A token other than `stale` (the one this node is refreshing away from, if any):
    /// on a single node, fetched; in a cluster, the shared one when another node already
    /// has a newer one, else fetched under the lease (or awaited from its holder).
    async fn obtain(&self, stale: Option<&str>) -> Result<Cached, WechatError> {
        let Some(shared) = &self.shared else { return self.fetch().await };
        let fresh = |found| worth_using(found, stale).map(|(t, u)| cached(t, u));
        match shared.read().await {
            Ok(found) => {
                if let Some(c) = fresh(found) {
                    return Ok(c);
                }
            }
            Err(e) => {
                tracing::warn!(app = %self.src.app, error = %e, "shared access token unreadable; fetching here");
                return self.fetch().await;
            }
        }
        match shared.claim(stale).await {
            Ok(Claim::Published(t, usable)) => return Ok(cached(t, usable)),
            // Redis failing between the read and the lease: fetch here, as above.
            Ok(Claim::Lease) | Err(_) => return self.fetch_and_publish(shared).await,
            Ok(Claim::Held) => {}
        }
        // Another node holds the lease: its token arrives in Redis shortly. A lease freed
        // without a token (its holder's fetch failed) is taken here and fetched under.
        let deadline = Instant::now() + LEASE_WAIT;
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if let Some(c) = fresh(shared.read().await.ok().flatten()) {
                return Ok(c);
            }
            match shared.claim(stale).await {
                Ok(Claim::Published(t, usable)) => return Ok(cached(t, usable)),
                Ok(Claim::Lease) => return self.fetch_and_publish(shared).await,
                Ok(Claim::Held) | Err(_) => {}
            }
        }
        tracing::warn!(app = %self.src.app, "the access-token lease holder did not deliver; fetching here");
        self.fetch().await
    }

    /// Fetches a token under the lease and shares it; a failed fetch frees the lease at
    /// once, so that the nodes waiting for a token that will not come take it instead of
    /// waiting out [`LEASE_WAIT`].
    async fn fetch_and_publish(&self, shared: &ClusterToken) -> Result<Cached, WechatError> {
        let fetched = self.fetch().await;
        match &fetched {
            Ok(c) => {
                let usable = c.usable_until.saturating_duration_since(Instant::now());
                if let Err(e) = shared.publish(&c.token, usable).await {
                    tracing::warn!(app = %self.src.app, error = %e, "could not share the access token");
                }
            }
            Err(_) => shared.release().await,
        }
        fetched
    }

    /// Drops the cached token only if it is still `failed` (here and, in a cluster, in
    /// Redis: once for all nodes).
    pub async fn invalidate(&self, failed: &str) {
        let mut slot = self.slot.lock().await;
        if slot.as_ref().is_some_and(|c| c.token == failed) {
            *slot = None;
        }
        if let Some(shared) = &self.shared {
            shared.invalidate(failed).await;
        }
    }

    async fn fetch(&self) -> Result<Cached, WechatError> {
        let start = Instant::now();
        let mut attempt = 0;
        let result = loop {
            match self.fetch_once().await {
                Err(WechatError::Api { errcode: -1, .. }) if attempt < BUSY_BACKOFF.len() => {
                    tokio::time::sleep(BUSY_BACKOFF[attempt]).await;
                    attempt += 1;
                }
                other => break other,
            }
        };
        let label = match &result {
            Ok(_) => "ok".to_string(),
            Err(e) => e.label(),
        };
        self.metrics.token_refresh(&self.src.app, if result.is_ok() { TokenRefresh::Ok } else { TokenRefresh::Error });
        self.metrics.wechat_call(&self.src.app, WechatApi::Token, &label, start.elapsed().as_secs_f64());
        let body = result?;
        Ok(cached(body.access_token, Duration::from_secs(body.expires_in).saturating_sub(SAFETY)))
    }

    async fn fetch_once(&self) -> Result<TokenBody, WechatError> {
        let s = &self.src;
        let resp = if s.use_stable {
            let body = serde_json::json!({
                "grant_type": "client_credential", "appid": s.app_id, "secret": s.secret.expose(), "force_refresh": false,
            });
            send(self.http.post(format!("{}/cgi-bin/stable_token", s.api_base)).json(&body)).await
        } else {
            send(self.http.get(format!("{}/cgi-bin/token", s.api_base)).query(&[
                ("grant_type", "client_credential"),
                ("appid", &s.app_id),
                ("secret", s.secret.expose()),
            ]))
            .await
        };
        parse_json(resp?).await
    }
}
