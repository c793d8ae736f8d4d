//! WeChat's side of the HTTP API: server URL verification (GET) and pushes (POST).

use std::time::Instant;

use actix_web::{HttpRequest, HttpResponse, web};

use super::{AppState, CALLBACK_LIMIT, query, read_body};
use crate::error::ApiError;
use crate::ids::Scene;
use crate::login::ScanResult;
use crate::wechat::AppClient;
use crate::wechat::callback::{self, OpenError, PushQuery};
use crate::wechat::xml::{Push, XmlError, text_reply};

fn app<'a>(state: &'a AppState, appid: &str) -> Result<&'a AppClient, ApiError> {
    state.login.wechat.by_app_id(appid).ok_or(ApiError::UnknownApp)
}

/// `GET /wechat/{appid}/callback`: answer `echostr` exactly as it came.
pub async fn verify_url(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let app = app(&state, &path)?;
    let q: PushQuery = query(&req)?;
    if !callback::check_signature(&app.keys, &q) {
        state.metrics.callback(&app.name, "verify", "bad_signature", 0.0);
        return Err(ApiError::Unauthorized);
    }
    let echo = q.echostr.unwrap_or_default();
    if echo.len() > 256 {
        return Err(ApiError::InvalidRequest("echostr too long".into()));
    }
    state.metrics.callback(&app.name, "verify", "ok", 0.0);
    Ok(HttpResponse::Ok().content_type("text/plain; charset=utf-8").body(echo))
}

/// `POST /wechat/{appid}/callback`: authenticate, act on login scans, reply.
pub async fn callback(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let start = Instant::now();
    let app = app(&state, &path)?;
    let q: PushQuery = query(&req)?;
    let done =
        |kind: &str, result: &str| state.metrics.callback(&app.name, kind, result, start.elapsed().as_secs_f64());
    // The signature is checked before the body is read: a forger costs nothing.
    if !callback::check_signature(&app.keys, &q) {
        done("unknown", "bad_signature");
        return Err(ApiError::Unauthorized);
    }
    let body = read_body(payload, CALLBACK_LIMIT).await?;
    let body = std::str::from_utf8(&body).map_err(|_| ApiError::InvalidRequest("body is not UTF-8".into()))?;
    let opened = match callback::open(&app.keys, &q, body) {
        Ok(o) => o,
        Err(OpenError::Xml(XmlError::Dtd)) => {
            done("unknown", "dtd");
            return Err(ApiError::InvalidRequest("DTDs and entity declarations are not accepted".into()));
        }
        Err(OpenError::Xml(e)) => {
            done("unknown", "bad_xml");
            return Err(ApiError::InvalidRequest(e.to_string()));
        }
        Err(OpenError::BadSignature | OpenError::NotEncrypted) => {
            done("unknown", "bad_signature");
            return Err(ApiError::Unauthorized);
        }
        Err(OpenError::Decrypt) => {
            done("unknown", "decrypt_error");
            return Err(ApiError::Unauthorized);
        }
    };
    let env = &opened.envelope;
    let (kind, text) = match &env.push {
        Push::Subscribe { scene: Some(s), openid } | Push::Scan { scene: Some(s), openid } => {
            let kind = if matches!(env.push, Push::Subscribe { .. }) { "subscribe" } else { "scan" };
            let result = match Scene::parse(s) {
                Some(scene) => state.login.scanned(app, &scene, openid).await?,
                None => ScanResult::Unknown,
            };
            let text = match result {
                ScanResult::Registered => &app.replies.logged_in,
                ScanResult::NeedsPhone => &app.replies.bind_phone,
                ScanResult::Unknown => &app.replies.expired,
            };
            (kind, Some(text.clone()))
        }
        Push::Subscribe { .. } => ("subscribe", None),
        Push::Scan { .. } => ("scan", None),
        Push::Unsubscribe { .. } => ("unsubscribe", None),
        Push::Text { .. } => ("text", None),
        Push::Other { .. } => ("other", None),
    };
    let reply = text.map(|t| text_reply(&env.from, &env.to, crate::store::unix_now() as u64, &t));
    let body = callback::seal(&app.keys, &opened.mode, reply.as_deref(), &q.timestamp, &q.nonce);
    done(kind, "ok");
    Ok(HttpResponse::Ok().content_type("application/xml; charset=utf-8").body(body))
}
