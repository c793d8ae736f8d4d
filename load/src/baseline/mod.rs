//! Baselines for the benchmarks: the same HTTP surface the load tool drives (create,
//! status, the WeChat callback, `/me`, the sandbox's ticket lookup), built two other
//! ways, so `load/bench.sh` can compare our engine with them on the same machine.
//!
//! - [`seed`]: the seed article's design — stateless handlers over Redis keys; the poll
//!   does the seed's two GETs (openid, then status), short polls only.
//! - [`lean`]: one in-process map behind a mutex plus one timer wheel for expiry, with
//!   long polls woken by a `Notify`.
//!
//! Both check the push signature with the service's own protocol code and hand out the
//! service's own JWTs, so protocol and token costs match. Neither calls WeChat to make
//! the QR code (the ticket *is* the scene) nor looks a user up (every scanner counts as
//! registered): that favours them in `create` and logins, and the report says so.

pub mod fill;
pub mod lean;
pub mod memory;
pub mod seed;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use scanlogin::token::TokenIssuer;
use scanlogin::wechat::callback::{self, AppKeys, PushQuery};
use scanlogin::wechat::xml::Push;
use serde::Deserialize;
use serde_json::json;

/// Login states, numbered as the seed (and docs/api.md, "Login states") number them.
pub const EXPIRED: u8 = 1;
pub const LOOP: u8 = 2;
pub const REG: u8 = 3;

/// What a baseline keeps attempts in.
#[derive(Clone)]
pub enum Store {
    Seed(seed::Seed),
    Lean(Arc<lean::Lean>),
}

pub struct State {
    pub store: Store,
    pub keys: AppKeys,
    pub tokens: TokenIssuer,
    pub ttl_secs: u64,
    pub max_wait_secs: u64,
}

#[derive(Deserialize)]
struct StatusQuery {
    uuid: String,
    #[serde(default)]
    wait: u64,
}

#[derive(Deserialize)]
struct TicketQuery {
    ticket: String,
}

fn state_name(s: u8) -> &'static str {
    match s {
        LOOP => "loop",
        REG => "reg",
        _ => "expired",
    }
}

async fn create(st: web::Data<State>) -> HttpResponse {
    let made = match &st.store {
        Store::Seed(s) => s.create(st.ttl_secs).await,
        Store::Lean(l) => Ok(l.create(st.ttl_secs)),
    };
    match made {
        Ok((uuid, scene)) => HttpResponse::Ok().json(json!({
            "uuid": uuid,
            "expires_in": st.ttl_secs,
            "qr_content": format!("http://weixin.qq.com/q/{scene}"),
            "qr_image_url": format!("http://127.0.0.1/showqrcode?ticket={scene}"),
        })),
        Err(e) => HttpResponse::ServiceUnavailable().json(json!({"error": "internal", "message": e})),
    }
}

async fn status(st: web::Data<State>, q: web::Query<StatusQuery>) -> HttpResponse {
    let wait = q.wait.min(st.max_wait_secs);
    let found = match &st.store {
        Store::Seed(s) => s.status(&q.uuid).await,
        Store::Lean(l) => Ok(l.status(&q.uuid, std::time::Duration::from_secs(wait)).await),
    };
    let phase = match found {
        Ok(p) => p,
        Err(e) => return HttpResponse::ServiceUnavailable().json(json!({"error": "internal", "message": e})),
    };
    let mut body = json!({"status": phase, "state": state_name(phase)});
    if phase == REG {
        let issued = st.tokens.issue("baseline-user", scanlogin::wall::unix_secs());
        body["token"] = json!(issued.token);
        body["token_type"] = json!("Bearer");
    }
    HttpResponse::Ok().json(body)
}

async fn ticket(q: web::Query<TicketQuery>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"ticket": q.ticket, "scene": q.ticket}))
}

async fn callback_post(st: web::Data<State>, req: HttpRequest, body: String) -> HttpResponse {
    let Ok(q) = web::Query::<PushQuery>::from_query(req.query_string()) else {
        return HttpResponse::BadRequest().finish();
    };
    let Some(Ok(opened)) = callback::check_signature(&st.keys, &q).map(|signed| callback::open(signed, &body)) else {
        return HttpResponse::Unauthorized().json(json!({"error": "unauthorized"}));
    };
    let scanned = match &opened.envelope.push {
        Push::Subscribe { scene: Some(s), openid } | Push::Scan { scene: Some(s), openid } => Some((s, openid)),
        _ => None,
    };
    if let Some((scene, openid)) = scanned {
        let r = match &st.store {
            Store::Seed(s) => s.scanned(scene, openid, st.ttl_secs).await,
            Store::Lean(l) => {
                l.scanned(scene);
                Ok(())
            }
        };
        if let Err(e) = r {
            return HttpResponse::ServiceUnavailable().json(json!({"error": "internal", "message": e}));
        }
    }
    HttpResponse::Ok().body("success")
}

async fn me(st: web::Data<State>, req: HttpRequest) -> HttpResponse {
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    match st.tokens.verify(token) {
        Some(c) => HttpResponse::Ok().json(json!({"id": c.sub})),
        None => HttpResponse::Unauthorized().json(json!({"error": "unauthorized"})),
    }
}

/// Serves a baseline on `listener` with `workers` HTTP threads.
pub fn serve(listener: TcpListener, state: State, workers: usize) -> std::io::Result<actix_web::dev::Server> {
    let app_id = state.keys.app_id.clone();
    let state = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/api/v1/login/qrcode", web::post().to(create))
            .route("/api/v1/login/status", web::get().to(status))
            .route("/api/v1/me", web::get().to(me))
            .route("/_sandbox/tickets", web::get().to(ticket))
            .route(&format!("/wechat/{app_id}/callback"), web::post().to(callback_post))
    })
    .listen(listener)?
    .max_connections(200_000)
    .workers(workers.max(1))
    .shutdown_timeout(1);
    Ok(server.run())
}
