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
use crate::metrics::labels::SmsResult;

/// Codes the outbox keeps per phone, and phones it keeps at all.
const OUTBOX_PER_PHONE: usize = 10;
const OUTBOX_PHONES: usize = 10_000;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OutboxEntry {
    pub code: String,
    pub sent_at: i64,
}

/// What the `log` provider "sent": the sandbox shows it at `/_sandbox/sms`. Bounded:
/// the last [`OUTBOX_PER_PHONE`] codes of at most [`OUTBOX_PHONES`] phones. In process,
/// or in Redis when the nodes of a cluster share one sandbox (a code sent by one node is
/// read through another; keyed by the phone's hash, kept a day).
#[derive(Clone)]
pub enum Outbox {
    Memory(Arc<Mutex<OutboxInner>>),
    Redis(crate::kv::Kv),
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox::Memory(Arc::default())
    }
}

#[derive(Default)]
pub struct OutboxInner {
    by_phone: HashMap<String, Vec<OutboxEntry>>,
    order: VecDeque<String>,
}

impl Outbox {
    pub async fn push(&self, phone: &str, code: &str, sent_at: i64) {
        match self {
            Outbox::Memory(m) => {
                let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
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
            Outbox::Redis(kv) => {
                let key = kv.key(&["sbx", "sms", &kv.phone_tag(phone)]);
                let entry = serde_json::json!({"code": code, "sent_at": sent_at}).to_string();
                let mut c = kv.conn(crate::kv::Class::Fast);
                let r: Result<(), _> = redis::pipe()
                    .rpush(&key, entry)
                    .ltrim(&key, -(OUTBOX_PER_PHONE as isize), -1)
                    .expire(&key, 86_400)
                    .query_async(&mut c)
                    .await;
                if let Err(e) = r {
                    tracing::warn!(error = %e, "sandbox outbox: redis write failed");
                }
            }
        }
    }

    /// Newest last.
    pub async fn for_phone(&self, phone: &str) -> Vec<OutboxEntry> {
        match self {
            Outbox::Memory(m) => {
                let g = m.lock().unwrap_or_else(|e| e.into_inner());
                g.by_phone.get(phone).cloned().unwrap_or_default()
            }
            Outbox::Redis(kv) => {
                let key = kv.key(&["sbx", "sms", &kv.phone_tag(phone)]);
                let mut c = kv.conn(crate::kv::Class::Fast);
                let raw: Vec<String> =
                    redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).query_async(&mut c).await.unwrap_or_default();
                raw.iter()
                    .filter_map(|r| serde_json::from_str::<serde_json::Value>(r).ok())
                    .filter_map(|v| {
                        Some(OutboxEntry { code: v["code"].as_str()?.to_string(), sent_at: v["sent_at"].as_i64()? })
                    })
                    .collect()
            }
        }
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
                outbox.push(phone.as_str(), code.as_str(), crate::wall::unix_secs() as i64).await;
                tracing::info!(phone = %phone.masked(), "sms code sent (log provider)");
                metrics.sms("log", SmsResult::Ok);
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
                metrics.sms("webhook", if result.is_ok() { SmsResult::Ok } else { SmsResult::Failed });
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

    async fn bounded(o: Outbox, phone: &str) {
        for i in 0..15 {
            o.push(phone, &format!("{i:06}"), i).await;
        }
        let l = o.for_phone(phone).await;
        assert_eq!(l.len(), OUTBOX_PER_PHONE);
        assert_eq!(l.last().unwrap().code, "000014");
        assert_eq!(l.first().unwrap().code, "000005");
    }

    #[tokio::test]
    async fn outbox_is_bounded() {
        bounded(Outbox::default(), "13800138000").await;
    }

    #[tokio::test]
    async fn a_shared_outbox_is_bounded_and_keyed_by_the_phone_hash() {
        let redis = crate::test_redis::RedisServer::start();
        let kv = crate::kv::Kv::new(&redis.url(), "s").unwrap();
        bounded(Outbox::Redis(kv.clone()), "13900139000").await;
        let other_node = Outbox::Redis(crate::kv::Kv::new(&redis.url(), "s").unwrap());
        assert_eq!(other_node.for_phone("13900139000").await.len(), OUTBOX_PER_PHONE, "shared");
        let mut c = kv.conn(crate::kv::Class::Fast);
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut c).await.unwrap();
        assert!(keys.iter().all(|k| k.starts_with("sl:") && !k.contains("13900139000")), "{keys:?}");
    }
}
