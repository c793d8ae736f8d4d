//! The pure state machine of one login attempt: `step(state, event, now) -> Step`, the
//! next state, the reply to the caller and the [`Actions`] to perform.
//!
//! No actix, no I/O, no clock reads: the single-node actor executes it, the cluster
//! engine runs the same function over a Redis record, tests table-drive it. The machine
//! says what to do (persist, wake waiters, send the code, hand out the token, end); the
//! executors only do it. Times are absolute milliseconds since the Unix epoch, as
//! snapshots store them.

use subtle::ConstantTimeEq;

/// The outside phase of an attempt (docs/api.md "Login states").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    Loop,
    NotReg,
    Reg,
    Expired,
    /// Scanned by an app that asks for confirmation: waiting for the person's decision
    /// on the phone (docs/api.md "Confirm on the phone").
    Scanned,
}

impl Phase {
    /// The numeric code the original Java design used.
    pub fn code(self) -> u8 {
        match self {
            Phase::Expired => 1,
            Phase::Loop => 2,
            Phase::Reg => 3,
            Phase::NotReg => 4,
            Phase::Scanned => 5,
        }
    }

    /// The phase of a numeric code (`None`: not one).
    pub fn of_code(code: u8) -> Option<Self> {
        [Phase::Expired, Phase::Loop, Phase::Reg, Phase::NotReg, Phase::Scanned].into_iter().find(|p| p.code() == code)
    }

    pub fn name(self) -> &'static str {
        match self {
            Phase::Loop => "loop",
            Phase::NotReg => "not_reg",
            Phase::Reg => "reg",
            Phase::Expired => "expired",
            Phase::Scanned => "scanned",
        }
    }

    /// Nothing to do but wait for the person on the phone: a held poll waits on it.
    pub fn is_waiting(self) -> bool {
        matches!(self, Phase::Loop | Phase::Scanned)
    }
}

/// Why an attempt ended; feeds the "finished attempts by outcome" metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The timer ran out.
    Timeout,
    /// The token was handed out (a registered scan, or a phone bound).
    Consumed,
    /// Given up by the service itself (e.g. WeChat refused to make the QR code).
    Discarded,
    /// The person who scanned tapped Deny on the phone.
    Denied,
    /// Ended by an operator (the admin API's `end`).
    Ended,
}

impl Ending {
    /// The `reason` an `expired` answer carries for this ending; `None` for the endings
    /// the contract leaves unexplained (timed out, used, given up).
    pub fn reason(self) -> Option<&'static str> {
        match self {
            Ending::Denied => Some("denied"),
            Ending::Ended => Some("ended"),
            Ending::Timeout | Ending::Consumed | Ending::Discarded => None,
        }
    }
}

/// The browser that asked for the login, as the service saw it when the attempt was
/// made: shown to the person who scans (confirm on the phone) and to operators.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Requester {
    /// The client address (behind trusted proxies, the forwarded one).
    pub ip: String,
    pub user_agent: String,
}

impl Requester {
    /// Longest address kept (an IPv6 text form is at most 45 bytes).
    pub const IP_MAX: usize = 64;
    /// Longest `User-Agent` kept: enough to tell the browser and OS, bounded so an
    /// attacker's header cannot grow every snapshot.
    pub const USER_AGENT_MAX: usize = 200;

    /// The facts, cut to their bounds (at a character boundary).
    pub fn new(ip: &str, user_agent: &str) -> Self {
        Self { ip: cut(ip, Self::IP_MAX).to_string(), user_agent: cut(user_agent, Self::USER_AGENT_MAX).to_string() }
    }
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The account a scan or a bind resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRef {
    pub id: String,
    /// Stored in full; masked whenever it leaves the service.
    pub phone: Option<String>,
}

/// The SMS code currently outstanding for this attempt; only its keyed hash is kept.
#[derive(Clone, PartialEq, Eq)]
pub struct PendingCode {
    pub phone: String,
    pub hash: [u8; 32],
    pub sent_at_ms: u64,
    pub expires_at_ms: u64,
    pub wrong: u32,
}

impl std::fmt::Debug for PendingCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingCode")
            .field("phone", &crate::ids::mask_phone(&self.phone))
            .field("wrong", &self.wrong)
            .finish_non_exhaustive()
    }
}

