//! The admin API for operators (docs/api.md "Admin API"): see, end and revoke, behind
//! scoped bearer keys, with every change and every refusal written to an audit table.
//!
//! - Its own listener (`admin.bind`), never the public one: [`listener_guard`] answers 404
//!   for `/admin/…` on every other port, and for everything else on the admin port.
//! - [`auth`]: keys (SHA-256 in config, constant-time), scopes, rate limits.
//! - [`attempts`], [`users`], [`audit`]: the routes; [`openapi`]: their document.
//! - Answers use the API's error shape (`{"error", "message"}`) with its codes.

pub mod attempts;
pub mod audit;
pub mod auth;
pub mod openapi;
pub mod users;

use std::net::{IpAddr, SocketAddr};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde_json::json;

use self::auth::{Caller, Keys, Refusal};
use crate::config::{Scope, Settings};
use crate::engine::LoginsHandle;
use crate::metrics::Metrics;
use crate::metrics::labels::{AdminAction, AdminOutcome};
use crate::net::ClientIpPolicy;
use crate::store::Users;
use crate::store::admin::{AdminStore, AuditRow};

/// What an admin call answers instead of its result.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("missing or unknown admin key")]
    Unauthorized,
    #[error("this key lacks the scope {0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{0}")]
    Invalid(String),
    #[error("too many admin calls")]
    RateLimited { retry_after_secs: u64 },
    #[error("the service cannot answer right now, retry shortly")]
    Overloaded,
    /// The cause goes to the log, never to the caller.
    #[error("internal error")]
    Internal(String),
}

impl AdminError {
    pub fn code(&self) -> &'static str {
        match self {
            AdminError::Unauthorized => "unauthorized",
            AdminError::Forbidden(_) => "forbidden",
            AdminError::NotFound(_) => "not_found",
            AdminError::Invalid(_) => "invalid_request",
            AdminError::RateLimited { .. } => "rate_limited",
            AdminError::Overloaded => "overloaded",
            AdminError::Internal(_) => "internal",
        }
    }

    /// How the call went, for the metric and the audit.
    pub fn outcome(&self) -> AdminOutcome {
        match self {
            AdminError::Unauthorized => AdminOutcome::Unauthorized,
            AdminError::Forbidden(_) => AdminOutcome::Forbidden,
            AdminError::NotFound(_) => AdminOutcome::NotFound,
            AdminError::Invalid(_) => AdminOutcome::Invalid,
            AdminError::RateLimited { .. } => AdminOutcome::RateLimited,
            AdminError::Overloaded | AdminError::Internal(_) => AdminOutcome::Error,
        }
    }
}

impl From<crate::engine::EngineError> for AdminError {
    fn from(_: crate::engine::EngineError) -> Self {
        AdminError::Overloaded
    }
}

impl From<sqlx::Error> for AdminError {
    fn from(e: sqlx::Error) -> Self {
        AdminError::Internal(format!("database: {e}"))
    }
}

impl ResponseError for AdminError {
    fn status_code(&self) -> StatusCode {
        match self {
            AdminError::Unauthorized => StatusCode::UNAUTHORIZED,
            AdminError::Forbidden(_) => StatusCode::FORBIDDEN,
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::Invalid(_) => StatusCode::BAD_REQUEST,
            AdminError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            AdminError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            AdminError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let AdminError::Internal(cause) = self {
            tracing::error!(%cause, "admin: internal error");
        }
        let mut resp = HttpResponse::build(self.status_code());
        resp.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
        match self {
            AdminError::RateLimited { retry_after_secs } => {
                resp.insert_header((header::RETRY_AFTER, (*retry_after_secs).max(1).to_string()));
            }
            AdminError::Overloaded => {
                resp.insert_header((header::RETRY_AFTER, "1"));
            }
            AdminError::Unauthorized => {
                resp.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            }
            _ => {}
        }
        resp.json(json!({"error": self.code(), "message": self.to_string()}))
    }
}

/// Everything the admin routes reach; present only with `admin.bind` set.
pub struct Admin {
    keys: Keys,
    pub(crate) store: AdminStore,
    pub(crate) engine: LoginsHandle,
    pub(crate) users: Users,
    pub(crate) revocations: crate::token::Revocations,
    metrics: Metrics,
    ip_policy: ClientIpPolicy,
    /// This node's name (where a single node's attempts were made).
    pub(crate) node: String,
    /// The configured apps: (name, app id), to name an openid's app.
    pub(crate) apps: Vec<(String, String)>,
}

/// What the admin API is built from.
pub struct AdminParts {
    pub engine: LoginsHandle,
    pub users: Users,
    pub revocations: crate::token::Revocations,
    pub metrics: Metrics,
    pub node: String,
}

impl Admin {
    pub fn new(settings: &Settings, parts: AdminParts) -> Self {
        Self {
            keys: Keys::new(&settings.admin),
            store: AdminStore::new(parts.users.db().clone()),
            engine: parts.engine,
            users: parts.users,
            revocations: parts.revocations,
            metrics: parts.metrics,
            ip_policy: ClientIpPolicy::new(&settings.server.trusted_proxies),
            node: parts.node,
            apps: settings.wechat.apps.iter().map(|a| (a.name.clone(), a.app_id.clone())).collect(),
        }
    }

    fn address(&self, req: &HttpRequest) -> IpAddr {
        crate::api::client_ip(req, &self.ip_policy)
            .unwrap_or_else(|_| req.peer_addr().map_or(IpAddr::from([127, 0, 0, 1]), |a| a.ip()))
    }

