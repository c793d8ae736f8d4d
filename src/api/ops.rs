//! Operations endpoints: liveness, readiness (database and snapshot store), metrics.

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::AppState;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// 200 only while every dependency answers; 503 names the failing part (the snapshot
/// store by its name: `redis`, `sqlite`), or says how many attempts a restore has
/// brought back so far while it runs.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let engine = &state.login.engine;
    let store = engine.store_health();
    let mut failing = Vec::new();
    if !store.up {
        failing.push(store.store);
    }
    if let Some(n) = engine.recovering() {
        return HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "1"))
            .json(json!({"status": "recovering", "recovering": n, "failing": failing}));
    }
    let db_ok = state.login.users.db().ping().await;
    let engine_ok = engine.live().await.is_ok();
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
