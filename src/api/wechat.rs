//! WeChat's side of the HTTP API: server URL verification (GET) and pushes (POST).
//!
//! The handler authenticates, opens and seals; what a push does, its dedup and the
//! reply-time budget are the login service's ([`crate::login::LoginService::on_push`]).
//! A push whose work is not stored within the budget is not acknowledged: no answer
//! until WeChat's 5 s are over (then 503), so WeChat sends it again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};

use super::{AppState, CALLBACK_LIMIT, query, read_body};
use crate::error::ApiError;
use crate::login::{self, PushAnswer};
use crate::metrics::labels::{CallbackKind, CallbackResult};
use crate::wechat::AppClient;
use crate::wechat::callback::{self, OpenError, PushQuery};
use crate::wechat::xml::XmlError;

/// How long WeChat waits for an answer before it gives up and sends the push again
/// (docs/wechat.md, "Timeouts, resends, dedup"), plus a margin for its clock.
const WECHAT_WAIT: Duration = Duration::from_millis(5_200);

fn app<'a>(state: &'a AppState, appid: &str) -> Result<&'a Arc<AppClient>, ApiError> {
    state.login.wechat().by_app_id(appid).ok_or(ApiError::UnknownApp)
}

/// `GET /wechat/{appid}/callback`: answer `echostr` exactly as it came.
pub async fn verify_url(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let app = app(&state, &path)?;
    let q: PushQuery = query(&req)?;
    if callback::check_signature(&app.keys, &q).is_none() {
        state.metrics.callback(&app.name, CallbackKind::Verify, CallbackResult::BadSignature, 0.0);
        return Err(ApiError::Unauthorized);
    }
    let echo = q.echostr.unwrap_or_default();
    if echo.len() > 256 {
        return Err(ApiError::InvalidRequest("echostr too long".into()));
    }
    state.metrics.callback(&app.name, CallbackKind::Verify, CallbackResult::Ok, 0.0);
    Ok(HttpResponse::Ok().content_type("text/plain; charset=utf-8").body(echo))
}

/// `POST /wechat/{appid}/callback`: authenticate, hand the push to the login service, seal.
pub async fn callback(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let start = Instant::now();
    let app = app(&state, &path)?;
    let q: PushQuery = query(&req)?;
    let done = |kind: CallbackKind, result: CallbackResult| {
        state.metrics.callback(&app.name, kind, result, start.elapsed().as_secs_f64())
    };
    // The signature is checked before the body is read: a forger costs nothing.
    let Some(signed) = callback::check_signature(&app.keys, &q) else {
        done(CallbackKind::Unknown, CallbackResult::BadSignature);
        return Err(ApiError::Unauthorized);
    };
    let body = read_body(payload, CALLBACK_LIMIT).await?;
    let body = std::str::from_utf8(&body).map_err(|_| ApiError::InvalidRequest("body is not UTF-8".into()))?;
    let opened = match callback::open(signed, body) {
        Ok(o) => o,
        Err(OpenError::Xml(XmlError::Dtd)) => {
            done(CallbackKind::Unknown, CallbackResult::Dtd);
            return Err(ApiError::InvalidRequest("DTDs and entity declarations are not accepted".into()));
        }
        Err(OpenError::Xml(e)) => {
            done(CallbackKind::Unknown, CallbackResult::BadXml);
            return Err(ApiError::InvalidRequest(e.to_string()));
        }
        Err(OpenError::BadSignature | OpenError::NotEncrypted) => {
            done(CallbackKind::Unknown, CallbackResult::BadSignature);
            return Err(ApiError::Unauthorized);
        }
        Err(OpenError::Decrypt) => {
            done(CallbackKind::Unknown, CallbackResult::DecryptError);
            return Err(ApiError::Unauthorized);
        }
    };
    let kind = login::push_kind(&opened.envelope.push);
    let key = opened.envelope.dedup_key(&opened.fields);
    let seal = |reply: Option<&str>| {
        let body = callback::seal(&app.keys, &opened.mode, reply, &q.timestamp, &q.nonce);
        HttpResponse::Ok().content_type("application/xml; charset=utf-8").body(body)
    };
    match state.login.on_push(app, opened.envelope.clone(), &key).await {
        Ok(PushAnswer::Done(reply)) => {
            done(kind, CallbackResult::Ok);
            Ok(seal(reply.as_deref()))
        }
        Ok(PushAnswer::Duplicate(reply)) => {
            done(kind, CallbackResult::Duplicate);
            Ok(seal(reply.as_deref()))
        }
        Ok(PushAnswer::NotStored) => {
            done(kind, CallbackResult::Late);
            // No `success`: WeChat's documented resend is for "no answer within 5 s", so
            // none comes before that; a client that waits longer learns it was refused.
            tokio::time::sleep_until((start + WECHAT_WAIT).into()).await;
            Err(ApiError::Overloaded { retry_after_secs: 1 })
        }
        Err(e) => {
            done(kind, CallbackResult::Error);
            Err(e)
        }
    }
}
