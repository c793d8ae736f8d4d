//! A bounded in-process cache of accounts, for the hot reads of a login: the scan's
//! "who is this openid" lookup, `/me`'s account row, and the enrichment's "has this
//! identity a unionid yet". Each was one SQLite round trip per login.
//!
//! Only facts that never change once true are cached, so the cache needs no cross-node
//! invalidation: an identity, once bound, stays bound to its account (nothing unbinds
//! or deletes one), an account's id, phone and creation time are fixed at creation, and
//! a stored unionid is never removed. Misses ("no account yet") are never cached: a bind
//! on another node must be seen at once. A bind still drops the entries it touches, so a
//! future unbind has one place to hook into.
//!
//! Bounded by two generations: when the current map is full it becomes the old one (the
//! older one is dropped); a hit in the old map is promoted. Roughly LRU at O(1) cost.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

use super::UserRow;
use crate::engine::UserRef;

/// Entries per generation and kind (so at most twice this many are kept).
const GENERATION: usize = 50_000;

struct TwoGen<K, V> {
    cur: HashMap<K, V>,
    old: HashMap<K, V>,
    cap: usize,
}

impl<K: Hash + Eq, V: Clone> TwoGen<K, V> {
    fn new(cap: usize) -> Self {
        Self { cur: HashMap::new(), old: HashMap::new(), cap }
    }

    fn get(&mut self, k: K) -> Option<V> {
        if let Some(v) = self.cur.get(&k) {
            return Some(v.clone());
        }
        let v = self.old.remove(&k)?;
        self.insert(k, v.clone());
        Some(v)
    }

    fn insert(&mut self, k: K, v: V) {
        if self.cur.len() >= self.cap && !self.cur.contains_key(&k) {
            self.old = std::mem::take(&mut self.cur);
        }
        self.cur.insert(k, v);
    }

    fn remove(&mut self, k: &K) {
        self.cur.remove(k);
        self.old.remove(k);
    }

    fn len(&self) -> usize {
        self.cur.len() + self.old.len()
    }
}

struct Maps {
    /// (app_id, openid) → its account.
    identities: TwoGen<String, UserRef>,
    /// account id → its row.
    users: TwoGen<String, UserRow>,
    /// (app_id, openid) of identities known to have a unionid.
    unionids: TwoGen<String, ()>,
}

pub struct UserCache {
    maps: Mutex<Maps>,
}

impl Default for UserCache {
    fn default() -> Self {
        Self::with_capacity(GENERATION)
    }
}

/// One key for an identity; `\n` cannot appear in an app id.
fn identity(app_id: &str, openid: &str) -> String {
    let mut k = String::with_capacity(app_id.len() + openid.len() + 1);
    k.push_str(app_id);
    k.push('\n');
    k.push_str(openid);
    k
}

impl UserCache {
    pub fn with_capacity(per_generation: usize) -> Self {
        let cap = per_generation.max(1);
        Self {
            maps: Mutex::new(Maps {
                identities: TwoGen::new(cap),
                users: TwoGen::new(cap),
                unionids: TwoGen::new(cap),
            }),
        }
    }

    fn maps(&self) -> std::sync::MutexGuard<'_, Maps> {
        self.maps.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn account_of(&self, app_id: &str, openid: &str) -> Option<UserRef> {
        self.maps().identities.get(identity(app_id, openid))
    }

    pub fn remember_account(&self, app_id: &str, openid: &str, user: &UserRef) {
        self.maps().identities.insert(identity(app_id, openid), user.clone());
    }

    pub fn user(&self, id: &str) -> Option<UserRow> {
        self.maps().users.get(id.to_string())
    }

    pub fn remember_user(&self, row: &UserRow) {
        self.maps().users.insert(row.id.clone(), row.clone());
    }

    pub fn has_unionid(&self, app_id: &str, openid: &str) -> bool {
        self.maps().unionids.get(identity(app_id, openid)).is_some()
    }

    pub fn remember_unionid(&self, app_id: &str, openid: &str) {
        self.maps().unionids.insert(identity(app_id, openid), ());
    }

    /// A bind changed (app_id, openid) and the account `user_id`: forget both.
    pub fn invalidate(&self, app_id: &str, openid: &str, user_id: &str) {
        let mut m = self.maps();
        let k = identity(app_id, openid);
        m.identities.remove(&k);
        m.unionids.remove(&k);
        m.users.remove(&user_id.to_string());
    }

    /// Entries held, all kinds (for tests).
    pub fn len(&self) -> usize {
        let m = self.maps();
        m.identities.len() + m.users.len() + m.unionids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> UserRef {
        UserRef { id: id.into(), phone: Some("13800138000".into()) }
    }

    #[test]
    fn remembers_until_invalidated() {
        let c = UserCache::default();
        assert_eq!(c.account_of("wx1", "o1"), None);
        c.remember_account("wx1", "o1", &user("u1"));
        assert_eq!(c.account_of("wx1", "o1"), Some(user("u1")));
        assert_eq!(c.account_of("wx2", "o1"), None, "per app");
        c.remember_unionid("wx1", "o1");
        assert!(c.has_unionid("wx1", "o1"));
        c.remember_user(&UserRow { id: "u1".into(), phone: None, created_at: 1 });
        assert!(c.user("u1").is_some());
        c.invalidate("wx1", "o1", "u1");
        assert_eq!(c.account_of("wx1", "o1"), None);
        assert!(!c.has_unionid("wx1", "o1"));
        assert!(c.user("u1").is_none());
    }

    #[test]
    fn stays_bounded_and_keeps_what_is_used() {
        let c = UserCache::with_capacity(10);
        c.remember_account("wx1", "hot", &user("hot"));
        for i in 0..1_000 {
            c.remember_account("wx1", &format!("o{i}"), &user(&format!("u{i}")));
            // A used entry survives the turnover of generations.
            assert!(c.account_of("wx1", "hot").is_some(), "lost the hot entry at {i}");
        }
        assert!(c.len() <= 20, "{} entries", c.len());
    }
}
