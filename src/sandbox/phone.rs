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
use crate::store::unix_now;
use crate::wechat::crypto::{self, AesKey};
use crate::wechat::xml::{self, event_xml};

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
    let plain = event_xml(&account, &body.openid, unix_now() as u64, event, Some(&key), Some(&body.ticket));
    let reply = deliver(&sb, app, &account, &body.openid, &plain).await?;
    Ok(HttpResponse::Ok().json(reply))
}

/// A push as WeChat sends it: the callback's query parameters and body.
#[derive(Debug, Clone)]
pub struct SignedPush {
    pub params: Vec<(&'static str, String)>,
    pub body: String,
}

/// Signs `plain` with the account's Token and, for a safe-mode account (`key`), encrypts
/// it into WeChat's envelope — what WeChat does before posting a push. Shared with the
/// load tool, which also plays WeChat.
pub fn sign_push(
    token: &str,
    app_id: &str,
    key: Option<&AesKey>,
    account: &str,
    openid: &str,
    plain: &str,
) -> SignedPush {
    let timestamp = unix_now().to_string();
    let nonce = rand::random_range(100_000_000u64..1_000_000_000).to_string();
    let signature = crypto::sign(&[token, &timestamp, &nonce]);
    let mut params = vec![
        ("signature", signature),
        ("timestamp", timestamp.clone()),
        ("nonce", nonce.clone()),
        ("openid", openid.into()),
    ];
    let body = match key {
        None => plain.to_string(),
        Some(k) => {
            let enc = crypto::encrypt_random(k, app_id, plain.as_bytes());
            params.push(("encrypt_type", "aes".into()));
            params.push(("msg_signature", crypto::msg_signature(token, &timestamp, &nonce, &enc)));
            format!(
                "<xml><ToUserName>{}</ToUserName><Encrypt>{}</Encrypt></xml>",
                xml::cdata(account),
                xml::cdata(&enc)
            )
        }
    };
    SignedPush { params, body }
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
    let SignedPush { params, body } = sign_push(app.token.expose(), &app.app_id, key.as_ref(), account, openid, plain);
    let url = format!("{}/wechat/{}/callback", sb.public_url, app.app_id);
    let resp = sb
        .http
        .post(url)
        .query(&params)
        .header("content-type", "text/xml")
        .body(body)
        .send()
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
    let fields = xml::parse_fields(&text).map_err(|e| ApiError::Wechat(format!("reply is not XML: {e}")))?;
    let fields = match (&key, fields.get("Encrypt")) {
        (Some(k), Some(enc)) => {
            let ts = fields.get("TimeStamp").unwrap_or_default();
            let n = fields.get("Nonce").unwrap_or_default();
            let sig_ok = fields
                .get("MsgSignature")
                .is_some_and(|s| crypto::verify_signature(s, &[app.token.expose(), ts, n, enc]));
            if !sig_ok {
                return Err(ApiError::Wechat("reply MsgSignature does not verify".into()));
            }
            let plain = crypto::decrypt(k, &app.app_id, enc)
                .map_err(|e| ApiError::Wechat(format!("reply does not decrypt: {e}")))?;
            xml::parse_fields(&String::from_utf8_lossy(&plain)).map_err(|e| ApiError::Wechat(e.to_string()))?
        }
        _ => fields,
    };
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
