//! Who may call the admin API: bearer keys checked against the SHA-256 digests of
//! `[[admin.keys]]` in constant time, each key's scopes, and the per-key rate limit.
//!
//! Every configured digest is compared on every call (no early exit), so the time an
//! answer takes says nothing about which key, or which prefix, came close. Calls without
//! a known key are limited per address too: they are what an attacker drives, and each
//! refused one writes an audit row.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{AdminSettings, Scope};

/// Refused calls (no key, an unknown key) one address may make per minute before they
/// are answered 429 without an audit row each.
const REFUSALS_PER_MINUTE: u32 = 30;

/// A configured key: its name, digest and scopes.
struct Key {
    name: String,
    digest: [u8; 32],
    scopes: Vec<Scope>,
}

/// A caller that presented a configured key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    scopes: Vec<Scope>,
}

impl Caller {
    pub fn may(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// Why a call is refused before it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No key, or not one of ours: 401.
    Unknown,
    /// A known key without the scope: 403.
    Scope(Caller),
    /// Too many calls: 429 after this many seconds. The caller, when the key was known.
    Limited(Option<Caller>, u64),
}

pub struct Keys {
    keys: Vec<Key>,
    per_key: DefaultKeyedRateLimiter<usize>,
    refusals: DefaultKeyedRateLimiter<IpAddr>,
}

fn per_minute(n: u32) -> Quota {
    let n = NonZeroU32::new(n.max(1)).expect("max(1)");
    Quota::with_period(Duration::from_secs(60) / n.get()).expect("non-zero period").allow_burst(n)
}

/// Seconds until a limiter allows again, at least 1.
fn retry_secs(not_until: &governor::NotUntil<governor::clock::QuantaInstant>) -> u64 {
    not_until.wait_time_from(DefaultClock::default().now()).as_secs().max(1)
}

impl Keys {
    pub fn new(settings: &AdminSettings) -> Self {
        let keys = settings
            .keys
            .iter()
            .filter_map(|k| {
                let mut digest = [0u8; 32];
                // Validated at load: 64 hex digits.
                hex::decode_to_slice(k.token_sha256.to_ascii_lowercase(), &mut digest).ok()?;
                Some(Key { name: k.name.clone(), digest, scopes: k.scopes.clone() })
            })
            .collect();
        Self {
            keys,
            per_key: RateLimiter::keyed(per_minute(settings.requests_per_minute)),
            refusals: RateLimiter::keyed(per_minute(REFUSALS_PER_MINUTE)),
        }
    }

    /// The key `bearer` is, compared with every configured digest in constant time.
    fn find(&self, bearer: Option<&str>) -> Option<usize> {
        let digest: [u8; 32] = Sha256::digest(bearer.unwrap_or("").as_bytes()).into();
        let mut found = None;
        for (i, k) in self.keys.iter().enumerate() {
            if bool::from(k.digest.ct_eq(&digest)) && bearer.is_some() {
                found = Some(i);
            }
        }
        found
    }

    /// Checks a call with `bearer` (the `Authorization` key, if any) from `ip` that
    /// needs `scope` (`None`: any key).
    pub fn check(&self, bearer: Option<&str>, ip: IpAddr, scope: Option<Scope>) -> Result<Caller, Refusal> {
        let Some(i) = self.find(bearer) else {
            return match self.refusals.check_key(&crate::net::limit_bucket(ip)) {
                Ok(()) => Err(Refusal::Unknown),
                Err(n) => Err(Refusal::Limited(None, retry_secs(&n))),
            };
        };
        let k = &self.keys[i];
        let caller = Caller { name: k.name.clone(), scopes: k.scopes.clone() };
        if let Err(n) = self.per_key.check_key(&i) {
            return Err(Refusal::Limited(Some(caller), retry_secs(&n)));
        }
        match scope {
            Some(s) if !caller.may(s) => Err(Refusal::Scope(caller)),
            _ => Ok(caller),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AdminKey;

    fn keys(per_minute: u32) -> Keys {
        let key = |name: &str, secret: &str, scopes: Vec<Scope>| AdminKey {
            name: name.into(),
            token_sha256: hex::encode(Sha256::digest(secret.as_bytes())).to_uppercase(),
            scopes,
        };
        Keys::new(&AdminSettings {
            bind: "127.0.0.1:9091".into(),
            keys: vec![
                key("reader", "r-secret", vec![Scope::AttemptsRead]),
                key("all", "a-secret", Scope::ALL.to_vec()),
            ],
            requests_per_minute: per_minute,
        })
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn a_key_is_known_by_its_digest_and_held_to_its_scopes() {
        let k = keys(100);
        assert_eq!(k.check(Some("r-secret"), IP, Some(Scope::AttemptsRead)).map(|c| c.name), Ok("reader".into()));
        assert!(
            matches!(k.check(Some("r-secret"), IP, Some(Scope::AttemptsWrite)), Err(Refusal::Scope(c)) if c.name == "reader")
        );
        assert_eq!(k.check(Some("a-secret"), IP, Some(Scope::UsersWrite)).map(|c| c.name), Ok("all".into()));
        assert_eq!(k.check(Some("wrong"), IP, None), Err(Refusal::Unknown));
        assert_eq!(k.check(None, IP, None), Err(Refusal::Unknown));
        assert_eq!(k.check(Some(""), IP, None), Err(Refusal::Unknown));
    }

    #[test]
    fn each_key_has_its_own_rate() {
        let k = keys(2);
        for _ in 0..2 {
            assert!(k.check(Some("r-secret"), IP, None).is_ok());
        }
        assert!(
            matches!(k.check(Some("r-secret"), IP, None), Err(Refusal::Limited(Some(c), s)) if c.name == "reader" && s >= 1)
        );
        assert!(k.check(Some("a-secret"), IP, None).is_ok(), "another key is not slowed");
    }

    #[test]
    fn refusals_are_limited_per_address() {
        let k = keys(100);
        for _ in 0..REFUSALS_PER_MINUTE {
            assert_eq!(k.check(Some("guess"), IP, None), Err(Refusal::Unknown));
        }
        assert!(matches!(k.check(Some("guess"), IP, None), Err(Refusal::Limited(None, _))));
        let other = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(k.check(Some("guess"), other, None), Err(Refusal::Unknown));
    }
}
