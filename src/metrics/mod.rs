//! The metrics catalogue: one registry per application, one method per thing counted.
//!
//! Names and label-value sets live in [`metric_names`]. No label ever takes a poll id,
//! scene, openid or phone: label values come only from configuration (app names) or
//! small fixed sets, and the one request-chosen value (`scene_type`) is capped. Known
//! label sets are created at start ([`Metrics::preset`]) so every series is exported
//! at 0 before its first event: dashboards and alerts see "zero", not "no data".

pub mod labels;
pub mod metric_names;

pub use labels::{Finish, State};

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use labels::{CallbackKind, CallbackResult, LimitKind, LoginHow, TokenRefresh, WechatApi};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Latency buckets for HTTP handlers, callbacks and WeChat calls (seconds): 1 ms .. 10 s.
const LATENCY_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Login latencies span a machine's wake-up (ms) to a person typing an SMS code (minutes).
const LOGIN_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];
/// Snapshot writes are local and small: 50 µs .. 1 s.
const SNAPSHOT_BUCKETS: &[f64] = &[0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0];

struct Inner {
    registry: Registry,
    attempts_created: IntCounterVec,
    live: IntGaugeVec,
    transitions: IntCounterVec,
    finished: IntCounterVec,
    scan_to_token: HistogramVec,
    create_to_token: HistogramVec,
    logins: IntCounterVec,
    polls: IntCounterVec,
    held: IntGauge,
    capacity: IntGaugeVec,
    callbacks: IntCounterVec,
    callback_duration: HistogramVec,
    wechat_calls: IntCounterVec,
    wechat_duration: HistogramVec,
    token_refreshes: IntCounterVec,
    snapshot_writes: IntCounterVec,
    snapshot_duration: Histogram,
    snapshot_errors: IntCounterVec,
    restored: IntCounter,
    snapshot_pending: IntGauge,
    sqlite_wal_pages: IntGauge,
    snapshot_store_up: IntGaugeVec,
    restore_outcomes: IntGaugeVec,
    restore_duration: prometheus::Gauge,
    attempt_restarts: IntCounterVec,
    tokens_withheld: IntCounter,
    sms_sent: IntCounterVec,
    code_checks: IntCounterVec,
    limits_hit: IntCounterVec,
    qr_quota_used: IntGaugeVec,
    qr_quota_limit: IntGaugeVec,
    /// The UTC day `qr_quota_used` counts (days since the epoch).
    qr_quota_day: std::sync::atomic::AtomicU64,
    /// The apps whose quota series exist (set by [`Metrics::qr_quota_limit`]).
    qr_quota_apps: Mutex<Vec<String>>,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    cluster_cas_conflicts: IntCounter,
    cluster_wakeups: IntCounter,
    cluster_views: IntGauge,
    node_info: IntGaugeVec,
    /// `scene_type` values already given their own series (at most `SCENE_TYPES_MAX`).
    scene_types: Mutex<HashSet<String>>,
}

/// Cheap to clone; all clones feed the same registry.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

fn utc_day() -> u64 {
    crate::wall::unix_secs() / 86_400
}

fn register<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
    r.register(Box::new(c.clone())).expect("metric names are unique");
    c
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(r, IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: &[f64], labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    register(r, HistogramVec::new(opts, labels).expect("valid metric"))
}

