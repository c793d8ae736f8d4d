//! Tokens this node signed, or already verified, remembered by the SHA-256 of the whole
//! token: checking one of them again needs no public-key verification. An ES256
//! verification costs ~60 µs with `ring`, a third of a login's CPU on the default config
//! (a page reads `/api/v1/me` right after it logs in); a hash and a lookup cost ~1 µs.
//!
//! Safe because the key is the whole token, signature included: a token differing in
//! any byte is another entry, and finding one would take a SHA-256 collision. The claims
//! are still read and checked (expiry, issuer, audience) on every use, and revocation is
//! the caller's as before. Bounded: past [`MAX`] entries the expired ones are dropped,
//! and if that is not enough the set starts again (tokens only lose the shortcut).

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// Tokens remembered at most (~10 MB).
pub const MAX: usize = 200_000;

/// What is remembered of a token: when it expires, and whether it is an access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub exp: i64,
    pub access: bool,
}

#[derive(Default)]
pub struct Vouched {
    map: Mutex<HashMap<[u8; 32], Entry>>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Vouched {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Entry>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add(&self, token: &str, entry: Entry) {
        let key = digest(token);
        let mut map = self.map();
        if map.len() >= MAX {
            let now = crate::wall::unix_secs() as i64;
            map.retain(|_, e| e.exp > now);
            if map.len() >= MAX {
                map.clear();
            }
        }
        map.insert(key, entry);
    }

    /// What this node knows of `token`, if it signed or verified it.
    pub fn get(&self, token: &str) -> Option<Entry> {
        let key = digest(token);
        self.map().get(&key).copied()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_known_by_every_byte_and_the_set_stays_bounded() {
        let v = Vouched::default();
        let e = Entry { exp: i64::MAX, access: false };
        v.add("a.b.c", e);
        assert_eq!(v.get("a.b.c"), Some(e));
        assert_eq!(v.get("a.b.d"), None, "another signature is another token");
        let old = Entry { exp: 1, access: false };
        for i in 0..MAX {
            v.add(&format!("t{i}"), old);
        }
        assert!(v.len() <= MAX);
        v.add("fresh", e);
        assert!(v.len() < 10, "expired entries dropped when full: {}", v.len());
        assert_eq!(v.get("fresh"), Some(e));
    }
}
