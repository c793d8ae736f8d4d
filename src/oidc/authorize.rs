//! `GET|POST /oidc/authorize` and `GET /oidc/continue/{id}`.
//!
//! The order of checks is RFC 6749 §4.1.2.1's: a request whose client or `redirect_uri`
//! cannot be trusted gets an error page and never a redirect (else we would be an open
//! redirector); every later error goes back to the client's `redirect_uri` as `error=`.
//! A valid request is served from the session (a code at once), or answers the login
//! page for a new attempt of the client's app, charged like a QR create.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};

use super::{COOKIE, Provider, SCOPES, error_page, now, param, params};
use crate::api::AppState;
use crate::error::ApiError;
use crate::ids::{PollKind, SceneType};
use crate::metrics::labels::{OidcAuthorize, OidcCode};
use crate::store::oidc::{AuthRequest, CodeGrant, Grant, Session, new_secret};

/// The longest `state` or `nonce` we keep.
const STATE_MAX: usize = 512;

pub async fn authorize_get(req: HttpRequest, p: web::Data<Provider>, state: web::Data<AppState>) -> HttpResponse {
    authorize(&req, req.query_string(), &p, &state).await
}

pub async fn authorize_post(
    req: HttpRequest,
    body: web::Bytes,
    p: web::Data<Provider>,
    state: web::Data<AppState>,
) -> HttpResponse {
    match std::str::from_utf8(&body) {
        Ok(form) if body.len() <= 16 * 1024 => authorize(&req, form, &p, &state).await,
        _ => error_page(StatusCode::BAD_REQUEST, "The sign-in request could not be read."),
    }
}

/// `uri` with `pairs` added to its query.
pub(super) fn with_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    match url::Url::parse(uri) {
        Ok(mut u) => {
            {
                let mut q = u.query_pairs_mut();
                for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
                    q.append_pair(k, v);
                }
            }
            u.to_string()
        }
        // Registered URIs are checked at start; this cannot happen for them.
        Err(_) => uri.to_string(),
    }
}

pub(super) fn found(location: &str) -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// The session cookie's value, if the request carries one.
pub(super) fn session_cookie(req: &HttpRequest) -> Option<String> {
    let header = req.headers().get(header::COOKIE)?.to_str().ok()?;
    header.split(';').filter_map(|c| c.trim().split_once('=')).find(|(k, _)| *k == COOKIE).map(|(_, v)| v.to_string())
}

/// `Set-Cookie` for the session (`max_age` 0: deletes it).
pub(super) fn cookie_header(p: &Provider, value: &str, max_age: u64) -> String {
    let secure = if p.secure_cookie { "; Secure" } else { "" };
    format!("{COOKIE}={value}; Path=/oidc; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")
}

/// What an authorize request asked for, once it is known to be a valid one.
struct Asked {
    req: AuthRequest,
    prompt_none: bool,
    prompt_login: bool,
    max_age: Option<i64>,
}

