//! Operations endpoints: liveness, readiness (database and snapshot store), metrics.

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::AppState;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// 200 only while every dependency answers; 503 names the failing part.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let db_ok = state.login.users.db().ping().await;
    let engine_ok = state.login.engine.live().await.is_ok();
    let mut failing = Vec::new();
    if !db_ok {
        failing.push("database");
    }
    if !engine_ok {
        failing.push("engine");
    }
    if failing.is_empty() {
        HttpResponse::Ok().json(json!({"status": "ready"}))
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "1"))
            .json(json!({"status": "not_ready", "failing": failing}))
    }
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(state.metrics.render())
}
