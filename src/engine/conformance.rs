//! The engine conformance suite: one set of behavioural cases, each run against both
//! engines through [`LoginsHandle`] — the single-node engine on tokio's paused clock, the
//! cluster engine on a private `redis-server` in real time (Redis keeps wall time).
//!
//! `cargo nextest list` shows every case twice, as `conformance::<case>::local` and
//! `conformance::<case>::cluster`. A case uses only what both engines offer and reads the
//! metrics docs/operations.md promises, so the two engines cannot drift apart unseen.
//! Time passes with `tokio::time::sleep` (instant on the paused clock, real on Redis), and
//! "the poll is held" is read off the held-polls gauge, never assumed after a sleep.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::persist::memory::MemoryStore;
use super::persist::{Persister, WriterConfig};
use super::*;
use crate::ids::{PollId, PollKind};
use crate::kv::Kv;
use crate::metrics::Metrics;
use crate::test_redis::RedisServer;

const APP: &str = "app";
/// An attempt that outlives every case that does not wait for its end.
const LONG: Duration = Duration::from_secs(60);
/// An attempt whose end a case waits for (real seconds on the cluster).
const SHORT: Duration = Duration::from_secs(2);
/// A held poll's wait, longer than any case.
const WAIT: Duration = Duration::from_secs(20);
/// What "answered at once" allows: a few Redis round trips on a loaded machine.
const PROMPT: Duration = Duration::from_secs(1);

/// One engine under test, its metrics, and the Redis it runs on (cluster).
struct Rig {
    e: LoginsHandle,
    metrics: Metrics,
    _redis: Option<RedisServer>,
}

/// The engine's limits for one case.
#[derive(Clone, Copy)]
struct Caps {
    live: usize,
    holds: usize,
}

const CAPS: Caps = Caps { live: 1000, holds: 100 };

fn config(caps: Caps) -> EngineConfig {
    EngineConfig { live_attempts_max: caps.live, long_polls_max: caps.holds, rules: Rules::default() }
}

/// Which engine a case runs against.
#[derive(Clone, Copy)]
enum Kind {
    Local,
    Cluster,
}

impl Rig {
    async fn start(kind: Kind, caps: Caps) -> Self {
        match kind {
            Kind::Local => Self::local(caps).await,
            Kind::Cluster => Self::cluster(caps).await,
        }
    }

    async fn local(caps: Caps) -> Self {
        tokio::time::pause();
        let metrics = Metrics::new();
        let (persister, task) =
            Persister::new(Arc::new(MemoryStore::new()), None, WriterConfig::default(), metrics.clone());
        tokio::spawn(task);
        let e = LoginsHandle::start(config(caps), Clock::new(), metrics.clone(), persister, None);
        Self { e, metrics, _redis: None }
    }

    async fn cluster(caps: Caps) -> Self {
        let redis = RedisServer::start();
        let kv = Kv::new(&redis.url(), "conformance-secret").expect("redis url");
        let metrics = Metrics::new();
        let e = LoginsHandle::start_cluster(
            config(caps),
            kv,
            crate::engine::persist::seal::Seal::new(b"test-secret"),
            Clock::new(),
            metrics.clone(),
            None,
        );
        let rig = Self { e, metrics, _redis: Some(redis) };
        rig.listening().await;
        rig
    }

