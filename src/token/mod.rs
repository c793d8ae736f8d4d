//! Login tokens: JWTs with `sub`, `iat`, `exp`, `jti`, `iss` and `aud`, signed with an
//! asymmetric key of the [`keyring`] (`token.algorithm`, ES256 by default), or — only when
//! configured — HS256 with `token.secret` as the shared key.
//!
//! Verification pins the algorithm (so `alg: none` and key-confusion tricks fail), the
//! key (a `kid` we publish), the issuer and the audience; revocation is checked by the
//! caller against the store.
//!
//! With HS256 every token names its key too (`kid`: a hash derived from the secret, which
//! tells nothing of it), so a secret can be rotated: `token.secret_previous` keeps the
//! tokens of the old one valid until they expire, while new ones are signed with the
//! current secret. A `kid` of neither is refused.

pub mod jws;
pub mod keyring;
pub mod keys;
pub mod logouts;
mod vouched;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};

use crate::config::TokenSettings;
pub use keyring::Keyring;
pub use keys::SigningAlg;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub iss: String,
    pub aud: String,
    /// Access tokens of the provider (RFC 9068): the client, the granted scope and the
    /// provider session they belong to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// A freshly minted token.
#[derive(Debug, Clone)]
pub struct Issued {
    pub token: String,
    pub expires_in: u64,
}

/// How tokens are signed.
#[derive(Clone)]
enum Signing {
    /// HS256 with the configured secret: the current key, then the previous one, by `kid`.
    Shared { enc: EncodingKey, kid: String, dec: Vec<(String, DecodingKey)> },
    /// An asymmetric key of the keyring, of this algorithm.
    Keys(SigningAlg),
}

#[derive(Clone)]
pub struct TokenIssuer {
    signing: Signing,
    /// The asymmetric keys (with HS256 login tokens, the provider's ID-token keys).
    keyring: Option<Keyring>,
    /// The provider's issuer: access tokens carry it (and `typ: at+jwt`).
    access_issuer: Option<String>,
    /// Tokens signed or verified here: checked again without public-key work.
    vouched: std::sync::Arc<vouched::Vouched>,
    ttl_secs: u64,
    issuer: String,
    audience: String,
}

impl TokenIssuer {
    /// HS256 tokens keyed with `token.secret` (and checked with `secret_previous` too).
    pub fn shared_secret(s: &TokenSettings) -> Self {
        let kid = |secret: &crate::config::Secret| hex::encode(&secret.derive("token-kid/v1")[..8]);
        let dec = std::iter::once(&s.secret)
            .chain((!s.secret_previous.is_empty()).then_some(&s.secret_previous))
            .map(|secret| (kid(secret), DecodingKey::from_secret(secret.expose().as_bytes())))
            .collect();
        let signing =
            Signing::Shared { enc: EncodingKey::from_secret(s.secret.expose().as_bytes()), kid: kid(&s.secret), dec };
        Self {
            signing,
            keyring: None,
            access_issuer: None,
            vouched: Default::default(),
            ttl_secs: s.ttl_secs,
            issuer: s.issuer.clone(),
            audience: s.audience.clone(),
        }
    }

    /// Tokens signed by the keyring's current `alg` key.
    pub fn with_keys(s: &TokenSettings, keyring: Keyring, alg: SigningAlg) -> Self {
        Self { signing: Signing::Keys(alg), keyring: Some(keyring), ..Self::shared_secret(s) }
    }

    /// HS256 login tokens, and the keyring for the provider's ID tokens.
    pub fn with_keyring(self, keyring: Keyring) -> Self {
        Self { keyring: Some(keyring), ..self }
    }

    /// The provider's issuer: access tokens it issues are accepted too.
    pub fn with_access_issuer(self, issuer: String) -> Self {
        Self { access_issuer: Some(issuer), ..self }
    }

    /// The published keys (none with HS256 and no provider).
    pub fn keyring(&self) -> Option<&Keyring> {
        self.keyring.as_ref()
    }

