//! Abuse controls through real HTTP: per-address and per-phone limits, trusted proxies,
//! held-poll shares, phone locks, CORS, the login audit, and logs free of secrets.

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;

use crate::client::{delivered, eventually, metric, parts};
use crate::helpers::spawn_app_with;

#[actix_web::test]
async fn the_eleventh_qr_request_in_a_minute_is_429() {
    let app = spawn_app_with(|s| s.limits.qr_per_ip_per_minute = 10).await;
    for i in 0..10 {
        let (s, b) = app.create_qr(json!({"image": false})).await;
        assert_eq!(s, 200, "request {i}: {b}");
    }
    let r = app.post_json("/api/v1/login/qrcode", &json!({"image": false})).await;
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let (s, b) = parts(r).await;
    assert_eq!((s, b["error"].as_str()), (429, Some("rate_limited")));
    // Past the limit a malformed request is refused by the limit, not looked at.
    assert_eq!(app.create_qr(json!({"scene_type": "BAD"})).await.0, 429);
    assert_eq!(metric(&app.metrics().await, "scanlogin_limits_hit_total", &["kind=\"qr_per_ip\""]), 2.0);
}

#[actix_web::test]
async fn malformed_qr_requests_count_against_the_limit_too() {
    let app = spawn_app_with(|s| s.limits.qr_per_ip_per_minute = 3).await;
    for i in 0..3 {
        let (s, b) = app.create_qr(json!({"scene_type": "BAD"})).await;
        assert_eq!((s, b["error"].as_str()), (400, Some("invalid_request")), "request {i}: {b}");
    }
    let (s, b) = app.create_qr(json!({"image": false})).await;
    assert_eq!((s, b["error"].as_str()), (429, Some("rate_limited")), "three malformed requests spent the minute: {b}");
}

