//! The HTTP client of WeChat's API, one [`AppClient`] per official account:
//! access token (cached, refreshed ahead of expiry, one fetch at a time),
//! `qrcode/create`, `showqrcode` and `user/info`.
//!
//! Secrets travel in query strings, so no URL from here is ever logged: transport
//! errors are stripped of their URL before they become messages.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::callback::AppKeys;
use super::crypto::AesKey;
use super::token::{TokenManager, TokenSource};
use crate::config::{AppSettings, Settings};
use crate::metrics::Metrics;
use crate::metrics::labels::WechatApi;

/// The largest QR picture we accept from `showqrcode`.
const MAX_IMAGE_BYTES: usize = 1 << 20;
/// Errcodes meaning "this access token is no good" (WxJava's set).
const TOKEN_ERRCODES: [i64; 3] = [40001, 40014, 42001];
/// Retries of a call answered with errcode -1 (system busy).
const BUSY_RETRIES: usize = 2;

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
    /// WeChat's error code, when it answered with one.
    pub fn errcode(&self) -> Option<i64> {
        match self {
            WechatError::Api { errcode, .. } => Some(*errcode),
            WechatError::Transport(_) | WechatError::BadResponse(_) => None,
        }
    }

    /// A bounded label for metrics.
    pub fn label(&self) -> String {
        match self {
            WechatError::Transport(_) => "transport".into(),
            WechatError::Api { errcode, .. } => format!("errcode_{errcode}"),
            WechatError::BadResponse(_) => "bad_response".into(),
        }
    }

    /// What a client may be told: the errcode, never WeChat's `errmsg` or a transport
    /// detail (they name our AppID, IP whitelist and hosts; the log has them).
    pub fn public(&self) -> String {
        match self {
            WechatError::Transport(_) => "WeChat unreachable".into(),
            WechatError::Api { errcode, .. } => format!("WeChat errcode {errcode}"),
            WechatError::BadResponse(_) => "WeChat answered unexpectedly".into(),
        }
    }
}

pub(super) fn transport(e: reqwest::Error) -> WechatError {
    WechatError::Transport(e.without_url().to_string())
}

/// The pause before the one resend of a request whose connection failed.
const RESEND_AFTER: Duration = Duration::from_millis(50);

/// Sends `req`, and up to `resends` times more, `pause` apart, while its connection fails
/// (refused, reset, closed before the answer: a proxy whose upstream just restarted, a
/// keep-alive connection closed under us). A timeout is never resent: the call's budget
/// is spent, and the other side may still be working on it. For requests that are safe
/// to repeat only; the sandbox's pushes use it too (WeChat re-sends those).
pub(crate) async fn send_resending(
    req: reqwest::RequestBuilder,
    resends: usize,
    pause: Duration,
) -> Result<reqwest::Response, reqwest::Error> {
    let mut next = req;
    for _ in 0..resends {
        let again = next.try_clone();
        match (next.send().await, again) {
            (Err(e), Some(again)) if !e.is_timeout() => {
                tracing::debug!(error = %e.without_url(), "request failed to connect; sending it again");
                tokio::time::sleep(pause).await;
                next = again;
            }
            (result, _) => return result,
        }
    }
    next.send().await
}

