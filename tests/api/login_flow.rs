//! The login flow end to end: new user via phone bind, returning user via scan,
//! long polling, expiry, token handed out once.

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::json;

use crate::client::{delivered, metric, ticket_of};
use crate::helpers::{spawn_app, spawn_app_with};

#[actix_web::test]
async fn new_user_binds_phone_and_logs_in() {
    let app = spawn_app().await;
    let (uuid, ticket) = app.new_login().await;
    let (s, b) = app.status(&uuid).await;
    assert_eq!((s, b["status"].as_u64(), b["state"].as_str()), (200, Some(2), Some("loop")));
    assert!(b["expires_in"].as_u64().unwrap() > 290);

    let (s, reply) = app.scan(&ticket, "o_new_user", false).await;
    assert_eq!(s, 200, "{reply}");
    assert!(reply["reply"]["content"].as_str().unwrap().contains("绑定手机号"), "{reply}");

    let (_, b) = app.status(&uuid).await;
    assert_eq!((b["status"].as_u64(), b["state"].as_str()), (Some(4), Some("not_reg")));

    let (s, b) = app.sms_code(&uuid, "+86 138-0013-8000").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["resend_after"], 60);
    assert!(b["expires_in"].as_u64().unwrap() <= 300);
    let code = app.last_code("13800138000").await;

    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (s, b) = app.bind(&uuid, "13800138000", wrong).await;
    assert_eq!((s, b["error"].as_str(), b["attempts_left"].as_u64()), (400, Some("invalid_code"), Some(4)));

    let (s, b) = app.bind(&uuid, "13800138000", &code).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        (b["status"].as_u64(), b["state"].as_str(), b["token_type"].as_str()),
        (Some(3), Some("reg"), Some("Bearer"))
    );
    assert_eq!(b["token_expires_in"], 7200);
    assert_eq!(b["user"]["phone"], "138****8000");
    let token = b["token"].as_str().unwrap();

    let (s, me) = app.me(token).await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["id"], b["user"]["id"]);
    assert_eq!(me["phone"], "138****8000");
    assert!(me["created_at"].as_str().unwrap().ends_with('Z'));

    // The attempt is over: the token never comes out again.
    let (_, b) = app.status(&uuid).await;
    assert_eq!((b["status"].as_u64(), b["state"].as_str()), (Some(1), Some("expired")));
    assert!(b.get("token").is_none());
    assert_eq!(app.bind(&uuid, "13800138000", &code).await.0, 410);

    assert_eq!(app.logout(token).await, 204);
    assert_eq!(app.me(token).await.0, 401);
}

#[actix_web::test]
async fn returning_user_logs_in_by_scan_and_gets_the_token_once() {
    let app = spawn_app().await;
    app.register("o_back", "13900139000").await;
    let (uuid, ticket) = app.new_login().await;
    let (s, reply) = app.scan(&ticket, "o_back", true).await;
    assert_eq!(s, 200);
    assert!(reply["reply"]["content"].as_str().unwrap().contains("登录成功"), "{reply}");
    // A WeChat retry or second tap changes nothing.
    delivered(app.scan(&ticket, "o_back", true).await);

    let (_, b) = app.status(&uuid).await;
    assert_eq!((b["status"].as_u64(), b["state"].as_str()), (Some(3), Some("reg")));
    assert_eq!(b["user"]["phone"], "139****9000");
    let token = b["token"].as_str().expect("token").to_string();
    assert_eq!(app.me(&token).await.0, 200);
    let (_, again) = app.status(&uuid).await;
    assert_eq!(again["state"], "expired");
    assert!(again.get("token").is_none());
    let m = app.metrics().await;
    assert_eq!(metric(&m, "scanlogin_logins_total", &["how=\"scan\""]), 1.0);
    assert_eq!(metric(&m, "scanlogin_logins_total", &["how=\"bind\""]), 1.0);
}

#[actix_web::test]
async fn concurrent_polls_share_one_token() {
    let app = spawn_app().await;
    app.register("o_twice", "13700137000").await;
    let (uuid, ticket) = app.new_login().await;
    let polls: Vec<_> = (0..4).map(|_| app.status_wait(&uuid, 10)).collect();
    let scan = async {
        app.until_held(4).await;
        app.scan(&ticket, "o_twice", true).await
    };
    let (answers, scanned) = futures_util::future::join(futures_util::future::join_all(polls), scan).await;
    delivered(scanned);
    let tokens = answers.iter().filter(|(_, b)| b.get("token").is_some()).count();
    assert_eq!(tokens, 1, "{answers:?}");
    assert!(answers.iter().all(|(s, b)| *s == 200 && (b["state"] == "reg" || b["state"] == "expired")), "{answers:?}");
}

#[actix_web::test]
async fn long_poll_is_woken_by_a_scan() {
    let app = spawn_app().await;
    let (uuid, ticket) = app.new_login().await;
    let start = Instant::now();
    let poll = app.status_wait(&uuid, 20);
    let scan = async {
        app.until_held(1).await;
        app.scan(&ticket, "o_waiter", false).await
    };
    let ((s, b), scanned) = futures_util::future::join(poll, scan).await;
    delivered(scanned);
    assert_eq!((s, b["state"].as_str()), (200, Some("not_reg")));
    assert!(start.elapsed() < Duration::from_secs(5), "woken, not timed out: {:?}", start.elapsed());
}

