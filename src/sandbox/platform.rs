//! The fake WeChat API (`/_sandbox/cgi-bin/...`): access tokens (`token`,
//! `stable_token`), `qrcode/create`, `showqrcode` (a real QR picture of the ticket's
//! `url`) and `user/info`, with WeChat's error codes where WeChat would give them.

use std::io::Cursor;

use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use serde::Deserialize;
use serde_json::json;

use super::state::TicketInfo;
use super::{FaultApi, Sandbox, wx_error};
use crate::api::{json_body, query};
use crate::ids::random_b64;
use crate::wall::unix_secs;
use crate::wechat::crypto;

#[derive(Deserialize)]
struct TokenQuery {
    #[serde(default)]
    appid: String,
    #[serde(default)]
    secret: String,
}

pub(super) async fn token(sb: web::Data<Sandbox>, req: HttpRequest) -> HttpResponse {
    if let Some(r) = sb.fault(FaultApi::ClassicToken) {
        return r;
    }
    let Ok(q) = query::<TokenQuery>(&req) else { return wx_error(40013, "invalid appid") };
    issue_token(&sb, &q, false).await
}

#[derive(Deserialize)]
struct StableTokenBody {
    #[serde(flatten)]
    creds: TokenQuery,
    #[serde(default)]
    force_refresh: bool,
}

/// `stable_token` in normal mode hands out the same token while it has > 5 minutes left.
pub(super) async fn stable_token(sb: web::Data<Sandbox>, payload: web::Payload) -> HttpResponse {
    if let Some(r) = sb.fault(FaultApi::StableToken) {
        return r;
    }
    let Ok(body) = json_body::<StableTokenBody>(payload).await else { return wx_error(47001, "data format error") };
    issue_token(&sb, &body.creds, !body.force_refresh).await
}

async fn issue_token(sb: &Sandbox, q: &TokenQuery, reuse: bool) -> HttpResponse {
    let Some(app) = sb.apps.iter().find(|a| a.app_id == q.appid) else { return wx_error(40013, "invalid appid") };
    if !bool::from(subtle::ConstantTimeEq::ct_eq(app.app_secret.expose().as_bytes(), q.secret.as_bytes())) {
        return wx_error(40001, "invalid credential");
    }
    match sb.state.issue_token(&app.app_id, reuse, random_b64(48)).await {
        Ok((token, expires_in)) => HttpResponse::Ok().json(json!({"access_token": token, "expires_in": expires_in})),
        Err(_) => wx_error(-1, "system error"),
    }
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

pub(super) async fn qrcode_create(sb: web::Data<Sandbox>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    if let Some(r) = sb.fault(FaultApi::QrcodeCreate) {
        return r;
    }
    let token = query::<AccessQuery>(&req).map(|q| q.access_token).unwrap_or_default();
    let Some(app_id) = sb.app_of_token(&token).await else {
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
    let info = TicketInfo { app_id, scene, url: url.clone(), expires_at: unix_secs() as i64 + expire, scans: 0 };
    match sb.state.put_ticket(&ticket, &info).await {
        Ok(true) => {}
        Ok(false) => return wx_error(45009, "reach max api daily quota limit"),
        Err(_) => return wx_error(-1, "system error"),
    }
    HttpResponse::Ok().json(json!({"ticket": ticket, "expire_seconds": expire, "url": url}))
}

#[derive(Deserialize)]
struct TicketQuery {
    #[serde(default)]
    ticket: String,
}

/// A PNG of the ticket's `url`, as WeChat serves a JPEG of it; 404 for an unknown ticket.
pub(super) async fn showqrcode(sb: web::Data<Sandbox>, req: HttpRequest) -> HttpResponse {
    if let Some(r) = sb.fault(FaultApi::Showqrcode) {
        return r;
    }
    let ticket = query::<TicketQuery>(&req).map(|q| q.ticket).unwrap_or_default();
    let Ok(found) = sb.state.ticket(&ticket).await else {
        return HttpResponse::ServiceUnavailable().finish();
    };
    let Some(url) = found.map(|t| t.url) else {
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

pub(super) async fn user_info(sb: web::Data<Sandbox>, req: HttpRequest) -> HttpResponse {
    if let Some(r) = sb.fault(FaultApi::UserInfo) {
        return r;
    }
    let Ok(q) = query::<UserInfoQuery>(&req) else {
        return wx_error(40003, "invalid openid");
    };
    let Some(app_id) = sb.app_of_token(&q.access_token).await else {
        return wx_error(40001, "invalid credential");
    };
    if q.openid.is_empty() {
        return wx_error(40003, "invalid openid");
    }
    // A stable fake unionid per (openid), the same across the sandbox's accounts.
    let unionid = format!("u{}", &crypto::sign(&[&q.openid, "sandbox-unionid"])[..27]);
    HttpResponse::Ok().json(json!({
        "subscribe": 1, "openid": q.openid, "language": "zh_CN", "subscribe_time": unix_secs(),
        "unionid": unionid, "subscribe_scene": "ADD_SCENE_QR_CODE", "qr_scene": 0, "qr_scene_str": "", "app": app_id,
    }))
}
