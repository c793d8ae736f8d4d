//! The operators' view of the attempts (the admin API): list, inspect and end, the same
//! on both engines, by an [`AttemptId`] that cannot be turned back into the poll id.
//!
//! Nothing here hands a poll id out: an operator who can see and end attempts still
//! cannot poll for anyone's token. Listing covers live attempts (an attempt leaves the
//! list when it ends); pages are ordered by a cursor that is opaque to the caller.
//!
//! Single node: the registry's table, read in short slices of slots so a listing never
//! holds the lock the status polls need for long; an attempt an operator ended is
//! tombstoned with its ending like any ending with a reason (`super::tombstones`), so a
//! poll that comes after its record is gone still answers `reason: ended`. Cluster: the index of [`super::cluster::index`].

use std::fmt;

use sha2::{Digest, Sha256};

use super::state::{Ending, Mark, Phase};
use crate::ids::{LoginMode, PollId, PollKind};

/// The most attempts one page lists (docs/api.md: `limit` ≤ 500).
pub const MAX_PAGE: usize = 500;

/// An operator's handle for an attempt: the first 8 bytes (16 hex digits) of the SHA-256
/// of its poll id. A uuid a user reports can be looked up; an id never leads back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttemptId([u8; 8]);

impl AttemptId {
    pub fn of(poll: &PollId) -> Self {
        let d = Sha256::digest(poll.as_str().as_bytes());
        Self(d[..8].try_into().expect("8 of 32 bytes"))
    }

    /// The Redis bucket of the attempt (its first byte): in a Redis Cluster the record,
    /// its scene and its admin index entries live in that bucket's hash slot.
    pub fn bucket(&self) -> u8 {
        self.0[0]
    }

    /// 16 hex digits (either case).
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != 16 {
            return None;
        }
        let mut b = [0u8; 8];
        hex::decode_to_slice(s, &mut b).ok()?;
        Some(Self(b))
    }
}

impl fmt::Display for AttemptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// What an operator sees of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptInfo {
    pub id: AttemptId,
    pub app: String,
    pub phase: Phase,
    /// Why it ended, once `expired`.
    pub ending: Option<Ending>,
    pub created_ms: Option<u64>,
    pub scanned_ms: Option<u64>,
    /// The phases it entered after `loop` (see [`crate::engine::Mark`]).
    pub trail: Vec<Mark>,
    pub expires_at_ms: u64,
    /// Who scanned it (shown masked).
    pub openid: Option<String>,
    pub kind: PollKind,
    /// A provider attempt's key in the provider's records (the hex SHA-256 of its poll
    /// id, as `oidc_requests.poll_hash` stores it): where its client is found. Never shown.
    pub provider_key: Option<String>,
    /// The node that made it, where the engine records it (the cluster's index); `None`
    /// on a single node: this one.
    pub made_on: Option<String>,
    /// The address of the browser that asked for it (its requester), where known.
    pub client_ip: Option<String>,
    /// Logged in by a scan of its QR code, or by a code sent to the account.
    pub mode: LoginMode,
}

/// The provider's key of the attempt polled by `poll` (see [`AttemptInfo::provider_key`]).
pub fn provider_key(poll: &PollId) -> Option<String> {
    (poll.kind() == PollKind::Provider).then(|| hex::encode(Sha256::digest(poll.as_str().as_bytes())))
}

/// Which attempts a listing wants.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub phase: Option<Phase>,
    pub app: Option<String>,
}

impl Filter {
    pub fn admits(&self, i: &AttemptInfo) -> bool {
        self.phase.is_none_or(|p| p == i.phase) && self.app.as_deref().is_none_or(|a| a == i.app)
    }
}

/// One page of a listing, and where the next one starts (`None`: this was the last).
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub attempts: Vec<AttemptInfo>,
    pub next: Option<String>,
}

/// A cursor as the caller sees it: opaque text for a position only the engine reads.
pub fn cursor_text(position: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(position)
}

/// The position of a cursor the engine made (`None`: not one of ours): `l:<slot>` on a
/// single node, `c:<index member>` in a cluster.
pub fn cursor_position(text: &str) -> Option<String> {
    use base64::Engine as _;
    if text.len() > 256 {
        return None;
    }
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).ok()?;
    let pos = String::from_utf8(raw).ok()?;
    let ok = match pos.split_once(':') {
        Some(("l", n)) => n.parse::<u32>().is_ok(),
        Some(("c", m)) => !m.is_empty() && m.bytes().all(|b| b.is_ascii_hexdigit() || b == b':'),
        _ => false,
    };
    ok.then_some(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_the_hash_prefix_of_the_poll_and_parses_back() {
        let poll = PollId::parse("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG").unwrap();
        let id = AttemptId::of(&poll);
        let full = hex::encode(Sha256::digest(poll.as_str().as_bytes()));
        assert_eq!(id.to_string(), full[..16]);
        assert_eq!(AttemptId::parse(&id.to_string()), Some(id));
        assert_eq!(AttemptId::parse(&id.to_string().to_uppercase()), Some(id));
        for bad in ["", "abc", &full[..15], &full[..17], "zzzzzzzzzzzzzzzz"] {
            assert_eq!(AttemptId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn cursors_round_trip_and_refuse_strangers() {
        let c = cursor_text("l:42");
        assert_eq!(cursor_position(&c).as_deref(), Some("l:42"));
        assert_eq!(cursor_position(&cursor_text("c:0001:ab")).as_deref(), Some("c:0001:ab"));
        for bad in ["l:x", "x:1", "c:", "c:zz", "l"] {
            assert_eq!(cursor_position(&cursor_text(bad)), None, "{bad}");
        }
        assert_eq!(cursor_position("!!"), None);
        assert_eq!(cursor_position(&"A".repeat(300)), None);
    }
}
