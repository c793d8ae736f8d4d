//! Code mode (docs/api.md "Accounts that cannot make QR codes"): an account that cannot
//! make parametric QR codes shows the person a one-time code to send to it as a text
//! message; the push of that text drives the attempt exactly as a scan by its sender.
//!
//! The code is never stored: the attempt's scene is `c_` + a keyed hash of (app, code)
//! ([`Scene::of_code`]), so the engines' one scene index (the table, Redis `sl:s:…`)
//! is the code index, unique across nodes, restored with the attempt, and a text push
//! finds its attempt the way a scan does. The engines refuse a scene that a live or
//! recently ended attempt holds ([`EngineError::SceneTaken`]); another code is drawn.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use rand::Rng;
use sha2::Sha256;

use super::{LoginService, QrCode, ScanResult, Shown, short_hash};
use crate::engine::{EngineError, NewAttempt, Requester};
use crate::error::ApiError;
use crate::ids::{PollKind, Scene};
use crate::limits::Kind;
use crate::metrics::labels::LimitKind;
use crate::wechat::AppClient;

/// The reply to a code that matches no live login.
pub const WRONG_REPLY: &str =
    "验证码错误或已过期，请查看网页上的验证码。This code is wrong or expired: check the code on the page.";

/// The reply to a sender locked for wrong codes: when to try again.
pub fn locked_reply(retry_after_secs: u64) -> String {
    let minutes = retry_after_secs.div_ceil(60).max(1);
    format!(
        "错误的验证码太多，请{minutes}分钟后再试。Too many wrong codes: try again in {minutes} minute{}.",
        if minutes == 1 { "" } else { "s" }
    )
}

/// Codes drawn before a create gives up (each collides with probability live/10^len).
const DRAWS: usize = 32;

/// The key of the code scenes' keyed hash: without the token secret, a stolen snapshot or
/// a read of Redis does not give the live codes.
pub(super) fn code_scene_key(secret: &crate::config::Secret) -> [u8; 32] {
    secret.derive("login-code/v1")
}

/// A code of `len` digits, uniform: each digit by rejection sampling over random bytes
/// (no modulo bias).
pub fn generate(len: u32) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| {
            loop {
                let b: u8 = rng.random();
                // 250 is the largest multiple of 10 ≤ 256: bytes above it are drawn again.
                if b < 250 {
                    break char::from(b'0' + b % 10);
                }
            }
        })
        .collect()
}

/// The code a text says, if it is one: white space removed, full-width digits folded to
/// ASCII, then exactly `len` digits. Bounded: a long text is not a code.
pub fn normalise(text: &str, len: u32) -> Option<String> {
    if text.len() > 256 {
        return None;
    }
    let folded: String = text
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| match c {
            '０'..='９' => char::from(b'0' + (c as u32 - '０' as u32) as u8),
            c => c,
        })
        .collect();
    (folded.len() == len as usize && folded.bytes().all(|b| b.is_ascii_digit())).then_some(folded)
}

/// The scene of `code` for `app`.
pub(super) fn scene_of(key: &[u8; 32], app: &str, code: &str) -> Scene {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    mac.update(app.as_bytes());
    mac.update(&[0]);
    mac.update(code.as_bytes());
    Scene::of_code(&mac.finalize().into_bytes())
}

impl LoginService {
    /// A code mode attempt of `app`: a fresh code no live or recently ended attempt of the
    /// app holds, on any node.
    pub(super) async fn create_code(
        &self,
        app: &AppClient,
        kind: PollKind,
        requester: Option<Requester>,
    ) -> Result<QrCode, ApiError> {
        let ttl = self.login.qr_ttl_secs;
        for _ in 0..DRAWS {
            let code = generate(self.login.code_length);
            let scene = scene_of(&self.code_scene_key, &app.name, &code);
            let new = NewAttempt {
                app: app.name.clone(),
                ttl: Duration::from_secs(ttl),
                kind,
                requester: requester.clone(),
                scene: Some(scene),
            };
            match self.engine.create_with(new).await {
                Ok(created) => {
                    return Ok(QrCode {
                        poll: created.poll,
                        expires_in: ttl,
                        shown: Shown::Code {
                            code,
                            account_name: app.account_name.clone(),
                            account_qr_url: app.account_qr_url.clone(),
                        },
                    });
                }
                Err(EngineError::SceneTaken) => continue,
                Err(e) => {
                    self.metrics.limit_hit(LimitKind::LiveAttemptsMax);
                    return Err(e.into());
                }
            }
        }
        // So many live codes that a free one is not found: the app's code space is full.
        Err(ApiError::Overloaded { retry_after_secs: 1 })
    }