impl Metrics {
    pub fn new() -> Self {
        use metric_names::*;
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::new(std::process::id() as i32, PROCESS_NAMESPACE);
            let _ = r.register(Box::new(pc));
        }
        let inner = Inner {
            attempts_created: counter(&r, ATTEMPTS_CREATED, "Login attempts created", &["app", "scene_type"]),
            live: register(
                &r,
                IntGaugeVec::new(Opts::new(LIVE_ATTEMPTS, "Live login attempts by state"), &["app", "state"])
                    .expect("valid metric"),
            ),
            transitions: counter(&r, TRANSITIONS, "State transitions of attempts", &["app", "from", "to"]),
            finished: counter(&r, ATTEMPTS_FINISHED, "Attempts ended, by outcome", &["app", "outcome"]),
            scan_to_token: histogram(
                &r,
                SCAN_TO_TOKEN,
                "From WeChat's scan event to the answer carrying the token",
                LOGIN_BUCKETS,
                &["app", "how"],
            ),
            create_to_token: histogram(
                &r,
                CREATE_TO_TOKEN,
                "From QR creation to the answer carrying the token",
                LOGIN_BUCKETS,
                &["app", "how"],
            ),
            logins: counter(&r, LOGINS, "Tokens handed out, by how", &["app", "how"]),
            polls: counter(&r, POLLS, "Status polls by kind", &["kind"]),
            held: register(&r, IntGauge::new(HELD_LONG_POLLS, "Long polls held right now").expect("valid metric")),
            capacity: register(
                &r,
                IntGaugeVec::new(Opts::new(CAPACITY, "Configured capacity by limit"), &["limit"])
                    .expect("valid metric"),
            ),
            callbacks: counter(&r, CALLBACKS, "WeChat callbacks by app, kind and result", &["app", "kind", "result"]),
            callback_duration: histogram(
                &r,
                CALLBACK_DURATION,
                "Time to answer a WeChat callback",
                LATENCY_BUCKETS,
                &["app"],
            ),
            wechat_calls: counter(
                &r,
                WECHAT_API_CALLS,
                "Calls to WeChat's API by api and result",
                &["app", "api", "result"],
            ),
            wechat_duration: histogram(
                &r,
                WECHAT_API_DURATION,
                "Duration of calls to WeChat's API",
                LATENCY_BUCKETS,
                &["api"],
            ),
            token_refreshes: counter(&r, ACCESS_TOKEN_REFRESHES, "Access-token fetches by result", &["app", "result"]),
            snapshot_writes: counter(&r, SNAPSHOT_WRITES, "Attempt snapshots written, by result", &["result"]),
            snapshot_duration: register(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        SNAPSHOT_WRITE_DURATION,
                        "Duration of one snapshot write (a batch: one round trip)",
                    )
                    .buckets(SNAPSHOT_BUCKETS.to_vec()),
                )
                .expect("valid metric"),
            ),
            snapshot_errors: counter(
                &r,
                SNAPSHOT_ERRORS,
                "Snapshot store errors (retried), by store and operation",
                &["store", "op"],
            ),
            restored: register(
                &r,
                IntCounter::new(RESTORED_ATTEMPTS, "Attempts restored from snapshots at start").expect("valid metric"),
            ),
            snapshot_pending: register(
                &r,
                IntGauge::new(SNAPSHOT_PENDING, "Snapshots queued or in flight, not yet stored").expect("valid metric"),
            ),
            sqlite_wal_pages: register(
                &r,
                IntGauge::new(SQLITE_WAL_PAGES, "Pages in SQLite's log after the latest background checkpoint")
                    .expect("valid metric"),
            ),
            snapshot_store_up: register(
                &r,
                IntGaugeVec::new(Opts::new(SNAPSHOT_STORE_UP, "1 while the snapshot store answers"), &["store"])
                    .expect("valid metric"),
            ),
            restore_outcomes: register(
                &r,
                IntGaugeVec::new(Opts::new(RESTORE_OUTCOMES, "The last restore: snapshots by outcome"), &["outcome"])
                    .expect("valid metric"),
            ),
            restore_duration: register(
                &r,
                prometheus::Gauge::new(RESTORE_DURATION, "How long the last restore took").expect("valid metric"),
            ),
            attempt_restarts: counter(&r, ATTEMPT_RESTARTS, "Attempt actors restarted by the registry", &["result"]),
            tokens_withheld: register(
                &r,
                IntCounter::new(
                    TOKENS_WITHHELD,
                    "Tokens not handed out because the consumed state could not be stored",
                )
                .expect("valid metric"),
            ),
            sms_sent: counter(&r, SMS_SENT, "SMS codes sent by provider and result", &["provider", "result"]),
            code_checks: counter(&r, CODE_CHECKS, "SMS code checks by result", &["result"]),
            limits_hit: counter(&r, LIMITS_HIT, "Requests refused by a limit, by kind", &["kind"]),
            qr_quota_used: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(QR_QUOTA_USED, "QR codes created by this node today (UTC), by app"),
                    &["app"],
                )
                .expect("valid metric"),
            ),
            qr_quota_limit: register(
                &r,
                IntGaugeVec::new(Opts::new(QR_QUOTA_LIMIT, "Configured QR codes per app per day"), &["app"])
                    .expect("valid metric"),
            ),
            qr_quota_day: std::sync::atomic::AtomicU64::new(utc_day()),
            qr_quota_apps: Mutex::new(Vec::new()),
            http_requests: counter(&r, HTTP_REQUESTS, "HTTP requests by route and status", &["route", "status"]),
            http_duration: histogram(&r, HTTP_DURATION, "HTTP request duration by route", LATENCY_BUCKETS, &["route"]),
            cluster_cas_conflicts: register(
                &r,
                IntCounter::new(CLUSTER_CAS_CONFLICTS, "Cluster: compare-and-set rounds lost to a concurrent writer")
                    .expect("valid metric"),
            ),
            cluster_wakeups: register(
                &r,
                IntCounter::new(CLUSTER_WAKEUPS, "Cluster: commit announcements received over pub/sub")
                    .expect("valid metric"),
            ),
            cluster_views: register(
                &r,
                IntGauge::new(CLUSTER_VIEWS, "Cluster: attempts with polls held on this node").expect("valid metric"),
            ),
            node_info: register(
                &r,
                IntGaugeVec::new(Opts::new(NODE_INFO, "1, labelled with this node's id"), &["node"])
                    .expect("valid metric"),
            ),
            scene_types: Mutex::new(HashSet::new()),
            registry: r,
        };
        Self(Arc::new(inner))
    }

    /// Creates every known label set at 0: the configured apps (and their default
    /// scene type `web`) crossed with the fixed sets of [`metric_names`].
    pub fn preset(&self, apps: &[&str], sms_provider: &str, snapshot_store: &str) {
        let m = &self.0;
        for app in apps {
            m.attempts_created.with_label_values(&[app, "web"]);
            for s in State::ALL.iter().filter(|s| s.is_live()) {
                m.live.with_label_values(&[app, s.label()]);
            }
            for (from, to) in State::TRANSITIONS {
                m.transitions.with_label_values(&[app, from.label(), to.label()]);
            }
            for o in Finish::ALL {
                m.finished.with_label_values(&[app, o.label()]);
            }
            for how in LoginHow::ALL {
                m.logins.with_label_values(&[app, how.label()]);
                m.scan_to_token.with_label_values(&[app, how.label()]);
                m.create_to_token.with_label_values(&[app, how.label()]);
            }
            for kind in CallbackKind::ALL {
                m.callbacks.with_label_values(&[app, kind.label(), CallbackResult::Ok.label()]);
            }
            for result in CallbackResult::ALL.iter().filter(|r| **r != CallbackResult::Ok) {
                m.callbacks.with_label_values(&[app, CallbackKind::Unknown.label(), result.label()]);
            }
            m.callback_duration.with_label_values(&[app]);
            for api in WechatApi::ALL {
                m.wechat_calls.with_label_values(&[app, api.label(), "ok"]);
            }
            for result in TokenRefresh::ALL {
                m.token_refreshes.with_label_values(&[app, result.label()]);
            }
            m.qr_quota_used.with_label_values(&[app]);
            m.qr_quota_limit.with_label_values(&[app]);
        }
        for api in WechatApi::ALL {
            m.wechat_duration.with_label_values(&[api.label()]);
        }
        for k in labels::PollKind::ALL {
            m.polls.with_label_values(&[k.label()]);
        }
        for r in labels::SnapshotWrite::ALL {
            m.snapshot_writes.with_label_values(&[r.label()]);
        }
        for op in labels::SnapshotOp::ALL {
            m.snapshot_errors.with_label_values(&[snapshot_store, op.label()]);
        }
        // Up until the writer says otherwise (it reports every change).
        m.snapshot_store_up.with_label_values(&[snapshot_store]).set(1);
        for outcome in ["restored", "expired", "ended", "corrupt"] {
            m.restore_outcomes.with_label_values(&[outcome]);
        }
        for r in labels::Restart::ALL {
            m.attempt_restarts.with_label_values(&[r.label()]);
        }
        for r in labels::SmsResult::ALL {
            m.sms_sent.with_label_values(&[sms_provider, r.label()]);
        }
        for r in labels::CodeCheck::ALL {
            m.code_checks.with_label_values(&[r.label()]);
        }
        for k in LimitKind::ALL {
            m.limits_hit.with_label_values(&[k.label()]);
        }
    }

    /// The Prometheus text exposition of everything.
    pub fn render(&self) -> String {
        self.roll_quota_day();
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.0.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// The registry, for tests that inspect the catalogue.
    pub fn registry(&self) -> &Registry {
        &self.0.registry
    }

    /// `scene_type` as a label: its own value for the first few distinct ones, then `other`.
    fn scene_type_label<'a>(&self, scene_type: &'a str) -> &'a str {
        let mut seen = self.0.scene_types.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(scene_type) {
            return scene_type;
        }
        if seen.len() < metric_names::SCENE_TYPES_MAX {
            seen.insert(scene_type.to_string());
            return scene_type;
        }
        "other"
    }

    pub fn created(&self, app: &str, scene_type: &str) {
        let st = self.scene_type_label(scene_type);
        self.0.attempts_created.with_label_values(&[app, st]).inc();
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
            self.0.live.with_label_values(&[app, to.label()]).add(n);
        }
    }

    pub fn transition(&self, app: &str, from: State, to: State) {
        self.0.transitions.with_label_values(&[app, from.label(), to.label()]).inc();
        self.live_changed(app, Some(from), Some(to));
    }

    /// A transition counted without moving the live gauge (cluster mode: the attempt may
    /// have been created on another node).
    pub fn transition_counted(&self, app: &str, from: State, to: State) {
        self.0.transitions.with_label_values(&[app, from.label(), to.label()]).inc();
    }

    pub fn cluster_cas_conflict(&self) {
        self.0.cluster_cas_conflicts.inc();
    }

    pub fn cluster_wakeup(&self) {
        self.0.cluster_wakeups.inc();
    }

    pub fn cluster_views(&self, n: usize) {
        self.0.cluster_views.set(n as i64);
    }

    /// Names this node (`scanlogin_node_info{node} 1`).
    pub fn node(&self, id: &str) {
        self.0.node_info.with_label_values(&[id]).set(1);
    }

    pub fn finished(&self, app: &str, how: Finish) {
        self.0.finished.with_label_values(&[app, how.label()]).inc();
    }

    /// A token left the engine `since_create` after its QR was made and `since_scan`
    /// after WeChat's scan event (either unknown for an attempt restored from a snapshot).
    pub fn token_latency(&self, app: &str, how: LoginHow, since_create: Option<f64>, since_scan: Option<f64>) {
        if let Some(s) = since_create {
            self.0.create_to_token.with_label_values(&[app, how.label()]).observe(s);
        }
        if let Some(s) = since_scan {
            self.0.scan_to_token.with_label_values(&[app, how.label()]).observe(s);
        }
    }

    pub fn poll(&self, kind: labels::PollKind) {
        self.0.polls.with_label_values(&[kind.label()]).inc();
    }

    /// Publishes a configured capacity (`live_attempts_max`, `long_polls_max`).
    pub fn capacity(&self, limit: LimitKind, value: usize) {
        self.0.capacity.with_label_values(&[limit.label()]).set(i64::try_from(value).unwrap_or(i64::MAX));
    }

    /// Counts a held long poll until the guard drops.
    pub fn hold(&self) -> HoldGuard {
        self.0.held.inc();
        HoldGuard(self.0.held.clone())
    }

    pub fn callback(&self, app: &str, kind: CallbackKind, result: CallbackResult, secs: f64) {
        self.0.callbacks.with_label_values(&[app, kind.label(), result.label()]).inc();
        self.0.callback_duration.with_label_values(&[app]).observe(secs);
    }

    /// One call to WeChat's `api`; `result`: `ok`, `errcode_N`, `transport` or
    /// `bad_response` (the errcodes are WeChat's, not a set of ours).
    pub fn wechat_call(&self, app: &str, api: WechatApi, result: &str, secs: f64) {
        self.0.wechat_calls.with_label_values(&[app, api.label(), result]).inc();
        self.0.wechat_duration.with_label_values(&[api.label()]).observe(secs);
    }

    pub fn token_refresh(&self, app: &str, result: TokenRefresh) {
        self.0.token_refreshes.with_label_values(&[app, result.label()]).inc();
    }

    /// How long one round trip of the snapshot writer took (a batch, ok or failed).
    pub fn snapshot_write_took(&self, secs: f64) {
        self.0.snapshot_duration.observe(secs);
    }

    /// `n` snapshots stored in one round trip of `store` (or failed to be).
    pub fn snapshot_written(&self, _store: &str, result: labels::SnapshotWrite, n: usize) {
        self.0.snapshot_writes.with_label_values(&[result.label()]).inc_by(n as u64);
    }

    /// A snapshot store error of operation `op` (retried).
    pub fn snapshot_error(&self, store: &str, op: labels::SnapshotOp) {
        self.0.snapshot_errors.with_label_values(&[store, op.label()]).inc();
    }

    pub fn snapshot_pending(&self, n: usize) {
        self.0.snapshot_pending.set(n as i64);
    }

    pub fn sqlite_wal_pages(&self, n: i64) {
        self.0.sqlite_wal_pages.set(n);
    }

    pub fn snapshot_store_up(&self, store: &str, up: bool) {
        self.0.snapshot_store_up.with_label_values(&[store]).set(i64::from(up));
    }

    /// `n` attempts came back from snapshots at start.
    pub fn restored(&self, n: u64) {
        self.0.restored.inc_by(n);
    }

    /// The last restore: how many snapshots ended how (`restored`, `expired`, `ended`,
    /// `corrupt`), and how long it took.
    pub fn restore_finished(&self, counts: &[(&str, usize)], secs: f64) {
        for (outcome, n) in counts {
            self.0.restore_outcomes.with_label_values(&[outcome]).set(*n as i64);
            if *outcome == "restored" {
                self.restored(*n as u64);
            }
        }
        self.0.restore_duration.set(secs);
    }

    pub fn attempt_restart(&self, result: labels::Restart) {
        self.0.attempt_restarts.with_label_values(&[result.label()]).inc();
    }

    pub fn token_withheld(&self) {
        self.0.tokens_withheld.inc();
    }

    pub fn sms(&self, provider: &str, result: labels::SmsResult) {
        self.0.sms_sent.with_label_values(&[provider, result.label()]).inc();
    }

    pub fn code_check(&self, result: labels::CodeCheck) {
        self.0.code_checks.with_label_values(&[result.label()]).inc();
    }

    /// Publishes the configured daily QR quota of each app.
    pub fn qr_quota_limit(&self, apps: &[&str], per_day: u32) {
        for app in apps {
            self.0.qr_quota_limit.with_label_values(&[app]).set(i64::from(per_day));
            self.0.qr_quota_used.with_label_values(&[app]);
        }
        *self.0.qr_quota_apps.lock().unwrap_or_else(|e| e.into_inner()) = apps.iter().map(|a| a.to_string()).collect();
    }

    /// One QR code of `app` charged to today's quota.
    pub fn qr_quota_charged(&self, app: &str) {
        self.roll_quota_day();
        self.0.qr_quota_used.with_label_values(&[app]).inc();
    }

    /// A new UTC day starts every app's count at 0 again (as the quota windows do).
    fn roll_quota_day(&self) {
        use std::sync::atomic::Ordering;
        let today = utc_day();
        if self.0.qr_quota_day.swap(today, Ordering::Relaxed) != today {
            // Resetting drops every series; the configured apps come back at 0.
            self.0.qr_quota_used.reset();
            for app in self.0.qr_quota_apps.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                self.0.qr_quota_used.with_label_values(&[app]);
            }
        }
    }

    pub fn limit_hit(&self, kind: LimitKind) {
        self.0.limits_hit.with_label_values(&[kind.label()]).inc();
    }

    pub fn login(&self, app: &str, how: LoginHow) {
        self.0.logins.with_label_values(&[app, how.label()]).inc();
    }

    pub fn http(&self, route: &str, status: u16, secs: f64) {
        self.0.http_requests.with_label_values(&[route, &status.to_string()]).inc();
        self.0.http_duration.with_label_values(&[route]).observe(secs);
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

#[cfg(test)]
mod tests;
