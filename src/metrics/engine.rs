//! The login engine's metrics: attempts created, live, moving between states and
//! finishing, tokens handed out and how long that took, status polls and held polls.

use std::collections::HashSet;
use std::sync::Mutex;

use prometheus::{HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Registry};

use super::labels::{Decision, Finish, LimitKind, LoginHow, PollKind, State};
use super::metric_names::*;
use super::{Metrics, counter_vec, gauge, gauge_vec, histogram_vec};

/// Login latencies span a machine's wake-up (ms) to a person typing an SMS code (minutes).
const LOGIN_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];

pub(super) struct EngineMetrics {
    attempts_created: IntCounterVec,
    live: IntGaugeVec,
    transitions: IntCounterVec,
    finished: IntCounterVec,
    scan_to_token: HistogramVec,
    create_to_token: HistogramVec,
    logins: IntCounterVec,
    confirmations: IntCounterVec,
    scan_to_decision: HistogramVec,
    polls: IntCounterVec,
    held: IntGauge,
    capacity: IntGaugeVec,
    /// `scene_type` values already given their own series (at most `SCENE_TYPES_MAX`).
    scene_types: Mutex<HashSet<String>>,
}

impl EngineMetrics {
    pub(super) fn new(r: &Registry) -> Self {
        let login_latency = |name, help| histogram_vec(r, name, help, LOGIN_BUCKETS, &["app", "how"]);
        Self {
            attempts_created: counter_vec(r, ATTEMPTS_CREATED, "Login attempts created", &["app", "scene_type"]),
            live: gauge_vec(r, LIVE_ATTEMPTS, "Live login attempts by state", &["app", "state"]),
            transitions: counter_vec(r, TRANSITIONS, "State transitions of attempts", &["app", "from", "to"]),
            finished: counter_vec(r, ATTEMPTS_FINISHED, "Attempts ended, by outcome", &["app", "outcome"]),
            scan_to_token: login_latency(SCAN_TO_TOKEN, "From WeChat's scan event to the answer carrying the token"),
            create_to_token: login_latency(CREATE_TO_TOKEN, "From QR creation to the answer carrying the token"),
            logins: counter_vec(r, LOGINS, "Tokens handed out, by how", &["app", "how"]),
            confirmations: counter_vec(r, CONFIRMATIONS, "Decisions on the phone, by app", &["app", "decision"]),
            scan_to_decision: histogram_vec(
                r,
                SCAN_TO_DECISION,
                "From the scan to the decision on the phone",
                LOGIN_BUCKETS,
                &["app", "decision"],
            ),
            polls: counter_vec(r, POLLS, "Status polls by kind", &["kind"]),
            held: gauge(r, HELD_LONG_POLLS, "Long polls held right now"),
            capacity: gauge_vec(r, CAPACITY, "Configured capacity by limit", &["limit"]),
            scene_types: Mutex::new(HashSet::new()),
        }
    }

    pub(super) fn preset(&self, apps: &[&str]) {
        for app in apps {
            self.attempts_created.with_label_values(&[app, "web"]);
            for s in State::ALL.iter().filter(|s| s.is_live()) {
                self.live.with_label_values(&[app, s.label()]);
            }
            for (from, to) in State::TRANSITIONS {
                self.transitions.with_label_values(&[app, from.label(), to.label()]);
            }
            for o in Finish::ALL {
                self.finished.with_label_values(&[app, o.label()]);
            }
            for how in LoginHow::ALL {
                self.logins.with_label_values(&[app, how.label()]);
                self.scan_to_token.with_label_values(&[app, how.label()]);
                self.create_to_token.with_label_values(&[app, how.label()]);
            }
            for d in Decision::ALL {
                self.confirmations.with_label_values(&[app, d.label()]);
                self.scan_to_decision.with_label_values(&[app, d.label()]);
            }
        }
        for k in PollKind::ALL {
            self.polls.with_label_values(&[k.label()]);
        }
    }

    /// `scene_type` as a label: its own value for the first few distinct ones, then `other`.
    fn scene_type_label<'a>(&self, scene_type: &'a str) -> &'a str {
        let mut seen = self.scene_types.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(scene_type) {
            return scene_type;
        }
        if seen.len() < SCENE_TYPES_MAX {
            seen.insert(scene_type.to_string());
            return scene_type;
        }
        "other"
    }
}

impl Metrics {
    fn engine(&self) -> &EngineMetrics {
        &self.0.engine
    }

    pub fn created(&self, app: &str, scene_type: &str) {
        let st = self.engine().scene_type_label(scene_type);
        self.engine().attempts_created.with_label_values(&[app, st]).inc();
    }

    /// Moves one attempt between live states (`None` = not live / not yet live).
    pub fn live_changed(&self, app: &str, from: Option<State>, to: Option<State>) {
        for (p, d) in [(from, -1), (to, 1)] {
            if let Some(p) = p {
                self.live_added(app, p, d);
            }
        }
    }

    /// `n` attempts of `app` became live in state `to` at once (a restored page; negative:
    /// left it). Ended attempts are not live: `expired` moves nothing.
    pub fn live_added(&self, app: &str, to: State, n: i64) {
        if to.is_live() {
            self.engine().live.with_label_values(&[app, to.label()]).add(n);
        }
    }

    /// One attempt moved from `from` to `to`: counted, and the live gauge moved with it.
    pub fn transition(&self, app: &str, from: State, to: State) {
        self.engine().transitions.with_label_values(&[app, from.label(), to.label()]).inc();
        self.live_changed(app, Some(from), Some(to));
    }

    pub fn finished(&self, app: &str, how: Finish) {
        self.engine().finished.with_label_values(&[app, how.label()]).inc();
    }

    /// A token left the engine `since_create` after its QR was made and `since_scan`
    /// after WeChat's scan event (either unknown for an attempt restored from a snapshot).
    pub fn token_latency(&self, app: &str, how: LoginHow, since_create: Option<f64>, since_scan: Option<f64>) {
        if let Some(s) = since_create {
            self.engine().create_to_token.with_label_values(&[app, how.label()]).observe(s);
        }
        if let Some(s) = since_scan {
            self.engine().scan_to_token.with_label_values(&[app, how.label()]).observe(s);
        }
    }

    /// The person who scanned decided on the phone, `since_scan` seconds after the scan
    /// (unknown for an attempt restored from an older snapshot).
    pub fn decision(&self, app: &str, decision: Decision, since_scan: Option<f64>) {
        self.engine().confirmations.with_label_values(&[app, decision.label()]).inc();
        if let Some(s) = since_scan {
            self.engine().scan_to_decision.with_label_values(&[app, decision.label()]).observe(s);
        }
    }

    pub fn login(&self, app: &str, how: LoginHow) {
        self.engine().logins.with_label_values(&[app, how.label()]).inc();
    }

    pub fn poll(&self, kind: PollKind) {
        self.engine().polls.with_label_values(&[kind.label()]).inc();
    }

    /// Publishes a configured capacity (`live_attempts_max`, `long_polls_max`).
    pub fn capacity(&self, limit: LimitKind, value: usize) {
        self.engine().capacity.with_label_values(&[limit.label()]).set(i64::try_from(value).unwrap_or(i64::MAX));
    }

    /// Counts a held long poll until the guard drops.
    pub fn hold(&self) -> HoldGuard {
        self.engine().held.inc();
        HoldGuard(self.engine().held.clone())
    }
}

pub struct HoldGuard(IntGauge);

impl Drop for HoldGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
