//! Attempt records as Redis keeps them: sealed, so that access to Redis is not access to
//! logins.
//!
//! A poll id is the browser's secret: whoever has it collects the token. Redis is often
//! readable by more people and machines than the service (a replica, `MONITOR`, an RDB
//! copy, a backup), so no poll id is ever written there in the clear:
//! - a record is stored under its **record id**, a keyed hash of its poll id (32 hex
//!   digits): the key, the scene index's value and the wake-up message all carry it, and
//!   it cannot be turned back into the poll id;
//! - the record carries its poll id **encrypted** (a keystream from a keyed PRF of the
//!   record id: one record id, one poll id, so the stream is never reused), since a
//!   restore or a scan that arrives by scene must learn whom it is for;
//! - the record is **authenticated**: an HMAC-SHA256 (128 bits) over its record id and
//!   its bytes, checked in constant time before anything in it is believed. A record that
//!   fails it (written by someone without the secret, moved to another key, or cut) is
//!   treated as gone: nobody can mint a `reg` state for the user of their choice.
//!
//! ```text
//! codec bytes (format 1: the version stays at bytes 1..5 for the Lua compare-and-set)
//! [n] poll id XOR keystream, u8 n, [16] MAC
//! ```
//! The keys are derived from `token.secret`, so every node of a deployment agrees.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::Snapshot;
use super::codec::{self, CodecError};
use crate::ids::PollId;

const MAC_LEN: usize = 16;
/// Poll ids are at most 64 characters (docs/api.md): two PRF blocks of keystream.
const POLL_MAX: usize = 64;

type HmacSha256 = Hmac<Sha256>;

/// Why a stored record is not believed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("record fails its authentication")]
    Forged,
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// The id a record is stored under (32 lowercase hex digits).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordId(String);

impl RecordId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A record id as read back from Redis (the scene index, a wake-up message).
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 32 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
            .then(|| Self(s.to_string()))
    }
}

/// The three keys of the seal, derived from one secret, each kept as an HMAC already
/// keyed (a clone costs a copy, not the key's two hash blocks: a status poll in cluster
/// mode opens a record).
#[derive(Clone)]
pub struct Seal {
    id_key: HmacSha256,
    stream_key: HmacSha256,
    mac_key: HmacSha256,
}

impl std::fmt::Debug for Seal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seal(<keys>)")
    }
}

fn keyed(key: &[u8]) -> HmacSha256 {
    <HmacSha256 as KeyInit>::new_from_slice(key).expect("any key length")
}

fn mac(key: &HmacSha256, parts: &[&[u8]]) -> HmacSha256 {
    let mut m = key.clone();
    for p in parts {
        m.update(p);
    }
    m
}

fn derive(secret: &[u8], purpose: &str) -> HmacSha256 {
    let k: [u8; 32] =
        mac(&keyed(secret), &[b"scanlogin/redis-record/v1/", purpose.as_bytes()]).finalize().into_bytes().into();
    keyed(&k)
}

impl Seal {
    /// The seal of a deployment whose `token.secret` is `secret`.
    pub fn new(secret: &[u8]) -> Self {
        Self { id_key: derive(secret, "id"), stream_key: derive(secret, "poll"), mac_key: derive(secret, "mac") }
    }

    /// The first byte is the attempt's bucket (`AttemptId::bucket`, a plain hash of the
    /// poll id: 8 bits that say nothing usable), the other 15 a keyed hash: a Redis
    /// Cluster places the record and its admin entries in one slot by it.
    pub fn record_id(&self, poll: &PollId) -> RecordId {
        let h = mac(&self.id_key, &[poll.as_str().as_bytes()]).finalize().into_bytes();
        let bucket = crate::engine::admin::AttemptId::of(poll).bucket();
        RecordId(format!("{bucket:02x}{}", hex::encode(&h[1..16])))
    }

    fn keystream(&self, id: &RecordId) -> [u8; POLL_MAX] {
        let mut out = [0u8; POLL_MAX];
        for (i, block) in out.chunks_mut(32).enumerate() {
            let b = mac(&self.stream_key, &[id.0.as_bytes(), &[i as u8]]).finalize().into_bytes();
            block.copy_from_slice(&b[..block.len()]);
        }
        out
    }

    fn tag(&self, id: &RecordId, body: &[u8]) -> [u8; MAC_LEN] {
        let t = mac(&self.mac_key, &[id.0.as_bytes(), body]).finalize().into_bytes();
        t[..MAC_LEN].try_into().expect("a SHA-256 tag is longer")
    }

