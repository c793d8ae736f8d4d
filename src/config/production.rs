//! The checks that make a production start safe by default (docs/operations.md "Running
//! in production"): a sandbox only where it is meant, no weak or shipped secret unless the
//! sandbox is on loopback only, a metrics address that is not the API's.
//!
//! The shipped placeholders are read from the files in `config/` themselves, so a new
//! placeholder in an example cannot drift from the list refused here.

use std::net::SocketAddr;
use std::sync::LazyLock;

use super::{ConfigError, Settings, SmsProvider};

fn invalid(key: &str, why: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.to_string(), why: why.into() }
}

/// The shortest `token.secret` accepted outside the sandbox: 256 bits of HS256 key.
pub const MIN_SECRET_BYTES: usize = 32;

/// Every file shipped in `config/` (a unit test fails when one is missing here).
const SHIPPED: &[(&str, &str)] = &[
    ("default.toml", include_str!("../../config/default.toml")),
    ("production.example.toml", include_str!("../../config/production.example.toml")),
    // Not TOML (it holds no secrets): listed so every file in config/ is accounted for.
    ("nginx.example.conf", include_str!("../../config/nginx.example.conf")),
    // Not TOML either: the systemd unit example (its secrets go in an environment file).
    ("scanlogin.service", include_str!("../../config/scanlogin.service")),
];

/// The secrets written in the shipped files (`token.secret`, and each app's `app_secret`
/// and `token`), plus the built-in default: values everyone can read on GitHub.
pub static PLACEHOLDER_SECRETS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut out = vec![
        super::TokenSettings::default().secret.expose().to_string(),
        super::AppSettings::default().app_secret.expose().to_string(),
    ];
    for (_, text) in SHIPPED {
        let Ok(v) = toml::from_str::<toml::Value>(text) else { continue };
        out.extend(v.get("token").and_then(|t| t.get("secret")).and_then(|s| s.as_str()).map(String::from));
        let apps = v.get("wechat").and_then(|w| w.get("apps")).and_then(|a| a.as_array());
        for app in apps.into_iter().flatten() {
            for key in ["app_secret", "token"] {
                out.extend(app.get(key).and_then(|s| s.as_str()).filter(|s| !s.is_empty()).map(String::from));
            }
        }
    }
    out.sort();
    out.dedup();
    out
});

fn is_placeholder(value: &str) -> bool {
    PLACEHOLDER_SECRETS.iter().any(|p| p == value)
}

/// A URL whose host is this machine: `localhost` (RFC 6761) or a loopback address.
fn is_loopback_url(url: &str) -> bool {
    match url::Url::parse(url).ok().as_ref().and_then(url::Url::host) {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        None => false,
    }
}

/// A URL at WeChat's own hosts (`api.weixin.qq.com`, `mp.weixin.qq.com`, any `*.qq.com`).
fn is_wechat_url(url: &str) -> bool {
    let host = url::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_ascii_lowercase));
    host.is_some_and(|h| {
        let h = h.trim_end_matches('.');
        h == "qq.com" || h.ends_with(".qq.com")
    })
}

/// Why other hosts reach this server, if they do: a bind that is not loopback, a
/// `public_url` that is not (WeChat, browsers and the world use it), or a trusted proxy
/// (it forwards other hosts' requests: nginx in front of a loopback bind, as in
/// docs/operations.md).
fn exposure(s: &Settings, bind: SocketAddr) -> Option<String> {
    if !bind.ip().is_loopback() {
        return Some(format!("server.bind `{bind}` is not loopback"));
    }
    if !is_loopback_url(&s.server.public_url) {
        return Some(format!("server.public_url `{}` is not loopback", s.server.public_url));
    }
    if !s.server.trusted_proxies.is_empty() {
        return Some("server.trusted_proxies is not empty (a proxy brings other hosts' requests)".into());
    }
    None
}

