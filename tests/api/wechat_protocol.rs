//! WeChat protocol behaviour: dedup, the budget (nothing acknowledged before it is stored), the access-token manager,
//! several accounts, key rotation, follows/unfollows, unionid, auto-replies.

use std::time::Duration;

use scanlogin::wechat::crypto::{self, AesKey};
use scanlogin::wechat::xml::{self, event_xml};
use serde_json::json;

use crate::client::{eventually, metric};
use crate::helpers::{spawn_app, spawn_app_with};

const APP_ID: &str = "wxsandbox0000000001";
const TOKEN: &str = "sandbox-token";

#[actix_web::test]
async fn same_event_four_times_is_one_transition_and_four_identical_answers() {
    let app = spawn_app().await;
    let (uuid, ticket) = app.new_login().await;
    let scene = app.scene_of(&ticket).await;
    let event =
        event_xml("gh_x", "o_dup", 1_700_000_000, "subscribe", Some(&format!("qrscene_{scene}")), Some(&ticket));
    let mut answers = Vec::new();
    for _ in 0..4 {
        let r = app.push_plain(APP_ID, TOKEN, event.clone()).await;
        assert_eq!(r.status(), 200);
        answers.push(r.text().await.unwrap());
    }
    assert!(answers[0].contains("绑定手机号"), "{}", answers[0]);
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    let m = app.metrics().await;
    assert_eq!(metric(&m, "scanlogin_transitions_total", &["from=\"loop\"", "to=\"not_reg\""]), 1.0);
    assert_eq!(metric(&m, "scanlogin_callbacks_total", &["result=\"duplicate\""]), 3.0);
    assert_eq!(app.status(&uuid).await.1["state"], "not_reg");
}

#[actix_web::test]
async fn slow_work_is_not_acknowledged_and_the_retry_gets_the_stored_result() {
    let app = spawn_app_with(|s| s.wechat.callback_budget_ms = 300).await;
    // A follower with an account: a follow of theirs updates their identity row (a
    // stranger's needs no query at all, so it could not be stalled this way).
    app.register("o_slow", "13800000099").await;
    let (uuid, ticket) = app.new_login().await;
    let scene = app.scene_of(&ticket).await;
    // Stall the database: hold SQLite's write lock, which the follow's bookkeeping needs.
    let pool = &app.state.login.users().db().pool;
    let mut stall = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO revoked_tokens (jti, expires_at) VALUES ('stall', 0)").execute(&mut *stall).await.unwrap();
    let event = event_xml("gh_x", "o_slow", 1, "subscribe", Some(&format!("qrscene_{scene}")), None);
    let start = std::time::Instant::now();
    // A duplicate while the first delivery still runs waits for it instead of answering
    // `success` blindly: neither is acknowledged, so WeChat would send the push again.
    // (Whichever of the two claims the push first is "the first": the outcome is the same.)
    let (first, dup) =
        tokio::join!(app.push_plain(APP_ID, TOKEN, event.clone()), app.push_plain(APP_ID, TOKEN, event.clone()));
    for r in [first, dup] {
        assert_eq!(r.status(), 503, "not stored in time: not acknowledged");
        assert_ne!(r.text().await.unwrap(), "success");
    }
    assert!(start.elapsed() >= Duration::from_secs(5), "no answer within WeChat's 5 s: {:?}", start.elapsed());
    assert_eq!(app.status(&uuid).await.1["state"], "loop", "the work is still stalled");
    stall.rollback().await.unwrap();
    // The work finishes in the background; WeChat's next retry gets its stored reply.
    let (_, b) = app.status_wait(&uuid, 5).await;
    assert_eq!(b["state"], "reg");
    let r = app.push_plain(APP_ID, TOKEN, event).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("登录成功"), "the first delivery's reply");
    let m = app.metrics().await;
    assert_eq!(metric(&m, "scanlogin_callbacks_total", &["result=\"late\""]), 2.0);
    assert_eq!(metric(&m, "scanlogin_callbacks_total", &["result=\"duplicate\""]), 1.0);
    assert_eq!(metric(&m, "scanlogin_transitions_total", &["from=\"loop\"", "to=\"reg\""]), 1.0);
}

