//! JWS compact serialization with our asymmetric keys: signing a token, and checking one
//! we signed. Verification is strict and small on purpose: exactly three parts, a header
//! naming an algorithm the caller allows and a `kid` we publish whose key is of that
//! algorithm (so `alg: none`, an HS256 token keyed with our public key, or an unknown
//! key all fail before any signature is checked), no `crit` extensions.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::keyring::Keyring;
use super::keys::{KeyPair, SigningAlg};

/// The longest token we read (bounded work per request).
pub const MAX_TOKEN_LEN: usize = 8192;

#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
}

#[derive(Deserialize)]
struct ReadHeader {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
    crit: Option<serde_json::Value>,
}

/// `typ` of a token, as its header says it.
pub const TYP_JWT: &str = "JWT";
/// RFC 9068 access tokens.
pub const TYP_ACCESS: &str = "at+jwt";

/// The compact JWS of `claims`, signed by `key`.
pub fn sign<C: Serialize>(key: &KeyPair, typ: &str, claims: &C) -> String {
    let header =
        serde_json::to_vec(&Header { alg: key.alg.as_str(), typ, kid: key.kid() }).expect("a header serializes");
    let payload = serde_json::to_vec(claims).expect("claims serialize");
    let mut out = String::with_capacity(64 + 4 * (header.len() + payload.len()) / 3 + 400);
    URL_SAFE_NO_PAD.encode_string(&header, &mut out);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload, &mut out);
    let sig = key.sign(out.as_bytes());
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(sig, &mut out);
    out
}

/// A verified token's header type and payload bytes.
#[derive(Debug)]
pub struct Verified {
    pub typ: Option<String>,
    pub alg: SigningAlg,
    pub payload: Vec<u8>,
}

/// The payload of a token signed by one of `keys`' published keys with one of `allowed`.
pub fn verify(token: &str, keys: &Keyring, allowed: &[SigningAlg]) -> Option<Verified> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let mut parts = token.split('.');
    let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || s.is_empty() {
        return None;
    }
    let header: ReadHeader = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).ok()?).ok()?;
    if header.crit.is_some() {
        return None;
    }
    let alg = SigningAlg::parse(&header.alg).filter(|a| allowed.contains(a))?;
    let verifier = keys.verifier(header.kid.as_deref()?)?;
    if verifier.alg != alg {
        return None;
    }
    let sig = URL_SAFE_NO_PAD.decode(s).ok()?;
    if !verifier.verify(&token.as_bytes()[..h.len() + 1 + p.len()], &sig) {
        return None;
    }
    let payload = URL_SAFE_NO_PAD.decode(p).ok()?;
    Some(Verified { typ: header.typ, alg, payload })
}
