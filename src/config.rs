//! Typed settings: one TOML file, overridden key by key from the environment.
//!
//! Loading order: the file (`--config`, default `config/default.toml`), then every
//! `SCANLOGIN__SECTION__KEY` variable (`SCANLOGIN__WECHAT__APPS__0__APP_SECRET` reaches
//! into the app list). A key we do not know is only a warning, so one file can serve
//! two versions; a known key with a bad value stops the start with one clear line.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

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
}

impl Default for LoginSettings {
    fn default() -> Self {
        Self { qr_ttl_secs: 300, long_poll_max_secs: 25, sms_code_ttl_secs: 300, events_ping_secs: 15 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct StorageSettings {
    pub database_url: String,
    pub snapshots: String,
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self { database_url: "sqlite://data/scanlogin.db?mode=rwc".into(), snapshots: "sqlite".into() }
    }
}

#[derive(Clone, Deserialize)]
#[serde(default)]
pub struct TokenSettings {
    pub secret: String,
    pub ttl_secs: u64,
    pub issuer: String,
    pub audience: String,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self { secret: "change-me".into(), ttl_secs: 7200, issuer: "scanlogin".into(), audience: "scanlogin".into() }
    }
}

/// The secret never reaches a log line through `{:?}`.
impl std::fmt::Debug for TokenSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSettings")
            .field("secret", &"<redacted>")
            .field("ttl_secs", &self.ttl_secs)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LimitSettings {
    pub qr_per_ip_per_minute: u32,
    /// QR codes per official account per day (WeChat's own quota is ~100k).
    pub qr_per_app_per_day: u32,
    pub sms_resend_secs: u64,
    pub sms_per_phone_per_day: u32,
    pub sms_per_ip_per_day: u32,
    pub code_attempts: u32,
    /// Wrong codes per phone per day before the phone is locked for a day.
    pub code_failures_per_phone_per_day: u32,
    /// SMS codes one login attempt may send.
    pub sms_per_attempt: u32,
    pub long_polls_max: usize,
    pub long_polls_per_ip: usize,
    pub live_attempts_max: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            qr_per_ip_per_minute: 10,
            qr_per_app_per_day: 90_000,
            sms_resend_secs: 60,
            sms_per_phone_per_day: 10,
            sms_per_ip_per_day: 20,
            code_attempts: 5,
            code_failures_per_phone_per_day: 20,
            sms_per_attempt: 3,
            long_polls_max: 50_000,
            long_polls_per_ip: 20,
            live_attempts_max: 2_000_000,
        }
    }
}

#[derive(Clone, Deserialize)]
#[serde(default)]
pub struct SmsSettings {
    pub provider: String,
    pub webhook_url: String,
    pub webhook_secret: String,
    pub webhook_timeout_ms: u64,
}

impl Default for SmsSettings {
    fn default() -> Self {
        Self {
            provider: "log".into(),
            webhook_url: String::new(),
            webhook_secret: String::new(),
            webhook_timeout_ms: 5000,
        }
    }
}

impl std::fmt::Debug for SmsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmsSettings")
            .field("provider", &self.provider)
            .field("webhook_url", &self.webhook_url)
            .field("webhook_secret", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct WechatSettings {
    pub sandbox: bool,
    pub apps: Vec<AppSettings>,
    /// Timeout of one call to WeChat's API.
    pub api_timeout_ms: u64,
    /// The callback answers within this budget (WeChat gives up after 5 s); slower work
    /// finishes in the background after a `success` answer.
    pub callback_budget_ms: u64,
    /// How long a push's dedup key is remembered (WeChat retries within ~15 s).
    pub dedup_ttl_secs: u64,
}

impl Default for WechatSettings {
    fn default() -> Self {
        Self {
            sandbox: true,
            apps: vec![AppSettings::default()],
            api_timeout_ms: 5000,
            callback_budget_ms: 3000,
            dedup_ttl_secs: 300,
        }
    }
}

#[derive(Clone, Deserialize)]
#[serde(default)]
pub struct AppSettings {
    pub name: String,
    pub app_id: String,
    pub app_secret: String,
    pub token: String,
    pub encoding_aes_key: String,
    /// The key before the last rotation: tried second, so pushes in flight still open.
    pub encoding_aes_key_previous: String,
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
}

impl Default for AppSettings {
    fn default() -> Self {
        Self {
            name: "default".into(),
            app_id: "wxsandbox0000000001".into(),
            app_secret: "sandbox-secret".into(),
            token: "sandbox-token".into(),
            encoding_aes_key: String::new(),
            encoding_aes_key_previous: String::new(),
            use_stable_token: true,
            api_base: None,
            mp_base: None,
            reply_logged_in: "登录成功，请回到网页继续。Logged in: please go back to the page.".into(),
            reply_bind_phone: "请在网页上绑定手机号完成登录。Please bind your phone number on the page.".into(),
            reply_expired: "二维码已过期，请刷新网页。This QR code has expired: refresh the page.".into(),
            reply_text: String::new(),
        }
    }
}

impl std::fmt::Debug for AppSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppSettings")
            .field("name", &self.name)
            .field("app_id", &self.app_id)
            .field("app_secret", &"<redacted>")
            .field("token", &"<redacted>")
            .field("encoding_aes_key", &"<redacted>")
            .field("api_base", &self.api_base)
            .field("mp_base", &self.mp_base)
            .finish()
    }
}

