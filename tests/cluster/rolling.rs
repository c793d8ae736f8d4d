//! A rolling restart, the reason to run several nodes: the load tool's login scenario
//! runs through nginx while each node in turn is stopped (SIGTERM), started again and
//! waited for until ready. No login fails, no token is handed out twice. The checked
//! logins run until every restart is done, however long the restarts take, and each
//! restart waits until logins go on after the one before.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::client::{Api, delivered, eventually};
use crate::harness::{Cluster, Tokens};

/// Logins through nginx with the sandbox playing the phone (its scan posts the callback
/// through nginx too); each token is recorded, and a second poll must not see it again.
/// A refused bind ends the loop with its answer, so the test can show the nodes' logs.
async fn checked_logins(api: Api, stop: Arc<AtomicBool>, tokens: Arc<Tokens>, who: usize) -> Result<usize, String> {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let openid = format!("o_roll_{who}_{n}");
        let (uuid, ticket) = api.new_login().await;
        delivered(api.scan(&ticket, &openid, false).await);
        let phone = format!("1380{who:03}{n:04}");
        let code = api.send_code(&uuid, &phone).await;
        let (status, body) = api.bind(&uuid, &phone, &code).await;
        if status != 200 {
            return Err(format!("login {n} of checker {who}: bind-phone answered {status} {body}"));
        }
        tokens.record(body["token"].as_str().unwrap());
        let (_, again) = api.status(&uuid).await;
        assert!(again.get("token").is_none(), "{again}");
        n += 1;
    }
    Ok(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_through_nginx_fails_no_login() {
    let mut c = Cluster::start(&[]).await;
    let mut opts = scanlogin_load::Options::new(scanlogin_load::Scenario::Login, &c.nginx.url());
    opts.users = 6;
    opts.rate = 15.0;
    opts.wait = 5;
    opts.duration = Duration::from_secs(12);
    opts.quiet = true;
    let started = Instant::now();
    let load = tokio::spawn(scanlogin_load::run(opts));
    let (stop, tokens) = (Arc::new(AtomicBool::new(false)), Arc::new(Tokens::default()));
    let checkers: Vec<_> =
        (0..2).map(|w| tokio::spawn(checked_logins(c.front(), stop.clone(), tokens.clone(), w))).collect();

    let logins_beyond = |n: usize| {
        let tokens = tokens.clone();
        let what = format!("more than {n} checked logins");
        async move { eventually(&what, Duration::from_secs(20), || async { (tokens.len() > n).then_some(()) }).await }
    };
    logins_beyond(3).await;
    for i in 0..3 {
        let t = Instant::now();
        let status = c.nodes[i].terminate(Duration::from_secs(8)).await;
        assert!(status.success(), "node{} exits cleanly on SIGTERM: {status}", i + 1);
        c.nodes[i].start().await;
        c.until_ready(i).await;
        eprintln!("node{} restarted in {:?}", i + 1, t.elapsed());
        logins_beyond(tokens.len() + 2).await;
    }
    eprintln!("restarts done after {:?}", started.elapsed());
    let report = load.await.unwrap().expect("the load tool runs");
    stop.store(true, Ordering::Relaxed);
    let mut checked = 0;
    for ch in checkers {
        // A checker's assertion (a scan not delivered, a token seen twice) panics inside
        // its task: that failure gets the nodes' logs too.
        let failed = match ch.await {
            Ok(Ok(n)) => {
                checked += n;
                continue;
            }
            Ok(Err(e)) => e,
            Err(join) => match join.try_into_panic() {
                Ok(p) => p.downcast_ref::<String>().cloned().unwrap_or_else(|| "a checker panicked".into()),
                Err(e) => e.to_string(),
            },
        };
        panic!("{failed}\nthe nodes' warnings and errors:\n{}", c.troubles());
    }
    let logins = report.step("login total").map_or(0, |s| s.count);
    assert!(
        report.total_errors == 0,
        "no failed request during the rolling restart:\n{}\nthe nodes' warnings and errors:\n{}",
        report.to_text(),
        c.troubles()
    );
    assert!(logins >= 100, "the load went on: {logins} logins\n{}", report.to_text());
    assert!(checked >= 20 && tokens.len() == checked, "{checked} checked logins, {} tokens", tokens.len());
    eprintln!("rolling restart: {logins} load logins, {checked} checked logins, 0 errors");
}
