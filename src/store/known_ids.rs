//! Which WeChat identities may have an account, answered without a query, on a node
//! that is the only writer of its database (a single node).
//!
//! Most scans at a sign-up page come from people with no account yet, and each asked
//! the database "who is this openid?" only to learn "nobody"; every `subscribe` and
//! `unsubscribe` of such a person was an `UPDATE` that matched no row but still took
//! SQLite's write lock, queueing behind (or ahead of) the snapshot writer. A Bloom
//! filter of every bound (app, openid) answers "certainly not" from memory; "maybe"
//! still asks the database, so a false positive costs one query and never a wrong
//! answer.
//!
//! It is complete because nothing else writes identities: it is filled from the table
//! at start, and [`KnownIds::add`] runs *before* a bind's transaction (a bind that then
//! fails leaves one harmless false positive, and no reader can see the new row while
//! the filter still says "no"). Memory is bounded: 10 bits per identity, sized for
//! four times the identities at start and at least [`MIN_CAPACITY`]; past its size it
//! answers "maybe" more often (the next start sizes it again), and a table too large
//! to load ([`MAX_LOADED`]) runs without it.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use futures_util::TryStreamExt;
use sqlx::Row;

use super::Db;

/// Identities the filter is sized for at least (1.2 MiB).
pub const MIN_CAPACITY: usize = 1_000_000;
/// Beyond this many identities at start, no filter: every lookup asks the database.
pub const MAX_LOADED: usize = 20_000_000;
const BITS_PER_ID: usize = 10;
/// Bit positions per identity: ~1 % false positives at the sized load.
const PROBES: u64 = 7;

pub struct KnownIds {
    words: Vec<AtomicU64>,
    hasher: std::hash::RandomState,
    added: AtomicUsize,
    capacity: usize,
}

impl KnownIds {
    /// An empty filter for about `capacity` identities.
    pub fn with_capacity(capacity: usize) -> Self {
        let bits = capacity.max(1) * BITS_PER_ID;
        let words = (0..bits.div_ceil(64)).map(|_| AtomicU64::new(0)).collect();
        Self { words, hasher: std::hash::RandomState::new(), added: AtomicUsize::new(0), capacity }
    }

    /// Every identity in the database; `None` when there are more than [`MAX_LOADED`].
    pub async fn load(db: &Db) -> Result<Option<Self>, sqlx::Error> {
        let n: i64 = sqlx::query("SELECT COUNT(*) FROM wechat_identities").fetch_one(&db.pool).await?.try_get(0)?;
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        if n > MAX_LOADED {
            tracing::info!(identities = n, "too many identities to filter in memory; scans ask the database");
            return Ok(None);
        }
        let ids = Self::with_capacity((n * 4).max(MIN_CAPACITY));
        let mut rows = sqlx::query("SELECT app_id, openid FROM wechat_identities").fetch(&db.pool);
        while let Some(r) = rows.try_next().await? {
            ids.add(&r.try_get::<String, _>(0)?, &r.try_get::<String, _>(1)?);
        }
        Ok(Some(ids))
    }

    /// The two hashes the probe positions are derived from (double hashing).
    fn hashes(&self, app_id: &str, openid: &str) -> (u64, u64) {
        let mut h = self.hasher.build_hasher();
        (app_id, openid).hash(&mut h);
        let a = h.finish();
        // A second, independent-enough hash: the same state fed one more byte.
        0xA5u8.hash(&mut h);
        (a, h.finish() | 1)
    }

    fn positions(&self, app_id: &str, openid: &str) -> impl Iterator<Item = (usize, u64)> + use<> {
        let (a, b) = self.hashes(app_id, openid);
        let bits = (self.words.len() * 64) as u64;
        (0..PROBES).map(move |i| {
            let bit = a.wrapping_add(i.wrapping_mul(b)) % bits;
            ((bit / 64) as usize, 1u64 << (bit % 64))
        })
    }

    /// Records that (app, openid) may have an account from now on.
    pub fn add(&self, app_id: &str, openid: &str) {
        for (w, mask) in self.positions(app_id, openid) {
            self.words[w].fetch_or(mask, Ordering::SeqCst);
        }
        if self.added.fetch_add(1, Ordering::Relaxed) + 1 == self.capacity {
            // Still correct past this point, only less useful: more strangers are "maybe".
            tracing::warn!(
                capacity = self.capacity,
                "the filter of identities with an account is full; more scans ask the database until the next start resizes it"
            );
        }
    }

    /// `false`: this identity certainly has no account. `true`: ask the database.
    pub fn may_have(&self, app_id: &str, openid: &str) -> bool {
        self.positions(app_id, openid).all(|(w, mask)| self.words[w].load(Ordering::SeqCst) & mask != 0)
    }

    /// Identities added (duplicates included), against the number it was sized for.
    pub fn load_factor(&self) -> f64 {
        self.added.load(Ordering::Relaxed) as f64 / self.capacity as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_added_identity_is_always_maybe_and_few_others_are() {
        let ids = KnownIds::with_capacity(10_000);
        for i in 0..10_000 {
            ids.add("wxapp", &format!("o_{i}"));
        }
        assert!((0..10_000).all(|i| ids.may_have("wxapp", &format!("o_{i}"))), "a false negative");
        let fp = (0..20_000).filter(|i| ids.may_have("wxapp", &format!("x_{i}"))).count();
        assert!(fp < 20_000 / 50, "{fp} false positives of 20,000 at the sized load");
        // The app is part of the key.
        let other = (0..10_000).filter(|i| ids.may_have("wxother", &format!("o_{i}"))).count();
        assert!(other < 10_000 / 50, "{other}");
        assert!((ids.load_factor() - 1.0).abs() < 1e-9);
    }

    #[tokio::test]
    async fn load_reads_every_identity_in_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}/k.db?mode=rwc", dir.path().display())).await.unwrap();
        db.migrate().await.unwrap();
        assert!(!KnownIds::load(&db).await.unwrap().unwrap().may_have("wxa", "o_1"));
        let users = crate::store::Users::new(db.clone());
        for i in 0..50 {
            users.bind("wxa", &format!("o_{i}"), &format!("+86138{i:08}")).await.unwrap();
        }
        let ids = KnownIds::load(&db).await.unwrap().unwrap();
        assert!((0..50).all(|i| ids.may_have("wxa", &format!("o_{i}"))));
        assert!(!ids.may_have("wxa", "o_nobody") || !ids.may_have("wxa", "o_nobody_2"));
    }
}
