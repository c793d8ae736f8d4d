//! The demo pages over HTTP: what is served under which settings, with which headers.
//! (What they do in a browser is tested in `tests/browser/`.)

use crate::helpers::{spawn_app, spawn_app_with};

async fn get(app: &crate::helpers::TestApp, path: &str) -> reqwest::Response {
    app.http.get(app.url(path)).send().await.expect("request")
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

#[actix_web::test]
async fn login_page_is_served_with_a_strict_csp() {
    let app = spawn_app().await;
    let r = get(&app, "/").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "text/html; charset=utf-8");
    let csp = header(&r, "content-security-policy").to_string();
    assert!(csp.contains("script-src 'self'") && csp.contains("default-src 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
    assert_eq!(header(&r, "x-frame-options"), "DENY");
    assert_eq!(header(&r, "referrer-policy"), "no-referrer");
    let body = r.text().await.unwrap();
    assert!(body.contains(r#"data-sandbox="true""#), "the page offers the sandbox phone");
    assert!(body.contains(r#"<script src="/assets/login.js" defer>"#));
}

#[actix_web::test]
async fn assets_are_served_by_name_only() {
    let app = spawn_app().await;
    for (path, kind) in [
        ("/assets/login.js", "text/javascript; charset=utf-8"),
        ("/assets/qr.js", "text/javascript; charset=utf-8"),
        ("/assets/style.css", "text/css; charset=utf-8"),
    ] {
        let r = get(&app, path).await;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(header(&r, "content-type"), kind, "{path}");
        assert_eq!(header(&r, "x-content-type-options"), "nosniff", "{path}");
    }
    for path in ["/assets/nope.js", "/assets/..%2Fmod.rs", "/assets/"] {
        let r = get(&app, path).await;
        assert_eq!(r.status(), 404, "{path}");
    }
    let metrics = app.metrics().await;
    assert!(metrics.contains(r#"route="/assets/{name}""#), "metrics label the route pattern, not the path");
}

#[actix_web::test]
async fn sandbox_phone_page_is_served_under_the_sandbox() {
    let app = spawn_app().await;
    let r = get(&app, "/_sandbox/").await;
    assert_eq!(r.status(), 200);
    assert!(header(&r, "content-security-policy").contains("default-src 'none'"));
    assert!(r.text().await.unwrap().contains("/assets/sandbox.js"));
}

#[actix_web::test]
async fn demo_page_off_keeps_only_the_sandbox_page() {
    let app = spawn_app_with(|s| s.server.demo_page = false).await;
    let r = get(&app, "/").await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "not_found");
    assert_eq!(get(&app, "/_sandbox/").await.status(), 200);
    assert_eq!(get(&app, "/assets/sandbox.js").await.status(), 200, "the sandbox page needs its assets");
}

#[actix_web::test]
async fn production_settings_serve_no_page_at_all() {
    // As config/production.example.toml: no demo page, no sandbox, no provider (whose
    // login page needs the assets).
    let app = spawn_app_with(|s| {
        s.server.demo_page = false;
        s.wechat.sandbox = false;
        s.oidc.enabled = false;
    })
    .await;
    for path in ["/", "/_sandbox/", "/assets/login.js", "/assets/style.css", "/favicon.ico"] {
        assert_eq!(get(&app, path).await.status(), 404, "{path}");
    }
}

#[actix_web::test]
async fn without_sandbox_the_login_page_does_not_offer_it() {
    let app = spawn_app_with(|s| s.wechat.sandbox = false).await;
    let r = get(&app, "/").await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains(r#"data-sandbox="false""#));
    assert_eq!(get(&app, "/_sandbox/").await.status(), 404);
}

#[actix_web::test]
async fn the_icon_is_served_where_browsers_look_for_it() {
    let app = spawn_app().await;
    let r = get(&app, "/favicon.ico").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "image/x-icon");
    assert!(header(&r, "cache-control").contains("max-age"));
    let ico = r.bytes().await.unwrap();
    assert_eq!(&ico[..4], &[0, 0, 1, 0], "an ICO file");
    assert_eq!(&ico[22..26], b"\x89PNG", "holding a PNG");
    let r = get(&app, "/favicon.svg").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "image/svg+xml");
    assert!(r.text().await.unwrap().starts_with("<svg"));
    // The pages link both; the CSP's img-src 'self' allows them.
    let page = get(&app, "/").await.text().await.unwrap();
    assert!(page.contains(r#"href="/favicon.ico""#) && page.contains(r#"href="/favicon.svg""#));
}

#[actix_web::test]
async fn the_sandbox_phone_learns_which_tickets_were_scanned() {
    let app = spawn_app().await;
    let (_, scanned) = app.new_login().await;
    let (_, fresh) = app.new_login().await;
    let (s, reply) = app.scan(&scanned, "o_marks", false).await;
    assert_eq!(s, 200, "{reply}");
    let (_, list) = app.get("/_sandbox/tickets").await;
    let scans = |ticket: &str| {
        list["tickets"].as_array().unwrap().iter().find(|t| t["ticket"] == ticket).map(|t| t["scans"].clone())
    };
    assert_eq!(scans(&scanned), Some(1.into()), "{list}");
    assert_eq!(scans(&fresh), Some(0.into()), "{list}");
    let r = app.http.get(app.url("/_sandbox/tickets")).query(&[("ticket", &scanned)]).send().await.unwrap();
    let one: serde_json::Value = r.json().await.unwrap();
    assert_eq!(one["scans"], 1, "{one}");
}
