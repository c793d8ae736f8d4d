//! The metrics catalogue: every name in one place, one registry per application.
//!
//! No label ever takes a poll id, scene, openid or phone: label values come only from
//! configuration (app names, scene types) or small fixed sets, so cardinality is bounded.

use std::sync::Arc;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::engine::{Ending, Phase};

/// Metric names, all prefixed `scanlogin_`.
pub mod names {
    pub const ATTEMPTS_CREATED: &str = "scanlogin_attempts_created_total";
    pub const LIVE_ATTEMPTS: &str = "scanlogin_live_attempts";
    pub const TRANSITIONS: &str = "scanlogin_transitions_total";
    pub const ATTEMPTS_FINISHED: &str = "scanlogin_attempts_finished_total";
    pub const POLLS: &str = "scanlogin_polls_total";
    pub const HELD_LONG_POLLS: &str = "scanlogin_held_long_polls";
    pub const CALLBACKS: &str = "scanlogin_callbacks_total";
    pub const CALLBACK_DURATION: &str = "scanlogin_callback_duration_seconds";
    pub const WECHAT_API_CALLS: &str = "scanlogin_wechat_api_calls_total";
    pub const WECHAT_API_DURATION: &str = "scanlogin_wechat_api_duration_seconds";
    pub const ACCESS_TOKEN_REFRESHES: &str = "scanlogin_access_token_refreshes_total";
    pub const SMS_SENT: &str = "scanlogin_sms_sent_total";
    pub const CODE_CHECKS: &str = "scanlogin_code_checks_total";
    pub const LIMITS_HIT: &str = "scanlogin_limits_hit_total";
    pub const LOGINS: &str = "scanlogin_logins_total";
    pub const HTTP_REQUESTS: &str = "scanlogin_http_requests_total";
    pub const HTTP_DURATION: &str = "scanlogin_http_request_duration_seconds";
    // Durability: snapshots, restore, supervision.
    pub const SNAPSHOT_WRITES: &str = "scanlogin_snapshot_writes_total";
    pub const SNAPSHOT_ERRORS: &str = "scanlogin_snapshot_errors_total";
    pub const SNAPSHOT_BATCH: &str = "scanlogin_snapshot_batch_size";
    pub const SNAPSHOT_PENDING: &str = "scanlogin_snapshot_pending";
    pub const SNAPSHOT_STORE_UP: &str = "scanlogin_snapshot_store_up";
    pub const RESTORED: &str = "scanlogin_restore_attempts";
    pub const RESTORE_DURATION: &str = "scanlogin_restore_duration_seconds";
    pub const ATTEMPT_RESTARTS: &str = "scanlogin_attempt_restarts_total";
    pub const TOKENS_WITHHELD: &str = "scanlogin_tokens_withheld_total";
}

/// Snapshots per store round trip.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0];

/// Latency buckets for HTTP handlers and callbacks (seconds): 1 ms .. 10 s.
const LATENCY_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

struct Inner {
    registry: Registry,
    attempts_created: IntCounterVec,
    live: IntGaugeVec,
    transitions: IntCounterVec,
    finished: IntCounterVec,
    polls: IntCounterVec,
    held: IntGauge,
    callbacks: IntCounterVec,
    callback_duration: HistogramVec,
    wechat_calls: IntCounterVec,
    wechat_duration: HistogramVec,
    token_refreshes: IntCounterVec,
    sms_sent: IntCounterVec,
    code_checks: IntCounterVec,
    limits_hit: IntCounterVec,
    logins: IntCounterVec,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    snapshot_writes: IntCounterVec,
    snapshot_errors: IntCounterVec,
    snapshot_batch: HistogramVec,
    snapshot_pending: IntGauge,
    snapshot_store_up: IntGaugeVec,
    restored: IntGaugeVec,
    restore_duration: prometheus::Gauge,
    attempt_restarts: IntCounterVec,
    tokens_withheld: prometheus::IntCounter,
}

/// Cheap to clone; all clones feed the same registry.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn histogram(r: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()), labels)
        .expect("valid metric");
    r.register(Box::new(h.clone())).expect("unique metric");
    h
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn phase_label(p: Phase) -> &'static str {
    p.name()
}

