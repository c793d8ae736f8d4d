//! The OpenID Connect provider: authorize requests, codes (issued, exchanged, refused
//! and why), tokens by grant, refresh-token reuse. The `client` label takes only
//! configured client ids (anything else is `other`): requests cannot add series.

use prometheus::{IntCounterVec, Registry};

use super::labels::{OidcAuthorize, OidcCode, OidcCodeRefusal, OidcGrant};
use super::metric_names::*;
use super::{Metrics, counter_vec};

pub(super) struct OidcMetrics {
    authorize: IntCounterVec,
    codes: IntCounterVec,
    refused: IntCounterVec,
    tokens: IntCounterVec,
    reuse: IntCounterVec,
    clients: std::sync::RwLock<Vec<String>>,
}

impl OidcMetrics {
    pub(super) fn new(r: &Registry) -> Self {
        Self {
            authorize: counter_vec(r, OIDC_AUTHORIZE, "Provider authorize requests by outcome", &["client", "outcome"]),
            codes: counter_vec(r, OIDC_CODES, "Provider authorization codes by outcome", &["client", "outcome"]),
            refused: counter_vec(
                r,
                OIDC_CODES_REFUSED,
                "Provider codes refused at the token endpoint, by reason",
                &["client", "reason"],
            ),
            tokens: counter_vec(r, OIDC_TOKENS, "Provider token responses by grant", &["client", "grant"]),
            reuse: counter_vec(r, OIDC_REFRESH_REUSE, "Refresh tokens used twice (their family revoked)", &["client"]),
            clients: std::sync::RwLock::default(),
        }
    }

    fn client<'a>(&self, id: &'a str) -> &'a str {
        let known = self.clients.read().unwrap_or_else(|e| e.into_inner());
        if known.iter().any(|c| c == id) { id } else { "other" }
    }
}

impl Metrics {
    /// The configured clients: every series at 0.
    pub fn preset_oidc(&self, clients: &[&str]) {
        let m = &self.0.oidc;
        *m.clients.write().unwrap_or_else(|e| e.into_inner()) = clients.iter().map(|c| c.to_string()).collect();
        for c in clients.iter().copied().chain(["other"]) {
            for o in OidcAuthorize::ALL {
                m.authorize.with_label_values(&[c, o.label()]);
            }
            for o in OidcCode::ALL {
                m.codes.with_label_values(&[c, o.label()]);
            }
            for r in OidcCodeRefusal::ALL {
                m.refused.with_label_values(&[c, r.label()]);
            }
            for g in OidcGrant::ALL {
                m.tokens.with_label_values(&[c, g.label()]);
            }
            m.reuse.with_label_values(&[c]);
        }
    }

    pub fn oidc_authorize(&self, client: &str, outcome: OidcAuthorize) {
        let m = &self.0.oidc;
        m.authorize.with_label_values(&[m.client(client), outcome.label()]).inc();
    }

    pub fn oidc_code(&self, client: &str, outcome: OidcCode) {
        let m = &self.0.oidc;
        m.codes.with_label_values(&[m.client(client), outcome.label()]).inc();
    }

    pub fn oidc_code_refused(&self, client: &str, reason: OidcCodeRefusal) {
        let m = &self.0.oidc;
        self.oidc_code(client, OidcCode::Refused);
        m.refused.with_label_values(&[m.client(client), reason.label()]).inc();
    }

    pub fn oidc_tokens(&self, client: &str, grant: OidcGrant) {
        let m = &self.0.oidc;
        m.tokens.with_label_values(&[m.client(client), grant.label()]).inc();
    }

    pub fn oidc_refresh_reuse(&self, client: &str) {
        let m = &self.0.oidc;
        m.reuse.with_label_values(&[m.client(client)]).inc();
    }
}
