//! The sandbox: a fake WeChat platform inside the same server (API.md "Sandbox").
//!
//! It answers the API calls our client makes (`token`, `qrcode/create`, `showqrcode`
//! with a real QR picture, `user/info`) and plays the phone: `POST /_sandbox/scan` sends
//! a signed (and, with an AES key, encrypted) event over real HTTP to our own callback,
//! exactly as WeChat would. Mounted only when `wechat.sandbox = true`.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::Mutex;
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngCore;
use serde::Deserialize;
use serde_json::json;

use crate::api::{json_body, query};
use crate::config::{AppSettings, Settings};
use crate::error::ApiError;
use crate::ids::Phone;
use crate::sms::Outbox;
use crate::store::unix_now;
use crate::wechat::crypto::{self, AesKey};
use crate::wechat::xml::{self, event_xml};

/// Tickets and tokens the sandbox remembers at most (oldest dropped first).
const MAX_TICKETS: usize = 200_000;
const TOKEN_LIFE_SECS: i64 = 7200;

#[derive(Debug, Clone)]
struct TicketInfo {
    app_id: String,
    scene: String,
    url: String,
    expires_at: i64,
}

/// The fake platform's memory.
pub struct Sandbox {
    apps: Vec<AppSettings>,
    public_url: String,
    tickets: Mutex<HashMap<String, TicketInfo>>,
    tokens: Mutex<HashMap<String, (String, i64)>>,
    outbox: Outbox,
    http: reqwest::Client,
    faults: Mutex<Vec<Fault>>,
}

