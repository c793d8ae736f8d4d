//! `POST /oidc/token` (authorization code with PKCE, refresh with rotation and reuse
//! detection) and `POST /oidc/revoke` (RFC 7009).
//!
//! Errors are RFC 6749 §5.2 JSON. Failures count against the calling address and the
//! client it names (`limits.oidc_token_failures_*`); past either, the endpoint answers
//! 429 before looking at the request, so guessing codes or secrets stops there.

use std::collections::HashMap;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use super::client_auth::{self, Refusal};
use super::{Provider, claims, now, param, params};
use crate::api::AppState;
use crate::config::OidcClient;
use crate::limits::Kind;
use crate::metrics::labels::{OidcCode, OidcCodeRefusal, OidcGrant};
use crate::store::oidc::{CodeTake, Grant, RefreshTake, new_secret};

/// An RFC 6749 §5.2 error answer.
struct TokenError {
    status: StatusCode,
    error: &'static str,
    description: &'static str,
    /// Counted as a failure of the caller (not a malformed request of a good client).
    failure: bool,
}

fn err(error: &'static str, description: &'static str) -> TokenError {
    TokenError { status: StatusCode::BAD_REQUEST, error, description, failure: true }
}

fn grant_refused(description: &'static str) -> TokenError {
    err("invalid_grant", description)
}

impl TokenError {
    fn response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        res.insert_header((header::CACHE_CONTROL, "no-store")).insert_header((header::PRAGMA, "no-cache"));
        if self.status == StatusCode::UNAUTHORIZED {
            res.insert_header((header::WWW_AUTHENTICATE, r#"Basic realm="scanlogin""#));
        }
        res.json(serde_json::json!({"error": self.error, "error_description": self.description}))
    }
}

fn client_refused(r: Refusal) -> TokenError {
    match r {
        Refusal::Invalid => TokenError {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_client",
            description: "client authentication failed",
            failure: true,
        },
        Refusal::Malformed(why) => err("invalid_request", why),
    }
}

/// The form of a token or revocation request, or why it cannot be read.
fn form(req: &HttpRequest, body: &[u8]) -> Result<HashMap<String, String>, TokenError> {
    let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded") {
        return Err(err("invalid_request", "the body must be application/x-www-form-urlencoded"));
    }
    std::str::from_utf8(body)
        .ok()
        .filter(|_| body.len() <= 16 * 1024)
        .and_then(params)
        .ok_or(err("invalid_request", "the form is malformed (a parameter repeats or is too long)"))
}

/// Refuses a caller locked for failures (before the request is looked at).
async fn locked(state: &AppState, ip: &str, client: &str) -> Option<HttpResponse> {
    let limits = state.login.limits();
    let refused = match limits.locked(Kind::TokenFailuresPerIp, ip).await {
        Some(r) => Some(r),
        None if !client.is_empty() => limits.locked(Kind::TokenFailuresPerClient, client).await,
        None => None,
    }?;
    Some(
        HttpResponse::TooManyRequests()
            .insert_header((header::RETRY_AFTER, refused.retry_after_secs.to_string()))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(serde_json::json!({"error": "rate_limited", "error_description": refused.message()})),
    )
}

async fn count_failure(state: &AppState, ip: &str, client: &str) {
    let limits = state.login.limits();
    limits.wrong_code(Kind::TokenFailuresPerIp, ip).await;
    if !client.is_empty() {
        limits.wrong_code(Kind::TokenFailuresPerClient, client).await;
    }
}

/// Who calls the token or revocation endpoint, before it is authenticated.
struct Caller {
    /// The address's limit bucket.
    ip: String,
    form: HashMap<String, String>,
    /// The registered client it names ("" for none or an unknown one).
    claimed: String,
}

/// The form and the caller; an answer already when the form is unreadable or the caller
/// is locked for failures.
async fn caller(req: &HttpRequest, body: &[u8], p: &Provider, state: &AppState) -> Result<Caller, HttpResponse> {
    let ip = crate::net::limit_bucket(crate::api::client(req, state).ip).to_string();
    let form = form(req, body).map_err(|e| e.response())?;
    let claimed = client_auth::claimed(req, &form);
    let claimed = if p.client(&claimed).is_some() { claimed } else { String::new() };
    if let Some(refused) = locked(state, &ip, &claimed).await {
        return Err(refused);
    }
    Ok(Caller { ip, form, claimed })
}

