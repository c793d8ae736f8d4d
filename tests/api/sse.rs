//! `GET /api/v1/login/events` over real HTTP: the stream read as a browser's
//! `EventSource` would, frame by frame, while the sandbox phone scans.

use std::pin::Pin;
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt};
use serde_json::Value;

use crate::client::{delivered, eventually, parts};
use crate::helpers::{TestApp, spawn_app, spawn_app_with};

/// The longest any single frame may take to arrive in these tests.
const FRAME_TIMEOUT: Duration = Duration::from_secs(5);

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<actix_web::web::Bytes>>>>;

/// An open event stream, split into frames (blank-line separated, as SSE defines).
struct Sse {
    body: Body,
    buf: String,
}

impl Sse {
    /// Opens the stream of `uuid`, checking the headers a stream must carry.
    async fn open(app: &TestApp, uuid: &str) -> Sse {
        let r = app.events(uuid).await;
        assert_eq!(r.status(), 200);
        let h = r.headers();
        assert_eq!(h["content-type"], "text/event-stream");
        assert_eq!(h["cache-control"], "no-store", "a stream may carry a token");
        assert_eq!(h["x-accel-buffering"], "no");
        Sse { body: Box::pin(r.bytes_stream()), buf: String::new() }
    }

    /// The next frame, or `None` when the server ended the stream.
    async fn frame(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.find("\n\n") {
                let frame = self.buf[..i].to_string();
                self.buf.drain(..i + 2);
                return Some(frame);
            }
            let chunk = tokio::time::timeout(FRAME_TIMEOUT, self.body.next()).await.expect("a frame in time");
            match chunk {
                Some(c) => self.buf.push_str(std::str::from_utf8(&c.expect("body chunk")).unwrap()),
                None => {
                    assert!(self.buf.is_empty(), "a partial frame at the end: {:?}", self.buf);
                    return None;
                }
            }
        }
    }

    /// The next `status` event's JSON, skipping `: ping` comments; `None` at the end.
    async fn status(&mut self) -> Option<Value> {
        loop {
            let frame = self.frame().await?;
            if frame == ": ping" {
                continue;
            }
            let data =
                frame.strip_prefix("event: status\ndata: ").unwrap_or_else(|| panic!("a status event: {frame:?}"));
            assert!(!data.contains('\n'), "one data line");
            return Some(serde_json::from_str(data).unwrap());
        }
    }
}

fn state(v: &Value) -> &str {
    v["state"].as_str().unwrap()
}

#[actix_web::test]
async fn the_state_comes_at_once_then_each_change_and_a_bind_ends_it_without_a_token() {
    let app = spawn_app().await;
    let (uuid, ticket) = app.new_login().await;
    let t0 = Instant::now();
    let mut sse = Sse::open(&app, &uuid).await;
    let first = sse.status().await.unwrap();
    assert!(t0.elapsed() < Duration::from_secs(1), "the current state is sent at once");
    assert_eq!((first["status"].as_u64(), state(&first)), (Some(2), "loop"));
    assert!(first["expires_in"].as_u64().unwrap() > 290);

    delivered(app.scan(&ticket, "o_sse_new", false).await);
    let ev = sse.status().await.unwrap();
    assert_eq!((ev["status"].as_u64(), state(&ev)), (Some(4), "not_reg"));

    // A code sent changes nothing the stream tells; the bind's answer carries the token.
    assert_eq!(app.sms_code(&uuid, "13800138001").await.0, 200);
    let code = app.last_code("13800138001").await;
    let (s, bound) = app.bind(&uuid, "13800138001", &code).await;
    assert_eq!(s, 200, "{bound}");
    assert!(bound["token"].is_string());
    let ev = sse.status().await.unwrap();
    assert_eq!(state(&ev), "expired", "{ev}");
    assert!(ev.get("token").is_none(), "the stream never repeats the bind's token");
    assert_eq!(sse.frame().await, None, "closed after the terminal answer");
}