/// Why the settings could not be used; its `Display` is the one line printed at exit.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config: cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("config: {0}")]
    Parse(String),
    #[error("config: {key}: {why}")]
    Invalid { key: String, why: String },
}

fn invalid(key: &str, why: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.to_string(), why: why.into() }
}

/// What `load` produced, plus the unknown keys the caller should warn about
/// (logging is not set up yet when the file is read).
pub struct Loaded {
    pub settings: Settings,
    pub unknown_keys: Vec<String>,
}

/// Reads `path` (a missing file is an error) and the process environment.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
    let env: BTreeMap<String, String> = std::env::vars().collect();
    load_from_str(&text, &env)
}

/// Parses TOML text with the given environment overrides, then validates.
pub fn load_from_str(text: &str, env: &BTreeMap<String, String>) -> Result<Loaded, ConfigError> {
    let mut value: toml::Value = toml::from_str(text)
        .map_err(|e| ConfigError::Parse(e.to_string().lines().next().unwrap_or("bad TOML").into()))?;
    for (name, raw) in env {
        if let Some(rest) = name.strip_prefix("SCANLOGIN__") {
            let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
            apply_override(&mut value, &path, raw).map_err(|why| invalid(name, why))?;
        }
    }
    let mut unknown_keys = Vec::new();
    let settings: Settings = serde_ignored::deserialize(value, |p| unknown_keys.push(p.to_string()))
        .map_err(|e| ConfigError::Parse(e.to_string()))?;
    validate(&settings)?;
    Ok(Loaded { settings, unknown_keys })
}

/// An env value is read as a TOML value when it parses as one (numbers, booleans,
/// arrays), else as a plain string, so `SCANLOGIN__SERVER__BIND=0.0.0.0:9000` works
/// without quotes.
fn parse_env_value(raw: &str) -> toml::Value {
    let wrapped = format!("v = {raw}");
    match toml::from_str::<toml::Table>(&wrapped) {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.into()),
    }
}

fn apply_override(root: &mut toml::Value, path: &[String], raw: &str) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("empty key".into());
    };
    let mut cur = root;
    for seg in parents {
        cur = match cur {
            toml::Value::Table(t) => t.entry(seg.clone()).or_insert_with(|| toml::Value::Table(Default::default())),
            toml::Value::Array(a) => {
                let i: usize = seg.parse().map_err(|_| format!("`{seg}` is not an index"))?;
                if i > a.len() {
                    return Err(format!("index {i} is past the end of the list"));
                }
                if i == a.len() {
                    a.push(toml::Value::Table(Default::default()));
                }
                &mut a[i]
            }
            _ => return Err(format!("`{seg}` is inside a scalar")),
        };
    }
    let value = parse_env_value(raw);
    match cur {
        toml::Value::Table(t) => {
            // Keep a string a string when the file says so (e.g. a numeric-looking secret).
            let value = match (t.get(last), value) {
                (Some(toml::Value::String(_)), v) if !v.is_str() => toml::Value::String(raw.into()),
                (_, v) => v,
            };
            t.insert(last.clone(), value);
            Ok(())
        }
        _ => Err("parent is not a table".into()),
    }
}

