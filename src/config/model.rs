//! The settings model: every section and key, with the defaults of
//! `config/default.toml`. Values that have a closed set of forms are parsed into enums
//! here, once; secrets are [`Secret`]s, which never print.

use serde::Deserialize;

pub use super::secret::Secret;
use super::storage::StorageSettings;

/// Everything the service reads at start. Defaults equal `config/default.toml`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct Settings {
    pub server: ServerSettings,
    pub login: LoginSettings,
    pub storage: StorageSettings,
    pub token: TokenSettings,
    pub limits: LimitSettings,
    pub sms: SmsSettings,
    pub wechat: WechatSettings,
    pub cluster: ClusterSettings,
    pub oidc: super::OidcSettings,
    pub admin: super::AdminSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ServerSettings {
    pub bind: String,
    /// The address WeChat (and the sandbox) reach us at; the sandbox posts callbacks here.
    pub public_url: String,
    pub trusted_proxies: Vec<String>,
    pub cors_origins: Vec<String>,
    pub demo_page: bool,
    /// HTTP worker threads; 0 = one per core.
    pub workers: usize,
    /// On SIGTERM/SIGINT: the most the ordered shutdown (answer held polls, finish
    /// requests, flush snapshots) may take before the process exits anyway.
    pub shutdown_grace_secs: u64,
    /// Where `/metrics` is served: empty = on the API port; an address = only there, so
    /// the scrape endpoint need not be public with the API.
    pub metrics_bind: String,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            public_url: "http://127.0.0.1:8080".into(),
            trusted_proxies: vec![],
            cors_origins: vec![],
            demo_page: true,
            workers: 0,
            shutdown_grace_secs: 10,
            metrics_bind: String::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LoginSettings {
    pub qr_ttl_secs: u64,
    pub long_poll_max_secs: u64,
    /// Life of an SMS code, capped by the attempt's own expiry.
    pub sms_code_ttl_secs: u64,
    /// Seconds between the `: ping` comments of an event stream, so proxies keep it open.
    pub events_ping_secs: u64,
    /// Code mode: digits of the code the person sends to the account (6..=8).
    pub code_length: u32,
}

impl Default for LoginSettings {
    fn default() -> Self {
        Self { qr_ttl_secs: 300, long_poll_max_secs: 25, sms_code_ttl_secs: 300, events_ping_secs: 15, code_length: 6 }
    }
}

/// Many nodes on one Redis and one SQL database (docs/operations.md "Running several
/// nodes").
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ClusterSettings {
    pub enabled: bool,
    /// Shown in logs and metrics; empty: host name and process id.
    pub node_id: String,
}

impl ClusterSettings {
    /// `node_id`, or host name and process id when it is not set.
    pub fn node_name(&self) -> String {
        if !self.node_id.is_empty() {
            return self.node_id.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "node".into());
        format!("{host}-{}", std::process::id())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct TokenSettings {
    pub secret: Secret,
    /// The secret before the current one, during a rotation: tokens it signed are still
    /// accepted (until they expire); nothing new is signed with it. Empty: none.
    pub secret_previous: Secret,
    pub ttl_secs: u64,
    pub issuer: String,
    pub audience: String,
    /// How login tokens (and the provider's access tokens) are signed.
    pub algorithm: TokenAlgorithm,
    /// A rotated key is published this long before it signs (relying parties' JWK Set
    /// caches pick it up first).
    pub key_publish_secs: u64,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            secret: "change-me".into(),
            secret_previous: Secret::default(),
            ttl_secs: 7200,
            issuer: "scanlogin".into(),
            audience: "scanlogin".into(),
            algorithm: TokenAlgorithm::default(),
            key_publish_secs: 3600,
        }
    }
}

/// `token.algorithm`: an asymmetric key of ours (published in the JWK Set), or HS256
/// with `token.secret` as the shared key (only when configured).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum TokenAlgorithm {
    #[default]
    #[serde(rename = "ES256")]
    Es256,
    #[serde(rename = "EdDSA")]
    EdDsa,
    #[serde(rename = "RS256")]
    Rs256,
    #[serde(rename = "HS256")]
    Hs256,
}

