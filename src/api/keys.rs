//! `GET /.well-known/jwks.json`: the public keys our tokens are signed with (RFC 7517),
//! so a relying service checks a token with no secret of ours. Cacheable for less than
//! the publish delay of a rotated key.

use actix_web::http::header;
use actix_web::{HttpResponse, web};

use super::AppState;

pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    match state.login.tokens().keyring() {
        Some(ring) => HttpResponse::Ok()
            .content_type("application/json")
            .insert_header((header::CACHE_CONTROL, format!("public, max-age={}", ring.jwks_max_age())))
            .body(ring.jwks().to_string()),
        // HS256: nothing is public.
        None => HttpResponse::Ok()
            .content_type("application/json")
            .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
            .body(r#"{"keys":[]}"#),
    }
}