/// Everything that defines an attempt; what a snapshot stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptState {
    pub phase: Phase,
    pub expires_at_ms: u64,
    pub openid: Option<String>,
    pub user: Option<UserRef>,
    pub code: Option<PendingCode>,
    /// Codes sent for this attempt (bounded by `Rules::sms_per_attempt`).
    pub sms_sent: u32,
    /// A code was accepted: only now may the phone be bound (`Event::Bound`).
    pub verified: bool,
    pub ending: Option<Ending>,
    /// Bumped on every change: the store keeps the newest, the cluster's compare-and-set
    /// writes only over the version it read.
    pub version: u64,
    /// When the attempt was made and first scanned (ms since the epoch), for the
    /// login-latency histograms; `None` where unknown (a snapshot of an older release).
    pub created_ms: Option<u64>,
    pub scanned_ms: Option<u64>,
    /// The SHA-256 of the confirmation ticket handed to the scanner (`scanned`, and kept
    /// after it so the cluster's ticket index is removed with the attempt). Only its
    /// hash: the ticket itself leaves in the passive reply and is never stored.
    pub ticket: Option<[u8; 32]>,
    /// Who asked for the login (`None`: unknown, e.g. a snapshot of an older release).
    pub requester: Option<Requester>,
    /// Every phase the attempt entered after `loop`, when, and on which node (what an
    /// operator inspects). At most [`Mark::MAX`]: the machine has no cycles, so a real
    /// attempt never fills it.
    pub trail: Vec<Mark>,
}

/// One entry of an attempt's [`AttemptState::trail`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub phase: Phase,
    pub at_ms: u64,
    /// The node that wrote it, where the executor says (the cluster engine); `None` on a
    /// single node, which is the only one.
    pub node: Option<String>,
}

impl Mark {
    /// The longest trail kept.
    pub const MAX: usize = 8;
    /// The longest node name kept with a mark.
    pub const NODE_MAX: usize = 64;

    /// `node` as a mark keeps it (cut to [`Mark::NODE_MAX`] bytes).
    pub fn node_name(node: &str) -> String {
        cut(node, Self::NODE_MAX).to_string()
    }
}

impl AttemptState {
    pub fn new(expires_at_ms: u64) -> Self {
        Self {
            phase: Phase::Loop,
            expires_at_ms,
            openid: None,
            user: None,
            code: None,
            sms_sent: 0,
            verified: false,
            ending: None,
            version: 0,
            created_ms: None,
            scanned_ms: None,
            ticket: None,
            requester: None,
            trail: Vec::new(),
        }
    }

    /// A fresh attempt made at `now_ms`, living until `expires_at_ms`.
    pub fn fresh(now_ms: u64, expires_at_ms: u64) -> Self {
        Self { created_ms: Some(now_ms), ..Self::new(expires_at_ms) }
    }

    /// Seconds left, rounded up, never negative.
    pub fn expires_in(&self, now_ms: u64) -> u64 {
        self.expires_at_ms.saturating_sub(now_ms).div_ceil(1000)
    }
}

/// The limits the machine enforces itself (per attempt, per code).
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub code_attempts: u32,
    pub sms_resend_ms: u64,
    pub sms_per_attempt: u32,
}

impl Default for Rules {
    fn default() -> Self {
        Self { code_attempts: 5, sms_resend_ms: 60_000, sms_per_attempt: 3 }
    }
}

/// What can happen to an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// WeChat says `openid` scanned this attempt's QR; `user` is its account, if any.
    Scanned { openid: String, user: Option<UserRef> },
    /// The same scan of an app that asks for confirmation: nobody is logged in until a
    /// [`Event::Confirm`] with the ticket whose SHA-256 is `ticket`.
    ScannedToConfirm { openid: String, user: Option<UserRef>, ticket: [u8; 32] },
    /// The scanner confirmed on the phone (`ticket`: the SHA-256 of the ticket shown).
    Confirm { ticket: [u8; 32] },
    /// The scanner denied on the phone: the attempt ends.
    Deny { ticket: [u8; 32] },
    /// A poll: in `reg` it takes the token and ends the attempt.
    Claim,
    /// An SMS code (already hashed) is about to be sent to `phone`.
    CodeIssued { phone: String, hash: [u8; 32], ttl_ms: u64 },
    /// Sending the code with `hash` failed: forget it, as if never sent.
    CodeFailed { hash: [u8; 32] },
    /// The person typed a code for `phone`; `hash` is the same keyed hash.
    CodeEntered { phone: String, hash: [u8; 32] },
    /// The phone was bound to `user` in the database: log in.
    Bound { user: UserRef },
    /// The expiry timer fired (possibly late, possibly for an older deadline).
    Timeout,
    /// The service gives the attempt up.
    Discard,
    /// An operator ends the attempt (from any live phase).
    End,
}