/// Sends a WeChat API request, once more after a connection that failed (see
/// [`send_resending`]). Every call made through it is safe to repeat: a token or a
/// user's info is only read, and a second `qrcode/create` of the same scene is one more
/// ticket for the same code.
pub(super) async fn send(req: reqwest::RequestBuilder) -> Result<reqwest::Response, WechatError> {
    send_resending(req, 1, RESEND_AFTER).await.map_err(transport)
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

/// The parts of `user/info` we keep.
#[derive(Debug, Clone, Deserialize)]
pub struct UserInfo {
    #[serde(default)]
    pub subscribe: i64,
    #[serde(default)]
    pub unionid: Option<String>,
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

/// The passive reply texts of one account.
#[derive(Debug, Clone)]
pub struct Replies {
    pub logged_in: String,
    pub bind_phone: String,
    pub expired: String,
    /// Auto-reply to text messages; empty: none.
    pub text: String,
}

/// One official account's view of the API.
pub struct AppClient {
    pub name: String,
    pub app_id: String,
    pub api_base: String,
    pub mp_base: String,
    /// Signature and message-crypto keys of this account's callback.
    pub keys: AppKeys,
    /// Passive reply texts.
    pub replies: Replies,
    /// Whether a scan must be confirmed on the phone.
    pub confirm: crate::config::ConfirmMode,
    /// What the account may do (a subscription account logs in by code only).
    pub kind: crate::config::AppKind,
    /// Code mode when WeChat refuses a service account a QR code.
    pub code_fallback: bool,
    /// Shown in code mode: the account's name and its own follow QR picture.
    pub account_name: String,
    pub account_qr_url: String,
    http: reqwest::Client,
    tokens: Arc<TokenManager>,
    metrics: Metrics,
}

impl AppClient {
    pub fn new(
        app: &AppSettings,
        sandbox: bool,
        public_url: &str,
        http: reqwest::Client,
        metrics: Metrics,
        shared: Option<super::token::ClusterToken>,
    ) -> Arc<Self> {
        let sandbox_base = format!("{}/_sandbox", public_url.trim_end_matches('/'));
        let pick = |explicit: &Option<String>, real: &str| -> String {
            match explicit {
                Some(u) => u.trim_end_matches('/').to_string(),
                None if sandbox => sandbox_base.clone(),
                None => real.to_string(),
            }
        };
        let api_base = pick(&app.api_base, "https://api.weixin.qq.com");
        let tokens = TokenManager::new(
            TokenSource {
                app: app.name.clone(),
                app_id: app.app_id.clone(),
                secret: app.app_secret.clone(),
                api_base: api_base.clone(),
                use_stable: app.use_stable_token,
            },
            http.clone(),
            metrics.clone(),
            shared,
        );
        Arc::new(Self {
            name: app.name.clone(),
            app_id: app.app_id.clone(),
            api_base,
            mp_base: pick(&app.mp_base, "https://mp.weixin.qq.com"),
            keys: AppKeys {
                app_id: app.app_id.clone(),
                token: app.token.clone(),
                // Validated at start: 43 letters or digits always decode.
                aes_keys: [&app.encoding_aes_key, &app.encoding_aes_key_previous]
                    .into_iter()
                    .filter(|k| !k.is_empty())
                    .filter_map(|k| AesKey::from_encoding_key(k.expose()).ok())
                    .collect(),
            },
            replies: Replies {
                logged_in: app.reply_logged_in.clone(),
                bind_phone: app.reply_bind_phone.clone(),
                expired: app.reply_expired.clone(),
                text: app.reply_text.clone(),
            },
            confirm: app.confirm,
            kind: app.kind,
            code_fallback: app.code_fallback,
            account_name: app.account_name.clone(),
            account_qr_url: app.account_qr_url.clone(),
            http,
            tokens,
            metrics,
        })
    }

    async fn timed<T>(
        &self,
        api: WechatApi,
        fut: impl Future<Output = Result<T, WechatError>>,
    ) -> Result<T, WechatError> {
        let start = Instant::now();
        let r = fut.await;
        let result = match &r {
            Ok(_) => "ok".to_string(),
            Err(e) => e.label(),
        };
        self.metrics.wechat_call(&self.name, api, &result, start.elapsed().as_secs_f64());
        r
    }

    /// A usable access token (see [`TokenManager`]).
    pub async fn access_token(&self) -> Result<String, WechatError> {
        self.tokens.get().await
    }

    /// Runs an API call that takes an access token: on a token errcode the cached token
    /// is invalidated (compare-and-invalidate) and the call retried once with a fresh one;
    /// on errcode -1 it is retried with backoff. Transport errors are not retried here:
    /// [`send`] resent the request once already.
    async fn with_token<T, F, Fut>(&self, mut call: F) -> Result<T, WechatError>
    where
        F: FnMut(String) -> Fut,
        Fut: Future<Output = Result<T, WechatError>>,
    {
        let mut token_retried = false;
        let mut busy = 0;
        loop {
            let token = self.access_token().await?;
            match call(token.clone()).await {
                Err(WechatError::Api { errcode, .. }) if TOKEN_ERRCODES.contains(&errcode) && !token_retried => {
                    self.tokens.invalidate(&token).await;
                    token_retried = true;
                }
                Err(WechatError::Api { errcode: -1, .. }) if busy < BUSY_RETRIES => {
                    busy += 1;
                    tokio::time::sleep(Duration::from_millis(100 * 4u64.pow(busy as u32 - 1))).await;
                }
                other => return other,
            }
        }
    }

    /// Creates a temporary `QR_STR_SCENE` code for `scene`, living `ttl_secs`.
    pub async fn create_qr(&self, scene: &str, ttl_secs: u64) -> Result<QrTicket, WechatError> {
        let body = serde_json::json!({
            "expire_seconds": ttl_secs,
            "action_name": "QR_STR_SCENE",
            "action_info": {"scene": {"scene_str": scene}},
        });
        self.timed(
            WechatApi::QrcodeCreate,
            self.with_token(|token| {
                let req = self
                    .http
                    .post(format!("{}/cgi-bin/qrcode/create", self.api_base))
                    .query(&[("access_token", token)])
                    .json(&body);
                async move { parse_json::<QrTicket>(send(req).await?).await }
            }),
        )
        .await
    }

    /// `user/info`: the `unionid` (when the account is bound to an Open Platform account).
    pub async fn user_info(&self, openid: &str) -> Result<UserInfo, WechatError> {
        self.timed(
            WechatApi::UserInfo,
            self.with_token(|token| {
                let req = self.http.get(format!("{}/cgi-bin/user/info", self.api_base)).query(&[
                    ("access_token", token.as_str()),
                    ("openid", openid),
                    ("lang", "zh_CN"),
                ]);
                async move { parse_json::<UserInfo>(send(req).await?).await }
            }),
        )
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
        self.timed(WechatApi::Showqrcode, async {
            let resp = send(self.http.get(self.show_qr_url(ticket))).await?;
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
pub(super) async fn parse_json<T: serde::de::DeserializeOwned>(resp: reqwest::Response) -> Result<T, WechatError> {
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
    apps: Vec<Arc<AppClient>>,
}

impl WechatClient {
    /// The accounts of `settings`; with `cluster` (Redis and this node's id) their access
    /// tokens are shared by the nodes.
    pub fn new(settings: &Settings, metrics: Metrics, cluster: Option<(&crate::kv::Kv, &str)>) -> Self {
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
                let shared = cluster.map(|(kv, node)| super::token::ClusterToken::new(kv, &a.app_id, node));
                AppClient::new(
                    a,
                    settings.wechat.sandbox,
                    &settings.server.public_url,
                    http.clone(),
                    metrics.clone(),
                    shared,
                )
            })
            .collect();
        Self { apps }
    }

    pub fn by_name(&self, name: &str) -> Option<&Arc<AppClient>> {
        self.apps.iter().find(|a| a.name == name)
    }

    pub fn by_app_id(&self, app_id: &str) -> Option<&Arc<AppClient>> {
        self.apps.iter().find(|a| a.app_id == app_id)
    }

    pub fn first(&self) -> &Arc<AppClient> {
        &self.apps[0]
    }
}
