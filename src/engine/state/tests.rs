//! The state machine's table: every event in every state, the deadline sweep, and the
//! invariants of the token and the codes.

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

/// Every phase entered after `loop` is marked with its time (the operator's view of an
/// attempt); a timeout found late is marked at the deadline; a step that changes no
/// phase adds nothing.
#[test]
fn each_phase_entered_leaves_a_mark() {
    let r = rules();
    let s = AttemptState::fresh(T0, T0 + TTL);
    let (s, _) = step(&s, &Event::ScannedToConfirm { openid: "o1".into(), user: Some(user()), ticket: T1 }, T0 + 5, &r);
    let (s, _) = step(&s, &Event::Scanned { openid: "o1".into(), user: Some(user()) }, T0 + 6, &r);
    assert_eq!(s.trail.len(), 1, "a repeated scan marks nothing");
    let (s, _) = step(&s, &Event::Confirm { ticket: T1 }, T0 + 9, &r);
    let marks: Vec<_> = s.trail.iter().map(|m| (m.phase, m.at_ms, m.node.clone())).collect();
    assert_eq!(marks, vec![(Phase::Scanned, T0 + 5, None), (Phase::Reg, T0 + 9, None)]);
    let (late, _) = step(&s, &Event::Timeout, T0 + TTL + 7_000, &r);
    assert_eq!(late.trail.last().map(|m| (m.phase, m.at_ms)), Some((Phase::Expired, T0 + TTL)));
    let (claimed, _) = step(&s, &Event::Claim, T0 + 10, &r);
    assert_eq!(claimed.trail.last().map(|m| (m.phase, m.at_ms)), Some((Phase::Expired, T0 + 10)));
    assert_eq!(claimed.trail.len(), 3);
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
        assert_eq!(step(&s, &Event::Confirm { ticket: T2 }, T0 + 1, &rules()).1, Reply::WrongState, "another ticket");
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