#[actix_web::test]
async fn cold_cache_fetches_one_token_for_a_hundred_requests() {
    let app = spawn_app().await;
    let reqs: Vec<_> = (0..100).map(|_| app.create_qr(json!({"image": false}))).collect();
    let answers = futures_util::future::join_all(reqs).await;
    assert!(answers.iter().all(|(s, _)| *s == 200));
    let m = app.metrics().await;
    assert_eq!(metric(&m, "scanlogin_access_token_refreshes_total", &[]), 1.0, "{m}");
}

#[actix_web::test]
async fn revoked_token_is_refreshed_once_and_the_call_retried_once() {
    let app = spawn_app().await;
    app.new_login().await; // warms the token cache
    let armed = app.post_json("/_sandbox/faults", &json!({"api": "qrcode_create", "errcode": 40001})).await;
    assert_eq!(armed.status(), 200);
    let (s, b) = app.create_qr(json!({"image": false})).await;
    assert_eq!(s, 200, "{b}");
    let m = app.metrics().await;
    assert_eq!(metric(&m, "scanlogin_access_token_refreshes_total", &["result=\"ok\""]), 2.0);
    // Twice in a row: one refresh and one retry only, then the error surfaces.
    app.post_json("/_sandbox/faults", &json!({"api": "qrcode_create", "errcode": 40001, "count": 2})).await;
    let (s, b) = app.create_qr(json!({"image": false})).await;
    assert_eq!((s, b["error"].as_str()), (502, Some("wechat_error")), "{b}");
    assert!(b["message"].as_str().unwrap().contains("40001"));
}

/// Arms a sandbox fault (`/_sandbox/faults`).
async fn fault(app: &crate::helpers::TestApp, fault: serde_json::Value) {
    assert_eq!(app.post_json("/_sandbox/faults", &fault).await.status(), 200, "{fault}");
}

#[actix_web::test]
async fn busy_errcode_is_retried_with_backoff() {
    // Without code mode's fallback, which would answer 45009 with a code instead.
    let app = spawn_app_with(|s| s.wechat.apps[0].code_fallback = false).await;
    app.new_login().await; // warms the token cache: only qrcode/create is timed below
    let calls = app.wechat_calls("qrcode/create").await;
    // Busy twice: retried after 100 ms, then after 400 ms more, and the third call works.
    fault(&app, json!({"api": "qrcode_create", "errcode": -1, "count": 2})).await;
    let t = std::time::Instant::now();
    let (s, b) = app.create_qr(json!({"image": false})).await;
    assert_eq!(s, 200, "{b}");
    assert!(t.elapsed() >= Duration::from_millis(500), "backed off 100 + 400 ms: {:?}", t.elapsed());
    assert_eq!(app.wechat_calls("qrcode/create").await - calls, 3.0);
    // Busy three times: two retries only, then the error surfaces.
    fault(&app, json!({"api": "qrcode_create", "errcode": -1, "count": 3})).await;
    let (s, b) = app.create_qr(json!({"image": false})).await;
    assert_eq!((s, b["error"].as_str()), (502, Some("wechat_error")), "{b}");
    assert!(b["message"].as_str().unwrap().contains("-1"), "{b}");
    assert_eq!(app.wechat_calls("qrcode/create").await - calls, 6.0);
    // Any other errcode is not retried.
    fault(&app, json!({"api": "qrcode_create", "errcode": 45009})).await;
    let (s, b) = app.create_qr(json!({"image": false})).await;
    assert_eq!(s, 502);
    assert!(b["message"].as_str().unwrap().contains("45009"));
    assert_eq!(app.wechat_calls("qrcode/create").await - calls, 7.0);
    let m = app.metrics().await;
    assert_eq!(metric(&m, "scanlogin_wechat_api_calls_total", &["result=\"errcode_45009\""]), 1.0);
}

