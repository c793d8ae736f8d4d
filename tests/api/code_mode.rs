//! Code mode (docs/api.md "Accounts that cannot make QR codes"), end to end over HTTP:
//! the sandbox plays the person sending the page's code to the account as a text message.

use serde_json::{Value, json};

use crate::client::{Api, delivered, metric, parts};
use crate::helpers::{TestApp, spawn_app_with};
use scanlogin::config::AppKind;

async fn subscription() -> TestApp {
    spawn_app_with(|s| {
        s.wechat.apps[0].kind = AppKind::Subscription;
        s.wechat.apps[0].account_name = "Demo 订阅号".into();
        s.wechat.apps[0].account_qr_url = "https://example.com/follow.jpg".into();
    })
    .await
}

/// A code mode login: (uuid, code).
async fn code_login(api: &Api) -> (String, String) {
    let (status, body) = api.create_qr(json!({"image": false})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["mode"], "code", "{body}");
    assert!(body.get("qr_content").is_none() && body.get("qr_image_url").is_none(), "no qr_* fields: {body}");
    let code = body["code"].as_str().unwrap().to_string();
    assert!(code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()), "{code}");
    (body["uuid"].as_str().unwrap().to_string(), code)
}

/// The person `openid` sends `text` to the account; the sandbox's answer.
async fn send(api: &Api, openid: &str, text: &str, msg_id: Option<u64>) -> Value {
    let mut body = json!({"openid": openid, "text": text});
    if let Some(id) = msg_id {
        body["msg_id"] = json!(id);
    }
    let r = api.http.post(format!("{}/_sandbox/message", api.wechat)).json(&body).send().await.unwrap();
    let answer = parts(r).await;
    let out = answer.1.clone();
    delivered(answer);
    out
}

fn reply(sent: &Value) -> String {
    sent["reply"]["content"].as_str().unwrap_or_else(|| panic!("a text reply: {sent}")).to_string()
}

async fn state(api: &Api, uuid: &str) -> String {
    api.status(uuid).await.1["state"].as_str().unwrap().to_string()
}

#[actix_web::test]
async fn a_subscription_account_logs_a_new_follower_in_by_code_then_a_returning_one_at_once() {
    let app = subscription().await;
    let (status, body) = app.create_qr(json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(
        (body["account_name"].as_str(), body["account_qr_url"].as_str()),
        (Some("Demo 订阅号"), Some("https://example.com/follow.jpg"))
    );

    let (uuid, code) = code_login(&app).await;
    assert_eq!(state(&app, &uuid).await, "loop");
    // Typed with spaces and full-width digits: the same code.
    let wide: String = code.chars().map(|c| char::from_u32(c as u32 - '0' as u32 + '０' as u32).unwrap()).collect();
    let sent = send(&app, "o_code_new", &format!(" {} {}", &wide[..9], &wide[9..]), None).await;
    assert!(reply(&sent).contains("绑定手机号"), "asks for the phone: {sent}");
    assert_eq!(state(&app, &uuid).await, "not_reg");
    let sms = app.send_code(&uuid, "13800138011").await;
    let (s, b) = app.bind(&uuid, "13800138011", &sms).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(app.me(b["token"].as_str().unwrap()).await.0, 200);

    // The used code is dead: sending it again logs nobody in.
    let again = send(&app, "o_code_new", &code, None).await;
    assert!(reply(&again).contains("wrong or expired"), "{again}");

    let (uuid2, code2) = code_login(&app).await;
    let sent = send(&app, "o_code_new", &code2, None).await;
    assert!(reply(&sent).contains("Logged in"), "{sent}");
    let (_, b) = app.status(&uuid2).await;
    assert_eq!(b["state"], "reg", "{b}");
    assert!(b["token"].is_string());
}

#[actix_web::test]
async fn a_code_pushed_twice_by_wechat_makes_one_transition() {
    let app = subscription().await;
    let (uuid, code) = code_login(&app).await;
    let first = send(&app, "o_dup", &code, Some(777_000_111)).await;
    let second = send(&app, "o_dup", &code, Some(777_000_111)).await;
    assert_eq!(reply(&first), reply(&second), "the resend gets the first delivery's reply");
    assert_eq!(state(&app, &uuid).await, "not_reg");
    let m = app.metrics().await;
    assert_eq!(metric(&m, "scanlogin_transitions_total", &["from=\"loop\"", "to=\"not_reg\""]), 1.0, "one transition");
}

#[actix_web::test]
async fn wrong_codes_lock_their_sender_only_and_touch_nothing() {
    let app = subscription().await;
    let (uuid, code) = code_login(&app).await;
    let wrong = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);
    for _ in 0..10 {
        let r = send(&app, "o_guesser", &wrong, None).await;
        assert!(reply(&r).contains("wrong or expired"), "{r}");
    }
    assert_eq!(state(&app, &uuid).await, "loop", "a miss changes no attempt");
    let locked = send(&app, "o_guesser", &code, None).await;
    assert!(reply(&locked).contains("Too many wrong codes: try again in"), "even the right code is refused: {locked}");
    assert_eq!(state(&app, &uuid).await, "loop");
    let users = app.state.login.users();
    assert!(users.find_by_openid("wxsandbox0000000001", "o_guesser").await.unwrap().is_none(), "nothing created");
    // Texts that are not codes are not ours.
    assert_eq!(send(&app, "o_other", "hello", None).await["reply"], "success");
    let ok = send(&app, "o_other", &code, None).await;
    assert!(reply(&ok).contains("绑定手机号"), "another sender is not affected: {ok}");
    assert_eq!(state(&app, &uuid).await, "not_reg");
    let m = app.metrics().await;
    assert_eq!(metric(&m, "scanlogin_limits_hit_total", &["kind=\"codes_per_openid\""]), 1.0);
}