pub async fn token(
    req: HttpRequest,
    body: web::Bytes,
    p: web::Data<Provider>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let Caller { ip, form: f, claimed } = match caller(&req, &body, &p, &state).await {
        Ok(c) => c,
        Err(refused) => return refused,
    };
    let result = match client_auth::authenticate(&p, &req, &f) {
        Err(r) => Err(client_refused(r)),
        Ok(client) => match param(&f, "grant_type") {
            Some("authorization_code") => exchange_code(&p, &state, client, &f).await,
            Some("refresh_token") => refresh(&p, &state, client, &f).await,
            Some(_) => Err(err("unsupported_grant_type", "grant_type must be authorization_code or refresh_token")),
            None => Err(err("invalid_request", "grant_type is missing")),
        },
    };
    match result {
        Ok(body) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::PRAGMA, "no-cache"))
            .json(body),
        Err(e) => {
            if e.failure {
                count_failure(&state, &ip, &claimed).await;
            }
            e.response()
        }
    }
}

/// PKCE S256: BASE64URL(SHA-256(verifier)) equals the challenge (RFC 7636 §4.6).
fn verifier_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    well_formed && bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

async fn exchange_code(
    p: &Provider,
    state: &AppState,
    client: &OidcClient,
    f: &HashMap<String, String>,
) -> Result<serde_json::Value, TokenError> {
    let code = param(f, "code").ok_or(err("invalid_request", "code is missing"))?;
    let id = &client.client_id;
    let refuse = |reason, why| {
        p.metrics.oidc_code_refused(id, reason);
        grant_refused(why)
    };
    let t = now();
    let taken = p.store.take_code(code, t).await.map_err(|e| internal(&e))?;
    let stored = match taken {
        CodeTake::Fresh(c) => c,
        CodeTake::Unknown => return Err(refuse(OidcCodeRefusal::Unknown, "unknown authorization code")),
        CodeTake::Replayed { access, family } => {
            // RFC 6749 §4.1.2: a code used twice revokes what it was exchanged for.
            if let Some((jti, exp)) = access {
                let _ = state.login.revocations().revoke_id(&jti, exp).await;
            }
            if let Some(family) = family {
                let _ = p.store.revoke_family(&family).await;
            }
            return Err(refuse(OidcCodeRefusal::Replayed, "the authorization code was used already"));
        }
    };
    if stored.grant.client_id != *id {
        return Err(refuse(OidcCodeRefusal::OtherClient, "the code was issued to another client"));
    }
    if stored.expires_at <= t {
        return Err(refuse(OidcCodeRefusal::Expired, "the authorization code has expired"));
    }
    if param(f, "redirect_uri") != Some(stored.redirect_uri.as_str()) {
        return Err(refuse(OidcCodeRefusal::RedirectUri, "redirect_uri differs from the authorization request's"));
    }
    match (stored.code_challenge.is_empty(), param(f, "code_verifier")) {
        (true, None) => {}
        (false, Some(v)) if verifier_matches(v, &stored.code_challenge) => {}
        _ => return Err(refuse(OidcCodeRefusal::Verifier, "the code_verifier does not match the code_challenge")),
    }
    let (body, jti, exp, family) = tokens(p, state, client, &stored.grant, &stored.nonce, None).await?;
    match p.store.code_issued(code, &jti, exp, family.as_deref()).await {
        Ok(false) => {}
        // Presented again while this exchange ran: what it issued is revoked at once.
        Ok(true) => {
            let _ = state.login.revocations().revoke_id(&jti, exp).await;
            if let Some(f) = &family {
                let _ = p.store.revoke_family(f).await;
            }
        }
        Err(e) => tracing::warn!(error = %e, "issued tokens not noted on their code (a replay could not revoke them)"),
    }
    p.metrics.oidc_code(id, OidcCode::Exchanged);
    p.metrics.oidc_tokens(id, OidcGrant::AuthorizationCode);
    Ok(body)
}

async fn refresh(
    p: &Provider,
    state: &AppState,
    client: &OidcClient,
    f: &HashMap<String, String>,
) -> Result<serde_json::Value, TokenError> {
    let token = param(f, "refresh_token").ok_or(err("invalid_request", "refresh_token is missing"))?;
    let t = now();
    match p.store.take_refresh(token, t).await.map_err(|e| internal(&e))? {
        RefreshTake::Unknown => Err(grant_refused("unknown refresh token")),
        RefreshTake::Revoked => Err(grant_refused("the refresh token was revoked")),
        RefreshTake::Reused { .. } => {
            p.metrics.oidc_refresh_reuse(&client.client_id);
            tracing::warn!(client = %client.client_id, "a refresh token was used twice: its family is revoked");
            Err(grant_refused("the refresh token was used already; its family is revoked"))
        }
        RefreshTake::Fresh { grant, family, expires_at } => {
            if grant.client_id != client.client_id {
                let _ = p.store.revoke_family(&family).await;
                return Err(grant_refused("the refresh token was issued to another client"));
            }
            if expires_at <= t {
                return Err(grant_refused("the refresh token has expired"));
            }
            if p.store.session_over(&grant.sid, t).await.unwrap_or(true) {
                return Err(grant_refused("the session of this refresh token has ended"));
            }
            let (body, ..) = tokens(p, state, client, &grant, "", Some((family, expires_at))).await?;
            p.metrics.oidc_tokens(&client.client_id, OidcGrant::RefreshToken);
            Ok(body)
        }
    }
}

