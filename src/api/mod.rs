//! The HTTP API of docs/api.md: routes, shared state, body and query parsing, and the
//! middleware every answer passes (metrics, security headers).

pub mod account;
pub mod answers;
pub mod events;
pub mod intake;
pub mod keys;
pub mod login;
pub mod openapi;
pub mod ops;
pub mod origin;
pub mod wechat;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::config::Settings;
use crate::error::ApiError;
use crate::login::LoginService;
use crate::metrics::Metrics;
use crate::net::ClientIpPolicy;

/// JSON request bodies are small; anything bigger is refused before parsing.
pub const JSON_LIMIT: usize = 4 * 1024;
/// WeChat callbacks (docs/api.md: over 64 KiB is 413).
pub const CALLBACK_LIMIT: usize = 64 * 1024;

/// What every handler can reach.
pub struct AppState {
    pub login: Arc<LoginService>,
    pub settings: Arc<Settings>,
    pub metrics: Metrics,
    pub ip_policy: ClientIpPolicy,
    pub origins: origin::OriginPolicy,
    /// This node's id (`cluster.node_id`, or host name and pid), in every request span.
    pub node: String,
}

/// Reads the body, refusing it as soon as it passes `limit` bytes.
pub async fn read_body(mut payload: web::Payload, limit: usize) -> Result<web::Bytes, ApiError> {
    let mut buf = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| match e {
            actix_web::error::PayloadError::Overflow => ApiError::PayloadTooLarge,
            other => ApiError::InvalidRequest(format!("could not read the body: {other}")),
        })?;
        if buf.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Parses a JSON object body (unknown fields ignored); an empty body is `{}` when `T` allows it.
pub async fn json_body<T: DeserializeOwned>(payload: web::Payload) -> Result<T, ApiError> {
    let bytes = read_body(payload, JSON_LIMIT).await?;
    let text = if bytes.iter().all(u8::is_ascii_whitespace) { &b"{}"[..] } else { &bytes[..] };
    let bad = |e: serde_json::Error| ApiError::InvalidRequest(format!("bad JSON: {e}"));
    let value: serde_json::Value = serde_json::from_slice(text).map_err(bad)?;
    // serde would read a struct from an array too (`[null, null]`): the contract says object.
    if !value.is_object() {
        return Err(ApiError::InvalidRequest("the body must be a JSON object".into()));
    }
    serde_json::from_value(value).map_err(bad)
}

/// Parses the query string into `T`.
pub fn query<T: DeserializeOwned>(req: &HttpRequest) -> Result<T, ApiError> {
    web::Query::<T>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| ApiError::InvalidRequest(format!("bad query: {e}")))
}

/// All lines of header `name`, joined by commas (RFC 9110: the same as one line).
fn joined(req: &HttpRequest, name: header::HeaderName) -> Option<Vec<u8>> {
    let mut lines = req.headers().get_all(name).peekable();
    lines.peek()?;
    Some(lines.map(HeaderValue::as_bytes).collect::<Vec<_>>().join(&b","[..]))
}

/// The socket peer's address (loopback for a request without one, as in unit tests).
fn peer(req: &HttpRequest) -> IpAddr {
    req.peer_addr().map(|a| a.ip()).unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

/// The client's address: the socket peer, or the forwarded client when the peer is a
/// trusted proxy (`X-Forwarded-For`, else `Forwarded`; see [`crate::net`]); an error
/// when that header cannot be read ([`intake`] refuses such a request).
pub fn client_ip(req: &HttpRequest, policy: &ClientIpPolicy) -> Result<IpAddr, crate::net::Unreadable> {
    let (xff, fwd) = (joined(req, header::X_FORWARDED_FOR), joined(req, header::FORWARDED));
    let forwarding = crate::net::Forwarding { x_forwarded_for: xff.as_deref(), forwarded: fwd.as_deref() };
    policy.resolve(peer(req), forwarding)
}

/// Who is asking: [`client_ip`] (the peer for an unreadable header, which never reaches
/// a handler), and the user agent.
pub fn client(req: &HttpRequest, state: &AppState) -> crate::net::ClientInfo {
    let ip = client_ip(req, &state.ip_policy).unwrap_or_else(|_| peer(req));
    let user_agent =
        req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("").chars().take(256).collect();
    crate::net::ClientInfo { ip, user_agent }
}

/// The bearer token of `Authorization`, or 401.
pub fn bearer(req: &HttpRequest) -> Result<&str, ApiError> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::Unauthorized)
}

/// The request's id: the caller's `X-Request-Id` when it is a sane token (a proxy's id
/// carries through), else a fresh one. Echoed in the answer and in every log line of
/// the request.
fn request_id(req: &ServiceRequest) -> String {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| (1..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
        .map(str::to_string)
        .unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()))
}