    fn sign(&self, typ: &str, claims: &Claims) -> String {
        match (&self.signing, &self.keyring) {
            (Signing::Shared { enc, kid, .. }, _) => {
                let header =
                    Header { kid: Some(kid.clone()), typ: Some(typ.to_string()), ..Header::new(Algorithm::HS256) };
                encode(&header, claims, enc).expect("HS256 signing cannot fail")
            }
            (Signing::Keys(alg), Some(keyring)) => {
                // The keyring always has a key of each configured algorithm (made at start).
                let key = keyring.signer(*alg).expect("a signing key of the configured algorithm");
                let token = jws::sign(&key, typ, claims);
                self.vouched.add(&token, vouched::Entry { exp: claims.exp, access: typ == jws::TYP_ACCESS });
                token
            }
            (Signing::Keys(_), None) => unreachable!("with_keys sets the keyring"),
        }
    }

    /// An access token of the provider (RFC 9068): `typ: at+jwt`, the provider's issuer,
    /// the client, scope and session. Accepted by `/oidc/userinfo` and `/api/v1/me`.
    pub fn issue_access(
        &self,
        user_id: &str,
        client_id: &str,
        scope: &str,
        sid: &str,
        now_secs: u64,
    ) -> (Issued, Claims) {
        let claims = Claims {
            sub: user_id.to_string(),
            iat: now_secs as i64,
            exp: (now_secs + self.ttl_secs) as i64,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            iss: self.access_issuer.clone().unwrap_or_else(|| self.issuer.clone()),
            aud: self.audience.clone(),
            client_id: Some(client_id.to_string()),
            scope: Some(scope.to_string()),
            sid: Some(sid.to_string()),
        };
        let token = self.sign(jws::TYP_ACCESS, &claims);
        (Issued { token, expires_in: self.ttl_secs }, claims)
    }

    /// An ID token (or any provider-signed JWT) with `alg` of the keyring.
    pub fn sign_with(&self, alg: SigningAlg, claims: &serde_json::Value) -> Option<String> {
        let key = self.keyring.as_ref()?.signer(alg)?;
        Some(jws::sign(&key, jws::TYP_JWT, claims))
    }

    /// The claims of an ID token we signed for the provider, expired or not (an
    /// `id_token_hint` names a past login).
    pub fn read_id_token(&self, token: &str) -> Option<serde_json::Value> {
        let v = jws::verify(token, self.keyring.as_ref()?, &SigningAlg::ALL)?;
        let claims: serde_json::Value = serde_json::from_slice(&v.payload).ok()?;
        (claims.get("iss").and_then(|i| i.as_str()) == self.access_issuer.as_deref()).then_some(claims)
    }

    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    pub fn issue(&self, user_id: &str, now_secs: u64) -> Issued {
        let claims = Claims {
            sub: user_id.to_string(),
            iat: now_secs as i64,
            exp: (now_secs + self.ttl_secs) as i64,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            client_id: None,
            scope: None,
            sid: None,
        };
        Issued { token: self.sign(jws::TYP_JWT, &claims), expires_in: self.ttl_secs }
    }

    /// A login token, or an access token of the provider: the issuer that goes with its
    /// `typ` (an access token always names its client).
    fn issued_by_us(&self, typ: Option<&str>, c: &Claims) -> bool {
        let login = typ.is_none_or(|t| t.eq_ignore_ascii_case(jws::TYP_JWT));
        (login && c.iss == self.issuer && c.client_id.is_none())
            || (is_access(typ) && Some(&c.iss) == self.access_issuer.as_ref() && c.client_id.is_some())
    }

    /// What every token of ours must satisfy once its signature holds: ours by issuer and
    /// type, our audience, not expired at `now`.
    fn accepted(&self, typ: Option<&str>, c: &Claims, now: i64) -> bool {
        self.issued_by_us(typ, c) && c.aud == self.audience && now < c.exp
    }

