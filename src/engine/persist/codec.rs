//! The compact binary form of a snapshot (format 1), shared by every store.
//!
//! ```text
//! u8      format (1)
//! u32 BE  version            fixed place and width: Redis's Lua compares it in place
//! u8      flags              phase:2 | ending:2 | openid | user | user phone | code
//! varint  expires_at_ms
//! str8    app, scene
//! str8    openid                            if flagged
//! str8    user id, str8 masked user phone   if flagged
//! u8      sms_sent:7 | verified (a code was accepted: the phone may be bound)
//! str8    code phone, [32] code hash, varint sent_at_ms, varint expires_at_ms, u8 wrong
//! varint  created_ms, varint scanned_ms     0 = unknown; absent in older snapshots
//! u8      ext                scanned | requester | ticket    absent in older snapshots
//! u8      ending code        0 none, 1 timeout, 2 consumed, 3 discarded, 4 denied, 5 ended
//! str8    requester ip, str8 requester user agent   if flagged
//! [32]    ticket hash                               if flagged
//! u8      trail length n, then n × (u8 phase code, varint at_ms, str8 node)   if flagged
//! ```
//! The flags byte has two bits for the phase and two for the ending, full since
//! confirmation on the phone: `ext` and the ending code carry what does not fit (the flags
//! byte then holds `not_reg` for `scanned` and `discarded` for a later ending).
//! `str8` is a length byte and the bytes. The poll id is not inside: every store keys the
//! snapshot by it. A loop attempt takes ~57 bytes, a `not_reg` one with a code ~145.
//! The account's phone is stored masked: it only ever leaves the service masked, so the
//! full number need not sit in the snapshot store (the pending code's phone must: the
//! code is bound to it).

use crate::engine::state::{AttemptState, Ending, Mark, PendingCode, Phase, Requester, UserRef};
use crate::ids::{PollId, Scene, mask_phone};

use super::Snapshot;

pub const FORMAT: u8 = 1;

