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
mod tests {
    use super::*;

    /// The state and reply of a step (most tests look at those two).
    fn step(s: &AttemptState, e: &Event, now: u64, r: &Rules) -> (AttemptState, Reply) {
        let st = super::step(s, e, now, r);
        (st.state, st.reply)
    }

    #[test]
    fn a_withheld_token_stays_owed_and_is_claimed_once() {
        for (before, ev) in [(in_phase(Phase::Reg), Event::Claim), (verified(), Event::Bound { user: user() })] {
            let (failed, r) = step(&before, &ev, T0, &rules());
            assert_eq!(r, Reply::Token(user()));
            let owed = token_owed(&before, &failed);
            assert_eq!((owed.phase, owed.user.clone(), owed.version), (Phase::Reg, Some(user()), failed.version));
            let (done, r) = step(&owed, &Event::Claim, T0 + 1, &rules());
            assert_eq!(r, Reply::Token(user()));
            assert!(done.version > failed.version, "the retry's consumed mark outranks the lost one");
            assert_eq!(step(&done, &Event::Claim, T0 + 2, &rules()).1, Reply::Expired);
        }
    }

    const T0: u64 = 1_700_000_000_000;
    const TTL: u64 = 300_000;
    const H1: [u8; 32] = [1; 32];
    const H2: [u8; 32] = [2; 32];
    const T1: [u8; 32] = [11; 32];
    const T2: [u8; 32] = [12; 32];

    fn rules() -> Rules {
        Rules::default()
    }

    fn user() -> UserRef {
        UserRef { id: "u1".into(), phone: Some("13800138000".into()) }
    }

    fn in_phase(p: Phase) -> AttemptState {
        let mut s = AttemptState::new(T0 + TTL);
        match p {
            Phase::Loop => {}
            Phase::NotReg => {
                s.phase = Phase::NotReg;
                s.openid = Some("o1".into());
            }
            Phase::Reg => {
                s.phase = Phase::Reg;
                s.openid = Some("o1".into());
                s.user = Some(user());
            }
            Phase::Expired => {
                s.phase = Phase::Expired;
                s.ending = Some(Ending::Timeout);
            }
            Phase::Scanned => {
                s.phase = Phase::Scanned;
                s.openid = Some("o1".into());
                s.ticket = Some(T1);
            }
        }
        s
    }

    /// A `scanned` attempt of a registered user.
    fn scanned_reg() -> AttemptState {
        let mut s = in_phase(Phase::Scanned);
        s.user = Some(user());
        s
    }

    fn events() -> Vec<Event> {
        vec![
            Event::Scanned { openid: "o2".into(), user: None },
            Event::Scanned { openid: "o2".into(), user: Some(user()) },
            Event::Claim,
            Event::CodeIssued { phone: "13800138000".into(), hash: H1, ttl_ms: TTL },
            Event::CodeFailed { hash: H1 },
            Event::CodeEntered { phone: "13800138000".into(), hash: H1 },
            Event::Bound { user: user() },
            Event::Timeout,
            Event::Discard,
            Event::ScannedToConfirm { openid: "o2".into(), user: None, ticket: T2 },
            Event::Confirm { ticket: T1 },
            Event::Deny { ticket: T1 },
            Event::Confirm { ticket: T2 },
            Event::End,
        ]
    }