impl Metrics {
    pub fn new() -> Self {
        use names::*;
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::new(std::process::id() as i32, "scanlogin");
            let _ = r.register(Box::new(pc));
        }
        let live = IntGaugeVec::new(Opts::new(LIVE_ATTEMPTS, "Live login attempts by state"), &["app", "state"])
            .expect("valid");
        r.register(Box::new(live.clone())).expect("unique");
        let held = IntGauge::new(HELD_LONG_POLLS, "Long polls held right now").expect("valid");
        r.register(Box::new(held.clone())).expect("unique");
        let inner = Inner {
            attempts_created: counter(&r, ATTEMPTS_CREATED, "Login attempts created", &["app", "scene_type"]),
            live,
            transitions: counter(&r, TRANSITIONS, "State transitions of attempts", &["app", "from", "to"]),
            finished: counter(&r, ATTEMPTS_FINISHED, "Attempts ended, by outcome", &["app", "outcome"]),
            polls: counter(&r, POLLS, "Status polls by kind", &["kind"]),
            held,
            callbacks: counter(&r, CALLBACKS, "WeChat callbacks by app, kind and result", &["app", "kind", "result"]),
            callback_duration: histogram(&r, CALLBACK_DURATION, "Time to answer a WeChat callback", &["app"]),
            wechat_calls: counter(
                &r,
                WECHAT_API_CALLS,
                "Calls to WeChat's API by api and result",
                &["app", "api", "result"],
            ),
            wechat_duration: histogram(&r, WECHAT_API_DURATION, "Duration of calls to WeChat's API", &["api"]),
            token_refreshes: counter(&r, ACCESS_TOKEN_REFRESHES, "Access-token fetches by result", &["app", "result"]),
            sms_sent: counter(&r, SMS_SENT, "SMS codes sent by provider and result", &["provider", "result"]),
            code_checks: counter(&r, CODE_CHECKS, "SMS code checks by result", &["result"]),
            limits_hit: counter(&r, LIMITS_HIT, "Requests refused by a limit, by kind", &["kind"]),
            logins: counter(&r, LOGINS, "Tokens handed out, by how", &["app", "how"]),
            http_requests: counter(&r, HTTP_REQUESTS, "HTTP requests by route and status", &["route", "status"]),
            http_duration: histogram(&r, HTTP_DURATION, "HTTP request duration by route", &["route"]),
            snapshot_writes: counter(
                &r,
                SNAPSHOT_WRITES,
                "Snapshots written, by store and result",
                &["store", "result"],
            ),
            snapshot_errors: counter(
                &r,
                SNAPSHOT_ERRORS,
                "Failed snapshot store calls (retried), by store and operation",
                &["store", "op"],
            ),
            snapshot_batch: {
                let h = HistogramVec::new(
                    HistogramOpts::new(SNAPSHOT_BATCH, "Snapshots per store round trip")
                        .buckets(BATCH_BUCKETS.to_vec()),
                    &["store"],
                )
                .expect("valid metric");
                r.register(Box::new(h.clone())).expect("unique metric");
                h
            },
            snapshot_pending: gauge(&r, SNAPSHOT_PENDING, "Snapshots queued or in flight, not yet stored"),
            snapshot_store_up: {
                let g =
                    IntGaugeVec::new(Opts::new(SNAPSHOT_STORE_UP, "1 while the snapshot store answers"), &["store"])
                        .expect("valid");
                r.register(Box::new(g.clone())).expect("unique");
                g
            },
            restored: {
                let g = IntGaugeVec::new(
                    Opts::new(RESTORED, "Snapshots found by the last restore, by outcome"),
                    &["outcome"],
                )
                .expect("valid");
                r.register(Box::new(g.clone())).expect("unique");
                g
            },
            restore_duration: {
                let g = prometheus::Gauge::new(RESTORE_DURATION, "Duration of the last restore").expect("valid");
                r.register(Box::new(g.clone())).expect("unique");
                g
            },
            attempt_restarts: counter(
                &r,
                ATTEMPT_RESTARTS,
                "Attempts that died unexpectedly, by result (restarted from their snapshot, or lost)",
                &["result"],
            ),
            tokens_withheld: {
                let c = prometheus::IntCounter::new(
                    TOKENS_WITHHELD,
                    "Token answers refused (503) because the consumed state could not be stored",
                )
                .expect("valid");
                r.register(Box::new(c.clone())).expect("unique");
                c
            },
            registry: r,
        };
        Self(Arc::new(inner))
    }

    /// The Prometheus text exposition of everything.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.0.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    pub fn created(&self, app: &str, scene_type: &str) {
        self.0.attempts_created.with_label_values(&[app, scene_type]).inc();
    }

    /// Moves one attempt between live states (`None` = not live / not yet live).
    pub fn live_changed(&self, app: &str, from: Option<Phase>, to: Option<Phase>) {
        for (p, d) in [(from, -1), (to, 1)] {
            if let Some(p) = p.filter(|p| *p != Phase::Expired) {
                self.0.live.with_label_values(&[app, phase_label(p)]).add(d);
            }
        }
    }

    pub fn transition(&self, app: &str, from: Phase, to: Phase) {
        self.0.transitions.with_label_values(&[app, phase_label(from), phase_label(to)]).inc();
        self.live_changed(app, Some(from), Some(to));
    }

    pub fn finished(&self, app: &str, why: Ending) {
        let outcome = match why {
            Ending::Timeout => "expired",
            Ending::Consumed => "consumed",
            Ending::Discarded => "discarded",
        };
        self.0.finished.with_label_values(&[app, outcome]).inc();
    }

    pub fn poll(&self, kind: &str) {
        self.0.polls.with_label_values(&[kind]).inc();
    }

    /// Counts a held long poll until the guard drops.
    pub fn hold(&self) -> HoldGuard {
        self.0.held.inc();
        HoldGuard(self.0.held.clone())
    }

    pub fn callback(&self, app: &str, kind: &str, result: &str, secs: f64) {
        self.0.callbacks.with_label_values(&[app, kind, result]).inc();
        self.0.callback_duration.with_label_values(&[app]).observe(secs);
    }

    pub fn wechat_call(&self, app: &str, api: &str, result: &str, secs: f64) {
        self.0.wechat_calls.with_label_values(&[app, api, result]).inc();
        self.0.wechat_duration.with_label_values(&[api]).observe(secs);
    }

    pub fn token_refresh(&self, app: &str, result: &str) {
        self.0.token_refreshes.with_label_values(&[app, result]).inc();
    }

    pub fn sms(&self, provider: &str, result: &str) {
        self.0.sms_sent.with_label_values(&[provider, result]).inc();
    }

    pub fn code_check(&self, result: &str) {
        self.0.code_checks.with_label_values(&[result]).inc();
    }

    pub fn limit_hit(&self, kind: &str) {
        self.0.limits_hit.with_label_values(&[kind]).inc();
    }

    pub fn login(&self, app: &str, how: &str) {
        self.0.logins.with_label_values(&[app, how]).inc();
    }

    pub fn http(&self, route: &str, status: u16, secs: f64) {
        self.0.http_requests.with_label_values(&[route, &status.to_string()]).inc();
        self.0.http_duration.with_label_values(&[route]).observe(secs);
    }
}

