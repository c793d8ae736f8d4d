//! Handlers of the login endpoints: parse into domain types, call the login service.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::{AppState, client, json_body, query};
use crate::error::ApiError;
use crate::ids::{Phone, PollId, SceneType, SmsCode};

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct QrRequest {
    pub app: Option<String>,
    pub scene_type: Option<String>,
    pub image: Option<bool>,
}

fn poll_id(s: &str) -> Result<PollId, ApiError> {
    PollId::parse(s).ok_or_else(|| ApiError::InvalidRequest("uuid is malformed".into()))
}

fn phone(s: &str) -> Result<Phone, ApiError> {
    Phone::parse(s).ok_or(ApiError::InvalidPhone)
}

pub async fn create_qr(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    state.login.charge_qr(&client(&req, &state)).await?;
    let body: QrRequest = json_body(payload).await?;
    let scene_type = match body.scene_type.as_deref() {
        None => SceneType::default(),
        Some(s) => SceneType::parse(s)
            .ok_or_else(|| ApiError::InvalidRequest("scene_type must match ^[a-z0-9_-]{1,16}$".into()))?,
    };
    let answer = state.login.create_qr(body.app.as_deref(), &scene_type, body.image.unwrap_or(true)).await?;
    Ok(HttpResponse::Ok().json(answer))
}

#[derive(Deserialize)]
pub struct StatusQuery {
    pub uuid: String,
    #[serde(default)]
    pub wait: Option<String>,
}

pub async fn status(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let q: StatusQuery = query(&req)?;
    let poll = poll_id(&q.uuid)?;
    let wait = match q.wait.as_deref() {
        None | Some("") => 0,
        Some(w) => {
            w.parse::<u64>().map_err(|_| ApiError::InvalidRequest("wait must be a whole number of seconds".into()))?
        }
    };
    let answer = state.login.status(&poll, Duration::from_secs(wait), &client(&req, &state)).await?;
    Ok(HttpResponse::Ok().json(answer))
}

#[derive(Deserialize)]
pub struct SmsRequest {
    pub uuid: String,
    pub phone: String,
}

pub async fn sms_code(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body: SmsRequest = json_body(payload).await?;
    let poll = poll_id(&body.uuid)?;
    let phone = phone(&body.phone)?;
    let answer = state.login.send_sms(&poll, &phone, &client(&req, &state)).await?;
    Ok(HttpResponse::Ok().json(answer))
}

#[derive(Deserialize)]
pub struct BindRequest {
    pub uuid: String,
    pub phone: String,
    pub code: String,
}

pub async fn bind_phone(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body: BindRequest = json_body(payload).await?;
    let poll = poll_id(&body.uuid)?;
    let phone = phone(&body.phone)?;
    // A malformed code is a wrong code: it must not bypass the attempt counter's view.
    let code = SmsCode::parse(&body.code).ok_or(ApiError::InvalidRequest("code must be 6 digits".into()))?;
    let answer = state.login.bind_phone(&poll, &phone, &code, &client(&req, &state)).await?;
    Ok(HttpResponse::Ok().json(answer))
}
