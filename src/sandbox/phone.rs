//! The sandbox phone: a scan becomes the event WeChat would push, signed (and for a
//! safe-mode account encrypted) and posted over real HTTP to our own callback; the
//! passive reply comes back decoded. [`sign_push`] is the one place that signs a push as
//! WeChat does (the load tool plays WeChat with it too).

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::Sandbox;
use crate::api::json_body;
use crate::config::AppSettings;
use crate::error::ApiError;
use crate::wall::unix_secs;
use crate::wechat::callback;
use crate::wechat::client::send_resending;
use crate::wechat::crypto::AesKey;
use crate::wechat::xml::{event_xml, text_xml};

#[derive(Deserialize)]
struct ScanRequest {
    ticket: String,
    openid: String,
    #[serde(default)]
    subscribed: bool,
}

fn valid_openid(s: &str) -> bool {
    (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Plays the phone: builds the event WeChat would push for this scan, signs (and
/// encrypts) it, posts it to our callback, and returns the passive reply it got.
pub(super) async fn scan(sb: web::Data<Sandbox>, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    let body: ScanRequest = json_body(payload).await?;
    if !valid_openid(&body.openid) {
        return Err(ApiError::InvalidRequest("openid must be 1..128 of [A-Za-z0-9_-]".into()));
    }
    let info = sb.state.ticket(&body.ticket).await.map_err(|_| ApiError::Overloaded { retry_after_secs: 1 })?;
    let Some(info) = info else {
        return Err(ApiError::InvalidRequest("unknown or expired ticket".into()));
    };
    let app = sb
        .apps
        .iter()
        .find(|a| a.app_id == info.app_id)
        .ok_or_else(|| ApiError::internal("ticket of an unknown app"))?;
    let account = format!("gh_{}", &app.app_id[app.app_id.len().saturating_sub(12)..]);
    let (event, key) =
        if body.subscribed { ("SCAN", info.scene.clone()) } else { ("subscribe", format!("qrscene_{}", info.scene)) };
    let plain = event_xml(&account, &body.openid, unix_secs(), event, Some(&key), Some(&body.ticket));
    let reply = deliver(&sb, app, &account, &body.openid, &plain).await?;
    // Delivered: the phone page marks the ticket as used (a failed count only loses that mark).
    let _ = sb.state.count_scan(&body.ticket).await;
    Ok(HttpResponse::Ok().json(reply))
}

#[derive(Deserialize)]
struct MessageRequest {
    /// The account's configured name; default: the first.
    #[serde(default)]
    app: Option<String>,
    openid: String,
    text: String,
    /// The push's `MsgId`: the same one twice plays WeChat's resend of one message.
    #[serde(default)]
    msg_id: Option<u64>,
}

/// Plays a person sending the text message `text` to the account (code mode): signed
/// (and encrypted) and posted like a scan's event; returns the passive reply it got.
pub(super) async fn message(sb: web::Data<Sandbox>, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    let body: MessageRequest = json_body(payload).await?;
    if !valid_openid(&body.openid) {
        return Err(ApiError::InvalidRequest("openid must be 1..128 of [A-Za-z0-9_-]".into()));
    }
    if body.text.is_empty() || body.text.len() > 2048 {
        return Err(ApiError::InvalidRequest("text must be 1..2048 bytes".into()));
    }
    let app = match &body.app {
        None => sb.apps.first(),
        Some(name) => sb.apps.iter().find(|a| &a.name == name),
    }
    .ok_or(ApiError::UnknownApp)?;
    let account = format!("gh_{}", &app.app_id[app.app_id.len().saturating_sub(12)..]);
    let msg_id = body.msg_id.unwrap_or_else(|| rand::random_range(1u64..1 << 62));
    let plain = text_xml(&account, &body.openid, unix_secs(), &body.text, msg_id);
    let reply = deliver(&sb, app, &account, &body.openid, &plain).await?;
    Ok(HttpResponse::Ok().json(reply))
}

/// Deliveries of one push after the first, when its connection failed (as WeChat's).
const PUSH_RESENDS: usize = 2;
/// The pause before a resend (WeChat's own interval is undocumented for a failed
/// connection; short here, so a test's restart costs no seconds).
const PUSH_RESEND_AFTER: std::time::Duration = std::time::Duration::from_millis(100);

/// A push as WeChat sends it (sealed by `wechat::callback`, the one place that does).
pub use crate::wechat::callback::{PushSender, SealedPush as SignedPush};

/// Signs `plain` as `from` and, for a safe-mode account, encrypts it — what WeChat does
/// before posting a push; a fresh timestamp and nonce each time. Shared with the load
/// tool, which also plays WeChat.
pub fn sign_push(from: &PushSender<'_>, openid: &str, plain: &str) -> SignedPush {
    let timestamp = unix_secs().to_string();
    let nonce = rand::random_range(100_000_000u64..1_000_000_000).to_string();
    callback::seal_push(from, openid, plain, (&timestamp, &nonce))
}

/// Posts one push to `public_url/wechat/{appid}/callback` as WeChat does and decodes
/// the answer: `{"http_status", "reply": "success" | {"type","content",...}}`.
pub async fn deliver(
    sb: &Sandbox,
    app: &AppSettings,
    account: &str,
    openid: &str,
    plain: &str,
) -> Result<serde_json::Value, ApiError> {
    let key = (!app.encoding_aes_key.is_empty())
        .then(|| AesKey::from_encoding_key(app.encoding_aes_key.expose()))
        .transpose()
        .map_err(ApiError::internal)?;
    let from = PushSender { token: app.token.expose(), app_id: &app.app_id, key: key.as_ref(), account };
    let SignedPush { params, body } = sign_push(&from, openid, plain);
    let url = format!("{}/wechat/{}/callback", sb.public_url, app.app_id);
    // WeChat sends a push again when it got no answer (docs/wechat.md, "Timeouts,
    // resends, dedup": up to two resends), and so does the sandbox when the connection
    // failed (refused, reset, closed before the answer: a node or a proxy's upstream
    // restarting).
    let req = sb.http.post(&url).query(&params).header("content-type", "text/xml").body(body);
    let resp = send_resending(req, PUSH_RESENDS, PUSH_RESEND_AFTER)
        .await
        .map_err(|e| ApiError::Wechat(format!("callback unreachable: {}", e.without_url())))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(|e| ApiError::Wechat(e.without_url().to_string()))?;
    if status != 200 {
        return Ok(json!({"http_status": status, "reply": null, "body": text.chars().take(500).collect::<String>()}));
    }
    if text.is_empty() || text == "success" {
        return Ok(json!({"http_status": status, "reply": "success"}));
    }
    let fields = callback::open_reply(app.token.expose(), &app.app_id, key.as_ref(), &text)
        .map_err(|e| ApiError::Wechat(format!("the reply does not open: {e}")))?;
    Ok(json!({
        "http_status": status,
        "encrypted": key.is_some(),
        "reply": {
            "type": fields.get("MsgType"),
            "content": fields.get("Content"),
            "to": fields.get("ToUserName"),
            "from": fields.get("FromUserName"),
        }
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::config::Settings;
    use crate::sandbox::{Outbox, SandboxState};

    /// A callback whose first `cut` connections are closed after the request arrives;
    /// later ones answer `success`. Returns its URL and the connections it accepted.
    async fn callback(cut: usize) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(AtomicUsize::new(0));
        let n = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let i = n.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    let _ = conn.read(&mut buf).await;
                    if i >= cut {
                        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nsuccess").await;
                    }
                });
            }
        });
        (url, seen)
    }

    fn sandbox(public_url: &str) -> (Sandbox, AppSettings) {
        crate::install_crypto();
        let mut settings = Settings::default();
        settings.server.public_url = public_url.to_string();
        let app = settings.wechat.apps[0].clone();
        (Sandbox::new(&settings, SandboxState::memory(), Outbox::default()), app)
    }

    #[tokio::test]
    async fn a_push_whose_connection_failed_is_delivered_again_as_wechat_does() {
        let (url, seen) = callback(2).await;
        let (sb, app) = sandbox(&url);
        let got = deliver(&sb, &app, "gh_test", "o_1", "<xml></xml>").await.unwrap();
        assert_eq!(got["reply"], "success", "{got}");
        assert_eq!(seen.load(Ordering::SeqCst), 3, "the first delivery and two resends");
        // Three failures in a row: the scan reports the callback unreachable.
        let (url, seen) = callback(3).await;
        let (sb, app) = sandbox(&url);
        let err = deliver(&sb, &app, "gh_test", "o_1", "<xml></xml>").await.unwrap_err();
        assert!(err.to_string().contains("callback unreachable"), "{err}");
        assert_eq!(seen.load(Ordering::SeqCst), 3);
    }
}