#[actix_web::test]
async fn classic_token_endpoint_works_too() {
    let app = spawn_app_with(|s| s.wechat.apps[0].use_stable_token = false).await;
    // Were the stable endpoint asked, this fault would fail the QR code.
    fault(&app, json!({"api": "stable_token", "errcode": 40013, "count": 10})).await;
    assert_eq!(app.create_qr(json!({"image": false})).await.0, 200);
    assert_eq!((app.wechat_calls("token").await, app.wechat_calls("stable_token").await), (1.0, 0.0));
    // And the other way round: the default asks the stable endpoint only.
    let app = spawn_app().await;
    fault(&app, json!({"api": "classic_token", "errcode": 40013, "count": 10})).await;
    assert_eq!(app.create_qr(json!({"image": false})).await.0, 200);
    assert_eq!((app.wechat_calls("token").await, app.wechat_calls("stable_token").await), (0.0, 1.0));
}

#[actix_web::test]
async fn several_accounts_each_with_their_own_callback() {
    let key = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
    let app = spawn_app_with(|s| {
        let mut second = s.wechat.apps[0].clone();
        second.name = "second".into();
        second.app_id = "wxsandbox0000000002".into();
        second.app_secret = "second-secret".into();
        second.token = "second-token".into();
        second.encoding_aes_key = key.into();
        s.wechat.apps.push(second);
    })
    .await;
    let (s, b) = app.create_qr(json!({"app": "second", "image": false})).await;
    assert_eq!(s, 200, "{b}");
    let uuid = b["uuid"].as_str().unwrap().to_string();
    let ticket = crate::client::ticket_of(&b);
    let (_, reply) = app.scan(&ticket, "o_second", false).await;
    assert_eq!(reply["encrypted"], true, "the second account is in safe mode: {reply}");
    assert_eq!(app.status(&uuid).await.1["state"], "not_reg");
    // The first account's token does not sign for the second.
    let scene = "sl_whatever";
    let r = app.push_plain("wxsandbox0000000002", TOKEN, event_xml("gh", "o", 1, "SCAN", Some(scene), None)).await;
    assert_eq!(r.status(), 401);
}

