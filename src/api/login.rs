//! Handlers of the login endpoints: parse into domain types, call the login service.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::answers::{QrAnswer, SmsAnswer, StatusAnswer};
use super::{AppState, client, json_body, query};
use crate::error::ApiError;
use crate::ids::{Phone, PollId, SceneType, SmsCode};

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(default)]
#[schema(example = json!({"scene_type": "web", "image": false}))]
pub struct QrRequest {
    /// Which configured official account; default: the first one.
    #[schema(example = "default")]
    pub app: Option<String>,
    /// A label such as `web` or `tv`; default `web`.
    #[schema(pattern = "^[a-z0-9_-]{1,16}$", example = "web")]
    pub scene_type: Option<String>,
    /// Inline the QR picture as a data URI (default `true`).
    pub image: Option<bool>,
}

pub(super) fn poll_id(s: &str) -> Result<PollId, ApiError> {
    PollId::parse(s).ok_or_else(|| ApiError::InvalidRequest("uuid is malformed".into()))
}

fn phone(s: &str) -> Result<Phone, ApiError> {
    Phone::parse(s).ok_or(ApiError::InvalidPhone)
}

#[utoipa::path(
    post,
    path = "/api/v1/login/qrcode",
    tag = "login",
    summary = "A new login attempt and its WeChat QR code",
    request_body(content = Option<QrRequest>, description = "Optional; every field optional"),
    responses((status = 200, description = "The attempt's poll key and its QR code", body = QrAnswer))
)]
pub async fn create_qr(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let client = client(&req, &state);
    state.login.charge_qr(&client).await?;
    let body: QrRequest = json_body(payload).await?;
    let scene_type = match body.scene_type.as_deref() {
        None => SceneType::default(),
        Some(s) => SceneType::parse(s)
            .ok_or_else(|| ApiError::InvalidRequest("scene_type must match ^[a-z0-9_-]{1,16}$".into()))?,
    };
    let answer = state.login.create_qr(body.app.as_deref(), &scene_type, body.image.unwrap_or(true), &client).await?;
    Ok(HttpResponse::Ok().json(QrAnswer::from(answer)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatusQuery {
    /// The poll key of `POST /api/v1/login/qrcode`.
    #[param(pattern = "^[A-Za-z0-9_-]{22,64}$", example = "nq2uTBv3JXbWQm5Pq1hkOM7o3bRzA8a4fH0lX2rS9dE")]
    pub uuid: String,
    /// Seconds to hold the poll while the state is `loop` (clamped to `login.long_poll_max_secs`).
    #[serde(default)]
    #[param(value_type = Option<u64>, minimum = 0, example = 20)]
    pub wait: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/login/status",
    tag = "login",
    summary = "The attempt's state (long poll with `wait`)",
    description = "In `reg` the answer carries the token, once; every later poll says `expired`. \
        An unknown uuid answers `expired`.",
    params(StatusQuery),
    responses((status = 200, description = "The state", body = StatusAnswer))
)]

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
    Ok(HttpResponse::Ok().json(StatusAnswer::from(answer)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"uuid": "nq2uTBv3JXbWQm5Pq1hkOM7o3bRzA8a4fH0lX2rS9dE", "phone": "13800138000"}))]
pub struct SmsRequest {
    #[schema(pattern = "^[A-Za-z0-9_-]{22,64}$")]
    pub uuid: String,
    /// A mainland mobile number; `+86`, spaces and dashes accepted.
    #[schema(example = "13800138000")]
    pub phone: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/login/sms-code",
    tag = "login",
    summary = "Send an SMS code (state `not_reg` only)",
    request_body = SmsRequest,
    responses((status = 200, description = "The code was sent", body = SmsAnswer))
)]

pub async fn sms_code(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body: SmsRequest = json_body(payload).await?;
    let poll = poll_id(&body.uuid)?;
    let phone = phone(&body.phone)?;
    let answer = state.login.send_sms(&poll, &phone, &client(&req, &state)).await?;
    Ok(HttpResponse::Ok().json(SmsAnswer::from(answer)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"uuid": "nq2uTBv3JXbWQm5Pq1hkOM7o3bRzA8a4fH0lX2rS9dE", "phone": "13800138000", "code": "123456"}))]
pub struct BindRequest {
    #[schema(pattern = "^[A-Za-z0-9_-]{22,64}$")]
    pub uuid: String,
    #[schema(example = "13800138000")]
    pub phone: String,
    #[schema(pattern = "^[0-9]{6}$", example = "123456")]
    pub code: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/login/bind-phone",
    tag = "login",
    summary = "Bind the phone with its SMS code and log in (state `not_reg` only)",
    request_body = BindRequest,
    responses((status = 200, description = "The `reg` status body with the token; the attempt ends", body = StatusAnswer))
)]

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
    Ok(HttpResponse::Ok().json(StatusAnswer::from(answer)))
}
