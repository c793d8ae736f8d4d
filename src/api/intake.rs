//! What a request must pass before any handler, so that one address cannot hold the
//! server's connections (docs/architecture.md, "Abuse controls and security"):
//!
//! - its connection's slot: at most `limits.connections_per_ip` open connections per
//!   client address ([`Connections`], counted when a connection opens); one past the cap
//!   is answered `429 rate_limited` and closed. The address is the socket peer's (an
//!   IPv6 one by its /64), since a connection is counted before any header is read; a
//!   peer in `server.trusted_proxies` is not counted at all — behind a proxy every
//!   connection comes from it, so the proxy limits connections per client
//!   (`config/nginx.example.conf`: `limit_conn`);
//! - forwarding headers we can read when they come from a trusted proxy (else `400
//!   invalid_request`, never the proxy's own address: see [`crate::net`]);
//! - a deadline on its body: a WeChat callback's must arrive within
//!   [`CALLBACK_BODY_DEADLINE`] (inside WeChat's 5 s), any other within [`BODY_DEADLINE`];
//!   past it the answer is `408` and the connection is closed. (actix-web's own
//!   `client_request_timeout` covers only the head.)
//!
//! A request whose body was not read to its end (a refusal before the body, a handler
//! that needs none, a deadline) closes its connection after the answer: actix-web does
//! that for a `Content-Length` body, but would read a dropped chunked one to its end,
//! however slowly it comes, so the middleware keeps the body alive until the answer is
//! sent (see [`hold`]).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, BoxBody, EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::{ConnectionType, header};
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{HttpMessage, HttpResponse, ResponseError, web};
use futures_util::{Stream, StreamExt};

use super::AppState;
use crate::error::ApiError;
use crate::net::{ClientIpPolicy, limit_bucket};

/// The most a WeChat callback's body may take after its head: WeChat gives up at 5 s,
/// and the push still has to be processed and stored.
pub const CALLBACK_BODY_DEADLINE: Duration = Duration::from_secs(3);
/// The most any other body (JSON, a few hundred bytes) may take after its head.
pub const BODY_DEADLINE: Duration = Duration::from_secs(5);
/// The message of a refusal past `limits.connections_per_ip`.
pub const TOO_MANY_CONNECTIONS: &str = "too many connections from this address";

/// Open connections per client address, trusted proxies not counted.
pub struct Connections {
    cap: usize,
    proxies: ClientIpPolicy,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// A connection's place in [`Connections`], kept in its connection data for as long as
/// it is open: counted (given back when the connection closes), not counted (a trusted
/// proxy), or over the cap.
pub struct Slot {
    counted: Option<(Arc<Connections>, IpAddr)>,
    over: bool,
}

impl Connections {
    pub fn new(cap: usize, proxies: ClientIpPolicy) -> Arc<Self> {
        Arc::new(Self { cap, proxies, open: Mutex::new(HashMap::new()) })
    }

    /// The slot of a connection just opened by `peer`.
    pub fn open(self: &Arc<Self>, peer: IpAddr) -> Slot {
        if self.proxies.is_trusted(peer) {
            return Slot { counted: None, over: false };
        }
        let bucket = limit_bucket(peer);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(bucket).or_default();
        if *n >= self.cap {
            return Slot { counted: None, over: true };
        }
        *n += 1;
        Slot { counted: Some((self.clone(), bucket)), over: false }
    }

    /// Connections counted for `ip`'s address now.
    pub fn count(&self, ip: IpAddr) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).get(&limit_bucket(ip)).copied().unwrap_or(0)
    }
}

impl Slot {
    /// Whether the connection is past its address's cap.
    pub fn over(&self) -> bool {
        self.over
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((table, bucket)) = self.counted.take() {
            let mut open = table.open.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = open.get_mut(&bucket) {
                *n -= 1;
                if *n == 0 {
                    open.remove(&bucket);
                }
            }
        }
    }
}

/// `HttpServer::on_connect`: gives each new TCP connection its [`Slot`].
pub fn on_connect(table: &Arc<Connections>, conn: &dyn std::any::Any, data: &mut actix_web::dev::Extensions) {
    let peer = conn.downcast_ref::<actix_web::rt::net::TcpStream>().and_then(|s| s.peer_addr().ok());
    if let Some(peer) = peer {
        data.insert(table.open(peer.ip()));
    }
}

/// How far a request's body got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    Reading,
    Done,
    TimedOut,
}

/// The request's body, which ends in an error once `deadline` has passed before it did.
struct Deadline {
    body: Rc<RefCell<Payload>>,
    timer: Pin<Box<tokio::time::Sleep>>,
    progress: Rc<Cell<Progress>>,
}

impl Stream for Deadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.progress.get() != Progress::Reading {
            return Poll::Ready(None);
        }
        // What has arrived is read first: only a body still missing times out.
        match self.body.borrow_mut().poll_next_unpin(cx) {
            Poll::Ready(None) => self.progress.set(Progress::Done),
            Poll::Ready(Some(chunk)) => return Poll::Ready(Some(chunk)),
            Poll::Pending => {}
        }
        if self.progress.get() == Progress::Done {
            return Poll::Ready(None);
        }
        if self.timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.progress.set(Progress::TimedOut);
        let late = std::io::Error::new(std::io::ErrorKind::TimedOut, "the request body did not arrive in time");
        Poll::Ready(Some(Err(PayloadError::Io(late))))
    }
}