    /// The bytes Redis keeps for `snap`, under [`Seal::record_id`] of its poll id.
    pub fn seal(&self, snap: &Snapshot) -> Result<Vec<u8>, CodecError> {
        let id = self.record_id(&snap.poll);
        let poll = snap.poll.as_str().as_bytes();
        let n = u8::try_from(poll.len())
            .ok()
            .filter(|n| usize::from(*n) <= POLL_MAX)
            .ok_or(CodecError::TooLong("poll id"))?;
        let mut out = codec::encode(snap)?;
        out.extend(poll.iter().zip(self.keystream(&id)).map(|(p, k)| p ^ k));
        out.push(n);
        let tag = self.tag(&id, &out);
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// The snapshot stored under `id`, if its bytes are authentic.
    pub fn open(&self, id: &RecordId, bytes: &[u8]) -> Result<Snapshot, SealError> {
        self.open_as(id, bytes, None)
    }

    /// [`Seal::open`] of the record of `poll` (stored under its record id): the poll id
    /// inside need not be decrypted, since the authenticated record id is derived from it.
    pub fn open_for(&self, poll: &PollId, id: &RecordId, bytes: &[u8]) -> Result<Snapshot, SealError> {
        self.open_as(id, bytes, Some(poll))
    }

    fn open_as(&self, id: &RecordId, bytes: &[u8], poll: Option<&PollId>) -> Result<Snapshot, SealError> {
        use subtle::ConstantTimeEq;
        let split = bytes.len().checked_sub(MAC_LEN).ok_or(SealError::Forged)?;
        let (body, tag) = bytes.split_at(split);
        if !bool::from(self.tag(id, body).ct_eq(tag)) {
            return Err(SealError::Forged);
        }
        // Authentic from here on: the layout is ours.
        let (n, body) = body.split_last().ok_or(SealError::Forged)?;
        let n = usize::from(*n);
        let split = body.len().checked_sub(n).filter(|_| n <= POLL_MAX).ok_or(SealError::Forged)?;
        let (record, enc) = body.split_at(split);
        let poll = match poll {
            Some(p) => p.clone(),
            None => {
                let poll: Vec<u8> = enc.iter().zip(self.keystream(id)).map(|(c, k)| c ^ k).collect();
                std::str::from_utf8(&poll).ok().and_then(PollId::parse).ok_or(SealError::Forged)?
            }
        };
        Ok(codec::decode(poll, record)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::persist::testing::{loop_snapshot, reg_snapshot};

    #[test]
    fn a_sealed_record_opens_under_its_id_and_hides_its_poll_id() {
        let seal = Seal::new(b"a secret of thirty-two bytes or more!!");
        let snap = reg_snapshot(60_000);
        let id = seal.record_id(&snap.poll);
        let bytes = seal.seal(&snap).unwrap();
        assert_eq!(seal.open_for(&snap.poll, &id, &bytes), seal.open(&id, &bytes), "the poll id inside is the one");
        // What the codec keeps (the account's phone masked), and its poll id.
        let kept = codec::decode(snap.poll.clone(), &codec::encode(&snap).unwrap()).unwrap();
        assert_eq!(seal.open(&id, &bytes).unwrap(), kept);
        let poll = snap.poll.as_str().as_bytes();
        assert!(!bytes.windows(poll.len()).any(|w| w == poll), "no poll id in the clear");
        assert!(!id.as_str().contains(snap.poll.as_str()));
        assert_eq!(RecordId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(&bytes[1..5], &codec::encode(&snap).unwrap()[1..5], "the version stays where Lua reads it");
    }

    #[test]
    fn a_record_that_is_changed_moved_or_sealed_with_another_secret_is_refused() {
        let seal = Seal::new(b"one secret one secret one secret!!");
        let snap = loop_snapshot(60_000);
        let id = seal.record_id(&snap.poll);
        let bytes = seal.seal(&snap).unwrap();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 1;
            assert_eq!(seal.open(&id, &b).unwrap_err(), SealError::Forged, "byte {i} flipped");
        }
        let other = seal.record_id(&loop_snapshot(60_000).poll);
        assert_eq!(seal.open(&other, &bytes).unwrap_err(), SealError::Forged, "moved to another key");
        let stranger = Seal::new(b"another secret, another deployment");
        assert_ne!(stranger.record_id(&snap.poll), id);
        assert_eq!(seal.open(&id, &stranger.seal(&snap).unwrap()).unwrap_err(), SealError::Forged);
        assert_eq!(seal.open(&id, &codec::encode(&snap).unwrap()).unwrap_err(), SealError::Forged, "unsealed");
        assert_eq!(seal.open(&id, b"").unwrap_err(), SealError::Forged);
    }
}
