//! `/api/v1/me` and `/api/v1/logout`: what a holder of a login token can do.

use actix_web::{HttpRequest, HttpResponse, web};

use super::{AppState, bearer};
use crate::error::ApiError;

#[utoipa::path(
    get,
    path = "/api/v1/me",
    tag = "account",
    summary = "Who holds this token",
    security(("bearer" = [])),
    responses((status = 200, description = "The account, phone masked, with its recent logins", body = super::answers::MeAnswer))
)]
pub async fn me(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let token = bearer(&req)?;
    Ok(HttpResponse::Ok().json(super::answers::MeAnswer::from(state.login.me(token).await?)))
}

#[utoipa::path(
    post,
    path = "/api/v1/logout",
    tag = "account",
    summary = "Revoke this token",
    security(("bearer" = [])),
    responses((status = 204, description = "Revoked: refused from now on, on every node"))
)]
pub async fn logout(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let token = bearer(&req)?;
    state.login.logout(token).await?;
    Ok(HttpResponse::NoContent().finish())
}
