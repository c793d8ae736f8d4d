//! (c) Redis frozen in the middle of logins: logins complete (each request
//! answered within a bounded time), `/readyz` names redis; when it thaws, and again when
//! it comes back empty, every live attempt is written again, so a fresh `kill -9` and
//! restart still restores everything, and no token is answered twice.

use std::time::{Duration, Instant};

use redis::AsyncCommands;

use crate::client::{Api, delivered, eventually};
use crate::process::{RedisServer, server_and_wechat};

/// The most any request may take while Redis does not answer.
const BOUND: Duration = Duration::from_millis(1500);

async fn timed<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    let t = Instant::now();
    let r = f.await;
    assert!(t.elapsed() < BOUND, "{what} took {:?} while Redis was down", t.elapsed());
    r
}

/// Whether a `/readyz` answer names redis as failing.
fn names_redis(body: &serde_json::Value) -> bool {
    body["failing"].as_array().is_some_and(|f| f.iter().any(|x| x == "redis"))
}

async fn until_readyz_names_redis(api: &Api) {
    let named = || async {
        let (status, body) = timed("readyz", api.get("/readyz")).await;
        (status == 503 && names_redis(&body)).then_some(())
    };
    eventually("/readyz names redis", Duration::from_secs(8), named).await;
}

#[tokio::test]
async fn logins_survive_a_redis_outage_and_a_crash_after_it() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (mut server, _wechat, api) = server_and_wechat(dir.path(), &redis.url(), 120).await;
    api.register("o_reg", "13800138000").await;
    let (a1, t1) = api.new_login().await;
    let (a2, t2) = api.new_login().await;
    let (a3, t3) = api.new_login().await;
    let (a4, _) = api.new_login().await;

    redis.pause();
    until_readyz_names_redis(&api).await;
    // A new user binds a phone, a registered one scans: both get their token.
    delivered(timed("scan", api.scan(&t1, "o_one", false)).await);
    let code = timed("sms-code", api.send_code(&a1, "13900139000")).await;
    let (status, body) = timed("bind-phone", api.bind(&a1, "13900139000", &code)).await;
    assert!(status == 200 && body["token"].is_string(), "{body}");
    delivered(timed("scan", api.scan(&t2, "o_reg", true)).await);
    let (_, body) = timed("status", api.status(&a2)).await;
    assert!(body["token"].is_string(), "{body}");
    // Another stops half-way; a new QR code is handed out.
    delivered(timed("scan", api.scan(&t3, "o_three", false)).await);
    let (a5, _) = timed("qrcode", api.new_login()).await;
    let m = api.metrics().await;
    let errors =
        m.lines().filter(|l| l.starts_with("scanlogin_snapshot_errors_total{") && l.contains("store=\"redis\""));
    assert!(errors.filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum::<f64>() > 0.0, "{m}");

    // Thawed as soon as the work is done: the outage lasted from the first failed call
    // to here, and nothing in it waits on its length.
    redis.resume();
    api.until_ready().await;

    // Now Redis dies and comes back empty, while the server runs.
    redis.restart();
    let conn = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let rewritten = || {
        let mut conn = conn.clone();
        async move { (conn.hlen::<_, usize>("sl:scenes").await.unwrap() == 3).then_some(()) }
    };
    eventually("the 3 live attempts are written again", Duration::from_secs(10), rewritten).await;

    server.kill9();
    server.start().await;
    api.until_ready().await;
    let m = api.metrics().await;
    assert!(m.contains("scanlogin_restore_attempts{outcome=\"restored\"} 3"), "{m}");
    for used in [&a1, &a2] {
        let (_, body) = api.status(used).await;
        assert_eq!(body["state"], "expired", "a token answered during the outage is not answered again");
    }
    assert_eq!(api.status(&a3).await.1["state"], "not_reg");
    for waiting in [&a4, &a5] {
        assert_eq!(api.status(waiting).await.1["state"], "loop");
    }
    let code = api.send_code(&a3, "13700137000").await;
    let (status, body) = api.bind(&a3, "13700137000", &code).await;
    assert!(status == 200 && body["token"].is_string(), "{body}");
}

/// The case the fallback exists for: Redis holds `reg` (the scan was stored), the token is
/// answered while Redis is frozen, and the process dies before Redis could take the
/// consumed state. The user database took it instead, and restore believes it.
#[tokio::test]
async fn a_token_answered_while_redis_is_frozen_stays_spent_after_a_crash() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (mut server, _wechat, api) = server_and_wechat(dir.path(), &redis.url(), 120).await;
    api.register("o_reg", "13800138000").await;
    let (uuid, ticket) = api.new_login().await;
    delivered(api.scan(&ticket, "o_reg", true).await);
    redis.pause();
    // Once the server knows Redis is gone it sends it nothing (a write stuck in a frozen
    // Redis's socket would still land when it thaws).
    until_readyz_names_redis(&api).await;
    let (status, body) = timed("status", api.status(&uuid)).await;
    assert!(status == 200 && body["token"].is_string(), "{body}");
    server.kill9();
    redis.resume();
    server.start().await;
    api.until_ready().await;
    let (_, body) = api.status(&uuid).await;
    assert_eq!(body["state"], "expired", "{body}");
    assert!(body.get("token").is_none());
    let m = api.metrics().await;
    assert!(m.contains("scanlogin_restore_attempts{outcome=\"ended\"} 1"), "{m}");
}

/// Redis is down when the server starts: it serves anyway, says why it is not ready,
/// and finishes its restore once Redis answers.
#[tokio::test]
async fn the_server_starts_while_redis_is_down() {
    let mut redis = RedisServer::start();
    redis.kill();
    let dir = tempfile::tempdir().unwrap();
    let mut server = crate::process::Instance::server(dir.path(), &redis.url(), 60);
    server.start().await;
    let api = server.api(&server);
    let recovering = || async {
        let (status, body) = api.get("/readyz").await;
        assert_eq!(status, 503, "{body}");
        (body["recovering"].is_u64() && names_redis(&body)).then_some(())
    };
    eventually("/readyz says recovering and names redis", Duration::from_secs(8), recovering).await;
    // New logins are served meanwhile, each within the bound.
    let (uuid, _) = timed("qrcode", api.new_login()).await;
    assert_eq!(timed("status", api.status(&uuid)).await.1["state"], "loop");
    redis.restart();
    api.until_ready().await;
    assert_eq!(api.status(&uuid).await.1["state"], "loop");
}
