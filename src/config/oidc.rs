//! `[oidc]` and `[[oidc.clients]]`: the OpenID Connect provider and the relying
//! applications registered with it (docs/api.md, "OpenID Connect provider").

use serde::Deserialize;

use super::secret::Secret;
use crate::token::SigningAlg;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct OidcSettings {
    pub enabled: bool,
    /// Empty: `server.public_url`.
    pub issuer: String,
    pub code_ttl_secs: u64,
    pub session_ttl_secs: u64,
    pub refresh_token_ttl_secs: u64,
    pub clients: Vec<OidcClient>,
}

impl Default for OidcSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            issuer: String::new(),
            code_ttl_secs: 60,
            session_ttl_secs: 8 * 3600,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            clients: Vec::new(),
        }
    }
}

/// What a client learns of a user's email: WeChat gives none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmailPolicy {
    /// No `email` claim.
    #[default]
    Omit,
    /// `<sub>@<synthetic_email_domain>`, `email_verified: false`: for clients that
    /// refuse a user without an email.
    Synthetic,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct OidcClient {
    pub client_id: String,
    /// Empty: a public client (PKCE required).
    pub client_secret: Secret,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    /// The app (official account) whose QR code its users scan; empty: the first.
    pub app: String,
    pub id_token_alg: SigningAlg,
    pub email: EmailPolicy,
    pub synthetic_email_domain: String,
}

impl Default for OidcClient {
    fn default() -> Self {
        Self {
            client_id: String::new(),
            client_secret: Secret::default(),
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            app: String::new(),
            id_token_alg: SigningAlg::Rs256,
            email: EmailPolicy::Omit,
            synthetic_email_domain: String::new(),
        }
    }
}

impl OidcClient {
    pub fn is_public(&self) -> bool {
        self.client_secret.is_empty()
    }
}

impl OidcSettings {
    /// The issuer as it appears in tokens and discovery (no trailing slash).
    pub fn issuer(&self, public_url: &str) -> String {
        let i = if self.issuer.is_empty() { public_url } else { &self.issuer };
        i.trim_end_matches('/').to_string()
    }

    pub fn client(&self, id: &str) -> Option<&OidcClient> {
        self.clients.iter().find(|c| c.client_id == id)
    }
}
