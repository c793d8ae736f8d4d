//! What a request must pass before any handler: forwarding headers we can read when
//! they come from a trusted proxy (else `400 invalid_request`, never the proxy's own
//! address: see [`crate::net`]).

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{ResponseError, web};

use super::AppState;
use crate::error::ApiError;

/// The middleware (innermost: the request span, metrics and security headers see its answers).
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if let Some(state) = req.app_data::<web::Data<AppState>>()
        && let Err(e) = super::client_ip(req.request(), &state.ip_policy)
    {
        let answer = ApiError::InvalidRequest(e.to_string()).error_response();
        return Ok(req.into_response(answer).map_into_right_body());
    }
    next.call(req).await.map(ServiceResponse::map_into_left_body)
}
