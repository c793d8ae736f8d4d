//! The signing keys in use: which key of each algorithm signs now, which are published
//! (the JWK Set), and their life — made on first start, rotated by `scanlogin keys
//! rotate`, dropped after the last token they signed has expired.
//!
//! The SQL table is the truth, shared by every node; each node holds a copy in memory
//! (signing reads no database) and reads the table again every few seconds, well inside
//! the publish delay, so a rotated key is published by every node before any signs.
//!
//! A key's state follows from two times: its own `signs_from` and its successor's (the
//! next generation of the same algorithm):
//! - `pending`: before its `signs_from` — published, signing nothing yet;
//! - `active`: from then until its successor signs — it signs;
//! - `retired`: its successor signs — still published, until every token it can have
//!   signed has expired (`retired_at + max token lifetime`); then it is dropped.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::keys::{Jwk, KeyError, KeyPair, SigningAlg, Verifier};
use crate::config::Secret;
use crate::store::signing_keys::{KeyRow, SigningKeys};

/// Where a key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    Pending,
    Active,
    Retired,
    Expired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Pending => "pending",
            KeyState::Active => "active",
            KeyState::Retired => "retired",
            KeyState::Expired => "expired",
        }
    }
}

/// One key as `keys list` shows it.
#[derive(Debug, Clone)]
pub struct KeyInfo {
    pub kid: String,
    pub alg: SigningAlg,
    pub generation: i64,
    pub state: KeyState,
    pub created_at: i64,
    pub signs_from: i64,
    /// When its successor took over (retired keys).
    pub retired_at: Option<i64>,
    /// When it leaves the JWK Set (retired keys).
    pub dropped_at: Option<i64>,
}

