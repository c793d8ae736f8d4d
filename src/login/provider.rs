//! What the login flow does for an attempt of the OpenID Connect provider (a poll id of
//! [`PollKind::Provider`]): where a direct attempt hands out a token, it hands out a
//! single-use continue URL bound to the user, and the browser goes there (the provider,
//! `crate::oidc`, turns it into a session and an authorization code). A token never
//! reaches the page of a provider attempt.

use super::{LoginService, LoginStatus};
use crate::engine::{Phase, UserRef};
use crate::ids::{PollId, PollKind};
use crate::metrics::labels::LoginHow;
use crate::store::oidc::{Authn, OidcStore};

/// The provider's side of the login flow.
#[derive(Clone)]
pub struct ProviderLink {
    pub store: OidcStore,
    /// How long a continue URL may wait for the browser (the code's TTL).
    pub continue_ttl_secs: u64,
    /// `<public_url>/oidc/continue/`.
    pub continue_base: String,
}

impl LoginService {
    /// Links the provider: its attempts answer `reg` with a redirect.
    pub fn with_provider(mut self, link: ProviderLink) -> Self {
        self.provider = Some(link);
        self
    }

    /// The request limits (the provider's token endpoint counts its failures there).
    pub fn limits(&self) -> &crate::limits::Limits {
        &self.limits
    }

    /// The revoked tokens (the provider revokes what a replayed code was exchanged for).
    pub fn revocations(&self) -> &crate::token::Revocations {
        &self.revocations
    }

    /// The provider's records, when it is on.
    pub fn provider_store(&self) -> Option<&OidcStore> {
        self.provider.as_ref().map(|p| &p.store)
    }

    /// The `reg` answer of a provider attempt: a continue URL, or `expired` when there
    /// is no provider request for it (the provider is off, or its record is gone).
    pub(super) async fn continue_answer(&self, poll: &PollId, user: &UserRef, how: LoginHow) -> Option<LoginStatus> {
        if poll.kind() != PollKind::Provider {
            return None;
        }
        let expired =
            LoginStatus { phase: Phase::Expired, expires_in: None, login: None, redirect: None, reason: None };
        let Some(link) = &self.provider else {
            return Some(expired);
        };
        let now = crate::wall::unix_secs() as i64;
        let amr = match how {
            LoginHow::Scan => "wechat",
            LoginHow::Bind => "wechat,sms",
        };
        let authn = Authn { user_id: user.id.clone(), amr: amr.into(), auth_time: now };
        match link.store.continue_request(poll, &authn, now + link.continue_ttl_secs as i64).await {
            Ok(Some(id)) => Some(LoginStatus {
                phase: Phase::Reg,
                expires_in: None,
                login: None,
                redirect: Some(format!("{}{id}", link.continue_base)),
                reason: None,
            }),
            Ok(None) => Some(expired),
            Err(e) => {
                // The attempt is consumed: the person starts again (nothing half-made).
                tracing::error!(error = %e, "provider login not recorded");
                Some(expired)
            }
        }
    }

    /// Whether a provider access token's session was ended (logout) or is unknown.
    pub(super) async fn provider_session_over(&self, sid: &str) -> bool {
        match &self.provider {
            // Fails closed: a database that cannot answer ends the token's use.
            Some(link) => link.store.session_over(sid, crate::wall::unix_secs() as i64).await.unwrap_or(true),
            None => true,
        }
    }
}
