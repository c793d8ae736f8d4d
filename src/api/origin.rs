//! Requests from browsers of other sites (docs/api.md): a `POST` under `/api/v1/` whose
//! `Origin` is neither `server.public_url`'s nor one of `server.cors_origins` is 403
//! `forbidden` before its handler runs, so it costs nothing (no limit charged, no quota,
//! no WeChat call, no SMS). A simple cross-site POST needs no CORS preflight, which is
//! why the CORS allow-list alone does not stop it. Requests without `Origin` (curl,
//! servers) are not browsers acting for another site and pass.

use actix_web::ResponseError;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::Next;
use actix_web::web;

use super::AppState;
use crate::config::ServerSettings;
use crate::error::ApiError;

/// The origins whose pages may POST to the API.
#[derive(Debug, Clone, Default)]
pub struct OriginPolicy {
    allowed: Vec<String>,
}

impl OriginPolicy {
    pub fn new(s: &ServerSettings) -> Self {
        let own = url::Url::parse(&s.public_url).ok().map(|u| u.origin().ascii_serialization());
        Self { allowed: own.into_iter().chain(s.cors_origins.iter().cloned()).collect() }
    }

    /// Origins compare as the browser serialises them (scheme://host[:port], no slash).
    pub fn allows(&self, origin: &[u8]) -> bool {
        self.allowed.iter().any(|a| a.as_bytes().eq_ignore_ascii_case(origin))
    }
}

/// The middleware of the `/api/v1` scope.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if req.method() == Method::POST
        && let Some(origin) = req.headers().get(header::ORIGIN)
        && let Some(state) = req.app_data::<web::Data<AppState>>()
        && !state.origins.allows(origin.as_bytes())
    {
        tracing::info!(origin = ?origin, path = req.path(), "cross-site POST refused");
        let (req, _) = req.into_parts();
        return Ok(ServiceResponse::new(req, ApiError::Forbidden.error_response()).map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_origin_and_listed_ones_only() {
        let s = ServerSettings {
            public_url: "https://login.example.com/base/".into(),
            cors_origins: vec!["https://www.example.com".into()],
            ..Default::default()
        };
        let p = OriginPolicy::new(&s);
        assert!(p.allows(b"https://login.example.com"));
        assert!(p.allows(b"https://www.example.com"));
        for bad in
            [&b"https://evil.example.net"[..], b"null", b"http://login.example.com", b"https://www.example.com.evil"]
        {
            assert!(!p.allows(bad), "{}", String::from_utf8_lossy(bad));
        }
    }
}
