//! Operations endpoints: liveness, readiness (database and snapshot store), metrics.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};
use serde_json::json;

use super::AppState;
use crate::kv::Topology;
use crate::login::Readiness;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// 200 only while every dependency answers; 503 names the failing part (the snapshot
/// store by its name: `redis`, `sqlite`), or says how many attempts a restore has
/// brought back so far while it runs.
/// In cluster mode every answer also names the Redis topology the node talks to
/// (`"redis": "single"` or `"cluster"`).
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let (ready, mut body) = match state.login.readiness().await {
        Readiness::Ready => (true, json!({"status": "ready"})),
        Readiness::Recovering { restored, failing } => {
            (false, json!({"status": "recovering", "recovering": restored, "failing": failing}))
        }
        Readiness::NotReady { failing } => (false, json!({"status": "not_ready", "failing": failing})),
    };
    let redis = state.settings.storage.snapshots.redis_url().and_then(|u| Topology::parse(u).ok());
    if let Some(topology) = redis.filter(|_| state.settings.cluster.enabled) {
        body["redis"] = topology.kind().name().into();
    }
    if ready {
        return HttpResponse::Ok().json(body);
    }
    HttpResponse::ServiceUnavailable().insert_header(("Retry-After", "1")).json(body)
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