#[actix_web::test]
async fn key_rotation_accepts_the_previous_key_and_answers_with_it() {
    let (new_key, old_key) =
        ("kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG");
    let app = spawn_app_with(|s| {
        s.wechat.apps[0].encoding_aes_key = new_key.into();
        s.wechat.apps[0].encoding_aes_key_previous = old_key.into();
    })
    .await;
    let (uuid, ticket) = app.new_login().await;
    let scene = app.scene_of(&ticket).await;
    let old = AesKey::from_encoding_key(old_key).unwrap();
    let plain = event_xml("gh_x", "o_rot", 1, "SCAN", Some(&scene), None);
    let enc = crypto::encrypt_random(&old, APP_ID, plain.as_bytes());
    let (ts, nonce) = ("1714037059", "486452656");
    let body = format!("<xml><ToUserName>gh_x</ToUserName><Encrypt>{}</Encrypt></xml>", xml::cdata(&enc));
    let q = [
        ("signature", crypto::sign(&[TOKEN, ts, nonce])),
        ("timestamp", ts.into()),
        ("nonce", nonce.into()),
        ("encrypt_type", "aes".into()),
        ("msg_signature", crypto::msg_signature(TOKEN, ts, nonce, &enc)),
    ];
    let r = app.http.post(app.url(&format!("/wechat/{APP_ID}/callback"))).query(&q).body(body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let reply = xml::parse_fields(&r.text().await.unwrap()).unwrap();
    let renc = reply.get("Encrypt").unwrap();
    let decrypted = crypto::decrypt(&old, APP_ID, renc).expect("reply sealed with the key that worked");
    assert!(String::from_utf8(decrypted).unwrap().contains("绑定手机号"));
    assert!(crypto::decrypt(&AesKey::from_encoding_key(new_key).unwrap(), APP_ID, renc).is_err());
    assert_eq!(app.status(&uuid).await.1["state"], "not_reg");
}

#[actix_web::test]
async fn follows_unfollows_unionid_and_auto_reply() {
    let app = spawn_app_with(|s| s.wechat.apps[0].reply_text = "您好 hello".into()).await;
    app.register("o_life", "13500135000").await;
    let users = app.state.login.users();
    // unionid arrives asynchronously from user/info after the bind.
    let arrived = || async { users.unionid(APP_ID, "o_life").await.unwrap() };
    let unionid = eventually("the unionid is stored", Duration::from_secs(2), arrived).await;
    assert!(unionid.starts_with('u'), "{unionid}");
    assert_eq!(users.subscribed(APP_ID, "o_life").await.unwrap(), Some(true));
    let r = app.push_plain(APP_ID, TOKEN, event_xml("gh_x", "o_life", 10, "unsubscribe", None, None)).await;
    assert_eq!(r.text().await.unwrap(), "success");
    assert_eq!(users.subscribed(APP_ID, "o_life").await.unwrap(), Some(false));
    let r = app.push_plain(APP_ID, TOKEN, event_xml("gh_x", "o_life", 11, "subscribe", None, None)).await;
    assert_eq!(r.text().await.unwrap(), "success");
    assert_eq!(users.subscribed(APP_ID, "o_life").await.unwrap(), Some(true));
    let text = "<xml><ToUserName>gh_x</ToUserName><FromUserName>o_life</FromUserName><CreateTime>12</CreateTime><MsgType>text</MsgType><Content>hi</Content><MsgId>18446744073709551615</MsgId></xml>";
    let r = app.push_plain(APP_ID, TOKEN, text.into()).await;
    let body = r.text().await.unwrap();
    let f = xml::parse_fields(&body).unwrap();
    assert_eq!((f.get("Content"), f.get("ToUserName")), (Some("您好 hello"), Some("o_life")));
}

/// A TCP proxy that closes the connection of the next `drops` requests instead of
/// passing them on, as a proxy does whose upstream just died.
struct FlakyProxy {
    url: String,
    drops: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl FlakyProxy {
    async fn start(upstream: std::net::SocketAddr, drops: usize) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let drops = std::sync::Arc::new(AtomicUsize::new(drops));
        let accepted = std::sync::Arc::new(AtomicUsize::new(0));
        let (d, a) = (drops.clone(), accepted.clone());
        actix_web::rt::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let d = d.clone();
                actix_web::rt::spawn(async move {
                    let Ok(up) = tokio::net::TcpStream::connect(upstream).await else { return };
                    let (mut up_read, mut up_write) = up.into_split();
                    let (mut client_read, mut client_write) = client.split();
                    let to_client = tokio::io::copy(&mut up_read, &mut client_write);
                    let to_upstream = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = client_read.read(&mut buf).await.unwrap_or(0);
                            let dropped =
                                d.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |k| k.checked_sub(1)).is_ok();
                            if n == 0 || dropped || up_write.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    // Whichever side ends first ends the connection.
                    tokio::select! { _ = to_client => {}, _ = to_upstream => {} }
                });
            }
        });
        Self { url, drops, accepted }
    }
}

#[actix_web::test]
async fn a_request_whose_connection_failed_is_sent_once_more() {
    use std::sync::atomic::Ordering;
    let wechat = spawn_app().await;
    let upstream: std::net::SocketAddr = wechat.server.trim_start_matches("http://").parse().unwrap();
    // The first request (the access token) has its connection closed under it.
    let proxy = FlakyProxy::start(upstream, 1).await;
    let base = format!("{}/_sandbox", proxy.url);
    let app = spawn_app_with(|s| s.wechat.apps[0].api_base = Some(base.clone())).await;
    let (s, b) = app.create_qr(json!({"image": false})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(proxy.drops.load(Ordering::SeqCst), 0, "the token request went through the proxy");
    // Now a `qrcode/create` on the kept-alive connection is cut off.
    proxy.drops.store(1, Ordering::SeqCst);
    let (s, b) = app.create_qr(json!({"image": false})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(proxy.drops.load(Ordering::SeqCst), 0);
    assert!(proxy.accepted.load(Ordering::SeqCst) >= 3, "each resend opened a new connection");
    // Two failures in a row are an answer: WeChat unreachable, and nothing is retried again.
    proxy.drops.store(2, Ordering::SeqCst);
    let (s, b) = app.create_qr(json!({"image": false})).await;
    assert_eq!((s, b["error"].as_str()), (502, Some("wechat_error")), "{b}");
    assert_eq!(proxy.drops.load(Ordering::SeqCst), 0);
}