#[actix_web::test]
async fn trusted_proxy_forwards_the_client_address_and_others_cannot() {
    let app = spawn_app_with(|s| {
        s.limits.qr_per_ip_per_minute = 2;
        s.server.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await;
    let qr = |ip: &'static str| {
        app.http
            .post(app.url("/api/v1/login/qrcode"))
            .header("x-forwarded-for", ip)
            .json(&json!({"image": false}))
            .send()
    };
    assert_eq!(qr("203.0.113.1").await.unwrap().status(), 200);
    assert_eq!(qr("203.0.113.1").await.unwrap().status(), 200);
    assert_eq!(qr("203.0.113.1").await.unwrap().status(), 429, "the forwarded address is limited");
    assert_eq!(qr("203.0.113.2").await.unwrap().status(), 200, "another client behind the proxy is not");

    // From an untrusted peer the header is ignored: the peer itself is limited.
    let app = spawn_app_with(|s| s.limits.qr_per_ip_per_minute = 2).await;
    for (i, ip) in ["198.51.100.1", "198.51.100.2", "198.51.100.3"].iter().enumerate() {
        let r = app
            .http
            .post(app.url("/api/v1/login/qrcode"))
            .header("x-forwarded-for", *ip)
            .json(&json!({"image": false}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), if i < 2 { 200 } else { 429 });
    }
}

#[actix_web::test]
async fn a_second_code_to_the_same_phone_within_a_minute_is_429() {
    let app = spawn_app_with(|_| {}).await;
    let (a, ta) = app.new_login().await;
    let (b, tb) = app.new_login().await;
    delivered(app.scan(&ta, "o_a", false).await);
    delivered(app.scan(&tb, "o_b", false).await);
    assert_eq!(app.sms_code(&a, "13800138000").await.0, 200);
    let (s, body) = app.sms_code(&b, "13800138000").await;
    assert_eq!((s, body["error"].as_str()), (429, Some("rate_limited")), "{body}");
    // The refused request left no code behind on attempt b: another phone works there.
    assert_eq!(app.sms_code(&b, "13900139000").await.0, 200);
}

#[actix_web::test]
async fn codes_per_address_per_day_are_capped() {
    let app = spawn_app_with(|s| s.limits.sms_per_ip_per_day = 1).await;
    let (a, ta) = app.new_login().await;
    delivered(app.scan(&ta, "o_ip", false).await);
    assert_eq!(app.sms_code(&a, "13800138000").await.0, 200);
    let (b, tb) = app.new_login().await;
    delivered(app.scan(&tb, "o_ip2", false).await);
    let (s, body) = app.sms_code(&b, "13900139000").await;
    assert_eq!((s, body["error"].as_str()), (429, Some("rate_limited")), "{body}");
}

#[actix_web::test]
async fn held_polls_per_address_are_capped() {
    let app = spawn_app_with(|s| s.limits.long_polls_per_ip = 1).await;
    let (uuid, _) = app.new_login().await;
    let first = app.status_wait(&uuid, 2);
    let second = async {
        app.until_held(1).await;
        let start = std::time::Instant::now();
        let r = app.status_wait(&uuid, 2).await;
        (r, start.elapsed())
    };
    let (_, ((s, b), took)) = futures_util::future::join(first, second).await;
    assert_eq!((s, b["state"].as_str()), (200, Some("loop")));
    assert!(took < Duration::from_millis(1500), "answered at once, not held: {took:?}");
    assert!(metric(&app.metrics().await, "scanlogin_limits_hit_total", &["kind=\"long_polls_per_ip\""]) >= 1.0);
}

#[actix_web::test]
async fn cors_allows_only_listed_origins() {
    let app = spawn_app_with(|s| s.server.cors_origins = vec!["https://app.example.com".into()]).await;
    let pre = |origin: &'static str| {
        app.http
            .request(reqwest::Method::OPTIONS, app.url("/api/v1/login/qrcode"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let ok = pre("https://app.example.com").await.unwrap();
    assert_eq!(ok.headers().get("access-control-allow-origin").unwrap(), "https://app.example.com");
    assert!(ok.headers().get("access-control-allow-credentials").is_none());
    let evil = pre("https://evil.example.net").await.unwrap();
    assert!(evil.headers().get("access-control-allow-origin").is_none());
}

#[actix_web::test]
async fn me_shows_the_login_audit() {
    let app = spawn_app_with(|_| {}).await;
    let token = app.register("o_audit", "13800138000").await;
    let (uuid, ticket) = app.new_login().await;
    delivered(app.scan(&ticket, "o_audit", true).await);
    let r = app
        .http
        .get(app.url("/api/v1/login/status"))
        .query(&[("uuid", &uuid)])
        .header("user-agent", "TV/1.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store");
    let (_, b) = parts(r).await;
    assert!(b["token"].is_string());
    let (s, me) = app.me(&token).await;
    assert_eq!(s, 200);
    let logins = me["recent_logins"].as_array().unwrap();
    assert_eq!(logins.len(), 2, "{me}");
    assert_eq!((logins[0]["how"].as_str(), logins[0]["user_agent"].as_str()), (Some("scan"), Some("TV/1.0")));
    assert_eq!(logins[1]["how"], "bind");
    assert_eq!(logins[0]["ip"], "127.0.0.1");
}

/// Runs the real binary with debug logging through a whole safe-mode login and greps
/// everything it logged for each secret.
#[actix_web::test]
async fn the_log_of_a_full_login_holds_no_secret() {
    scanlogin::install_crypto();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let (app_secret, aes_key, token_secret) =
        ("s3cr3t-app-secret-x", "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR", "jwt-signing-secret-y");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_scanlogin"))
        .env("RUST_LOG", "debug")
        .env("SCANLOGIN__SERVER__BIND", format!("127.0.0.1:{port}"))
        .env("SCANLOGIN__SERVER__PUBLIC_URL", format!("http://127.0.0.1:{port}"))
        .env("SCANLOGIN__STORAGE__DATABASE_URL", format!("sqlite://{}/l.db?mode=rwc", dir.path().display()))
        .env("SCANLOGIN__WECHAT__APPS__0__APP_SECRET", app_secret)
        .env("SCANLOGIN__WECHAT__APPS__0__ENCODING_AES_KEY", aes_key)
        .env("SCANLOGIN__TOKEN__SECRET", token_secret)
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let up = || async { http.get(format!("{base}/healthz")).send().await.ok().map(drop) };
    eventually("the server answers /healthz", Duration::from_secs(10), up).await;
    let api = crate::client::Api::at(&base, &base);
    let (s, qr) = api.create_qr(json!({})).await;
    assert_eq!(s, 200, "{qr}");
    let uuid = qr["uuid"].as_str().unwrap().to_string();
    delivered(api.scan(&crate::client::ticket_of(&qr), "o_logs", false).await);
    let phone = "13812345678";
    let code = api.send_code(&uuid, phone).await;
    let (s, bound) = api.bind(&uuid, phone, &code).await;
    assert_eq!(s, 200, "{bound}");
    let token = bound["token"].as_str().expect("logged in").to_string();
    assert_eq!(api.me(&token).await.0, 200);
    child.start_kill().unwrap();
    let out = child.wait_with_output().await.unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(log.contains("sms code sent"), "the log was captured: {log}");
    // The code itself, wherever it stands: not next to other digits (a digit run of a
    // longer number) nor after a `.` (a timestamp's microseconds may be any six digits).
    let alone = |at: usize| {
        let before = log[..at].chars().next_back();
        let after = log[at + code.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_digit() || c == '.') && !after.is_some_and(|c| c.is_ascii_digit())
    };
    assert!(!log.match_indices(code.as_str()).any(|(at, _)| alone(at)), "the log contains the sms code");
    for (what, secret) in [
        ("token", token.as_str()),
        ("app secret", app_secret),
        ("AES key", aes_key),
        ("token secret", token_secret),
        ("full phone", phone),
        ("poll uuid", uuid.as_str()),
    ] {
        assert!(!log.contains(secret), "the log contains the {what}");
    }
    assert!(log.contains("138****5678"), "phones appear masked");
}