/// A failure the sandbox plays on its next `count` calls of `api` (for tests and demos).
#[derive(Debug, Clone, Deserialize)]
struct Fault {
    /// `token`, `qrcode_create`, `showqrcode` or `user_info`.
    api: String,
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

fn random_b64(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::rng().fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

fn wx_error(errcode: i64, errmsg: &str) -> HttpResponse {
    HttpResponse::Ok().json(json!({"errcode": errcode, "errmsg": errmsg}))
}

impl Sandbox {
    pub fn new(settings: &Settings, outbox: Outbox) -> Self {
        Self {
            apps: settings.wechat.apps.clone(),
            public_url: settings.server.public_url.trim_end_matches('/').to_string(),
            tickets: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            outbox,
            faults: Mutex::new(Vec::new()),
            http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("HTTP client builds"),
        }
    }

    /// The injected failure for `api`, if one is armed (and uses it up).
    fn fault(&self, api: &str) -> Option<HttpResponse> {
        let mut faults = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        let i = faults.iter().position(|f| f.api == api)?;
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

    fn app_of_token(&self, token: &str) -> Option<String> {
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens.get(token).filter(|(_, exp)| *exp > unix_now()).map(|(app, _)| app.clone())
    }
}

/// Mounts `/_sandbox/...`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/_sandbox")
            .route("/", web::get().to(phone_page))
            .route("/cgi-bin/token", web::get().to(token))
            .route("/cgi-bin/stable_token", web::post().to(stable_token))
            .route("/cgi-bin/qrcode/create", web::post().to(qrcode_create))
            .route("/cgi-bin/showqrcode", web::get().to(showqrcode))
            .route("/cgi-bin/user/info", web::get().to(user_info))
            .route("/scan", web::post().to(scan))
            .route("/sms", web::get().to(sms))
            .route("/tickets", web::get().to(tickets))
            .route("/faults", web::post().to(add_fault)),
    );
}

/// The page that plays the phone for a person (its HTML lives with the other pages).
async fn phone_page() -> HttpResponse {
    crate::pages::sandbox_page()
}

#[derive(Deserialize)]
struct TokenQuery {
    #[serde(default)]
    appid: String,
    #[serde(default)]
    secret: String,
}

async fn add_fault(sb: web::Data<Sandbox>, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    let f: Fault = json_body(payload).await?;
    if !["token", "qrcode_create", "showqrcode", "user_info"].contains(&f.api.as_str())
        || f.count == 0
        || f.count > 1000
    {
        return Err(ApiError::InvalidRequest(
            "api must be token|qrcode_create|showqrcode|user_info, count 1..=1000".into(),
        ));
    }
    let mut faults = sb.faults.lock().unwrap_or_else(|e| e.into_inner());
    if faults.len() >= 100 {
        return Err(ApiError::InvalidRequest("too many faults armed".into()));
    }
    faults.push(f);
    Ok(HttpResponse::Ok().json(json!({"armed": faults.len()})))
}

async fn token(sb: web::Data<Sandbox>, req: HttpRequest) -> HttpResponse {
    if let Some(r) = sb.fault("token") {
        return r;
    }
    let Ok(q) = query::<TokenQuery>(&req) else { return wx_error(40013, "invalid appid") };
    issue_token(&sb, &q, false)
}

#[derive(Deserialize)]
struct StableTokenBody {
    #[serde(flatten)]
    creds: TokenQuery,
    #[serde(default)]
    force_refresh: bool,
}

/// `stable_token` in normal mode hands out the same token while it has > 5 minutes left.
async fn stable_token(sb: web::Data<Sandbox>, payload: web::Payload) -> HttpResponse {
    if let Some(r) = sb.fault("token") {
        return r;
    }
    let Ok(body) = json_body::<StableTokenBody>(payload).await else { return wx_error(47001, "data format error") };
    issue_token(&sb, &body.creds, !body.force_refresh)
}

fn issue_token(sb: &Sandbox, q: &TokenQuery, reuse: bool) -> HttpResponse {
    let Some(app) = sb.apps.iter().find(|a| a.app_id == q.appid) else { return wx_error(40013, "invalid appid") };
    if !bool::from(subtle::ConstantTimeEq::ct_eq(app.app_secret.expose().as_bytes(), q.secret.as_bytes())) {
        return wx_error(40001, "invalid credential");
    }
    let mut tokens = sb.tokens.lock().unwrap_or_else(|e| e.into_inner());
    let now = unix_now();
    tokens.retain(|_, (_, exp)| *exp > now);
    if reuse && let Some((t, (_, exp))) = tokens.iter().find(|(_, (a, exp))| *a == app.app_id && *exp - now > 300) {
        return HttpResponse::Ok().json(json!({"access_token": t, "expires_in": exp - now}));
    }
    let token = random_b64(48);
    tokens.insert(token.clone(), (app.app_id.clone(), now + TOKEN_LIFE_SECS));
    HttpResponse::Ok().json(json!({"access_token": token, "expires_in": TOKEN_LIFE_SECS}))
}

#[derive(Deserialize)]
struct AccessQuery {
    #[serde(default)]
    access_token: String,
}

#[derive(Deserialize)]
struct QrCreate {
    expire_seconds: Option<i64>,
    action_name: String,
    action_info: QrActionInfo,
}

#[derive(Deserialize)]
struct QrActionInfo {
    scene: QrScene,
}

#[derive(Deserialize)]
struct QrScene {
    scene_str: Option<String>,
}

async fn qrcode_create(sb: web::Data<Sandbox>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    if let Some(r) = sb.fault("qrcode_create") {
        return r;
    }
    let token = query::<AccessQuery>(&req).map(|q| q.access_token).unwrap_or_default();
    let Some(app_id) = sb.app_of_token(&token) else {
        return wx_error(40001, "invalid credential, access_token is invalid or not latest");
    };
    let Ok(body) = json_body::<QrCreate>(payload).await else {
        return wx_error(47001, "data format error");
    };
    if body.action_name != "QR_STR_SCENE" {
        return wx_error(40097, "invalid args: sandbox makes QR_STR_SCENE codes only");
    }
    let Some(scene) = body.action_info.scene.scene_str.filter(|s| (1..=64).contains(&s.len())) else {
        return wx_error(40097, "invalid args: scene_str must be 1..64 chars");
    };
    let expire = body.expire_seconds.unwrap_or(60);
    if !(1..=2_592_000).contains(&expire) {
        return wx_error(40097, "invalid args: expire_seconds");
    }
    // Real tickets are standard base64 with `+`, `/` and `=`: so are ours, which proves
    // our client percent-encodes them exactly once.
    let mut raw = [0u8; 40];
    rand::rng().fill_bytes(&mut raw);
    raw[0] = 0xfb; // forces a `+`/`/` early in the text
    let ticket = STANDARD.encode(&raw[..38]);
    let url = format!("http://weixin.qq.com/q/{}", random_b64(18));
    let now = unix_now();
    let mut tickets = sb.tickets.lock().unwrap_or_else(|e| e.into_inner());
    if tickets.len() >= MAX_TICKETS {
        tickets.retain(|_, t| t.expires_at > now);
        if tickets.len() >= MAX_TICKETS {
            return wx_error(45009, "reach max api daily quota limit");
        }
    }
    tickets.insert(ticket.clone(), TicketInfo { app_id, scene, url: url.clone(), expires_at: now + expire });
    HttpResponse::Ok().json(json!({"ticket": ticket, "expire_seconds": expire, "url": url}))
}

#[derive(Deserialize)]
struct TicketQuery {
    #[serde(default)]
    ticket: String,
}

/// A PNG of the ticket's `url`, as WeChat serves a JPEG of it; 404 for an unknown ticket.
async fn showqrcode(sb: web::Data<Sandbox>, req: HttpRequest) -> HttpResponse {
    if let Some(r) = sb.fault("showqrcode") {
        return r;
    }
    let ticket = query::<TicketQuery>(&req).map(|q| q.ticket).unwrap_or_default();
    let url = {
        let tickets = sb.tickets.lock().unwrap_or_else(|e| e.into_inner());
        tickets.get(&ticket).map(|t| t.url.clone())
    };
    let Some(url) = url else {
        return HttpResponse::NotFound().finish();
    };
    match qr_png(&url) {
        Some(png) => HttpResponse::Ok().content_type("image/png").body(png),
        None => HttpResponse::InternalServerError().finish(),
    }
}

/// Renders `text` as a QR code PNG (quiet zone included).
pub fn qr_png(text: &str) -> Option<Vec<u8>> {
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    let img = code.render::<image::Luma<u8>>().min_dimensions(240, 240).build();
    let mut out = Cursor::new(Vec::new());
    image::DynamicImage::ImageLuma8(img).write_to(&mut out, image::ImageFormat::Png).ok()?;
    Some(out.into_inner())
}

#[derive(Deserialize)]
struct UserInfoQuery {
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    openid: String,
}

async fn user_info(sb: web::Data<Sandbox>, req: HttpRequest) -> HttpResponse {
    if let Some(r) = sb.fault("user_info") {
        return r;
    }
    let Ok(q) = query::<UserInfoQuery>(&req) else {
        return wx_error(40003, "invalid openid");
    };
    let Some(app_id) = sb.app_of_token(&q.access_token) else {
        return wx_error(40001, "invalid credential");
    };
    if q.openid.is_empty() {
        return wx_error(40003, "invalid openid");
    }
    // A stable fake unionid per (openid), the same across the sandbox's accounts.
    let unionid = format!("u{}", &crypto::sign(&[&q.openid, "sandbox-unionid"])[..27]);
    HttpResponse::Ok().json(json!({
        "subscribe": 1, "openid": q.openid, "language": "zh_CN", "subscribe_time": unix_now(),
        "unionid": unionid, "subscribe_scene": "ADD_SCENE_QR_CODE", "qr_scene": 0, "qr_scene_str": "", "app": app_id,
    }))
}

#[derive(Deserialize)]
struct ScanRequest {
    ticket: String,
    openid: String,
    #[serde(default)]
    subscribed: bool,
}

fn valid_openid(s: &str) -> bool {
    (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Plays the phone: builds the event WeChat would push for this scan, signs (and
/// encrypts) it, posts it to our callback, and returns the passive reply it got.
async fn scan(sb: web::Data<Sandbox>, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    let body: ScanRequest = json_body(payload).await?;
    if !valid_openid(&body.openid) {
        return Err(ApiError::InvalidRequest("openid must be 1..128 of [A-Za-z0-9_-]".into()));
    }
    let info = {
        let tickets = sb.tickets.lock().unwrap_or_else(|e| e.into_inner());
        tickets.get(&body.ticket).cloned()
    };
    let Some(info) = info.filter(|t| t.expires_at > unix_now()) else {
        return Err(ApiError::InvalidRequest("unknown or expired ticket".into()));
    };
    let app = sb
        .apps
        .iter()
        .find(|a| a.app_id == info.app_id)
        .ok_or_else(|| ApiError::internal("ticket of an unknown app"))?;
    let account = format!("gh_{}", &app.app_id[app.app_id.len().saturating_sub(12)..]);
    let (event, key) =
        if body.subscribed { ("SCAN", info.scene.clone()) } else { ("subscribe", format!("qrscene_{}", info.scene)) };
    let plain = event_xml(&account, &body.openid, unix_now() as u64, event, Some(&key), Some(&body.ticket));
    let reply = deliver(&sb, app, &account, &body.openid, &plain).await?;
    Ok(HttpResponse::Ok().json(reply))
}

/// A push as WeChat sends it: the callback's query parameters and body.
#[derive(Debug, Clone)]
pub struct SignedPush {
    pub params: Vec<(&'static str, String)>,
    pub body: String,
}

/// Signs `plain` with the account's Token and, for a safe-mode account (`key`), encrypts
/// it into WeChat's envelope — what WeChat does before posting a push. Shared with the
/// load tool, which also plays WeChat.
pub fn sign_push(
    token: &str,
    app_id: &str,
    key: Option<&AesKey>,
    account: &str,
    openid: &str,
    plain: &str,
) -> SignedPush {
    let timestamp = unix_now().to_string();
    let nonce = rand::random_range(100_000_000u64..1_000_000_000).to_string();
    let signature = crypto::sign(&[token, &timestamp, &nonce]);
    let mut params = vec![
        ("signature", signature),
        ("timestamp", timestamp.clone()),
        ("nonce", nonce.clone()),
        ("openid", openid.into()),
    ];
    let body = match key {
        None => plain.to_string(),
        Some(k) => {
            let enc = crypto::encrypt_random(k, app_id, plain.as_bytes());
            params.push(("encrypt_type", "aes".into()));
            params.push(("msg_signature", crypto::msg_signature(token, &timestamp, &nonce, &enc)));
            format!(
                "<xml><ToUserName>{}</ToUserName><Encrypt>{}</Encrypt></xml>",
                xml::cdata(account),
                xml::cdata(&enc)
            )
        }
    };
    SignedPush { params, body }
}

/// Posts one push to `public_url/wechat/{appid}/callback` as WeChat does and decodes
/// the answer: `{"http_status", "reply": "success" | {"type","content",...}}`.
pub async fn deliver(
    sb: &Sandbox,
    app: &AppSettings,
    account: &str,
    openid: &str,
    plain: &str,
) -> Result<serde_json::Value, ApiError> {
    let key = (!app.encoding_aes_key.is_empty())
        .then(|| AesKey::from_encoding_key(app.encoding_aes_key.expose()))
        .transpose()
        .map_err(ApiError::internal)?;
    let SignedPush { params, body } = sign_push(app.token.expose(), &app.app_id, key.as_ref(), account, openid, plain);
    let url = format!("{}/wechat/{}/callback", sb.public_url, app.app_id);
    let resp = sb
        .http
        .post(url)
        .query(&params)
        .header("content-type", "text/xml")
        .body(body)
        .send()
        .await
        .map_err(|e| ApiError::Wechat(format!("callback unreachable: {}", e.without_url())))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(|e| ApiError::Wechat(e.without_url().to_string()))?;
    if status != 200 {
        return Ok(json!({"http_status": status, "reply": null, "body": text.chars().take(500).collect::<String>()}));
    }
    if text.is_empty() || text == "success" {
        return Ok(json!({"http_status": status, "reply": "success"}));
    }
    let fields = xml::parse_fields(&text).map_err(|e| ApiError::Wechat(format!("reply is not XML: {e}")))?;
    let fields = match (&key, fields.get("Encrypt")) {
        (Some(k), Some(enc)) => {
            let ts = fields.get("TimeStamp").unwrap_or_default();
            let n = fields.get("Nonce").unwrap_or_default();
            let sig_ok = fields
                .get("MsgSignature")
                .is_some_and(|s| crypto::verify_signature(s, &[app.token.expose(), ts, n, enc]));
            if !sig_ok {
                return Err(ApiError::Wechat("reply MsgSignature does not verify".into()));
            }
            let plain = crypto::decrypt(k, &app.app_id, enc)
                .map_err(|e| ApiError::Wechat(format!("reply does not decrypt: {e}")))?;
            xml::parse_fields(&String::from_utf8_lossy(&plain)).map_err(|e| ApiError::Wechat(e.to_string()))?
        }
        _ => fields,
    };
    Ok(json!({
        "http_status": status,
        "encrypted": key.is_some(),
        "reply": {
            "type": fields.get("MsgType"),
            "content": fields.get("Content"),
            "to": fields.get("ToUserName"),
            "from": fields.get("FromUserName"),
        }
    }))
}

#[derive(Deserialize)]
struct SmsQuery {
    phone: String,
}

/// The codes the `log` SMS provider "sent" to a phone.
async fn sms(sb: web::Data<Sandbox>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let q: SmsQuery = query(&req)?;
    let phone = Phone::parse(&q.phone).ok_or(ApiError::InvalidPhone)?;
    let codes = sb.outbox.for_phone(phone.as_str());
    Ok(HttpResponse::Ok().json(json!({"phone": phone.as_str(), "messages": codes})))
}

#[derive(Deserialize)]
struct OneTicket {
    ticket: Option<String>,
}

/// Live tickets, newest first (for the sandbox phone page); with `?ticket=T`, that one
/// ticket with its scene, as WeChat knows it (the load tool uses it to post scans
/// straight to our callback, signed and encrypted itself).
async fn tickets(sb: web::Data<Sandbox>, req: HttpRequest) -> HttpResponse {
    let now = unix_now();
    if let Ok(OneTicket { ticket: Some(ticket) }) = query::<OneTicket>(&req) {
        let t = sb.tickets.lock().unwrap_or_else(|e| e.into_inner()).get(&ticket).cloned();
        return match t.filter(|t| t.expires_at > now) {
            Some(t) => HttpResponse::Ok().json(
                json!({"ticket": ticket, "app_id": t.app_id, "scene": t.scene, "url": t.url, "expires_in": t.expires_at - now}),
            ),
            None => HttpResponse::NotFound().json(json!({"error": "not_found", "message": "unknown or expired ticket"})),
        };
    }
    let mut list: Vec<_> = {
        let t = sb.tickets.lock().unwrap_or_else(|e| e.into_inner());
        t.iter()
            .filter(|(_, i)| i.expires_at > now)
            .map(|(k, i)| (k.clone(), i.app_id.clone(), i.url.clone(), i.expires_at, i.scene.clone()))
            .collect()
    };
    list.sort_by_key(|t| std::cmp::Reverse(t.3));
    list.truncate(50);
    // The scene is what WeChat (and so the sandbox) knows about a ticket; shown so tests
    // and load tools can act as WeChat directly.
    let items: Vec<_> = list
        .into_iter()
        .map(|(ticket, app_id, url, exp, scene)| json!({"ticket": ticket, "app_id": app_id, "url": url, "expires_in": exp - now, "scene": scene}))
        .collect();
    HttpResponse::Ok().json(json!({"tickets": items}))
}
