//! Validation of a parsed [`Settings`]: the checks that need more than one key or more
//! than a type, each failing with one clear line naming the key.

use std::net::SocketAddr;

use super::{ConfigError, Settings, SmsProvider, SnapshotBackend};

fn invalid(key: &str, why: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.to_string(), why: why.into() }
}

fn check_url(key: &str, url: &str) -> Result<(), ConfigError> {
    let parsed = url::Url::parse(url).map_err(|e| invalid(key, format!("bad URL `{url}`: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(key, format!("`{url}` is not http(s)")));
    }
    Ok(())
}

pub(super) fn validate(s: &Settings) -> Result<(), ConfigError> {
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
    if !(6..=8).contains(&s.login.code_length) {
        return Err(invalid("login.code_length", "must be 6..=8"));
    }
    if s.login.long_poll_max_secs > 120 {
        return Err(invalid("login.long_poll_max_secs", "must be 0..=120"));
    }
    if s.limits.sms_per_attempt > 100 {
        return Err(invalid("limits.sms_per_attempt", "must be 1..=100"));
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
    validate_cluster(s)?;
    validate_oidc(s)?;
    super::admin::validate(s)?;
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
        ("limits.sms_per_day", l.sms_per_day as u64),
        ("limits.code_attempts", l.code_attempts as u64),
        ("limits.qr_per_app_per_day", l.qr_per_app_per_day as u64),
        ("limits.code_failures_per_openid_per_day", l.code_failures_per_openid_per_day as u64),
        ("limits.code_failures_per_ip_per_day", l.code_failures_per_ip_per_day as u64),
        ("limits.codes_per_openid_per_hour", l.codes_per_openid_per_hour as u64),
        ("limits.sms_per_attempt", l.sms_per_attempt as u64),
        ("limits.qr_per_ip_per_day", l.qr_per_ip_per_day as u64),
        ("limits.qr_per_network_per_day", l.qr_per_network_per_day as u64),
        ("limits.qr_per_site_per_day", l.qr_per_site_per_day as u64),
        ("limits.bind_per_attempt", l.bind_per_attempt as u64),
        ("limits.bind_per_ip_per_day", l.bind_per_ip_per_day as u64),
        ("limits.oidc_token_failures_per_ip_per_day", l.oidc_token_failures_per_ip_per_day as u64),
        ("limits.oidc_token_failures_per_client_per_day", l.oidc_token_failures_per_client_per_day as u64),
        ("limits.sms_resend_secs", l.sms_resend_secs),
        ("limits.live_attempts_max", l.live_attempts_max as u64),
        ("limits.connections_per_ip", l.connections_per_ip as u64),
    ] {
        if v == 0 {
            return Err(invalid(key, "must be > 0"));
        }
    }
    if l.qr_reserved_percent > 100 {
        return Err(invalid("limits.qr_reserved_percent", "must be 0..=100"));
    }
    if s.sms.provider == SmsProvider::Webhook {
        check_url("sms.webhook_url", &s.sms.webhook_url)?;
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
            || !app.token.expose().chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(&key("token"), "must be 3..=32 letters or digits"));
        }
        for (k, v) in
            [("encoding_aes_key", &app.encoding_aes_key), ("encoding_aes_key_previous", &app.encoding_aes_key_previous)]
        {
            if !v.is_empty() && (v.len() != 43 || !v.expose().chars().all(|c| c.is_ascii_alphanumeric())) {
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
    super::production::validate(s)
}

/// Cluster mode needs what several nodes can share: Redis for the attempts, and a SQL
/// server (not a SQLite file) for the users.
/// The provider's settings, when it is on: every client has an id, exact absolute
/// redirect URIs, an app that exists, and what its email policy needs.
fn validate_oidc(s: &Settings) -> Result<(), ConfigError> {
    let o = &s.oidc;
    if !o.enabled {
        return Ok(());
    }
    if !o.issuer.is_empty() {
        check_url("oidc.issuer", &o.issuer)?;
    }
    for (key, v) in [
        ("oidc.code_ttl_secs", o.code_ttl_secs),
        ("oidc.session_ttl_secs", o.session_ttl_secs),
        ("oidc.refresh_token_ttl_secs", o.refresh_token_ttl_secs),
    ] {
        if v == 0 {
            return Err(invalid(key, "must be > 0"));
        }
    }
    if o.code_ttl_secs > 600 {
        return Err(invalid("oidc.code_ttl_secs", "must be 1..=600 (RFC 6749 §4.1.2: short-lived)"));
    }
    let mut seen = std::collections::HashSet::new();
    for c in &o.clients {
        let id = &c.client_id;
        let key = |k: &str| format!("oidc.clients[{id}].{k}");
        if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            return Err(invalid("oidc.clients.client_id", format!("`{id}` must be 1–128 visible characters, no `:`")));
        }
        if !seen.insert(id.clone()) {
            return Err(invalid("oidc.clients.client_id", format!("`{id}` is registered twice")));
        }
        if c.redirect_uris.is_empty() {
            return Err(invalid(&key("redirect_uris"), "must list at least one URI"));
        }
        for uri in c.redirect_uris.iter().chain(&c.post_logout_redirect_uris) {
            let ok = url::Url::parse(uri).is_ok_and(|u| u.fragment().is_none() && !u.cannot_be_a_base());
            if !ok {
                return Err(invalid(
                    &key("redirect_uris"),
                    format!("`{uri}` is not an absolute URI without a fragment"),
                ));
            }
        }
        if !c.app.is_empty() && !s.wechat.apps.iter().any(|a| a.name == c.app) {
            return Err(invalid(&key("app"), format!("no [[wechat.apps]] is named `{}`", c.app)));
        }
        if c.email == crate::config::EmailPolicy::Synthetic && c.synthetic_email_domain.is_empty() {
            return Err(invalid(&key("synthetic_email_domain"), "must be set for email = \"synthetic\""));
        }
    }
    Ok(())
}

fn validate_cluster(s: &Settings) -> Result<(), ConfigError> {
    let on_redis_cluster = s
        .storage
        .snapshots
        .redis_url()
        .is_some_and(|u| matches!(crate::kv::Topology::parse(u), Ok(crate::kv::Topology::Cluster(_))));
    let storage = &s.storage;
    if storage.redis_wait_replicas > 0 {
        if !s.cluster.enabled {
            return Err(invalid(
                "storage.redis_wait_replicas",
                "waits for the replicas of cluster mode's Redis: set cluster.enabled = true, or 0",
            ));
        }
        // The wait runs inside a call that gives up after 500 ms.
        if storage.redis_wait_replicas > 16 || !(1..=400).contains(&storage.redis_wait_ms) {
            return Err(invalid(
                "storage.redis_wait_replicas",
                "at most 16 replicas, with storage.redis_wait_ms from 1 to 400",
            ));
        }
    }
    if !s.cluster.enabled {
        if on_redis_cluster {
            // One node's snapshots keep an index beside its records: one slot it is not.
            return Err(invalid(
                "storage.snapshots",
                "a Redis Cluster (redis+cluster://) holds the attempts of cluster mode only: set cluster.enabled = true, or name one Redis server",
            ));
        }
        return Ok(());
    }
    if !matches!(s.storage.snapshots, SnapshotBackend::Redis(_)) {
        return Err(invalid(
            "storage.snapshots",
            "cluster mode (cluster.enabled = true) needs a redis:// URL: the nodes share their attempts there",
        ));
    }
    if s.storage.database_url.starts_with("sqlite:") {
        return Err(invalid(
            "storage.database_url",
            "cluster mode (cluster.enabled = true) needs a PostgreSQL or MySQL database, not SQLite",
        ));
    }
    if s.cluster.node_id.len() > 64
        || !s.cluster.node_id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(invalid("cluster.node_id", "must be at most 64 letters, digits, '-', '_' or '.'"));
    }
    Ok(())
}
