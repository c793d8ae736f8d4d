//! The holes of the security review (issue 12), each shut over real HTTP: the sandbox
//! off by default, forwarding headers only from trusted proxies, IPv6 /64 buckets, the
//! daily caps, phone locks only for real wrong guesses, durable revocations, limits that
//! survive a dead Redis, cross-site POSTs, WeChat's errmsg, and the metrics port.

use std::time::Duration;

use reqwest::header::HeaderValue;
use serde_json::{Value, json};

use crate::client::{metric, parts};
use crate::helpers::{TestApp, spawn_app_with};
use crate::process::{RedisServer, free_port};

/// A QR request as a proxy forwards it: `X-Forwarded-For` (raw bytes) and/or `Forwarded`.
async fn qr_via(app: &TestApp, xff: Option<&[u8]>, forwarded: Option<&str>) -> u16 {
    qr_answer_via(app, xff, forwarded).await.0
}

/// [`qr_via`], answering the status and the body.
async fn qr_answer_via(app: &TestApp, xff: Option<&[u8]>, forwarded: Option<&str>) -> (u16, Value) {
    let mut r = app.http.post(app.url("/api/v1/login/qrcode")).json(&json!({"image": false}));
    if let Some(x) = xff {
        r = r.header("x-forwarded-for", HeaderValue::from_bytes(x).expect("header bytes"));
    }
    if let Some(f) = forwarded {
        r = r.header("forwarded", f);
    }
    parts(r.send().await.expect("request")).await
}

async fn post_from(app: &TestApp, path: &str, xff: &str, body: &Value) -> (u16, Value) {
    parts(app.http.post(app.url(path)).header("x-forwarded-for", xff).json(body).send().await.unwrap()).await
}

/// A login attempt scanned by a new WeChat user (`not_reg`), created from `xff`.
async fn not_reg(app: &TestApp, openid: &str) -> String {
    let (uuid, ticket) = app.new_login().await;
    assert_eq!(app.scan(&ticket, openid, false).await.0, 200);
    uuid
}

#[actix_web::test]
async fn the_sandbox_is_off_unless_a_config_turns_it_on() {
    // The shipped file without its `sandbox = true` line: the built-in default applies.
    let text: String = include_str!("../../config/default.toml")
        .lines()
        .filter(|l| !l.starts_with("sandbox ="))
        .collect::<Vec<_>>()
        .join("\n");
    let parsed: scanlogin::config::Settings = toml::from_str(&text).expect("toml");
    assert!(!parsed.wechat.sandbox);
    let app = spawn_app_with(|s| s.wechat.sandbox = parsed.wechat.sandbox).await;
    for path in ["/_sandbox/tickets", "/_sandbox/"] {
        assert_eq!(app.http.get(app.url(path)).send().await.unwrap().status(), 404, "{path}");
    }
    let scan = app.post_json("/_sandbox/scan", &json!({"ticket": "t", "openid": "o"})).await;
    assert_eq!(scan.status(), 404);
}

