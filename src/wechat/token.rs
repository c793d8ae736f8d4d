//! The access-token manager of one official account (WECHAT.md §6).
//!
//! - cached, and refreshed in the background once it is within 5 minutes of expiry, so
//!   callers keep using the still-valid token and never wait for a refresh;
//! - single flight: when there is no usable token, one fetch runs and everyone waits for it;
//! - `stable_token` by default (several nodes fetching converge on the same token);
//! - compare-and-invalidate: a token reported bad (40001/40014/42001) is dropped only if
//!   it is still the cached one, so a token another caller just refreshed survives;
//! - errcode -1 ("system busy") is retried with backoff; fetching a token is idempotent.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::Mutex;

use super::client::{WechatError, parse_json, transport};
use crate::metrics::Metrics;

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
    slot: Mutex<Option<Cached>>,
    refreshing: AtomicBool,
}

impl TokenManager {
    pub fn new(src: TokenSource, http: reqwest::Client, metrics: Metrics) -> Arc<Self> {
        Arc::new(Self { src, http, metrics, slot: Mutex::new(None), refreshing: AtomicBool::new(false) })
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
        let cached = self.fetch().await?;
        let token = cached.token.clone();
        *slot = Some(cached);
        Ok(token)
    }

    async fn refresh(&self) -> Result<(), WechatError> {
        let cached = self.fetch().await?;
        *self.slot.lock().await = Some(cached);
        Ok(())
    }

    /// Drops the cached token only if it is still `failed`.
    pub async fn invalidate(&self, failed: &str) {
        let mut slot = self.slot.lock().await;
        if slot.as_ref().is_some_and(|c| c.token == failed) {
            *slot = None;
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
        self.metrics.token_refresh(&self.src.app, if result.is_ok() { "ok" } else { "error" });
        self.metrics.wechat_call(&self.src.app, "token", &label, start.elapsed().as_secs_f64());
        let body = result?;
        let now = Instant::now();
        let life = Duration::from_secs(body.expires_in);
        Ok(Cached {
            token: body.access_token,
            refresh_at: now + life.saturating_sub(REFRESH_AHEAD),
            usable_until: now + life.saturating_sub(SAFETY),
        })
    }

    async fn fetch_once(&self) -> Result<TokenBody, WechatError> {
        let s = &self.src;
        let resp = if s.use_stable {
            let body = serde_json::json!({
                "grant_type": "client_credential", "appid": s.app_id, "secret": s.secret.expose(), "force_refresh": false,
            });
            self.http.post(format!("{}/cgi-bin/stable_token", s.api_base)).json(&body).send().await
        } else {
            self.http
                .get(format!("{}/cgi-bin/token", s.api_base))
                .query(&[("grant_type", "client_credential"), ("appid", &s.app_id), ("secret", s.secret.expose())])
                .send()
                .await
        };
        parse_json(resp.map_err(transport)?).await
    }
}
