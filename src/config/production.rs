//! The checks that make a production start safe by default (README "Running in
//! production"): a sandbox only where it is meant, no weak or shipped secret outside it,
//! a metrics address that is not the API's.
//!
//! The shipped placeholders are read from the files in `config/` themselves, so a new
//! placeholder in an example cannot drift from the list refused here.

use std::net::SocketAddr;
use std::sync::LazyLock;

use super::{ConfigError, Settings};

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

/// Runs after the per-key checks of `validate`.
pub(super) fn validate(s: &Settings) -> Result<(), ConfigError> {
    let bind: SocketAddr = s.server.bind.parse().map_err(|_| invalid("server.bind", "is not host:port"))?;
    if s.wechat.sandbox && !s.wechat.sandbox_public && !bind.ip().is_loopback() {
        return Err(invalid(
            "wechat.sandbox",
            format!(
                "the sandbox lets anyone log in as anyone and server.bind `{bind}` is not loopback; \
                 set wechat.sandbox = false, or wechat.sandbox_public = true for a demo host"
            ),
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
    if s.wechat.sandbox {
        return Ok(());
    }
    let secret = s.token.secret.expose();
    if is_placeholder(secret) {
        return Err(invalid("token.secret", "is a placeholder shipped in config/: set a long random value"));
    }
    if secret.len() < MIN_SECRET_BYTES {
        return Err(invalid(
            "token.secret",
            format!("must be at least {MIN_SECRET_BYTES} bytes outside the sandbox (got {})", secret.len()),
        ));
    }
    for (i, app) in s.wechat.apps.iter().enumerate() {
        // An explicit api_base is a stand-in for WeChat (tests, staging): its credentials are its own.
        if app.api_base.is_some() {
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
        let ok = env(&[("SCANLOGIN__SERVER__BIND", "0.0.0.0:8080"), ("SCANLOGIN__WECHAT__SANDBOX_PUBLIC", "true")]);
        assert!(load_from_str(default, &ok).is_ok());
        assert!(load_from_str(default, &env(&[("SCANLOGIN__SERVER__BIND", "[::1]:8080")])).is_ok());
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
}
