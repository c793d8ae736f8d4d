//! What a developer or a test looks at: the codes the `log` SMS provider "sent", and
//! the live tickets with their scenes (as WeChat knows them).

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::Sandbox;
use crate::api::query;
use crate::error::ApiError;
use crate::ids::Phone;
use crate::wall::unix_secs;

#[derive(Deserialize)]
struct SmsQuery {
    phone: String,
}

/// The codes the `log` SMS provider "sent" to a phone.
pub(super) async fn sms(sb: web::Data<Sandbox>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let q: SmsQuery = query(&req)?;
    let phone = Phone::parse(&q.phone).ok_or(ApiError::InvalidPhone)?;
    let codes = sb.outbox.for_phone(phone.as_str()).await;
    Ok(HttpResponse::Ok().json(json!({"phone": phone.as_str(), "messages": codes})))
}

#[derive(Deserialize)]
struct OneTicket {
    ticket: Option<String>,
}

/// Live tickets, newest first, each with how often the sandbox phone scanned it (for
/// the sandbox phone page, which marks the used ones); with `?ticket=T`, that one
/// ticket with its scene, as WeChat knows it (the load tool uses it to post scans
/// straight to our callback, signed and encrypted itself).
pub(super) async fn tickets(sb: web::Data<Sandbox>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let now = unix_secs() as i64;
    if let Ok(OneTicket { ticket: Some(ticket) }) = query::<OneTicket>(&req) {
        let t = sb.state.ticket(&ticket).await.map_err(|_| ApiError::Overloaded { retry_after_secs: 1 })?;
        return Ok(match t {
            Some(t) => HttpResponse::Ok().json(json!({
                "ticket": ticket, "app_id": t.app_id, "scene": t.scene, "url": t.url,
                "expires_in": t.expires_at - now, "scans": t.scans,
            })),
            None => {
                HttpResponse::NotFound().json(json!({"error": "not_found", "message": "unknown or expired ticket"}))
            }
        });
    }
    let list = sb.state.live_tickets(50).await.map_err(|_| ApiError::Overloaded { retry_after_secs: 1 })?;
    // The scene is what WeChat (and so the sandbox) knows about a ticket; shown so tests
    // and load tools can act as WeChat directly.
    let items: Vec<_> = list
        .into_iter()
        .map(|(ticket, i)| {
            json!({
                "ticket": ticket, "app_id": i.app_id, "url": i.url, "expires_in": i.expires_at - now,
                "scene": i.scene, "scans": i.scans,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"tickets": items})))
}
