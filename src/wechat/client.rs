//! The HTTP client of WeChat's API, one [`AppClient`] per official account:
//! access token (cached, refreshed ahead of expiry, one fetch at a time),
//! `qrcode/create`, `showqrcode` and `user/info`.
//!
//! Secrets travel in query strings, so no URL from here is ever logged: transport
//! errors are stripped of their URL before they become messages.

use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::Mutex;

use super::callback::AppKeys;
use super::crypto::AesKey;
use crate::config::{AppSettings, Settings};
use crate::metrics::Metrics;

/// Refresh this long before WeChat's stated expiry (WECHAT.md §6 recommends a margin).
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// The largest QR picture we accept from `showqrcode`.
const MAX_IMAGE_BYTES: usize = 1 << 20;
/// Errcodes meaning "this access token is no good" (WxJava's set).
const TOKEN_ERRCODES: [i64; 3] = [40001, 40014, 42001];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WechatError {
    #[error("WeChat unreachable: {0}")]
    Transport(String),
    #[error("WeChat errcode {errcode}: {errmsg}")]
    Api { errcode: i64, errmsg: String },
    #[error("WeChat answered unexpectedly: {0}")]
    BadResponse(String),
}

impl WechatError {
    /// A bounded label for metrics.
    pub fn label(&self) -> String {
        match self {
            WechatError::Transport(_) => "transport".into(),
            WechatError::Api { errcode, .. } => format!("errcode_{errcode}"),
            WechatError::BadResponse(_) => "bad_response".into(),
        }
    }
}

fn transport(e: reqwest::Error) -> WechatError {
    WechatError::Transport(e.without_url().to_string())
}

/// A temporary parametric QR code as `qrcode/create` returns it.
#[derive(Debug, Clone, Deserialize)]
pub struct QrTicket {
    pub ticket: String,
    /// The string encoded in the QR picture.
    pub url: String,
    #[serde(default)]
    pub expire_seconds: u64,
}

/// The QR picture as WeChat served it.
#[derive(Debug, Clone)]
pub struct QrImage {
    pub content_type: String,
    pub bytes: Vec<u8>,
}

#[derive(Deserialize)]
struct ErrBody {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
}

#[derive(Deserialize)]
struct TokenBody {
    access_token: String,
    expires_in: u64,
}

struct CachedToken {
    token: String,
    refresh_at: Instant,
}

/// The passive reply texts of one account.
#[derive(Debug, Clone)]
pub struct Replies {
    pub logged_in: String,
    pub bind_phone: String,
    pub expired: String,
}

/// One official account's view of the API.
pub struct AppClient {
    pub name: String,
    pub app_id: String,
    secret: String,
    pub api_base: String,
    pub mp_base: String,
    /// Signature and message-crypto keys of this account's callback.
    pub keys: AppKeys,
    /// Passive reply texts.
    pub replies: Replies,
    http: reqwest::Client,
    /// Held across a fetch, so concurrent callers wait for one fetch (single flight).
    token: Mutex<Option<CachedToken>>,
    metrics: Metrics,
}

impl AppClient {
    pub fn new(app: &AppSettings, sandbox: bool, public_url: &str, http: reqwest::Client, metrics: Metrics) -> Self {
        let sandbox_base = format!("{}/_sandbox", public_url.trim_end_matches('/'));
        let pick = |explicit: &Option<String>, real: &str| -> String {
            match explicit {
                Some(u) => u.trim_end_matches('/').to_string(),
                None if sandbox => sandbox_base.clone(),
                None => real.to_string(),
            }
        };
        Self {
            name: app.name.clone(),
            app_id: app.app_id.clone(),
            secret: app.app_secret.clone(),
            api_base: pick(&app.api_base, "https://api.weixin.qq.com"),
            mp_base: pick(&app.mp_base, "https://mp.weixin.qq.com"),
            keys: AppKeys {
                app_id: app.app_id.clone(),
                token: app.token.clone(),
                // Validated at start: 43 letters or digits always decode.
                aes_keys: [&app.encoding_aes_key]
                    .into_iter()
                    .filter(|k| !k.is_empty())
                    .filter_map(|k| AesKey::from_encoding_key(k).ok())
                    .collect(),
            },
            replies: Replies {
                logged_in: app.reply_logged_in.clone(),
                bind_phone: app.reply_bind_phone.clone(),
                expired: app.reply_expired.clone(),
            },
            http,
            token: Mutex::new(None),
            metrics,
        }
    }

    async fn timed<T>(&self, api: &str, fut: impl Future<Output = Result<T, WechatError>>) -> Result<T, WechatError> {
        let start = Instant::now();
        let r = fut.await;
        let result = match &r {
            Ok(_) => "ok".to_string(),
            Err(e) => e.label(),
        };
        self.metrics.wechat_call(&self.name, api, &result, start.elapsed().as_secs_f64());
        r
    }

