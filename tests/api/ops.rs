//! Operations endpoints: health, readiness, metrics, security headers.

use crate::client::metric;
use crate::helpers::spawn_app;

#[actix_web::test]
async fn health_ready_and_metrics() {
    let app = spawn_app().await;
    assert_eq!(app.http.get(app.url("/healthz")).send().await.unwrap().status(), 200);
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    app.new_login().await;
    let m = app.metrics().await;
    assert_eq!(metric(&m, "scanlogin_attempts_created_total", &["app=\"default\"", "scene_type=\"web\""]), 1.0);
    assert_eq!(metric(&m, "scanlogin_live_attempts", &["state=\"loop\""]), 1.0);
    assert!(metric(&m, "scanlogin_http_requests_total", &["route=\"/api/v1/login/qrcode\"", "status=\"200\""]) >= 1.0);
    assert!(m.contains("scanlogin_process_resident_memory_bytes"), "process metrics exported");
    // No label carries an id: the poll uuid never appears in the exposition.
    let (uuid, _) = app.new_login().await;
    app.status(&uuid).await;
    assert!(!app.metrics().await.contains(&uuid));
}

#[actix_web::test]
async fn answers_carry_security_headers() {
    let app = spawn_app().await;
    let r =
        app.http.post(app.url("/api/v1/login/qrcode")).json(&serde_json::json!({"image": false})).send().await.unwrap();
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let nf = app.http.get(app.url("/no/such/route")).send().await.unwrap();
    assert_eq!(nf.status(), 404);
}

#[actix_web::test]
async fn every_answer_names_its_request_id() {
    let app = spawn_app().await;
    let r =
        app.http.get(format!("{}/healthz", app.server)).header("x-request-id", "lb-1234_ab.c").send().await.unwrap();
    assert_eq!(r.headers()["x-request-id"], "lb-1234_ab.c", "a proxy's id carries through");
    let r = app
        .http
        .get(format!("{}/healthz", app.server))
        .header("x-request-id", "bad id with spaces and a very long tail that goes past sixty-four characters")
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()), "a fresh one replaces junk: {id}");
    let r2 = app.http.get(format!("{}/healthz", app.server)).send().await.unwrap();
    assert_ne!(r2.headers()["x-request-id"].to_str().unwrap(), id);
}