    /// Checks the key of `req` for `action`, which needs `scope`. A refused call is
    /// audited (unless the address is past its refusals' limit) and counted.
    pub async fn admit(
        &self,
        req: &HttpRequest,
        action: AdminAction,
        scope: Scope,
        target: Option<&str>,
    ) -> Result<Caller, AdminError> {
        let bearer = crate::api::bearer(req).ok();
        let ip = self.address(req);
        let (caller, err) = match self.keys.check(bearer, ip, Some(scope)) {
            Ok(c) => return Ok(c),
            Err(Refusal::Unknown) => (None, AdminError::Unauthorized),
            Err(Refusal::Scope(c)) => (Some(c), AdminError::Forbidden(scope.name())),
            Err(Refusal::Limited(c, s)) => (c, AdminError::RateLimited { retry_after_secs: s }),
        };
        // A flood of refusals from one address stops writing rows past its limit.
        let audited = !matches!(err, AdminError::RateLimited { .. }) || caller.is_some();
        if audited {
            self.record(caller.as_ref(), action, target, ip, err.outcome()).await;
        } else {
            self.metrics.admin_request(action, err.outcome());
        }
        Err(err)
    }

    /// Appends the audit row of a call and counts it. A row that cannot be written is
    /// logged (the call's effect stands; the log line keeps its trace).
    pub async fn record(
        &self,
        caller: Option<&Caller>,
        action: AdminAction,
        target: Option<&str>,
        ip: IpAddr,
        outcome: AdminOutcome,
    ) {
        self.metrics.admin_request(action, outcome);
        let row = AuditRow {
            id: String::new(),
            at_ms: crate::wall::unix_ms() as i64,
            key_name: caller.map(|c| c.name.clone()),
            action: action.label().to_string(),
            target: target.map(|t| t.chars().take(64).collect()),
            address: ip.to_string(),
            outcome: outcome.label().to_string(),
        };
        if let Err(e) = self.store.append(row).await {
            tracing::error!(error = %e, action = action.label(), outcome = outcome.label(), key = caller.map(|c| c.name.as_str()), "admin: audit row not written");
        }
    }

    /// Counts a read (reads change nothing: they are not audited).
    pub fn count(&self, action: AdminAction, outcome: AdminOutcome) {
        self.metrics.admin_request(action, outcome);
    }

    /// Records how a changing call by `caller` ended, and passes its result on.
    pub async fn changed<T>(
        &self,
        req: &HttpRequest,
        caller: &Caller,
        action: AdminAction,
        target: &str,
        r: Result<T, AdminError>,
    ) -> Result<T, AdminError> {
        let outcome = r.as_ref().map_or_else(AdminError::outcome, |_| AdminOutcome::Ok);
        self.record(Some(caller), action, Some(target), self.address(req), outcome).await;
        r
    }

    /// Counts how a read ended, and passes its result on.
    pub fn read<T>(&self, action: AdminAction, r: Result<T, AdminError>) -> Result<T, AdminError> {
        self.count(action, r.as_ref().map_or_else(AdminError::outcome, |_| AdminOutcome::Ok));
        r
    }
}

/// With `admin.bind` set, its listener serves `/admin/…` and nothing else, and no other
/// listener serves `/admin/…`; without it, `/admin/…` is unknown everywhere.
pub async fn listener_guard(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let admin_addr: Option<SocketAddr> =
        req.app_data::<web::Data<crate::api::AppState>>().and_then(|s| s.settings.admin.bind.parse().ok());
    let on_admin_port = admin_addr.is_some_and(|a| req.app_config().local_addr() == a);
    let admin_path = req.path() == "/admin" || req.path().starts_with("/admin/");
    if on_admin_port != admin_path {
        let (req, _) = req.into_parts();
        return Ok(ServiceResponse::new(req, crate::api::not_found().await).map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}

/// Mounts the admin routes (only the admin listener reaches them, see [`listener_guard`]).
pub fn configure(cfg: &mut web::ServiceConfig) {
    use crate::api::endpoint;
    use actix_web::http::Method;
    // A wrong method is 405 with `Allow`, in the error shape, as on the public API.
    cfg.service(
        web::scope("/admin/v1")
            .service(endpoint("/attempts", Method::GET, attempts::list))
            .service(endpoint("/attempts/{id}", Method::GET, attempts::inspect))
            .service(endpoint("/attempts/{id}/end", Method::POST, attempts::end))
            .service(endpoint("/users/{id}", Method::GET, users::inspect))
            .service(endpoint("/users/{id}/logout", Method::POST, users::logout))
            .service(endpoint("/audit", Method::GET, audit::list))
            .service(endpoint("/openapi.json", Method::GET, openapi::openapi_json)),
    );
}

/// A query parameter's `limit`: 1..=500, default 100 when absent (an empty one is no
/// number: refused, as the document says).
pub fn limit(raw: Option<&str>) -> Result<usize, AdminError> {
    match raw {
        None => Ok(100),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=crate::engine::admin::MAX_PAGE).contains(&n) => Ok(n),
            _ => Err(AdminError::Invalid(format!("limit must be 1..={}", crate::engine::admin::MAX_PAGE))),
        },
    }
}

/// Parses the query string into `T`.
pub fn query<T: serde::de::DeserializeOwned>(req: &HttpRequest) -> Result<T, AdminError> {
    web::Query::<T>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| AdminError::Invalid(format!("bad query: {e}")))
}

/// Seconds since the epoch as RFC 3339.
pub fn at(ms: u64) -> String {
    crate::store::rfc3339((ms / 1000) as i64)
}
