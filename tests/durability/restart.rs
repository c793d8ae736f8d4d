//! (a) `kill -9` with attempts in every state, then a restart: each answers its state
//! with its remaining TTL (±1 s), a scan and a bind complete, and an attempt that
//! expired while the process was down is gone. (b) A token answered right before the
//! kill is never answered again. Once with SQLite snapshots, once with Redis.

use std::time::{Duration, Instant};

use crate::client::delivered;
use crate::process::{RedisServer, server_and_wechat};

const PHONE_REG: &str = "13800138000";
const PHONE_NEW: &str = "13900139000";
const PHONE_BIND: &str = "13700137000";

/// `expires_in` of a live attempt created (answered) at `born` with `ttl` seconds.
fn assert_ttl(body: &serde_json::Value, ttl: u64, born: Instant) {
    let left = body["expires_in"].as_u64().expect("expires_in") as f64;
    let want = ttl as f64 - born.elapsed().as_secs_f64();
    assert!((left - want).abs() <= 1.0, "expires_in {left}, want {want:.2} ± 1: {body}");
}

async fn scenario(snapshots: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, _wechat, api) = server_and_wechat(dir.path(), snapshots, 8).await;

    // A first process hands out a QR code living 8 s, and dies.
    let t0 = Instant::now();
    let (brief, _) = api.new_login().await;
    server.kill9();

    // The second one (QR codes now live 60 s) finds it, and gets work in every state.
    server.set("SCANLOGIN__LOGIN__QR_TTL_SECS", "60");
    server.start().await;
    api.until_ready().await;
    let (status, body) = api.status(&brief).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("loop")), "{body}");
    assert_ttl(&body, 8, t0);
    api.register("o_reg", PHONE_REG).await;
    let (looping, loop_ticket) = api.new_login().await;
    let t_loop = Instant::now();
    let (not_reg, ticket) = api.new_login().await;
    let t_not_reg = Instant::now();
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
    // Right after two tokens were answered: a crash.
    server.kill9();
    assert!(t0.elapsed() < Duration::from_secs(8), "too slow to test expiry while down: {:?}", t0.elapsed());

    // Down until the first QR code has expired; then the third process.
    tokio::time::sleep(Duration::from_secs(8).saturating_sub(t0.elapsed()) + Duration::from_millis(300)).await;
    server.start().await;
    api.until_ready().await;
    let m = api.metrics().await;
    assert!(m.contains("scanlogin_restore_attempts{outcome=\"restored\"} 3"), "loop, not_reg, reg:\n{m}");
    assert!(m.contains("scanlogin_restore_attempts{outcome=\"expired\"} 1"), "the brief one:\n{m}");

    let (_, body) = api.status(&brief).await;
    assert_eq!(body["state"], "expired", "expired while down: gone");
    for used in [&taken, &bound] {
        let (status, body) = api.status(used).await;
        assert_eq!((status, body["state"].as_str()), (200, Some("expired")), "a token is never answered twice");
        assert!(body.get("token").is_none());
    }
    let (_, body) = api.status(&looping).await;
    assert_eq!(body["state"], "loop");
    assert_ttl(&body, 60, t_loop);
    let (_, body) = api.status(&not_reg).await;
    assert_eq!(body["state"], "not_reg");
    assert_ttl(&body, 60, t_not_reg);

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
