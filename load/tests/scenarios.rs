//! Each scenario against a real server (the `Application`, sandbox on, fresh SQLite
//! file) for a second or two: the report must show the steps done and no error.

// Test code: a failed unwrap is how a test fails.
#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::time::Duration;

use scanlogin::config::{self, Settings};
use scanlogin::startup::Application;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use scanlogin_load::{Options, Progress, Report, Scenario, run_counted};

/// A safe-mode key (43 characters) for the encrypted variant.
const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

async fn spawn(tweak: impl FnOnce(&mut Settings)) -> (String, tempfile::TempDir) {
    scanlogin::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let text = include_str!("../../config/default.toml");
    let mut s = config::load_from_str(text, &Default::default()).unwrap().settings;
    s.server.workers = 2;
    s.server.public_url = format!("http://127.0.0.1:{port}");
    s.storage.database_url = format!("sqlite://{}/load.db?mode=rwc", dir.path().display());
    // All load comes from one address: lift the per-address limits, as for any load test.
    s.limits.qr_per_ip_per_minute = 1_000_000;
    s.limits.qr_per_ip_per_day = 1_000_000;
    s.limits.qr_per_network_per_day = 1_000_000;
    s.limits.code_failures_per_ip_per_day = 1_000_000;
    s.limits.bind_per_ip_per_day = 1_000_000;
    s.limits.sms_per_ip_per_day = 1_000_000;
    s.limits.long_polls_per_ip = 1_000_000;
    s.limits.connections_per_ip = 1_000_000;
    tweak(&mut s);
    let app = Application::with_listener(s, listener).await.unwrap();
    actix_web::rt::spawn(app.run_until_stopped());
    (format!("http://127.0.0.1:{port}"), dir)
}

fn opts(scenario: Scenario, target: &str, users: usize, secs: f64) -> Options {
    let mut o = Options::new(scenario, target);
    o.users = users;
    o.duration = Duration::from_secs_f64(secs);
    o.quiet = true;
    o.connections = 8;
    o
}

/// Runs `o`, and checks that the progress counters (what the last progress line prints)
/// say what the report says.
async fn run_and_agree(o: Options) -> Report {
    let progress = Arc::new(Progress::default());
    let r = run_counted(o, progress.clone()).await.unwrap();
    let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
    assert_eq!(
        (n(&progress.requests), n(&progress.setup_requests), n(&progress.errors)),
        (r.requests, r.setup_requests, r.total_errors),
        "progress (requests, set-up, errors) against the report:\n{}",
        r.to_text()
    );
    r
}

fn assert_clean(r: &Report, steps: &[&str]) {
    assert_eq!(r.total_errors, 0, "{}", r.to_text());
    for s in steps {
        let st = r.step(s).unwrap_or_else(|| panic!("no step {s} in\n{}", r.to_text()));
        assert!(st.count > 0 && st.p50_ms > 0.0 && st.max_ms >= st.p99_ms, "{s}: {st:?}");
    }
}

#[actix_web::test]
async fn login_scenario_binds_then_logs_returning_users_in_safe_mode() {
    let (target, _dir) = spawn(|s| s.wechat.apps[0].encoding_aes_key = AES_KEY.into()).await;
    let mut o = opts(Scenario::Login, &target, 3, 2.0);
    o.aes_key = AES_KEY.into();
    let r = run_and_agree(o).await;
    assert_clean(
        &r,
        &["create", "ticket", "scan", "poll", "wake", "sms_code", "sms_outbox", "bind", "me", "login total"],
    );
    // 3 users bound once each, then logged in again by scanning.
    assert_eq!(r.step("bind").unwrap().count, 3, "{}", r.to_text());
    // `wake` and `login total` are measurements, not requests.
    let sent: u64 =
        r.steps.iter().filter(|s| !["wake", "login total"].contains(&s.name.as_str())).map(|s| s.count).sum();
    assert_eq!(r.requests, sent, "{}", r.to_text());
    assert!(r.step("login total").unwrap().count > 3, "{}", r.to_text());
    // A scan wakes the held poll at once, not after `wait`.
    assert!(r.step("wake").unwrap().p99_ms < 1000.0, "{}", r.to_text());
    let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(json["scenario"], "login");
}

#[actix_web::test]
async fn login_scenario_fails_visibly_with_the_wrong_token() {
    let (target, _dir) = spawn(|_| {}).await;
    let mut o = opts(Scenario::Login, &target, 1, 0.5);
    o.wechat_token = "not-the-token".into();
    let r = run_and_agree(o).await;
    assert!(r.errors.get("scan: http_401 unauthorized").is_some_and(|n| *n > 0), "{}", r.to_text());
}

#[actix_web::test]
async fn poll_storm_polls_live_attempts() {
    let (target, _dir) = spawn(|_| {}).await;
    let mut o = opts(Scenario::PollStorm, &target, 8, 1.0);
    o.rate = 200.0;
    let r = run_and_agree(o).await;
    assert_clean(&r, &["poll"]);
    let polls = r.step("poll").unwrap().count;
    assert!((150..=201).contains(&polls), "paced to 200/s for 1 s: {polls}");
}

#[actix_web::test]
async fn hold_keeps_long_polls_and_scans_wake_them() {
    let (target, _dir) = spawn(|_| {}).await;
    let mut o = opts(Scenario::Hold, &target, 20, 2.0);
    o.rate = 10.0;
    o.wait = 1;
    let r = run_and_agree(o).await;
    assert_clean(&r, &["poll", "scan", "wake"]);
    let wake = r.step("wake").unwrap();
    assert!(wake.count >= 10 && wake.p99_ms < 500.0, "{}", r.to_text());
    assert!((15..=20).contains(&r.peak_held), "20 browsers held their polls: {}", r.peak_held);
}

#[actix_web::test]
async fn callback_storm_with_duplicates() {
    let (target, _dir) = spawn(|_| {}).await;
    let mut o = opts(Scenario::Callbacks, &target, 20, 1.0);
    o.rate = 300.0;
    o.duplicates = 0.3;
    let r = run_and_agree(o).await;
    assert_clean(&r, &["callback", "duplicate"]);
    assert_eq!(r.setup_requests, 40, "a QR code and its scene for each of 20 users first: {}", r.to_text());
    let (c, d) = (r.step("callback").unwrap().count, r.step("duplicate").unwrap().count);
    // Volume is not what this checks (the machine may be busy): that pushes and their
    // re-sends both flow, at a rate of the right order.
    assert!(c + d >= 100, "{}", r.to_text());
    assert!(d * 100 / (c + d) >= 15, "about 30 % retries: {}", r.to_text());
}