    /// A text message `text` from `openid` to `app`: the passive reply, or `None` when it
    /// is not a login code (not ours: the account's usual auto-reply, if any).
    pub(super) async fn code_text(
        self: &Arc<Self>,
        app: &Arc<AppClient>,
        openid: &str,
        text: &str,
    ) -> Result<Option<ScanResult>, ApiError> {
        let Some(code) = normalise(text, self.login.code_length) else { return Ok(None) };
        // Charged to the sender: the WeChat user (openids are per account).
        let sender = short_hash(&format!("{}:{openid}", app.app_id));
        if let Some(r) = self.limits.locked(Kind::CodesPerOpenid, &sender).await {
            return Ok(Some(ScanResult::CodesLocked { retry_after_secs: r.retry_after_secs }));
        }
        let scene = scene_of(&self.code_scene_key, &app.name, &code);
        let result = self.scanned(app, &scene, openid).await?;
        if result == ScanResult::Unknown {
            self.limits.wrong_code(Kind::CodesPerOpenid, &sender).await;
            return Ok(Some(ScanResult::WrongCode));
        }
        Ok(Some(result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_their_length_and_every_digit_in_every_place() {
        let mut seen = [[0u32; 10]; 8];
        for _ in 0..2_000 {
            let c = generate(8);
            assert_eq!(c.len(), 8);
            for (i, b) in c.bytes().enumerate() {
                seen[i][usize::from(b - b'0')] += 1;
            }
        }
        // 200 expected per cell; a biased or stuck digit is far off.
        assert!(seen.iter().flatten().all(|n| (120..=290).contains(n)), "{seen:?}");
    }

    #[test]
    fn texts_fold_full_width_digits_and_white_space_and_nothing_else_is_a_code() {
        assert_eq!(normalise(" 48 39\u{3000}20\n", 6).as_deref(), Some("483920"));
        assert_eq!(normalise("４８３９２０", 6).as_deref(), Some("483920"));
        assert_eq!(normalise("48392", 6), None);
        assert_eq!(normalise("4839201", 6), None);
        assert_eq!(normalise("48392a", 6), None);
        assert_eq!(normalise("hello", 6), None);
        assert_eq!(normalise(&"1".repeat(300), 6), None);
    }

    /// The key comes from the token secret's value: two deployments whose secrets print
    /// alike (redacted) still get two keys, so one's codes never match the other's scenes.
    #[test]
    fn the_code_key_is_derived_from_the_secret_value_not_its_display() {
        let (a, b) = (crate::config::Secret::from("first-secret-value"), crate::config::Secret::from("second-value"));
        assert_eq!(format!("{a} {a:?}"), format!("{b} {b:?}"), "both print redacted");
        assert_ne!(code_scene_key(&a), code_scene_key(&b));
        assert_eq!(code_scene_key(&a), code_scene_key(&crate::config::Secret::from("first-secret-value")));
    }

    #[test]
    fn a_scene_is_of_its_app_code_and_key() {
        let (k1, k2) = ([1u8; 32], [2u8; 32]);
        let s = scene_of(&k1, "a", "123456");
        assert_eq!(s, scene_of(&k1, "a", "123456"));
        assert_eq!(s.mode(), crate::ids::LoginMode::Code);
        assert_ne!(s, scene_of(&k1, "b", "123456"));
        assert_ne!(s, scene_of(&k1, "a", "123457"));
        assert_ne!(s, scene_of(&k2, "a", "123456"));
        assert!(!s.as_str().contains("123456"));
    }
}