/// The `sms_sent` byte: the count in the low 7 bits (`limits.sms_per_attempt` is at most
/// 100), the "verified" mark in the high one (format 1 snapshots of older versions have
/// it clear, which is what they meant).
const SMS_SENT_MAX: u8 = 0x7f;
const VERIFIED: u8 = 0x80;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("snapshot format {0} is unknown")]
    Format(u8),
    #[error("snapshot is truncated")]
    Truncated,
    #[error("snapshot field {0} is malformed")]
    Malformed(&'static str),
    #[error("snapshot field {0} is longer than 255 bytes")]
    TooLong(&'static str),
}

fn put_str(out: &mut Vec<u8>, s: &str, what: &'static str) -> Result<(), CodecError> {
    let len = u8::try_from(s.len()).map_err(|_| CodecError::TooLong(what))?;
    out.push(len);
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn phase_bits(p: Phase) -> u8 {
    match p {
        Phase::Loop => 0,
        Phase::NotReg => 1,
        Phase::Reg => 2,
        Phase::Expired => 3,
        // Marked in `ext`; `not_reg` is what it becomes for a new user.
        Phase::Scanned => 1,
    }
}

/// The ending's code (the tail's byte; the flags byte holds it capped at 3).
fn ending_code(e: Option<Ending>) -> u8 {
    match e {
        None => 0,
        Some(Ending::Timeout) => 1,
        Some(Ending::Consumed) => 2,
        Some(Ending::Discarded) => 3,
        Some(Ending::Denied) => 4,
        Some(Ending::Ended) => 5,
    }
}
fn ending_of(code: u8) -> Result<Option<Ending>, CodecError> {
    Ok(match code {
        0 => None,
        1 => Some(Ending::Timeout),
        2 => Some(Ending::Consumed),
        3 => Some(Ending::Discarded),
        4 => Some(Ending::Denied),
        5 => Some(Ending::Ended),
        _ => return Err(CodecError::Malformed("ending")),
    })
}

const X_SCANNED: u8 = 1;
const X_REQUESTER: u8 = 1 << 1;
const X_TICKET: u8 = 1 << 2;
const X_TRAIL: u8 = 1 << 3;

const F_OPENID: u8 = 1 << 4;
const F_USER: u8 = 1 << 5;
const F_USER_PHONE: u8 = 1 << 6;
const F_CODE: u8 = 1 << 7;

/// The snapshot's bytes (its poll id excluded).
pub fn encode(s: &Snapshot) -> Result<Vec<u8>, CodecError> {
    let st = &s.state;
    let mut out = Vec::with_capacity(160);
    out.push(FORMAT);
    out.extend_from_slice(&version_u32(st.version).to_be_bytes());
    let mut flags = phase_bits(st.phase) | (ending_code(st.ending).min(3) << 2);
    if st.openid.is_some() {
        flags |= F_OPENID;
    }
    if let Some(u) = &st.user {
        flags |= F_USER;
        if u.phone.is_some() {
            flags |= F_USER_PHONE;
        }
    }
    if st.code.is_some() {
        flags |= F_CODE;
    }
    out.push(flags);
    put_varint(&mut out, st.expires_at_ms);
    put_str(&mut out, &s.app, "app")?;
    put_str(&mut out, s.scene.as_str(), "scene")?;
    if let Some(o) = &st.openid {
        put_str(&mut out, o, "openid")?;
    }
    if let Some(u) = &st.user {
        put_str(&mut out, &u.id, "user id")?;
        if let Some(p) = &u.phone {
            put_str(&mut out, &mask_phone(p), "user phone")?;
        }
    }
    out.push(
        u8::try_from(st.sms_sent).unwrap_or(SMS_SENT_MAX).min(SMS_SENT_MAX) | if st.verified { VERIFIED } else { 0 },
    );
    if let Some(c) = &st.code {
        put_str(&mut out, &c.phone, "code phone")?;
        out.extend_from_slice(&c.hash);
        put_varint(&mut out, c.sent_at_ms);
        put_varint(&mut out, c.expires_at_ms);
        out.push(u8::try_from(c.wrong).unwrap_or(u8::MAX));
    }
    put_varint(&mut out, st.created_ms.unwrap_or(0));
    put_varint(&mut out, st.scanned_ms.unwrap_or(0));
    let mut ext = 0;
    if st.phase == Phase::Scanned {
        ext |= X_SCANNED;
    }
    if st.requester.is_some() {
        ext |= X_REQUESTER;
    }
    if st.ticket.is_some() {
        ext |= X_TICKET;
    }
    if !st.trail.is_empty() {
        ext |= X_TRAIL;
    }
    out.push(ext);
    out.push(ending_code(st.ending));
    if let Some(r) = &st.requester {
        put_str(&mut out, &r.ip, "requester ip")?;
        put_str(&mut out, &r.user_agent, "requester user agent")?;
    }
    if let Some(t) = &st.ticket {
        out.extend_from_slice(t);
    }
    if !st.trail.is_empty() {
        let marks = &st.trail[..st.trail.len().min(Mark::MAX)];
        out.push(marks.len() as u8);
        for m in marks {
            out.push(m.phase.code());
            put_varint(&mut out, m.at_ms);
            put_str(&mut out, m.node.as_deref().unwrap_or(""), "trail node")?;
        }
    }
    Ok(out)
}

/// Lua that sets `v` to the version of the stored record `cur` (-1 when there is none,
/// or it is too short to hold one): the one place a Redis script reads a version, for
/// the snapshot store's newest-wins write and the cluster's compare-and-set alike.
const LUA_READ_VERSION: &str = r"
local cur = redis.call('GET', KEYS[1])
local v = -1
if cur and string.len(cur) >= 5 then
  local a, b, c, d = string.byte(cur, 2, 5)
  v = ((a * 256 + b) * 256 + c) * 256 + d
end
";

/// A Redis script that reads the record at `KEYS[1]` into `cur` and its version into `v`
/// (see [`LUA_READ_VERSION`]), then runs `body`.
pub fn lua_with_version(body: &str) -> String {
    format!("{LUA_READ_VERSION}{body}")
}

/// The version of an encoded snapshot, read in place (`None`: too short to hold one).
pub fn stored_version(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(1..5)?.try_into().ok()?))
}