/// A forwarding header from a trusted proxy that cannot be read (over 64 entries, over
/// 4 KiB, not ASCII) is refused: charging it to the proxy's own address would put every
/// such client in one bucket with the proxy (issue 25).
#[actix_web::test]
async fn an_unreadable_forwarded_for_from_a_proxy_is_refused_never_charged_to_the_proxy() {
    let app = spawn_app_with(|s| {
        s.limits.qr_per_ip_per_minute = 2;
        s.server.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await;
    let many = format!("{}203.0.113.1", "198.51.100.1,".repeat(64));
    let long = format!("{}203.0.113.1", format!("198.51.100.1{},", " ".repeat(100)).repeat(40));
    assert!(long.len() > 4096 && many.len() < 1024);
    for xff in [many.as_bytes(), long.as_bytes(), "203.0.113.50\u{e9}".as_bytes(), &[0xff, 0xfe]] {
        let (s, body) = qr_answer_via(&app, Some(xff), Some("for=203.0.113.1")).await;
        assert_eq!((s, body["error"].as_str()), (400, Some("invalid_request")), "{body}");
    }
    // None of them was charged to the proxy's own address.
    assert_eq!(qr_via(&app, None, None).await, 200);
    assert_eq!(qr_via(&app, None, None).await, 200);
    assert_eq!(qr_via(&app, None, None).await, 429);
    // 64 entries are read, from the right.
    let chain = format!("{}203.0.113.77", "198.51.100.1,".repeat(63));
    assert_eq!(qr_via(&app, Some(chain.as_bytes()), None).await, 200);
    // `Forwarded` alone, from the trusted proxy, is believed; read right to left.
    assert_eq!(qr_via(&app, None, Some("for=192.0.2.66, for=203.0.113.9")).await, 200);
    assert_eq!(qr_via(&app, None, Some("for=192.0.2.67, for=203.0.113.9")).await, 200);
    assert_eq!(qr_via(&app, None, Some("for=192.0.2.68, for=203.0.113.9")).await, 429);
    // From an untrusted peer no forwarding header is read, however long.
    let app = spawn_app_with(|s| s.limits.qr_per_ip_per_minute = 1).await;
    assert_eq!(qr_via(&app, Some(long.as_bytes()), Some("for=203.0.113.1")).await, 200);
    assert_eq!(qr_via(&app, None, Some("for=203.0.113.2")).await, 429);
}

#[actix_web::test]
async fn ipv6_clients_share_their_64_in_qr_and_sms_limits() {
    let app = spawn_app_with(|s| {
        s.limits.qr_per_ip_per_minute = 2;
        s.limits.sms_per_ip_per_day = 1;
        s.server.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await;
    let same_64 = ["2001:db8:1:2::1", "2001:db8:1:2:ffff::2", "2001:db8:1:2:abcd::3"];
    let mut got = Vec::new();
    for ip in same_64 {
        got.push(qr_via(&app, Some(ip.as_bytes()), None).await);
    }
    assert_eq!(got, [200, 200, 429]);
    assert_eq!(qr_via(&app, Some(b"2001:db8:1:3::1"), None).await, 200, "the next /64 is someone else");

    let (a, b) = (not_reg(&app, "o_v6a").await, not_reg(&app, "o_v6b").await);
    let sms = "/api/v1/login/sms-code";
    assert_eq!(post_from(&app, sms, "2001:db8:9:9::1", &json!({"uuid": a, "phone": "13800138000"})).await.0, 200);
    let (s, body) = post_from(&app, sms, "2001:db8:9:9::2", &json!({"uuid": b, "phone": "13900139000"})).await;
    assert_eq!((s, body["error"].as_str()), (429, Some("rate_limited")), "{body}");
}

#[actix_web::test]
async fn an_address_has_a_daily_qr_cap_beside_the_per_minute_one() {
    let app = spawn_app_with(|s| s.limits.qr_per_ip_per_day = 3).await;
    for _ in 0..3 {
        assert_eq!(app.create_qr(json!({"image": false})).await.0, 200);
    }
    let r = app.post_json("/api/v1/login/qrcode", &json!({"image": false})).await;
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 60, "a daily window: {retry}");
    assert_eq!(r.status(), 429);
    let m = app.metrics().await;
    assert_eq!(metric(&m, "scanlogin_limits_hit_total", &["kind=\"qr_per_ip_per_day\""]), 1.0);
    assert_eq!(metric(&m, "scanlogin_qr_quota_used", &["app=\"default\""]), 3.0, "{m}");
    assert_eq!(metric(&m, "scanlogin_qr_quota_limit", &["app=\"default\""]), 90_000.0);
}

#[actix_web::test]
async fn guesses_for_a_phone_that_got_no_code_lock_nothing() {
    let app = spawn_app_with(|s| s.limits.code_failures_per_phone_per_day = 3).await;
    let victim = "13900139000";
    // The attacker's own scan, a code to the attacker's phone, then guesses for the victim.
    let attacker = not_reg(&app, "o_attacker").await;
    assert_eq!(app.sms_code(&attacker, "13800138000").await.0, 200);
    for _ in 0..8 {
        let (s, b) = app.bind(&attacker, victim, "000000").await;
        assert_eq!((s, b["error"].as_str()), (400, Some("invalid_code")), "{b}");
    }
    // The victim logs in as usual: their number is not locked.
    let own = not_reg(&app, "o_victim").await;
    let (s, b) = app.sms_code(&own, victim).await;
    assert_eq!(s, 200, "{b}");
    let code = app.last_code(victim).await;
    let (s, b) = app.bind(&own, victim, &code).await;
    assert_eq!(s, 200, "{b}");
}

#[actix_web::test]
async fn bind_phone_calls_are_capped_per_attempt_and_per_address() {
    let app = spawn_app_with(|s| {
        s.limits.bind_per_attempt = 3;
        s.limits.bind_per_ip_per_day = 5;
        s.server.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await;
    let bind = "/api/v1/login/bind-phone";
    let uuid = not_reg(&app, "o_enum").await;
    for i in 0..3 {
        let body = json!({"uuid": uuid, "phone": format!("1380013800{i}"), "code": "123456"});
        assert_eq!(post_from(&app, bind, "2001:db8:7:7::1", &body).await.0, 400);
    }
    let r = app
        .http
        .post(app.url(bind))
        .header("x-forwarded-for", "2001:db8:7:7::1")
        .json(&json!({"uuid": uuid, "phone": "13800138009", "code": "123456"}))
        .send()
        .await
        .unwrap();
    assert!(r.headers().contains_key("retry-after"));
    let (s, b) = parts(r).await;
    assert_eq!((s, b["error"].as_str()), (429, Some("rate_limited")), "{b}");
    // Per address (its /64) across attempts: 4 calls so far, one more, then refused.
    let other = not_reg(&app, "o_enum2").await;
    let body = json!({"uuid": other, "phone": "13700137000", "code": "123456"});
    assert_eq!(post_from(&app, bind, "2001:db8:7:7::2", &body).await.0, 400);
    assert_eq!(post_from(&app, bind, "2001:db8:7:7::3", &body).await.0, 429);
    assert_eq!(post_from(&app, bind, "2001:db8:7:8::1", &body).await.0, 400, "another /64");
}

#[actix_web::test]
async fn a_logout_survives_a_flushed_redis() {
    let redis = RedisServer::start();
    let app = spawn_app_with(|s| s.storage.snapshots = scanlogin::config::SnapshotBackend::Redis(redis.url())).await;
    let token = app.register("o_logout", "13800138000").await;
    assert_eq!(app.me(&token).await.0, 200);
    assert_eq!(app.logout(&token).await, 204);
    redis.flush();
    assert_eq!(app.me(&token).await.0, 401, "a flushed cache does not revive a revoked token");
}

#[actix_web::test]
async fn limits_stay_on_while_redis_is_frozen() {
    let redis = RedisServer::start();
    let app = spawn_app_with(|s| {
        s.storage.snapshots = scanlogin::config::SnapshotBackend::Redis(redis.url());
        s.limits.qr_per_ip_per_minute = 3;
    })
    .await;
    redis.pause();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(app.create_qr(json!({"image": false})).await.0);
    }
    redis.resume();
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429], "node-local limits while Redis does not answer");
}

#[actix_web::test]
async fn cross_site_posts_are_forbidden_before_any_cost() {
    let app = spawn_app_with(|s| {
        s.limits.qr_per_ip_per_minute = 2;
        s.server.cors_origins = vec!["https://app.example.com".into()];
    })
    .await;
    let post = |origin: &'static str, path: &'static str, body: Value| {
        app.http.post(app.url(path)).header("origin", origin).json(&body).send()
    };
    for origin in ["https://evil.example.net", "null", "https://app.example.com.evil.net"] {
        for path in ["/api/v1/login/qrcode", "/api/v1/login/sms-code", "/api/v1/login/bind-phone", "/api/v1/logout"] {
            let (s, b) = parts(post(origin, path, json!({"image": false})).await.unwrap()).await;
            assert_eq!((s, b["error"].as_str()), (403, Some("forbidden")), "{origin} {path}: {b}");
        }
    }
    let m = app.metrics().await;
    assert_eq!(metric(&m, "scanlogin_attempts_created_total", &[]), 0.0);
    assert_eq!(metric(&m, "scanlogin_wechat_api_calls_total", &[]), 0.0);
    assert_eq!(metric(&m, "scanlogin_limits_hit_total", &[]), 0.0);
    // Nothing was charged: the per-address limit still has both its QR codes.
    let own = app.server.clone();
    let r = app.http.post(app.url("/api/v1/login/qrcode")).header("origin", own).json(&json!({"image": false}));
    assert_eq!(r.send().await.unwrap().status(), 200, "the page's own origin");
    assert_eq!(
        post("https://app.example.com", "/api/v1/login/qrcode", json!({"image": false})).await.unwrap().status(),
        200
    );
    assert_eq!(app.create_qr(json!({"image": false})).await.0, 429, "no Origin: the limits apply as before");
}

#[actix_web::test]
async fn wechat_errmsg_does_not_reach_the_client() {
    let app = spawn_app_with(|_| {}).await;
    app.post_json("/_sandbox/faults", &json!({"api": "qrcode_create", "errcode": 45009})).await;
    let (s, b) = app.create_qr(json!({"image": false})).await;
    assert_eq!((s, b["error"].as_str()), (502, Some("wechat_error")), "{b}");
    let message = b["message"].as_str().unwrap();
    assert!(message.contains("45009"), "{message}");
    assert!(!message.contains("sandbox injected fault"), "errmsg leaked: {message}");
}

#[actix_web::test]
async fn metrics_bind_serves_metrics_only_there() {
    let port = free_port();
    let app = spawn_app_with(|s| s.server.metrics_bind = format!("127.0.0.1:{port}")).await;
    let get = |url: String| app.http.get(url).send();
    assert_eq!(get(app.url("/metrics")).await.unwrap().status(), 404, "not on the API port");
    let r = get(format!("http://127.0.0.1:{port}/metrics")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("scanlogin_http_requests_total"));
    let api_on_metrics = get(format!("http://127.0.0.1:{port}/api/v1/login/status?uuid=x")).await.unwrap();
    assert_eq!(api_on_metrics.status(), 404, "only /metrics on the metrics port");
    assert_eq!(get(app.url("/healthz")).await.unwrap().status(), 200);
    actix_web::rt::time::sleep(Duration::from_millis(1)).await;
}