#[actix_web::test]
async fn a_service_account_refused_qr_codes_falls_back_to_code_mode_unless_told_not_to() {
    let app = spawn_app_with(|_| {}).await;
    for errcode in [48001, 45009] {
        let f = json!({"api": "qrcode_create", "errcode": errcode, "count": 1});
        assert_eq!(app.post("/_sandbox/faults", f).await.0, 200);
        let (uuid, code) = code_login(&app).await;
        let sent = send(&app, &format!("o_fb_{errcode}"), &code, None).await;
        assert!(reply(&sent).contains("绑定手机号"), "{sent}");
        let phone = format!("138{errcode:08}");
        let sms = app.send_code(&uuid, &phone).await;
        let (s, b) = app.bind(&uuid, &phone, &sms).await;
        assert_eq!(s, 200, "the login completes: {b}");
    }
    let m = app.metrics().await;
    for errcode in ["48001", "45009"] {
        let n = metric(&m, "scanlogin_code_fallbacks_total", &["app=\"default\"", &format!("errcode=\"{errcode}\"")]);
        assert_eq!(n, 1.0, "{errcode}");
    }
    // Without a fault: a QR code as before.
    assert_eq!(app.create_qr(json!({"image": false})).await.1["mode"], "qr");

    let strict = spawn_app_with(|s| s.wechat.apps[0].code_fallback = false).await;
    let f = json!({"api": "qrcode_create", "errcode": 48001, "count": 1});
    assert_eq!(strict.post("/_sandbox/faults", f).await.0, 200);
    let (status, body) = strict.create_qr(json!({"image": false})).await;
    assert_eq!((status, body["error"].as_str()), (502, Some("wechat_error")), "{body}");
}

#[actix_web::test]
async fn the_cli_sends_the_code_through_the_sandbox() {
    let app = subscription().await;
    let (uuid, code) = code_login(&app).await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_scanlogin"))
        .args(["sandbox", "message", "--openid", "o_cli_code", "--text", &code, "--server", &app.server])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Please bind your phone"));
    assert_eq!(state(&app, &uuid).await, "not_reg");
}

#[actix_web::test]
async fn with_confirmation_a_code_waits_in_scanned_for_the_tap_on_the_phone() {
    let app = spawn_app_with(|s| {
        s.wechat.apps[0].kind = AppKind::Subscription;
        s.wechat.apps[0].confirm = scanlogin::config::ConfirmMode::Always;
    })
    .await;
    let (uuid, code) = code_login(&app).await;
    let text = reply(&send(&app, "o_code_confirm", &code, None).await);
    assert_eq!(state(&app, &uuid).await, "scanned");
    let at = text.find("/confirm/").unwrap_or_else(|| panic!("a confirm link: {text}"));
    let link = text[at..].split_whitespace().next().unwrap().to_string();
    let r = app.http.post(app.url(&link)).header("Origin", app.server.as_str()).form(&[("decision", "confirm")]);
    assert_eq!(r.send().await.unwrap().status(), 200);
    assert_eq!(state(&app, &uuid).await, "not_reg", "the transition the code would have made");
}
