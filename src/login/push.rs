//! What each WeChat push does (the callback's business side): login scans drive
//! attempts, follows and unfollows are recorded, text messages get the auto-reply.
//! Returns the passive reply XML (plaintext; the caller seals it) or `None`.

use std::sync::Arc;

use crate::error::ApiError;
use crate::ids::Scene;
use crate::login::{LoginService, ScanResult};
use crate::store::unix_now;
use crate::wechat::AppClient;
use crate::wechat::xml::{Envelope, Push, text_reply};

/// The metric `kind` label of a push.
pub fn kind(push: &Push) -> &'static str {
    match push {
        Push::Subscribe { .. } => "subscribe",
        Push::Scan { .. } => "scan",
        Push::Unsubscribe { .. } => "unsubscribe",
        Push::Text { .. } => "text",
        Push::Other { .. } => "other",
    }
}

/// Handles one authenticated, first-delivery push.
pub async fn handle(
    login: &Arc<LoginService>,
    app: &Arc<AppClient>,
    env: &Envelope,
) -> Result<Option<String>, ApiError> {
    let reply = |text: &str| Some(text_reply(&env.from, &env.to, unix_now() as u64, text));
    match &env.push {
        Push::Subscribe { openid, scene: Some(s) } | Push::Scan { openid, scene: Some(s) } => {
            if matches!(env.push, Push::Subscribe { .. }) {
                login.users.set_subscribed(&app.app_id, openid, true).await?;
            }
            let result = match Scene::parse(s) {
                Some(scene) => login.scanned(app, &scene, openid).await?,
                None => ScanResult::Unknown,
            };
            if result == ScanResult::Registered {
                login.enrich_later(app, openid);
            }
            Ok(match result {
                ScanResult::Registered => reply(&app.replies.logged_in),
                ScanResult::NeedsPhone => reply(&app.replies.bind_phone),
                ScanResult::Unknown => reply(&app.replies.expired),
            })
        }
        Push::Subscribe { openid, scene: None } => {
            login.users.set_subscribed(&app.app_id, openid, true).await?;
            Ok(None)
        }
        Push::Unsubscribe { openid } => {
            login.users.set_subscribed(&app.app_id, openid, false).await?;
            Ok(None)
        }
        Push::Text { .. } if !app.replies.text.is_empty() => Ok(reply(&app.replies.text)),
        Push::Scan { scene: None, .. } | Push::Text { .. } | Push::Other { .. } => Ok(None),
    }
}
