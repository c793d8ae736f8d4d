//! `GET|POST /oidc/userinfo` (a provider access token → the user's claims by scope) and
//! `GET|POST /oidc/logout` (RP-initiated logout: the session ends, its refresh tokens and
//! access tokens stop working, the browser goes back to a registered address).

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};

use super::authorize::{cookie_header, found, session_cookie, with_query};
use super::{Provider, claims, now, param, params};
use crate::api::AppState;

fn invalid_token(description: &str) -> HttpResponse {
    HttpResponse::Unauthorized()
        .insert_header((
            header::WWW_AUTHENTICATE,
            format!(r#"Bearer error="invalid_token", error_description="{description}""#),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({"error": "invalid_token", "error_description": description}))
}

pub async fn userinfo(req: HttpRequest, p: web::Data<Provider>, state: web::Data<AppState>) -> HttpResponse {
    let Ok(bearer) = crate::api::bearer(&req) else {
        return invalid_token("a Bearer access token is required");
    };
    // Verified, not revoked, its session live (the login service's checks).
    let Ok(c) = state.login.claims(bearer).await else {
        return invalid_token("the access token is invalid, expired or revoked");
    };
    let (Some(client_id), Some(scope)) = (c.client_id.as_deref(), c.scope.as_deref()) else {
        return invalid_token("not an access token of this provider");
    };
    let Some(client) = p.client(client_id) else {
        return invalid_token("the token's client is no longer registered");
    };
    match state.login.users().get(&c.sub).await {
        Ok(Some(user)) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(claims::userinfo(scope, &user, client)),
        Ok(None) => invalid_token("the user no longer exists"),
        Err(e) => {
            tracing::error!(error = %e, "userinfo: database");
            HttpResponse::ServiceUnavailable().insert_header((header::RETRY_AFTER, "1")).finish()
        }
    }
}

pub async fn logout_get(req: HttpRequest, p: web::Data<Provider>) -> HttpResponse {
    logout(&req, req.query_string(), &p).await
}

pub async fn logout_post(req: HttpRequest, body: web::Bytes, p: web::Data<Provider>) -> HttpResponse {
    match std::str::from_utf8(&body) {
        Ok(form) if body.len() <= 16 * 1024 => logout(&req, form, &p).await,
        _ => super::error_page(StatusCode::BAD_REQUEST, "The sign-out request could not be read."),
    }
}

async fn logout(req: &HttpRequest, raw: &str, p: &Provider) -> HttpResponse {
    let Some(q) = params(raw) else {
        return super::error_page(StatusCode::BAD_REQUEST, "The sign-out request is malformed.");
    };
    let t = now();
    // The hint names the client (for the redirect) and the session it logged in with.
    let hint = param(&q, "id_token_hint").and_then(|h| p.login.tokens().read_id_token(h));
    if param(&q, "id_token_hint").is_some() && hint.is_none() {
        return super::error_page(StatusCode::BAD_REQUEST, "The id_token_hint is not an ID token of this provider.");
    }
    let hinted = |k: &str| hint.as_ref().and_then(|h| h.get(k)).and_then(|v| v.as_str()).map(str::to_string);
    let client_id = hinted("aud").or_else(|| param(&q, "client_id").map(str::to_string));
    let mut sids: Vec<String> = hinted("sid").into_iter().collect();
    if let Some(cookie) = session_cookie(req)
        && let Ok(Some(s)) = p.store.session(&cookie, t).await
    {
        sids.push(s.sid);
    }
    for sid in &sids {
        if let Err(e) = p.store.end_session(sid, t).await {
            tracing::error!(error = %e, "provider session not ended");
            return super::error_page(StatusCode::SERVICE_UNAVAILABLE, "Signing out failed; try again.");
        }
    }
    let clear = cookie_header(p, "", 0);
    let target = param(&q, "post_logout_redirect_uri").filter(|uri| {
        client_id
            .as_deref()
            .and_then(|id| p.client(id))
            .is_some_and(|c| c.post_logout_redirect_uris.iter().any(|u| u == uri))
    });
    let mut res = match target {
        Some(uri) => found(&with_query(uri, &[("state", param(&q, "state").unwrap_or(""))])),
        None => crate::pages::message_page(StatusCode::OK, "Signed out", "You are signed out."),
    };
    res.headers_mut().insert(header::SET_COOKIE, clear.parse().expect("a cookie header"));
    res
}