/// Runs every request inside a `request` span (id, node, method, path), counts it by
/// route pattern (never the raw path: no ids in labels) and adds the headers every
/// answer carries.
/// The path as logged: a confirmation ticket in it is a capability (docs/api.md "Confirm on
/// the phone"), so it never reaches a log line.
fn logged_path(path: &str) -> &str {
    if path.starts_with("/confirm/") { "/confirm/…" } else { path }
}

pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    use tracing::Instrument as _;
    let start = Instant::now();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let metrics = state.as_ref().map(|s| s.metrics.clone());
    let node = state.as_ref().map(|s| s.node.clone()).unwrap_or_default();
    let id = request_id(&req);
    let path = logged_path(req.path());
    let span = tracing::info_span!("request", id = %id, node = %node, method = %req.method(), path = %path);
    let closing = |s: &Option<web::Data<AppState>>| s.as_ref().is_some_and(|s| s.login.is_closing());
    let mut res = next.call(req).instrument(span).await?;
    // Draining (SIGTERM): no connection outlives its current answer, so a proxy sends its
    // next request to another node (this one no longer accepts), and the stop never has
    // to cut a request on a kept-alive connection — which the proxy would then retry
    // elsewhere as if it had not been done.
    if closing(&state) {
        res.response_mut().head_mut().set_connection_type(actix_web::http::ConnectionType::Close);
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(header::HeaderName::from_static("x-request-id"), v);
    }
    let route = res.request().match_pattern().unwrap_or_else(|| "unmatched".into());
    if let Some(m) = metrics {
        m.http(&route, res.status().as_u16(), start.elapsed().as_secs_f64());
    }
    let h = res.headers_mut();
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if !h.contains_key(header::X_FRAME_OPTIONS) {
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    // Every API answer may carry a token or a poll key: no cache keeps one.
    if route.starts_with("/api/") && !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    Ok(res)
}

pub async fn not_found() -> HttpResponse {
    HttpResponse::NotFound().json(serde_json::json!({"error": "not_found", "message": "no such route"}))
}

/// A wrong method on a known API route: 405 with `Allow`, in the error shape.
fn method_not_allowed(allow: Method) -> HttpResponse {
    HttpResponse::MethodNotAllowed().insert_header((header::ALLOW, allow.as_str())).json(serde_json::json!({
        "error": "method_not_allowed",
        "message": format!("this route answers {allow} only"),
    }))
}

/// One API route answering `method` with `handler`, and any other method with 405.
pub(crate) fn endpoint<F, Args>(path: &str, method: Method, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    let allow = method.clone();
    web::resource(path)
        .route(web::method(method).to(handler))
        .default_service(web::to(move || std::future::ready(method_not_allowed(allow.clone()))))
}

/// Mounts the API, the WeChat callback and the operations endpoints.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            .wrap(actix_web::middleware::from_fn(origin::guard))
            .service(endpoint("/login/qrcode", Method::POST, login::create_qr))
            .service(endpoint("/login/status", Method::GET, login::status))
            .service(endpoint("/login/events", Method::GET, events::events))
            .service(endpoint("/login/sms-code", Method::POST, login::sms_code))
            .service(endpoint("/login/bind-phone", Method::POST, login::bind_phone))
            .service(endpoint("/me", Method::GET, account::me))
            .service(endpoint("/logout", Method::POST, account::logout))
            .service(endpoint("/openapi.json", Method::GET, openapi::openapi_json)),
    )
    .route("/.well-known/jwks.json", web::get().to(keys::jwks))
    .route("/healthz", web::get().to(ops::healthz))
    .route("/readyz", web::get().to(ops::readyz))
    .route("/metrics", web::get().to(ops::metrics))
    // One resource for both methods, after the fixed paths: a pattern with a segment is
    // matched by a regex, run for every request that reaches it (two routes of the same
    // path ran it twice per push). Another method falls through to the 404 of old.
    .service(
        web::resource("/wechat/{appid}/callback")
            .route(web::get().to(wechat::verify_url))
            .route(web::post().to(wechat::callback))
            .default_service(web::to(not_found)),
    );
}

pub fn default_service() -> actix_web::Route {
    web::route().to(not_found)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_confirm_ticket_never_reaches_the_request_log() {
        let ticket = crate::ids::ConfirmTicket::generate();
        let logged = super::logged_path(&format!("/confirm/{}", ticket.as_str())).to_string();
        assert!(!logged.contains(ticket.as_str()), "{logged}");
        assert_eq!(super::logged_path("/api/v1/login/status"), "/api/v1/login/status");
    }
}