async fn authorize(req: &HttpRequest, raw: &str, p: &Provider, state: &AppState) -> HttpResponse {
    let Some(q) = params(raw) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "The sign-in request is malformed (a parameter repeats or is too long).",
        );
    };
    let client_id = param(&q, "client_id").unwrap_or("");
    let Some(client) = p.client(client_id) else {
        p.metrics.oidc_authorize(client_id, OidcAuthorize::Error);
        return error_page(StatusCode::BAD_REQUEST, "Unknown client: this application is not registered here.");
    };
    let Some(redirect_uri) = param(&q, "redirect_uri").filter(|r| client.redirect_uris.iter().any(|u| u == r)) else {
        p.metrics.oidc_authorize(client_id, OidcAuthorize::Error);
        return error_page(StatusCode::BAD_REQUEST, "The redirect_uri is not one registered for this client.");
    };
    let rp_state = param(&q, "state").unwrap_or("");
    let back = |error: &str, description: &str| {
        p.metrics.oidc_authorize(client_id, OidcAuthorize::Error);
        found(&with_query(
            redirect_uri,
            &[("error", error), ("error_description", description), ("state", rp_state), ("iss", &p.issuer)],
        ))
    };
    let asked = match read_request(&q, client, redirect_uri, rp_state) {
        Ok(a) => a,
        Err((error, description)) => return back(error, description),
    };
    let t = now();
    let session = match session_cookie(req) {
        Some(c) => p.store.session(&c, t).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "provider session not read; asking for a login");
            None
        }),
        None => None,
    };
    let usable = session.filter(|s| !asked.prompt_login && asked.max_age.is_none_or(|m| t - s.authn.auth_time <= m));
    if let Some(s) = usable {
        return match issue_code(p, &asked.req, &s).await {
            Ok(location) => {
                p.metrics.oidc_authorize(client_id, OidcAuthorize::Sso);
                found(&location)
            }
            Err(e) => {
                tracing::error!(error = %e, "provider code not stored");
                back("server_error", "the code could not be stored")
            }
        };
    }
    if asked.prompt_none {
        return back("login_required", "no session: the user must log in");
    }
    match new_attempt(req, p, state, client, &asked.req).await {
        Ok(attempt) => {
            p.metrics.oidc_authorize(client_id, OidcAuthorize::Page);
            let mut page = crate::pages::login_page(&state.settings, Some(&attempt));
            page.headers_mut().insert(header::CACHE_CONTROL, "no-store".parse().expect("a header value"));
            page
        }
        Err(e) => {
            p.metrics.oidc_authorize(client_id, OidcAuthorize::Error);
            let status = actix_web::ResponseError::status_code(&e);
            let mut page = error_page(status, &format!("No login could be started: {e}."));
            if let ApiError::RateLimited { retry_after_secs, .. } | ApiError::Overloaded { retry_after_secs } = e {
                page.headers_mut().insert(header::RETRY_AFTER, retry_after_secs.max(1).into());
            }
            page
        }
    }
}

/// The checks that answer with a redirect: response type, scope, PKCE, prompt, max_age.
fn read_request(
    q: &std::collections::HashMap<String, String>,
    client: &crate::config::OidcClient,
    redirect_uri: &str,
    rp_state: &str,
) -> Result<Asked, (&'static str, &'static str)> {
    if param(q, "response_type") != Some("code") {
        return Err(("unsupported_response_type", "only response_type=code is supported"));
    }
    if q.contains_key("request") || q.contains_key("request_uri") {
        return Err(("invalid_request", "request objects are not supported"));
    }
    let scope: Vec<&str> = param(q, "scope").unwrap_or("").split_ascii_whitespace().collect();
    if !scope.contains(&"openid") {
        return Err(("invalid_scope", "the scope must include openid"));
    }
    if scope.iter().any(|s| !SCOPES.contains(s)) {
        return Err(("invalid_scope", "unknown scope value"));
    }
    // In SCOPES' order, each once (a scope repeated in the request is granted once).
    let granted: Vec<&str> = SCOPES.iter().copied().filter(|s| scope.contains(s)).collect();
    let challenge = param(q, "code_challenge").unwrap_or("");
    match (param(q, "code_challenge_method"), challenge.is_empty()) {
        (Some("S256"), false) => {
            let ok =
                challenge.len() == 43 && challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err(("invalid_request", "code_challenge must be a base64url SHA-256 (43 characters)"));
            }
        }
        (Some(_), _) | (None, false) => {
            return Err(("invalid_request", "only code_challenge_method=S256 is supported (plain is refused)"));
        }
        (None, true) if client.is_public() => {
            return Err(("invalid_request", "a public client must use PKCE (code_challenge with S256)"));
        }
        (None, true) => {}
    }
    let nonce = param(q, "nonce").unwrap_or("");
    if nonce.len() > STATE_MAX || rp_state.len() > STATE_MAX {
        return Err(("invalid_request", "state and nonce are limited to 512 characters"));
    }
    let prompt: Vec<&str> = param(q, "prompt").unwrap_or("").split_ascii_whitespace().collect();
    let prompt_none = prompt.contains(&"none");
    if prompt_none && prompt.len() > 1 {
        return Err(("invalid_request", "prompt=none cannot be combined"));
    }
    let max_age = match param(q, "max_age") {
        None => None,
        Some(m) => {
            Some(m.parse::<u32>().map_err(|_| ("invalid_request", "max_age must be a number of seconds"))? as i64)
        }
    };
    Ok(Asked {
        req: AuthRequest {
            client_id: client.client_id.clone(),
            redirect_uri: redirect_uri.to_string(),
            scope: granted.join(" "),
            state: rp_state.to_string(),
            nonce: nonce.to_string(),
            code_challenge: challenge.to_string(),
        },
        prompt_none,
        prompt_login: prompt.contains(&"login"),
        max_age,
    })
}

