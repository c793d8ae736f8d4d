//! The `signing_keys` table: the rows of the token signing keys (public JWK, sealed
//! private part, generation, when each key starts signing). What the rows mean — which
//! key signs, which is only published, which is dropped — is `token::keyring`'s.

use sqlx::Row;

use super::Db;
use super::users::is_unique_violation;

/// One stored key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRow {
    pub kid: String,
    pub alg: String,
    pub generation: i64,
    pub public_jwk: String,
    pub private_sealed: String,
    pub created_at: i64,
    pub signs_from: i64,
}

#[derive(Clone)]
pub struct SigningKeys {
    db: Db,
}

impl SigningKeys {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Every stored key, by algorithm and generation.
    pub async fn all(&self) -> Result<Vec<KeyRow>, sqlx::Error> {
        let rows = sqlx::query(self.db.sql(
            "SELECT kid, alg, generation, public_jwk, private_sealed, created_at, signs_from \
             FROM signing_keys ORDER BY alg, generation",
        ))
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(KeyRow {
                    kid: r.try_get(0)?,
                    alg: r.try_get(1)?,
                    generation: r.try_get(2)?,
                    public_jwk: r.try_get(3)?,
                    private_sealed: r.try_get(4)?,
                    created_at: r.try_get(5)?,
                    signs_from: r.try_get(6)?,
                })
            })
            .collect()
    }

    /// Stores a key; `false` when that algorithm's generation is taken already (another
    /// node or a concurrent rotation won: the caller reads the table again).
    pub async fn insert(&self, k: &KeyRow) -> Result<bool, sqlx::Error> {
        let r = sqlx::query(self.db.sql(
            "INSERT INTO signing_keys (kid, alg, generation, public_jwk, private_sealed, created_at, signs_from) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        ))
        .bind(&k.kid)
        .bind(&k.alg)
        .bind(k.generation)
        .bind(&k.public_jwk)
        .bind(&k.private_sealed)
        .bind(k.created_at)
        .bind(k.signs_from)
        .execute(&self.db.pool)
        .await;
        match r {
            Ok(_) => Ok(true),
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub async fn delete(&self, kid: &str) -> Result<(), sqlx::Error> {
        sqlx::query(self.db.sql("DELETE FROM signing_keys WHERE kid = ?")).bind(kid).execute(&self.db.pool).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The same table on SQLite, PostgreSQL and MariaDB (real servers).
    use super::*;

    crate::each_backend!(one_generation_per_algorithm_and_rows_round_trip);

    fn row(kid: &str, alg: &str, generation: i64) -> KeyRow {
        KeyRow {
            kid: kid.into(),
            alg: alg.into(),
            generation,
            public_jwk: format!(r#"{{"kid":"{kid}"}}"#),
            private_sealed: "c2VhbGVk".repeat(300),
            created_at: 1_700_000_000,
            signs_from: 1_700_000_000 + generation,
        }
    }

    async fn one_generation_per_algorithm_and_rows_round_trip(db: Db) {
        let keys = SigningKeys::new(db);
        assert!(keys.insert(&row("KidA", "ES256", 1)).await.unwrap());
        assert!(!keys.insert(&row("KidB", "ES256", 1)).await.unwrap(), "a second first key loses");
        assert!(keys.insert(&row("kida", "ES256", 2)).await.unwrap(), "kids are case-sensitive");
        assert!(keys.insert(&row("KidC", "RS256", 1)).await.unwrap());
        let all = keys.all().await.unwrap();
        assert_eq!(all, vec![row("KidA", "ES256", 1), row("kida", "ES256", 2), row("KidC", "RS256", 1)]);
        keys.delete("KidA").await.unwrap();
        assert_eq!(keys.all().await.unwrap().len(), 2);
    }
}