/// What the keys' life depends on.
#[derive(Debug, Clone)]
pub struct KeyPolicy {
    /// The algorithms that must have a signing key.
    pub algorithms: Vec<SigningAlg>,
    /// A rotated key is published this long before it signs.
    pub publish_secs: u64,
    /// The longest life of a token we sign: a retired key stays published that long.
    pub max_token_secs: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("signing keys: database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("signing keys: {0}")]
    Key(#[from] KeyError),
}

/// The keys as last read from the table.
#[derive(Default)]
struct Loaded {
    signing: HashMap<SigningAlg, Arc<KeyPair>>,
    verifiers: HashMap<String, Verifier>,
    /// The JWK Set document, serialized once per read.
    jwks: Arc<str>,
    pairs: HashMap<String, Arc<KeyPair>>,
    infos: Vec<KeyInfo>,
}

/// Shared by every part that signs or verifies (cheap to clone).
#[derive(Clone)]
pub struct Keyring {
    inner: Arc<Inner>,
}

struct Inner {
    table: SigningKeys,
    /// The sealing keys: the current secret's, then the previous one's.
    at_rest: Vec<[u8; 32]>,
    policy: KeyPolicy,
    loaded: RwLock<Arc<Loaded>>,
}

/// The key that seals private keys at rest: from the secret's value, never its display.
pub fn at_rest_key(secret: &Secret) -> [u8; 32] {
    secret.derive("signing-keys-at-rest/v1")
}

fn classify(row: &KeyRow, successor: Option<&KeyRow>, now: i64, max_token_secs: u64) -> KeyInfo {
    let alg = SigningAlg::parse(&row.alg).expect("rows are filtered to known algorithms");
    let retired_at = successor.map(|s| s.signs_from).filter(|at| *at <= now);
    let dropped_at = retired_at.map(|at| at + max_token_secs as i64);
    let state = match (retired_at, dropped_at) {
        _ if now < row.signs_from => KeyState::Pending,
        (Some(_), Some(drop)) if now >= drop => KeyState::Expired,
        (Some(_), _) => KeyState::Retired,
        _ => KeyState::Active,
    };
    KeyInfo {
        kid: row.kid.clone(),
        alg,
        generation: row.generation,
        state,
        created_at: row.created_at,
        signs_from: row.signs_from,
        retired_at,
        dropped_at,
    }
}

impl Keyring {
    /// Reads the table, makes the first key of every algorithm that has none, and drops
    /// expired keys.
    pub async fn open(
        table: SigningKeys,
        secret: &Secret,
        previous: &Secret,
        policy: KeyPolicy,
    ) -> Result<Self, KeyringError> {
        let mut at_rest = vec![at_rest_key(secret)];
        if !previous.is_empty() {
            at_rest.push(at_rest_key(previous));
        }
        let ring = Self { inner: Arc::new(Inner { table, at_rest, policy, loaded: RwLock::default() }) };
        ring.ensure_first_keys().await?;
        ring.reload().await?;
        Ok(ring)
    }

    fn loaded(&self) -> Arc<Loaded> {
        self.inner.loaded.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn ensure_first_keys(&self) -> Result<(), KeyringError> {
        let rows = self.inner.table.all().await?;
        for alg in &self.inner.policy.algorithms {
            if rows.iter().any(|r| r.alg == alg.as_str()) {
                continue;
            }
            // Generation 1 signs at once: no token can be in a cache before it.
            let now = crate::wall::unix_secs() as i64;
            if self.insert(*alg, 1, now).await?.is_none() {
                tracing::info!(alg = %alg, "another node made the first signing key");
            }
        }
        Ok(())
    }

    /// Makes and stores a key; its `kid`, or `None` when that generation was taken.
    async fn insert(&self, alg: SigningAlg, generation: i64, signs_from: i64) -> Result<Option<String>, KeyringError> {
        // RSA key generation takes ~100 ms of CPU: off the async workers.
        let pair =
            tokio::task::spawn_blocking(move || KeyPair::generate(alg)).await.map_err(|_| KeyError::Generate)??;
        let row = KeyRow {
            kid: pair.kid().to_string(),
            alg: alg.as_str().to_string(),
            generation,
            public_jwk: serde_json::to_string(&pair.jwk).expect("a JWK serializes"),
            private_sealed: pair.seal(&self.inner.at_rest[0]),
            created_at: crate::wall::unix_secs() as i64,
            signs_from,
        };
        let stored = self.inner.table.insert(&row).await?;
        if stored {
            tracing::info!(kid = %row.kid, alg = %alg, generation, signs_from, "signing key made");
        }
        Ok(stored.then_some(row.kid))
    }

    /// Adds the next key of every algorithm in use: published now, signing after the
    /// publish delay. Returns the new keys' ids.
    pub async fn rotate(&self) -> Result<Vec<String>, KeyringError> {
        let mut made = Vec::new();
        let mut algs: Vec<SigningAlg> = self.inner.policy.algorithms.clone();
        for r in self.inner.table.all().await? {
            if let Some(a) = SigningAlg::parse(&r.alg).filter(|a| !algs.contains(a)) {
                algs.push(a);
            }
        }
        for alg in algs {
            // A concurrent rotation may take the generation first: try the next one.
            for _ in 0..3 {
                let rows = self.inner.table.all().await?;
                let next = rows.iter().filter(|r| r.alg == alg.as_str()).map(|r| r.generation).max().unwrap_or(0) + 1;
                let signs_from = crate::wall::unix_secs() as i64 + self.inner.policy.publish_secs as i64;
                if let Some(kid) = self.insert(alg, next, signs_from).await? {
                    made.push(kid);
                    break;
                }
            }
        }
        self.reload().await?;
        Ok(made)
    }

    /// Reads the table again (and drops the keys whose tokens have all expired).
    pub async fn reload(&self) -> Result<(), KeyringError> {
        let rows = self.inner.table.all().await?;
        let now = crate::wall::unix_secs() as i64;
        let before = self.loaded();
        let mut next = Loaded::default();
        let mut keys: Vec<serde_json::Value> = Vec::new();
        let known: Vec<&KeyRow> = rows.iter().filter(|r| SigningAlg::parse(&r.alg).is_some()).collect();
        for (i, row) in known.iter().enumerate() {
            let successor = known.get(i + 1).filter(|s| s.alg == row.alg).copied();
            let info = classify(row, successor, now, self.inner.policy.max_token_secs);
            if info.state == KeyState::Expired {
                // Every node may try; deleting twice is harmless.
                if let Err(e) = self.inner.table.delete(&row.kid).await {
                    tracing::warn!(kid = %row.kid, error = %e, "expired signing key not dropped");
                } else {
                    tracing::info!(kid = %row.kid, "expired signing key dropped");
                }
                continue;
            }
            let pair = match before.pairs.get(&row.kid) {
                Some(p) => p.clone(),
                None => {
                    let (alg, kid, sealed, at_rest) =
                        (info.alg, row.kid.clone(), row.private_sealed.clone(), self.inner.at_rest.clone());
                    let opened = tokio::task::spawn_blocking(move || KeyPair::open(alg, &kid, &sealed, &at_rest))
                        .await
                        .map_err(|_| KeyError::Rejected(row.kid.clone()))??;
                    Arc::new(opened)
                }
            };
            let jwk: Jwk = pair.jwk.clone();
            if let Some(v) = jwk.verifier() {
                next.verifiers.insert(row.kid.clone(), v);
            }
            keys.push(serde_json::to_value(&jwk).expect("a JWK serializes"));
            if info.state == KeyState::Active {
                next.signing.insert(info.alg, pair.clone());
            }
            next.pairs.insert(row.kid.clone(), pair);
            next.infos.push(info);
        }
        next.jwks = serde_json::json!({ "keys": keys }).to_string().into();
        *self.inner.loaded.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        Ok(())
    }

    /// Reads the table every `every`, for as long as the process runs.
    pub fn spawn_reloader(&self, every: std::time::Duration) {
        let ring = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = ring.reload().await {
                    tracing::warn!(error = %e, "signing keys not re-read; keeping the last ones");
                }
            }
        });
    }

