//! Confirm on the phone (docs/api.md "Confirm on the phone"), end to end over HTTP: the
//! sandbox plays the phone's scan, the test reads the passive reply like a person would,
//! follows its link and taps Confirm or Deny.

use serde_json::{Value, json};

use crate::client::{Api, delivered, parts, ticket_of};
use crate::helpers::{TestApp, spawn_app_with};
use scanlogin::config::ConfirmMode;

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

async fn confirming(ttl_secs: u64) -> TestApp {
    spawn_app_with(|s| {
        s.wechat.apps[0].confirm = ConfirmMode::Always;
        s.login.qr_ttl_secs = ttl_secs;
    })
    .await
}

/// A login asked for by a Firefox on Linux; returns (uuid, ticket of the QR code).
async fn login_from_firefox(api: &Api) -> (String, String) {
    let r = api.http.post(api.url("/api/v1/login/qrcode")).header("User-Agent", FIREFOX).json(&json!({"image": false}));
    let (status, body) = parts(r.send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    (body["uuid"].as_str().unwrap().to_string(), ticket_of(&body))
}

/// The scan's passive reply text.
fn reply_text(scan: &Value) -> String {
    scan["reply"]["content"].as_str().unwrap_or_else(|| panic!("a text reply: {scan}")).to_string()
}

/// The confirm link in a reply text, as a path (`/confirm/…`).
fn link_in(text: &str) -> String {
    let at = text.find("/confirm/").unwrap_or_else(|| panic!("no link in {text}"));
    text[at..].split_whitespace().next().unwrap().to_string()
}

/// Scans `qr` as `openid`, checks the reply names the requester, answers the link's path.
async fn scan_for_link(api: &Api, uuid: &str, qr: &str, openid: &str) -> String {
    let scan = api.scan(qr, openid, false).await;
    let text = reply_text(&scan.1);
    delivered(scan);
    for fact in ["127.0.0.1", "Firefox 128 on Linux", "(UTC+8)", &format!("{}/confirm/", api.server)] {
        assert!(text.contains(fact), "the reply lacks {fact}: {text}");
    }
    let (_, b) = api.status(uuid).await;
    assert_eq!((b["status"].as_u64(), b["state"].as_str()), (Some(5), Some("scanned")), "{b}");
    let link = link_in(&text);
    assert!(!b.to_string().contains(&link[9..]), "the ticket never appears in a status answer");
    link
}

async fn page(api: &Api, link: &str) -> (u16, String) {
    let r = api.http.get(api.url(link)).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn decide(api: &Api, link: &str, decision: &str) -> (u16, String) {
    let r = api
        .http
        .post(api.url(link))
        .header("Origin", api.server.as_str())
        .form(&[("decision", decision)])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[actix_web::test]
async fn a_new_user_confirms_binds_and_returns_to_confirm_and_get_a_token() {
    let app = confirming(300).await;
    let (uuid, qr) = login_from_firefox(&app).await;
    let link = scan_for_link(&app, &uuid, &qr, "o_confirm_new").await;
    let (status, html) = page(&app, &link).await;
    assert_eq!(status, 200, "{html}");
    for part in ["127.0.0.1", "Firefox 128 on Linux", "name=\"decision\" value=\"confirm\"", "value=\"deny\""] {
        assert!(html.contains(part), "the confirm page lacks {part}");
    }
    let (status, html) = decide(&app, &link, "confirm").await;
    assert_eq!(status, 200, "{html}");
    let (_, b) = app.status(&uuid).await;
    assert_eq!(b["state"], "not_reg", "{b}");
    let code = app.send_code(&uuid, "13800138055").await;
    let (status, b) = app.bind(&uuid, "13800138055", &code).await;
    assert_eq!((status, b["state"].as_str()), (200, Some("reg")), "{b}");
    assert_eq!(decide(&app, &link, "confirm").await.0, 410, "a ticket works once");
    assert_eq!(page(&app, &link).await.0, 410);

    // The same person again: the held poll is woken by the confirmation with a token.
    let (uuid, qr) = login_from_firefox(&app).await;
    let link = scan_for_link(&app, &uuid, &qr, "o_confirm_new").await;
    let held = {
        let api = Api::with_client(app.http.clone(), &app.server, &app.wechat);
        let uuid = uuid.clone();
        actix_web::rt::spawn(async move { api.status_wait(&uuid, 20).await })
    };
    app.until_held(1).await;
    assert_eq!(decide(&app, &link, "confirm").await.0, 200);
    let (_, b) = held.await.unwrap();
    assert_eq!((b["status"].as_u64(), b["token_type"].as_str()), (Some(3), Some("Bearer")), "{b}");
    let (status, me) = app.me(b["token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{me}");
    let metrics = app.metrics().await;
    assert_eq!(crate::client::metric(&metrics, "scanlogin_confirmations_total", &["decision=\"confirm\""]), 2.0);
}

#[actix_web::test]
async fn a_denied_login_is_expired_with_its_reason_and_the_ticket_is_spent() {
    let app = confirming(300).await;
    let (uuid, qr) = login_from_firefox(&app).await;
    let link = scan_for_link(&app, &uuid, &qr, "o_confirm_deny").await;
    let (status, html) = decide(&app, &link, "deny").await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Denied"), "{html}");
    let (_, b) = app.status(&uuid).await;
    assert_eq!(b, json!({"status": 1, "state": "expired", "reason": "denied"}));
    assert_eq!(decide(&app, &link, "confirm").await.0, 410, "a denied ticket confirms nothing");
    assert_eq!(page(&app, &link).await.0, 410);
    assert_eq!(app.status(&uuid).await.1["reason"], "denied", "still told on the next poll");
}

#[actix_web::test]
async fn a_second_scanner_is_refused_and_the_first_one_is_told_to_use_the_link() {
    let app = confirming(300).await;
    let (uuid, qr) = login_from_firefox(&app).await;
    let link = scan_for_link(&app, &uuid, &qr, "o_first").await;
    let (_, other) = app.scan(&qr, "o_second", true).await;
    assert!(reply_text(&other).contains("过期"), "refused like a used code: {other}");
    assert!(!reply_text(&other).contains("/confirm/"));
    let (_, again) = app.scan(&qr, "o_first", true).await;
    assert!(reply_text(&again).contains("link sent before"), "{again}");
    assert_eq!(app.status(&uuid).await.1["state"], "scanned");
    assert_eq!(decide(&app, &link, "confirm").await.0, 200, "the first link still works");
    assert_eq!(app.status(&uuid).await.1["state"], "not_reg");
}

#[actix_web::test]
async fn a_scanned_login_expires_and_its_link_with_it() {
    let app = confirming(2).await;
    let (uuid, qr) = login_from_firefox(&app).await;
    let link = scan_for_link(&app, &uuid, &qr, "o_slow").await;
    let (_, b) = app.status_wait(&uuid, 10).await;
    assert_eq!(b, json!({"status": 1, "state": "expired"}), "held through scanned until the deadline");
    assert_eq!(page(&app, &link).await.0, 410);
    assert_eq!(decide(&app, &link, "confirm").await.0, 410);
}

#[actix_web::test]
async fn unknown_malformed_and_cross_site_decisions_are_refused() {
    let app = confirming(300).await;
    let (uuid, qr) = login_from_firefox(&app).await;
    let link = scan_for_link(&app, &uuid, &qr, "o_csrf").await;
    let (status, html) = page(&app, &link).await;
    assert_eq!(status, 200);
    assert!(!html.contains("<script"), "no script on the confirm page");
    let r = app.http.get(app.url(&link)).send().await.unwrap();
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("default-src 'none'") && csp.contains("form-action 'self'"), "{csp}");
    let cross = app
        .http
        .post(app.url(&link))
        .header("Origin", "https://evil.example")
        .form(&[("decision", "confirm")])
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status().as_u16(), 403);
    assert_eq!(decide(&app, &link, "maybe").await.0, 400);
    assert_eq!(app.status(&uuid).await.1["state"], "scanned", "nothing decided");
    let unknown = format!("/confirm/{}", "A".repeat(43));
    assert_eq!(page(&app, &unknown).await.0, 410);
    assert_eq!(decide(&app, &unknown, "confirm").await.0, 410);
    assert_eq!(page(&app, "/confirm/short").await.0, 410);
}

#[actix_web::test]
async fn one_ticket_under_concurrent_posts_decides_once() {
    let app = confirming(300).await;
    let (uuid, qr) = login_from_firefox(&app).await;
    let link = scan_for_link(&app, &uuid, &qr, "o_race").await;
    let posts: Vec<_> = (0..8)
        .map(|i| {
            let api = Api::with_client(app.http.clone(), &app.server, &app.wechat);
            let link = link.clone();
            let decision = if i % 2 == 0 { "confirm" } else { "deny" };
            actix_web::rt::spawn(async move { decide(&api, &link, decision).await.0 })
        })
        .collect();
    let mut statuses = Vec::new();
    for p in posts {
        statuses.push(p.await.unwrap());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 410, 410, 410, 410, 410, 410, 410], "exactly one decision wins");
    let state = app.status(&uuid).await.1["state"].clone();
    assert!(state == "not_reg" || state == "expired", "{state}");
}
