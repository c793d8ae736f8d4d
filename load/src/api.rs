//! One timed call per endpoint the scenarios use: the login API as a browser calls it,
//! and the sandbox's WeChat-side lookups (ticket → scene, the SMS outbox).
//!
//! Every call records its latency under a step name, or an error kind (`http_409
//! wrong_state`, `timeout`, …), and answers `None` on failure so a scenario can simply
//! give the iteration up.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Client, RequestBuilder};
use serde_json::{Value, json};

use crate::limits::{Hints, backoff};
use crate::report::Recorder;

/// Live counters for the progress line: counted where the recorders count, so the last
/// progress line says what the report says.
#[derive(Default)]
pub struct Progress {
    /// Successful requests of the measured window (as `Report::requests`)…
    pub requests: AtomicU64,
    /// … and of the set-up before it (as `Report::setup_requests`).
    pub setup_requests: AtomicU64,
    /// Failures, the set-up's included (as `Report::total_errors`).
    pub errors: AtomicU64,
    pub held: AtomicI64,
    /// The most polls held at once during the run.
    pub peak_held: AtomicI64,
}

impl Progress {
    /// One more poll held.
    pub fn hold(&self) {
        let now = self.held.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_held.fetch_max(now, Ordering::Relaxed);
    }

    pub fn release(&self) {
        self.held.fetch_sub(1, Ordering::Relaxed);
    }
}

pub struct Api {
    pub http: Client,
    pub base: String,
    pub progress: Arc<Progress>,
    hints: Hints,
}

/// A fresh QR code: the poll id and WeChat's ticket.
#[derive(Debug, Clone)]
pub struct Qr {
    pub uuid: String,
    pub ticket: String,
}

fn transport_kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "transport"
    }
}

impl Api {
    /// A client for `base`; requests time out `max_wait` plus a margin.
    pub fn new(base: &str, max_wait: Duration, progress: Arc<Progress>) -> Self {
        scanlogin::install_crypto();
        let http = Client::builder()
            .timeout(max_wait + Duration::from_secs(15))
            // Below the server's 5 s keep-alive (as nginx's is, config/nginx.example.conf):
            // a connection idle for longer may be closed by the server just as this
            // client sends on it, a failed request that says nothing about the server.
            .pool_idle_timeout(Duration::from_secs(4))
            .tcp_nodelay(true)
            .build()
            .expect("HTTP client");
        Self { http, base: base.trim_end_matches('/').to_string(), progress, hints: Hints::default() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends `req`, records it under `step`, returns the status and body text.
    pub async fn send(&self, rec: &mut Recorder, step: &'static str, req: RequestBuilder) -> Option<(u16, String)> {
        let start = Instant::now();
        let r = match req.send().await {
            Ok(r) => r,
            Err(e) => return self.fail(rec, step, transport_kind(&e)),
        };
        let status = r.status().as_u16();
        let retry_after = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
        let text = match r.text().await {
            Ok(t) => t,
            Err(e) => return self.fail(rec, step, transport_kind(&e)),
        };
        if !(200..300).contains(&status) {
            let body = serde_json::from_str::<Value>(&text).ok();
            let field = |k: &str| body.as_ref().and_then(|v| v[k].as_str()).unwrap_or_default().to_string();
            let code = field("error");
            let failed = self.fail(rec, step, format!("http_{status} {code}").trim_end());
            if status == 429 || status == 503 {
                // A limit: say which one (once), and wait as the server asks.
                self.hints.once(status, step, &field("message"));
                tokio::time::sleep(backoff(retry_after.as_deref())).await;
            }
            return failed;
        }
        rec.ok(step, start.elapsed());
        rec.request();
        let counter = if rec.is_setup() { &self.progress.setup_requests } else { &self.progress.requests };
        counter.fetch_add(1, Ordering::Relaxed);
        Some((status, text))
    }

    /// Records a failure of `step` that is not an HTTP error (an unexpected answer).
    pub fn fail<T>(&self, rec: &mut Recorder, step: &'static str, kind: &str) -> Option<T> {
        rec.error(step, kind);
        self.progress.errors.fetch_add(1, Ordering::Relaxed);
        None
    }

    async fn json(&self, rec: &mut Recorder, step: &'static str, req: RequestBuilder) -> Option<Value> {
        let (_, text) = self.send(rec, step, req).await?;
        match serde_json::from_str(&text) {
            Ok(v) => Some(v),
            Err(_) => self.fail(rec, step, "bad_json"),
        }
    }

    /// `POST /api/v1/login/qrcode` without the picture.
    pub async fn create_qr(&self, rec: &mut Recorder) -> Option<Qr> {
        let req = self.http.post(self.url("/api/v1/login/qrcode")).json(&json!({"image": false}));
        let v = self.json(rec, "create", req).await?;
        let uuid = v["uuid"].as_str()?.to_string();
        let ticket = v["qr_image_url"]
            .as_str()
            .and_then(|u| url::Url::parse(u).ok())
            .and_then(|u| u.query_pairs().find(|(k, _)| k == "ticket").map(|(_, t)| t.into_owned()));
        match ticket {
            Some(ticket) => Some(Qr { uuid, ticket }),
            None => self.fail(rec, "create", "no_ticket"),
        }
    }

    /// The scene behind a ticket, as WeChat knows it (the sandbox's `tickets?ticket=`).
    pub async fn scene_of(&self, rec: &mut Recorder, ticket: &str) -> Option<String> {
        let req = self.http.get(self.url("/_sandbox/tickets")).query(&[("ticket", ticket)]);
        let v = self.json(rec, "ticket", req).await?;
        v["scene"].as_str().map(str::to_string)
    }

    /// `GET /api/v1/login/status` (a long poll when `wait` > 0).
    pub async fn status(&self, rec: &mut Recorder, step: &'static str, uuid: &str, wait: u64) -> Option<Value> {
        let mut q = vec![("uuid", uuid.to_string())];
        if wait > 0 {
            q.push(("wait", wait.to_string()));
        }
        let req = self.http.get(self.url("/api/v1/login/status")).query(&q);
        self.json(rec, step, req).await
    }

    pub async fn sms_code(&self, rec: &mut Recorder, uuid: &str, phone: &str) -> Option<Value> {
        let req = self.http.post(self.url("/api/v1/login/sms-code")).json(&json!({"uuid": uuid, "phone": phone}));
        self.json(rec, "sms_code", req).await
    }

    /// The newest code the sandbox's SMS outbox holds for `phone`.
    pub async fn outbox_code(&self, rec: &mut Recorder, phone: &str) -> Option<String> {
        let req = self.http.get(self.url("/_sandbox/sms")).query(&[("phone", phone)]);
        let v = self.json(rec, "sms_outbox", req).await?;
        let code = v["messages"].as_array().and_then(|m| m.last()).and_then(|m| m["code"].as_str());
        match code {
            Some(c) => Some(c.to_string()),
            None => self.fail(rec, "sms_outbox", "no_code"),
        }
    }

    pub async fn bind(&self, rec: &mut Recorder, uuid: &str, phone: &str, code: &str) -> Option<Value> {
        let body = json!({"uuid": uuid, "phone": phone, "code": code});
        let req = self.http.post(self.url("/api/v1/login/bind-phone")).json(&body);
        self.json(rec, "bind", req).await
    }

    pub async fn me(&self, rec: &mut Recorder, token: &str) -> Option<Value> {
        let req = self.http.get(self.url("/api/v1/me")).bearer_auth(token);
        self.json(rec, "me", req).await
    }
}
