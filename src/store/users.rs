//! The user repository: accounts (one phone each), their WeChat identities (at most one
//! openid per official account), and revoked token ids.
//!
//! The reads of every login go through [`UserCache`] and the login audit is written
//! behind ([`AuditLog`]): a login answer waits for neither a query nor a commit.

use std::sync::Arc;

use sqlx::Row;

use super::Db;
use super::audit::{AuditLog, Queued};
use super::known_ids::KnownIds;
use super::user_cache::UserCache;
use crate::engine::UserRef;
use crate::wall::unix_secs;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub id: String,
    pub phone: Option<String>,
    pub created_at: i64,
}

/// One row of the login audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRow {
    pub app: String,
    pub how: String,
    pub ip: String,
    pub user_agent: String,
    pub at: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The phone's account already holds another openid of this official account.
    #[error("the phone is bound to another WeChat user")]
    PhoneTaken,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

#[derive(Clone)]
pub struct Users {
    db: Db,
    cache: Arc<UserCache>,
    audit: AuditLog,
    /// Sole writer only: which identities may have an account (see [`KnownIds`]).
    known: Option<Arc<KnownIds>>,
}

fn user_ref(id: String, phone: Option<String>) -> UserRef {
    UserRef { id, phone }
}

impl Users {
    pub fn new(db: Db) -> Self {
        Self { db, cache: Arc::default(), audit: AuditLog::default(), known: None }
    }

    /// The users of a node that is the only writer of the database (a single node): the
    /// login audit's reads are then served from memory (see [`AuditLog::sole_writer`]),
    /// and lookups of identities without an account answer without a query (see
    /// [`KnownIds`], loaded here from the table).
    pub async fn sole_writer(db: Db) -> Result<Self, sqlx::Error> {
        let known = KnownIds::load(&db).await?.map(Arc::new);
        Ok(Self { db, cache: Arc::default(), audit: AuditLog::sole_writer(), known })
    }

    /// `true` when this identity certainly has no account (so there is nothing to read
    /// or update); always `false` without the filter.
    fn surely_unknown(&self, app_id: &str, openid: &str) -> bool {
        self.known.as_ref().is_some_and(|k| !k.may_have(app_id, openid))
    }

