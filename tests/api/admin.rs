//! The admin API (docs/api.md "Admin API") over real HTTP: its own listener, keys and
//! scopes, attempts listed by pages and ended (a held poll answers at once), a user
//! logged out everywhere, and the audit of every change and every refusal.

use std::time::{Duration, Instant};

use reqwest::Method;
use scanlogin::config::{AdminKey, Scope};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::client::{delivered, metric, parts};
use crate::helpers::{TestApp, spawn_app, spawn_app_with};

/// A key with every scope, one per route's scope alone, and one with none.
const ALL: &str = "key-all-0123456789abcdef0123456789abcdef";
const NONE: &str = "key-none-0123456789abcdef0123456789abcde";

fn scope_key(s: Scope) -> String {
    format!("key-{}", s.name().replace(':', "-"))
}

fn key(name: &str, secret: &str, scopes: Vec<Scope>) -> AdminKey {
    AdminKey { name: name.into(), token_sha256: hex::encode(Sha256::digest(secret.as_bytes())), scopes }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// An app with an admin listener and the keys above; answers it and the admin base URL.
async fn spawn_admin(per_minute: u32) -> (TestApp, String) {
    let port = free_port();
    let app = spawn_app_with(|s| {
        s.admin.bind = format!("127.0.0.1:{port}");
        s.admin.requests_per_minute = per_minute;
        s.admin.keys = vec![key("oncall", ALL, Scope::ALL.to_vec()), key("nobody", NONE, vec![])];
        for sc in Scope::ALL {
            s.admin.keys.push(key(&scope_key(sc), &scope_key(sc), vec![sc]));
        }
    })
    .await;
    (app, format!("http://127.0.0.1:{port}"))
}

async fn call(app: &TestApp, method: Method, url: &str, key: Option<&str>) -> (u16, Value) {
    let mut r = app.http.request(method, url);
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    parts(r.send().await.unwrap()).await
}

/// The operator's id of the attempt polled by `uuid`.
fn id_of(uuid: &str) -> String {
    hex::encode(Sha256::digest(uuid.as_bytes()))[..16].to_string()
}

#[actix_web::test]
async fn without_admin_bind_there_is_no_admin_api() {
    let app = spawn_app().await;
    let (s, b) = app.get("/admin/v1/attempts").await;
    assert_eq!((s, b["error"].as_str()), (404, Some("not_found")), "{b}");
    assert_eq!(app.get("/admin/v1/openapi.json").await.0, 404);
}

#[actix_web::test]
async fn the_admin_api_is_served_on_its_own_port_only() {
    let (app, admin) = spawn_admin(1000).await;
    let (s, _) = call(&app, Method::GET, &app.url("/admin/v1/attempts"), Some(ALL)).await;
    assert_eq!(s, 404, "not on the public port, even with a key");
    let (s, _) = call(&app, Method::GET, &format!("{admin}/api/v1/login/status?uuid=abc"), None).await;
    assert_eq!(s, 404, "the public API is not on the admin port");
    let (s, doc) = call(&app, Method::GET, &format!("{admin}/admin/v1/openapi.json"), None).await;
    assert_eq!(s, 200);
    assert!(doc["paths"]["/admin/v1/attempts/{id}/end"]["post"].is_object(), "{doc}");
    assert_eq!(app.get("/healthz").await.0, 200, "the public port is unchanged");
    // The public document declares the reason an expired answer may carry.
    let (_, public) = app.get("/api/v1/openapi.json").await;
    let reason = &public["components"]["schemas"]["StatusAnswer"]["properties"]["reason"];
    let enum_of = |v: &Value| -> Option<Value> {
        v.get("enum").cloned().or_else(|| {
            let r = v.pointer("/oneOf/1/$ref").or_else(|| v.get("$ref"))?.as_str()?.rsplit('/').next()?.to_string();
            public["components"]["schemas"][r.as_str()].get("enum").cloned()
        })
    };
    assert_eq!(enum_of(reason), Some(serde_json::json!(["denied", "ended"])), "{reason}");
}

#[actix_web::test]
async fn every_route_answers_401_without_a_key_403_without_its_scope_and_200_with_it() {
    let (app, admin) = spawn_admin(1000).await;
    let user_token = app.register("o_admin_scopes", "13800138011").await;
    let user_id = app.me(&user_token).await.1["id"].as_str().unwrap().to_string();
    let attempt = id_of(&app.new_login().await.0);
    let routes = [
        (Method::GET, "/admin/v1/attempts".to_string(), Scope::AttemptsRead),
        (Method::GET, format!("/admin/v1/attempts/{attempt}"), Scope::AttemptsRead),
        (Method::GET, format!("/admin/v1/users/{user_id}"), Scope::UsersRead),
        (Method::GET, "/admin/v1/audit".to_string(), Scope::AuditRead),
        (Method::POST, format!("/admin/v1/attempts/{attempt}/end"), Scope::AttemptsWrite),
        (Method::POST, format!("/admin/v1/users/{user_id}/logout"), Scope::UsersWrite),
    ];
    for (m, path, scope) in &routes {
        let url = format!("{admin}{path}");
        for key in [None, Some("not-a-key"), Some("")] {
            let (s, b) = call(&app, m.clone(), &url, key).await;
            assert_eq!((s, b["error"].as_str()), (401, Some("unauthorized")), "{m} {path} {key:?}: {b}");
        }
        let r = app.http.request(m.clone(), &url).send().await.unwrap();
        assert_eq!(r.headers().get("www-authenticate").unwrap(), "Bearer");
        for other in Scope::ALL.into_iter().filter(|s| s != scope) {
            let (s, b) = call(&app, m.clone(), &url, Some(&scope_key(other))).await;
            assert_eq!((s, b["error"].as_str()), (403, Some("forbidden")), "{m} {path} with {other:?}: {b}");
            assert!(b["message"].as_str().unwrap().contains(scope.name()), "{b}");
        }
        let (s, _) = call(&app, m.clone(), &url, Some(NONE)).await;
        assert_eq!(s, 403, "a key with no scope");
        let (s, b) = call(&app, m.clone(), &url, Some(&scope_key(*scope))).await;
        assert_eq!(s, 200, "{m} {path}: {b}");
    }
    let m = app.metrics().await;
    let n = |a: &str, o: &str| {
        metric(&m, "scanlogin_admin_requests_total", &[&format!("action=\"{a}\""), &format!("outcome=\"{o}\"")])
    };
    assert_eq!(
        (n("attempts.end", "ok"), n("attempts.end", "forbidden"), n("attempts.end", "unauthorized")),
        (1.0, 5.0, 4.0)
    );
    // Refused calls and changes are audited, reads that went through are not.
    let (s, audit) = call(&app, Method::GET, &format!("{admin}/admin/v1/audit?limit=500"), Some(ALL)).await;
    assert_eq!(s, 200, "{audit}");
    let entries = audit["entries"].as_array().unwrap();
    let count = |action: &str, outcome: &str| {
        entries.iter().filter(|e| e["action"] == action && e["outcome"] == outcome).count()
    };
    assert_eq!(count("attempts.end", "ok"), 1);
    assert_eq!(count("users.logout", "ok"), 1);
    assert_eq!(count("attempts.list", "unauthorized"), 4);
    assert_eq!(count("attempts.list", "forbidden"), 5);
    assert_eq!(count("attempts.list", "ok"), 0, "a read is not a change");
    let end = entries.iter().find(|e| e["action"] == "attempts.end" && e["outcome"] == "ok").unwrap();
    assert_eq!(
        (end["key_name"].as_str(), end["target"].as_str()),
        (Some("key-attempts-write"), Some(attempt.as_str()))
    );
    assert_eq!(end["address"], "127.0.0.1");
    let refused = entries.iter().find(|e| e["outcome"] == "unauthorized").unwrap();
    assert!(refused["key_name"].is_null(), "{refused}");
}

#[actix_web::test]
async fn attempts_are_listed_a_page_at_a_time_and_show_nothing_to_poll_with() {
    let (app, admin) = spawn_admin(1000).await;
    let mut uuids = Vec::new();
    for _ in 0..7 {
        uuids.push(app.new_login().await.0);
    }
    let (scanned_uuid, ticket) = app.new_login().await;
    uuids.push(scanned_uuid);
    delivered(app.scan(&ticket, "oScannedByOperatorView01", false).await);
    let mut seen = Vec::new();
    let mut url = format!("{admin}/admin/v1/attempts?limit=3");
    let mut pages = 0;
    loop {
        let (s, page) = call(&app, Method::GET, &url, Some(ALL)).await;
        assert_eq!(s, 200, "{page}");
        pages += 1;
        let attempts = page["attempts"].as_array().unwrap();
        assert!(attempts.len() <= 3);
        for a in attempts {
            assert_eq!((a["mode"].as_str(), a["app"].as_str()), (Some("qr"), Some("default")), "{a}");
            assert_eq!(a["client_ip"].as_str(), Some("127.0.0.1"), "the requesting browser: {a}");
            assert!(a["expires_at"].is_string() && a["created_at"].is_string(), "{a}");
            let text = a.to_string();
            assert!(uuids.iter().all(|u| !text.contains(u.as_str())), "no poll uuid shown: {a}");
            seen.push(a["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => url = format!("{admin}/admin/v1/attempts?limit=3&cursor={c}"),
            None => break,
        }
    }
    assert!(pages >= 3, "8 attempts in pages of 3");
    let mut want: Vec<_> = uuids.iter().map(|u| id_of(u)).collect();
    seen.sort();
    want.sort();
    assert_eq!(seen, want, "every attempt exactly once");
    let (_, scanned) = call(&app, Method::GET, &format!("{admin}/admin/v1/attempts?state=not_reg"), Some(ALL)).await;
    let scanned = scanned["attempts"].as_array().unwrap();
    assert_eq!(scanned.len(), 1);
    assert_eq!(scanned[0]["scanned_by"], "oSca****ew01");
    let (s, one) = call(
        &app,
        Method::GET,
        &format!("{admin}/admin/v1/attempts/{}", scanned[0]["id"].as_str().unwrap()),
        Some(ALL),
    )
    .await;
    assert_eq!(s, 200);
    let states: Vec<_> = one["transitions"].as_array().unwrap().iter().map(|t| t["state"].as_str().unwrap()).collect();
    assert_eq!(states, vec!["loop", "not_reg"], "{one}");
    let nodes: Vec<_> = one["transitions"].as_array().unwrap().iter().map(|t| t["node"].clone()).collect();
    assert!(nodes[0].is_string() && nodes.iter().all(|n| *n == nodes[0]), "a single node did every step: {one}");
    assert!(one["transitions"].as_array().unwrap().iter().all(|t| t["at"].is_string()), "{one}");
    for bad in ["limit=0", "limit=501", "limit=", "state=nope", "state=", "cursor=zzz"] {
        let (s, b) = call(&app, Method::GET, &format!("{admin}/admin/v1/attempts?{bad}"), Some(ALL)).await;
        assert_eq!((s, b["error"].as_str()), (400, Some("invalid_request")), "{bad}: {b}");
    }
    let (s, b) = call(&app, Method::GET, &format!("{admin}/admin/v1/attempts/0000000000000000"), Some(ALL)).await;
    assert_eq!((s, b["error"].as_str()), (404, Some("not_found")));
}

#[actix_web::test]
async fn an_ended_attempt_answers_its_held_poll_at_once_with_the_reason() {
    let (app, admin) = spawn_admin(1000).await;
    let (uuid, _) = app.new_login().await;
    let held = async {
        let started = Instant::now();
        let r = app.status_wait(&uuid, 20).await;
        (r, started.elapsed())
    };
    let end = async {
        app.until_held(1).await;
        call(&app, Method::POST, &format!("{admin}/admin/v1/attempts/{}/end", id_of(&uuid)), Some(ALL)).await
    };
    let (((s, b), took), (es, eb)) = futures_util::future::join(held, end).await;
    assert_eq!(es, 200, "{eb}");
    assert_eq!((eb["state"].as_str(), eb["reason"].as_str()), (Some("expired"), Some("ended")), "{eb}");
    assert_eq!(s, 200);
    assert_eq!(b, serde_json::json!({"status": 1, "state": "expired", "reason": "ended"}));
    assert!(took < Duration::from_secs(5), "answered at the end, not at the poll's limit: {took:?}");
    assert_eq!(app.status(&uuid).await.1["reason"], "ended", "a later poll says why too");
    let (s, _) = call(&app, Method::POST, &format!("{admin}/admin/v1/attempts/{}/end", id_of(&uuid)), Some(ALL)).await;
    assert_eq!(s, 404, "an ended attempt is not live");
    assert_eq!(metric(&app.metrics().await, "scanlogin_attempts_finished_total", &["outcome=\"ended\""]), 1.0);
}

#[actix_web::test]
async fn a_user_logged_out_everywhere_loses_every_token() {
    let (app, admin) = spawn_admin(1000).await;
    let first = app.register("oLogoutEverywhere0001", "13800138012").await;
    let (uuid, ticket) = app.new_login().await;
    delivered(app.scan(&ticket, "oLogoutEverywhere0001", true).await);
    let second = app.status(&uuid).await.1["token"].as_str().unwrap().to_string();
    let (s, me) = app.me(&first).await;
    assert_eq!(s, 200);
    let id = me["id"].as_str().unwrap();
    let (s, user) = call(&app, Method::GET, &format!("{admin}/admin/v1/users/{id}"), Some(ALL)).await;
    assert_eq!(s, 200, "{user}");
    assert_eq!(user["phone"], "138****8012");
    assert_eq!(user["openids"], serde_json::json!([{"app": "default", "openid": "oLog****0001"}]));
    assert_eq!(user["recent_logins"].as_array().unwrap().len(), 2);
    assert!(!user.to_string().contains("13800138012") && !user.to_string().contains("oLogoutEverywhere0001"));
    let (s, b) = call(&app, Method::POST, &format!("{admin}/admin/v1/users/{id}/logout"), Some(ALL)).await;
    assert_eq!(s, 200, "{b}");
    for t in [&first, &second] {
        assert_eq!(app.me(t).await.0, 401, "every token issued before the logout");
    }
    let (uuid, ticket) = app.new_login().await;
    delivered(app.scan(&ticket, "oLogoutEverywhere0001", true).await);
    // A login after the logout is the user's again (its token is issued a second later).
    actix_web::rt::time::sleep(Duration::from_millis(1100)).await;
    let fresh = app.status(&uuid).await.1["token"].as_str().unwrap().to_string();
    assert_eq!(app.me(&fresh).await.0, 200);
    let (s, _) =
        call(&app, Method::GET, &format!("{admin}/admin/v1/users/00000000-0000-0000-0000-000000000000"), Some(ALL))
            .await;
    assert_eq!(s, 404);
}

#[actix_web::test]
async fn each_key_is_rate_limited() {
    let (app, admin) = spawn_admin(3).await;
    let url = format!("{admin}/admin/v1/attempts");
    for _ in 0..3 {
        assert_eq!(call(&app, Method::GET, &url, Some(ALL)).await.0, 200);
    }
    let r = app.http.get(&url).bearer_auth(ALL).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());
    assert_eq!(
        call(&app, Method::GET, &url, Some(&scope_key(Scope::AttemptsRead))).await.0,
        200,
        "another key is not slowed"
    );
    let (_, audit) =
        call(&app, Method::GET, &format!("{admin}/admin/v1/audit"), Some(&scope_key(Scope::AuditRead))).await;
    let limited = audit["entries"].as_array().unwrap().iter().filter(|e| e["outcome"] == "rate_limited").count();
    assert_eq!(limited, 1, "{audit}");
}

#[actix_web::test]
async fn a_provider_attempt_names_its_client() {
    let (app, admin) = spawn_admin(1000).await;
    let url = crate::oidc::authorize_url(
        &app,
        "demo",
        "http://127.0.0.1:8090/callback",
        &[("code_challenge", &"c".repeat(43)), ("code_challenge_method", "S256")],
    );
    let attempt = crate::oidc::embedded(app.http.get(url).send().await.unwrap()).await;
    let id = id_of(attempt["uuid"].as_str().unwrap());
    let (direct, _) = app.new_login().await;
    let (s, one) = call(&app, Method::GET, &format!("{admin}/admin/v1/attempts/{id}"), Some(ALL)).await;
    assert_eq!((s, one["oidc_client"].as_str()), (200, Some("demo")), "{one}");
    let (_, one) = call(&app, Method::GET, &format!("{admin}/admin/v1/attempts/{}", id_of(&direct)), Some(ALL)).await;
    assert!(one["oidc_client"].is_null(), "a direct attempt serves no client: {one}");
}

#[actix_web::test]
async fn an_ended_attempt_ends_its_event_stream_with_the_reason() {
    use futures_util::StreamExt;
    let (app, admin) = spawn_admin(1000).await;
    let (uuid, _) = app.new_login().await;
    let r = app.events(&uuid).await;
    assert_eq!(r.status(), 200);
    let mut body = Box::pin(r.bytes_stream());
    let mut text = String::new();
    // The first event (the current state, `loop`) is there before the end.
    while !text.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), body.next()).await.expect("the first event");
        text.push_str(std::str::from_utf8(&chunk.unwrap().unwrap()).unwrap());
    }
    assert!(text.contains("\"state\":\"loop\""), "{text}");
    let (s, _) = call(&app, Method::POST, &format!("{admin}/admin/v1/attempts/{}/end", id_of(&uuid)), Some(ALL)).await;
    assert_eq!(s, 200);
    // The server closes the stream after the terminal event.
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(5), body.next()).await.expect("ended at once") {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    let last = text.trim_end().rsplit("data: ").next().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(last).unwrap(),
        serde_json::json!({"status": 1, "state": "expired", "reason": "ended"})
    );
}

/// The operator sees how each attempt logs in: a QR code, or a code sent to the account
/// (here a service account whose QR code WeChat refused, answered in code mode).
#[actix_web::test]
async fn an_attempt_shows_its_mode_qr_or_code() {
    let (app, admin) = spawn_admin(1000).await;
    let (qr_uuid, _) = app.new_login().await;
    let fault = serde_json::json!({"api": "qrcode_create", "errcode": 48001, "count": 1});
    assert_eq!(app.post("/_sandbox/faults", fault).await.0, 200);
    let (s, created) = app.create_qr(serde_json::json!({"image": false})).await;
    assert_eq!((s, created["mode"].as_str()), (200, Some("code")), "{created}");
    let code_uuid = created["uuid"].as_str().unwrap();
    for (uuid, mode) in [(qr_uuid.as_str(), "qr"), (code_uuid, "code")] {
        let url = format!("{admin}/admin/v1/attempts/{}", id_of(uuid));
        let (s, a) = call(&app, Method::GET, &url, Some(ALL)).await;
        assert_eq!((s, a["mode"].as_str()), (200, Some(mode)), "{a}");
        assert!(!a.to_string().contains(created["code"].as_str().unwrap()), "the code is not shown: {a}");
    }
}
