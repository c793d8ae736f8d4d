//! The OpenID Connect provider (docs/api.md, "OpenID Connect provider"): any application
//! that speaks OIDC logs its users in by WeChat scan, and never sees a poll key or a
//! secret of ours.
//!
//! Around the login engine, not inside it: the authorize request makes an attempt whose
//! poll id says "provider" ([`crate::ids::PollKind`]), so where a direct attempt hands
//! out a token it hands out a single-use continue URL ([`crate::login::ProviderLink`]);
//! that URL sets the session cookie and sends the browser back to the client with a
//! code, which the client exchanges server-side ([`token`]). Every record is in the SQL
//! database ([`crate::store::oidc`]), so every node of a cluster serves every step.
//!
//! - [`authorize`]: the authorize and continue endpoints, single sign-on;
//! - [`token`]: the token endpoint (codes with PKCE, refresh rotation) and revocation;
//! - [`session`]: userinfo and RP-initiated logout;
//! - [`discovery`]: the provider's metadata;
//! - [`claims`]: what an ID token and userinfo say, per scope.

pub mod authorize;
mod claims;
mod client_auth;
pub mod discovery;
pub mod session;
pub mod token;

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};

use crate::config::{OidcClient, OidcSettings, Settings};
use crate::login::LoginService;
use crate::metrics::Metrics;
use crate::store::oidc::OidcStore;

/// The scopes a client may ask for.
pub const SCOPES: &[&str] = &["openid", "profile", "phone", "email", "offline_access"];

/// The session cookie's name.
pub const COOKIE: &str = "scanlogin_session";

/// Expired records are deleted this long after they end (a replayed code is still
/// recognised as one, and its tokens revoked, for that long).
const SWEEP_GRACE_SECS: i64 = 3600;

/// The provider: settings, records, and the login service it builds on.
pub struct Provider {
    pub settings: OidcSettings,
    /// `iss` of every token and of discovery.
    pub issuer: String,
    /// `server.public_url` without a trailing slash.
    pub public_url: String,
    /// Cookies carry `Secure` when the public address is https.
    pub secure_cookie: bool,
    pub sandbox: bool,
    pub store: OidcStore,
    pub login: Arc<LoginService>,
    pub metrics: Metrics,
}

impl Provider {
    pub fn new(settings: &Settings, login: Arc<LoginService>, store: OidcStore, metrics: Metrics) -> Self {
        let public_url = settings.server.public_url.trim_end_matches('/').to_string();
        let clients: Vec<&str> = settings.oidc.clients.iter().map(|c| c.client_id.as_str()).collect();
        metrics.preset_oidc(&clients);
        let sweeper = store.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(600));
            loop {
                tick.tick().await;
                if let Err(e) = sweeper.sweep(crate::wall::unix_secs() as i64, SWEEP_GRACE_SECS).await {
                    tracing::warn!(error = %e, "expired provider records not swept");
                }
            }
        });
        Self {
            settings: settings.oidc.clone(),
            issuer: settings.oidc.issuer(&settings.server.public_url),
            secure_cookie: public_url.starts_with("https://"),
            public_url,
            sandbox: settings.wechat.sandbox,
            store,
            login,
            metrics,
        }
    }

    pub fn client(&self, id: &str) -> Option<&OidcClient> {
        self.settings.client(id)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.public_url)
    }
}

/// Mounts the provider's endpoints (only when `oidc.enabled`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/.well-known/openid-configuration", web::get().to(discovery::configuration))
        .service(
            web::resource("/oidc/authorize")
                .route(web::get().to(authorize::authorize_get))
                .route(web::post().to(authorize::authorize_post)),
        )
        .route("/oidc/continue/{id}", web::get().to(authorize::continue_login))
        .route("/oidc/token", web::post().to(token::token))
        .route("/oidc/revoke", web::post().to(token::revoke))
        .service(
            web::resource("/oidc/userinfo")
                .route(web::get().to(session::userinfo))
                .route(web::post().to(session::userinfo)),
        )
        .service(
            web::resource("/oidc/logout")
                .route(web::get().to(session::logout_get))
                .route(web::post().to(session::logout_post)),
        );
}

/// An error page that never redirects (a bad client or redirect URI, a used link).
fn error_page(status: StatusCode, text: &str) -> HttpResponse {
    let mut res = crate::pages::message_page(status, "Sign-in error", text);
    res.headers_mut().insert(actix_web::http::header::CACHE_CONTROL, "no-store".parse().expect("a header value"));
    res
}

/// A query or form parameter, bounded: anything longer is refused by the caller.
fn param<'a>(p: &'a std::collections::HashMap<String, String>, name: &str) -> Option<&'a str> {
    p.get(name).map(String::as_str).filter(|v| !v.is_empty())
}

/// The longest value of any parameter we read.
const PARAM_MAX: usize = 2048;

/// The parameters of a query string or form body; `None` when one repeats or is too
/// long (RFC 6749 §3.1: parameters must not be repeated).
fn params(encoded: &str) -> Option<std::collections::HashMap<String, String>> {
    let mut out = std::collections::HashMap::new();
    for (k, v) in url::form_urlencoded::parse(encoded.as_bytes()) {
        if v.len() > PARAM_MAX || k.len() > 64 || out.insert(k.into_owned(), v.into_owned()).is_some() {
            return None;
        }
    }
    Some(out)
}

/// Unix seconds now.
fn now() -> i64 {
    crate::wall::unix_secs() as i64
}