    /// The claims of a valid token, or `None` (forged, malformed, expired, wrong aud/iss).
    pub fn verify(&self, token: &str) -> Option<Claims> {
        if token.len() > 4096 {
            return None;
        }
        match (&self.signing, &self.keyring) {
            (Signing::Shared { dec, .. }, _) => {
                let mut v = Validation::new(Algorithm::HS256);
                v.leeway = 0;
                v.set_audience(&[&self.audience]);
                v.set_required_spec_claims(&["exp", "sub", "aud", "iss"]);
                // The key the token names; one without a `kid` (signed before keys were
                // named) can only be the current secret's.
                let header = jsonwebtoken::decode_header(token).ok()?;
                let (_, key) = match header.kid {
                    Some(kid) => dec.iter().find(|(k, _)| *k == kid)?,
                    None => dec.first()?,
                };
                let c = decode::<Claims>(token, key, &v).ok()?.claims;
                self.issued_by_us(header.typ.as_deref(), &c).then_some(c)
            }
            (Signing::Keys(alg), Some(keyring)) => {
                let now = crate::wall::unix_secs() as i64;
                // Signed or verified here before: its claims are read, its signature known.
                if let Some(known) = self.vouched.get(token) {
                    let payload = token.split('.').nth(1)?;
                    let c: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
                    let typ = if known.access { jws::TYP_ACCESS } else { jws::TYP_JWT };
                    return self.accepted(Some(typ), &c, now).then_some(c);
                }
                let v = jws::verify(token, keyring, &[*alg])?;
                let c: Claims = serde_json::from_slice(&v.payload).ok()?;
                let ok = self.accepted(v.typ.as_deref(), &c, now);
                if ok {
                    self.vouched.add(token, vouched::Entry { exp: c.exp, access: is_access(v.typ.as_deref()) });
                }
                ok.then_some(c)
            }
            (Signing::Keys(_), None) => None,
        }
    }
}

/// Whether a JWS `typ` header says "access token" (RFC 9068).
fn is_access(typ: Option<&str>) -> bool {
    typ.is_some_and(|t| t.eq_ignore_ascii_case(jws::TYP_ACCESS))
}

/// Revoked token ids, until their token would have expired anyway. The database is the
/// record (a flushed, evicted or restarted Redis must not bring a logged-out token back);
/// Redis, when configured, is a cache in front of it shared by every node: a hit there
/// answers "revoked" without a query, a miss or an unreachable Redis asks the database.
///
/// A single node is the only writer of that table, so it also keeps the whole set in
/// memory ([`Revocations::sole_writer`]): loaded at start, added to after each stored
/// revocation, and then the only place `is_revoked` looks. Past [`LOCAL_MAX`] entries it
/// stops trusting memory and asks the database again (memory stays bounded).
#[derive(Clone)]
pub struct Revocations {
    db: crate::store::Users,
    cache: Option<crate::kv::Kv>,
    local: Option<std::sync::Arc<Local>>,
    /// Users logged out everywhere (the admin API): their older tokens are refused.
    pub logouts: logouts::Logouts,
}

/// Revoked tokens a single node keeps in memory at most.
pub const LOCAL_MAX: usize = 1_000_000;

/// The in-memory set of a sole writer: jti → expiry (Unix seconds).
#[derive(Default)]
struct Local {
    map: std::sync::Mutex<std::collections::HashMap<String, i64>>,
    /// Loaded from the database and within its bound: memory is the whole truth.
    trusted: std::sync::atomic::AtomicBool,
    swept_at: std::sync::atomic::AtomicI64,
}

