//! `GET /api/v1/login/events`: the status answers pushed as server-sent events.
//!
//! The login service's [`StatusEvents`] turned into `text/event-stream` frames: the
//! first event is the current state, then one per change; after a terminal answer
//! (`reg` with its token, or `expired`) the body ends and the connection closes. Between
//! events a `: ping` comment every `login.events_ping_secs` keeps proxies from closing an
//! idle connection. Whether a stream may be held at all is the service's policy
//! ([`crate::login::LoginService::events`]).

use std::convert::Infallible;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::{Stream, stream};
use serde::Deserialize;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::answers::StatusAnswer;
use super::login::poll_id;
use super::{AppState, client, query};
use crate::error::ApiError;
use crate::login::StatusEvents;

const PING: &[u8] = b": ping\n\n";

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// The poll key of `POST /api/v1/login/qrcode`.
    #[param(pattern = "^[A-Za-z0-9_-]{22,64}$", example = "nq2uTBv3JXbWQm5Pq1hkOM7o3bRzA8a4fH0lX2rS9dE")]
    pub uuid: String,
}

/// One event frame: `event: status` and the status JSON on one `data:` line.
fn frame(answer: &StatusAnswer) -> web::Bytes {
    let json = serde_json::to_string(answer).unwrap_or_else(|_| r#"{"status":1,"state":"expired"}"#.into());
    web::Bytes::from(format!("event: status\ndata: {json}\n\n"))
}

#[utoipa::path(
    get,
    path = "/api/v1/login/events",
    tag = "login",
    summary = "The login attempt's states as server-sent events",
    description = "`text/event-stream`: each event is `event: status` with `data:` a status body (one line), \
        the current state at once, then one event per change; the stream closes after a terminal answer \
        (`reg` with its token, or `expired`) or at shutdown (after the current state). `: ping` comments keep \
        it open. A token is handed out once across polls and streams. Counts as a held long poll.",
    params(EventsQuery),
    responses(
        (status = 200, description = "`event: status` events whose `data` is a status body", content_type = "text/event-stream", body = String,
            example = "event: status\ndata: {\"status\":2,\"state\":\"loop\",\"expires_in\":287}\n\n: ping\n\n"),
    )
)]
pub async fn events(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let q: EventsQuery = query(&req)?;
    let poll = poll_id(&q.uuid)?;
    let (first, events) = state.login.events(&poll, client(&req, &state)).await?;
    let period = Duration::from_secs(state.settings.login.events_ping_secs);
    let mut ping = tokio::time::interval_at(Instant::now() + period, period);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let feed = Feed { events, ping, first: Some(frame(&first.into())) };
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        // It may carry a token: no cache (a proxy's or the browser's) may keep it.
        .insert_header((header::CACHE_CONTROL, "no-store"))
        // nginx buffers proxied answers by default; this turns it off for this one.
        .insert_header(("x-accel-buffering", "no"))
        .streaming(feed.into_stream()))
}

/// One open stream: the statuses it tells and its heartbeat.
struct Feed {
    events: StatusEvents,
    ping: Interval,
    first: Option<web::Bytes>,
}

impl Feed {
    fn into_stream(self) -> impl Stream<Item = Result<web::Bytes, Infallible>> {
        stream::unfold(self, |mut feed| async move {
            let chunk = feed.step().await?;
            Some((Ok(chunk), feed))
        })
    }

    /// The next chunk to send; `None` ends the body. An error mid-stream ends it too: a
    /// client that reconnects (as `EventSource` does) gets a plain error answer.
    async fn step(&mut self) -> Option<web::Bytes> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        loop {
            if self.events.finished() {
                return None;
            }
            // Only the wait races the heartbeat: a claim in flight may carry the token.
            tokio::select! {
                r = self.events.changed() => r.ok()?,
                _ = self.ping.tick() => return Some(web::Bytes::from_static(PING)),
            }
            if let Some(status) = self.events.next().await.ok()? {
                return Some(frame(&status.into()));
            }
        }
    }
}
