//! `/api/v1/me` and `/api/v1/logout`: what a holder of a login token can do.

use actix_web::{HttpRequest, HttpResponse, web};

use super::{AppState, bearer};
use crate::error::ApiError;

pub async fn me(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let token = bearer(&req)?;
    Ok(HttpResponse::Ok().json(state.login.me(token).await?))
}

pub async fn logout(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let token = bearer(&req)?;
    state.login.logout(token).await?;
    Ok(HttpResponse::NoContent().finish())
}
