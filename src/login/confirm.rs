//! Confirmation on the phone (docs/api.md "Confirm on the phone"): for an app with
//! `confirm = "always"` a scan does not log anyone in by itself. The attempt goes to
//! `scanned`, the passive reply shows the scanner where the login request came from with
//! a single-use link, and only a confirmation there goes on as the scan would have gone.
//! Against QRLJacking: someone showing a victim a QR code of their own login page.
//!
//! The ticket in the link is the capability: 256 random bits, of which the attempt keeps
//! only the SHA-256; it is never logged, never in a poll answer, never a metric label.

use super::{LoginService, ScanResult, agent};
use crate::engine::{Event, Outcome, Phase, Reply, Requester, UserRef};
use crate::error::ApiError;
use crate::ids::{ConfirmTicket, Scene};
use crate::metrics::labels::Decision;
use crate::wechat::AppClient;

/// What the confirm page shows: the facts of the request waiting for the decision.
#[derive(Debug, Clone)]
pub struct ConfirmView {
    pub app: String,
    pub requester: Option<Requester>,
    /// When the login was asked for (seconds since the epoch), where known.
    pub created_secs: Option<u64>,
}

/// What a decision on the phone did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decided {
    /// Confirmed by a registered user: the page that asked is logged in.
    LoggedIn,
    /// Confirmed by a new user: the page that asked goes on to bind a phone.
    ContinueOnPage,
    /// Denied: the attempt ended.
    Denied,
}

impl LoginService {
    /// A scan by `openid` (account `user`) of an app that asks for confirmation.
    pub(super) async fn scanned_to_confirm(
        &self,
        app: &AppClient,
        scene: &Scene,
        openid: &str,
        user: Option<UserRef>,
    ) -> Result<ScanResult, ApiError> {
        let ticket = ConfirmTicket::generate();
        let ev = Event::ScannedToConfirm { openid: openid.to_string(), user, ticket: ticket.hash() };
        let Some(o) = self.engine.apply_scene(&app.name, scene, ev).await? else { return Ok(ScanResult::Unknown) };
        // Someone else scanned this code first: refused like a used code.
        if o.detail.as_ref().and_then(|d| d.openid.as_deref()) != Some(openid) {
            return Ok(ScanResult::Unknown);
        }
        Ok(match o.phase {
            // This scan made the request: its ticket is the one the attempt waits for.
            Phase::Scanned if o.actions.persist => {
                let requester = o.detail.and_then(|d| d.requester);
                let link = format!("{}/confirm/{}", self.public_url, ticket.as_str());
                ScanResult::Confirm(scan_reply(&app.name, requester.as_ref(), crate::wall::unix_secs(), &link))
            }
            // A second tap of the same person: the first reply's link still works.
            Phase::Scanned => ScanResult::AwaitingConfirm,
            Phase::Reg => ScanResult::Registered,
            Phase::NotReg => ScanResult::NeedsPhone,
            _ => ScanResult::Unknown,
        })
    }

    /// The request `ticket` confirms, while it waits for the decision; `None` when the
    /// ticket is unknown, used, or its attempt is over.
    pub async fn confirm_view(&self, ticket: &ConfirmTicket) -> Result<Option<ConfirmView>, ApiError> {
        let Some(o) = self.engine.peek_ticket(&ticket.hash()).await? else { return Ok(None) };
        if o.phase != Phase::Scanned {
            return Ok(None);
        }
        Ok(o.detail.map(|d| ConfirmView {
            app: d.app,
            requester: d.requester,
            created_secs: d.created_ms.map(|ms| ms / 1000),
        }))
    }

    /// The scanner's decision; `None` when the ticket no longer decides anything
    /// (unknown, used, or its attempt is over). Exactly one decision per ticket is taken.
    pub async fn decide(&self, ticket: &ConfirmTicket, decision: Decision) -> Result<Option<Decided>, ApiError> {
        let hash = ticket.hash();
        let ev = match decision {
            Decision::Confirm => Event::Confirm { ticket: hash },
            Decision::Deny => Event::Deny { ticket: hash },
        };
        let Some(o) = self.engine.apply_ticket(&hash, ev).await? else { return Ok(None) };
        Ok(decided(&o))
    }
}

/// What the step that took a decision did; `None` if it took none.
fn decided(o: &Outcome) -> Option<Decided> {
    if o.reply != Reply::Ok || !o.actions.persist {
        return None;
    }
    match o.phase {
        Phase::Reg => Some(Decided::LoggedIn),
        Phase::NotReg => Some(Decided::ContinueOnPage),
        Phase::Expired => Some(Decided::Denied),
        Phase::Loop | Phase::Scanned => None,
    }
}

/// `secs` as a person in China reads a time: Beijing time, to the minute.
pub fn beijing_time(secs: u64) -> String {
    let t = crate::store::rfc3339(i64::try_from(secs).unwrap_or(i64::MAX - 28_800) + 8 * 3600);
    format!("{} {} (UTC+8)", &t[..10], &t[11..16])
}

/// The passive reply to a scan that asks for confirmation: short, for a phone, in Chinese
/// and English like the other replies. Nothing of the requester's own text goes in as
/// it came: the address is the service's own reading, the browser our own words.
pub fn scan_reply(app: &str, requester: Option<&Requester>, now_secs: u64, link: &str) -> String {
    let (ip, browser) = match requester {
        Some(r) => (r.ip.as_str(), agent::describe(&r.user_agent)),
        None => ("?", agent::describe("")),
    };
    format!(
        "【{app}】登录请求 Login request\n\
         来自 From: {ip}\n\
         浏览器 Browser: {browser}\n\
         时间 Time: {}\n\
         不是你本人发起的，请拒绝。Not you? Deny it.\n\
         确认或拒绝 Confirm or deny:\n{link}",
        beijing_time(now_secs)
    )
}

/// The reply to a second tap while the first reply's link is still waiting.
pub const AWAITING_REPLY: &str =
    "请用刚才收到的链接确认或拒绝这次登录。Confirm or deny this login with the link sent before.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reply_names_the_app_the_address_the_browser_the_time_and_the_link() {
        let r =
            Requester::new("203.0.113.7", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0.0.0 Safari/537.36");
        let link = format!("https://login.example.com/confirm/{}", ConfirmTicket::generate().as_str());
        let text = scan_reply("shop", Some(&r), 1_765_000_000, &link);
        for part in ["【shop】", "203.0.113.7", "Chrome 131 on Windows", "(UTC+8)", &link] {
            assert!(text.contains(part), "{part} missing in {text}");
        }
        // A phone screen's worth (WeChat itself allows 2048 bytes).
        assert!(text.chars().count() < 280, "short enough for a phone: {}", text.chars().count());
    }

    #[test]
    fn a_hostile_user_agent_does_not_reach_the_reply() {
        let r = Requester::new("10.0.0.1", "]]></Content><MsgType>evil</MsgType> <a href=x>Firefox/1");
        let text = scan_reply("a", Some(&r), 0, "l");
        assert!(!text.contains("]]>") && !text.contains('<'), "{text}");
    }

    #[test]
    fn beijing_time_is_eight_hours_ahead() {
        assert_eq!(beijing_time(0), "1970-01-01 08:00 (UTC+8)");
    }
}
