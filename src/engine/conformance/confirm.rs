//! Conformance cases of confirmation on the phone (docs/api.md "Confirm on the phone"):
//! the `scanned` state, its ticket, the confirmation and the denial, on both engines.

use std::time::Duration;

use super::{APP, CAPS, Kind, LONG, PROMPT, Rig, SHORT, WAIT, is_token, user};
use crate::engine::{Created, Ending, Event, Outcome, Phase, Reply, Requester, UserRef};

const TICKET: [u8; 32] = [42; 32];

impl Rig {
    async fn scan_to_confirm(&self, c: &Created, openid: &str, user: Option<UserRef>) -> Outcome {
        self.scan_with(c, Event::ScannedToConfirm { openid: openid.into(), user, ticket: TICKET }).await
    }

    async fn decide(&self, ev: Event) -> Option<Outcome> {
        self.e.apply_ticket(&TICKET, ev).await.expect("decision")
    }
}

conformance!(
    a_confirmed_scan_goes_as_the_scan_would_have_gone,
    a_denied_scan_is_expired_with_its_reason,
    a_held_poll_waits_through_scanned_and_wakes_on_the_confirmation,
    a_ticket_is_used_once_among_concurrent_decisions,
    a_scanned_attempt_expires_at_its_deadline,
);

async fn a_confirmed_scan_goes_as_the_scan_would_have_gone(kind: Kind) {
    let r = Rig::start(kind, CAPS).await;
    let requester = Requester::new("203.0.113.7", "Mozilla/5.0 (Windows NT 10.0) Chrome/131.0");
    let reg = r.e.create_by(APP, LONG, crate::ids::PollKind::Direct, Some(requester.clone())).await.unwrap();
    let o = r.scan_to_confirm(&reg, "o1", Some(user())).await;
    assert_eq!(o.phase, Phase::Scanned);
    let detail = o.detail.expect("a scan's answer names the owner");
    assert_eq!((detail.openid.as_deref(), detail.requester.as_ref()), (Some("o1"), Some(&requester)));
    assert_eq!(r.claim(&reg.poll).await.phase, Phase::Scanned, "no token before the confirmation");
    let seen = r.e.peek_ticket(&TICKET).await.unwrap().expect("the ticket finds its attempt");
    assert_eq!(seen.detail.and_then(|d| d.requester), Some(requester), "the confirm page shows the requester");
    let confirmed = r.decide(Event::Confirm { ticket: TICKET }).await.expect("found");
    assert_eq!((confirmed.reply, confirmed.phase), (Reply::Ok, Phase::Reg));
    assert!(is_token(&r.claim(&reg.poll).await), "the confirmation logs in");
    assert_eq!(r.transitions("loop", "scanned"), 1.0);
    assert_eq!((r.transitions("scanned", "reg"), r.finished("reg")), (1.0, 1.0));
    assert_eq!(r.metric(&format!("scanlogin_confirmations_total{{app=\"{APP}\",decision=\"confirm\"}}")), 1.0);
    // A new user goes on to bind a phone; the ticket of the first is no longer valid.
    let new = r.create(LONG).await;
    r.scan_to_confirm(&new, "o2", None).await;
    let o = r.decide(Event::Confirm { ticket: TICKET }).await.expect("found");
    assert_eq!(o.phase, Phase::NotReg);
    assert_eq!(r.claim(&new.poll).await.phase, Phase::NotReg);
    assert_eq!(r.transitions("scanned", "not_reg"), 1.0);
}

async fn a_denied_scan_is_expired_with_its_reason(kind: Kind) {
    let r = Rig::start(kind, CAPS).await;
    let c = r.create(LONG).await;
    r.scan_to_confirm(&c, "o1", Some(user())).await;
    let denied = r.decide(Event::Deny { ticket: TICKET }).await.expect("found");
    assert_eq!((denied.reply, denied.phase), (Reply::Ok, Phase::Expired));
    let o = r.claim(&c.poll).await;
    assert_eq!((o.phase, o.reason()), (Phase::Expired, Some("denied")), "{o:?}");
    assert_eq!(r.e.peek(&c.poll).await.unwrap().reason(), Some("denied"));
    let again = r.decide(Event::Confirm { ticket: TICKET }).await;
    assert!(again.as_ref().is_none_or(|o| o.reply != Reply::Ok), "a denied ticket confirms nothing: {again:?}");
    assert_eq!((r.finished("denied"), r.live("scanned")), (1.0, 0.0));
    assert_eq!(r.metric(&format!("scanlogin_confirmations_total{{app=\"{APP}\",decision=\"deny\"}}")), 1.0);
    assert_eq!(Ending::Denied.reason(), o.reason());
}

async fn a_held_poll_waits_through_scanned_and_wakes_on_the_confirmation(kind: Kind) {
    let r = Rig::start(kind, CAPS).await;
    let c = r.create(LONG).await;
    r.scan_to_confirm(&c, "o1", Some(user())).await;
    let held = r.hold(&c.poll, 1, WAIT).pop().unwrap();
    r.until_held(1).await;
    let confirmed = tokio::time::Instant::now();
    r.decide(Event::Confirm { ticket: TICKET }).await.expect("found");
    let (o, _) = held.await.unwrap();
    assert!(is_token(&o), "the held poll takes the token: {o:?}");
    assert!(confirmed.elapsed() < PROMPT, "woken by the confirmation: {:?}", confirmed.elapsed());
}

async fn a_ticket_is_used_once_among_concurrent_decisions(kind: Kind) {
    let r = Rig::start(kind, CAPS).await;
    let c = r.create(LONG).await;
    r.scan_to_confirm(&c, "o1", None).await;
    let tries: Vec<_> = (0..8)
        .map(|i| {
            let e = r.e.clone();
            let ev = if i % 2 == 0 { Event::Confirm { ticket: TICKET } } else { Event::Deny { ticket: TICKET } };
            actix::spawn(async move { e.apply_ticket(&TICKET, ev).await })
        })
        .collect();
    let mut won = 0;
    for t in tries {
        if let Ok(Some(o)) = t.await.unwrap() {
            won += usize::from(o.reply == Reply::Ok && o.actions.persist);
        }
    }
    assert_eq!(won, 1, "exactly one decision is taken");
}

async fn a_scanned_attempt_expires_at_its_deadline(kind: Kind) {
    let r = Rig::start(kind, CAPS).await;
    let c = r.create(SHORT).await;
    r.scan_to_confirm(&c, "o1", Some(user())).await;
    tokio::time::sleep(SHORT + Duration::from_millis(1500)).await;
    let o = r.claim(&c.poll).await;
    assert_eq!((o.phase, o.reason()), (Phase::Expired, None));
    assert_eq!(r.transitions("scanned", "expired"), 1.0);
    assert_eq!((r.finished("abandoned"), r.live("scanned")), (1.0, 0.0));
    let late = r.decide(Event::Confirm { ticket: TICKET }).await;
    assert!(late.as_ref().is_none_or(|o| o.reply != Reply::Ok), "too late to confirm: {late:?}");
}
