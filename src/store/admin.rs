//! The admin API's records in the SQL database (migration 0010): the append-only audit of
//! operators' calls, and each user's "tokens issued before" mark that logs them out
//! everywhere.
//!
//! The audit is only ever appended to: no statement here updates or deletes a row. Its
//! rows are ordered by time, then by their random id (several nodes may write in the same
//! millisecond), and paged by that pair.

use sqlx::Row;

use super::Db;

/// One audit row: who (the key's name; `None` for a call without a known key), did what
/// (`action`), to what (`target`), from where, when (ms since the epoch), and how it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub id: String,
    pub at_ms: i64,
    pub key_name: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub address: String,
    pub outcome: String,
}

/// Where a page of the audit continues: after this row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCursor {
    pub at_ms: i64,
    pub id: String,
}

#[derive(Clone)]
pub struct AdminStore {
    db: Db,
}

impl AdminStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Appends `row` (its id made here: 128 random bits).
    pub async fn append(&self, mut row: AuditRow) -> Result<AuditRow, sqlx::Error> {
        row.id = hex::encode(rand::random::<[u8; 16]>());
        sqlx::query(self.db.sql(
            "INSERT INTO admin_audit (id, at, key_name, action, target, address, outcome) VALUES (?, ?, ?, ?, ?, ?, ?)",
        ))
        .bind(&row.id)
        .bind(row.at_ms)
        .bind(row.key_name.clone())
        .bind(&row.action)
        .bind(row.target.clone())
        .bind(&row.address)
        .bind(&row.outcome)
        .execute(&self.db.pool)
        .await?;
        Ok(row)
    }

    /// Up to `limit` rows at or after `since_ms`, oldest first, after `cursor` if given.
    pub async fn list(
        &self,
        since_ms: i64,
        cursor: Option<&AuditCursor>,
        limit: i64,
    ) -> Result<Vec<AuditRow>, sqlx::Error> {
        let (after_at, after_id) = cursor.map_or((since_ms - 1, String::new()), |c| (c.at_ms, c.id.clone()));
        let rows = sqlx::query(self.db.sql(
            "SELECT id, at, key_name, action, target, address, outcome FROM admin_audit \
             WHERE at >= ? AND (at > ? OR (at = ? AND id > ?)) ORDER BY at, id LIMIT ?",
        ))
        .bind(since_ms)
        .bind(after_at)
        .bind(after_at)
        .bind(after_id)
        .bind(limit)
        .fetch_all(&self.db.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(AuditRow {
                    id: r.try_get("id")?,
                    at_ms: r.try_get("at")?,
                    key_name: r.try_get("key_name")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    address: r.try_get("address")?,
                    outcome: r.try_get("outcome")?,
                })
            })
            .collect()
    }

    /// Marks every token of `user_id` issued before `before_secs` (Unix seconds) as
    /// refused; a later mark only moves it forward.
    pub async fn log_out_everywhere(&self, user_id: &str, before_secs: i64) -> Result<(), sqlx::Error> {
        let moved = sqlx::query(
            self.db.sql("UPDATE user_logouts SET tokens_before = ? WHERE user_id = ? AND tokens_before < ?"),
        )
        .bind(before_secs)
        .bind(user_id)
        .bind(before_secs)
        .execute(&self.db.pool)
        .await?;
        if moved.rows_affected() > 0 || self.tokens_before(user_id).await?.is_some() {
            return Ok(());
        }
        let r = sqlx::query(self.db.sql("INSERT INTO user_logouts (user_id, tokens_before) VALUES (?, ?)"))
            .bind(user_id)
            .bind(before_secs)
            .execute(&self.db.pool)
            .await;
        match r {
            // Another node marked the user at the same moment: its mark stands (or is
            // moved forward by a retry of the operator's call).
            Err(e) if super::users::is_unique_violation(&e) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Ends every provider session of `user_id` and revokes its refresh tokens (the
    /// provider's records; present whether or not the provider is on).
    pub async fn end_provider_sessions(&self, user_id: &str, now_secs: i64) -> Result<(), sqlx::Error> {
        sqlx::query(self.db.sql("UPDATE oidc_sessions SET ended_at = ? WHERE user_id = ? AND ended_at IS NULL"))
            .bind(now_secs)
            .bind(user_id)
            .execute(&self.db.pool)
            .await?;
        sqlx::query(self.db.sql("UPDATE oidc_refresh_tokens SET revoked = 1 WHERE user_id = ?"))
            .bind(user_id)
            .execute(&self.db.pool)
            .await?;
        Ok(())
    }

    /// The client a provider attempt was made for (`poll_hash`: its key in
    /// `oidc_requests`); `None` once its request is gone.
    pub async fn oidc_client(&self, poll_hash: &str) -> Result<Option<String>, sqlx::Error> {
        let row = sqlx::query(self.db.sql("SELECT client_id FROM oidc_requests WHERE poll_hash = ?"))
            .bind(poll_hash)
            .fetch_optional(&self.db.pool)
            .await?;
        row.map(|r| r.try_get("client_id")).transpose()
    }

    /// Every mark, up to `limit` of them (a single node loads them all at start).
    pub async fn logouts(&self, limit: i64) -> Result<Vec<(String, i64)>, sqlx::Error> {
        let rows = sqlx::query(self.db.sql("SELECT user_id, tokens_before FROM user_logouts LIMIT ?"))
            .bind(limit)
            .fetch_all(&self.db.pool)
            .await?;
        rows.into_iter().map(|r| Ok((r.try_get("user_id")?, r.try_get("tokens_before")?))).collect()
    }

    /// The WeChat identities of `user_id`: (app id, openid).
    pub async fn identities(&self, user_id: &str) -> Result<Vec<(String, String)>, sqlx::Error> {
        let rows =
            sqlx::query(self.db.sql("SELECT app_id, openid FROM wechat_identities WHERE user_id = ? ORDER BY app_id"))
                .bind(user_id)
                .fetch_all(&self.db.pool)
                .await?;
        rows.into_iter().map(|r| Ok((r.try_get("app_id")?, r.try_get("openid")?))).collect()
    }

    /// The user's mark: tokens issued before it are refused (`None`: never logged out).
    pub async fn tokens_before(&self, user_id: &str) -> Result<Option<i64>, sqlx::Error> {
        let row = sqlx::query(self.db.sql("SELECT tokens_before FROM user_logouts WHERE user_id = ?"))
            .bind(user_id)
            .fetch_optional(&self.db.pool)
            .await?;
        row.map(|r| r.try_get("tokens_before")).transpose()
    }
}

#[cfg(test)]
mod tests {
    //! The audit and the logout marks on SQLite, PostgreSQL and MariaDB (real servers).
    use super::*;

    crate::each_backend!(
        audit_rows_page_in_time_order,
        logout_marks_only_move_forward,
        a_logout_ends_the_users_provider_sessions_and_refresh_tokens
    );

    fn row(at_ms: i64, action: &str) -> AuditRow {
        AuditRow {
            id: String::new(),
            at_ms,
            key_name: Some("oncall".into()),
            action: action.into(),
            target: None,
            address: "127.0.0.1".into(),
            outcome: "ok".into(),
        }
    }

    async fn audit_rows_page_in_time_order(db: Db) {
        let s = AdminStore::new(db);
        for (at, a) in [(2000, "b"), (1000, "a"), (2000, "c"), (3000, "d")] {
            s.append(row(at, a)).await.unwrap();
        }
        let first = s.list(1500, None, 2).await.unwrap();
        assert_eq!(first.iter().map(|r| r.at_ms).collect::<Vec<_>>(), vec![2000, 2000]);
        let last = &first[1];
        let cursor = AuditCursor { at_ms: last.at_ms, id: last.id.clone() };
        let rest = s.list(1500, Some(&cursor), 10).await.unwrap();
        assert_eq!(rest.iter().map(|r| r.action.as_str()).collect::<Vec<_>>(), vec!["d"]);
        assert_eq!(s.list(0, None, 10).await.unwrap().len(), 4);
        let mut unknown = row(5000, "attempts.end");
        unknown.key_name = None;
        s.append(unknown).await.unwrap();
        assert_eq!(s.list(5000, None, 10).await.unwrap()[0].key_name, None);
    }

    async fn logout_marks_only_move_forward(db: Db) {
        let s = AdminStore::new(db);
        assert_eq!(s.tokens_before("u1").await.unwrap(), None);
        s.log_out_everywhere("u1", 100).await.unwrap();
        s.log_out_everywhere("u1", 50).await.unwrap();
        assert_eq!(s.tokens_before("u1").await.unwrap(), Some(100));
        s.log_out_everywhere("u1", 200).await.unwrap();
        assert_eq!(s.tokens_before("u1").await.unwrap(), Some(200));
        assert_eq!(s.tokens_before("u2").await.unwrap(), None);
    }

    async fn a_logout_ends_the_users_provider_sessions_and_refresh_tokens(db: Db) {
        use crate::store::oidc::{Authn, Grant, OidcStore, RefreshTake};
        let (s, oidc) = (AdminStore::new(db.clone()), OidcStore::new(db));
        let authn = |user: &str| Authn { user_id: user.into(), amr: "wechat".into(), auth_time: 1000 };
        let (_, mine) = oidc.new_session(&authn("u1"), 9000).await.unwrap();
        let (_, theirs) = oidc.new_session(&authn("u2"), 9000).await.unwrap();
        for (token, user, sid) in [("r1", "u1", &mine.sid), ("r2", "u2", &theirs.sid)] {
            let g = Grant { client_id: "c".into(), scope: "openid".into(), sid: sid.clone(), authn: authn(user) };
            oidc.put_refresh(token, &format!("f-{token}"), &g, 9000).await.unwrap();
        }
        s.end_provider_sessions("u1", 2000).await.unwrap();
        assert!(oidc.session_over(&mine.sid, 2001).await.unwrap());
        assert!(!oidc.session_over(&theirs.sid, 2001).await.unwrap(), "another user's session stands");
        assert!(matches!(oidc.take_refresh("r1", 2001).await.unwrap(), RefreshTake::Revoked));
        assert!(matches!(oidc.take_refresh("r2", 2001).await.unwrap(), RefreshTake::Fresh { .. }));
    }
}