    /// How often the table is read again: well inside the publish delay.
    pub fn reload_every(&self) -> std::time::Duration {
        std::time::Duration::from_secs((self.inner.policy.publish_secs / 4).clamp(1, 30))
    }

    /// The key that signs `alg` tokens now.
    pub fn signer(&self, alg: SigningAlg) -> Option<Arc<KeyPair>> {
        self.loaded().signing.get(&alg).cloned()
    }

    /// The published key `kid`.
    pub fn verifier(&self, kid: &str) -> Option<Verifier> {
        self.loaded().verifiers.get(kid).cloned()
    }

    /// The JWK Set document.
    pub fn jwks(&self) -> Arc<str> {
        self.loaded().jwks.clone()
    }

    /// Every key's id, algorithm, state and dates (as last read).
    pub fn list(&self) -> Vec<KeyInfo> {
        self.loaded().infos.clone()
    }

    /// How long a relying party may cache the JWK Set: a key is published this long
    /// (and longer) before it signs.
    pub fn jwks_max_age(&self) -> u64 {
        (self.inner.policy.publish_secs / 2).min(3600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testdb;

    fn policy(publish_secs: u64) -> KeyPolicy {
        KeyPolicy { algorithms: vec![SigningAlg::Es256, SigningAlg::EdDsa], publish_secs, max_token_secs: 7200 }
    }

    fn row(alg: &str, generation: i64, signs_from: i64) -> KeyRow {
        KeyRow {
            kid: format!("{alg}-{generation}"),
            alg: alg.into(),
            generation,
            public_jwk: String::new(),
            private_sealed: String::new(),
            created_at: 0,
            signs_from,
        }
    }

    #[test]
    fn a_keys_state_follows_from_its_and_its_successors_times() {
        let (first, second) = (row("ES256", 1, 100), row("ES256", 2, 1000));
        let state = |r: &KeyRow, s: Option<&KeyRow>, now| classify(r, s, now, 500).state;
        assert_eq!(state(&first, None, 100), KeyState::Active);
        assert_eq!(state(&first, Some(&second), 999), KeyState::Active, "its successor only published");
        assert_eq!(state(&second, None, 999), KeyState::Pending);
        assert_eq!(state(&first, Some(&second), 1000), KeyState::Retired);
        assert_eq!(state(&second, None, 1000), KeyState::Active);
        assert_eq!(state(&first, Some(&second), 1499), KeyState::Retired, "its last token still valid");
        assert_eq!(state(&first, Some(&second), 1500), KeyState::Expired);
        assert_eq!(classify(&first, Some(&second), 1200, 500).dropped_at, Some(1500));
    }

    /// Two nodes on one database agree on one first key per algorithm, a rotation is
    /// published before it signs and reaches the other node by a reload, and a restart
    /// (a new keyring on the same table) keeps the keys.
    #[tokio::test]
    async fn nodes_share_keys_and_a_rotation_is_published_before_it_signs() {
        let s = testdb::scratch(crate::store::Backend::Sqlite).await;
        let secret = Secret::from("a secret of this deployment");
        let none = Secret::default();
        let (a, b) = tokio::join!(
            Keyring::open(SigningKeys::new(s.db.clone()), &secret, &none, policy(3600)),
            Keyring::open(SigningKeys::new(s.db.clone()), &secret, &none, policy(3600)),
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        b.reload().await.unwrap();
        let signer = |k: &Keyring, alg| k.signer(alg).unwrap().kid().to_string();
        assert_eq!(signer(&a, SigningAlg::Es256), signer(&b, SigningAlg::Es256), "one first key");
        assert_eq!(a.list().len(), 2);
        let before = signer(&a, SigningAlg::Es256);
        let made = a.rotate().await.unwrap();
        assert_eq!(made.len(), 2);
        assert_eq!(signer(&a, SigningAlg::Es256), before, "the new key waits for the publish delay");
        assert!(a.jwks().contains(&made[0]), "but is published at once");
        assert!(!b.jwks().contains(&made[0]), "the other node has not read it yet");
        b.reload().await.unwrap();
        assert!(b.jwks().contains(&made[0]) && b.verifier(&made[0]).is_some());
        let states: Vec<_> = b.list().iter().map(|k| (k.generation, k.state)).collect();
        assert!(states.contains(&(2, KeyState::Pending)) && states.contains(&(1, KeyState::Active)));
        // A restart keeps them; another secret cannot open them.
        let again =
            Keyring::open(SigningKeys::new(s.db.clone()), &secret, &Secret::default(), policy(3600)).await.unwrap();
        assert_eq!(signer(&again, SigningAlg::Es256), before);
        let wrong =
            Keyring::open(SigningKeys::new(s.db.clone()), &Secret::from("another"), &Secret::default(), policy(3600))
                .await;
        assert!(matches!(wrong, Err(KeyringError::Key(KeyError::Sealed(_)))));
        let rotating =
            Keyring::open(SigningKeys::new(s.db.clone()), &Secret::from("another"), &secret, policy(3600)).await;
        assert!(rotating.is_ok(), "the previous secret opens them during a rotation");
        s.drop_db().await;
    }

    /// With no publish delay the rotated key signs at once, and the retired one is
    /// dropped once no token it signed can be valid.
    #[tokio::test]
    async fn a_retired_key_is_dropped_after_its_last_token_expired() {
        let s = testdb::scratch(crate::store::Backend::Sqlite).await;
        let secret = Secret::from("a secret of this deployment");
        let p = KeyPolicy { algorithms: vec![SigningAlg::Es256], publish_secs: 0, max_token_secs: 0 };
        let k = Keyring::open(SigningKeys::new(s.db.clone()), &secret, &Secret::default(), p).await.unwrap();
        let first = k.signer(SigningAlg::Es256).unwrap().kid().to_string();
        let made = k.rotate().await.unwrap();
        assert_eq!(k.signer(SigningAlg::Es256).unwrap().kid(), made[0]);
        k.reload().await.unwrap();
        assert!(!k.jwks().contains(&first), "dropped: tokens live 0 s here");
        assert_eq!(SigningKeys::new(s.db.clone()).all().await.unwrap().len(), 1, "and deleted from the table");
        s.drop_db().await;
    }
}
