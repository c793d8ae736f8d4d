//! WeChat's side of the HTTP API: server URL verification (GET) and pushes (POST).

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};

use super::{AppState, CALLBACK_LIMIT, query, read_body};
use crate::error::ApiError;
use crate::push;
use crate::wechat::AppClient;
use crate::wechat::callback::{self, OpenError, PushQuery};
use crate::wechat::dedup::Claim;
use crate::wechat::xml::XmlError;

fn app<'a>(state: &'a AppState, appid: &str) -> Result<&'a Arc<AppClient>, ApiError> {
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

/// `POST /wechat/{appid}/callback`: authenticate, dedupe, act within the budget, reply.
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
    let env = opened.envelope;
    let kind = crate::push::kind(&env.push);
    let key = format!("{}|{}", app.app_id, env.dedup_key(&opened.fields));
    let budget = Duration::from_millis(state.settings.wechat.callback_budget_ms);
    let seal = |reply: Option<&str>| {
        let body = callback::seal(&app.keys, &opened.mode, reply, &q.timestamp, &q.nonce);
        HttpResponse::Ok().content_type("application/xml; charset=utf-8").body(body)
    };
    match state.dedup.claim(&key, budget).await {
        Claim::Done(reply) => {
            done(kind, "duplicate");
            return Ok(seal(reply.as_deref()));
        }
        Claim::InFlight => {
            done(kind, "duplicate");
            return Ok(seal(None));
        }
        Claim::First => {}
    }
    // The work runs in its own task: if it outlasts the budget, WeChat still gets an
    // answer in time and the transition still completes.
    let work = {
        let (login, app, dedup, key) = (state.login.clone(), app.clone(), state.dedup.clone(), key.clone());
        actix_web::rt::spawn(async move {
            let result = push::handle(&login, &app, &env).await;
            match &result {
                Ok(reply) => dedup.complete(&key, reply.as_deref()).await,
                Err(_) => dedup.release(&key).await,
            }
            result
        })
    };
    match tokio::time::timeout(budget, work).await {
        Ok(Ok(Ok(reply))) => {
            done(kind, "ok");
            Ok(seal(reply.as_deref()))
        }
        Ok(Ok(Err(e))) => {
            done(kind, "error");
            Err(e)
        }
        Ok(Err(join)) => {
            done(kind, "error");
            Err(ApiError::internal(format!("push task failed: {join}")))
        }
        Err(_) => {
            done(kind, "late");
            Ok(seal(None))
        }
    }
}
