//! WeChat's side: URL verification, signature checks, XML hardening, safe mode.

use scanlogin::wechat::crypto;
use scanlogin::wechat::xml::event_xml;

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

const APP_ID: &str = "wxsandbox0000000001";
const TOKEN: &str = "sandbox-token";

fn signed_query(token: &str) -> Vec<(&'static str, String)> {
    let (ts, nonce) = ("1714037059".to_string(), "486452656".to_string());
    vec![("signature", crypto::sign(&[token, &ts, &nonce])), ("timestamp", ts), ("nonce", nonce)]
}

/// POSTs `body` to the default app's callback, signed with `token`.
async fn push(app: &TestApp, token: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
    let url = app.url(&format!("/wechat/{APP_ID}/callback"));
    app.http.post(url).query(&signed_query(token)).body(body).send().await.unwrap()
}

#[actix_web::test]
async fn url_verification_echoes_exactly() {
    let app = spawn_app().await;
    let url = app.url(&format!("/wechat/{APP_ID}/callback"));
    let mut q = signed_query(TOKEN);
    q.push(("echostr", "5927782489442352469".into()));
    let r = app.http.get(&url).query(&q).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "5927782489442352469");
    let mut bad = signed_query("wrong-token");
    bad.push(("echostr", "x".into()));
    assert_eq!(app.http.get(&url).query(&bad).send().await.unwrap().status(), 401);
    let unknown = app.http.get(app.url("/wechat/wxnope/callback")).query(&q).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
}

#[actix_web::test]
async fn forged_push_is_401_and_changes_nothing() {
    let app = spawn_app().await;
    let (uuid, _ticket) = app.new_login().await;
    // Learn the scene the way only WeChat could: not possible from outside, so forge
    // with a guessed scene and a wrong token; both must fail without effect.
    let body = event_xml("gh_x", "o_forger", 1, "subscribe", Some("qrscene_sl_guess"), None);
    let url = app.url(&format!("/wechat/{APP_ID}/callback"));
    let r = push(&app, "not-the-token", body.clone()).await;
    assert_eq!(r.status(), 401);
    let r = app.http.post(&url).body(body).send().await.unwrap();
    assert_eq!(r.status(), 401, "no signature at all");
    assert_eq!(app.status(&uuid).await.1["state"], "loop");
    let m = app.metrics().await;
    assert!(crate::client::metric(&m, "scanlogin_callbacks_total", &["result=\"bad_signature\""]) >= 2.0);
}

#[actix_web::test]
async fn signed_push_for_an_unknown_scene_answers_expired_text() {
    let app = spawn_app().await;
    let body = event_xml("gh_x", "o1", 1, "SCAN", Some("sl_unknown"), None);
    let r = push(&app, TOKEN, body).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("<ToUserName><![CDATA[o1]]></ToUserName>") && text.contains("过期"), "{text}");
    // A plain follow with no scene is acknowledged with `success`.
    let body = event_xml("gh_x", "o1", 2, "subscribe", None, None);
    let r = push(&app, TOKEN, body).await;
    assert_eq!(r.text().await.unwrap(), "success");
}

/// A second person scanning a code someone else already scanned is told it has expired,
/// not to bind a phone on a page that is not theirs; the first scanner keeps it.
#[actix_web::test]
async fn a_second_scanner_of_one_code_is_told_it_expired() {
    let app = spawn_app().await;
    let (uuid, ticket) = app.new_login().await;
    let (_, first) = app.scan(&ticket, "o_first", false).await;
    assert!(first["reply"]["content"].as_str().is_some_and(|c| c.contains("bind")), "{first}");
    let (_, second) = app.scan(&ticket, "o_second", false).await;
    assert!(second["reply"]["content"].as_str().is_some_and(|c| c.contains("expired")), "{second}");
    // The owner scanning again (a second tap) is still the owner.
    let (_, again) = app.scan(&ticket, "o_first", false).await;
    assert!(again["reply"]["content"].as_str().is_some_and(|c| c.contains("bind")), "{again}");
    assert_eq!(app.status(&uuid).await.1["state"], "not_reg");
}

#[actix_web::test]
async fn dtd_is_400_and_huge_body_is_413() {
    let app = spawn_app().await;
    let xxe = "<?xml version=\"1.0\"?><!DOCTYPE xml [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><xml><ToUserName>a</ToUserName><FromUserName>&e;</FromUserName></xml>";
    let r = push(&app, TOKEN, xxe).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "invalid_request");
    let huge = format!("<xml><Content>{}</Content></xml>", "a".repeat(70 * 1024));
    let r = push(&app, TOKEN, huge).await;
    assert_eq!(r.status(), 413);
}

#[actix_web::test]
async fn safe_mode_login_through_the_sandbox_and_plaintext_refused() {
    let key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    let app = spawn_app_with(|s| s.wechat.apps[0].encoding_aes_key = key.into()).await;
    let (uuid, ticket) = app.new_login().await;
    let (s, reply) = app.scan(&ticket, "o_safe", false).await;
    assert_eq!(s, 200, "{reply}");
    assert_eq!(reply["encrypted"], true, "{reply}");
    assert!(reply["reply"]["content"].as_str().unwrap().contains("绑定手机号"), "{reply}");
    assert_eq!(app.status(&uuid).await.1["state"], "not_reg");

    // The same event in plaintext, correctly signed, must not get through.
    let (uuid2, _) = app.new_login().await;
    let body = event_xml("gh_x", "o_bypass", 1, "subscribe", Some("qrscene_whatever"), None);
    let r = push(&app, TOKEN, body).await;
    assert_eq!(r.status(), 401);
    assert_eq!(app.status(&uuid2).await.1["state"], "loop");
}