fn check_url(key: &str, url: &str) -> Result<(), ConfigError> {
    let parsed = url::Url::parse(url).map_err(|e| invalid(key, format!("bad URL `{url}`: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(key, format!("`{url}` is not http(s)")));
    }
    Ok(())
}

fn validate(s: &Settings) -> Result<(), ConfigError> {
    s.server
        .bind
        .parse::<SocketAddr>()
        .map_err(|_| invalid("server.bind", format!("`{}` is not host:port", s.server.bind)))?;
    check_url("server.public_url", &s.server.public_url)?;
    for cidr in &s.server.trusted_proxies {
        crate::net::Cidr::parse(cidr)
            .ok_or_else(|| invalid("server.trusted_proxies", format!("`{cidr}` is not a CIDR")))?;
    }
    for origin in &s.server.cors_origins {
        let ok = url::Url::parse(origin).is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https") && u.path() == "/" && !origin.ends_with('/') && u.host().is_some()
        });
        if !ok {
            return Err(invalid(
                "server.cors_origins",
                format!("`{origin}` is not an origin like https://app.example.com"),
            ));
        }
    }
    if !(1..=300).contains(&s.server.shutdown_grace_secs) {
        return Err(invalid("server.shutdown_grace_secs", "must be 1..=300"));
    }
    if s.login.qr_ttl_secs == 0 || s.login.qr_ttl_secs > 2_592_000 {
        return Err(invalid("login.qr_ttl_secs", "must be 1..=2592000"));
    }
    if s.login.long_poll_max_secs > 120 {
        return Err(invalid("login.long_poll_max_secs", "must be 0..=120"));
    }
    if !(1..=300).contains(&s.login.events_ping_secs) {
        return Err(invalid("login.events_ping_secs", "must be 1..=300"));
    }
    if s.wechat.callback_budget_ms > 4500 {
        return Err(invalid("wechat.callback_budget_ms", "must be 0..=4500 (WeChat gives up after 5 s)"));
    }
    if s.wechat.dedup_ttl_secs == 0 {
        return Err(invalid("wechat.dedup_ttl_secs", "must be > 0"));
    }
    if s.login.sms_code_ttl_secs == 0 {
        return Err(invalid("login.sms_code_ttl_secs", "must be > 0"));
    }
    let db = &s.storage.database_url;
    if !(db.starts_with("sqlite:")
        || db.starts_with("postgres://")
        || db.starts_with("postgresql://")
        || db.starts_with("mysql://")
        || db.starts_with("mariadb://"))
    {
        return Err(invalid("storage.database_url", "must start with sqlite:, postgres:// or mysql://"));
    }
    let snaps = &s.storage.snapshots;
    if snaps != "sqlite" && snaps != "memory" {
        let ok = url::Url::parse(snaps).is_ok_and(|u| u.scheme() == "redis" && u.host_str().is_some());
        if !ok {
            return Err(invalid("storage.snapshots", "must be \"sqlite\", \"memory\" or redis://host:port/db"));
        }
    }
    if s.token.secret.is_empty() {
        return Err(invalid("token.secret", "must not be empty"));
    }
    if s.token.ttl_secs == 0 {
        return Err(invalid("token.ttl_secs", "must be > 0"));
    }
    let l = &s.limits;
    for (key, v) in [
        ("limits.qr_per_ip_per_minute", l.qr_per_ip_per_minute as u64),
        ("limits.sms_per_phone_per_day", l.sms_per_phone_per_day as u64),
        ("limits.sms_per_ip_per_day", l.sms_per_ip_per_day as u64),
        ("limits.code_attempts", l.code_attempts as u64),
        ("limits.qr_per_app_per_day", l.qr_per_app_per_day as u64),
        ("limits.code_failures_per_phone_per_day", l.code_failures_per_phone_per_day as u64),
        ("limits.sms_per_attempt", l.sms_per_attempt as u64),
        ("limits.sms_resend_secs", l.sms_resend_secs),
        ("limits.live_attempts_max", l.live_attempts_max as u64),
    ] {
        if v == 0 {
            return Err(invalid(key, "must be > 0"));
        }
    }
    match s.sms.provider.as_str() {
        "log" => {}
        "webhook" => check_url("sms.webhook_url", &s.sms.webhook_url)?,
        other => {
            return Err(invalid("sms.provider", format!("`{other}` is not log or webhook")));
        }
    }
    if s.wechat.apps.is_empty() {
        return Err(invalid("wechat.apps", "at least one app is needed"));
    }
    let mut names = std::collections::HashSet::new();
    let mut ids = std::collections::HashSet::new();
    for (i, app) in s.wechat.apps.iter().enumerate() {
        let key = |k: &str| format!("wechat.apps[{i}].{k}");
        if !crate::ids::is_app_name(&app.name) {
            return Err(invalid(&key("name"), "must match ^[a-z0-9_-]{1,32}$"));
        }
        if app.app_id.is_empty() || app.app_id.len() > 64 || !app.app_id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(invalid(&key("app_id"), "must be 1..=64 letters or digits"));
        }
        if app.app_secret.is_empty() {
            return Err(invalid(&key("app_secret"), "is missing"));
        }
        if app.token.len() < 3
            || app.token.len() > 32
            || !app.token.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(&key("token"), "must be 3..=32 letters or digits"));
        }
        for (k, v) in
            [("encoding_aes_key", &app.encoding_aes_key), ("encoding_aes_key_previous", &app.encoding_aes_key_previous)]
        {
            if !v.is_empty() && (v.len() != 43 || !v.chars().all(|c| c.is_ascii_alphanumeric())) {
                return Err(invalid(&key(k), format!("must be 43 letters or digits (got {})", v.len())));
            }
        }
        if app.encoding_aes_key.is_empty() && !app.encoding_aes_key_previous.is_empty() {
            return Err(invalid(&key("encoding_aes_key_previous"), "needs a current encoding_aes_key"));
        }
        for (k, v) in [("api_base", &app.api_base), ("mp_base", &app.mp_base)] {
            if let Some(u) = v {
                check_url(&key(k), u)?;
            }
        }
        if !s.wechat.sandbox && (app.api_base.is_none()) && app.app_id.starts_with("wxsandbox") {
            return Err(invalid(&key("app_id"), "a sandbox app id needs wechat.sandbox = true or an api_base"));
        }
        if !names.insert(app.name.clone()) {
            return Err(invalid(&key("name"), "is used twice"));
        }
        if !ids.insert(app.app_id.clone()) {
            return Err(invalid(&key("app_id"), "is used twice"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: &str = include_str!("../config/default.toml");

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn err(text: &str, pairs: &[(&str, &str)]) -> String {
        match load_from_str(text, &env(pairs)) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn default_file_loads_with_no_unknown_keys() {
        let loaded = load_from_str(DEFAULT, &env(&[])).expect("default.toml is valid");
        assert!(loaded.unknown_keys.is_empty(), "{:?}", loaded.unknown_keys);
        assert_eq!(loaded.settings.login.qr_ttl_secs, 300);
        assert_eq!(loaded.settings.wechat.apps[0].app_id, "wxsandbox0000000001");
        assert!(loaded.settings.wechat.sandbox);
    }

    #[test]
    fn production_example_loads() {
        let text = include_str!("../config/production.example.toml");
        let loaded = load_from_str(text, &env(&[])).expect("production example is valid");
        assert!(!loaded.settings.server.demo_page);
        assert!(!loaded.settings.wechat.sandbox);
    }

    #[test]
    fn env_overrides_scalars_and_app_fields() {
        let loaded = load_from_str(
            DEFAULT,
            &env(&[
                ("SCANLOGIN__SERVER__BIND", "0.0.0.0:9000"),
                ("SCANLOGIN__LOGIN__QR_TTL_SECS", "60"),
                ("SCANLOGIN__WECHAT__APPS__0__APP_SECRET", "12345"),
                ("SCANLOGIN__SERVER__DEMO_PAGE", "false"),
            ]),
        )
        .expect("valid");
        let s = loaded.settings;
        assert_eq!(s.server.bind, "0.0.0.0:9000");
        assert_eq!(s.login.qr_ttl_secs, 60);
        assert_eq!(s.wechat.apps[0].app_secret, "12345");
        assert!(!s.server.demo_page);
    }

    #[test]
    fn unknown_keys_are_reported_not_fatal() {
        let text = format!("{DEFAULT}\n[future]\nthing = 1\n");
        let loaded = load_from_str(&text, &env(&[("SCANLOGIN__LOGIN__NEW_KNOB", "3")])).expect("valid");
        assert!(loaded.unknown_keys.iter().any(|k| k == "future"), "{:?}", loaded.unknown_keys);
        assert!(loaded.unknown_keys.iter().any(|k| k == "login.new_knob"));
    }

    #[test]
    fn bad_values_stop_with_one_clear_line() {
        let e = err(DEFAULT, &[("SCANLOGIN__WECHAT__APPS__0__APP_SECRET", "")]);
        assert!(e.contains("app_secret") && e.contains("missing"), "{e}");
        let e = err(DEFAULT, &[("SCANLOGIN__WECHAT__APPS__0__ENCODING_AES_KEY", &"a".repeat(42))]);
        assert!(e.contains("encoding_aes_key") && e.contains("42"), "{e}");
        let e = err(DEFAULT, &[("SCANLOGIN__SERVER__PUBLIC_URL", "not a url")]);
        assert!(e.contains("server.public_url"), "{e}");
        let e = err(DEFAULT, &[("SCANLOGIN__LOGIN__QR_TTL_SECS", "0")]);
        assert!(e.contains("login.qr_ttl_secs"), "{e}");
        let e = err(DEFAULT, &[("SCANLOGIN__LOGIN__QR_TTL_SECS", "soon")]);
        assert!(e.contains("qr_ttl_secs"), "{e}");
        let e = err(DEFAULT, &[("SCANLOGIN__SMS__PROVIDER", "pigeon")]);
        assert!(e.contains("sms.provider"), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
    }
}