    /// Waits until the node's pub/sub listener hears commits: an attempt of another app
    /// is created and discarded until a wake-up arrives (so this app's series stay clean).
    async fn listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let c = self.e.create("warmup", SHORT).await.expect("create");
            self.e.apply(&c.poll, Event::Discard).await.expect("discard");
            tokio::time::sleep(Duration::from_millis(50)).await;
            if self.metric("scanlogin_cluster_wakeups_total") > 0.0 {
                return;
            }
        }
        panic!("the pub/sub listener never heard a commit");
    }

    /// The value of one exported series (`name` with its labels, as rendered); 0 if absent.
    fn metric(&self, series: &str) -> f64 {
        let text = self.metrics.render();
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')).and_then(|v| v.parse().ok()))
            .unwrap_or(0.0)
    }

    fn live(&self, state: &str) -> f64 {
        self.metric(&format!("scanlogin_live_attempts{{app=\"{APP}\",state=\"{state}\"}}"))
    }

    fn transitions(&self, from: &str, to: &str) -> f64 {
        self.metric(&format!("scanlogin_transitions_total{{app=\"{APP}\",from=\"{from}\",to=\"{to}\"}}"))
    }

    fn finished(&self, outcome: &str) -> f64 {
        self.metric(&format!("scanlogin_attempts_finished_total{{app=\"{APP}\",outcome=\"{outcome}\"}}"))
    }

    fn latencies(&self, how: &str) -> (f64, f64) {
        let series = |name: &str| format!("{name}_count{{app=\"{APP}\",how=\"{how}\"}}");
        (
            self.metric(&series("scanlogin_create_to_token_seconds")),
            self.metric(&series("scanlogin_scan_to_token_seconds")),
        )
    }

    fn held(&self) -> f64 {
        self.metric("scanlogin_held_long_polls")
    }

    /// Waits until `n` polls or streams are held (the gauge says so), at most 10 s.
    async fn until_held(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.held() != n as f64 {
            assert!(Instant::now() < deadline, "held polls: {} of {n}", self.held());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn create(&self, ttl: Duration) -> Created {
        self.e.create(APP, ttl).await.expect("create")
    }

    async fn scan(&self, c: &Created, openid: &str, user: Option<UserRef>) -> Outcome {
        self.scan_with(c, Event::Scanned { openid: openid.into(), user }).await
    }

    /// A scan event `ev` of `c`'s attempt, which must be live.
    async fn scan_with(&self, c: &Created, ev: Event) -> Outcome {
        self.e.apply_scene(APP, &c.scene, ev).await.expect("scan").expect("a live attempt")
    }

    async fn claim(&self, poll: &PollId) -> Outcome {
        self.e.poll(poll, Duration::ZERO).await.expect("poll")
    }

    /// `n` polls of `poll` held up to `wait`, each answering with how long it took.
    fn hold(&self, poll: &PollId, n: usize, wait: Duration) -> Vec<tokio::task::JoinHandle<(Outcome, Duration)>> {
        (0..n)
            .map(|_| {
                let (e, p) = (self.e.clone(), poll.clone());
                actix::spawn(async move {
                    let t = Instant::now();
                    let o = e.poll(&p, wait).await.expect("held poll");
                    (o, t.elapsed())
                })
            })
            .collect()
    }
}

fn user() -> UserRef {
    UserRef { id: "u1".into(), phone: Some("13800138000".into()) }
}

fn is_token(o: &Outcome) -> bool {
    matches!(o.reply, Reply::Token(_))
}

/// Each case, once per engine: `<case>::local` and `<case>::cluster`.
macro_rules! conformance {
    ($($case:ident),+ $(,)?) => {$(
        mod $case {
            #[actix::test]
            async fn local() {
                super::$case(super::Kind::Local).await
            }

            #[actix::test]
            async fn cluster() {
                super::$case(super::Kind::Cluster).await
            }
        }
    )+};
}

conformance!(
    a_registered_scan_hands_out_the_token_once,
    a_new_user_binds_a_phone_and_gets_the_token,
    an_unscanned_attempt_expires_at_its_deadline,
    a_scanned_attempt_that_times_out_is_abandoned,
    one_token_among_concurrent_polls_and_streams,
    a_held_poll_wakes_on_a_scan,
    a_held_poll_wakes_at_expiry,
    the_waiter_cap_answers_the_extra_poll_at_once,
    the_hold_cap_answers_the_extra_poll_at_once,
    the_live_cap_refuses_a_create,
    closing_answers_held_polls_and_holds_no_more,
    a_duplicate_scan_changes_nothing,
    a_second_scanner_is_refused,
    unknown_ids_and_other_apps_scenes_find_nothing,
    a_provider_attempt_keeps_its_kind_through_the_flow,
    an_operator_lists_and_ends_an_attempt,
);

async fn a_registered_scan_hands_out_the_token_once(kind: Kind) {
    let r = Rig::start(kind, CAPS).await;
    let c = r.create(LONG).await;
    assert_eq!(r.live("loop"), 1.0, "a created attempt is live");
    assert_eq!(r.scan(&c, "o1", Some(user())).await.phase, Phase::Reg);
    assert_eq!((r.live("loop"), r.live("reg")), (0.0, 1.0));
    let o = r.claim(&c.poll).await;
    assert!(matches!(&o.reply, Reply::Token(u) if u.id == user().id), "{o:?}");
    assert_eq!(o.detail.map(|d| d.app), Some(APP.to_string()), "a token names its app");
    assert_eq!(r.claim(&c.poll).await.phase, Phase::Expired, "a token is handed out once");
    assert_eq!((r.transitions("loop", "reg"), r.transitions("reg", "expired")), (1.0, 1.0));
    assert_eq!(r.finished("reg"), 1.0);
    assert_eq!(r.live("reg"), 0.0, "a consumed attempt is not live");
    assert_eq!(r.latencies("scan"), (1.0, 1.0), "create→token and scan→token observed");
}

async fn a_new_user_binds_a_phone_and_gets_the_token(kind: Kind) {
    let r = Rig::start(kind, CAPS).await;
    let c = r.create(LONG).await;
    assert_eq!(r.scan(&c, "o1", None).await.phase, Phase::NotReg);
    assert_eq!(r.live("not_reg"), 1.0);
    let phone = "13800138000".to_string();
    let issued = Event::CodeIssued { phone: phone.clone(), hash: [7; 32], ttl_ms: 60_000 };
    assert!(r.e.apply(&c.poll, issued).await.unwrap().actions.send_sms);
    let wrong = r.e.apply(&c.poll, Event::CodeEntered { phone: phone.clone(), hash: [8; 32] }).await.unwrap();
    assert_eq!(wrong.reply, Reply::InvalidCode { attempts_left: 4 });
    let right = r.e.apply(&c.poll, Event::CodeEntered { phone, hash: [7; 32] }).await.unwrap();
    assert_eq!(right.reply, Reply::CodeAccepted { openid: "o1".into() });
    let bound = r.e.apply(&c.poll, Event::Bound { user: user() }).await.unwrap();
    assert!(is_token(&bound), "{bound:?}");
    assert_eq!(r.claim(&c.poll).await.phase, Phase::Expired, "the bind's token was the only one");
    assert_eq!((r.transitions("loop", "not_reg"), r.transitions("not_reg", "expired")), (1.0, 1.0));
    assert_eq!((r.finished("bound"), r.live("not_reg")), (1.0, 0.0));
    assert_eq!(r.latencies("bind"), (1.0, 1.0));
}

async fn an_unscanned_attempt_expires_at_its_deadline(kind: Kind) {
    let r = Rig::start(kind, CAPS).await;
    let c = r.create(SHORT).await;
    tokio::time::sleep(SHORT - Duration::from_millis(500)).await;
    assert_eq!(r.claim(&c.poll).await.phase, Phase::Loop);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(r.claim(&c.poll).await.phase, Phase::Expired);
    // The end is counted whoever notices it: give a sweep its second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(r.transitions("loop", "expired"), 1.0);
    assert_eq!((r.finished("expired"), r.live("loop")), (1.0, 0.0));
    assert_eq!(r.e.live(), 0, "an expired attempt leaves the live count");
}

async fn a_scanned_attempt_that_times_out_is_abandoned(kind: Kind) {
    let r = Rig::start(kind, CAPS).await;
    let c = r.create(SHORT).await;
    r.scan(&c, "o1", None).await;
    tokio::time::sleep(SHORT + Duration::from_millis(1500)).await;
    assert_eq!(r.claim(&c.poll).await.phase, Phase::Expired);
    assert_eq!(r.transitions("not_reg", "expired"), 1.0);
    assert_eq!((r.finished("abandoned"), r.live("not_reg")), (1.0, 0.0));
}

async fn one_token_among_concurrent_polls_and_streams(kind: Kind) {
    let r = Rig::start(kind, CAPS).await;
    let c = r.create(LONG).await;
    let polls = r.hold(&c.poll, 5, WAIT);
    let streams: Vec<_> = (0..3)
        .map(|_| {
            let mut sub = r.e.subscribe(&c.poll).expect("a stream");
            actix::spawn(async move {
                let mut told = Vec::new();
                while !sub.finished() {
                    sub.changed().await.expect("changed");
                    if let Some(o) = sub.next().await.expect("next") {
                        told.push(o);
                    }
                }
                told
            })
        })
        .collect();
    r.until_held(8).await;
    r.scan(&c, "o1", Some(user())).await;
    let mut tokens = 0;
    for p in polls {
        tokens += usize::from(is_token(&p.await.unwrap().0));
    }
    for s in streams {
        let told = s.await.unwrap();
        tokens += told.iter().filter(|o| is_token(o)).count();
        assert_eq!(told.last().map(|o| o.phase), Some(Phase::Expired), "{told:?}");
    }
    assert_eq!(tokens, 1);
    assert_eq!(r.held(), 0.0, "every poll and stream let go of its hold");
}

async fn a_held_poll_wakes_on_a_scan(kind: Kind) {
    let r = Rig::start(kind, CAPS).await;
    let c = r.create(LONG).await;
    let held = r.hold(&c.poll, 1, WAIT).pop().unwrap();
    r.until_held(1).await;
    let scanned = Instant::now();
    r.scan(&c, "o1", None).await;
    let (o, _) = held.await.unwrap();
    assert_eq!(o.phase, Phase::NotReg);
    assert!(scanned.elapsed() < PROMPT, "woken by the scan: {:?}", scanned.elapsed());
    assert_eq!(r.held(), 0.0);
    assert_eq!(r.metric("scanlogin_polls_total{kind=\"long\"}"), 1.0);
}

async fn a_held_poll_wakes_at_expiry(kind: Kind) {
    let r = Rig::start(kind, CAPS).await;
    let c = r.create(SHORT).await;
    let (o, took) = r.hold(&c.poll, 1, WAIT).pop().unwrap().await.unwrap();
    assert_eq!(o.phase, Phase::Expired);
    assert!(took >= SHORT - Duration::from_millis(100) && took < SHORT + PROMPT, "{took:?}");
}

async fn the_waiter_cap_answers_the_extra_poll_at_once(kind: Kind) {
    let r = Rig::start(kind, CAPS).await;
    let c = r.create(LONG).await;
    let held = r.hold(&c.poll, 32, WAIT);
    r.until_held(32).await;
    let (o, took) = r.hold(&c.poll, 1, WAIT).pop().unwrap().await.unwrap();
    assert_eq!(o.phase, Phase::Loop);
    assert!(took < PROMPT, "the 33rd waiter is not held: {took:?}");
    r.scan(&c, "o1", None).await;
    for h in held {
        assert_eq!(h.await.unwrap().0.phase, Phase::NotReg, "the 32 held ones are woken");
    }
}

async fn the_hold_cap_answers_the_extra_poll_at_once(kind: Kind) {
    let r = Rig::start(kind, Caps { holds: 2, ..CAPS }).await;
    let c = r.create(LONG).await;
    let held = r.hold(&c.poll, 2, WAIT);
    r.until_held(2).await;
    let (o, took) = r.hold(&c.poll, 1, WAIT).pop().unwrap().await.unwrap();
    assert!(o.phase == Phase::Loop && took < PROMPT, "{o:?} after {took:?}");
    assert!(r.e.subscribe(&c.poll).is_err(), "a stream needs a hold permit too");
    assert_eq!(r.metric("scanlogin_limits_hit_total{kind=\"long_polls_max\"}"), 2.0);
    r.scan(&c, "o1", None).await;
    for h in held {
        h.await.unwrap();
    }
    assert!(r.e.subscribe(&c.poll).is_ok(), "permits come back");
}

async fn the_live_cap_refuses_a_create(kind: Kind) {
    let r = Rig::start(kind, Caps { live: 2, ..CAPS }).await;
    // The cluster's warm-up attempts count too, until their deadline.
    tokio::time::sleep(SHORT).await;
    assert_eq!(r.e.live(), 0);
    r.create(SHORT).await;
    r.create(LONG).await;
    assert_eq!(r.e.create(APP, SHORT).await.unwrap_err(), EngineError::Overloaded);
    assert_eq!(r.e.live(), 2);
    tokio::time::sleep(SHORT + Duration::from_millis(100)).await;
    assert_eq!(r.e.live(), 1, "an attempt past its deadline frees its room");
    assert!(r.e.create(APP, SHORT).await.is_ok());
}

async fn closing_answers_held_polls_and_holds_no_more(kind: Kind) {
    let r = Rig::start(kind, CAPS).await;
    let c = r.create(LONG).await;
    let held = r.hold(&c.poll, 2, WAIT);
    r.until_held(2).await;
    let closed = Instant::now();
    r.e.close();
    for h in held {
        assert_eq!(h.await.unwrap().0.phase, Phase::Loop);
    }
    assert!(closed.elapsed() < PROMPT, "{:?}", closed.elapsed());
    let (o, took) = r.hold(&c.poll, 1, WAIT).pop().unwrap().await.unwrap();
    assert!(o.phase == Phase::Loop && took < PROMPT, "not held while closing: {took:?}");
    assert_eq!(r.held(), 0.0);
}

async fn a_duplicate_scan_changes_nothing(kind: Kind) {
    let r = Rig::start(kind, CAPS).await;
    let c = r.create(LONG).await;
    for _ in 0..3 {
        let o = r.scan(&c, "o1", None).await;
        assert_eq!(o.phase, Phase::NotReg);
        assert_eq!(o.detail.and_then(|d| d.openid).as_deref(), Some("o1"));
    }
    assert_eq!(r.transitions("loop", "not_reg"), 1.0, "one transition");
    assert_eq!(r.live("not_reg"), 1.0);
}

async fn a_second_scanner_is_refused(kind: Kind) {
    let r = Rig::start(kind, CAPS).await;
    let c = r.create(LONG).await;
    r.scan(&c, "o1", None).await;
    let second = r.scan(&c, "o2", Some(user())).await;
    assert_eq!(second.phase, Phase::NotReg, "the second scan changed nothing");
    assert_eq!(second.detail.and_then(|d| d.openid).as_deref(), Some("o1"), "the answer names the owner");
    assert_eq!(r.claim(&c.poll).await.reply, Reply::Ok, "no token for the second scanner");
}

async fn unknown_ids_and_other_apps_scenes_find_nothing(kind: Kind) {
    let r = Rig::start(kind, CAPS).await;
    let c = r.create(LONG).await;
    assert_eq!(r.claim(&PollId::generate()).await.phase, Phase::Expired);
    let (o, took) = r.hold(&PollId::generate(), 1, WAIT).pop().unwrap().await.unwrap();
    assert!(o.phase == Phase::Expired && took < PROMPT, "an unknown poll is not held");
    let other = r.e.apply_scene("other", &c.scene, Event::Scanned { openid: "o".into(), user: None }).await;
    assert!(other.unwrap().is_none(), "a scene belongs to its app");
    assert_eq!(r.claim(&c.poll).await.phase, Phase::Loop);
}

/// An attempt made for the OpenID Connect provider is told apart by its poll id alone
/// (the login flow then answers `reg` with a redirect, not a token): each engine makes
/// the id of the kind asked for, and the attempt goes through the same states.
async fn a_provider_attempt_keeps_its_kind_through_the_flow(kind: Kind) {
    let r = Rig::start(kind, CAPS).await;
    let direct = r.create(LONG).await;
    let c = r.e.create_for(APP, LONG, PollKind::Provider).await.expect("create");
    assert_eq!(direct.poll.kind(), PollKind::Direct);
    assert_eq!(c.poll.kind(), PollKind::Provider, "{:?}", c.poll);
    assert_eq!(r.claim(&c.poll).await.phase, Phase::Loop, "found by its id");
    assert_eq!(r.scan(&c, "o1", Some(user())).await.phase, Phase::Reg);
    assert!(matches!(r.claim(&c.poll).await.reply, Reply::Token(_)), "the engine hands out the login once");
    assert_eq!(r.claim(&c.poll).await.phase, Phase::Expired);
}

/// The admin API on either engine: live attempts are listed a page at a time, found by
/// their id, and an end answers the held poll at once with the reason, and every poll
/// after it; the ended attempt leaves the listing and counts as `ended`.
async fn an_operator_lists_and_ends_an_attempt(kind: Kind) {
    use crate::engine::admin::{AttemptId, Filter};
    let r = Rig::start(kind, CAPS).await;
    let made = [r.create(LONG).await, r.create(LONG).await, r.create(LONG).await];
    r.scan(&made[2], "o1", None).await;
    let all = Filter::default();
    let first = r.e.admin_list(&all, None, 2).await.expect("list");
    assert_eq!(first.attempts.len(), 2);
    let next = first.next.clone().expect("a second page");
    let second = r.e.admin_list(&all, Some(&next), 2).await.expect("list");
    let mut ids: Vec<_> = first.attempts.iter().chain(&second.attempts).map(|i| i.id).collect();
    ids.sort();
    let mut want: Vec<_> = made.iter().map(|c| AttemptId::of(&c.poll)).collect();
    want.sort();
    assert_eq!(ids, want, "every attempt once over the pages");
    let not_reg = Filter { phase: Some(Phase::NotReg), app: None };
    let scanned = r.e.admin_list(&not_reg, None, 10).await.expect("list").attempts;
    assert_eq!(scanned.iter().map(|i| i.id).collect::<Vec<_>>(), vec![AttemptId::of(&made[2].poll)]);
    assert_eq!(scanned[0].openid.as_deref(), Some("o1"));

    let c = &made[0];
    let id = AttemptId::of(&c.poll);
    assert_eq!(r.e.admin_inspect(id).await.expect("inspect").map(|i| i.phase), Some(Phase::Loop));
    let held = r.hold(&c.poll, 1, WAIT).pop().unwrap();
    r.until_held(1).await;
    let ended_at = Instant::now();
    let info = r.e.admin_end(id).await.expect("end").expect("a live attempt");
    assert_eq!((info.phase, info.ending), (Phase::Expired, Some(Ending::Ended)));
    let (o, _) = held.await.unwrap();
    assert_eq!((o.phase, o.ending), (Phase::Expired, Some(Ending::Ended)), "{o:?}");
    assert!(ended_at.elapsed() < PROMPT, "the held poll answered at once: {:?}", ended_at.elapsed());
    let again = r.claim(&c.poll).await;
    assert_eq!((again.phase, again.ending), (Phase::Expired, Some(Ending::Ended)), "a later poll says why too");
    assert_eq!(r.e.admin_end(id).await.expect("end"), None, "an ended attempt is not ended twice");
    let left = r.e.admin_list(&all, None, 10).await.expect("list").attempts;
    assert!(left.iter().all(|i| i.id != id) && left.len() == 2, "{left:?}");
    assert_eq!(r.finished("ended"), 1.0);
    assert_eq!(r.e.admin_inspect(AttemptId::of(&PollId::generate())).await.expect("inspect"), None);
}
mod code;
mod confirm;