#[actix_web::test]
async fn a_token_goes_to_exactly_one_of_a_stream_and_a_concurrent_poll() {
    let app = spawn_app().await;
    app.register("o_sse_known", "13800138002").await;
    let (uuid, ticket) = app.new_login().await;
    let mut sse = Sse::open(&app, &uuid).await;
    assert_eq!(state(&sse.status().await.unwrap()), "loop");

    let poll = app.status_wait(&uuid, 10);
    let scan = async {
        // The stream and the long poll are both held before the scan lands.
        app.until_held(2).await;
        delivered(app.scan(&ticket, "o_sse_known", true).await);
        sse.status().await.unwrap()
    };
    let ((s, polled), streamed) = tokio::join!(poll, scan);
    assert_eq!(s, 200);
    let answers = [&polled, &streamed];
    assert_eq!(answers.iter().filter(|a| a["token"].is_string()).count(), 1, "{polled} / {streamed}");
    assert_eq!(answers.iter().filter(|a| state(a) == "expired").count(), 1, "{polled} / {streamed}");
    if streamed["token"].is_string() {
        assert_eq!((streamed["status"].as_u64(), state(&streamed)), (Some(3), "reg"));
        assert_eq!(streamed["token_type"], "Bearer");
        let (me, _) = app.me(streamed["token"].as_str().unwrap()).await;
        assert_eq!(me, 200, "the streamed token works");
    }
    assert_eq!(sse.frame().await, None, "closed after the terminal answer");
    assert_eq!(state(&app.status(&uuid).await.1), "expired");
}

#[actix_web::test]
async fn an_unknown_uuid_is_one_expired_event_and_a_malformed_one_is_400_without_a_stream() {
    let app = spawn_app().await;
    let mut sse = Sse::open(&app, &"A".repeat(43)).await;
    assert_eq!(sse.status().await.unwrap(), serde_json::json!({"status": 1, "state": "expired"}));
    assert_eq!(sse.frame().await, None);

    for bad in ["short", &"A".repeat(65), "has space in it but is long enough"] {
        let r = app.events(bad).await;
        assert_eq!(r.headers()["content-type"], "application/json");
        let (s, b) = parts(r).await;
        assert_eq!((s, b["error"].as_str()), (400, Some("invalid_request")), "{bad}");
    }
    let (s, b) = parts(app.http.get(app.url("/api/v1/login/events")).send().await.unwrap()).await;
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_request")));
}

#[actix_web::test]
async fn an_idle_stream_gets_a_ping_every_configured_interval() {
    let app = spawn_app_with(|s| s.login.events_ping_secs = 1).await;
    let (uuid, _) = app.new_login().await;
    let mut sse = Sse::open(&app, &uuid).await;
    assert_eq!(state(&sse.status().await.unwrap()), "loop");
    let t0 = Instant::now();
    assert_eq!(sse.frame().await.as_deref(), Some(": ping"));
    assert_eq!(sse.frame().await.as_deref(), Some(": ping"));
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(1800) && took < Duration::from_secs(4), "{took:?}");
}

#[actix_web::test]
async fn streams_count_against_the_addresss_held_polls() {
    let app = spawn_app_with(|s| {
        s.limits.long_polls_per_ip = 2;
        s.login.events_ping_secs = 1;
    })
    .await;
    let (uuid, _) = app.new_login().await;
    let mut a = Sse::open(&app, &uuid).await;
    let b = Sse::open(&app, &uuid).await;
    a.status().await.unwrap();

    let r = app.events(&uuid).await;
    assert_eq!(r.headers()["retry-after"], "5");
    let (s, body) = parts(r).await;
    assert_eq!((s, body["error"].as_str()), (429, Some("rate_limited")), "{body}");
    // A long poll from the same address is answered at once instead of held.
    let t0 = Instant::now();
    assert_eq!(state(&app.status_wait(&uuid, 5).await.1), "loop");
    assert!(t0.elapsed() < Duration::from_secs(2));

    // A closed stream gives its slot back (the server notices at its next ping).
    drop(b);
    let what = "the slot of a closed stream comes back";
    eventually(what, Duration::from_secs(5), || async { (app.events(&uuid).await.status() == 200).then_some(()) })
        .await;
}

#[actix_web::test]
async fn the_server_wide_cap_refuses_a_stream_with_503() {
    let app = spawn_app_with(|s| s.limits.long_polls_max = 1).await;
    let (uuid, _) = app.new_login().await;
    let mut first = Sse::open(&app, &uuid).await;
    first.status().await.unwrap();
    let r = app.events(&uuid).await;
    assert_eq!(r.headers()["retry-after"], "1");
    let (s, body) = parts(r).await;
    assert_eq!((s, body["error"].as_str()), (503, Some("overloaded")), "{body}");
}

#[actix_web::test]
async fn a_graceful_shutdown_closes_the_stream_with_the_current_state() {
    let app = spawn_app().await;
    let (uuid, ticket) = app.new_login().await;
    let mut sse = Sse::open(&app, &uuid).await;
    assert_eq!(state(&sse.status().await.unwrap()), "loop");
    delivered(app.scan(&ticket, "o_sse_stop", false).await);
    assert_eq!(state(&sse.status().await.unwrap()), "not_reg");
    let t0 = Instant::now();
    app.stop();
    let last = sse.status().await.unwrap();
    assert_eq!(state(&last), "not_reg", "the current state, once more");
    assert_eq!(sse.frame().await, None);
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
}