/// Versions live in 4 bytes: an attempt sees a handful of transitions, never 2^32.
pub fn version_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.buf.len() < n {
            return Err(CodecError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }
    fn varint(&mut self) -> Result<u64, CodecError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(CodecError::Malformed("varint"))
    }
    fn str(&mut self, what: &'static str) -> Result<String, CodecError> {
        let n = self.u8()? as usize;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| CodecError::Malformed(what))
    }
}

/// Reads the snapshot of `poll` from `bytes`. Defensive: store contents are checked as
/// strictly as any input (lengths, enums, id syntax), never trusted.
pub fn decode(poll: PollId, bytes: &[u8]) -> Result<Snapshot, CodecError> {
    let mut r = Reader { buf: bytes };
    let format = r.u8()?;
    if format != FORMAT {
        return Err(CodecError::Format(format));
    }
    let version = u32::from_be_bytes(r.take(4)?.try_into().map_err(|_| CodecError::Truncated)?);
    let flags = r.u8()?;
    let mut phase = match flags & 3 {
        0 => Phase::Loop,
        1 => Phase::NotReg,
        2 => Phase::Reg,
        _ => Phase::Expired,
    };
    let mut ending = match (flags >> 2) & 3 {
        0 => None,
        1 => Some(Ending::Timeout),
        2 => Some(Ending::Consumed),
        _ => Some(Ending::Discarded),
    };
    let expires_at_ms = r.varint()?;
    let app = r.str("app")?;
    if !crate::ids::is_app_name(&app) {
        return Err(CodecError::Malformed("app"));
    }
    let scene = Scene::parse(&r.str("scene")?).ok_or(CodecError::Malformed("scene"))?;
    let openid = if flags & F_OPENID != 0 { Some(r.str("openid")?) } else { None };
    let user = if flags & F_USER != 0 {
        let id = r.str("user id")?;
        let phone = if flags & F_USER_PHONE != 0 { Some(r.str("user phone")?) } else { None };
        Some(UserRef { id, phone })
    } else {
        None
    };
    let sent = r.u8()?;
    let (sms_sent, verified) = (u32::from(sent & SMS_SENT_MAX), sent & VERIFIED != 0);
    let code = if flags & F_CODE != 0 {
        let phone = r.str("code phone")?;
        let hash: [u8; 32] = r.take(32)?.try_into().map_err(|_| CodecError::Truncated)?;
        let sent_at_ms = r.varint()?;
        let expires_at_ms = r.varint()?;
        let wrong = u32::from(r.u8()?);
        Some(PendingCode { phone, hash, sent_at_ms, expires_at_ms, wrong })
    } else {
        None
    };
    // The login timeline came later: a snapshot without it decodes as "unknown".
    let known = |t: u64| (t != 0).then_some(t);
    let (created_ms, scanned_ms) =
        if r.buf.is_empty() { (None, None) } else { (known(r.varint()?), known(r.varint()?)) };
    // So did the tail (confirmation on the phone, the requester).
    let (mut requester, mut ticket, mut trail) = (None, None, Vec::new());
    if !r.buf.is_empty() {
        let ext = r.u8()?;
        if ext & !(X_SCANNED | X_REQUESTER | X_TICKET | X_TRAIL) != 0 {
            return Err(CodecError::Malformed("ext"));
        }
        if ext & X_SCANNED != 0 {
            phase = Phase::Scanned;
        }
        ending = ending_of(r.u8()?)?;
        if ext & X_REQUESTER != 0 {
            let ip = r.str("requester ip")?;
            let user_agent = r.str("requester user agent")?;
            requester = Some(Requester::new(&ip, &user_agent));
        }
        if ext & X_TICKET != 0 {
            ticket = Some(r.take(32)?.try_into().map_err(|_| CodecError::Truncated)?);
        }
        if ext & X_TRAIL != 0 {
            let n = r.u8()? as usize;
            if n > Mark::MAX {
                return Err(CodecError::Malformed("trail"));
            }
            for _ in 0..n {
                let phase = Phase::of_code(r.u8()?).ok_or(CodecError::Malformed("trail"))?;
                let at_ms = r.varint()?;
                let node = r.str("trail node")?;
                trail.push(Mark { phase, at_ms, node: (!node.is_empty()).then_some(node) });
            }
        }
    }
    if !r.buf.is_empty() {
        return Err(CodecError::Malformed("trailing bytes"));
    }
    // The machine's own invariants: a state that breaks them would panic in `step`.
    let consistent = match phase {
        Phase::Loop => openid.is_none() && user.is_none(),
        Phase::NotReg => openid.is_some(),
        Phase::Reg => openid.is_some() && user.is_some(),
        Phase::Expired => ending.is_some(),
        Phase::Scanned => openid.is_some() && ticket.is_some(),
    };
    if !consistent {
        return Err(CodecError::Malformed("phase"));
    }
    let state = AttemptState {
        phase,
        expires_at_ms,
        openid,
        user,
        code,
        sms_sent,
        verified,
        ending,
        version: u64::from(version),
        created_ms,
        scanned_ms,
        ticket,
        requester,
        trail,
    };
    Ok(Snapshot { poll, scene, app, state })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{loop_snapshot, not_reg_with_code, reg_snapshot};
    use super::*;

    /// An attempt's trail (its phases after `loop`: when, and on which node) comes back
    /// as written; a trail longer than the machine can make is refused.
    #[test]
    fn a_trail_round_trips() {
        let mut s = reg_snapshot(3_000);
        s.state.trail = vec![
            Mark { phase: Phase::Scanned, at_ms: 1_700_000_000_123, node: Some("node-2".into()) },
            Mark { phase: Phase::Reg, at_ms: 1_700_000_004_000, node: None },
        ];
        let back = decode(s.poll.clone(), &encode(&s).unwrap()).unwrap();
        assert_eq!(back.state.trail, s.state.trail);
        s.state.trail = vec![s.state.trail[1].clone(); Mark::MAX];
        let mut bytes = encode(&s).unwrap();
        // The count byte sits right before the marks (phase, time, an empty node name
        // each): rewrite it past the bound.
        let per_mark = 1 + varint_len(s.state.trail[0].at_ms) + 1;
        let count_at = bytes.len() - Mark::MAX * per_mark - 1;
        assert_eq!(bytes[count_at] as usize, Mark::MAX);
        bytes[count_at] = Mark::MAX as u8 + 1;
        assert_eq!(decode(s.poll.clone(), &bytes).unwrap_err(), CodecError::Malformed("trail"));
    }

    fn varint_len(mut v: u64) -> usize {
        let mut n = 1;
        while v >= 0x80 {
            v >>= 7;
            n += 1;
        }
        n
    }

    /// An attempt an operator ended keeps saying so after a restart or on another node;
    /// a release that knows only the first three endings reads it as discarded.
    #[test]
    fn an_ended_attempt_round_trips() {
        let mut s = loop_snapshot(1_000);
        s.state.phase = Phase::Expired;
        s.state.ending = Some(Ending::Ended);
        let bytes = encode(&s).unwrap();
        assert_eq!(*bytes.last().unwrap(), 5);
        assert_eq!(decode(s.poll.clone(), &bytes).unwrap(), s);
        assert_eq!((bytes[5] >> 2) & 3, 3, "older readers see discarded");
        let mut bad = bytes.clone();
        *bad.last_mut().unwrap() = 9;
        assert_eq!(decode(s.poll.clone(), &bad).unwrap_err(), CodecError::Malformed("ending"));
    }

    #[test]
    fn round_trips_every_shape() {
        for s in [loop_snapshot(1_000), not_reg_with_code(2_000), reg_snapshot(3_000)] {
            let bytes = encode(&s).unwrap();
            let back = decode(s.poll.clone(), &bytes).unwrap();
            let mut want = s.clone();
            if let Some(u) = &mut want.state.user {
                u.phone = u.phone.as_deref().map(mask_phone);
            }
            assert_eq!(back, want);
        }
    }

    #[test]
    fn is_compact() {
        assert!(encode(&loop_snapshot(1)).unwrap().len() <= 64);
        let n = encode(&not_reg_with_code(1)).unwrap().len();
        assert!(n <= 150, "{n}");
    }

    #[test]
    fn version_sits_big_endian_at_bytes_1_to_4() {
        let mut s = loop_snapshot(1);
        s.state.version = 0x0102_0304;
        assert_eq!(&encode(&s).unwrap()[1..5], &[1, 2, 3, 4]);
        s.state.version = u64::MAX;
        assert_eq!(&encode(&s).unwrap()[1..5], &[0xff; 4]);
    }

    #[test]
    fn the_full_account_phone_never_reaches_the_bytes() {
        let s = reg_snapshot(1);
        let bytes = encode(&s).unwrap();
        let full = s.state.user.as_ref().unwrap().phone.clone().unwrap();
        assert!(!bytes.windows(full.len()).any(|w| w == full.as_bytes()));
    }

    #[test]
    fn the_login_timeline_round_trips() {
        let mut s = reg_snapshot(1);
        (s.state.created_ms, s.state.scanned_ms) = (Some(1_700_000_000_000), Some(1_700_000_004_000));
        let back = decode(s.poll.clone(), &encode(&s).unwrap()).unwrap();
        assert_eq!((back.state.created_ms, back.state.scanned_ms), (s.state.created_ms, s.state.scanned_ms));
    }

    #[test]
    fn a_scanned_attempt_its_ticket_requester_and_a_denial_round_trip() {
        let mut s = reg_snapshot(1);
        s.state.phase = Phase::Scanned;
        s.state.ticket = Some([9; 32]);
        s.state.requester = Some(Requester::new("2001:db8::1", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"));
        let back = decode(s.poll.clone(), &encode(&s).unwrap()).unwrap();
        assert_eq!(
            (back.state.phase, back.state.ticket, &back.state.requester),
            (Phase::Scanned, s.state.ticket, &s.state.requester)
        );
        s.state.phase = Phase::Expired;
        s.state.ending = Some(Ending::Denied);
        let back = decode(s.poll.clone(), &encode(&s).unwrap()).unwrap();
        assert_eq!((back.state.phase, back.state.ending), (Phase::Expired, Some(Ending::Denied)));
        // `scanned` without its ticket would leave a confirmation nobody can give.
        let mut bad = reg_snapshot(1);
        bad.state.phase = Phase::Scanned;
        assert_eq!(decode(bad.poll.clone(), &encode(&bad).unwrap()).unwrap_err(), CodecError::Malformed("phase"));
    }

    #[test]
    fn refuses_garbage_without_panicking() {
        let good = encode(&not_reg_with_code(1)).unwrap();
        let poll = PollId::generate();
        // Without its tail (ext and ending, two bytes here), or without its timeline too
        // (two one-byte zeros), it is a snapshot of an older release, and valid; every
        // other cut is refused.
        let (older, oldest) = (good.len() - 2, good.len() - 4);
        for cut in (0..good.len()).filter(|c| *c != older && *c != oldest) {
            assert!(decode(poll.clone(), &good[..cut]).is_err(), "cut at {cut}");
        }
        let old = decode(poll.clone(), &good[..oldest]).expect("an older snapshot decodes");
        assert_eq!((old.state.created_ms, old.state.scanned_ms), (None, None));
        assert!(decode(poll.clone(), &good[..older]).is_ok());
        let mut longer = good.clone();
        longer.push(0);
        assert_eq!(decode(poll.clone(), &longer).unwrap_err(), CodecError::Malformed("trailing bytes"));
        let mut other = good.clone();
        other[0] = 9;
        assert_eq!(decode(poll.clone(), &other).unwrap_err(), CodecError::Format(9));
        // A `reg` phase without a user would make `step` panic: refused here instead.
        let mut reg = good;
        reg[5] = (reg[5] & !3) | 2;
        assert!(decode(poll, &reg).is_err());
    }

    #[test]
    fn overlong_fields_are_an_error_not_a_truncation() {
        let mut s = loop_snapshot(1);
        s.state.phase = Phase::NotReg;
        s.state.openid = Some("o".repeat(300));
        assert_eq!(encode(&s).unwrap_err(), CodecError::TooLong("openid"));
    }
}