/// The answer to the caller of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Done (or nothing to do); the caller reads the state.
    Ok,
    /// Hand this user a token: the attempt is consumed.
    Token(UserRef),
    /// The code was right: bind the phone to this openid.
    CodeAccepted { openid: String },
    /// A wrong code for the phone the live code was sent to: the caller charges that phone.
    InvalidCode { attempts_left: u32 },
    /// This attempt has no live code for the phone guessed (none sent to it, or the code
    /// is dead or expired): answered like a wrong code, but charged to no phone, so
    /// nobody can lock someone else's number by guessing.
    NoCodeForPhone { attempts_left: u32 },
    /// Too soon or too many codes; retry after this many seconds.
    RateLimited { retry_after_secs: u64 },
    /// The event does not apply in the current phase.
    WrongState,
    /// The attempt is over.
    Expired,
}

/// What the executor of a step must do, in this order: store the new state (before
/// anyone learns of it), then send the code / hand out the token the reply carries, wake
/// the waiters, and stop the attempt if it ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Actions {
    /// The state changed: store it before the answer.
    pub persist: bool,
    /// Held polls and streams must read the state again.
    pub wake: bool,
    /// A code was reserved: send it (and report a failure with `Event::CodeFailed`).
    pub send_sms: bool,
    /// The reply carries the token: it leaves the engine with this answer, once.
    pub hand_out: bool,
    /// The attempt is over, for this reason.
    pub end: Option<Ending>,
}

/// One step of the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub state: AttemptState,
    pub reply: Reply,
    pub actions: Actions,
}

impl Step {
    fn of(before: &AttemptState, state: AttemptState, reply: Reply, event: &Event) -> Self {
        let changed = state.version != before.version;
        let actions = Actions {
            persist: changed,
            wake: changed,
            send_sms: changed && matches!(event, Event::CodeIssued { .. }) && reply == Reply::Ok,
            hand_out: matches!(reply, Reply::Token(_)),
            end: (changed && state.phase == Phase::Expired).then_some(state.ending).flatten(),
        };
        Self { state, reply, actions }
    }
}

fn end(s: &mut AttemptState, why: Ending) {
    s.phase = Phase::Expired;
    s.ending = Some(why);
    s.code = None;
}

/// Applies `event` at time `now_ms`. The returned state equals the input (same
/// version) when nothing changed; the actions say what the executor must do.
pub fn step(state: &AttemptState, event: &Event, now_ms: u64, rules: &Rules) -> Step {
    let (next, reply) = next(state, event, now_ms, rules);
    Step::of(state, next, reply, event)
}

