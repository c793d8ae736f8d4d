//! Every docs/api.md error this service can produce, each through real HTTP, with the
//! `{"error", "message"}` shape and the right status (and `Retry-After` on 429/503).

use serde_json::{Value, json};

use crate::client::{delivered, parts, wrong_code};
use crate::helpers::{spawn_app, spawn_app_with};

fn assert_error(got: &(u16, Value), status: u16, code: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["error"], code, "{}", got.1);
    assert!(got.1["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", got.1);
}

#[actix_web::test]
async fn malformed_requests_are_invalid_request() {
    let app = spawn_app().await;
    assert_error(&app.status("short").await, 400, "invalid_request");
    assert_error(&app.status(&format!("{}!", "a".repeat(30))).await, 400, "invalid_request");
    let (uuid, _) = app.new_login().await;
    let bad_wait = parts(
        app.http
            .get(app.url("/api/v1/login/status"))
            .query(&[("uuid", uuid.as_str()), ("wait", "soon")])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(&bad_wait, 400, "invalid_request");
    let no_uuid = parts(app.http.get(app.url("/api/v1/login/status")).send().await.unwrap()).await;
    assert_error(&no_uuid, 400, "invalid_request");
    let bad_json = parts(app.http.post(app.url("/api/v1/login/qrcode")).body("{not json").send().await.unwrap()).await;
    assert_error(&bad_json, 400, "invalid_request");
    assert_error(&app.create_qr(json!({"scene_type": "Bad Type"})).await, 400, "invalid_request");
    // Unknown fields are ignored.
    assert_eq!(app.create_qr(json!({"image": false, "future_field": 1})).await.0, 200);
    assert_error(&app.bind(&uuid, "13800138000", "12ab").await, 400, "invalid_request");
    // An unknown (well-formed) uuid is simply expired.
    let (s, b) = app.status(&"A".repeat(43)).await;
    assert_eq!((s, b["state"].as_str(), b["status"].as_u64()), (200, Some("expired"), Some(1)));
}

#[actix_web::test]
async fn phone_and_state_errors() {
    let app = spawn_app().await;
    let (uuid, ticket) = app.new_login().await;
    assert_error(&app.sms_code(&uuid, "12345").await, 400, "invalid_phone");
    assert_error(&app.sms_code(&uuid, "+1 415 555 0100").await, 400, "invalid_phone");
    // Before a scan there is nothing to bind.
    assert_error(&app.sms_code(&uuid, "13800138000").await, 409, "wrong_state");
    assert_error(&app.bind(&uuid, "13800138000", "123456").await, 409, "wrong_state");
    // Unknown or ended attempts are gone.
    assert_error(&app.sms_code(&"B".repeat(43), "13800138000").await, 410, "expired");
    assert_error(&app.bind(&"B".repeat(43), "13800138000", "123456").await, 410, "expired");

    delivered(app.scan(&ticket, "o_err", false).await);
    assert_eq!(app.sms_code(&uuid, "13800138000").await.0, 200);
    // The same attempt asking again within resend_after.
    let again = app.post_json("/api/v1/login/sms-code", &json!({"uuid": uuid, "phone": "13800138000"})).await;
    let retry_after: u64 = again.headers().get("retry-after").expect("Retry-After").to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after));
    assert_error(&parts(again).await, 429, "rate_limited");
}

#[actix_web::test]
async fn five_wrong_codes_kill_the_code_and_other_phones_do_not_bind() {
    let app = spawn_app().await;
    let (uuid, ticket) = app.new_login().await;
    delivered(app.scan(&ticket, "o_guess", false).await);
    assert_eq!(app.sms_code(&uuid, "13800138000").await.0, 200);
    let code = app.last_code("13800138000").await;
    // The right code for another phone is a wrong code.
    let got = app.bind(&uuid, "13900139000", &code).await;
    assert_error(&got, 400, "invalid_code");
    assert_eq!(got.1["attempts_left"], 4);
    let wrong = wrong_code(&code);
    for left in (0..4).rev() {
        let got = app.bind(&uuid, "13800138000", wrong).await;
        assert_error(&got, 400, "invalid_code");
        assert_eq!(got.1["attempts_left"], left);
    }
    let dead = app.bind(&uuid, "13800138000", &code).await;
    assert_error(&dead, 400, "invalid_code");
    assert_eq!(dead.1["attempts_left"], 0);
}

#[actix_web::test]
async fn phone_taken_spends_no_code() {
    let app = spawn_app().await;
    // The owner's account exists already (bound earlier; no code to this phone now).
    app.state.login.users().bind("wxsandbox0000000001", "o_owner", "13800138000").await.unwrap();
    let (uuid, ticket) = app.new_login().await;
    delivered(app.scan(&ticket, "o_intruder", false).await);
    assert_eq!(app.sms_code(&uuid, "13800138000").await.0, 200);
    let code = app.last_code("13800138000").await;
    assert_error(&app.bind(&uuid, "13800138000", &code).await, 409, "phone_taken");
    // The code was not spent: a free phone still needs its own code, and a wrong
    // guess there still has the full count left.
    let got = app.bind(&uuid, "13900139000", wrong_code(&code)).await;
    assert_eq!(got.1["attempts_left"], 4, "{}", got.1);
}

