//! Who is calling the token and revocation endpoints: `client_secret_basic`,
//! `client_secret_post`, or a public client naming itself (RFC 6749 §2.3). Secrets are
//! compared in constant time (as SHA-256 digests, so their lengths leak nothing either).

use std::collections::HashMap;

use actix_web::HttpRequest;
use actix_web::http::header;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use super::{Provider, param};
use crate::config::OidcClient;

/// Why a client was not authenticated.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `invalid_client` (401).
    Invalid,
    /// `invalid_request` (400): two methods at once, an unreadable header.
    Malformed(&'static str),
}

/// The client id the caller claims (for limits and metrics, before it is proven).
pub fn claimed(req: &HttpRequest, form: &HashMap<String, String>) -> String {
    basic(req)
        .ok()
        .flatten()
        .map(|(id, _)| id)
        .or_else(|| param(form, "client_id").map(str::to_string))
        .unwrap_or_default()
}

fn basic(req: &HttpRequest) -> Result<Option<(String, String)>, Refusal> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let v = value.to_str().map_err(|_| Refusal::Malformed("unreadable Authorization header"))?;
    let Some(b64) = v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic ")) else {
        return Err(Refusal::Malformed("only Basic client authentication is accepted in the header"));
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| Refusal::Malformed("the Basic credentials are not base64"))?;
    let text = String::from_utf8(raw).map_err(|_| Refusal::Malformed("the Basic credentials are not UTF-8"))?;
    let (id, secret) = text.split_once(':').ok_or(Refusal::Malformed("the Basic credentials lack a colon"))?;
    // RFC 6749 §2.3.1: both parts are form-urlencoded inside the header.
    let decode = |s: &str| url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned());
    Ok(Some((decode(id).unwrap_or_default(), decode(secret).unwrap_or_default())))
}

fn same_secret(given: &str, expected: &str) -> bool {
    let (a, b) = (Sha256::digest(given.as_bytes()), Sha256::digest(expected.as_bytes()));
    bool::from(a.ct_eq(&b))
}

/// The authenticated client.
pub fn authenticate<'a>(
    p: &'a Provider,
    req: &HttpRequest,
    form: &HashMap<String, String>,
) -> Result<&'a OidcClient, Refusal> {
    let header = basic(req)?;
    let form_secret = param(form, "client_secret");
    let (id, secret) = match (header, form_secret) {
        (Some(_), Some(_)) => return Err(Refusal::Malformed("use one client authentication method, not two")),
        (Some((id, secret)), None) => {
            if param(form, "client_id").is_some_and(|f| f != id) {
                return Err(Refusal::Malformed("client_id differs from the authenticated client"));
            }
            (id, Some(secret))
        }
        (None, secret) => (param(form, "client_id").unwrap_or("").to_string(), secret.map(str::to_string)),
    };
    let client = p.client(&id).ok_or(Refusal::Invalid)?;
    match (client.is_public(), secret) {
        (true, None) => Ok(client),
        (false, Some(s)) if same_secret(&s, client.client_secret.expose()) => Ok(client),
        _ => Err(Refusal::Invalid),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_compare_by_value() {
        assert!(super::same_secret("s3cret", "s3cret"));
        assert!(!super::same_secret("s3cret", "s3cre"));
        assert!(!super::same_secret("", "x"));
    }
}