    /// A valid access token, from cache or fetched (once, however many callers wait).
    pub async fn access_token(&self) -> Result<String, WechatError> {
        let mut slot = self.token.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| Instant::now() < c.refresh_at) {
            return Ok(c.token.clone());
        }
        let fetched = self.timed("token", self.fetch_token()).await;
        self.metrics.token_refresh(&self.name, if fetched.is_ok() { "ok" } else { "error" });
        let body = fetched?;
        let life = Duration::from_secs(body.expires_in).saturating_sub(REFRESH_MARGIN).max(Duration::from_secs(30));
        *slot = Some(CachedToken { token: body.access_token.clone(), refresh_at: Instant::now() + life });
        Ok(body.access_token)
    }

    async fn fetch_token(&self) -> Result<TokenBody, WechatError> {
        let url = format!("{}/cgi-bin/token", self.api_base);
        let resp = self
            .http
            .get(url)
            .query(&[("grant_type", "client_credential"), ("appid", &self.app_id), ("secret", &self.secret)])
            .send()
            .await
            .map_err(transport)?;
        parse_json(resp).await
    }

    /// Drops the cached token only if it is still the one that failed, so a token a
    /// concurrent caller just refreshed survives (compare-and-invalidate).
    async fn invalidate(&self, failed: &str) {
        let mut slot = self.token.lock().await;
        if slot.as_ref().is_some_and(|c| c.token == failed) {
            *slot = None;
        }
    }

    /// Creates a temporary `QR_STR_SCENE` code for `scene`, living `ttl_secs`.
    pub async fn create_qr(&self, scene: &str, ttl_secs: u64) -> Result<QrTicket, WechatError> {
        let body = serde_json::json!({
            "expire_seconds": ttl_secs,
            "action_name": "QR_STR_SCENE",
            "action_info": {"scene": {"scene_str": scene}},
        });
        self.timed("qrcode_create", async {
            let mut retried = false;
            loop {
                let token = self.access_token().await?;
                let url = format!("{}/cgi-bin/qrcode/create", self.api_base);
                let resp = self
                    .http
                    .post(url)
                    .query(&[("access_token", &token)])
                    .json(&body)
                    .send()
                    .await
                    .map_err(transport)?;
                match parse_json::<QrTicket>(resp).await {
                    Err(WechatError::Api { errcode, .. }) if TOKEN_ERRCODES.contains(&errcode) && !retried => {
                        self.invalidate(&token).await;
                        retried = true;
                    }
                    other => return other,
                }
            }
        })
        .await
    }

    /// The `showqrcode` URL for `ticket` (percent-encoded exactly once).
    pub fn show_qr_url(&self, ticket: &str) -> String {
        let mut url =
            url::Url::parse(&format!("{}/cgi-bin/showqrcode", self.mp_base)).expect("mp_base validated at start");
        url.query_pairs_mut().append_pair("ticket", ticket);
        url.to_string()
    }

    /// Fetches the QR picture for `ticket`.
    pub async fn show_qr(&self, ticket: &str) -> Result<QrImage, WechatError> {
        self.timed("showqrcode", async {
            let resp = self.http.get(self.show_qr_url(ticket)).send().await.map_err(transport)?;
            if !resp.status().is_success() {
                return Err(WechatError::BadResponse(format!("showqrcode status {}", resp.status().as_u16())));
            }
            let content_type = resp
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("image/jpeg")
                .to_string();
            if !content_type.starts_with("image/") {
                return Err(WechatError::BadResponse(format!("showqrcode content type {content_type}")));
            }
            let bytes = read_bounded(resp, MAX_IMAGE_BYTES).await?;
            Ok(QrImage { content_type, bytes })
        })
        .await
    }
}

async fn read_bounded(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, WechatError> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport)? {
        if out.len() + chunk.len() > max {
            return Err(WechatError::BadResponse("body too large".into()));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// WeChat answers 200 with either the payload or `{"errcode":…,"errmsg":…}`.
async fn parse_json<T: serde::de::DeserializeOwned>(resp: reqwest::Response) -> Result<T, WechatError> {
    let status = resp.status();
    let bytes = read_bounded(resp, 64 * 1024).await?;
    if !status.is_success() {
        return Err(WechatError::BadResponse(format!("HTTP status {}", status.as_u16())));
    }
    if let Ok(e) = serde_json::from_slice::<ErrBody>(&bytes)
        && e.errcode != 0
    {
        return Err(WechatError::Api { errcode: e.errcode, errmsg: e.errmsg.chars().take(200).collect() });
    }
    serde_json::from_slice(&bytes).map_err(|e| WechatError::BadResponse(e.to_string()))
}

/// All configured accounts, looked up by name or by app id.
pub struct WechatClient {
    apps: Vec<AppClient>,
}

impl WechatClient {
    pub fn new(settings: &Settings, metrics: Metrics) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.wechat.api_timeout_ms))
            .connect_timeout(Duration::from_secs(3))
            .build()
            .expect("HTTP client builds");
        let apps = settings
            .wechat
            .apps
            .iter()
            .map(|a| {
                AppClient::new(a, settings.wechat.sandbox, &settings.server.public_url, http.clone(), metrics.clone())
            })
            .collect();
        Self { apps }
    }

    pub fn by_name(&self, name: &str) -> Option<&AppClient> {
        self.apps.iter().find(|a| a.name == name)
    }

    pub fn by_app_id(&self, app_id: &str) -> Option<&AppClient> {
        self.apps.iter().find(|a| a.app_id == app_id)
    }

    pub fn first(&self) -> &AppClient {
        &self.apps[0]
    }
}
