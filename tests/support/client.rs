//! The one HTTP test client: one method per endpoint, so tests read like a front end
//! (or WeChat) talking. It talks to a server under test at `server` and to WeChat's API
//! (a sandbox) at `wechat`, which is the same base URL when the server plays WeChat
//! itself. Used by the in-process API tests and by the process (durability, cluster)
//! tests alike (included by path).

#![allow(dead_code)] // each includer uses a different part

use std::time::{Duration, Instant};

use reqwest::{Client, Response};
use serde_json::{Value, json};

/// How often [`eventually`] looks again.
const LOOK_EVERY: Duration = Duration::from_millis(20);

/// Looks with `check` every 20 ms until it answers `Some`, and answers that; fails the
/// test naming `what` when `within` passes first. The one way these tests wait for
/// something they cannot subscribe to: what is awaited is the check, never a time.
pub async fn eventually<T, F: Future<Output = Option<T>>>(what: &str, within: Duration, check: impl FnMut() -> F) -> T {
    eventually_showing(what, within, check, String::new).await
}

/// As [`eventually`], with `context()` (a process's log, say) in the failure message.
pub async fn eventually_showing<T, F: Future<Output = Option<T>>>(
    what: &str,
    within: Duration,
    mut check: impl FnMut() -> F,
    context: impl FnOnce() -> String,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        if Instant::now() >= deadline {
            panic!("not within {within:?}: {what}\n{}", context());
        }
        tokio::time::sleep(LOOK_EVERY).await;
    }
}

/// An HTTP client (the crate's TLS provider installed first, as the binary does). A
/// server that stops answering fails the test within a minute instead of hanging it:
/// every read waits at most 60 s (a held poll is at most 25 s by default, an event
/// stream pings every 15 s), a connection 10 s. An idle pooled connection is dropped
/// after 2 s, before the server's 5 s keep-alive closes it: a request never races the
/// server's close on a reused connection (a POST is not retried, so that race was a
/// transport error a test could not tell from a server fault).
pub fn client() -> Client {
    scanlogin::install_crypto();
    Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(60))
        .pool_idle_timeout(Duration::from_secs(2))
        .build()
        .expect("HTTP client")
}

/// Talks HTTP to the server under test and to "WeChat".
pub struct Api {
    pub http: Client,
    /// Base URL of the server under test.
    pub server: String,
    /// Base URL of WeChat's sandbox (tickets, the phone's scan).
    pub wechat: String,
}