fn next(state: &AttemptState, event: &Event, now_ms: u64, rules: &Rules) -> (AttemptState, Reply) {
    let mut s = state.clone();
    // Every event past the deadline sees an expired attempt, even if the timer is late.
    if s.phase != Phase::Expired && now_ms >= s.expires_at_ms {
        end(&mut s, Ending::Timeout);
    }
    let reply = match (s.phase, event) {
        (Phase::Expired, Event::Timeout | Event::Discard | Event::End) => Reply::Ok,
        (Phase::Expired, _) => Reply::Expired,
        (_, Event::Timeout) => Reply::Ok, // early or stale timer: the deadline check above decides
        (_, Event::Discard) => {
            end(&mut s, Ending::Discarded);
            Reply::Ok
        }
        (_, Event::End) => {
            end(&mut s, Ending::Ended);
            Reply::Ok
        }
        (Phase::Loop, Event::Scanned { openid, user }) => {
            s.openid = Some(openid.clone());
            s.scanned_ms = Some(now_ms);
            s.user = user.clone();
            s.phase = scan_result(user);
            Reply::Ok
        }
        // The scan's account is kept for the confirmation, which then goes as the scan
        // would have gone.
        (Phase::Loop, Event::ScannedToConfirm { openid, user, ticket }) => {
            s.openid = Some(openid.clone());
            s.scanned_ms = Some(now_ms);
            s.user = user.clone();
            s.ticket = Some(*ticket);
            s.phase = Phase::Scanned;
            Reply::Ok
        }
        // A repeated scan (WeChat retry, second tap, another person) changes nothing.
        (_, Event::Scanned { .. } | Event::ScannedToConfirm { .. }) => Reply::Ok,
        (Phase::Scanned, Event::Confirm { ticket } | Event::Deny { ticket }) if !same_ticket(&s, ticket) => {
            Reply::WrongState
        }
        (Phase::Scanned, Event::Confirm { .. }) => {
            s.phase = scan_result(&s.user);
            Reply::Ok
        }
        (Phase::Scanned, Event::Deny { .. }) => {
            end(&mut s, Ending::Denied);
            Reply::Ok
        }
        // A ticket works once, and only while its attempt waits for it.
        (_, Event::Confirm { .. } | Event::Deny { .. }) => Reply::WrongState,
        (Phase::Reg, Event::Claim) => {
            let user = s.user.clone().expect("reg always holds its user");
            end(&mut s, Ending::Consumed);
            Reply::Token(user)
        }
        (_, Event::Claim) => Reply::Ok,
        (Phase::NotReg, Event::CodeIssued { phone, hash, ttl_ms }) => {
            if let Some(c) = &s.code {
                let next = c.sent_at_ms + rules.sms_resend_ms;
                if now_ms < next {
                    return (state.clone(), Reply::RateLimited { retry_after_secs: (next - now_ms).div_ceil(1000) });
                }
            }
            if s.sms_sent >= rules.sms_per_attempt {
                return (state.clone(), Reply::RateLimited { retry_after_secs: s.expires_in(now_ms).max(1) });
            }
            s.sms_sent += 1;
            s.code = Some(PendingCode {
                phone: phone.clone(),
                hash: *hash,
                sent_at_ms: now_ms,
                expires_at_ms: (now_ms + ttl_ms).min(s.expires_at_ms),
                wrong: 0,
            });
            Reply::Ok
        }
        (Phase::NotReg, Event::CodeFailed { hash }) => {
            if s.code.as_ref().is_some_and(|c| &c.hash == hash) {
                s.code = None;
                s.sms_sent = s.sms_sent.saturating_sub(1);
            }
            Reply::Ok
        }
        (Phase::NotReg, Event::CodeEntered { phone, hash }) => match &mut s.code {
            None => Reply::NoCodeForPhone { attempts_left: 0 },
            Some(c) if c.wrong >= rules.code_attempts || now_ms >= c.expires_at_ms => {
                Reply::NoCodeForPhone { attempts_left: 0 }
            }
            Some(c) => {
                // A code sent to another phone is a wrong code for this attempt's code,
                // but the phone guessed got no code from us: it is not charged.
                let same_phone = c.phone.as_bytes().ct_eq(phone.as_bytes());
                let same_code = c.hash.ct_eq(hash);
                if bool::from(same_phone & same_code) {
                    s.code = None;
                    s.verified = true;
                    Reply::CodeAccepted { openid: s.openid.clone().expect("not_reg always holds its openid") }
                } else {
                    c.wrong += 1;
                    let attempts_left = rules.code_attempts.saturating_sub(c.wrong);
                    if bool::from(same_phone) {
                        Reply::InvalidCode { attempts_left }
                    } else {
                        Reply::NoCodeForPhone { attempts_left }
                    }
                }
            }
        },
        // Bound only after an accepted code: the machine, not the caller's order, says so.
        (Phase::NotReg, Event::Bound { .. }) if !s.verified => Reply::WrongState,
        (Phase::NotReg, Event::Bound { user }) => {
            s.user = Some(user.clone());
            end(&mut s, Ending::Consumed);
            Reply::Token(user.clone())
        }
        (_, Event::CodeIssued { .. } | Event::CodeFailed { .. } | Event::CodeEntered { .. } | Event::Bound { .. }) => {
            Reply::WrongState
        }
    };
    if s.phase != state.phase && s.trail.len() < Mark::MAX {
        // A timeout found late still ended at the deadline.
        let at_ms = if s.ending == Some(Ending::Timeout) { s.expires_at_ms.min(now_ms) } else { now_ms };
        s.trail.push(Mark { phase: s.phase, at_ms, node: None });
    }
    if s != *state {
        s.version = state.version + 1;
    }
    (s, reply)
}

/// Where a scan by `user` (or its confirmation) leads: `reg` for an account, else `not_reg`.
fn scan_result(user: &Option<UserRef>) -> Phase {
    if user.is_some() { Phase::Reg } else { Phase::NotReg }
}

/// Whether `ticket` is the attempt's ticket (compared in constant time).
fn same_ticket(s: &AttemptState, ticket: &[u8; 32]) -> bool {
    s.ticket.is_some_and(|t| bool::from(t.ct_eq(ticket)))
}

/// The state to keep when the "consumed" state of a handed-out token could not be
/// stored: the token is not handed out, and stays owed to whoever polls next. From `reg`
/// that is `reg` again; after a bind it is `reg` with the bound account (the phone is
/// bound in the database already, so asking for another code would be pointless).
///
/// It keeps the failed state's version: if the failed write reaches the store late, the
/// store keeps the consumed mark (equal versions never overwrite), so after a crash the
/// attempt ends instead of handing out a second token; without a crash the next claim
/// writes a newer consumed state and hands the token out once.
pub fn token_owed(before: &AttemptState, failed: &AttemptState) -> AttemptState {
    let mut s = before.clone();
    s.phase = Phase::Reg;
    s.user = failed.user.clone().or(s.user);
    s.code = None;
    s.ending = None;
    s.version = failed.version;
    s
}

#[cfg(test)]
mod tests;