fn internal(e: &sqlx::Error) -> TokenError {
    tracing::error!(error = %e, "provider records unavailable");
    TokenError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        error: "temporarily_unavailable",
        description: "try again",
        failure: false,
    }
}

/// The access token, ID token and (with `offline_access`) the next refresh token of a
/// grant; `family`: the refresh family being rotated (its end kept), else a new one.
/// Also the access token's id and expiry, and the family.
async fn tokens(
    p: &Provider,
    state: &AppState,
    client: &OidcClient,
    grant: &Grant,
    nonce: &str,
    family: Option<(String, i64)>,
) -> Result<(serde_json::Value, String, i64, Option<String>), TokenError> {
    let t = now();
    let user = match state.login.users().get(&grant.authn.user_id).await {
        Ok(Some(u)) => u,
        Ok(None) => return Err(grant_refused("the user no longer exists")),
        Err(e) => return Err(internal(&e)),
    };
    let issuer = state.login.tokens();
    let (access, access_claims) = issuer.issue_access(&user.id, &client.client_id, &grant.scope, &grant.sid, t as u64);
    let ttl = issuer.ttl_secs() as i64;
    let id_claims = claims::id_token(&p.issuer, client, grant, &user, nonce, t, ttl);
    let id_token = issuer.sign_with(client.id_token_alg, &id_claims).ok_or_else(|| {
        tracing::error!(alg = %client.id_token_alg, "no signing key for the client's id_token_alg");
        TokenError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error: "server_error",
            description: "no signing key",
            failure: false,
        }
    })?;
    let mut body = serde_json::json!({
        "access_token": access.token,
        "token_type": "Bearer",
        "expires_in": access.expires_in,
        "id_token": id_token,
        "scope": grant.scope,
    });
    let offline = grant.scope.split_ascii_whitespace().any(|s| s == "offline_access");
    let mut family_id = None;
    if offline {
        let (family, ends) = family.unwrap_or_else(|| (new_secret(), t + p.settings.refresh_token_ttl_secs as i64));
        let refresh = new_secret();
        p.store.put_refresh(&refresh, &family, grant, ends).await.map_err(|e| internal(&e))?;
        body["refresh_token"] = serde_json::json!(refresh);
        family_id = Some(family);
    }
    Ok((body, access_claims.jti, access_claims.exp, family_id))
}

/// `POST /oidc/revoke`: a refresh token revokes its family, an access token itself;
/// 200 whatever the token was (RFC 7009 §2.2), once the client is authenticated.
pub async fn revoke(
    req: HttpRequest,
    body: web::Bytes,
    p: web::Data<Provider>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let Caller { ip, form: f, claimed } = match caller(&req, &body, &p, &state).await {
        Ok(c) => c,
        Err(refused) => return refused,
    };
    let client = match client_auth::authenticate(&p, &req, &f) {
        Ok(c) => c,
        Err(r) => {
            let e = client_refused(r);
            if e.failure {
                count_failure(&state, &ip, &claimed).await;
            }
            return e.response();
        }
    };
    let Some(token) = param(&f, "token") else {
        return err("invalid_request", "token is missing").response();
    };
    match p.store.refresh_family(token).await {
        Ok(Some((family, owner))) if owner == client.client_id => {
            let _ = p.store.revoke_family(&family).await;
        }
        Ok(_) => {
            if let Some(c) = state.login.tokens().verify(token)
                && c.client_id.as_deref() == Some(client.client_id.as_str())
            {
                let _ = state.login.revocations().revoke(&c).await;
            }
        }
        Err(e) => return internal(&e).response(),
    }
    HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7636 Appendix B's example.
    #[test]
    fn the_rfc7636_verifier_matches_its_challenge() {
        let v = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(verifier_matches(v, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
        assert!(!verifier_matches(v, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"));
        assert!(!verifier_matches("short", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
    }
}
