//! The JSON bodies of the login and account answers (docs/api.md), built from the login
//! service's domain results; their schemas feed the OpenAPI document.

use serde::Serialize;

use crate::ids::LoginMode;
use crate::login::{Account, LoginStatus, QrCode, Shown, SmsSent};
use crate::store::rfc3339;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QrAnswer {
    /// The browser's secret poll key.
    #[schema(pattern = "^[A-Za-z0-9_-]{22,64}$", example = "nq2uTBv3JXbWQm5Pq1hkOM7o3bRzA8a4fH0lX2rS9dE")]
    pub uuid: String,
    #[schema(example = 300)]
    pub expires_in: u64,
    /// `qr`: scan the QR code; `code`: send the code to the account (code mode).
    #[schema(value_type = String, pattern = "^(qr|code)$", example = "qr")]
    pub mode: LoginMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "http://weixin.qq.com/q/02abcdEFgh")]
    pub qr_content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket=gQH47joAAAAAAAAAASxodHRw")]
    pub qr_image_url: Option<String>,
    /// The picture as a data URI; absent with `image: false`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "data:image/png;base64,iVBORw0KGgo=")]
    pub qr_image: Option<String>,
    /// Code mode: the code the person sends to the account as a text message.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[0-9]{6,8}$", example = "483920")]
    pub code: Option<String>,
    /// Code mode: the account's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_name: Option<String>,
    /// Code mode: the account's own follow QR picture.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_qr_url: Option<String>,
}

#[derive(Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct UserView {
    pub id: String,
    pub phone: Option<String>,
}

/// The body of a status answer (and of a successful bind).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"status": 2, "state": "loop", "expires_in": 287}))]
pub struct StatusAnswer {
    /// 2 `loop`, 4 `not_reg`, 3 `reg`, 1 `expired` (the original Java design's codes);
    /// 5 `scanned` (waiting for the confirmation on the phone).
    #[schema(minimum = 1, maximum = 5)]
    pub status: u8,
    #[schema(value_type = crate::api::openapi::LoginState)]
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
    /// Why an `expired` attempt ended, when known: `denied` (the person tapped Deny on
    /// the phone) or `ended` (an operator ended it).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::api::openapi::ExpiredReason>)]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "Bearer")]
    pub token_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_expires_in: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<UserView>,
    /// An attempt of the OpenID Connect provider's login page answers `reg` with where
    /// the browser goes on (single use), never with a token.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "https://login.example.com/oidc/continue/3fQm0aJp9W1xRkq8ZbT2nV5cYh7LdE4sUo6iGfXwBvA")]
    pub redirect: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"resend_after": 60, "expires_in": 300}))]
pub struct SmsAnswer {
    pub resend_after: u64,
    pub expires_in: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MeAnswer {
    pub id: String,
    pub phone: Option<String>,
    #[schema(format = DateTime, example = "2026-05-01T08:00:00Z")]
    pub created_at: String,
    /// The last 5 logins, newest first, so a user can notice one that was not theirs.
    pub recent_logins: Vec<LoginView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LoginView {
    pub at: String,
    pub app: String,
    /// `scan` or `bind`.
    pub how: String,
    pub ip: String,
    pub user_agent: String,
}

impl From<QrCode> for QrAnswer {
    fn from(q: QrCode) -> Self {
        let mut a = Self {
            uuid: q.poll.as_str().to_string(),
            expires_in: q.expires_in,
            mode: q.shown.mode(),
            qr_content: None,
            qr_image_url: None,
            qr_image: None,
            code: None,
            account_name: None,
            account_qr_url: None,
        };
        match q.shown {
            Shown::Qr { content, image_url, image } => {
                (a.qr_content, a.qr_image_url, a.qr_image) = (Some(content), Some(image_url), image);
            }
            Shown::Code { code, account_name, account_qr_url } => {
                (a.code, a.account_name, a.account_qr_url) = (Some(code), Some(account_name), Some(account_qr_url));
            }
        }
        a
    }
}

impl From<LoginStatus> for StatusAnswer {
    fn from(s: LoginStatus) -> Self {
        let (token, token_type, token_expires_in, user) = match s.login {
            Some(l) => {
                (Some(l.token), Some("Bearer"), Some(l.expires_in), Some(UserView { id: l.user_id, phone: l.phone }))
            }
            None => (None, None, None, None),
        };
        Self {
            status: s.phase.code(),
            state: s.phase.name(),
            expires_in: s.expires_in,
            reason: s.reason,
            token,
            token_type,
            token_expires_in,
            user,
            redirect: s.redirect,
        }
    }
}

impl From<SmsSent> for SmsAnswer {
    fn from(s: SmsSent) -> Self {
        Self { resend_after: s.resend_after, expires_in: s.expires_in }
    }
}

impl From<Account> for MeAnswer {
    fn from(a: Account) -> Self {
        Self {
            id: a.id,
            phone: a.phone,
            created_at: rfc3339(a.created_at),
            recent_logins: a.recent_logins.into_iter().map(LoginView::from).collect(),
        }
    }
}

impl From<crate::store::LoginRow> for LoginView {
    fn from(r: crate::store::LoginRow) -> Self {
        Self { at: rfc3339(r.at), app: r.app, how: r.how, ip: r.ip, user_agent: r.user_agent }
    }
}
