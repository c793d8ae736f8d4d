//! The OpenID Connect provider's records in the SQL database (migration 0009): authorize
//! requests by their attempt, the continue step, sessions, authorization codes and
//! refresh-token families. The database is shared by every node of a cluster, so a code
//! made on one node is exchanged on another; each single-use step is one conditional
//! `UPDATE … WHERE used_at IS NULL`, so of two nodes presented one code at once exactly
//! one wins. Secrets are stored only as SHA-256 hex (they carry ≥ 256 random bits: no
//! key is needed to make the hash unguessable).
//!
//! What the records mean — the protocol — is `crate::oidc`'s.

use sha2::{Digest, Sha256};
use sqlx::Row;

use super::Db;
use crate::ids::PollId;

/// The SHA-256 of a secret, as stored.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A fresh secret: 32 random bytes, base64url (43 characters).
pub fn new_secret() -> String {
    crate::ids::random_b64(32)
}

/// What a relying party asked for at the authorize endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub state: String,
    /// Empty: none sent.
    pub nonce: String,
    /// Empty: none sent (a confidential client may omit PKCE).
    pub code_challenge: String,
}

/// Who logged in, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authn {
    pub user_id: String,
    /// Comma-separated methods: `wechat`, `wechat,sms`.
    pub amr: String,
    pub auth_time: i64,
}

/// A session of the provider's cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Public id of the session (in access tokens); not the cookie.
    pub sid: String,
    pub authn: Authn,
}

/// What a code or a refresh token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub client_id: String,
    pub scope: String,
    pub sid: String,
    pub authn: Authn,
}

/// A code as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeGrant {
    pub grant: Grant,
    pub redirect_uri: String,
    pub nonce: String,
    pub code_challenge: String,
    pub expires_at: i64,
}

/// What presenting a code found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeTake {
    /// First use: this caller won it.
    Fresh(CodeGrant),
    /// Used before: the tokens issued from it (to revoke).
    Replayed {
        access: Option<(String, i64)>,
        family: Option<String>,
    },
    Unknown,
}

/// What presenting a refresh token found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshTake {
    Fresh {
        grant: Grant,
        family: String,
        expires_at: i64,
    },
    /// Used before: the family is revoked now.
    Reused {
        family: String,
    },
    /// Never used, but its family was revoked (a reuse, a logout, a revocation).
    Revoked,
    Unknown,
}

#[derive(Clone)]
pub struct OidcStore {
    db: Db,
}

type R<T> = Result<T, sqlx::Error>;