/// Whether the request has a body to wait for.
fn has_body(req: &ServiceRequest) -> bool {
    let length = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    length.is_some_and(|n| n > 0) || req.chunked().unwrap_or(false)
}

/// A request's body shared between its reader and the middleware.
type Body = Rc<RefCell<Payload>>;

/// An answer's body that keeps the request's unread body alive until the answer is sent,
/// so the connection closes after it instead of reading the rest of a body nobody wants
/// (see the module doc).
pub struct Held {
    answer: BoxBody,
    _request: Option<Body>,
}

impl MessageBody for Held {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.answer.size()
    }

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.answer).poll_next(cx)
    }
}

/// `res`, holding the request's `body`: if it is not all in, actix-web closes the
/// connection once `res` is sent (a body all in keeps the connection alive).
fn held<L>(res: ServiceResponse<impl MessageBody + 'static>, body: Body) -> ServiceResponse<EitherBody<L, Held>> {
    res.map_body(|_, answer| Held { answer: BoxBody::new(answer), _request: Some(body) }).map_into_right_body()
}

/// An early answer (the request goes no further), closing the connection when it leaves
/// a body unread.
fn refuse<L>(mut req: ServiceRequest, answer: HttpResponse) -> ServiceResponse<EitherBody<L, Held>> {
    let body = has_body(&req).then(|| Rc::new(RefCell::new(req.take_payload())));
    let res = req.into_response(answer);
    match body {
        Some(body) => held(res, body),
        None => res.map_body(|_, answer| Held { answer, _request: None }).map_into_right_body(),
    }
}

/// The middleware (innermost: the request span, metrics and security headers see its answers).
pub async fn guard(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody, Held>>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return next.call(req).await.map(ServiceResponse::map_into_left_body);
    };
    if req.conn_data::<Slot>().is_some_and(Slot::over) {
        state.metrics.limit_hit(crate::metrics::labels::LimitKind::ConnectionsPerIp);
        let mut answer =
            ApiError::RateLimited { what: TOO_MANY_CONNECTIONS.into(), retry_after_secs: 5 }.error_response();
        answer.head_mut().set_connection_type(ConnectionType::Close);
        return Ok(refuse(req, answer));
    }
    if let Err(e) = super::client_ip(req.request(), &state.ip_policy) {
        return Ok(refuse(req, ApiError::InvalidRequest(e.to_string()).error_response()));
    }
    if !has_body(&req) {
        return next.call(req).await.map(ServiceResponse::map_into_left_body);
    }
    let limit = if req.path().starts_with("/wechat/") { CALLBACK_BODY_DEADLINE } else { BODY_DEADLINE };
    let body: Body = Rc::new(RefCell::new(req.take_payload()));
    let progress = Rc::new(Cell::new(Progress::Reading));
    let timer = Box::pin(tokio::time::sleep(limit));
    let deadline = Deadline { body: body.clone(), timer, progress: progress.clone() };
    req.set_payload(Payload::Stream { payload: Box::pin(deadline) });
    let res = next.call(req).await?;
    Ok(match progress.get() {
        Progress::Done => res.map_into_left_body(),
        Progress::Reading => held(res, body),
        Progress::TimedOut => {
            let late = HttpResponse::RequestTimeout().json(serde_json::json!({
                "error": "request_timeout",
                "message": format!("the request body did not arrive within {} s", limit.as_secs()),
            }));
            held(res.into_response(late), body)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn connections_are_counted_per_address_until_they_close() {
        let table = Connections::new(2, ClientIpPolicy::new(&["10.0.0.0/8".into()]));
        let (a, b) = (table.open(ip("192.0.2.1")), table.open(ip("192.0.2.1")));
        assert!(!a.over() && !b.over());
        let third = table.open(ip("192.0.2.1"));
        assert!(third.over(), "past the cap");
        assert!(!table.open(ip("192.0.2.2")).over(), "another address");
        assert_eq!(table.count(ip("192.0.2.1")), 2, "a refused one takes no place");
        drop((a, third));
        assert_eq!(table.count(ip("192.0.2.1")), 1);
        assert!(!table.open(ip("192.0.2.1")).over(), "a closed one gives its place back");
        drop(b);
        assert!(table.open.lock().expect("lock").is_empty(), "no empty entries left behind");
    }

    #[test]
    fn an_ipv6_64_is_one_address_and_trusted_proxies_are_not_counted() {
        let table = Connections::new(1, ClientIpPolicy::new(&["10.0.0.0/8".into()]));
        let _one = table.open(ip("2001:db8:1:2::1"));
        assert!(table.open(ip("2001:db8:1:2:ffff::9")).over());
        assert!(!table.open(ip("2001:db8:1:3::1")).over());
        let proxied: Vec<Slot> = (0..10).map(|_| table.open(ip("10.1.2.3"))).collect();
        assert!(proxied.iter().all(|s| !s.over()));
        assert_eq!(table.count(ip("10.1.2.3")), 0);
    }
}
