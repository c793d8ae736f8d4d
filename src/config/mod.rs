//! Typed settings: one TOML file, overridden key by key from the environment.
//!
//! Loading order: the file (`--config`, default `config/default.toml`), then every
//! `SCANLOGIN__SECTION__KEY` variable ([`env`]). A key we do not know is only a warning,
//! so one file can serve two versions; a known key with a bad value stops the start with
//! one clear line ([`validate`]). The model itself is [`model`].

mod admin;
mod env;
mod model;
mod oidc;
mod production;
mod secret;
mod storage;
mod validate;

use std::collections::BTreeMap;
use std::path::Path;

pub use admin::{AdminKey, AdminSettings, Scope};
pub use model::*;
pub use oidc::{EmailPolicy, OidcClient, OidcSettings};
pub use production::PLACEHOLDER_SECRETS;
pub use storage::{SnapshotBackend, SqliteSync, StorageSettings, redacted_url};

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

/// A parser's message as the one line printed at exit ("… in `sms.provider`" included).
fn one_line(msg: &str) -> String {
    msg.split_whitespace().collect::<Vec<_>>().join(" ")
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
            env::apply_override(&mut value, &path, raw).map_err(|why| invalid(name, why))?;
        }
    }
    let mut unknown_keys = Vec::new();
    let settings: Settings = serde_ignored::deserialize(value, |p| unknown_keys.push(p.to_string()))
        .map_err(|e| ConfigError::Parse(one_line(&e.to_string())))?;
    validate::validate(&settings)?;
    Ok(Loaded { settings, unknown_keys })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: &str = include_str!("../../config/default.toml");

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
        let text = include_str!("../../config/production.example.toml");
        let secrets = [
            ("SCANLOGIN__TOKEN__SECRET", "a-random-value-of-at-least-32-bytes"),
            ("SCANLOGIN__WECHAT__APPS__0__APP_SECRET", "a-real-app-secret"),
            ("SCANLOGIN__WECHAT__APPS__0__TOKEN", "aRealToken"),
        ];
        let loaded = load_from_str(text, &env(&secrets)).expect("production example is valid");
        assert!(!loaded.settings.server.demo_page);
        assert!(!loaded.settings.wechat.sandbox);
    }

    #[test]
    fn env_overrides_scalars_and_app_fields() {
        let loaded = load_from_str(
            DEFAULT,
            &env(&[
                ("SCANLOGIN__SERVER__BIND", "0.0.0.0:9000"),
                ("SCANLOGIN__WECHAT__SANDBOX_PUBLIC", "true"),
                ("SCANLOGIN__TOKEN__SECRET", "a-random-value-of-at-least-32-bytes"),
                ("SCANLOGIN__LOGIN__QR_TTL_SECS", "60"),
                ("SCANLOGIN__WECHAT__APPS__0__APP_SECRET", "12345"),
                ("SCANLOGIN__SERVER__DEMO_PAGE", "false"),
            ]),
        )
        .expect("valid");
        let s = loaded.settings;
        assert_eq!(s.server.bind, "0.0.0.0:9000");
        assert_eq!(s.login.qr_ttl_secs, 60);
        assert_eq!(s.wechat.apps[0].app_secret.expose(), "12345");
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
