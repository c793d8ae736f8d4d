//! The benchmark baselines serve what the load tool drives: logins, held polls woken by
//! scans (lean), callbacks, short polls against the seed's Redis keys.

// Test code: a failed unwrap is how a test fails.
#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::time::Duration;

use scanlogin::config::TokenSettings;
use scanlogin::token::TokenIssuer;
use scanlogin::wechat::callback::AppKeys;
use scanlogin_load::baseline::{State, Store, lean::Lean, memory, seed::Seed, serve};
use scanlogin_load::{Options, Scenario, run};

/// The seed baseline's scratch database in the machine's Redis (scripts/test.sh starts it).
const REDIS: &str = "redis://127.0.0.1:6379/14";

fn spawn(store: Store) -> String {
    scanlogin::install_crypto();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let keys = AppKeys { app_id: "wxsandbox0000000001".into(), token: "sandbox-token".into(), aes_keys: vec![] };
    let state = State {
        store,
        keys,
        tokens: TokenIssuer::shared_secret(&TokenSettings::default()),
        ttl_secs: 300,
        max_wait_secs: 60,
    };
    actix_web::rt::spawn(serve(listener, state, 2).unwrap());
    format!("http://127.0.0.1:{port}")
}

fn opts(s: Scenario, target: &str, users: usize) -> Options {
    let mut o = Options::new(s, target);
    o.users = users;
    o.duration = Duration::from_millis(800);
    o.quiet = true;
    o.connections = 8;
    o
}

#[actix_web::test]
async fn lean_baseline_logs_in_wakes_held_polls_and_takes_callbacks() {
    let target = spawn(Store::Lean(Lean::start()));
    let r = run(opts(Scenario::Login, &target, 4)).await.unwrap();
    assert_eq!(r.total_errors, 0, "{}", r.to_text());
    assert!(r.step("login total").unwrap().count > 4 && r.step("bind").is_none(), "{}", r.to_text());
    let mut o = opts(Scenario::Hold, &target, 20);
    (o.rate, o.wait) = (10.0, 1);
    let r = run(o).await.unwrap();
    assert_eq!(r.total_errors, 0, "{}", r.to_text());
    assert!(r.step("wake").unwrap().p99_ms < 500.0, "{}", r.to_text());
    let mut o = opts(Scenario::Callbacks, &target, 10);
    o.rate = 200.0;
    let r = run(o).await.unwrap();
    assert_eq!(r.total_errors, 0, "{}", r.to_text());
    assert!(r.step("callback").unwrap().count > 100, "{}", r.to_text());
}

#[actix_web::test]
async fn seed_baseline_answers_short_polls_and_scans_from_redis() {
    let target = spawn(Store::Seed(Seed::connect(REDIS).await.expect("Redis on 6379")));
    let mut o = opts(Scenario::PollStorm, &target, 8);
    o.rate = 200.0;
    let r = run(o).await.unwrap();
    assert_eq!(r.total_errors, 0, "{}", r.to_text());
    assert!(r.step("poll").unwrap().count > 100, "{}", r.to_text());
    // The seed has no long polls: `wait` is ignored, the login still completes.
    let mut o = opts(Scenario::Login, &target, 2);
    o.wait = 0;
    let r = run(o).await.unwrap();
    assert_eq!(r.total_errors, 0, "{}", r.to_text());
    assert!(r.step("login total").unwrap().count > 2, "{}", r.to_text());
}

#[actix_web::test]
async fn memory_per_attempt_is_measured() {
    let per = memory::lean(20_000).await;
    assert!((50.0..5_000.0).contains(&per), "lean: {per} bytes per attempt");
}
