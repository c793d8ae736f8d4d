//! The holes a security review found, each shut over real HTTP: the sandbox
//! off by default, forwarding headers only from trusted proxies, IPv6 /64 buckets, the
//! daily caps, phone locks only for real wrong guesses, durable revocations, limits that
//! survive a dead Redis, cross-site POSTs, WeChat's errmsg, and the metrics port.

use std::time::Duration;

use reqwest::header::HeaderValue;
use serde_json::{Value, json};

use crate::client::{delivered, eventually, metric, parts, wrong_code};
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
    delivered(app.scan(&ticket, openid, false).await);
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
/// such client in one bucket with the proxy.
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
async fn guesses_for_a_phone_that_got_no_code_lock_the_guesser_not_the_phone() {
    let app = spawn_app_with(|s| s.limits.code_failures_per_openid_per_day = 3).await;
    let victim = "13900139000";
    // The attacker's own scan, a code to the attacker's phone, then guesses for the victim.
    let attacker = not_reg(&app, "o_attacker").await;
    assert_eq!(app.sms_code(&attacker, "13800138000").await.0, 200);
    for _ in 0..3 {
        let (s, b) = app.bind(&attacker, victim, "000000").await;
        assert_eq!((s, b["error"].as_str()), (400, Some("invalid_code")), "{b}");
    }
    // They are guesses all the same: the guesser is locked.
    let (s, b) = app.bind(&attacker, victim, "000000").await;
    assert_eq!((s, b["error"].as_str()), (429, Some("rate_limited")), "{b}");
    // The victim logs in as usual: their number is not locked.
    let own = not_reg(&app, "o_victim").await;
    let (s, b) = app.sms_code(&own, victim).await;
    assert_eq!(s, 200, "{b}");
    let code = app.last_code(victim).await;
    let (s, b) = app.bind(&own, victim, &code).await;
    assert_eq!(s, 200, "{b}");
}

