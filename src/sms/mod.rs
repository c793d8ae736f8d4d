//! Sending SMS codes: the `log` provider (log line with the phone masked, plus the
//! sandbox outbox) and the `webhook` provider (signed JSON POST to an SMS gateway).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::config::SmsSettings;
use crate::ids::{Phone, SmsCode};
use crate::metrics::Metrics;

/// Codes the outbox keeps per phone, and phones it keeps at all.
const OUTBOX_PER_PHONE: usize = 10;
const OUTBOX_PHONES: usize = 10_000;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OutboxEntry {
    pub code: String,
    pub sent_at: i64,
}

/// What the `log` provider "sent": the sandbox shows it at `/_sandbox/sms`. Bounded.
#[derive(Clone, Default)]
pub struct Outbox(Arc<Mutex<OutboxInner>>);

#[derive(Default)]
struct OutboxInner {
    by_phone: HashMap<String, Vec<OutboxEntry>>,
    order: VecDeque<String>,
}

impl Outbox {
    pub fn push(&self, phone: &str, code: &str, sent_at: i64) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !g.by_phone.contains_key(phone) {
            if g.order.len() >= OUTBOX_PHONES
                && let Some(old) = g.order.pop_front()
            {
                g.by_phone.remove(&old);
            }
            g.order.push_back(phone.to_string());
        }
        let list = g.by_phone.entry(phone.to_string()).or_default();
        list.push(OutboxEntry { code: code.to_string(), sent_at });
        if list.len() > OUTBOX_PER_PHONE {
            list.remove(0);
        }
    }

    /// Newest last.
    pub fn for_phone(&self, phone: &str) -> Vec<OutboxEntry> {
        let g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        g.by_phone.get(phone).cloned().unwrap_or_default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SmsError {
    #[error("SMS gateway failed: {0}")]
    Failed(String),
}

#[derive(Serialize)]
struct WebhookBody<'a> {
    phone: &'a str,
    code: &'a str,
    purpose: &'a str,
    ttl_secs: u64,
}

#[derive(Clone)]
pub enum SmsSender {
    Log { outbox: Outbox, metrics: Metrics },
    Webhook { http: reqwest::Client, url: String, secret: crate::config::Secret, metrics: Metrics },
}

/// `sha256=<hex>` of the HMAC-SHA256 of `body` under `secret`.
pub fn webhook_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl SmsSender {
    pub fn new(s: &SmsSettings, outbox: Outbox, metrics: Metrics) -> Self {
        match s.provider {
            crate::config::SmsProvider::Webhook => SmsSender::Webhook {
                http: reqwest::Client::builder()
                    .timeout(Duration::from_millis(s.webhook_timeout_ms))
                    .build()
                    .expect("HTTP client builds"),
                url: s.webhook_url.clone(),
                secret: s.webhook_secret.clone(),
                metrics,
            },
            crate::config::SmsProvider::Log => SmsSender::Log { outbox, metrics },
        }
    }

    /// Sends `code` to `phone`. Never logs the code or the full number.
    pub async fn send(&self, phone: &Phone, code: &SmsCode, ttl_secs: u64) -> Result<(), SmsError> {
        match self {
            SmsSender::Log { outbox, metrics } => {
                outbox.push(phone.as_str(), code.as_str(), crate::store::unix_now());
                tracing::info!(phone = %phone.masked(), "sms code sent (log provider)");
                metrics.sms("log", "ok");
                Ok(())
            }
            SmsSender::Webhook { http, url, secret, metrics } => {
                let body = serde_json::to_vec(&WebhookBody {
                    phone: phone.as_str(),
                    code: code.as_str(),
                    purpose: "bind_phone",
                    ttl_secs,
                })
                .expect("serialisable");
                let mut req = http.post(url).header("content-type", "application/json");
                if !secret.is_empty() {
                    req = req.header("X-Scanlogin-Signature", webhook_signature(secret.expose(), &body));
                }
                let result = match req.body(body).send().await {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(SmsError::Failed(format!("status {}", r.status().as_u16()))),
                    Err(e) => Err(SmsError::Failed(e.without_url().to_string())),
                };
                metrics.sms("webhook", if result.is_ok() { "ok" } else { "failed" });
                if let Err(e) = &result {
                    tracing::warn!(phone = %phone.masked(), error = %e, "sms webhook failed");
                }
                result
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            webhook_signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn outbox_is_bounded() {
        let o = Outbox::default();
        for i in 0..15 {
            o.push("13800138000", &format!("{i:06}"), i);
        }
        let l = o.for_phone("13800138000");
        assert_eq!(l.len(), OUTBOX_PER_PHONE);
        assert_eq!(l.last().unwrap().code, "000014");
    }
}