/// Durability: snapshots, restore, supervision.
impl Metrics {
    pub fn snapshot_written(&self, store: &str, result: &str, n: usize) {
        self.0.snapshot_writes.with_label_values(&[store, result]).inc_by(n as u64);
        if result == "ok" {
            self.0.snapshot_batch.with_label_values(&[store]).observe(n as f64);
        }
    }

    pub fn snapshot_error(&self, store: &str, op: &str) {
        self.0.snapshot_errors.with_label_values(&[store, op]).inc();
    }

    pub fn snapshot_pending(&self, n: usize) {
        self.0.snapshot_pending.set(n as i64);
    }

    pub fn snapshot_store_up(&self, store: &str, up: bool) {
        self.0.snapshot_store_up.with_label_values(&[store]).set(i64::from(up));
    }

    /// The last restore: how many snapshots ended how (`restored`, `expired`, `ended`,
    /// `corrupt`), and how long it took.
    pub fn restore_finished(&self, counts: &[(&str, usize)], secs: f64) {
        for (outcome, n) in counts {
            self.0.restored.with_label_values(&[outcome]).set(*n as i64);
        }
        self.0.restore_duration.set(secs);
    }

    pub fn attempt_restart(&self, result: &str) {
        self.0.attempt_restarts.with_label_values(&[result]).inc();
    }

    pub fn token_withheld(&self) {
        self.0.tokens_withheld.inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

pub struct HoldGuard(IntGauge);

impl Drop for HoldGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