impl OidcStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Records the request an attempt was made for (until the attempt's end).
    pub async fn put_request(&self, poll: &PollId, r: &AuthRequest, expires_at: i64) -> R<()> {
        sqlx::query(self.db.sql(
            "INSERT INTO oidc_requests (poll_hash, client_id, redirect_uri, scope, rp_state, nonce, code_challenge, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        ))
        .bind(secret_hash(poll.as_str()))
        .bind(&r.client_id)
        .bind(&r.redirect_uri)
        .bind(&r.scope)
        .bind(&r.state)
        .bind(&r.nonce)
        .bind(&r.code_challenge)
        .bind(expires_at)
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    /// The attempt `poll` ended in a login: a single-use continue id for it (valid until
    /// `expires_at`), or `None` if the attempt was no provider request (or had one).
    pub async fn continue_request(&self, poll: &PollId, authn: &Authn, expires_at: i64) -> R<Option<String>> {
        let id = new_secret();
        let done = sqlx::query(self.db.sql(
            "UPDATE oidc_requests SET continue_hash = ?, user_id = ?, amr = ?, auth_time = ?, continue_expires_at = ? \
             WHERE poll_hash = ? AND continue_hash IS NULL",
        ))
        .bind(secret_hash(&id))
        .bind(&authn.user_id)
        .bind(&authn.amr)
        .bind(authn.auth_time)
        .bind(expires_at)
        .bind(secret_hash(poll.as_str()))
        .execute(&self.db.pool)
        .await?;
        Ok((done.rows_affected() == 1).then_some(id))
    }

    /// Takes the continue id once: the request and who logged in, or `None` (unknown,
    /// used, or expired).
    pub async fn take_continue(&self, id: &str, now: i64) -> R<Option<(AuthRequest, Authn)>> {
        let hash = secret_hash(id);
        let won = sqlx::query(self.db.sql(
            "UPDATE oidc_requests SET continued_at = ? \
             WHERE continue_hash = ? AND continued_at IS NULL AND continue_expires_at > ?",
        ))
        .bind(now)
        .bind(&hash)
        .bind(now)
        .execute(&self.db.pool)
        .await?;
        if won.rows_affected() != 1 {
            return Ok(None);
        }
        let row = sqlx::query(self.db.sql(
            "SELECT client_id, redirect_uri, scope, rp_state, nonce, code_challenge, user_id, amr, auth_time \
             FROM oidc_requests WHERE continue_hash = ?",
        ))
        .bind(&hash)
        .fetch_one(&self.db.pool)
        .await?;
        let req = AuthRequest {
            client_id: row.try_get(0)?,
            redirect_uri: row.try_get(1)?,
            scope: row.try_get(2)?,
            state: row.try_get(3)?,
            nonce: row.try_get(4)?,
            code_challenge: row.try_get(5)?,
        };
        let authn = Authn { user_id: row.try_get(6)?, amr: row.try_get(7)?, auth_time: row.try_get(8)? };
        Ok(Some((req, authn)))
    }

    /// A new session; returns the cookie's secret and the session.
    pub async fn new_session(&self, authn: &Authn, expires_at: i64) -> R<(String, Session)> {
        let (cookie, sid) = (new_secret(), new_secret());
        sqlx::query(self.db.sql(
            "INSERT INTO oidc_sessions (sid, cookie_hash, user_id, amr, auth_time, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
        ))
        .bind(&sid)
        .bind(secret_hash(&cookie))
        .bind(&authn.user_id)
        .bind(&authn.amr)
        .bind(authn.auth_time)
        .bind(expires_at)
        .execute(&self.db.pool)
        .await?;
        Ok((cookie, Session { sid, authn: authn.clone() }))
    }

    /// The live session of a cookie.
    pub async fn session(&self, cookie: &str, now: i64) -> R<Option<Session>> {
        let row = sqlx::query(self.db.sql(
            "SELECT sid, user_id, amr, auth_time FROM oidc_sessions \
             WHERE cookie_hash = ? AND ended_at IS NULL AND expires_at > ?",
        ))
        .bind(secret_hash(cookie))
        .bind(now)
        .fetch_optional(&self.db.pool)
        .await?;
        row.map(|r| {
            Ok(Session {
                sid: r.try_get(0)?,
                authn: Authn { user_id: r.try_get(1)?, amr: r.try_get(2)?, auth_time: r.try_get(3)? },
            })
        })
        .transpose()
    }

    /// Whether session `sid` is over (ended, expired or unknown).
    pub async fn session_over(&self, sid: &str, now: i64) -> R<bool> {
        let row = sqlx::query(
            self.db.sql("SELECT 1 FROM oidc_sessions WHERE sid = ? AND ended_at IS NULL AND expires_at > ?"),
        )
        .bind(sid)
        .bind(now)
        .fetch_optional(&self.db.pool)
        .await?;
        Ok(row.is_none())
    }

    /// Ends a session and revokes the refresh tokens issued in it.
    pub async fn end_session(&self, sid: &str, now: i64) -> R<()> {
        sqlx::query(self.db.sql("UPDATE oidc_sessions SET ended_at = ? WHERE sid = ? AND ended_at IS NULL"))
            .bind(now)
            .bind(sid)
            .execute(&self.db.pool)
            .await?;
        sqlx::query(self.db.sql("UPDATE oidc_refresh_tokens SET revoked = 1 WHERE sid = ?"))
            .bind(sid)
            .execute(&self.db.pool)
            .await?;
        Ok(())
    }

    pub async fn put_code(&self, code: &str, c: &CodeGrant) -> R<()> {
        sqlx::query(self.db.sql(
            "INSERT INTO oidc_codes (code_hash, client_id, redirect_uri, scope, nonce, code_challenge, user_id, sid, amr, \
             auth_time, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ))
        .bind(secret_hash(code))
        .bind(&c.grant.client_id)
        .bind(&c.redirect_uri)
        .bind(&c.grant.scope)
        .bind(&c.nonce)
        .bind(&c.code_challenge)
        .bind(&c.grant.authn.user_id)
        .bind(&c.grant.sid)
        .bind(&c.grant.authn.amr)
        .bind(c.grant.authn.auth_time)
        .bind(c.expires_at)
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    /// Presents a code: the first presentation wins it (expired or not: the caller
    /// checks), every later one learns what was issued from it.
    pub async fn take_code(&self, code: &str, now: i64) -> R<CodeTake> {
        let hash = secret_hash(code);
        let won = sqlx::query(self.db.sql("UPDATE oidc_codes SET used_at = ? WHERE code_hash = ? AND used_at IS NULL"))
            .bind(now)
            .bind(&hash)
            .execute(&self.db.pool)
            .await?;
        let Some(r) = sqlx::query(self.db.sql(
            "SELECT client_id, redirect_uri, scope, nonce, code_challenge, user_id, sid, amr, auth_time, expires_at \
             FROM oidc_codes WHERE code_hash = ?",
        ))
        .bind(&hash)
        .fetch_optional(&self.db.pool)
        .await?
        else {
            return Ok(CodeTake::Unknown);
        };
        if won.rows_affected() != 1 {
            // Marked before the tokens are read: an exchange running at this very moment
            // either wrote its tokens already (read below, and revoked by the caller) or
            // finds this mark when it writes them ([`OidcStore::code_issued`]).
            sqlx::query(self.db.sql("UPDATE oidc_codes SET replayed_at = ? WHERE code_hash = ?"))
                .bind(now)
                .bind(&hash)
                .execute(&self.db.pool)
                .await?;
            let r =
                sqlx::query(self.db.sql("SELECT access_jti, access_exp, family FROM oidc_codes WHERE code_hash = ?"))
                    .bind(&hash)
                    .fetch_one(&self.db.pool)
                    .await?;
            let jti: Option<String> = r.try_get(0)?;
            let exp: Option<i64> = r.try_get(1)?;
            return Ok(CodeTake::Replayed { access: jti.zip(exp), family: r.try_get(2)? });
        }
        Ok(CodeTake::Fresh(CodeGrant {
            grant: Grant {
                client_id: r.try_get(0)?,
                scope: r.try_get(2)?,
                sid: r.try_get(6)?,
                authn: Authn { user_id: r.try_get(5)?, amr: r.try_get(7)?, auth_time: r.try_get(8)? },
            },
            redirect_uri: r.try_get(1)?,
            nonce: r.try_get(3)?,
            code_challenge: r.try_get(4)?,
            expires_at: r.try_get(9)?,
        }))
    }

    /// Notes what a code's exchange issued, so a replay can revoke it; `true` when the
    /// code was presented again meanwhile (the caller revokes what it just issued).
    pub async fn code_issued(&self, code: &str, access_jti: &str, access_exp: i64, family: Option<&str>) -> R<bool> {
        let hash = secret_hash(code);
        sqlx::query(
            self.db.sql("UPDATE oidc_codes SET access_jti = ?, access_exp = ?, family = ? WHERE code_hash = ?"),
        )
        .bind(access_jti)
        .bind(access_exp)
        .bind(family)
        .bind(&hash)
        .execute(&self.db.pool)
        .await?;
        let row = sqlx::query(self.db.sql("SELECT replayed_at FROM oidc_codes WHERE code_hash = ?"))
            .bind(&hash)
            .fetch_one(&self.db.pool)
            .await?;
        Ok(row.try_get::<Option<i64>, _>(0)?.is_some())
    }

    pub async fn put_refresh(&self, token: &str, family: &str, g: &Grant, expires_at: i64) -> R<()> {
        sqlx::query(self.db.sql(
            "INSERT INTO oidc_refresh_tokens (token_hash, family, client_id, scope, user_id, sid, amr, auth_time, \
             expires_at, revoked) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
        ))
        .bind(secret_hash(token))
        .bind(family)
        .bind(&g.client_id)
        .bind(&g.scope)
        .bind(&g.authn.user_id)
        .bind(&g.sid)
        .bind(&g.authn.amr)
        .bind(g.authn.auth_time)
        .bind(expires_at)
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    /// Presents a refresh token: the first use wins it; a second use (or a token of a
    /// revoked family) revokes the whole family.
    pub async fn take_refresh(&self, token: &str, now: i64) -> R<RefreshTake> {
        let hash = secret_hash(token);
        let won = sqlx::query(self.db.sql(
            "UPDATE oidc_refresh_tokens SET used_at = ? WHERE token_hash = ? AND used_at IS NULL AND revoked = 0",
        ))
        .bind(now)
        .bind(&hash)
        .execute(&self.db.pool)
        .await?;
        let Some(r) = sqlx::query(self.db.sql(
            "SELECT family, client_id, scope, user_id, sid, amr, auth_time, expires_at, used_at FROM oidc_refresh_tokens \
             WHERE token_hash = ?",
        ))
        .bind(&hash)
        .fetch_optional(&self.db.pool)
        .await?
        else {
            return Ok(RefreshTake::Unknown);
        };
        let family: String = r.try_get(0)?;
        if won.rows_affected() != 1 {
            let used: Option<i64> = r.try_get(8)?;
            if used.is_none() {
                return Ok(RefreshTake::Revoked);
            }
            self.revoke_family(&family).await?;
            return Ok(RefreshTake::Reused { family });
        }
        Ok(RefreshTake::Fresh {
            grant: Grant {
                client_id: r.try_get(1)?,
                scope: r.try_get(2)?,
                sid: r.try_get(4)?,
                authn: Authn { user_id: r.try_get(3)?, amr: r.try_get(5)?, auth_time: r.try_get(6)? },
            },
            family,
            expires_at: r.try_get(7)?,
        })
    }

    /// The family of a refresh token (for revocation), if it is one of ours.
    pub async fn refresh_family(&self, token: &str) -> R<Option<(String, String)>> {
        let row = sqlx::query(self.db.sql("SELECT family, client_id FROM oidc_refresh_tokens WHERE token_hash = ?"))
            .bind(secret_hash(token))
            .fetch_optional(&self.db.pool)
            .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    pub async fn revoke_family(&self, family: &str) -> R<()> {
        sqlx::query(self.db.sql("UPDATE oidc_refresh_tokens SET revoked = 1 WHERE family = ?"))
            .bind(family)
            .execute(&self.db.pool)
            .await?;
        Ok(())
    }

    /// Deletes what has expired (requests, codes, sessions, refresh tokens), `grace`
    /// seconds after its end (a replayed code is still recognised for that long).
    pub async fn sweep(&self, now: i64, grace: i64) -> R<u64> {
        let mut n = 0;
        for q in [
            "DELETE FROM oidc_requests WHERE expires_at < ? AND (continue_expires_at IS NULL OR continue_expires_at < ?)",
            "DELETE FROM oidc_codes WHERE expires_at < ? AND expires_at < ?",
            "DELETE FROM oidc_sessions WHERE expires_at < ? AND expires_at < ?",
            "DELETE FROM oidc_refresh_tokens WHERE expires_at < ? AND expires_at < ?",
        ] {
            let cutoff = now - grace;
            n += sqlx::query(self.db.sql(q)).bind(cutoff).bind(cutoff).execute(&self.db.pool).await?.rows_affected();
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    //! The provider's single-use steps on SQLite, PostgreSQL and MariaDB (real servers).
    use super::*;
    use crate::ids::PollKind;

    crate::each_backend!(a_request_continues_once, a_code_is_taken_once, a_reused_refresh_token_revokes_its_family);

    fn authn() -> Authn {
        Authn { user_id: "u1".into(), amr: "wechat,sms".into(), auth_time: 1000 }
    }

    fn request() -> AuthRequest {
        AuthRequest {
            client_id: "c".into(),
            redirect_uri: "https://rp.example/cb".into(),
            scope: "openid phone".into(),
            state: "s".into(),
            nonce: "n".into(),
            code_challenge: "x".repeat(43),
        }
    }

    async fn a_request_continues_once(db: Db) {
        let s = OidcStore::new(db);
        let poll = PollId::generate_for(PollKind::Provider);
        s.put_request(&poll, &request(), 2000).await.unwrap();
        assert!(s.continue_request(&PollId::generate(), &authn(), 2000).await.unwrap().is_none(), "not a request");
        let id = s.continue_request(&poll, &authn(), 1100).await.unwrap().unwrap();
        assert!(s.continue_request(&poll, &authn(), 1100).await.unwrap().is_none(), "one continue per attempt");
        assert!(s.take_continue(&id, 1100).await.unwrap().is_none(), "expired");
        let id = {
            let poll = PollId::generate_for(PollKind::Provider);
            s.put_request(&poll, &request(), 2000).await.unwrap();
            s.continue_request(&poll, &authn(), 1100).await.unwrap().unwrap()
        };
        assert_eq!(s.take_continue(&id, 1050).await.unwrap(), Some((request(), authn())));
        assert_eq!(s.take_continue(&id, 1050).await.unwrap(), None, "single use");
    }

    async fn a_code_is_taken_once(db: Db) {
        let s = OidcStore::new(db);
        let grant = Grant { client_id: "c".into(), scope: "openid".into(), sid: "sid".into(), authn: authn() };
        let code = CodeGrant {
            grant,
            redirect_uri: "https://rp.example/cb".into(),
            nonce: "n".into(),
            code_challenge: String::new(),
            expires_at: 1060,
        };
        s.put_code("the-code", &code).await.unwrap();
        let (a, b) = tokio::join!(s.take_code("the-code", 1001), s.take_code("the-code", 1001));
        let fresh = [&a, &b].iter().filter(|t| matches!(t, Ok(CodeTake::Fresh(_)))).count();
        assert_eq!(fresh, 1, "two at once: one wins ({a:?}, {b:?})");
        // The winner writes its tokens after the loser's look: it learns of the replay.
        assert!(s.code_issued("the-code", "jti1", 5000, Some("fam")).await.unwrap(), "replayed meanwhile");
        // One presentation, then another after the tokens were written: the second sees them.
        s.put_code("code-2", &code).await.unwrap();
        assert!(matches!(s.take_code("code-2", 1001).await.unwrap(), CodeTake::Fresh(_)));
        assert!(!s.code_issued("code-2", "jti2", 5000, Some("fam2")).await.unwrap(), "not replayed yet");
        assert_eq!(
            s.take_code("code-2", 1002).await.unwrap(),
            CodeTake::Replayed { access: Some(("jti2".into(), 5000)), family: Some("fam2".into()) }
        );
        assert_eq!(s.take_code("other", 1002).await.unwrap(), CodeTake::Unknown);
    }

    async fn a_reused_refresh_token_revokes_its_family(db: Db) {
        let s = OidcStore::new(db);
        let g =
            Grant { client_id: "c".into(), scope: "openid offline_access".into(), sid: "sid".into(), authn: authn() };
        s.put_refresh("r1", "fam", &g, 9000).await.unwrap();
        assert!(matches!(s.take_refresh("r1", 1000).await.unwrap(), RefreshTake::Fresh { .. }));
        s.put_refresh("r2", "fam", &g, 9000).await.unwrap();
        assert_eq!(s.take_refresh("r1", 1001).await.unwrap(), RefreshTake::Reused { family: "fam".into() });
        assert_eq!(
            s.take_refresh("r2", 1002).await.unwrap(),
            RefreshTake::Revoked,
            "the rotated token dies with its family"
        );
        // Ending a session revokes its families too.
        s.put_refresh("r3", "fam2", &g, 9000).await.unwrap();
        s.end_session("sid", 1003).await.unwrap();
        assert_eq!(s.take_refresh("r3", 1004).await.unwrap(), RefreshTake::Revoked);
    }
}