/// Whether `app` talks to WeChat itself: through an explicit base at WeChat's hosts, or
/// with no `api_base` outside the sandbox. Any other explicit base is a stand-in for
/// WeChat (tests, staging) whose credentials are its own.
fn talks_to_wechat(app: &super::AppSettings, sandbox: bool) -> bool {
    let api = match &app.api_base {
        Some(u) => is_wechat_url(u),
        None => !sandbox,
    };
    api || app.mp_base.as_deref().is_some_and(is_wechat_url)
}

/// Runs after the per-key checks of `validate`.
pub(super) fn validate(s: &Settings) -> Result<(), ConfigError> {
    let bind: SocketAddr = s.server.bind.parse().map_err(|_| invalid("server.bind", "is not host:port"))?;
    let exposed = exposure(s, bind);
    if let (true, false, Some(why)) = (s.wechat.sandbox, s.wechat.sandbox_public, &exposed) {
        return Err(invalid(
            "wechat.sandbox",
            format!(
                "the sandbox lets anyone log in as anyone and {why}; \
                 set wechat.sandbox = false, or wechat.sandbox_public = true for a demo host"
            ),
        ));
    }
    if !s.wechat.sandbox && s.sms.provider == SmsProvider::Log {
        return Err(invalid(
            "sms.provider",
            "`log` sends no SMS (it only logs the code for the sandbox outbox) and wechat.sandbox is off: \
             set sms.provider = \"webhook\" with sms.webhook_url",
        ));
    }
    if !s.server.metrics_bind.is_empty() {
        let m: SocketAddr = s
            .server
            .metrics_bind
            .parse()
            .map_err(|_| invalid("server.metrics_bind", format!("`{}` is not host:port", s.server.metrics_bind)))?;
        if m == bind {
            return Err(invalid("server.metrics_bind", "must differ from server.bind (empty: the API port)"));
        }
    }
    // An admin listener others can reach, with no key to check, is an API nobody can
    // use and that only waits for a later edit to add a weak one: said now, at start.
    if let Ok(a) = s.admin.bind.parse::<SocketAddr>()
        && !a.ip().is_loopback()
        && s.admin.keys.is_empty()
    {
        return Err(invalid(
            "admin.keys",
            format!(
                "admin.bind = {a} is reachable from other hosts and no [[admin.keys]] is configured: add a key, or bind the admin API to 127.0.0.1"
            ),
        ));
    }
    // Only a sandbox nobody else can reach keeps its easy secrets (a laptop).
    if s.wechat.sandbox && exposed.is_none() {
        return Ok(());
    }
    // The previous secret of a rotation signs nothing, but its tokens are accepted: the
    // same rules (when one is set).
    let previous = s.token.secret_previous.expose();
    for (key, secret) in [("token.secret", s.token.secret.expose()), ("token.secret_previous", previous)] {
        if key == "token.secret_previous" && secret.is_empty() {
            continue;
        }
        if is_placeholder(secret) {
            return Err(invalid(key, "is a placeholder shipped in config/: set a long random value"));
        }
        if secret.len() < MIN_SECRET_BYTES {
            let outside = if s.wechat.sandbox { "on a host others reach" } else { "outside the sandbox" };
            return Err(invalid(
                key,
                format!("must be at least {MIN_SECRET_BYTES} bytes {outside} (got {})", secret.len()),
            ));
        }
    }
    // A relying party's secret guards its users' tokens; a code sent over plain http to a
    // host other than this machine can be read on the way.
    for c in s.oidc.clients.iter().filter(|_| s.oidc.enabled) {
        let key = format!("oidc.clients[{}]", c.client_id);
        let secret = c.client_secret.expose();
        if !secret.is_empty() && (secret.len() < MIN_SECRET_BYTES || secret.starts_with("set-")) {
            return Err(invalid(
                &format!("{key}.client_secret"),
                format!("must be at least {MIN_SECRET_BYTES} random bytes"),
            ));
        }
        if let Some(uri) = c.redirect_uris.iter().find(|u| u.starts_with("http://") && !is_loopback_url(u)) {
            return Err(invalid(
                &format!("{key}.redirect_uris"),
                format!("`{uri}` must be https (or on this machine)"),
            ));
        }
    }
    for (i, app) in s.wechat.apps.iter().enumerate() {
        if !talks_to_wechat(app, s.wechat.sandbox) {
            continue;
        }
        for (k, v) in [("app_secret", &app.app_secret), ("token", &app.token)] {
            if is_placeholder(v.expose()) {
                return Err(invalid(&format!("wechat.apps[{i}].{k}"), "is a placeholder shipped in config/"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::load_from_str;

    const PROD: &str = include_str!("../../config/production.example.toml");
    const STRONG: &str = "0123456789abcdef0123456789abcdef-strong";

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// The production example with the secrets its header says come from the environment.
    fn prod_env(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut e = env(&[
            ("SCANLOGIN__TOKEN__SECRET", STRONG),
            ("SCANLOGIN__WECHAT__APPS__0__APP_SECRET", "a-real-app-secret"),
            ("SCANLOGIN__WECHAT__APPS__0__TOKEN", "aRealToken"),
        ]);
        e.extend(env(extra));
        e
    }

    fn err(text: &str, e: &BTreeMap<String, String>) -> String {
        match load_from_str(text, e) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn every_file_in_config_is_read_for_placeholders() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/config");
        for entry in std::fs::read_dir(dir).expect("config/") {
            let name = entry.expect("entry").file_name().to_string_lossy().into_owned();
            assert!(SHIPPED.iter().any(|(n, _)| *n == name), "config/{name} is not in SHIPPED");
        }
        for p in ["change-me", "set-SCANLOGIN__TOKEN__SECRET", "settoken", "sandbox-secret"] {
            assert!(is_placeholder(p), "{p}");
        }
    }

    #[test]
    fn production_example_is_valid_with_its_secrets_from_the_environment() {
        let s = load_from_str(PROD, &prod_env(&[])).expect("valid").settings;
        assert!(!s.wechat.sandbox);
        // As shipped (no environment) its placeholders stop the start.
        let e = err(PROD, &env(&[]));
        assert!(e.contains("token.secret") && e.contains("placeholder"), "{e}");
    }

    #[test]
    fn weak_or_shipped_secrets_stop_a_start_outside_the_sandbox() {
        for bad in ["change-me", "set-SCANLOGIN__TOKEN__SECRET", "short-but-not-shipped"] {
            let e = err(PROD, &prod_env(&[("SCANLOGIN__TOKEN__SECRET", bad)]));
            assert!(e.starts_with("config: token.secret:"), "{e}");
            assert_eq!(e.lines().count(), 1);
        }
        let e = err(PROD, &prod_env(&[("SCANLOGIN__TOKEN__SECRET_PREVIOUS", "change-me")]));
        assert!(e.starts_with("config: token.secret_previous:"), "a rotation's old secret too: {e}");
        let long = "an-old-secret-of-more-than-thirty-two-bytes";
        assert!(load_from_str(PROD, &prod_env(&[("SCANLOGIN__TOKEN__SECRET_PREVIOUS", long)])).is_ok());
        let e = err(PROD, &prod_env(&[("SCANLOGIN__WECHAT__APPS__0__TOKEN", "settoken")]));
        assert!(e.contains("wechat.apps[0].token"), "{e}");
        // The sandbox (a laptop) keeps its easy defaults.
        let default = include_str!("../../config/default.toml");
        assert!(load_from_str(default, &env(&[])).is_ok());
    }

    /// A production-like config that forgets a key gets the safe built-in, and a missing
    /// secret is refused rather than defaulted to something public.
    #[test]
    fn a_production_config_missing_a_key_fails_closed() {
        let without = |key: &str| PROD.lines().filter(|l| !l.starts_with(key)).collect::<Vec<_>>().join("\n");
        let e = err(&without("secret ="), &env(&[]));
        assert!(e.contains("token.secret"), "{e}");
        let s = load_from_str(&without("sandbox ="), &prod_env(&[])).expect("valid").settings;
        assert!(!s.wechat.sandbox, "no sandbox unless a config asks for it");
    }

    #[test]
    fn the_sandbox_on_a_public_bind_stops_the_start_unless_meant() {
        let default = include_str!("../../config/default.toml");
        let e = err(default, &env(&[("SCANLOGIN__SERVER__BIND", "0.0.0.0:8080")]));
        assert!(e.starts_with("config: wechat.sandbox:") && e.contains("sandbox_public"), "{e}");
        assert_eq!(e.lines().count(), 1);
        let ok = env(&[
            ("SCANLOGIN__SERVER__BIND", "0.0.0.0:8080"),
            ("SCANLOGIN__WECHAT__SANDBOX_PUBLIC", "true"),
            ("SCANLOGIN__TOKEN__SECRET", STRONG),
        ]);
        assert!(load_from_str(default, &ok).is_ok());
        assert!(load_from_str(default, &env(&[("SCANLOGIN__SERVER__BIND", "[::1]:8080")])).is_ok());
    }

    /// The topology of docs/operations.md: nginx on the host in front of a loopback bind.
    /// The world reaches the server through the proxy, so the sandbox is public although
    /// the bind is not.
    #[test]
    fn the_sandbox_behind_a_public_url_or_a_proxy_stops_the_start_unless_meant() {
        let default = include_str!("../../config/default.toml");
        let proxy = r#"["127.0.0.1/32"]"#;
        for pairs in [
            &[("SCANLOGIN__SERVER__PUBLIC_URL", "https://login.example.com")][..],
            &[("SCANLOGIN__SERVER__PUBLIC_URL", "http://192.0.2.7:8080")],
            &[("SCANLOGIN__SERVER__TRUSTED_PROXIES", proxy)],
        ] {
            let e = err(default, &env(pairs));
            assert!(e.starts_with("config: wechat.sandbox:") && e.contains("sandbox_public"), "{pairs:?}: {e}");
            assert_eq!(e.lines().count(), 1);
        }
        let e = err(default, &env(&[("SCANLOGIN__SERVER__PUBLIC_URL", "https://login.example.com")]));
        assert!(e.contains("server.public_url"), "names what makes it public: {e}");
        let e = err(default, &env(&[("SCANLOGIN__SERVER__TRUSTED_PROXIES", proxy)]));
        assert!(e.contains("server.trusted_proxies"), "{e}");
        // Loopback in every way: the laptop default, as before.
        for url in ["http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080", "http://127.0.0.2:9000"] {
            let loaded = load_from_str(default, &env(&[("SCANLOGIN__SERVER__PUBLIC_URL", url)]));
            assert!(loaded.is_ok(), "{url}");
        }
    }

    /// The secret checks are skipped only for a sandbox nobody else can reach: a sandbox
    /// meant to be public (`sandbox_public`) still needs a real `token.secret`.
    #[test]
    fn a_reachable_sandbox_still_needs_a_real_token_secret() {
        let default = include_str!("../../config/default.toml");
        let public = [
            &[("SCANLOGIN__SERVER__PUBLIC_URL", "https://login.example.com")][..],
            &[("SCANLOGIN__SERVER__TRUSTED_PROXIES", r#"["127.0.0.1/32"]"#)],
            &[("SCANLOGIN__SERVER__BIND", "0.0.0.0:8080")],
        ];
        for pairs in public {
            let mut e = env(pairs);
            e.extend(env(&[("SCANLOGIN__WECHAT__SANDBOX_PUBLIC", "true")]));
            let msg = err(default, &e);
            assert!(msg.starts_with("config: token.secret:") && msg.contains("placeholder"), "{pairs:?}: {msg}");
            e.extend(env(&[("SCANLOGIN__TOKEN__SECRET", "short-but-not-shipped")]));
            let msg = err(default, &e);
            assert!(msg.starts_with("config: token.secret:") && msg.contains("at least 32"), "{pairs:?}: {msg}");
            e.extend(env(&[("SCANLOGIN__TOKEN__SECRET", STRONG)]));
            assert!(load_from_str(default, &e).is_ok(), "{pairs:?}");
        }
    }

    /// An explicit `api_base`/`mp_base` is a stand-in for WeChat (its credentials are its
    /// own) only when it is not WeChat itself.
    #[test]
    fn an_explicit_base_at_wechat_does_not_skip_the_placeholder_checks() {
        const API: &str = "SCANLOGIN__WECHAT__APPS__0__API_BASE";
        const MP: &str = "SCANLOGIN__WECHAT__APPS__0__MP_BASE";
        let placeholder = ("SCANLOGIN__WECHAT__APPS__0__TOKEN", "settoken");
        let stand_in = "http://127.0.0.1:9000/_sandbox";
        for (api, mp) in [
            ("https://api.weixin.qq.com", stand_in),
            ("https://sh.api.weixin.qq.com/", stand_in),
            ("https://API.WEIXIN.QQ.COM.", stand_in),
            ("https://qq.com", stand_in),
            (stand_in, "https://mp.weixin.qq.com"),
        ] {
            let e = err(PROD, &prod_env(&[(API, api), (MP, mp), placeholder]));
            assert!(e.starts_with("config: wechat.apps[0].token:"), "{api} {mp}: {e}");
        }
        for base in [stand_in, "https://wechat-stub.internal", "https://notqq.com"] {
            assert!(load_from_str(PROD, &prod_env(&[(API, base), (MP, base), placeholder])).is_ok(), "{base}");
        }
    }

    /// The `log` provider sends nothing: outside the sandbox nobody would get a code.
    #[test]
    fn the_log_sms_provider_is_refused_outside_the_sandbox() {
        let e = err(PROD, &prod_env(&[("SCANLOGIN__SMS__PROVIDER", "log")]));
        assert!(e.starts_with("config: sms.provider:") && e.contains("wechat.sandbox"), "{e}");
        assert_eq!(e.lines().count(), 1);
        let default = include_str!("../../config/default.toml");
        assert!(load_from_str(default, &env(&[])).is_ok(), "in the sandbox the outbox shows the codes");
    }

    #[test]
    fn metrics_bind_is_an_address_other_than_the_api() {
        let default = include_str!("../../config/default.toml");
        let e = err(default, &env(&[("SCANLOGIN__SERVER__METRICS_BIND", "127.0.0.1:8080")]));
        assert!(e.contains("server.metrics_bind"), "{e}");
        let e = err(default, &env(&[("SCANLOGIN__SERVER__METRICS_BIND", "nowhere")]));
        assert!(e.contains("server.metrics_bind"), "{e}");
        assert!(load_from_str(default, &env(&[("SCANLOGIN__SERVER__METRICS_BIND", "127.0.0.1:9100")])).is_ok());
    }

    /// An admin listener on an address others reach needs a key; on loopback it may wait
    /// for one (a laptop, an SSH tunnel).
    #[test]
    fn an_exposed_admin_listener_without_a_key_is_refused() {
        let default = include_str!("../../config/default.toml");
        let e = err(default, &env(&[("SCANLOGIN__ADMIN__BIND", "0.0.0.0:9091")]));
        assert!(e.starts_with("config: admin.keys:") && e.contains("0.0.0.0:9091"), "{e}");
        assert!(load_from_str(default, &env(&[("SCANLOGIN__ADMIN__BIND", "127.0.0.1:9091")])).is_ok());
    }
}