    /// The login audit's writer task (see [`AuditLog::writer`]); until it runs, audit
    /// rows are written as they come.
    pub fn audit_writer(&self) -> impl Future<Output = ()> + Send + 'static {
        self.audit.writer(self.db.clone())
    }

    /// Waits until every queued audit row is stored, at most until `deadline`.
    pub async fn flush(&self, deadline: tokio::time::Instant) -> bool {
        self.audit.flush(deadline).await
    }

    /// Audit rows queued and not yet stored.
    pub fn audit_pending(&self) -> usize {
        self.audit.pending()
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The account this WeChat user (of `app_id`) belongs to, if any.
    pub async fn find_by_openid(&self, app_id: &str, openid: &str) -> Result<Option<UserRef>, sqlx::Error> {
        if self.surely_unknown(app_id, openid) {
            return Ok(None);
        }
        if let Some(u) = self.cache.account_of(app_id, openid) {
            return Ok(Some(u));
        }
        let found = self.load_by_openid(app_id, openid).await?;
        if let Some(u) = &found {
            self.cache.remember_account(app_id, openid, u);
        }
        Ok(found)
    }

    async fn load_by_openid(&self, app_id: &str, openid: &str) -> Result<Option<UserRef>, sqlx::Error> {
        let row = sqlx::query(self.db.sql(
            "SELECT u.id, u.phone FROM wechat_identities w JOIN users u ON u.id = w.user_id WHERE w.app_id = ? AND w.openid = ?",
        ))
        .bind(app_id)
        .bind(openid)
        .fetch_optional(&self.db.pool)
        .await?;
        row.map(|r| Ok(user_ref(r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    pub async fn get(&self, id: &str) -> Result<Option<UserRow>, sqlx::Error> {
        if let Some(u) = self.cache.user(id) {
            return Ok(Some(u));
        }
        let row = sqlx::query(self.db.sql("SELECT id, phone, created_at FROM users WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.db.pool)
            .await?;
        let row: Option<UserRow> = row
            .map(|r| {
                Ok::<_, sqlx::Error>(UserRow { id: r.try_get(0)?, phone: r.try_get(1)?, created_at: r.try_get(2)? })
            })
            .transpose()?;
        if let Some(u) = &row {
            self.cache.remember_user(u);
        }
        Ok(row)
    }

    async fn find_by_phone(&self, phone: &str) -> Result<Option<String>, sqlx::Error> {
        let row = sqlx::query(self.db.sql("SELECT id FROM users WHERE phone = ?"))
            .bind(phone)
            .fetch_optional(&self.db.pool)
            .await?;
        row.map(|r| r.try_get(0)).transpose()
    }

    /// The openid the account `user_id` already holds for `app_id`, if any.
    async fn openid_of(&self, user_id: &str, app_id: &str) -> Result<Option<String>, sqlx::Error> {
        let row = sqlx::query(self.db.sql("SELECT openid FROM wechat_identities WHERE user_id = ? AND app_id = ?"))
            .bind(user_id)
            .bind(app_id)
            .fetch_optional(&self.db.pool)
            .await?;
        row.map(|r| r.try_get(0)).transpose()
    }

    /// Would binding `phone` to this WeChat user be refused as `phone_taken`?
    /// Checked before a code is spent; [`Users::bind`] checks again atomically.
    pub async fn check_bindable(&self, app_id: &str, openid: &str, phone: &str) -> Result<(), BindError> {
        if let Some(uid) = self.find_by_phone(phone).await?
            && self.openid_of(&uid, app_id).await?.is_some_and(|o| o != openid)
        {
            return Err(BindError::PhoneTaken);
        }
        Ok(())
    }

    /// Attaches this WeChat user to the account of `phone`, creating the account if the
    /// phone is new. Idempotent for the same (app, openid, phone).
    pub async fn bind(&self, app_id: &str, openid: &str, phone: &str) -> Result<UserRef, BindError> {
        // Before the transaction: no reader may see the row while the filter says "no".
        if let Some(k) = &self.known {
            k.add(app_id, openid);
        }
        // One retry: a concurrent bind of the same new phone loses the unique race once,
        // then finds the account the other one created.
        let r = match self.bind_once(app_id, openid, phone).await {
            Err(BindError::Db(e)) if is_unique_violation(&e) => self.bind_once(app_id, openid, phone).await,
            other => other,
        };
        if let Ok(u) = &r {
            self.cache.invalidate(app_id, openid, &u.id);
        }
        r
    }

    async fn bind_once(&self, app_id: &str, openid: &str, phone: &str) -> Result<UserRef, BindError> {
        let db = &self.db;
        let mut tx = db.begin_write().await?;
        let now = unix_secs() as i64;
        // This openid may already have an account (bound meanwhile in another attempt).
        let existing = sqlx::query(db.sql("SELECT user_id FROM wechat_identities WHERE app_id = ? AND openid = ?"))
            .bind(app_id)
            .bind(openid)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get::<String, _>(0))
            .transpose()?;
        let by_phone = sqlx::query(db.sql("SELECT id FROM users WHERE phone = ?"))
            .bind(phone)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get::<String, _>(0))
            .transpose()?;
        let user_id = match (existing, by_phone) {
            (Some(a), Some(b)) if a == b => a,
            (Some(_), _) => return Err(BindError::PhoneTaken),
            (None, Some(uid)) => {
                let held = sqlx::query(db.sql("SELECT openid FROM wechat_identities WHERE user_id = ? AND app_id = ?"))
                    .bind(&uid)
                    .bind(app_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                if held.is_some() {
                    return Err(BindError::PhoneTaken);
                }
                uid
            }
            (None, None) => {
                let uid = uuid::Uuid::new_v4().to_string();
                sqlx::query(db.sql("INSERT INTO users (id, phone, created_at) VALUES (?, ?, ?)"))
                    .bind(&uid)
                    .bind(phone)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                uid
            }
        };
        sqlx::query(db.sql(
            "INSERT INTO wechat_identities (app_id, openid, user_id, unionid, subscribed, created_at) SELECT ?, ?, ?, NULL, 1, ? WHERE NOT EXISTS (SELECT 1 FROM wechat_identities WHERE app_id = ? AND openid = ?)",
        ))
        .bind(app_id)
        .bind(openid)
        .bind(&user_id)
        .bind(now)
        .bind(app_id)
        .bind(openid)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(user_ref(user_id, Some(phone.to_string())))
    }

    /// Marks this WeChat user as following (or not) the account; a no-op for users
    /// without an account (we keep no data on them).
    pub async fn set_subscribed(&self, app_id: &str, openid: &str, subscribed: bool) -> Result<bool, sqlx::Error> {
        if self.surely_unknown(app_id, openid) {
            return Ok(false);
        }
        let r = sqlx::query(self.db.sql("UPDATE wechat_identities SET subscribed = ? WHERE app_id = ? AND openid = ?"))
            .bind(i64::from(subscribed))
            .bind(app_id)
            .bind(openid)
            .execute(&self.db.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// `Some(subscribed)` for a known identity.
    pub async fn subscribed(&self, app_id: &str, openid: &str) -> Result<Option<bool>, sqlx::Error> {
        if self.surely_unknown(app_id, openid) {
            return Ok(None);
        }
        let row = sqlx::query(self.db.sql("SELECT subscribed FROM wechat_identities WHERE app_id = ? AND openid = ?"))
            .bind(app_id)
            .bind(openid)
            .fetch_optional(&self.db.pool)
            .await?;
        row.map(|r| Ok(r.try_get::<i64, _>(0)? != 0)).transpose()
    }

    /// True when the identity exists and has no `unionid` yet (worth a `user/info` call).
    pub async fn lacks_unionid(&self, app_id: &str, openid: &str) -> Result<bool, sqlx::Error> {
        if self.surely_unknown(app_id, openid) || self.cache.has_unionid(app_id, openid) {
            return Ok(false);
        }
        let row = sqlx::query(
            self.db.sql("SELECT 1 FROM wechat_identities WHERE app_id = ? AND openid = ? AND unionid IS NULL"),
        )
        .bind(app_id)
        .bind(openid)
        .fetch_optional(&self.db.pool)
        .await?;
        if row.is_none() && self.cache.account_of(app_id, openid).is_some() {
            // Known identity without the "no unionid" row: it has one.
            self.cache.remember_unionid(app_id, openid);
        }
        Ok(row.is_some())
    }

    pub async fn set_unionid(&self, app_id: &str, openid: &str, unionid: &str) -> Result<(), sqlx::Error> {
        sqlx::query(self.db.sql("UPDATE wechat_identities SET unionid = ? WHERE app_id = ? AND openid = ?"))
            .bind(unionid)
            .bind(app_id)
            .bind(openid)
            .execute(&self.db.pool)
            .await?;
        self.cache.remember_unionid(app_id, openid);
        Ok(())
    }

    pub async fn unionid(&self, app_id: &str, openid: &str) -> Result<Option<String>, sqlx::Error> {
        if self.surely_unknown(app_id, openid) {
            return Ok(None);
        }
        let row = sqlx::query(self.db.sql("SELECT unionid FROM wechat_identities WHERE app_id = ? AND openid = ?"))
            .bind(app_id)
            .bind(openid)
            .fetch_optional(&self.db.pool)
            .await?;
        Ok(row.map(|r| r.try_get::<Option<String>, _>(0)).transpose()?.flatten())
    }

    /// Appends a login to the audit trail (fields truncated to their columns); queued
    /// behind the answer while the audit writer runs.
    pub async fn record_login(
        &self,
        user_id: &str,
        app: &str,
        how: &str,
        ip: &str,
        user_agent: &str,
    ) -> Result<(), sqlx::Error> {
        let ua: String = user_agent.chars().filter(|c| !c.is_control()).take(256).collect();
        let row = LoginRow {
            app: app.to_string(),
            how: how.to_string(),
            ip: ip.to_string(),
            user_agent: ua,
            at: unix_secs() as i64,
        };
        self.audit.record(&self.db, Queued { user_id: user_id.to_string(), row }).await
    }

    /// Whether anyone logged in from the address block `bucket` (as [`crate::net::limit_bucket`]
    /// names it) at or after `since` (Unix seconds). Stored logins only: the few still
    /// queued are a fraction of a second old.
    pub async fn logged_in_from(&self, bucket: &str, since: i64) -> Result<bool, sqlx::Error> {
        let row = sqlx::query(self.db.sql("SELECT 1 FROM logins WHERE bucket = ? AND at >= ? LIMIT 1"))
            .bind(bucket)
            .bind(since)
            .fetch_optional(&self.db.pool)
            .await?;
        Ok(row.is_some())
    }

    /// The newest `n` logins of a user (stored or still queued), newest first.
    pub async fn recent_logins(&self, user_id: &str, n: i64) -> Result<Vec<LoginRow>, sqlx::Error> {
        self.audit.recent(&self.db, user_id, n).await
    }

    /// Records that token `jti` is revoked until `expires_at` (Unix seconds).
    pub async fn revoke(&self, jti: &str, expires_at: i64) -> Result<(), sqlx::Error> {
        let done = sqlx::query(self.db.sql("SELECT 1 FROM revoked_tokens WHERE jti = ?"))
            .bind(jti)
            .fetch_optional(&self.db.pool)
            .await?;
        if done.is_none() {
            let r = sqlx::query(self.db.sql("INSERT INTO revoked_tokens (jti, expires_at) VALUES (?, ?)"))
                .bind(jti)
                .bind(expires_at)
                .execute(&self.db.pool)
                .await;
            match r {
                Err(e) if is_unique_violation(&e) => {}
                other => {
                    other?;
                }
            }
        }
        // Keep the table small: entries past their token's expiry are useless.
        sqlx::query(self.db.sql("DELETE FROM revoked_tokens WHERE expires_at < ?"))
            .bind(unix_secs() as i64 - 60)
            .execute(&self.db.pool)
            .await?;
        Ok(())
    }

    /// Every revocation whose token expires at or after `now` (Unix seconds).
    pub async fn revoked_since(&self, now: i64) -> Result<Vec<(String, i64)>, sqlx::Error> {
        let rows = sqlx::query(self.db.sql("SELECT jti, expires_at FROM revoked_tokens WHERE expires_at >= ?"))
            .bind(now)
            .fetch_all(&self.db.pool)
            .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    pub async fn is_revoked(&self, jti: &str) -> Result<bool, sqlx::Error> {
        let row = sqlx::query(self.db.sql("SELECT 1 FROM revoked_tokens WHERE jti = ?"))
            .bind(jti)
            .fetch_optional(&self.db.pool)
            .await?;
        Ok(row.is_some())
    }
}

pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| d.is_unique_violation())
}

#[cfg(test)]
mod tests {
    //! The same repository tests on SQLite, PostgreSQL and MariaDB (real servers).
    use super::*;

    crate::each_backend!(
        migrations_run_once,
        bind_creates_then_finds,
        phone_taken_by_another_openid_of_the_same_app,
        openids_are_case_sensitive,
        revocation_is_remembered,
        concurrent_binds_of_one_new_phone_make_one_account,
        login_audit_keeps_the_newest,
    );

    async fn migrations_run_once(db: Db) {
        assert_eq!(db.migrate().await.unwrap(), 0, "a migrated database runs nothing again");
        let n: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM scanlogin_migrations").fetch_one(&db.pool).await.unwrap();
        assert_eq!(n.0 as usize, super::super::MIGRATIONS.len());
    }

    async fn bind_creates_then_finds(db: Db) {
        let u = Users::new(db);
        assert!(u.find_by_openid("wx1", "o1").await.unwrap().is_none());
        let a = u.bind("wx1", "o1", "13800138000").await.unwrap();
        assert_eq!(u.find_by_openid("wx1", "o1").await.unwrap(), Some(a.clone()));
        // Idempotent.
        assert_eq!(u.bind("wx1", "o1", "13800138000").await.unwrap(), a);
        // Same phone, another official account: same person, same account.
        let b = u.bind("wx2", "p1", "13800138000").await.unwrap();
        assert_eq!(a.id, b.id);
        let row = u.get(&a.id).await.unwrap().unwrap();
        assert_eq!(row.phone.as_deref(), Some("13800138000"));
        assert!((unix_secs() as i64 - row.created_at).abs() < 60);
        assert!(u.get("no-such-id").await.unwrap().is_none());
    }

    async fn phone_taken_by_another_openid_of_the_same_app(db: Db) {
        let u = Users::new(db);
        u.bind("wx1", "o1", "13800138000").await.unwrap();
        assert!(matches!(u.check_bindable("wx1", "o2", "13800138000").await, Err(BindError::PhoneTaken)));
        assert!(matches!(u.bind("wx1", "o2", "13800138000").await, Err(BindError::PhoneTaken)));
        assert!(u.check_bindable("wx1", "o1", "13800138000").await.is_ok());
        assert!(u.check_bindable("wx1", "o2", "13900139000").await.is_ok());
        // An openid with an account cannot take a second phone.
        assert!(matches!(u.bind("wx1", "o1", "13900139000").await, Err(BindError::PhoneTaken)));
    }

    /// WeChat openids differ by case alone; MySQL's default collation would merge them.
    async fn openids_are_case_sensitive(db: Db) {
        let u = Users::new(db);
        let a = u.bind("wx1", "oAbCdEf", "13800138000").await.unwrap();
        assert!(u.find_by_openid("wx1", "oabcdef").await.unwrap().is_none());
        let b = u.bind("wx1", "oabcdef", "13900139000").await.unwrap();
        assert_ne!(a.id, b.id);
        assert_eq!(u.find_by_openid("wx1", "oAbCdEf").await.unwrap().unwrap().id, a.id);
        u.revoke("JtI-1", unix_secs() as i64 + 100).await.unwrap();
        assert!(!u.is_revoked("jti-1").await.unwrap());
    }

    async fn revocation_is_remembered(db: Db) {
        let u = Users::new(db);
        let now = unix_secs() as i64;
        assert!(!u.is_revoked("j1").await.unwrap());
        u.revoke("j1", now + 100).await.unwrap();
        u.revoke("j1", now + 100).await.unwrap();
        assert!(u.is_revoked("j1").await.unwrap());
        // Entries past their token's life are swept on the next revocation.
        u.revoke("old", now - 3600).await.unwrap();
        u.revoke("j2", now + 100).await.unwrap();
        assert!(!u.is_revoked("old").await.unwrap());
    }

    async fn concurrent_binds_of_one_new_phone_make_one_account(db: Db) {
        let u = Users::new(db);
        let (a, b) = tokio::join!(u.bind("wx1", "o1", "13800138000"), u.bind("wx2", "p1", "13800138000"));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.id, b.id, "both WeChat users joined the one account of that phone");
    }

    /// Concurrent binds of different people on SQLite all succeed (a deferred
    /// transaction would fail some of them with SQLITE_BUSY).
    #[tokio::test]
    async fn concurrent_binds_on_sqlite_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}/u.db?mode=rwc", dir.path().display())).await.unwrap();
        db.migrate().await.unwrap();
        let u = Users::new(db);
        let binds = (0..16).map(|i| {
            let u = u.clone();
            tokio::spawn(async move { u.bind("wx1", &format!("o{i}"), &format!("1390000{i:04}")).await })
        });
        for b in binds.collect::<Vec<_>>() {
            assert!(b.await.unwrap().is_ok());
        }
    }

    /// A sole writer knows, without a query, who certainly has no account: identities
    /// bound before it started and after are found, and with the database gone a
    /// stranger is still answered (from the filter) while a known one is asked for.
    #[tokio::test]
    async fn a_sole_writer_answers_strangers_without_a_query() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}/u.db?mode=rwc", dir.path().display())).await.unwrap();
        db.migrate().await.unwrap();
        let before = Users::new(db.clone()).bind("wx1", "o_before", "13900000001").await.unwrap();
        let u = Users::sole_writer(db.clone()).await.unwrap();
        assert_eq!(u.find_by_openid("wx1", "o_before").await.unwrap().map(|r| r.id), Some(before.id));
        assert!(u.find_by_openid("wx1", "o_after").await.unwrap().is_none());
        let after = u.bind("wx1", "o_after", "13900000002").await.unwrap();
        assert_eq!(u.find_by_openid("wx1", "o_after").await.unwrap().map(|r| r.id), Some(after.id));
        assert!(u.set_subscribed("wx1", "o_after", false).await.unwrap());
        db.pool.close().await;
        assert!(u.find_by_openid("wx1", "o_stranger").await.unwrap().is_none());
        assert!(!u.set_subscribed("wx1", "o_stranger", true).await.unwrap());
        assert!(!u.lacks_unionid("wx1", "o_stranger").await.unwrap());
        assert!(u.subscribed("wx1", "o_after").await.is_err(), "a known identity is read from the database");
    }

    async fn login_audit_keeps_the_newest(db: Db) {
        let u = Users::new(db);
        let user = u.bind("wx1", "o1", "13800138000").await.unwrap();
        for i in 0..7 {
            u.record_login(
                &user.id,
                "default",
                if i % 2 == 0 { "scan" } else { "bind" },
                "127.0.0.1",
                &format!("ua{i}\n"),
            )
            .await
            .unwrap();
        }
        let recent = u.recent_logins(&user.id, 5).await.unwrap();
        assert_eq!(recent.len(), 5);
        assert!(recent.iter().all(|r| !r.user_agent.contains('\n')), "control characters are dropped");
    }
}