/// A new provider attempt of the client's app, charged like a QR create; the page's
/// embedded JSON (the body of a QR create with `image: false`).
async fn new_attempt(
    req: &HttpRequest,
    p: &Provider,
    state: &AppState,
    client: &crate::config::OidcClient,
    asked: &AuthRequest,
) -> Result<serde_json::Value, ApiError> {
    let who = crate::api::client(req, state);
    p.login.charge_qr(&who).await?;
    let app = (!client.app.is_empty()).then_some(client.app.as_str());
    let scene = SceneType::parse("oidc").expect("a valid scene type");
    let qr = p.login.create_qr_for(app, &scene, false, &who, PollKind::Provider).await?;
    // Kept a minute past the attempt: a scan in its last second still finds it.
    p.store.put_request(&qr.poll, asked, now() + qr.expires_in as i64 + 60).await?;
    serde_json::to_value(crate::api::answers::QrAnswer::from(qr)).map_err(|e| ApiError::internal(e.to_string()))
}

/// A code for `asked`, in `session`; the redirect back to the client that carries it.
async fn issue_code(p: &Provider, asked: &AuthRequest, session: &Session) -> Result<String, sqlx::Error> {
    let code = new_secret();
    let grant = Grant {
        client_id: asked.client_id.clone(),
        scope: asked.scope.clone(),
        sid: session.sid.clone(),
        authn: session.authn.clone(),
    };
    let stored = CodeGrant {
        grant,
        redirect_uri: asked.redirect_uri.clone(),
        nonce: asked.nonce.clone(),
        code_challenge: asked.code_challenge.clone(),
        expires_at: now() + p.settings.code_ttl_secs as i64,
    };
    p.store.put_code(&code, &stored).await?;
    p.metrics.oidc_code(&asked.client_id, OidcCode::Issued);
    Ok(with_query(&asked.redirect_uri, &[("code", &code), ("state", &asked.state), ("iss", &p.issuer)]))
}

/// `GET /oidc/continue/{id}`: once, the session cookie and the redirect with a code.
pub async fn continue_login(path: web::Path<String>, p: web::Data<Provider>) -> HttpResponse {
    let id = path.into_inner();
    let gone = || {
        error_page(
            StatusCode::GONE,
            "This sign-in link was used already or has expired. Start again from the application.",
        )
    };
    if id.len() != 43 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return gone();
    }
    let t = now();
    let (asked, authn) = match p.store.take_continue(&id, t).await {
        Ok(Some(found)) => found,
        Ok(None) => return gone(),
        Err(e) => {
            tracing::error!(error = %e, "provider continue not read");
            return error_page(StatusCode::SERVICE_UNAVAILABLE, "The sign-in could not be completed; try again.");
        }
    };
    let ttl = p.settings.session_ttl_secs;
    let made = async {
        let (cookie, session) = p.store.new_session(&authn, t + ttl as i64).await?;
        let location = issue_code(&p, &asked, &session).await?;
        Ok::<_, sqlx::Error>((cookie, location))
    }
    .await;
    match made {
        Ok((cookie, location)) => {
            let mut res = found(&location);
            res.headers_mut().insert(
                header::SET_COOKIE,
                cookie_header(&p, &cookie, ttl).parse().expect("a cookie of URL-safe characters"),
            );
            res
        }
        Err(e) => {
            tracing::error!(error = %e, "provider session not stored");
            error_page(StatusCode::SERVICE_UNAVAILABLE, "The sign-in could not be completed; try again.")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_are_added_and_empty_ones_left_out() {
        let u = with_query("https://rp.example/cb?x=1", &[("code", "a b"), ("state", ""), ("iss", "http://i")]);
        assert_eq!(u, "https://rp.example/cb?x=1&code=a+b&iss=http%3A%2F%2Fi");
    }
}