#[actix_web::test]
async fn long_poll_times_out_in_loop_and_wait_is_clamped() {
    let app = spawn_app_with(|s| s.login.long_poll_max_secs = 1).await;
    let (uuid, _) = app.new_login().await;
    let start = Instant::now();
    // wait=30 is clamped to long_poll_max_secs = 1.
    let (s, b) = app.status_wait(&uuid, 30).await;
    assert_eq!((s, b["state"].as_str()), (200, Some("loop")));
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(5), "{took:?}");
    assert!(metric(&app.metrics().await, "scanlogin_polls_total", &["kind=\"long\""]) >= 1.0);
}

#[actix_web::test]
async fn an_attempt_expires_end_to_end() {
    // A real process is timed here, so the TTL is short (1 s).
    let app = spawn_app_with(|s| s.login.qr_ttl_secs = 1).await;
    let (uuid, ticket) = app.new_login().await;
    let (s, b) = app.status(&uuid).await;
    assert_eq!((s, b["status"].as_u64()), (200, Some(2)), "still loop before the deadline: {b}");
    // A held poll is answered by the expiry itself, not by its own 5 s wait.
    let start = Instant::now();
    let (_, b) = app.status_wait(&uuid, 5).await;
    assert_eq!((b["status"].as_u64(), b["state"].as_str()), (Some(1), Some("expired")));
    assert!(start.elapsed() < Duration::from_secs(3), "{:?}", start.elapsed());
    // A scan of the expired code tells the person so and changes nothing.
    let (_, reply) = app.scan(&ticket, "o_late", false).await;
    let content = reply["reply"]["content"].as_str().map(str::to_string);
    // The sandbox itself drops expired tickets (400) or our server answers "expired".
    assert!(content.is_none_or(|c| c.contains("过期")), "{reply}");
    let m = app.metrics().await;
    assert_eq!(metric(&m, "scanlogin_attempts_finished_total", &["outcome=\"expired\""]), 1.0);
    assert_eq!(metric(&m, "scanlogin_live_attempts", &[]), 0.0);
}

#[actix_web::test]
async fn qr_answer_carries_a_real_picture() {
    let app = spawn_app().await;
    let (s, b) = app.create_qr(json!({})).await;
    assert_eq!(s, 200, "{b}");
    let uuid = b["uuid"].as_str().unwrap();
    assert!(uuid.len() >= 22 && uuid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    assert!(b["qr_content"].as_str().unwrap().starts_with("http://weixin.qq.com/q/"));
    assert_eq!(b["expires_in"], 300);
    let img = b["qr_image"].as_str().unwrap();
    let data = img.strip_prefix("data:image/png;base64,").expect("inline PNG");
    let png = base64::engine::general_purpose::STANDARD.decode(data).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // The same picture is served at qr_image_url (the ticket was encoded exactly once).
    let served = app.http.get(b["qr_image_url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(served.bytes().await.unwrap().as_ref(), png.as_slice());
    assert!(!ticket_of(&b).is_empty());
    // The poll uuid is not the scene: a scan of it does nothing.
    let (_, other) = app.create_qr(json!({"image": false, "scene_type": "tv"})).await;
    assert!(other.get("qr_image").is_none());
    assert_ne!(other["uuid"], b["uuid"]);
}

#[actix_web::test]
async fn the_cli_scans_through_the_sandbox() {
    let app = spawn_app().await;
    let (uuid, ticket) = app.new_login().await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_scanlogin"))
        .args(["sandbox", "scan", "--ticket", &ticket, "--openid", "o_cli", "--server", &app.server])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("http_status"));
    assert_eq!(app.status(&uuid).await.1["state"], "not_reg");
}

#[actix_web::test]
async fn an_empty_create_body_means_all_defaults() {
    let app = spawn_app().await;
    let r = app.http.post(app.url("/api/v1/login/qrcode")).send().await.unwrap();
    let (s, b) = crate::client::parts(r).await;
    assert_eq!(s, 200, "{b}");
    assert!(b["uuid"].is_string() && b["qr_content"].is_string(), "{b}");
    assert!(b["qr_image"].as_str().is_some_and(|i| i.starts_with("data:image/")), "image defaults to true: {b}");
    let m = app.metrics().await;
    let created = ["app=\"default\"", "scene_type=\"web\""];
    assert_eq!(metric(&m, "scanlogin_attempts_created_total", &created), 1.0, "the first app, scene type web: {m}");
}

#[actix_web::test]
async fn a_leaked_qr_code_or_scene_never_lets_anyone_poll() {
    let app = spawn_app().await;
    app.register("o_leak", "13800138077").await;
    let (s, qr) = app.create_qr(json!({"image": false})).await;
    assert_eq!(s, 200, "{qr}");
    let uuid = qr["uuid"].as_str().unwrap().to_string();
    let ticket = ticket_of(&qr);
    let scene = app.scene_of(&ticket).await;
    let content = qr["qr_content"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
    delivered(app.scan(&ticket, "o_leak", true).await);
    // The attempt holds a token now; whatever the QR code or WeChat's push gives away
    // polls nothing: malformed (400) or an unknown uuid (expired), never the attempt.
    for leaked in [&scene, &ticket, &content, &qr["qr_content"].as_str().unwrap().to_string()] {
        let (s, b) = app.status(leaked).await;
        assert!(b.get("token").is_none() && b["state"] != "reg", "{leaked}: {b}");
        assert!(s == 400 || (s == 200 && b["state"] == "expired"), "{leaked}: {s} {b}");
    }
    let (_, b) = app.status(&uuid).await;
    assert!(b["token"].is_string(), "the token still waits for the page that holds the uuid: {b}");
}