/// The third review's reproduction: one WeChat account sends a real code to a victim's
/// number and guesses wrong again and again. The guesser is locked (its WeChat user and
/// its address), the victim's number is not: their own login works as usual.
#[actix_web::test]
async fn wrong_codes_lock_the_guesser_never_the_phone() {
    let app = spawn_app_with(|s| {
        s.limits.code_failures_per_openid_per_day = 3;
        s.limits.code_failures_per_ip_per_day = 5;
        s.limits.sms_resend_secs = 1;
        s.server.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await;
    let victim = "13900139000";
    let (sms, bind) = ("/api/v1/login/sms-code", "/api/v1/login/bind-phone");
    let attacker = not_reg(&app, "o_attacker").await;
    assert_eq!(post_from(&app, sms, "203.0.113.7", &json!({"uuid": attacker, "phone": victim})).await.0, 200);
    let code = app.last_code(victim).await;
    let wrong = wrong_code(&code);
    let guess = |c: &str| json!({"uuid": attacker, "phone": victim, "code": c});
    for _ in 0..3 {
        assert_eq!(post_from(&app, bind, "203.0.113.7", &guess(wrong)).await.0, 400);
    }
    // Locked: the guesser's WeChat user, even with the right code, even from elsewhere.
    let (s, b) = post_from(&app, bind, "198.51.100.9", &guess(&code)).await;
    assert_eq!((s, b["error"].as_str()), (429, Some("rate_limited")), "{b}");
    let m = app.metrics().await;
    assert_eq!(metric(&m, "scanlogin_limits_hit_total", &["kind=\"code_failures_per_openid\""]), 1.0, "{m}");
    // The victim, on their own phone and network, logs in as usual (once the one-second
    // resend window of the attacker's code to their number has passed: real time, the
    // limits' wall clock, which no event marks).
    actix_web::rt::time::sleep(Duration::from_millis(1100)).await;
    let own = not_reg(&app, "o_victim").await;
    let (s, b) = post_from(&app, sms, "192.0.2.44", &json!({"uuid": own, "phone": victim})).await;
    assert_eq!(s, 200, "the victim's number is not locked: {b}");
    let mine = app.last_code(victim).await;
    let (s, b) = post_from(&app, bind, "192.0.2.44", &json!({"uuid": own, "phone": victim, "code": mine})).await;
    assert!(s == 200 && b["token"].is_string(), "{b}");
}

/// Wrong codes from one address lock that address (for codes and binds), whoever's
/// WeChat users it uses.
#[actix_web::test]
async fn wrong_codes_from_one_address_lock_that_address() {
    let app = spawn_app_with(|s| {
        s.limits.code_failures_per_ip_per_day = 2;
        s.server.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await;
    let (sms, bind) = ("/api/v1/login/sms-code", "/api/v1/login/bind-phone");
    // One wrong code leaves the /64 open (the second code is sent); the second locks it.
    for (openid, phone) in [("o_a", "13700137001"), ("o_b", "13700137002")] {
        let uuid = not_reg(&app, openid).await;
        assert_eq!(post_from(&app, sms, "2001:db8:9::1", &json!({"uuid": uuid, "phone": phone})).await.0, 200);
        let wrong = wrong_code(&app.last_code(phone).await);
        let body = json!({"uuid": uuid, "phone": phone, "code": wrong});
        assert_eq!(post_from(&app, bind, "2001:db8:9::2", &body).await.0, 400);
    }
    let third = not_reg(&app, "o_c").await;
    let (s, b) = post_from(&app, sms, "2001:db8:9::3", &json!({"uuid": third, "phone": "13700137003"})).await;
    assert_eq!((s, b["error"].as_str()), (429, Some("rate_limited")), "the /64 is locked: {b}");
    let (s, _) = post_from(&app, sms, "2001:db8:a::1", &json!({"uuid": third, "phone": "13700137003"})).await;
    assert_eq!(s, 200, "another /64 is not");
}

/// A client over its own SMS cap is refused before anything is charged to the phone it
/// named: the phone's owner can still get their code.
#[actix_web::test]
async fn a_client_over_its_sms_cap_costs_the_phone_nothing() {
    let app = spawn_app_with(|s| {
        s.limits.sms_per_ip_per_day = 1;
        s.limits.sms_per_phone_per_day = 1;
        s.server.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await;
    let sms = "/api/v1/login/sms-code";
    let attacker = not_reg(&app, "o_spender").await;
    assert_eq!(post_from(&app, sms, "203.0.113.50", &json!({"uuid": attacker, "phone": "13800138000"})).await.0, 200);
    let second = not_reg(&app, "o_spender2").await;
    let (s, _) = post_from(&app, sms, "203.0.113.50", &json!({"uuid": second, "phone": "13900139000"})).await;
    assert_eq!(s, 429, "over its own cap");
    let own = not_reg(&app, "o_owner").await;
    let (s, b) = post_from(&app, sms, "192.0.2.60", &json!({"uuid": own, "phone": "13900139000"})).await;
    assert_eq!(s, 200, "the refused request charged nothing to this phone: {b}");
}

/// The third review's drain: many addresses of one IPv6 allocation (each /64 under its
/// own caps) are capped as a whole per /56 and per /48, an IPv4 /24 as one network.
#[actix_web::test]
async fn a_spread_of_addresses_in_one_allocation_is_capped_as_a_whole() {
    let app = spawn_app_with(|s| {
        s.limits.qr_per_ip_per_day = 2;
        s.limits.qr_per_network_per_day = 5;
        s.limits.qr_per_site_per_day = 8;
        s.server.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await;
    let app = &app;
    let from = |xff: String| async move { qr_via(app, Some(xff.as_bytes()), None).await };
    // Five /64s of one /56: one QR each, then the /56 is spent.
    for i in 1..=5 {
        assert_eq!(from(format!("2001:db8:0:{i:x}::1")).await, 200);
    }
    assert_eq!(from("2001:db8:0:6::1".into()).await, 429, "the /56 is spent");
    // Another /56 of the same /48: three more, then the /48 is spent.
    for i in 1..=3 {
        assert_eq!(from(format!("2001:db8:0:1{i:02x}::1")).await, 200);
    }
    assert_eq!(from("2001:db8:0:200::1".into()).await, 429, "the /48 is spent");
    assert_eq!(from("2001:db8:1::1".into()).await, 200, "another /48 is not");
    for i in 1..=5 {
        assert_eq!(from(format!("203.0.113.{i}")).await, 200);
    }
    assert_eq!(from("203.0.113.200".into()).await, 429, "the IPv4 /24 is spent");
    assert_eq!(from("198.51.100.1".into()).await, 200);
    let m = app.metrics().await;
    for kind in ["qr_per_network", "qr_per_site"] {
        assert!(metric(&m, "scanlogin_limits_hit_total", &[&format!("kind=\"{kind}\"")]) >= 1.0, "{kind}");
    }
}

/// Past the share of the day's quota open to everyone, new addresses get no QR code; an
/// address that logged in lately still does.
#[actix_web::test]
async fn past_the_open_share_only_returning_addresses_get_a_qr_code() {
    let app = spawn_app_with(|s| {
        s.limits.qr_per_app_per_day = 20;
        s.limits.qr_reserved_percent = 50;
        s.limits.qr_per_ip_per_minute = 100;
        s.server.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await;
    // A user logs in from 127.0.0.1 (the proxy itself, no forwarded address): one QR.
    app.register("o_returning", "13800138000").await;
    for i in 1..=9 {
        assert_eq!(qr_via(&app, Some(format!("2001:db8:{i:x}::1").as_bytes()), None).await, 200);
    }
    // Ten of twenty spent: the rest is kept.
    let r = app.http.post(app.url("/api/v1/login/qrcode")).header("x-forwarded-for", "2001:db8:77::1");
    let (s, b) = parts(r.json(&json!({"image": false})).send().await.unwrap()).await;
    assert_eq!((s, b["error"].as_str()), (429, Some("rate_limited")), "{b}");
    assert_eq!(metric(&app.metrics().await, "scanlogin_limits_hit_total", &["kind=\"qr_reserved\""]), 1.0);
    // The returning address (its login is stored behind the answer).
    let served = || async { (app.create_qr(json!({"image": false})).await.0 == 200).then_some(()) };
    eventually("the returning address gets a QR code", Duration::from_secs(5), served).await;
}

/// The deployment's daily SMS budget ends code sending whoever asks, and only codes it
/// let through count against it.
#[actix_web::test]
async fn the_daily_sms_budget_ends_code_sending_for_everyone() {
    let app = spawn_app_with(|s| {
        s.limits.sms_per_day = 2;
        s.limits.sms_per_ip_per_day = 1;
        s.server.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await;
    let sms = "/api/v1/login/sms-code";
    let (a, b, c) = (not_reg(&app, "o_1").await, not_reg(&app, "o_2").await, not_reg(&app, "o_3").await);
    assert_eq!(post_from(&app, sms, "192.0.2.1", &json!({"uuid": a, "phone": "13700137001"})).await.0, 200);
    // Refused for its own client (over its address's cap): spends none of the budget.
    assert_eq!(post_from(&app, sms, "192.0.2.1", &json!({"uuid": b, "phone": "13700137002"})).await.0, 429);
    assert_eq!(post_from(&app, sms, "192.0.2.2", &json!({"uuid": b, "phone": "13700137002"})).await.0, 200);
    let (s, body) = post_from(&app, sms, "192.0.2.3", &json!({"uuid": c, "phone": "13700137003"})).await;
    assert_eq!((s, body["error"].as_str()), (429, Some("rate_limited")), "{body}");
    let m = app.metrics().await;
    assert_eq!(metric(&m, "scanlogin_limits_hit_total", &["kind=\"sms_per_day\""]), 1.0);
    assert_eq!(metric(&m, "scanlogin_sms_budget_used", &[]), 2.0, "{m}");
    assert_eq!(metric(&m, "scanlogin_sms_budget_limit", &[]), 2.0);
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

/// Two single nodes on one PostgreSQL database (no cluster mode, no Redis): neither is
/// its database's only writer, so a logout on one holds on the other.
#[actix_web::test]
async fn a_logout_on_one_node_holds_on_another_sharing_its_database() {
    let db = crate::helpers::scratch_postgres().await;
    let a = crate::helpers::spawn_app_on(Some(&db), |_| {}).await;
    let b = crate::helpers::spawn_app_on(Some(&db), |_| {}).await;
    let token = a.register("o_two_nodes", "13800138000").await;
    assert_eq!(b.me(&token).await.0, 200);
    assert_eq!(a.logout(&token).await, 204);
    assert_eq!(b.me(&token).await.0, 401, "the logout on the other node holds here");
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

/// A server on a private Redis, allowing 3 QR codes a minute per address.
async fn qr_limited_app_on_redis() -> (RedisServer, TestApp) {
    let redis = RedisServer::start();
    let app = spawn_app_with(|s| {
        s.storage.snapshots = scanlogin::config::SnapshotBackend::Redis(redis.url());
        s.limits.qr_per_ip_per_minute = 3;
    })
    .await;
    (redis, app)
}

#[actix_web::test]
async fn limits_stay_on_while_redis_is_frozen() {
    let (redis, app) = qr_limited_app_on_redis().await;
    redis.pause();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(app.create_qr(json!({"image": false})).await.0);
    }
    redis.resume();
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429], "node-local limits while Redis does not answer");
}

/// The QR limits counted in Redis (one script for an address's limits): the fourth code
/// in a minute is refused with the rest of the minute as Retry-After, and Redis holds
/// the count every node would see.
#[actix_web::test]
async fn qr_limits_are_counted_in_redis_with_the_window_left_as_retry_after() {
    let (redis, app) = qr_limited_app_on_redis().await;
    let mut statuses = Vec::new();
    let mut retry = None;
    for _ in 0..5 {
        let r = app.http.post(app.url("/api/v1/login/qrcode")).json(&json!({"image": false})).send().await.unwrap();
        if r.status() == 429 {
            retry = r.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        }
        statuses.push(parts(r).await.0);
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    assert!(retry.is_some_and(|s| (1..=60).contains(&s)), "Retry-After is what is left of the minute: {retry:?}");
    let keys = redis.cli(&["--scan", "--pattern", "sl:limit:*qr_per_ip:*"]).unwrap_or_default();
    assert_eq!(keys.lines().count(), 1, "the per-minute count lives in Redis: {keys}");
    let n = redis.cli(&["GET", keys.trim()]).unwrap_or_default();
    assert_eq!(n.trim(), "5", "every request counts, the refused ones too (as one hit after another would)");
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
    // Without code mode's fallback, which would answer 45009 with a code instead.
    let app = spawn_app_with(|s| s.wechat.apps[0].code_fallback = false).await;
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
}

/// Degraded mode with nowhere to store a consumed state (Redis frozen, and the user
/// database's fallback table gone): `bind-phone` binds the phone but withholds the token
/// (`503`, `Retry-After: 1`); the attempt is in `reg`, so a second bind is `wrong_state`,
/// and once a store takes it the page's next status poll gets the token.
#[actix_web::test]
async fn a_bind_answered_503_in_degraded_mode_leaves_the_token_to_the_next_poll() {
    let redis = RedisServer::start();
    let app = spawn_app_with(|s| s.storage.snapshots = scanlogin::config::SnapshotBackend::Redis(redis.url())).await;
    let uuid = not_reg(&app, "o_degraded").await;
    let phone = "13800138066";
    let code = app.send_code(&uuid, phone).await;
    redis.pause();
    let pool = &app.state.login.users().db().pool;
    sqlx::query("DROP TABLE attempt_snapshots").execute(pool).await.unwrap();
    let down = || async {
        let (s, b) = app.get("/readyz").await;
        (s == 503 && b["failing"].as_array().is_some_and(|f| f.iter().any(|x| x == "redis"))).then_some(())
    };
    // Any write to the frozen Redis marks it down; a poll's answer does not wait for it.
    app.new_login().await;
    eventually("/readyz names redis", Duration::from_secs(10), down).await;
    let r = app.post_json("/api/v1/login/bind-phone", &json!({"uuid": uuid, "phone": phone, "code": code})).await;
    assert_eq!(r.headers().get("retry-after").map(HeaderValue::as_bytes), Some(&b"1"[..]));
    let (s, b) = parts(r).await;
    assert_eq!((s, b["error"].as_str()), (503, Some("overloaded")), "{b}");
    let (s, b) = app.bind(&uuid, phone, &code).await;
    assert_eq!((s, b["error"].as_str()), (409, Some("wrong_state")), "the phone is bound: {b}");
    redis.resume();
    let owed = || async { app.status(&uuid).await.1["token"].as_str().map(str::to_string) };
    let token = eventually("the owed token is handed out", Duration::from_secs(10), owed).await;
    assert_eq!(app.me(&token).await.0, 200);
}
