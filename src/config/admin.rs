//! `[admin]` and `[[admin.keys]]`: the operators' API (docs/api.md "Admin API"), its own
//! listener and the bearer keys that may call it, each with its scopes.
//!
//! A key is configured only as its SHA-256: the config file (often in a repository or a
//! secret store that many can read) never holds a credential.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AdminSettings {
    /// `host:port` of the admin listener; empty (the default): no admin API at all.
    pub bind: String,
    pub keys: Vec<AdminKey>,
    /// Requests one key may make per minute on one node (every request counts).
    pub requests_per_minute: u32,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self { bind: String::new(), keys: Vec::new(), requests_per_minute: 120 }
    }
}

impl AdminSettings {
    pub fn enabled(&self) -> bool {
        !self.bind.is_empty()
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct AdminKey {
    /// Who holds the key: written to the audit record of every call made with it.
    pub name: String,
    /// Lowercase or uppercase hex of the SHA-256 of the bearer key.
    pub token_sha256: String,
    pub scopes: Vec<Scope>,
}

/// What a key may do; each admin route needs one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum Scope {
    #[serde(rename = "attempts:read")]
    AttemptsRead,
    #[serde(rename = "attempts:write")]
    AttemptsWrite,
    #[serde(rename = "users:read")]
    UsersRead,
    #[serde(rename = "users:write")]
    UsersWrite,
    #[serde(rename = "audit:read")]
    AuditRead,
}

impl Scope {
    pub const ALL: [Scope; 5] =
        [Scope::AttemptsRead, Scope::AttemptsWrite, Scope::UsersRead, Scope::UsersWrite, Scope::AuditRead];

    pub fn name(self) -> &'static str {
        match self {
            Scope::AttemptsRead => "attempts:read",
            Scope::AttemptsWrite => "attempts:write",
            Scope::UsersRead => "users:read",
            Scope::UsersWrite => "users:write",
            Scope::AuditRead => "audit:read",
        }
    }
}

/// The longest key name (it is stored in every audit row).
pub const MAX_KEY_NAME: usize = 64;

/// The `[admin]` checks of `validate`: an address when set, other than the API's and
/// the metrics', and every key named once with a well-formed digest.
pub(super) fn validate(s: &super::Settings) -> Result<(), super::ConfigError> {
    let a = &s.admin;
    if !a.enabled() {
        return Ok(());
    }
    let bind: std::net::SocketAddr =
        a.bind.parse().map_err(|_| super::invalid("admin.bind", format!("`{}` is not host:port", a.bind)))?;
    for (other, key) in [(&s.server.bind, "server.bind"), (&s.server.metrics_bind, "server.metrics_bind")] {
        if other.parse::<std::net::SocketAddr>().is_ok_and(|o| o == bind) {
            return Err(super::invalid(
                "admin.bind",
                format!("must differ from {key}: the admin API has its own port"),
            ));
        }
    }
    if a.requests_per_minute == 0 {
        return Err(super::invalid("admin.requests_per_minute", "must be > 0"));
    }
    let mut names = std::collections::HashSet::new();
    let mut digests = std::collections::HashSet::new();
    for k in &a.keys {
        let ok_name = !k.name.is_empty()
            && k.name.len() <= MAX_KEY_NAME
            && k.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
        if !ok_name {
            return Err(super::invalid(
                "admin.keys.name",
                format!("`{}` must be 1–{MAX_KEY_NAME} letters, digits, '-', '_', '.' or '@'", k.name),
            ));
        }
        if !names.insert(k.name.as_str()) {
            return Err(super::invalid("admin.keys.name", format!("`{}` is configured twice", k.name)));
        }
        let digest = k.token_sha256.to_ascii_lowercase();
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(super::invalid(
                &format!("admin.keys[{}].token_sha256", k.name),
                "must be the 64 hex digits of the key's SHA-256 (the key itself never goes in the config)",
            ));
        }
        if !digests.insert(digest) {
            return Err(super::invalid(&format!("admin.keys[{}].token_sha256", k.name), "is another key's too"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::load_from_str;

    const DIGEST: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn load(extra: &str) -> Result<crate::config::Settings, String> {
        let text = format!("{}\n{extra}\n", include_str!("../../config/default.toml"));
        load_from_str(&text, &Default::default()).map(|l| l.settings).map_err(|e| e.to_string())
    }

    #[test]
    fn keys_parse_with_their_scopes() {
        let s = load(&format!(
            "[admin]\nbind = \"127.0.0.1:9091\"\n[[admin.keys]]\nname = \"oncall\"\ntoken_sha256 = \"{DIGEST}\"\nscopes = [\"attempts:read\", \"audit:read\"]"
        ))
        .unwrap();
        assert_eq!(s.admin.keys[0].scopes, vec![super::Scope::AttemptsRead, super::Scope::AuditRead]);
        assert!(s.admin.enabled());
    }

    #[test]
    fn off_by_default() {
        assert!(!load("").unwrap().admin.enabled());
    }

    #[test]
    fn bad_keys_are_refused_with_their_key() {
        let base = "[admin]\nbind = \"127.0.0.1:9091\"\n[[admin.keys]]\nname = \"oncall\"\n";
        let e = load(&format!("{base}token_sha256 = \"abc\"")).unwrap_err();
        assert!(e.contains("admin.keys[oncall].token_sha256"), "{e}");
        let e = load(&format!(
            "{base}token_sha256 = \"{DIGEST}\"\n[[admin.keys]]\nname = \"oncall\"\ntoken_sha256 = \"{}\"",
            "0".repeat(64)
        ))
        .unwrap_err();
        assert!(e.contains("configured twice"), "{e}");
        let e = load("[admin]\nbind = \"127.0.0.1:8080\"").unwrap_err();
        assert!(e.contains("admin.bind") && e.contains("server.bind"), "{e}");
        let e = load(&format!("{base}token_sha256 = \"{DIGEST}\"\nscopes = [\"everything\"]")).unwrap_err();
        assert!(e.contains("everything") || e.contains("scopes"), "{e}");
    }
}