#[actix_web::test]
async fn unauthorized_tokens() {
    let app = spawn_app().await;
    let none = parts(app.http.get(app.url("/api/v1/me")).send().await.unwrap()).await;
    assert_error(&none, 401, "unauthorized");
    assert_error(&app.me("garbage").await, 401, "unauthorized");
    let other_key = scanlogin::token::TokenIssuer::shared_secret(&scanlogin::config::TokenSettings {
        secret: "another".into(),
        ..Default::default()
    });
    let forged = other_key.issue("someone", scanlogin::wall::unix_secs()).token;
    assert_error(&app.me(&forged).await, 401, "unauthorized");
    let token = app.register("o_tok", "13600136000").await;
    let payload = token.split('.').nth(1).unwrap();
    assert_error(&app.me(&format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.")).await, 401, "unauthorized");
    assert_eq!(app.logout("garbage").await, 401);
}

#[actix_web::test]
async fn unknown_app_and_too_large_bodies() {
    let app = spawn_app().await;
    assert_error(&app.create_qr(json!({"app": "nope"})).await, 404, "unknown_app");
    let big = json!({"image": false, "pad": "x".repeat(5000)});
    assert_error(&app.create_qr(big).await, 413, "payload_too_large");
}

#[actix_web::test]
async fn live_attempt_cap_is_overloaded_with_retry_after() {
    let app = spawn_app_with(|s| s.limits.live_attempts_max = 1).await;
    app.new_login().await;
    let calls = app.wechat_calls("qrcode/create").await;
    let r = app.post_json("/api/v1/login/qrcode", &json!({"image": false})).await;
    // Every refusal of the engine answers so: a full engine, and a store that is up but
    // too slow to acknowledge (the engine's side of that: durability_tests.rs,
    // a_store_that_is_up_but_slow_gets_no_acknowledgement_ahead_of_it).
    assert_eq!(r.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    assert_error(&parts(r).await, 503, "overloaded");
    assert_eq!(app.wechat_calls("qrcode/create").await, calls, "a full engine spends no WeChat quota");
}

#[actix_web::test]
async fn wechat_failure_is_502_and_leaves_no_attempt() {
    // Without code mode's fallback, which would answer 45009 with a code instead.
    let app = spawn_app_with(|s| s.wechat.apps[0].code_fallback = false).await;
    let fault = app.post_json("/_sandbox/faults", &json!({"api": "qrcode_create", "errcode": 45009, "count": 1})).await;
    assert_eq!(fault.status(), 200);
    let got = app.create_qr(json!({"image": false})).await;
    assert_error(&got, 502, "wechat_error");
    assert!(got.1["message"].as_str().unwrap().contains("45009"), "{}", got.1);
    let fault = app.post_json("/_sandbox/faults", &json!({"api": "showqrcode", "http_status": 500, "count": 1})).await;
    assert_eq!(fault.status(), 200);
    assert_error(&app.create_qr(json!({})).await, 502, "wechat_error");
    let m = app.metrics().await;
    assert_eq!(crate::client::metric(&m, "scanlogin_live_attempts", &[]), 0.0);
    assert_eq!(crate::client::metric(&m, "scanlogin_attempts_finished_total", &["outcome=\"discarded\""]), 2.0);
    // Faults are used up: the next request works.
    assert_eq!(app.create_qr(json!({})).await.0, 200);
}

/// An app whose SMS codes go to the webhook at `url` (`timeout_ms`), and an attempt of
/// it scanned by a newcomer (in `not_reg`, ready for a code).
async fn scanned_with_sms_webhook(url: String, timeout_ms: u64) -> (crate::helpers::TestApp, String) {
    let app = spawn_app_with(|s| {
        s.sms.provider = scanlogin::config::SmsProvider::Webhook;
        s.sms.webhook_url = url;
        s.sms.webhook_timeout_ms = timeout_ms;
    })
    .await;
    let (uuid, ticket) = app.new_login().await;
    delivered(app.scan(&ticket, "o_sms", false).await);
    (app, uuid)
}

#[actix_web::test]
async fn sms_gateway_failure_is_502_and_forgets_the_code() {
    // A webhook to a port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}/send", dead.local_addr().unwrap().port());
    drop(dead);
    let (app, uuid) = scanned_with_sms_webhook(url, 500).await;
    assert_error(&app.sms_code(&uuid, "13800138000").await, 502, "sms_failed");
    // Not kept: the attempt puts no cooldown on a failed send (another phone is tried at
    // once; the per-phone limit still counted the first phone's request).
    assert_error(&app.sms_code(&uuid, "13900139000").await, 502, "sms_failed");
}

/// An SMS gateway on a free port that answers every request with `answer` (`None`: it
/// takes the request and never answers). Answers its URL.
async fn gateway(answer: Option<&'static str>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/send", listener.local_addr().unwrap());
    actix_web::rt::spawn(async move {
        let mut open = Vec::new();
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            match answer {
                Some(a) => drop(s.write_all(a.as_bytes()).await),
                None => open.push(s), // held open, unanswered
            }
        }
    });
    url
}

#[actix_web::test]
async fn an_sms_gateway_that_refuses_or_does_not_answer_is_sms_failed() {
    let refuses =
        gateway(Some("HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")).await;
    let silent = gateway(None).await;
    for (url, why) in [(refuses, "a non-2xx answer"), (silent, "no answer within webhook_timeout_ms")] {
        let (app, uuid) = scanned_with_sms_webhook(url, 300).await;
        let t = std::time::Instant::now();
        assert_error(&app.sms_code(&uuid, "13800138000").await, 502, "sms_failed");
        assert!(t.elapsed() < std::time::Duration::from_secs(3), "{why}: answered within the webhook's timeout");
        // Forgotten: no cooldown for the attempt (another phone is tried at once).
        assert_error(&app.sms_code(&uuid, "13900139000").await, 502, "sms_failed");
    }
}
