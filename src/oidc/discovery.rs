//! `GET /.well-known/openid-configuration`: what a relying party's library reads to
//! configure itself (OpenID Connect Discovery 1.0).

use actix_web::http::header;
use actix_web::{HttpResponse, web};

use super::{Provider, SCOPES};

pub async fn configuration(p: web::Data<Provider>) -> HttpResponse {
    let mut algs: Vec<&str> = vec!["RS256"];
    for c in &p.settings.clients {
        let a = c.id_token_alg.as_str();
        if !algs.contains(&a) {
            algs.push(a);
        }
    }
    let doc = serde_json::json!({
        "issuer": p.issuer,
        "authorization_endpoint": p.url("/oidc/authorize"),
        "token_endpoint": p.url("/oidc/token"),
        "userinfo_endpoint": p.url("/oidc/userinfo"),
        "jwks_uri": p.url("/.well-known/jwks.json"),
        "end_session_endpoint": p.url("/oidc/logout"),
        "revocation_endpoint": p.url("/oidc/revoke"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "scopes_supported": SCOPES,
        "claims_supported": [
            "iss", "sub", "aud", "azp", "exp", "iat", "auth_time", "nonce", "amr", "sid",
            "phone_number", "phone_number_verified", "preferred_username", "updated_at", "email", "email_verified"
        ],
        "prompt_values_supported": ["none", "login"],
        "authorization_response_iss_parameter_supported": true,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
    });
    HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "public, max-age=300")).json(doc)
}