    /// Actions as letters: persist, wake, send the code, hand out the token, end.
    fn letters(a: &Actions) -> String {
        [(a.persist, 'p'), (a.wake, 'w'), (a.send_sms, 's'), (a.hand_out, 'h'), (a.end.is_some(), 'e')]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, c)| *c)
            .collect()
    }

    /// A `not_reg` attempt whose code was accepted: ready to be bound.
    fn verified() -> AttemptState {
        let mut s = in_phase(Phase::NotReg);
        s.verified = true;
        s
    }

    /// One row of the table: a state's name, the state, and per event (phase, reply, actions).
    type Row = (&'static str, AttemptState, [(Phase, &'static str, &'static str); 14]);

    /// The row of a `scanned` attempt whose confirmation leads to `confirmed`.
    fn scanned_row(confirmed: Phase) -> [(Phase, &'static str, &'static str); 14] {
        use Phase::*;
        let (ok, wrong) = ((Scanned, "Ok", ""), (Scanned, "WrongState", ""));
        let ended = (Expired, "Ok", "pwe");
        [ok, ok, ok, wrong, wrong, wrong, wrong, ok, ended, ok, (confirmed, "Ok", "pw"), ended, wrong, ended]
    }

    /// Every state × every event, before the deadline: the resulting phase, the reply
    /// kind and the actions the executor must perform.
    #[test]
    fn transition_table_is_exhaustive() {
        use Phase::*;
        let none = "";
        let expect: Vec<Row> = vec![
            (
                "loop",
                in_phase(Loop),
                [
                    (NotReg, "Ok", "pw"),
                    (Reg, "Ok", "pw"),
                    (Loop, "Ok", none),
                    (Loop, "WrongState", none),
                    (Loop, "WrongState", none),
                    (Loop, "WrongState", none),
                    (Loop, "WrongState", none),
                    (Loop, "Ok", none),
                    (Expired, "Ok", "pwe"),
                    (Scanned, "Ok", "pw"),
                    (Loop, "WrongState", none),
                    (Loop, "WrongState", none),
                    (Loop, "WrongState", none),
                    (Expired, "Ok", "pwe"),
                ],
            ),
            (
                "not_reg",
                in_phase(NotReg),
                [
                    (NotReg, "Ok", none),
                    (NotReg, "Ok", none),
                    (NotReg, "Ok", none),
                    (NotReg, "Ok", "pws"),
                    (NotReg, "Ok", none),
                    (NotReg, "NoCodeForPhone", none),
                    (NotReg, "WrongState", none),
                    (NotReg, "Ok", none),
                    (Expired, "Ok", "pwe"),
                    (NotReg, "Ok", none),
                    (NotReg, "WrongState", none),
                    (NotReg, "WrongState", none),
                    (NotReg, "WrongState", none),
                    (Expired, "Ok", "pwe"),
                ],
            ),
            (
                "not_reg, code accepted",
                verified(),
                [
                    (NotReg, "Ok", none),
                    (NotReg, "Ok", none),
                    (NotReg, "Ok", none),
                    (NotReg, "Ok", "pws"),
                    (NotReg, "Ok", none),
                    (NotReg, "NoCodeForPhone", none),
                    (Expired, "Token", "pwhe"),
                    (NotReg, "Ok", none),
                    (Expired, "Ok", "pwe"),
                    (NotReg, "Ok", none),
                    (NotReg, "WrongState", none),
                    (NotReg, "WrongState", none),
                    (NotReg, "WrongState", none),
                    (Expired, "Ok", "pwe"),
                ],
            ),
            (
                "reg",
                in_phase(Reg),
                [
                    (Reg, "Ok", none),
                    (Reg, "Ok", none),
                    (Expired, "Token", "pwhe"),
                    (Reg, "WrongState", none),
                    (Reg, "WrongState", none),
                    (Reg, "WrongState", none),
                    (Reg, "WrongState", none),
                    (Reg, "Ok", none),
                    (Expired, "Ok", "pwe"),
                    (Reg, "Ok", none),
                    (Reg, "WrongState", none),
                    (Reg, "WrongState", none),
                    (Reg, "WrongState", none),
                    (Expired, "Ok", "pwe"),
                ],
            ),
            (
                "expired",
                in_phase(Expired),
                [
                    (Expired, "Expired", none),
                    (Expired, "Expired", none),
                    (Expired, "Expired", none),
                    (Expired, "Expired", none),
                    (Expired, "Expired", none),
                    (Expired, "Expired", none),
                    (Expired, "Expired", none),
                    (Expired, "Ok", none),
                    (Expired, "Ok", none),
                    (Expired, "Expired", none),
                    (Expired, "Expired", none),
                    (Expired, "Expired", none),
                    (Expired, "Expired", none),
                    (Expired, "Ok", none),
                ],
            ),
            ("scanned, new user", in_phase(Scanned), scanned_row(NotReg)),
            ("scanned, registered user", scanned_reg(), scanned_row(Reg)),
        ];
        for (name, state, row) in &expect {
            for (ev, (want_phase, want_reply, want_actions)) in events().iter().zip(row.iter()) {
                let st = super::step(state, ev, T0 + 1000, &rules());
                let reply = format!("{:?}", st.reply);
                let reply = reply.split([' ', '{', '(']).next().unwrap();
                assert_eq!(
                    (st.state.phase, reply, letters(&st.actions).as_str()),
                    (*want_phase, *want_reply, *want_actions),
                    "{name} × {ev:?}"
                );
            }
        }
    }

    #[test]
    fn a_phone_is_bound_only_after_an_accepted_code() {
        let (s, _) = issue(&in_phase(Phase::NotReg), H1, T0);
        assert_eq!(step(&s, &Event::Bound { user: user() }, T0 + 1, &rules()).1, Reply::WrongState);
        let (s, r) = step(&s, &Event::CodeEntered { phone: "13800138000".into(), hash: H1 }, T0 + 1, &rules());
        assert!(matches!(r, Reply::CodeAccepted { .. }));
        assert!(s.verified);
        assert_eq!(step(&s, &Event::Bound { user: user() }, T0 + 2, &rules()).1, Reply::Token(user()));
    }

    #[test]
    fn every_event_after_the_deadline_sees_expired() {
        for p in [Phase::Loop, Phase::NotReg, Phase::Reg, Phase::Scanned] {
            for ev in events() {
                let (s, r) = step(&in_phase(p), &ev, T0 + TTL, &rules());
                assert_eq!(s.phase, Phase::Expired, "{p:?} {ev:?}");
                assert!(matches!(r, Reply::Expired | Reply::Ok), "{p:?} {ev:?} {r:?}");
                assert!(!matches!(r, Reply::Token(_)));
            }
        }
    }

    #[test]
    fn repeated_scan_is_a_no_op() {
        let s0 = in_phase(Phase::Loop);
        let ev = Event::Scanned { openid: "o1".into(), user: None };
        let (s1, _) = step(&s0, &ev, T0, &rules());
        assert_eq!(s1.version, 1);
        let (s2, r) = step(&s1, &ev, T0 + 5, &rules());
        assert_eq!((s2.clone(), r), (s1.clone(), Reply::Ok));
        let other = Event::Scanned { openid: "o9".into(), user: Some(user()) };
        assert_eq!(step(&s1, &other, T0 + 5, &rules()).0, s1);
    }

    #[test]
    fn a_confirmed_scan_goes_as_the_scan_would_have_gone() {
        for (user, want) in [(Some(user()), Phase::Reg), (None, Phase::NotReg)] {
            let ev = Event::ScannedToConfirm { openid: "o1".into(), user: user.clone(), ticket: T1 };
            let (s, _) = step(&in_phase(Phase::Loop), &ev, T0, &rules());
            assert_eq!(
                (s.phase, s.openid.as_deref(), s.user.clone(), s.scanned_ms),
                (Phase::Scanned, Some("o1"), user, Some(T0))
            );
            // The same scan again (WeChat's retry, a second tap), or another person's: nothing.
            assert_eq!(step(&s, &ev, T0 + 1, &rules()).0, s);
            let other = Event::ScannedToConfirm { openid: "o9".into(), user: None, ticket: T2 };
            assert_eq!(step(&s, &other, T0 + 1, &rules()).0, s);
            assert_eq!(
                step(&s, &Event::Confirm { ticket: T2 }, T0 + 1, &rules()).1,
                Reply::WrongState,
                "another ticket"
            );
            let (done, r) = step(&s, &Event::Confirm { ticket: T1 }, T0 + 2, &rules());
            assert_eq!((done.phase, r), (want, Reply::Ok));
            assert_eq!(step(&done, &Event::Confirm { ticket: T1 }, T0 + 3, &rules()).1, Reply::WrongState, "used once");
            assert_eq!(step(&done, &Event::Deny { ticket: T1 }, T0 + 3, &rules()).1, Reply::WrongState);
        }
    }

    #[test]
    fn a_denied_scan_ends_the_attempt_with_its_reason() {
        let st = super::step(&scanned_reg(), &Event::Deny { ticket: T1 }, T0, &rules());
        assert_eq!(
            (st.state.phase, st.state.ending, st.actions.end),
            (Phase::Expired, Some(Ending::Denied), Some(Ending::Denied))
        );
        assert_eq!(st.state.ending.and_then(Ending::reason), Some("denied"));
        assert_eq!(step(&st.state, &Event::Claim, T0 + 1, &rules()).1, Reply::Expired, "no token after a denial");
        assert_eq!(step(&st.state, &Event::Confirm { ticket: T1 }, T0 + 1, &rules()).1, Reply::Expired);
        for e in [Ending::Timeout, Ending::Consumed, Ending::Discarded] {
            assert_eq!(e.reason(), None, "{e:?}");
        }
    }

    #[test]
    fn a_scanned_attempt_expires_at_its_deadline() {
        let (s, r) = step(&scanned_reg(), &Event::Confirm { ticket: T1 }, T0 + TTL, &rules());
        assert_eq!((s.phase, s.ending, r), (Phase::Expired, Some(Ending::Timeout), Reply::Expired));
        let (s, _) = step(&scanned_reg(), &Event::Timeout, T0 + TTL, &rules());
        assert_eq!(s.ending, Some(Ending::Timeout));
    }

    #[test]
    fn the_requester_is_bounded() {
        let r = Requester::new(&"1".repeat(100), &"é".repeat(300));
        assert_eq!(r.ip.len(), Requester::IP_MAX);
        assert!(r.user_agent.len() <= Requester::USER_AGENT_MAX && r.user_agent.len() >= Requester::USER_AGENT_MAX - 1);
        assert_eq!(
            Requester::new("10.0.0.1", "Firefox"),
            Requester { ip: "10.0.0.1".into(), user_agent: "Firefox".into() }
        );
    }

    #[test]
    fn token_comes_out_exactly_once() {
        let (s1, r1) = step(&in_phase(Phase::Reg), &Event::Claim, T0, &rules());
        assert_eq!(r1, Reply::Token(user()));
        assert_eq!((s1.phase, s1.ending), (Phase::Expired, Some(Ending::Consumed)));
        let (_, r2) = step(&s1, &Event::Claim, T0, &rules());
        assert_eq!(r2, Reply::Expired);
    }

    #[test]
    fn early_or_late_timer_is_decided_by_the_deadline() {
        let s = in_phase(Phase::Loop);
        assert_eq!(step(&s, &Event::Timeout, T0 + TTL - 1, &rules()).0, s);
        let (late, _) = step(&s, &Event::Timeout, T0 + TTL + 50_000, &rules());
        assert_eq!(late.ending, Some(Ending::Timeout));
        // A timer firing on an attempt already consumed changes nothing.
        let (done, _) = step(&in_phase(Phase::Reg), &Event::Claim, T0, &rules());
        assert_eq!(step(&done, &Event::Timeout, T0 + TTL, &rules()).0, done);
    }

    fn issue(s: &AttemptState, hash: [u8; 32], now: u64) -> (AttemptState, Reply) {
        step(s, &Event::CodeIssued { phone: "13800138000".into(), hash, ttl_ms: TTL }, now, &rules())
    }

    #[test]
    fn code_cooldown_and_per_attempt_cap() {
        let (s1, r) = issue(&in_phase(Phase::NotReg), H1, T0);
        assert_eq!(r, Reply::Ok);
        let (s2, r) = issue(&s1, H2, T0 + 59_000);
        assert_eq!((s2.clone(), r), (s1.clone(), Reply::RateLimited { retry_after_secs: 1 }));
        let (s3, _) = issue(&s1, H2, T0 + 60_000);
        let (s4, _) = issue(&s3, H1, T0 + 120_000);
        assert_eq!(s4.sms_sent, 3);
        let (_, r) = issue(&s4, H2, T0 + 180_000);
        assert!(matches!(r, Reply::RateLimited { .. }));
    }

    #[test]
    fn failed_send_is_forgotten() {
        let (s1, _) = issue(&in_phase(Phase::NotReg), H1, T0);
        let (s2, _) = step(&s1, &Event::CodeFailed { hash: H1 }, T0 + 10, &rules());
        assert!(s2.code.is_none());
        assert_eq!(s2.sms_sent, 0);
        // No cooldown after a failed send.
        assert_eq!(issue(&s2, H2, T0 + 20).1, Reply::Ok);
    }

    #[test]
    fn wrong_codes_count_down_then_kill_the_code() {
        let (mut s, _) = issue(&in_phase(Phase::NotReg), H1, T0);
        for left in (0..5).rev() {
            let (n, r) = step(&s, &Event::CodeEntered { phone: "13800138000".into(), hash: H2 }, T0 + 1, &rules());
            assert_eq!(r, Reply::InvalidCode { attempts_left: left });
            s = n;
        }
        let (_, r) = step(&s, &Event::CodeEntered { phone: "13800138000".into(), hash: H1 }, T0 + 1, &rules());
        assert_eq!(r, Reply::NoCodeForPhone { attempts_left: 0 }, "a dead code is no live code");
    }

    #[test]
    fn right_code_for_the_wrong_phone_is_wrong() {
        let (s, _) = issue(&in_phase(Phase::NotReg), H1, T0);
        let (s, r) = step(&s, &Event::CodeEntered { phone: "13900139000".into(), hash: H1 }, T0 + 1, &rules());
        assert_eq!(r, Reply::NoCodeForPhone { attempts_left: 4 }, "wrong for the code, not charged to 139…");
        let (s, r) = step(&s, &Event::CodeEntered { phone: "13800138000".into(), hash: H1 }, T0 + 1, &rules());
        assert_eq!(r, Reply::CodeAccepted { openid: "o1".into() });
        assert!(s.code.is_none(), "an accepted code is spent");
    }

    #[test]
    fn code_expires_on_its_own_clock() {
        let (s, _) = step(
            &in_phase(Phase::NotReg),
            &Event::CodeIssued { phone: "13800138000".into(), hash: H1, ttl_ms: 1000 },
            T0,
            &rules(),
        );
        let (_, r) = step(&s, &Event::CodeEntered { phone: "13800138000".into(), hash: H1 }, T0 + 1000, &rules());
        assert_eq!(r, Reply::NoCodeForPhone { attempts_left: 0 });
    }

    #[test]
    fn an_operator_ends_any_live_phase_and_says_so() {
        for p in [Phase::Loop, Phase::NotReg, Phase::Reg] {
            let st = super::step(&in_phase(p), &Event::End, T0, &rules());
            assert_eq!(
                (st.state.phase, st.state.ending, st.actions.end),
                (Phase::Expired, Some(Ending::Ended), Some(Ending::Ended)),
                "{p:?}"
            );
            assert_eq!(st.state.ending.and_then(Ending::reason), Some("ended"));
            assert_eq!(step(&st.state, &Event::Claim, T0 + 1, &rules()).1, Reply::Expired, "no token after an end");
        }
        for e in [Ending::Timeout, Ending::Consumed, Ending::Discarded] {
            assert_eq!(e.reason(), None);
        }
    }

    #[test]
    fn bind_ends_with_a_token() {
        let (s, r) = step(&verified(), &Event::Bound { user: user() }, T0, &rules());
        assert_eq!(r, Reply::Token(user()));
        assert_eq!(s.ending, Some(Ending::Consumed));
    }

    #[test]
    fn expires_in_rounds_up() {
        let s = AttemptState::new(T0 + 1500);
        assert_eq!(s.expires_in(T0), 2);
        assert_eq!(s.expires_in(T0 + 1500), 0);
        assert_eq!(s.expires_in(T0 + 9999), 0);
    }
}
