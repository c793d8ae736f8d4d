//! `spawn_app()`: the real `Application` on a random port with a fresh SQLite file,
//! and one helper per endpoint, so tests read like a front end (or WeChat) talking.

use std::net::TcpListener;

use reqwest::{Client, Response};
use scanlogin::config::{self, Settings};
use scanlogin::startup::Application;
use serde_json::{Value, json};

pub struct TestApp {
    pub address: String,
    pub client: Client,
    /// The server's own state, for looking inside (database, metrics).
    pub state: actix_web::web::Data<scanlogin::api::AppState>,
    _dir: tempfile::TempDir,
}

/// The default configuration, as shipped, with `tweak` applied.
pub fn settings(tweak: impl FnOnce(&mut Settings)) -> Settings {
    let text = include_str!("../../config/default.toml");
    let mut s = config::load_from_str(text, &Default::default()).expect("default config").settings;
    s.server.workers = 2;
    // Tests make many requests from one address; the abuse tests set the limits they test.
    s.limits.qr_per_ip_per_minute = 100_000;
    s.limits.sms_per_ip_per_day = 100_000;
    s.limits.qr_per_ip_per_day = 100_000;
    s.limits.bind_per_ip_per_day = 100_000;
    tweak(&mut s);
    s
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    scanlogin::install_crypto();
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().unwrap().port();
    let mut s = settings(tweak);
    s.server.public_url = format!("http://127.0.0.1:{port}");
    s.storage.database_url = format!("sqlite://{}/test.db?mode=rwc", dir.path().display());
    let app = Application::with_listener(s, listener).await.expect("app builds");
    let state = app.state();
    actix_web::rt::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        client: Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
        state,
        _dir: dir,
    }
}

/// A response's status and JSON body (Null when the body is not JSON).
pub async fn parts(r: Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let body = r.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client.post(self.url(path)).json(body).send().await.expect("request")
    }

    pub async fn create_qr(&self, body: Value) -> (u16, Value) {
        parts(self.post_json("/api/v1/login/qrcode", &body).await).await
    }

    /// A QR code with the picture skipped; returns (uuid, ticket).
    pub async fn new_login(&self) -> (String, String) {
        let (status, body) = self.create_qr(json!({"image": false})).await;
        assert_eq!(status, 200, "{body}");
        let uuid = body["uuid"].as_str().unwrap().to_string();
        (uuid, ticket_of(&body))
    }

    pub async fn status(&self, uuid: &str, wait: Option<u64>) -> (u16, Value) {
        let mut q = vec![("uuid", uuid.to_string())];
        if let Some(w) = wait {
            q.push(("wait", w.to_string()));
        }
        parts(self.client.get(self.url("/api/v1/login/status")).query(&q).send().await.unwrap()).await
    }

    pub async fn sms_code(&self, uuid: &str, phone: &str) -> (u16, Value) {
        parts(self.post_json("/api/v1/login/sms-code", &json!({"uuid": uuid, "phone": phone})).await).await
    }

    pub async fn bind_phone(&self, uuid: &str, phone: &str, code: &str) -> (u16, Value) {
        parts(self.post_json("/api/v1/login/bind-phone", &json!({"uuid": uuid, "phone": phone, "code": code})).await)
            .await
    }

    pub async fn me(&self, token: &str) -> (u16, Value) {
        parts(self.client.get(self.url("/api/v1/me")).bearer_auth(token).send().await.unwrap()).await
    }

    pub async fn logout(&self, token: &str) -> u16 {
        self.client.post(self.url("/api/v1/logout")).bearer_auth(token).send().await.unwrap().status().as_u16()
    }

    /// Plays the phone through the sandbox: a real signed callback to our server.
    pub async fn scan(&self, ticket: &str, openid: &str, subscribed: bool) -> (u16, Value) {
        parts(
            self.post_json("/_sandbox/scan", &json!({"ticket": ticket, "openid": openid, "subscribed": subscribed}))
                .await,
        )
        .await
    }

    /// The scene WeChat (the sandbox) knows for `ticket`.
    pub async fn scene_of(&self, ticket: &str) -> String {
        let (_, body) = parts(self.client.get(self.url("/_sandbox/tickets")).send().await.unwrap()).await;
        let list = body["tickets"].as_array().expect("tickets");
        let t = list.iter().find(|t| t["ticket"] == ticket).expect("ticket is live");
        t["scene"].as_str().unwrap().to_string()
    }

    /// POSTs a push to `/wechat/{app_id}/callback`, signed with `token` (plaintext mode).
    pub async fn push_plain(&self, app_id: &str, token: &str, body: String) -> Response {
        let (ts, nonce) = (scanlogin::store::unix_now().to_string(), "20240501".to_string());
        let q = [
            ("signature", scanlogin::wechat::crypto::sign(&[token, &ts, &nonce])),
            ("timestamp", ts),
            ("nonce", nonce),
        ];
        self.client.post(self.url(&format!("/wechat/{app_id}/callback"))).query(&q).body(body).send().await.unwrap()
    }

    /// The newest code the `log` SMS provider sent to `phone`.
    pub async fn last_code(&self, phone: &str) -> String {
        let (_, body) =
            parts(self.client.get(self.url("/_sandbox/sms")).query(&[("phone", phone)]).send().await.unwrap()).await;
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
        assert_eq!(self.scan(&ticket, openid, false).await.0, 200);
        assert_eq!(self.sms_code(&uuid, phone).await.0, 200);
        let code = self.last_code(phone).await;
        let (status, body) = self.bind_phone(&uuid, phone, &code).await;
        assert_eq!(status, 200, "{body}");
        body["token"].as_str().unwrap().to_string()
    }

    pub async fn metrics(&self) -> String {
        self.client.get(self.url("/metrics")).send().await.unwrap().text().await.unwrap()
    }
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