/// A response's status and JSON body (Null when the body is not JSON).
pub async fn parts(r: Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let body = r.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

/// The ticket inside a QR answer's `qr_image_url` (percent-decoded once).
pub fn ticket_of(qr: &Value) -> String {
    let url = url::Url::parse(qr["qr_image_url"].as_str().expect("qr_image_url")).unwrap();
    url.query_pairs().find(|(k, _)| k == "ticket").map(|(_, v)| v.into_owned()).expect("ticket param")
}

/// The value of a metric line `name{labels} value`, summed over lines containing all `parts`.
pub fn metric(text: &str, name: &str, parts: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && (l[name.len()..].starts_with('{') || l[name.len()..].starts_with(' ')))
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

impl Api {
    /// The server at base URL `server`, WeChat's sandbox at base URL `wechat`.
    pub fn at(server: &str, wechat: &str) -> Self {
        Self::with_client(client(), server, wechat)
    }

    /// As [`Api::at`], with a client of the caller's making.
    pub fn with_client(http: Client, server: &str, wechat: &str) -> Self {
        Self { http, server: server.trim_end_matches('/').into(), wechat: wechat.trim_end_matches('/').into() }
    }

    /// The server's URL for `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        parts(self.http.get(self.url(path)).send().await.expect("request")).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        parts(self.post_json(path, &body).await).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.http.post(self.url(path)).json(body).send().await.expect("request")
    }

    pub async fn create_qr(&self, body: Value) -> (u16, Value) {
        self.post("/api/v1/login/qrcode", body).await
    }

    /// A QR code with the picture skipped; returns (uuid, ticket).
    pub async fn new_login(&self) -> (String, String) {
        let (status, body) = self.create_qr(json!({"image": false})).await;
        assert_eq!(status, 200, "{body}");
        let uuid = body["uuid"].as_str().unwrap().to_string();
        (uuid, ticket_of(&body))
    }

    /// `GET /api/v1/login/status?uuid=…`, answered at once.
    pub async fn status(&self, uuid: &str) -> (u16, Value) {
        self.status_query(&[("uuid", uuid.to_string())]).await
    }

    /// `GET /api/v1/login/status?uuid=…&wait=secs`, a held poll.
    pub async fn status_wait(&self, uuid: &str, secs: u64) -> (u16, Value) {
        self.status_query(&[("uuid", uuid.to_string()), ("wait", secs.to_string())]).await
    }

    async fn status_query(&self, q: &[(&str, String)]) -> (u16, Value) {
        parts(self.http.get(self.url("/api/v1/login/status")).query(q).send().await.unwrap()).await
    }

    /// `GET /api/v1/login/events?uuid=…`, the response as it starts (the body streams).
    pub async fn events(&self, uuid: &str) -> Response {
        self.http.get(self.url("/api/v1/login/events")).query(&[("uuid", uuid)]).send().await.expect("request")
    }

    pub async fn sms_code(&self, uuid: &str, phone: &str) -> (u16, Value) {
        self.post("/api/v1/login/sms-code", json!({"uuid": uuid, "phone": phone})).await
    }

    /// Sends a code to `phone` and reads it from the server's SMS outbox.
    pub async fn send_code(&self, uuid: &str, phone: &str) -> String {
        let (status, body) = self.sms_code(uuid, phone).await;
        assert_eq!(status, 200, "{body}");
        self.last_code(phone).await
    }

    pub async fn bind(&self, uuid: &str, phone: &str, code: &str) -> (u16, Value) {
        self.post("/api/v1/login/bind-phone", json!({"uuid": uuid, "phone": phone, "code": code})).await
    }

    pub async fn me(&self, token: &str) -> (u16, Value) {
        parts(self.http.get(self.url("/api/v1/me")).bearer_auth(token).send().await.unwrap()).await
    }

    pub async fn logout(&self, token: &str) -> u16 {
        self.http.post(self.url("/api/v1/logout")).bearer_auth(token).send().await.unwrap().status().as_u16()
    }

    /// The phone scans through "WeChat" (the sandbox), which pushes a real signed event
    /// to the server; answers the sandbox's reply (`http_status` is the server's).
    pub async fn scan(&self, ticket: &str, openid: &str, subscribed: bool) -> (u16, Value) {
        let body = json!({"ticket": ticket, "openid": openid, "subscribed": subscribed});
        parts(self.http.post(format!("{}/_sandbox/scan", self.wechat)).json(&body).send().await.unwrap()).await
    }

    /// The scene WeChat knows for `ticket` (what a push for it carries).
    pub async fn scene_of(&self, ticket: &str) -> String {
        let r = self.http.get(format!("{}/_sandbox/tickets", self.wechat)).query(&[("ticket", ticket)]).send().await;
        let (status, body) = parts(r.unwrap()).await;
        assert_eq!(status, 200, "ticket is live: {body}");
        body["scene"].as_str().unwrap().to_string()
    }

    /// The newest code the `log` SMS provider sent to `phone`.
    pub async fn last_code(&self, phone: &str) -> String {
        let r = self.http.get(self.url("/_sandbox/sms")).query(&[("phone", phone)]).send().await.unwrap();
        let (_, body) = parts(r).await;
        body["messages"]
            .as_array()
            .and_then(|m| m.last())
            .and_then(|m| m["code"].as_str())
            .expect("a code was sent")
            .to_string()
    }

    /// Logs a new WeChat user in through the phone flow; returns the token.
    pub async fn register(&self, openid: &str, phone: &str) -> String {
        let (uuid, ticket) = self.new_login().await;
        delivered(self.scan(&ticket, openid, false).await);
        let code = self.send_code(&uuid, phone).await;
        let (status, body) = self.bind(&uuid, phone, &code).await;
        assert_eq!(status, 200, "{body}");
        body["token"].as_str().unwrap().to_string()
    }

    pub async fn metrics(&self) -> String {
        self.http.get(self.url("/metrics")).send().await.unwrap().text().await.unwrap()
    }

    /// Waits until `/readyz` answers 200 (after a restore); answers what it said first.
    pub async fn until_ready(&self) -> Value {
        let first = self.get("/readyz").await.1;
        eventually("/readyz answers 200", Duration::from_secs(20), || async {
            (self.get("/readyz").await.0 == 200).then_some(())
        })
        .await;
        first
    }

    /// The long polls and event streams this server holds right now
    /// (`scanlogin_held_long_polls`).
    pub async fn held(&self) -> f64 {
        metric(&self.metrics().await, "scanlogin_held_long_polls", &[])
    }

    /// Waits until this server holds at least `n` long polls or streams: the premise "the
    /// poll is held now", observed instead of assumed after a pause.
    pub async fn until_held(&self, n: u32) {
        self.held_unless(n, || false).await;
    }

    /// [`Api::until_held`] with `poll` in flight: a poll answered instead of held fails
    /// at once with its answer (an error, say), not 10 s later as "1 polls held".
    pub async fn until_held_or_answered<T: std::fmt::Debug>(&self, n: u32, poll: &mut tokio::task::JoinHandle<T>) {
        let watched = &*poll;
        if !self.held_unless(n, || watched.is_finished()).await {
            panic!("a poll was answered instead of held: {:?}", poll.await.unwrap());
        }
    }

    /// Waits until `n` polls are held (`true`) or `answered()` says one was (`false`).
    async fn held_unless(&self, n: u32, answered: impl Fn() -> bool) -> bool {
        let what = format!("{n} polls held");
        let answered = &answered;
        eventually(&what, Duration::from_secs(10), || async move {
            if answered() {
                return Some(false);
            }
            (self.held().await >= f64::from(n)).then_some(true)
        })
        .await
    }

    /// POSTs a push to `/wechat/{app_id}/callback`, signed with `token` (plaintext mode).
    pub async fn push_plain(&self, app_id: &str, token: &str, body: String) -> Response {
        let from = scanlogin::sandbox::PushSender { token, app_id, key: None, account: "" };
        let push = scanlogin::sandbox::sign_push(&from, "", &body);
        let url = self.url(&format!("/wechat/{app_id}/callback"));
        self.http.post(url).query(&push.params).body(push.body).send().await.unwrap()
    }
}

/// A six-digit code that is surely wrong where `code` is the right one.
pub fn wrong_code(code: &str) -> &'static str {
    if code == "000000" { "111111" } else { "000000" }
}

/// A scan's answer: the sandbox took it and the server answered WeChat's push with 200.
pub fn delivered((status, body): (u16, Value)) {
    assert_eq!((status, body["http_status"].as_u64()), (200, Some(200)), "{body}");
}
