//! WeChat pushes behind the login service: dedup, the reply-time budget and what each
//! push does (login scans drive attempts, follows and unfollows are recorded, text
//! messages get the auto-reply). The HTTP handler only opens and seals.
//!
//! A push is acknowledged only once what it did is stored (docs/wechat.md, the 5-second
//! rule): the work runs in its own task and the answer waits for it at most the callback
//! budget. Done in time: [`PushAnswer::Done`] with the passive reply. Not done:
//! [`PushAnswer::NotStored`], so WeChat is not told `success` and sends the push again;
//! the task goes on and records its reply under the dedup key, where the retry finds it.
//! A duplicate waits for the first delivery's outcome, and takes the claim over when the
//! first one's holder died.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{LoginService, ScanResult};
use crate::error::ApiError;
use crate::ids::Scene;
use crate::metrics::labels::CallbackKind;
use crate::wall::unix_secs;
use crate::wechat::AppClient;
use crate::wechat::dedup::{Claim, Dedup};
use crate::wechat::xml::{Envelope, Push, text_reply};

/// What to tell WeChat about one delivery of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushAnswer {
    /// Processed and stored: acknowledge, with this passive reply (plaintext; `None`:
    /// "nothing to say").
    Done(Option<String>),
    /// An earlier delivery of the same push was processed and stored: its reply.
    Duplicate(Option<String>),
    /// Not stored within the budget (still running, here or on another delivery): do
    /// not acknowledge; WeChat must send it again.
    NotStored,
}

/// How pushes are answered: dedup, the budget (also the dedup lease), and the test-only
/// pause between claim and processing.
#[derive(Clone)]
pub struct PushPolicy {
    pub dedup: Dedup,
    pub budget: Duration,
    pub test_delay: Option<Duration>,
}

/// The metric `kind` label of a push.
pub fn kind(push: &Push) -> CallbackKind {
    match push {
        Push::Subscribe { .. } => CallbackKind::Subscribe,
        Push::Scan { .. } => CallbackKind::Scan,
        Push::Unsubscribe { .. } => CallbackKind::Unsubscribe,
        Push::Text { .. } => CallbackKind::Text,
        Push::Other { .. } => CallbackKind::Other,
    }
}

impl LoginService {
    /// One authenticated delivery of `env` to `app`; `key` is its dedup key within the app.
    pub async fn on_push(self: &Arc<Self>, app: &Arc<AppClient>, env: Envelope, key: &str) -> PushOutcome {
        let start = Instant::now();
        let policy = &self.push;
        let key = format!("{}|{key}", app.app_id);
        match policy.dedup.claim(&key, policy.budget, policy.budget).await {
            Claim::Done(reply) => return Ok(PushAnswer::Duplicate(reply)),
            Claim::InFlight => return Ok(PushAnswer::NotStored),
            Claim::First => {}
        }
        let work = {
            let (me, app, dedup, delay) = (self.clone(), app.clone(), policy.dedup.clone(), policy.test_delay);
            let key = key.clone();
            actix_web::rt::spawn(async move {
                if let Some(d) = delay {
                    // What a crash test waits for: the claim is held from here on.
                    tracing::info!(delay_ms = d.as_millis(), "push claimed; held by wechat.test_push_delay_ms");
                    tokio::time::sleep(d).await;
                }
                let result = me.handle_push(&app, &env).await;
                match &result {
                    Ok(reply) => dedup.complete(&key, reply.as_deref()).await,
                    Err(_) => dedup.release(&key).await,
                }
                result
            })
        };
        // A retry that waited for a lapsed lease still gets a fair share of WeChat's 5 s.
        let left = policy.budget.saturating_sub(start.elapsed()).max(policy.budget / 3);
        match tokio::time::timeout(left, work).await {
            Ok(Ok(Ok(reply))) => Ok(PushAnswer::Done(reply)),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(join)) => {
                policy.dedup.release(&key).await;
                Err(ApiError::internal(format!("push task failed: {join}")))
            }
            Err(_) => Ok(PushAnswer::NotStored),
        }
    }

    /// What one first delivery does; the passive reply XML (plaintext) or `None`.
    async fn handle_push(self: &Arc<Self>, app: &Arc<AppClient>, env: &Envelope) -> Result<Option<String>, ApiError> {
        let reply = |text: &str| Some(text_reply(&env.from, &env.to, unix_secs(), text));
        match &env.push {
            Push::Subscribe { openid, scene: Some(s) } | Push::Scan { openid, scene: Some(s) } => {
                if matches!(env.push, Push::Subscribe { .. }) {
                    self.users.set_subscribed(&app.app_id, openid, true).await?;
                }
                let result = match Scene::parse(s) {
                    Some(scene) => self.scanned(app, &scene, openid).await?,
                    None => ScanResult::Unknown,
                };
                if result == ScanResult::Registered {
                    self.enrich_later(app, openid);
                }
                Ok(reply(&code_reply(app, result)))
            }
            Push::Subscribe { openid, scene: None } => {
                self.users.set_subscribed(&app.app_id, openid, true).await?;
                Ok(None)
            }
            Push::Unsubscribe { openid } => {
                self.users.set_subscribed(&app.app_id, openid, false).await?;
                Ok(None)
            }
            Push::Text { openid, content, .. } => match self.code_text(app, openid, content).await? {
                Some(result) => {
                    if result == ScanResult::Registered {
                        self.enrich_later(app, openid);
                    }
                    Ok(reply(&code_reply(app, result)))
                }
                None if !app.replies.text.is_empty() => Ok(reply(&app.replies.text)),
                None => Ok(None),
            },
            Push::Scan { scene: None, .. } | Push::Other { .. } => Ok(None),
        }
    }
}

/// The passive reply text of what a scan (or a code sent in code mode) did.
fn code_reply(app: &AppClient, result: ScanResult) -> String {
    match result {
        ScanResult::Registered => app.replies.logged_in.clone(),
        ScanResult::NeedsPhone => app.replies.bind_phone.clone(),
        ScanResult::Confirm(text) => text,
        ScanResult::AwaitingConfirm => super::confirm::AWAITING_REPLY.to_string(),
        ScanResult::Unknown => app.replies.expired.clone(),
        ScanResult::WrongCode => super::code::WRONG_REPLY.to_string(),
        ScanResult::CodesLocked { retry_after_secs } => super::code::locked_reply(retry_after_secs),
    }
}

/// [`LoginService::on_push`]'s answer; an error is not an acknowledgement either.
pub type PushOutcome = Result<PushAnswer, ApiError>;
