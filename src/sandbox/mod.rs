//! The sandbox: a fake WeChat platform inside the same server (docs/wechat.md "Sandbox").
//!
//! - [`platform`]: the API calls our client makes (`token`, `qrcode/create`,
//!   `showqrcode` with a real QR picture, `user/info`);
//! - [`phone`]: plays the phone — `POST /_sandbox/scan` sends a signed (and, with an AES
//!   key, encrypted) event over real HTTP to our own callback, exactly as WeChat would;
//! - [`inspect`]: what a developer or a test looks at (SMS outbox, live tickets);
//! - [`state`]: tickets and issued tokens, in process or shared in Redis by the nodes of
//!   a cluster.
//!
//! Mounted only when `wechat.sandbox = true`. Injected faults (`/_sandbox/faults`) stay
//! on the node that was asked: they are a test's tool, not shared state.

mod inspect;
mod phone;
mod platform;
mod state;

pub use phone::{PushSender, SignedPush, deliver, sign_push};
pub use platform::qr_png;
pub use state::SandboxState;

use std::sync::Mutex;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use crate::api::json_body;
use crate::config::{AppSettings, Settings};
use crate::error::ApiError;
use crate::sms::Outbox;

/// The fake platform's memory.
pub struct Sandbox {
    apps: Vec<AppSettings>,
    public_url: String,
    state: SandboxState,
    outbox: Outbox,
    http: reqwest::Client,
    faults: Mutex<Vec<Fault>>,
}

/// Which of the fake platform's calls a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum FaultApi {
    /// Either way to get an access token.
    Token,
    /// Only `cgi-bin/stable_token`: a test can tell which of the two the client used.
    StableToken,
    /// Only the classic `cgi-bin/token`.
    ClassicToken,
    QrcodeCreate,
    Showqrcode,
    UserInfo,
}

impl FaultApi {
    /// Whether a fault armed for `self` hits a call of `call`.
    fn hits(self, call: FaultApi) -> bool {
        self == call || (self == FaultApi::Token && matches!(call, FaultApi::StableToken | FaultApi::ClassicToken))
    }
}

/// A failure the sandbox plays on its next `count` calls of `api` (for tests and demos).
#[derive(Debug, Clone, Deserialize)]
struct Fault {
    api: FaultApi,
    /// Answer 200 with this errcode…
    #[serde(default)]
    errcode: Option<i64>,
    /// …or this HTTP status.
    #[serde(default)]
    http_status: Option<u16>,
    #[serde(default = "one")]
    count: u32,
}

fn one() -> u32 {
    1
}

fn wx_error(errcode: i64, errmsg: &str) -> HttpResponse {
    HttpResponse::Ok().json(json!({"errcode": errcode, "errmsg": errmsg}))
}

impl Sandbox {
    /// A sandbox remembering in `state`, showing the codes of `outbox`.
    pub fn new(settings: &Settings, state: SandboxState, outbox: Outbox) -> Self {
        Self {
            apps: settings.wechat.apps.clone(),
            public_url: settings.server.public_url.trim_end_matches('/').to_string(),
            state,
            outbox,
            faults: Mutex::new(Vec::new()),
            http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("HTTP client builds"),
        }
    }

    /// The injected failure for a call of `call`, if one is armed (and uses it up).
    fn fault(&self, call: FaultApi) -> Option<HttpResponse> {
        let mut faults = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        let i = faults.iter().position(|f| f.api.hits(call))?;
        let f = faults[i].clone();
        faults[i].count -= 1;
        if faults[i].count == 0 {
            faults.remove(i);
        }
        Some(match (f.errcode, f.http_status) {
            (Some(code), _) => wx_error(code, "sandbox injected fault"),
            (None, Some(status)) => HttpResponse::build(
                actix_web::http::StatusCode::from_u16(status)
                    .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR),
            )
            .finish(),
            (None, None) => wx_error(-1, "system error"),
        })
    }

    /// The app a token was issued to; its own storage down reads as "no such token".
    async fn app_of_token(&self, token: &str) -> Option<String> {
        self.state.app_of_token(token).await.ok().flatten()
    }
}

/// Mounts `/_sandbox/...`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/_sandbox")
            .route("/", web::get().to(phone_page))
            .route("/cgi-bin/token", web::get().to(platform::token))
            .route("/cgi-bin/stable_token", web::post().to(platform::stable_token))
            .route("/cgi-bin/qrcode/create", web::post().to(platform::qrcode_create))
            .route("/cgi-bin/showqrcode", web::get().to(platform::showqrcode))
            .route("/cgi-bin/user/info", web::get().to(platform::user_info))
            .route("/scan", web::post().to(phone::scan))
            .route("/message", web::post().to(phone::message))
            .route("/sms", web::get().to(inspect::sms))
            .route("/tickets", web::get().to(inspect::tickets))
            .route("/faults", web::post().to(add_fault)),
    );
}

/// The page that plays the phone for a person (its HTML lives with the other pages).
async fn phone_page() -> HttpResponse {
    crate::pages::sandbox_page()
}

async fn add_fault(sb: web::Data<Sandbox>, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    let f: Fault = json_body(payload).await?;
    if f.count == 0 || f.count > 1000 {
        return Err(ApiError::InvalidRequest("count must be 1..=1000".into()));
    }
    let mut faults = sb.faults.lock().unwrap_or_else(|e| e.into_inner());
    if faults.len() >= 100 {
        return Err(ApiError::InvalidRequest("too many faults armed".into()));
    }
    faults.push(f);
    Ok(HttpResponse::Ok().json(json!({"armed": faults.len()})))
}