impl Local {
    fn map(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, i64>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn trusted(&self) -> bool {
        self.trusted.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Adds a stored revocation; drops expired ones at most once a minute.
    fn add(&self, jti: &str, exp: i64) {
        use std::sync::atomic::Ordering;
        let now = crate::wall::unix_secs() as i64;
        let mut map = self.map();
        if self.swept_at.swap(now, Ordering::Relaxed) + 60 <= now {
            map.retain(|_, e| *e >= now);
        }
        map.insert(jti.to_string(), exp);
        if map.len() > LOCAL_MAX {
            self.trusted.store(false, Ordering::Release);
            map.clear();
            tracing::warn!(max = LOCAL_MAX, "too many revoked tokens to keep in memory; asking the database");
        }
    }
}

impl Revocations {
    pub fn new(db: crate::store::Users, cache: Option<crate::kv::Kv>) -> Self {
        let logouts = logouts::Logouts::new(crate::store::admin::AdminStore::new(db.db().clone()), cache.clone());
        Self { db, cache, local: None, logouts }
    }

    /// The revocations of a node that is the database's only writer: the set is loaded
    /// now and kept in memory (until then, and past its bound, the database answers).
    pub async fn sole_writer(db: crate::store::Users, cache: Option<crate::kv::Kv>) -> Self {
        let local = std::sync::Arc::new(Local::default());
        match db.revoked_since(crate::wall::unix_secs() as i64).await {
            Ok(rows) if rows.len() <= LOCAL_MAX => {
                local.map().extend(rows);
                local.trusted.store(true, std::sync::atomic::Ordering::Release);
            }
            Ok(_) => tracing::warn!(max = LOCAL_MAX, "too many revoked tokens to keep in memory; asking the database"),
            Err(e) => tracing::warn!(error = %e, "revoked tokens not loaded; asking the database for each"),
        }
        let admin = crate::store::admin::AdminStore::new(db.db().clone());
        let logouts = logouts::Logouts::sole_writer(admin, cache.clone()).await;
        Self { db, cache, local: Some(local), logouts }
    }

    fn key(kv: &crate::kv::Kv, jti: &str) -> String {
        kv.key(&["revoked", jti])
    }

    /// Written to the database first: only that makes the logout succeed.
    pub async fn revoke(&self, claims: &Claims) -> Result<(), String> {
        self.revoke_id(&claims.jti, claims.exp).await
    }

    /// Revokes token `jti`, which expires at `exp`.
    pub async fn revoke_id(&self, jti: &str, exp: i64) -> Result<(), String> {
        self.db.revoke(jti, exp).await.map_err(|e| e.to_string())?;
        if let Some(local) = &self.local {
            local.add(jti, exp);
        }
        if let Some(kv) = &self.cache {
            let mut c = kv.conn(crate::kv::Class::Fast);
            let r = redis::cmd("SET")
                .arg(Self::key(kv, jti))
                .arg(1)
                .arg("EXAT")
                .arg(exp.max(crate::wall::unix_secs() as i64 + 1))
                .query_async::<()>(&mut c)
                .await;
            if let Err(e) = r {
                tracing::warn!(error = %e, "revocation not cached in redis (the database has it)");
            }
        }
        Ok(())
    }

    /// Fails closed: if the database cannot answer either, the token is treated as revoked.
    pub async fn is_revoked(&self, jti: &str) -> bool {
        if let Some(local) = self.local.as_ref().filter(|l| l.trusted()) {
            return local.map().contains_key(jti);
        }
        if let Some(kv) = &self.cache {
            let mut c = kv.conn(crate::kv::Class::Fast);
            if let Ok(n) = redis::cmd("EXISTS").arg(Self::key(kv, jti)).query_async::<i64>(&mut c).await
                && n > 0
            {
                return true;
            }
        }
        self.db.is_revoked(jti).await.unwrap_or(true)
    }
}

#[cfg(test)]
mod revocation_tests {
    use super::*;
    use crate::store::{Db, Users};

    fn claims(jti: &str) -> Claims {
        claims_of("u", jti, crate::wall::unix_secs() as i64)
    }

    /// A login token's claims for `sub`, issued at `iat`, valid ten minutes from now.
    pub(crate) fn claims_of(sub: &str, jti: &str, iat: i64) -> Claims {
        Claims {
            sub: sub.into(),
            iat,
            exp: crate::wall::unix_secs() as i64 + 600,
            jti: jti.into(),
            iss: "i".into(),
            aud: "a".into(),
            client_id: None,
            scope: None,
            sid: None,
        }
    }

    #[tokio::test]
    async fn a_sole_writer_answers_from_memory_what_the_database_holds() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}/r.db?mode=rwc", dir.path().display())).await.unwrap();
        db.migrate().await.unwrap();
        let users = Users::new(db.clone());
        Revocations::new(users.clone(), None).revoke(&claims("before")).await.unwrap();
        // Started after a revocation: loads it.
        let r = Revocations::sole_writer(users.clone(), None).await;
        assert!(r.local.as_ref().unwrap().trusted());
        assert!(r.is_revoked("before").await);
        assert!(!r.is_revoked("other").await);
        r.revoke(&claims("after")).await.unwrap();
        assert!(r.is_revoked("after").await);
        // Memory alone answers: with the table gone, a query would fail (and fail closed).
        sqlx::query("DROP TABLE revoked_tokens").execute(&db.pool).await.unwrap();
        assert!(!r.is_revoked("other").await, "answered from memory, not by a failing query");
        assert!(r.is_revoked("after").await);
        assert!(Revocations::new(users, None).is_revoked("other").await, "the database path fails closed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(secret: &str) -> TokenSettings {
        TokenSettings { secret: secret.into(), ..Default::default() }
    }

    fn now() -> u64 {
        crate::wall::unix_secs()
    }

    #[test]
    fn round_trip() {
        let t = TokenIssuer::shared_secret(&settings("k1"));
        let i = t.issue("u1", now());
        let c = t.verify(&i.token).expect("valid");
        assert_eq!(c.sub, "u1");
        assert_eq!(c.exp - c.iat, 7200);
        assert_eq!(c.jti.len(), 32);
    }

    #[test]
    fn forged_expired_and_foreign_tokens_fail() {
        let t = TokenIssuer::shared_secret(&settings("k1"));
        let other = TokenIssuer::shared_secret(&settings("k2"));
        assert!(t.verify(&other.issue("u1", now()).token).is_none(), "wrong key");
        assert!(t.verify(&t.issue("u1", now() - 8000).token).is_none(), "expired");
        let foreign = TokenIssuer::shared_secret(&TokenSettings { audience: "else".into(), ..settings("k1") });
        assert!(t.verify(&foreign.issue("u1", now()).token).is_none(), "wrong audience");
        assert!(t.verify("not.a.token").is_none());
        // alg: none with the same claims.
        let good = t.issue("u1", now()).token;
        let payload = good.split('.').nth(1).unwrap();
        let none = format!("{}.{}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#), payload);
        assert!(t.verify(&none).is_none(), "alg none");
    }

    /// A rotation: tokens of the previous secret stay valid, new ones use the current
    /// secret and say so; a token naming neither key, or with no previous secret kept
    /// any more, is refused.
    #[test]
    fn a_rotated_secret_keeps_the_old_tokens_until_they_expire() {
        let old = TokenIssuer::shared_secret(&settings("the old secret")).issue("u1", now()).token;
        let rotated = TokenIssuer::shared_secret(&TokenSettings {
            secret_previous: "the old secret".into(),
            ..settings("the new secret")
        });
        assert_eq!(rotated.verify(&old).map(|c| c.sub), Some("u1".into()), "an old token still works");
        let new = rotated.issue("u2", now()).token;
        let kid = |t: &str| jsonwebtoken::decode_header(t).unwrap().kid.unwrap();
        assert_ne!(kid(&new), kid(&old), "each token names its key");
        assert!(!kid(&new).contains("new secret"));
        let done = TokenIssuer::shared_secret(&settings("the new secret"));
        assert!(done.verify(&new).is_some());
        assert!(done.verify(&old).is_none(), "the previous secret dropped: its tokens end");
        let stranger = TokenIssuer::shared_secret(&settings("someone else's")).issue("u1", now()).token;
        assert!(rotated.verify(&stranger).is_none());
    }
}
