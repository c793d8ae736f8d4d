//! Operations endpoints: liveness, readiness (database and snapshot store), metrics.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
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
    let engine = state.login.engine();
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
    let db_ok = state.login.users().db().ping().await;
    let engine_ok = engine.responsive().await;
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

/// With `server.metrics_bind` set, the listener on that address serves `/metrics` and
/// nothing else, and the API listener does not serve `/metrics`: scrapes stay internal.
pub async fn metrics_port(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let metrics_addr = req.app_data::<web::Data<AppState>>().and_then(|s| s.settings.server.metrics_bind.parse().ok());
    if let Some(addr) = metrics_addr {
        let on_metrics_port = req.app_config().local_addr() == addr;
        if on_metrics_port != (req.path() == "/metrics") {
            let (req, _) = req.into_parts();
            return Ok(ServiceResponse::new(req, super::not_found().await).map_into_right_body());
        }
    }
    Ok(next.call(req).await?.map_into_left_body())
}
