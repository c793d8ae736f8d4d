//! `ApiError`: every error the HTTP API can answer, as docs/api.md lists them, mapped to a
//! status and the `{"error": code, "message": text}` body in this one place.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("not a mainland China mobile number")]
    InvalidPhone,
    #[error("wrong or dead code")]
    InvalidCode { attempts_left: u32 },
    #[error("missing, malformed, expired or revoked token")]
    Unauthorized,
    /// A browser POST from a page of another site (docs/api.md "Requests from browsers of
    /// other sites").
    #[error("requests from this origin are not allowed")]
    Forbidden,
    #[error("no such app")]
    UnknownApp,
    #[error("{0}")]
    WrongState(String),
    #[error("this phone number is bound to another WeChat user")]
    PhoneTaken,
    #[error("the login attempt has expired")]
    Expired,
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("{what}")]
    RateLimited { what: String, retry_after_secs: u64 },
    #[error("WeChat error: {0}")]
    Wechat(String),
    #[error("the SMS could not be sent")]
    SmsFailed,
    #[error("the service is at capacity, retry shortly")]
    Overloaded { retry_after_secs: u64 },
    /// The cause goes to the log, never to the client.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::InvalidPhone => "invalid_phone",
            ApiError::InvalidCode { .. } => "invalid_code",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden => "forbidden",
            ApiError::UnknownApp => "unknown_app",
            ApiError::WrongState(_) => "wrong_state",
            ApiError::PhoneTaken => "phone_taken",
            ApiError::Expired => "expired",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Wechat(_) => "wechat_error",
            ApiError::SmsFailed => "sms_failed",
            ApiError::Overloaded { .. } => "overloaded",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<crate::engine::EngineError> for ApiError {
    fn from(_: crate::engine::EngineError) -> Self {
        ApiError::Overloaded { retry_after_secs: 1 }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::Internal(format!("database: {e}"))
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::InvalidRequest(_) | ApiError::InvalidPhone | ApiError::InvalidCode { .. } => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::UnknownApp => StatusCode::NOT_FOUND,
            ApiError::WrongState(_) | ApiError::PhoneTaken => StatusCode::CONFLICT,
            ApiError::Expired => StatusCode::GONE,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Wechat(_) | ApiError::SmsFailed => StatusCode::BAD_GATEWAY,
            ApiError::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(cause) = self {
            tracing::error!(%cause, "internal error");
        }
        let mut body = json!({"error": self.code(), "message": self.to_string()});
        if let ApiError::InvalidCode { attempts_left } = self {
            body["attempts_left"] = json!(attempts_left);
        }
        let mut resp = HttpResponse::build(self.status_code());
        resp.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
        match self {
            ApiError::RateLimited { retry_after_secs, .. } | ApiError::Overloaded { retry_after_secs } => {
                resp.insert_header((header::RETRY_AFTER, retry_after_secs.max(&1).to_string()));
            }
            ApiError::Unauthorized => {
                resp.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            }
            _ => {}
        }
        resp.json(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every docs/api.md code maps to its status; a variant added without a mapping fails here.
    #[test]
    fn codes_and_statuses_match_the_contract() {
        let all = [
            (ApiError::InvalidRequest("x".into()), "invalid_request", 400),
            (ApiError::InvalidPhone, "invalid_phone", 400),
            (ApiError::InvalidCode { attempts_left: 1 }, "invalid_code", 400),
            (ApiError::Unauthorized, "unauthorized", 401),
            (ApiError::Forbidden, "forbidden", 403),
            (ApiError::UnknownApp, "unknown_app", 404),
            (ApiError::WrongState("x".into()), "wrong_state", 409),
            (ApiError::PhoneTaken, "phone_taken", 409),
            (ApiError::Expired, "expired", 410),
            (ApiError::PayloadTooLarge, "payload_too_large", 413),
            (ApiError::RateLimited { what: "x".into(), retry_after_secs: 3 }, "rate_limited", 429),
            (ApiError::Wechat("x".into()), "wechat_error", 502),
            (ApiError::SmsFailed, "sms_failed", 502),
            (ApiError::Overloaded { retry_after_secs: 1 }, "overloaded", 503),
            (ApiError::Internal("x".into()), "internal", 500),
        ];
        for (e, code, status) in all {
            assert_eq!((e.code(), e.status_code().as_u16()), (code, status));
            let r = e.error_response();
            let has_retry = r.headers().contains_key(header::RETRY_AFTER);
            assert_eq!(has_retry, status == 429 || status == 503, "{code}");
        }
    }
}