impl TokenAlgorithm {
    /// The keyring's algorithm, or `None` for HS256.
    pub fn asymmetric(self) -> Option<crate::token::SigningAlg> {
        use crate::token::SigningAlg;
        match self {
            TokenAlgorithm::Es256 => Some(SigningAlg::Es256),
            TokenAlgorithm::EdDsa => Some(SigningAlg::EdDsa),
            TokenAlgorithm::Rs256 => Some(SigningAlg::Rs256),
            TokenAlgorithm::Hs256 => None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LimitSettings {
    pub qr_per_ip_per_minute: u32,
    /// QR requests per client address per day: a slow drain stays under the per-minute cap.
    pub qr_per_ip_per_day: u32,
    /// QR requests per day from one network: an IPv4 /24, an IPv6 /56.
    pub qr_per_network_per_day: u32,
    /// QR requests per day from one IPv6 /48 (a site's usual allocation).
    pub qr_per_site_per_day: u32,
    /// The share (percent) of `qr_per_app_per_day` kept for addresses that logged in
    /// within the last 30 days: once the day's use passes the rest, only they get a QR.
    pub qr_reserved_percent: u32,
    /// QR codes per official account per day (WeChat's own quota is ~100k).
    pub qr_per_app_per_day: u32,
    pub sms_resend_secs: u64,
    pub sms_per_phone_per_day: u32,
    pub sms_per_ip_per_day: u32,
    /// SMS codes the whole deployment sends per day: a budget against a bill.
    pub sms_per_day: u32,
    pub code_attempts: u32,
    /// Wrong codes one WeChat user may send per day before it is locked for a day.
    pub code_failures_per_openid_per_day: u32,
    /// Wrong codes per client address per day before the address is locked for a day.
    pub code_failures_per_ip_per_day: u32,
    /// Code mode: wrong login codes one WeChat user may send to the account per hour;
    /// past it every code from that user is refused, a right one too, until the hour ends.
    pub codes_per_openid_per_hour: u32,
    /// SMS codes one login attempt may send.
    pub sms_per_attempt: u32,
    /// bind-phone calls one login attempt may make (each can probe `phone_taken`).
    pub bind_per_attempt: u32,
    /// bind-phone calls per client address per day.
    pub bind_per_ip_per_day: u32,
    /// Failed provider token requests per client address per day (then locked for the day).
    pub oidc_token_failures_per_ip_per_day: u32,
    /// Failed provider token requests naming one client per day.
    pub oidc_token_failures_per_client_per_day: u32,
    pub long_polls_max: usize,
    pub long_polls_per_ip: usize,
    pub live_attempts_max: usize,
    /// Open connections per client address (the socket peer; IPv6 by its /64); trusted
    /// proxies are not counted. Past it a request is answered 429 and its connection closed.
    pub connections_per_ip: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            qr_per_ip_per_minute: 10,
            qr_per_ip_per_day: 100,
            qr_per_network_per_day: 1_000,
            qr_per_site_per_day: 3_000,
            qr_reserved_percent: 20,
            qr_per_app_per_day: 90_000,
            sms_resend_secs: 60,
            sms_per_phone_per_day: 10,
            sms_per_ip_per_day: 20,
            sms_per_day: 10_000,
            code_attempts: 5,
            code_failures_per_openid_per_day: 20,
            code_failures_per_ip_per_day: 50,
            codes_per_openid_per_hour: 10,
            sms_per_attempt: 3,
            bind_per_attempt: 10,
            bind_per_ip_per_day: 50,
            oidc_token_failures_per_ip_per_day: 100,
            oidc_token_failures_per_client_per_day: 1_000,
            // Each is an open connection: with the margin of `open_files::MARGIN` this fits
            // the open-file limits of common hosts (this project's machines: 20,000).
            long_polls_max: 8_000,
            long_polls_per_ip: 20,
            live_attempts_max: 2_000_000,
            connections_per_ip: 200,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SmsSettings {
    pub provider: SmsProvider,
    pub webhook_url: String,
    pub webhook_secret: Secret,
    pub webhook_timeout_ms: u64,
}

impl Default for SmsSettings {
    fn default() -> Self {
        Self {
            provider: SmsProvider::Log,
            webhook_url: String::new(),
            webhook_secret: Secret::default(),
            webhook_timeout_ms: 5000,
        }
    }
}

/// Who delivers SMS codes (`sms.provider`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmsProvider {
    /// Logged (masked) and kept in the sandbox outbox; nothing leaves the machine.
    Log,
    /// POSTed to `sms.webhook_url`, signed with `sms.webhook_secret` when set.
    Webhook,
}

impl SmsProvider {
    pub fn name(self) -> &'static str {
        match self {
            SmsProvider::Log => "log",
            SmsProvider::Webhook => "webhook",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct WechatSettings {
    /// Mount the fake WeChat (`/_sandbox`). Off unless a config turns it on: with it anyone
    /// can sign a push for any openid.
    pub sandbox: bool,
    /// A sandbox others can reach (a bind or `public_url` that is not loopback, or a trusted
    /// proxy) is meant (a demo host); otherwise the start stops.
    pub sandbox_public: bool,
    pub apps: Vec<AppSettings>,
    /// Timeout of one call to WeChat's API.
    pub api_timeout_ms: u64,
    /// A push is acknowledged only if its transition is stored within this budget
    /// (WeChat gives up after 5 s); past it WeChat gets no `success` and sends it again,
    /// while the work finishes in the background for the retry to find. It is also the
    /// lease of a push's dedup claim.
    pub callback_budget_ms: u64,
    /// How long a push's dedup key is remembered (WeChat retries within ~15 s).
    pub dedup_ttl_secs: u64,
    /// Test-only: a pause between a push's dedup claim and its processing, so a test can
    /// kill the process in between. Honoured only with `sandbox` on; not documented.
    pub test_push_delay_ms: u64,
}

impl Default for WechatSettings {
    fn default() -> Self {
        Self {
            sandbox: false,
            sandbox_public: false,
            apps: vec![AppSettings::default()],
            api_timeout_ms: 5000,
            callback_budget_ms: 3000,
            dedup_ttl_secs: 300,
            test_push_delay_ms: 0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AppSettings {
    pub name: String,
    pub app_id: String,
    pub app_secret: Secret,
    pub token: Secret,
    pub encoding_aes_key: Secret,
    /// The key before the last rotation: tried second, so pushes in flight still open.
    pub encoding_aes_key_previous: Secret,
    /// Fetch access tokens from `stable_token` (shared, not invalidated by other fetchers).
    pub use_stable_token: bool,
    pub api_base: Option<String>,
    pub mp_base: Option<String>,
    /// Passive reply after a registered user's scan.
    pub reply_logged_in: String,
    /// Passive reply after an unregistered user's scan.
    pub reply_bind_phone: String,
    /// Passive reply to a scan of an expired or unknown login QR code.
    pub reply_expired: String,
    /// Auto-reply to text messages; empty: no reply.
    pub reply_text: String,
    /// Whether the person who scans must confirm the login on the phone.
    pub confirm: ConfirmMode,
    /// What the account may do: a subscription account cannot make QR codes (code mode).
    pub kind: AppKind,
    /// A service account answers in code mode when WeChat refuses to make a QR code.
    pub code_fallback: bool,
    /// The account's name, shown in code mode.
    pub account_name: String,
    /// The account's own follow QR picture, shown in code mode.
    pub account_qr_url: String,
}

/// `wechat.apps[].kind` (docs/api.md "Accounts that cannot make QR codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppKind {
    /// A verified service account: parametric QR codes.
    #[default]
    Service,
    /// A subscription account: no QR codes, always code mode.
    Subscription,
}

/// `wechat.apps[].confirm` (docs/api.md "Confirm on the phone").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConfirmMode {
    /// A scan logs in (or asks for a phone) by itself, as before.
    #[default]
    Off,
    /// A scan asks the scanner to confirm a request that shows where it came from.
    Always,
}

impl Default for AppSettings {
    fn default() -> Self {
        Self {
            name: "default".into(),
            app_id: "wxsandbox0000000001".into(),
            app_secret: "sandbox-secret".into(),
            token: "sandbox-token".into(),
            encoding_aes_key: Secret::default(),
            encoding_aes_key_previous: Secret::default(),
            use_stable_token: true,
            api_base: None,
            mp_base: None,
            reply_logged_in: "登录成功，请回到网页继续。Logged in: please go back to the page.".into(),
            reply_bind_phone: "请在网页上绑定手机号完成登录。Please bind your phone number on the page.".into(),
            reply_expired: "二维码已过期，请刷新网页。This QR code has expired: refresh the page.".into(),
            reply_text: String::new(),
            confirm: ConfirmMode::Off,
            kind: AppKind::Service,
            code_fallback: true,
            account_name: String::new(),
            account_qr_url: String::new(),
        }
    }
}
