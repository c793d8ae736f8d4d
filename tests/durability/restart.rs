//! (a) `kill -9` with attempts in every state, then a restart: each answers its state
//! with its remaining TTL, a scan and a bind complete, and an attempt that expired while
//! the process was down is gone. (b) A token answered right before the kill is never
//! answered again. Once with SQLite snapshots, once with Redis.
//!
//! No step depends on how fast the machine is: the attempt that must expire while the
//! process is down is the only work of its process, and a TTL is checked against the
//! times its requests were under way, not against a guess of their latency.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::client::delivered;
use crate::process::{RedisServer, server_and_wechat};

const PHONE_REG: &str = "13800138000";
const PHONE_NEW: &str = "13900139000";
const PHONE_BIND: &str = "13700137000";
/// The TTL of the attempt that expires while the process is down: one restart must fit
/// in it (it takes well under a second; ten times that under a loaded CI).
const BRIEF: Duration = Duration::from_secs(5);

/// When a request was under way: sent at `.0`, answered by `.1`.
#[derive(Clone, Copy)]
struct Span(Instant, Instant);

/// Runs `f`, and says when it was under way.
async fn span<T>(f: impl Future<Output = T>) -> (T, Span) {
    let start = Instant::now();
    let out = f.await;
    (out, Span(start, Instant::now()))
}

/// `expires_in` of a live attempt made with `ttl` seconds by the request of `made`, read
/// by the request of `read`: the deadline lies between `made.0 + ttl` and `made.1 + ttl`,
/// and `expires_in` is whole seconds (1 s either way).
fn assert_ttl(body: &serde_json::Value, ttl: u64, made: Span, read: Span) {
    let left = body["expires_in"].as_u64().expect("expires_in") as f64;
    let ttl = ttl as f64;
    let least = ttl - read.1.duration_since(made.0).as_secs_f64() - 1.0;
    let most = ttl - read.0.saturating_duration_since(made.1).as_secs_f64() + 1.0;
    assert!((least..=most).contains(&left), "expires_in {left}, want {least:.2}..={most:.2}: {body}");
}

async fn scenario(snapshots: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, _wechat, api) = server_and_wechat(dir.path(), snapshots, BRIEF.as_secs()).await;

    // A first process hands out a brief QR code, and dies.
    let ((brief, _), made) = span(api.new_login()).await;
    server.kill9();

    // The second one (QR codes now live 60 s) finds it with its own deadline, and dies
    // at once: its deadline passes while no process runs.
    server.set("SCANLOGIN__LOGIN__QR_TTL_SECS", "60");
    server.start().await;
    api.until_ready().await;
    let ((status, body), read) = span(api.status(&brief)).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("loop")), "{body}");
    assert_ttl(&body, BRIEF.as_secs(), made, read);
    server.kill9();
    // Down until the brief one's deadline has passed: the premise is time passing while
    // no process runs, which no event can mark.
    tokio::time::sleep((made.1 + BRIEF + Duration::from_secs(1)).saturating_duration_since(Instant::now())).await;

    // The third finds it expired, and gets work in every state.
    server.start().await;
    api.until_ready().await;
    let m = api.metrics().await;
    assert!(m.contains("scanlogin_restore_attempts{outcome=\"expired\"} 1"), "the brief one:\n{m}");
    let (_, body) = api.status(&brief).await;
    assert_eq!(body["state"], "expired", "expired while down: gone");
    api.register("o_reg", PHONE_REG).await;
    let ((looping, loop_ticket), t_loop) = span(api.new_login()).await;
    let ((not_reg, ticket), t_not_reg) = span(api.new_login()).await;
    delivered(api.scan(&ticket, "o_new", false).await);
    let code = api.send_code(&not_reg, PHONE_NEW).await;
    let (reg, ticket) = api.new_login().await;
    delivered(api.scan(&ticket, "o_reg", true).await);
    let (taken, ticket) = api.new_login().await;
    delivered(api.scan(&ticket, "o_reg", true).await);
    let (_, body) = api.status(&taken).await;
    assert!(body["token"].is_string(), "{body}");
    let (bound, ticket) = api.new_login().await;
    delivered(api.scan(&ticket, "o_bind", false).await);
    let bind_code = api.send_code(&bound, PHONE_BIND).await;
    let (status, body) = api.bind(&bound, PHONE_BIND, &bind_code).await;
    assert!(status == 200 && body["token"].is_string(), "{body}");
    // Right after two tokens were answered: a crash, and the fourth process.
    server.kill9();
    server.start().await;
    api.until_ready().await;
    let m = api.metrics().await;
    assert!(m.contains("scanlogin_restore_attempts{outcome=\"restored\"} 3"), "loop, not_reg, reg:\n{m}");

    for used in [&taken, &bound] {
        let (status, body) = api.status(used).await;
        assert_eq!((status, body["state"].as_str()), (200, Some("expired")), "a token is never answered twice");
        assert!(body.get("token").is_none());
    }
    let ((_, body), read) = span(api.status(&looping)).await;
    assert_eq!(body["state"], "loop");
    assert_ttl(&body, 60, t_loop, read);
    let ((_, body), read) = span(api.status(&not_reg)).await;
    assert_eq!(body["state"], "not_reg");
    assert_ttl(&body, 60, t_not_reg, read);

    // What was under way completes: the scanned registered user gets the token, the
    // code sent before the crash still binds, a scan of the waiting QR code logs in.
    let (_, body) = api.status(&reg).await;
    assert!(body["state"] == "reg" && body["token"].is_string(), "{body}");
    let (status, body) = api.bind(&not_reg, PHONE_NEW, &code).await;
    assert!(status == 200 && body["token"].is_string(), "{body}");
    delivered(api.scan(&loop_ticket, "o_reg", true).await);
    let (_, body) = api.status(&looping).await;
    assert!(body["state"] == "reg" && body["token"].is_string(), "{body}");
}

#[tokio::test]
async fn kill_9_and_restart_with_sqlite_snapshots() {
    scenario("sqlite").await;
}

#[tokio::test]
async fn kill_9_and_restart_with_redis_snapshots() {
    let redis = RedisServer::start();
    scenario(&redis.url()).await;
}
