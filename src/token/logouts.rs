//! "Log out everywhere": a per-user mark, every token of that user issued before it is
//! refused (login tokens and the provider's access tokens alike: both carry `sub` and
//! `iat`). The SQL database holds the marks (table `user_logouts`, written through the
//! admin API); every node checks them where tokens are verified, after the signature and
//! the vouched-token shortcut (which remembers signatures, never this).
//!
//! - A single node on its own SQLite file keeps every mark in memory (it writes them all).
//! - Otherwise Redis, when configured, caches the marks for every node (a hit answers
//!   without a query); a miss or an unreachable Redis asks the database, which fails
//!   closed (a user whose mark cannot be read is refused).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::kv::{Class, Kv};
use crate::store::admin::AdminStore;

/// Marks a single node keeps in memory at most; past it the database answers.
const LOCAL_MAX: usize = 100_000;
/// How long Redis keeps a cached mark (the database keeps it for good).
const CACHE_SECS: u64 = 90 * 86_400;

#[derive(Default)]
struct Local {
    marks: Mutex<HashMap<String, i64>>,
    trusted: AtomicBool,
}

#[derive(Clone)]
pub struct Logouts {
    store: AdminStore,
    cache: Option<Kv>,
    local: Option<Arc<Local>>,
}

impl Logouts {
    pub fn new(store: AdminStore, cache: Option<Kv>) -> Self {
        Self { store, cache, local: None }
    }

    /// The marks of a node that is its database's only writer, loaded now.
    pub async fn sole_writer(store: AdminStore, cache: Option<Kv>) -> Self {
        let local = Arc::new(Local::default());
        match store.logouts(LOCAL_MAX as i64 + 1).await {
            Ok(rows) if rows.len() <= LOCAL_MAX => {
                local.marks.lock().unwrap_or_else(|p| p.into_inner()).extend(rows);
                local.trusted.store(true, Ordering::Release);
            }
            Ok(_) => tracing::warn!(max = LOCAL_MAX, "too many logout marks to keep in memory; asking the database"),
            Err(e) => tracing::warn!(error = %e, "logout marks not loaded; asking the database"),
        }
        Self { store, cache, local: Some(local) }
    }

    fn key(kv: &Kv, user: &str) -> String {
        kv.key(&["logout", user])
    }

    /// Refuses every token of `user` issued before `before` (Unix seconds) from now on.
    pub async fn cut(&self, user: &str, before: i64) -> Result<(), sqlx::Error> {
        self.store.log_out_everywhere(user, before).await?;
        let before = self.store.tokens_before(user).await?.unwrap_or(before);
        if let Some(local) = &self.local {
            let mut marks = local.marks.lock().unwrap_or_else(|p| p.into_inner());
            marks.insert(user.to_string(), before);
            if marks.len() > LOCAL_MAX {
                local.trusted.store(false, Ordering::Release);
                marks.clear();
            }
        }
        if let Some(kv) = &self.cache {
            let r = redis::cmd("SET")
                .arg(Self::key(kv, user))
                .arg(before)
                .arg("EX")
                .arg(CACHE_SECS)
                .query_async::<()>(&mut kv.conn(Class::Fast))
                .await;
            if let Err(e) = r {
                tracing::warn!(error = %e, "logout mark not cached in redis (the database has it)");
            }
        }
        Ok(())
    }

    /// What this node's memory says of a token of `user` issued at `iat` (`None`: it
    /// does not hold every mark; ask further).
    fn in_memory(&self, user: &str, iat: i64) -> Option<bool> {
        let local = self.local.as_ref().filter(|l| l.trusted.load(Ordering::Acquire))?;
        Some(local.marks.lock().unwrap_or_else(|p| p.into_inner()).get(user).is_some_and(|b| iat < *b))
    }

    /// Whether a token of `user` issued at `iat` is cut off. Fails closed.
    pub async fn cut_off(&self, user: &str, iat: i64) -> bool {
        if let Some(known) = self.in_memory(user, iat) {
            return known;
        }
        if let Some(kv) = &self.cache
            && let Ok(Some(before)) =
                redis::cmd("GET").arg(Self::key(kv, user)).query_async::<Option<i64>>(&mut kv.conn(Class::Fast)).await
        {
            return iat < before;
        }
        match self.store.tokens_before(user).await {
            Ok(mark) => mark.is_some_and(|b| iat < b),
            Err(_) => true,
        }
    }
}

impl super::Revocations {
    /// Whether a verified token is refused: revoked itself, or its user logged out
    /// everywhere after it was issued. Memory answers where it holds everything (a
    /// single node); else one Redis round trip for both (a hit refuses at once) and one
    /// query for both (Redis is only a cache: a miss proves nothing). Fails closed.
    pub async fn refuses(&self, claims: &super::Claims) -> bool {
        let revoked = self.local.as_ref().filter(|l| l.trusted()).map(|l| l.map().contains_key(&claims.jti));
        let cut = self.logouts.in_memory(&claims.sub, claims.iat);
        match (revoked, cut) {
            (Some(true), _) | (_, Some(true)) => return true,
            (Some(false), Some(false)) => return false,
            _ => {}
        }
        if let Some(kv) = &self.cache {
            let r: redis::RedisResult<(i64, Option<i64>)> = redis::pipe()
                .cmd("EXISTS")
                .arg(Self::key(kv, &claims.jti))
                .cmd("GET")
                .arg(Logouts::key(kv, &claims.sub))
                .query_async(&mut kv.conn(Class::Fast))
                .await;
            if let Ok((n, mark)) = r
                && (n > 0 || mark.is_some_and(|b| claims.iat < b))
            {
                return true;
            }
        }
        let row = sqlx::query(self.db.db().sql(
            "SELECT (SELECT COUNT(*) FROM revoked_tokens WHERE jti = ?) AS revoked, \
             (SELECT tokens_before FROM user_logouts WHERE user_id = ?) AS tokens_before",
        ))
        .bind(&claims.jti)
        .bind(&claims.sub)
        .fetch_one(&self.db.db().pool)
        .await;
        let answer = row.and_then(|r| {
            use sqlx::Row;
            let revoked: i64 = r.try_get("revoked")?;
            let before: Option<i64> = r.try_get("tokens_before")?;
            Ok(revoked > 0 || before.is_some_and(|b| claims.iat < b))
        });
        answer.unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Db;

    async fn store() -> (AdminStore, Db, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}/l.db?mode=rwc", dir.path().display())).await.unwrap();
        db.migrate().await.unwrap();
        (AdminStore::new(db.clone()), db, dir)
    }

    #[tokio::test]
    async fn tokens_issued_before_the_mark_are_cut_off_on_every_path() {
        let (store, db, _dir) = store().await;
        let shared = Logouts::new(store.clone(), None);
        shared.cut("u1", 1000).await.unwrap();
        let sole = Logouts::sole_writer(store.clone(), None).await;
        for l in [&shared, &sole] {
            assert!(l.cut_off("u1", 999).await);
            assert!(!l.cut_off("u1", 1000).await, "issued at or after the mark: kept");
            assert!(!l.cut_off("u2", 1).await, "another user is not touched");
        }
        sole.cut("u3", 50).await.unwrap();
        assert!(sole.cut_off("u3", 49).await, "a node's own mark is in its memory at once");
        assert!(shared.cut_off("u3", 49).await, "and in the database for the others");
        sqlx::query("DROP TABLE user_logouts").execute(&db.pool).await.unwrap();
        assert!(!sole.cut_off("u2", 1).await, "memory answers without the database");
        assert!(shared.cut_off("u2", 1).await, "the database path fails closed");
    }

    crate::each_backend!(a_token_is_refused_when_revoked_or_older_than_its_users_mark);

    /// The one check where tokens are verified: a revoked token, or one issued before its
    /// user's mark, is refused; by memory on a single node, by one query elsewhere.
    async fn a_token_is_refused_when_revoked_or_older_than_its_users_mark(db: Db) {
        use crate::store::Users;
        use crate::token::Revocations;
        use crate::token::revocation_tests::claims_of as claims;
        let store = AdminStore::new(db.clone());
        let users = Users::new(db.clone());
        let shared = Revocations::new(users.clone(), None);
        shared.revoke(&claims("u1", "revoked", 10)).await.unwrap();
        store.log_out_everywhere("u2", 100).await.unwrap();
        let sole = Revocations::sole_writer(users, None).await;
        for r in [&shared, &sole] {
            assert!(r.refuses(&claims("u1", "revoked", 10)).await);
            assert!(!r.refuses(&claims("u1", "fine", 10)).await);
            assert!(r.refuses(&claims("u2", "old", 99)).await, "issued before the mark");
            assert!(!r.refuses(&claims("u2", "new", 100)).await, "issued at the mark");
        }
        sqlx::query("DROP TABLE user_logouts").execute(&db.pool).await.unwrap();
        assert!(!sole.refuses(&claims("u3", "x", 1)).await, "memory answers without the database");
        assert!(shared.refuses(&claims("u3", "x", 1)).await, "the database path fails closed");
    }
}
