//! The login flow: what each API call and each WeChat push does, composed from the
//! engine (attempt state), the user store, WeChat's API, SMS and tokens. It answers in
//! domain terms ([`QrCode`], [`LoginStatus`], …); `crate::api` shapes the HTTP bodies.
//! Pushes, their dedup and reply-time budget are in [`push`]; event streams in [`events`];
//! what operations ask (readiness, shutdown) in [`health`].
//!
//! Order matters for money and safety: the attempt is created before WeChat is asked
//! for a QR code (a full engine spends no quota); `phone_taken` is checked before a
//! code is spent; a failed SMS send is forgotten so the person can retry at once.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::config::{AppKind, LoginSettings, Settings};
use crate::engine::{Event, LoginsHandle, Outcome, Phase, Reply, Requester, UserRef};
use crate::error::ApiError;
use crate::ids::{Phone, PollId, PollKind, Scene, SceneType, SmsCode, mask_phone};
use crate::limits::{HoldSlot, Kind, Limits, Refused};
use crate::metrics::Metrics;
use crate::metrics::labels::{CodeCheck, FallbackErrcode, LimitKind, LoginHow};
use crate::net::ClientInfo;
use crate::sms::SmsSender;
use crate::store::{BindError, LoginRow, Users};
use crate::token::{Revocations, TokenIssuer};
use crate::wechat::dedup::Dedup;
use crate::wechat::{AppClient, WechatClient};

mod agent;
pub mod code;
mod confirm;
mod events;
mod health;
mod provider;
mod push;

pub use agent::describe as describe_agent;
pub use confirm::{ConfirmView, Decided, beijing_time};
pub use events::StatusEvents;
pub use health::Readiness;
pub use provider::ProviderLink;
pub use push::{PushAnswer, PushOutcome, PushPolicy, kind as push_kind};

/// A new attempt, and what the page shows the person: a QR code, or a code to send.
#[derive(Debug, Clone)]
pub struct QrCode {
    /// The browser's secret poll key.
    pub poll: PollId,
    pub expires_in: u64,
    pub shown: Shown,
}

/// What the person is shown to log in.
#[derive(Clone)]
pub enum Shown {
    /// A QR code, as WeChat made it.
    Qr {
        content: String,
        image_url: String,
        /// The picture as a data URI, when asked for.
        image: Option<String>,
    },
    /// Code mode: the code to send to the account, and the account to send it to.
    Code { code: String, account_name: String, account_qr_url: String },
}

impl Shown {
    pub fn mode(&self) -> crate::ids::LoginMode {
        match self {
            Shown::Qr { .. } => crate::ids::LoginMode::Qr,
            Shown::Code { .. } => crate::ids::LoginMode::Code,
        }
    }
}

/// The code stays out of debug output (and so out of logs).
impl std::fmt::Debug for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shown::Qr { content, .. } => f.debug_struct("Qr").field("content", content).finish_non_exhaustive(),
            Shown::Code { account_name, .. } => {
                f.debug_struct("Code").field("account_name", account_name).finish_non_exhaustive()
            }
        }
    }
}

/// A token handed out now, and whose it is (phone masked).
#[derive(Debug, Clone)]
pub struct LoggedIn {
    pub token: String,
    pub expires_in: u64,
    pub user_id: String,
    pub phone: Option<String>,
}

/// Where an attempt stands, as a poll, an event stream or a bind learns it.
#[derive(Debug, Clone)]
pub struct LoginStatus {
    pub phase: Phase,
    /// Seconds left while the login is still in progress (`loop`, `scanned`, `not_reg`).
    pub expires_in: Option<u64>,
    /// Why an `expired` attempt ended, when the contract names it (`denied`).
    pub reason: Option<&'static str>,
    pub login: Option<LoggedIn>,
    /// A provider attempt's `reg`: where the browser goes on (never with a token).
    pub redirect: Option<String>,
}

/// A code sent by SMS.
#[derive(Debug, Clone, Copy)]
pub struct SmsSent {
    pub resend_after: u64,
    pub expires_in: u64,
}

/// A token holder's account (phone masked) and its latest logins, newest first.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: String,
    pub phone: Option<String>,
    /// Seconds since the epoch.
    pub created_at: i64,
    pub recent_logins: Vec<LoginRow>,
}

/// What a scan did, for the passive reply text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanResult {
    Registered,
    NeedsPhone,
    /// The app asks for confirmation: this reply (with its link) goes to the scanner.
    Confirm(String),
    /// A second tap while the first reply's link waits.
    AwaitingConfirm,
    /// No live attempt has this scene (expired, consumed or never ours).
    Unknown,
    /// Code mode: a text of a code's length that matches no live code.
    WrongCode,
    /// Code mode: the sender sent too many wrong codes; every code is refused for now.
    CodesLocked {
        retry_after_secs: u64,
    },
}

pub struct LoginService {
    engine: LoginsHandle,
    users: Users,
    wechat: Arc<WechatClient>,
    tokens: TokenIssuer,
    sms: SmsSender,
    metrics: Metrics,
    limits: Arc<Limits>,
    revocations: Revocations,
    push: PushPolicy,
    login: LoginSettings,
    sms_resend_secs: u64,
    /// Key of the SMS-code HMAC: a stolen snapshot does not reveal codes by brute force
    /// without the server secret.
    code_key: [u8; 32],
    /// Key of the code mode scenes' HMAC ([`code`]).
    code_scene_key: [u8; 32],
    /// The OpenID Connect provider's link, when it is on.
    provider: Option<ProviderLink>,
    /// `server.public_url` without its trailing slash: the confirmation links' base.
    public_url: String,
}

impl LoginService {
    #[allow(clippy::too_many_arguments)] // the service is where these parts meet
    pub fn new(
        settings: &Settings,
        engine: LoginsHandle,
        users: Users,
        wechat: Arc<WechatClient>,
        sms: SmsSender,
        metrics: Metrics,
        limits: Arc<Limits>,
        revocations: Revocations,
        dedup: Dedup,
        tokens: TokenIssuer,
    ) -> Self {
        let code_key = code_key(&settings.token.secret);
        let code_scene_key = code::code_scene_key(&settings.token.secret);
        Self {
            engine,
            users,
            wechat,
            tokens,
            sms,
            metrics,
            limits,
            revocations,
            push: PushPolicy {
                dedup,
                budget: Duration::from_millis(settings.wechat.callback_budget_ms),
                // A test's window between claim and processing; never outside the sandbox.
                test_delay: (settings.wechat.sandbox && settings.wechat.test_push_delay_ms > 0)
                    .then(|| Duration::from_millis(settings.wechat.test_push_delay_ms)),
            },
            login: settings.login.clone(),
            sms_resend_secs: settings.limits.sms_resend_secs,
            code_key,
            code_scene_key,
            provider: None,
            public_url: settings.server.public_url.trim_end_matches('/').to_string(),
        }
    }

    /// How tokens are signed (and the keyring, for the JWK Set).
    pub fn tokens(&self) -> &TokenIssuer {
        &self.tokens
    }

    fn code_hash(&self, poll: &PollId, phone: &Phone, code: &SmsCode) -> [u8; 32] {
        code_hash(&self.code_key, poll, phone, code)
    }

    /// The user database.
    pub fn users(&self) -> &Users {
        &self.users
    }

    /// The configured official accounts.
    pub fn wechat(&self) -> &WechatClient {
        &self.wechat
    }

    pub fn long_poll_max(&self) -> Duration {
        Duration::from_secs(self.login.long_poll_max_secs)
    }

    fn app(&self, name: Option<&str>) -> Result<&Arc<AppClient>, ApiError> {
        match name {
            None => Ok(self.wechat.first()),
            Some(n) => self.wechat.by_name(n).ok_or(ApiError::UnknownApp),
        }
    }

    /// Charges one QR request to `client`. Called before the request is even parsed, so
    /// requests refused for any reason (malformed, over a limit) count too.
    pub async fn charge_qr(&self, client: &ClientInfo) -> Result<(), ApiError> {
        // Per address, and many addresses of one allocation (an IPv6 /56 or /48, an IPv4
        // /24) as one.
        self.limits.charge_qr(client.ip).await.map_err(limited)
    }

    /// Past the share of the app's day open to everyone, only an address with a login in
    /// the last 30 days gets a QR code: a drain from many new addresses leaves the rest
    /// of the day's quota to the people who use the service.
    async fn check_reserve(&self, app: &str, client: &ClientInfo) -> Result<(), ApiError> {
        if !self.limits.in_reserve(self.limits.qr_used_today(app)) {
            return Ok(());
        }
        let since = crate::wall::unix_secs().saturating_sub(RETURNING_SECS) as i64;
        // A database that cannot answer is no proof of a returning user.
        match self.users.logged_in_from(&client.bucket().to_string(), since).await {
            Ok(true) => Ok(()),
            Ok(false) | Err(_) => Err(limited(self.limits.reserve_refused())),
        }
    }

    /// `POST /api/v1/login/qrcode` (after [`LoginService::charge_qr`]).
    pub async fn create_qr(
        &self,
        app: Option<&str>,
        scene_type: &SceneType,
        image: bool,
        client: &ClientInfo,
    ) -> Result<QrCode, ApiError> {
        self.create_qr_for(app, scene_type, image, client, PollKind::Direct).await
    }

    /// A QR create for an attempt whose answers go to `kind` (the provider's login page
    /// makes [`PollKind::Provider`] ones, after the same charges).
    pub async fn create_qr_for(
        &self,
        app: Option<&str>,
        scene_type: &SceneType,
        image: bool,
        client: &ClientInfo,
        kind: PollKind,
    ) -> Result<QrCode, ApiError> {
        let app = self.app(app)?;
        self.check_reserve(&app.name, client).await?;
        let ttl = self.login.qr_ttl_secs;
        // Who asked, as this service saw it: shown to the scanner (confirm on the phone).
        let requester = Requester::new(&client.ip.to_string(), &client.user_agent);
        if app.kind == AppKind::Subscription {
            let made = self.create_code(app, kind, Some(requester)).await?;
            self.metrics.created(&app.name, scene_type.as_str());
            return Ok(made);
        }
        let created = self
            .engine
            .create_by(&app.name, Duration::from_secs(ttl), kind, Some(requester.clone()))
            .await
            .inspect_err(|_| self.metrics.limit_hit(LimitKind::LiveAttemptsMax))?;
        if let Err(r) = self.limits.hit(Kind::QrPerApp, &app.name).await {
            let _ = self.engine.apply(&created.poll, Event::Discard).await;
            return Err(limited(r));
        }
        self.metrics.qr_quota_charged(&app.name);
        let result = async {
            let ticket = app.create_qr(created.scene.as_str(), ttl).await?;
            let qr_image = if image {
                let img = app.show_qr(&ticket.ticket).await?;
                Some(format!("data:{};base64,{}", img.content_type, STANDARD.encode(&img.bytes)))
            } else {
                None
            };
            Ok::<_, crate::wechat::WechatError>((ticket, qr_image))
        }
        .await;
        match result {
            Ok((ticket, qr_image)) => {
                self.metrics.created(&app.name, scene_type.as_str());
                Ok(QrCode {
                    poll: created.poll,
                    expires_in: ttl,
                    shown: Shown::Qr {
                        content: ticket.url,
                        image_url: app.show_qr_url(&ticket.ticket),
                        image: qr_image,
                    },
                })
            }
            Err(e) => {
                // No attempt is left behind for a QR code that does not exist.
                let _ = self.engine.apply(&created.poll, Event::Discard).await;
                tracing::warn!(app = %app.name, error = %e, "qrcode creation failed");
                // WeChat refuses this account QR codes (permission, quota): code mode.
                let fallback = e.errcode().and_then(FallbackErrcode::of).filter(|_| app.code_fallback);
                let Some(errcode) = fallback else { return Err(ApiError::Wechat(e.public())) };
                let made = self.create_code(app, kind, Some(requester)).await?;
                self.metrics.code_fallback(&app.name, errcode);
                self.metrics.created(&app.name, scene_type.as_str());
                Ok(made)
            }
        }
    }

    /// The answer that hands out a token: written to the login audit first.
    /// A provider attempt (`poll`) answers with a continue URL instead.
    async fn token_answer(
        &self,
        poll: &PollId,
        user: UserRef,
        how: LoginHow,
        app: &str,
        client: &ClientInfo,
    ) -> LoginStatus {
        self.metrics.login(app, how);
        if let Err(e) =
            self.users.record_login(&user.id, app, how.label(), &client.ip.to_string(), &client.user_agent).await
        {
            // The attempt is already consumed: losing the audit row beats losing the login.
            tracing::error!(error = %e, "could not record a login in the audit");
        }
        if let Some(answer) = self.continue_answer(poll, &user, how).await {
            return answer;
        }
        let issued = self.tokens.issue(&user.id, crate::wall::unix_secs());
        LoginStatus {
            phase: Phase::Reg,
            expires_in: None,
            reason: None,
            login: Some(LoggedIn {
                token: issued.token,
                expires_in: issued.expires_in,
                user_id: user.id,
                phone: user.phone.as_deref().map(mask_phone),
            }),
            redirect: None,
        }
    }

    /// One of the held-poll slots of the client's address, for a held status poll or an
    /// event stream alike; `None` when the address has none left.
    fn hold_slot(&self, client: &ClientInfo) -> Option<HoldSlot> {
        self.limits.hold(client.ip)
    }

    /// `GET /api/v1/login/status`. A client over its held-poll share is answered at once.
    pub async fn status(&self, poll: &PollId, wait: Duration, client: &ClientInfo) -> Result<LoginStatus, ApiError> {
        let mut wait = wait.min(self.long_poll_max());
        let _slot = if wait.is_zero() {
            None
        } else {
            let slot = self.hold_slot(client);
            if slot.is_none() {
                wait = Duration::ZERO;
            }
            slot
        };
        let o = self.engine.poll(poll, wait).await?;
        Ok(self.answer(poll, o, client).await)
    }

    /// The status of what the engine told a poll or an event stream (a token answer is
    /// issued here, and audited).
    pub async fn answer(&self, poll: &PollId, o: Outcome, client: &ClientInfo) -> LoginStatus {
        let app = o.detail.as_ref().map(|d| d.app.clone()).unwrap_or_default();
        let reason = o.reason();
        match (o.reply, o.phase) {
            (Reply::Token(user), _) => self.token_answer(poll, user, LoginHow::Scan, &app, client).await,
            (_, phase @ (Phase::Loop | Phase::NotReg | Phase::Scanned)) => {
                LoginStatus { phase, expires_in: Some(o.expires_in), reason: None, login: None, redirect: None }
            }
            (_, phase) => LoginStatus { phase, expires_in: None, reason, login: None, redirect: None },
        }
    }

    /// A `subscribe`/`SCAN` for `scene` by `openid` arrived on the callback of `app`.
    async fn scanned(&self, app: &AppClient, scene: &Scene, openid: &str) -> Result<ScanResult, ApiError> {
        let user = self.users.find_by_openid(&app.app_id, openid).await?;
        if app.confirm == crate::config::ConfirmMode::Always {
            return self.scanned_to_confirm(app, scene, openid, user).await;
        }
        let ev = Event::Scanned { openid: openid.to_string(), user };
        let outcome = self.engine.apply_scene(&app.name, scene, ev).await?;
        // Someone else scanned this code first: it is not this person's to go on with.
        let theirs = |o: &Outcome| o.detail.as_ref().is_some_and(|d| d.openid.as_deref() == Some(openid));
        Ok(match outcome {
            Some(o) if o.phase == Phase::Reg && theirs(&o) => ScanResult::Registered,
            Some(o) if o.phase == Phase::NotReg && theirs(&o) => ScanResult::NeedsPhone,
            _ => ScanResult::Unknown,
        })
    }

    fn refused(&self, reply: Reply, what: &str) -> ApiError {
        match reply {
            Reply::Expired => ApiError::Expired,
            Reply::RateLimited { retry_after_secs } => {
                self.metrics.limit_hit(LimitKind::SmsPerAttempt);
                ApiError::RateLimited { what: "too many codes for this login; wait".into(), retry_after_secs }
            }
            Reply::InvalidCode { attempts_left } | Reply::NoCodeForPhone { attempts_left } => {
                ApiError::InvalidCode { attempts_left }
            }
            _ => ApiError::WrongState(format!("{what} is only possible after a scan by a user without an account")),
        }
    }

    /// Fetches `user/info` in the background and stores the `unionid` when WeChat gives
    /// one, once per identity; never delays the caller (the callback must answer fast).
    fn enrich_later(self: &Arc<Self>, app: &Arc<AppClient>, openid: &str) {
        let (me, app, openid) = (Arc::clone(self), Arc::clone(app), openid.to_string());
        actix_web::rt::spawn(async move {
            if !me.users.lacks_unionid(&app.app_id, &openid).await.unwrap_or(false) {
                return;
            }
            match app.user_info(&openid).await {
                Ok(info) => {
                    if let Some(u) = info.unionid.filter(|u| !u.is_empty() && u.len() <= 128)
                        && let Err(e) = me.users.set_unionid(&app.app_id, &openid, &u).await
                    {
                        tracing::warn!(app = %app.name, error = %e, "could not store unionid");
                    }
                }
                Err(e) => tracing::warn!(app = %app.name, error = %e, "user/info failed"),
            }
        });
    }

    /// `POST /api/v1/login/sms-code`: the attempt reserves the code (state and
    /// per-attempt limits), then the per-address limit is charged and only then the
    /// per-phone ones (a client over its own cap costs the phone's owner nothing); any
    /// refusal or a failed send un-reserves it. An address locked for wrong codes gets
    /// no more codes.
    pub async fn send_sms(&self, poll: &PollId, phone: &Phone, client: &ClientInfo) -> Result<SmsSent, ApiError> {
        let ip = client.bucket().to_string();
        if let Some(r) = self.limits.locked(Kind::CodeFailuresPerIp, &ip).await {
            return Err(limited(r));
        }
        let code = SmsCode::generate();
        let hash = self.code_hash(poll, phone, &code);
        let ttl_ms = self.login.sms_code_ttl_secs * 1000;
        let o = self.engine.apply(poll, Event::CodeIssued { phone: phone.as_str().to_string(), hash, ttl_ms }).await?;
        // The machine reserved a code only when it says to send one.
        if !o.actions.send_sms {
            return Err(self.refused(o.reply, "sending a code"));
        }
        for (kind, key) in
            // The deployment's budget last: a request refused for its own client's sake
            // spends none of it.
            [
                (Kind::SmsPerIp, ip.as_str()),
                (Kind::SmsResend, phone.as_str()),
                (Kind::SmsPerPhone, phone.as_str()),
                (Kind::SmsPerDay, "deployment"),
            ]
        {
            if let Err(r) = self.limits.hit(kind, key).await {
                let _ = self.engine.apply(poll, Event::CodeFailed { hash }).await;
                return Err(limited(r));
            }
        }
        self.metrics.sms_budget_charged();
        let expires_in = self.login.sms_code_ttl_secs.min(o.expires_in);
        if self.sms.send(phone, &code, expires_in).await.is_err() {
            let _ = self.engine.apply(poll, Event::CodeFailed { hash }).await;
            return Err(ApiError::SmsFailed);
        }
        Ok(SmsSent { resend_after: self.sms_resend_secs, expires_in })
    }

    /// `POST /api/v1/login/bind-phone`.
    pub async fn bind_phone(
        self: &Arc<Self>,
        poll: &PollId,
        phone: &Phone,
        code: &SmsCode,
        client: &ClientInfo,
    ) -> Result<LoginStatus, ApiError> {
        self.charge_bind(poll, client).await?;
        let ip = client.bucket().to_string();
        if let Some(r) = self.limits.locked(Kind::CodeFailuresPerIp, &ip).await {
            return Err(limited(r));
        }
        let peek = self.engine.peek(poll).await?;
        match peek.phase {
            Phase::Expired => return Err(ApiError::Expired),
            Phase::NotReg => {}
            _ => return Err(self.refused(Reply::WrongState, "binding a phone")),
        }
        let detail = peek.detail.ok_or(ApiError::Expired)?;
        let app = self.wechat.by_name(&detail.app).ok_or_else(|| ApiError::internal("attempt of an unknown app"))?;
        let openid = detail.openid.ok_or_else(|| ApiError::internal("not_reg without openid"))?;
        // Wrong codes cost the guesser: the WeChat user who scanned, and the address.
        let guesser = short_hash(&format!("{}:{openid}", app.app_id));
        if let Some(r) = self.limits.locked(Kind::CodeFailuresPerOpenid, &guesser).await {
            return Err(limited(r));
        }
        // Refuse a taken phone before the code is spent.
        match self.users.check_bindable(&app.app_id, &openid, phone.as_str()).await {
            Err(BindError::PhoneTaken) => return Err(ApiError::PhoneTaken),
            Err(BindError::Db(e)) => return Err(e.into()),
            Ok(()) => {}
        }
        let hash = self.code_hash(poll, phone, code);
        let o = self.engine.apply(poll, Event::CodeEntered { phone: phone.as_str().to_string(), hash }).await?;
        let openid = match o.reply {
            Reply::CodeAccepted { openid } => {
                self.metrics.code_check(CodeCheck::Ok);
                openid
            }
            other => {
                let wrong = matches!(other, Reply::InvalidCode { .. } | Reply::NoCodeForPhone { .. });
                self.metrics.code_check(if wrong { CodeCheck::Wrong } else { CodeCheck::Refused });
                // Charged to whoever guessed, never to the phone guessed at.
                if wrong {
                    self.limits.wrong_code(Kind::CodeFailuresPerOpenid, &guesser).await;
                    self.limits.wrong_code(Kind::CodeFailuresPerIp, &ip).await;
                }
                return Err(self.refused(other, "binding a phone"));
            }
        };
        let user = match self.users.bind(&app.app_id, &openid, phone.as_str()).await {
            Ok(u) => u,
            Err(BindError::PhoneTaken) => return Err(ApiError::PhoneTaken),
            Err(BindError::Db(e)) => return Err(e.into()),
        };
        self.enrich_later(app, &openid);
        let o = self.engine.apply(poll, Event::Bound { user }).await?;
        match o.reply {
            Reply::Token(user) => Ok(self.token_answer(poll, user, LoginHow::Bind, &app.name, client).await),
            other => Err(self.refused(other, "binding a phone")),
        }
    }

    /// Charges one bind-phone call to the client's address and to the attempt (by a hash
    /// of its poll id: limit keys never hold the secret itself), before anything is
    /// looked up: every call can probe whether a phone is taken.
    async fn charge_bind(&self, poll: &PollId, client: &ClientInfo) -> Result<(), ApiError> {
        self.limits.hit_address(Kind::BindPerIp, client.ip).await.map_err(limited)?;
        let attempt = short_hash(poll.as_str());
        self.limits.hit(Kind::BindPerAttempt, &attempt).await.map_err(limited)
    }

    pub async fn claims(&self, bearer: &str) -> Result<crate::token::Claims, ApiError> {
        let claims = self.tokens.verify(bearer).ok_or(ApiError::Unauthorized)?;
        // Revoked, or its user logged out everywhere by an operator after it was issued.
        if self.revocations.refuses(&claims).await {
            return Err(ApiError::Unauthorized);
        }
        // A provider access token ends with its session (RP-initiated logout).
        if let Some(sid) = &claims.sid
            && self.provider_session_over(sid).await
        {
            return Err(ApiError::Unauthorized);
        }
        Ok(claims)
    }

    /// `GET /api/v1/me`.
    pub async fn me(&self, bearer: &str) -> Result<Account, ApiError> {
        let claims = self.claims(bearer).await?;
        let user = self.users.get(&claims.sub).await?.ok_or(ApiError::Unauthorized)?;
        let recent_logins = self.users.recent_logins(&user.id, 5).await?;
        Ok(Account {
            id: user.id,
            phone: user.phone.as_deref().map(mask_phone),
            created_at: user.created_at,
            recent_logins,
        })
    }

    /// `POST /api/v1/logout`: the token is refused from now until it would have expired.
    pub async fn logout(&self, bearer: &str) -> Result<(), ApiError> {
        let claims = self.claims(bearer).await?;
        self.revocations.revoke(&claims).await.map_err(ApiError::Internal)
    }
}

/// How recent a login must be for its address to count as a returning user's.
const RETURNING_SECS: u64 = 30 * 86_400;

/// The key of the SMS codes' keyed hashes: derived from the token secret's *value* (its
/// display is redacted, and a key derived from that would be the same public constant in
/// every deployment, letting anyone who reads a snapshot brute-force its 6 digits).
fn code_key(secret: &crate::config::Secret) -> [u8; 32] {
    secret.derive("sms-code/v1")
}

/// What stands for an identifier in a limit's key: 128 bits of its SHA-256, in hex (the
/// key never holds a poll id or an openid itself).
fn short_hash(id: &str) -> String {
    hex::encode(&Sha256::digest(id.as_bytes())[..16])
}

/// The keyed hash an attempt keeps of the code it sent (the code itself is never stored).
fn code_hash(key: &[u8; 32], poll: &PollId, phone: &Phone, code: &SmsCode) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    for part in [poll.as_str(), phone.as_str(), code.as_str()] {
        mac.update(part.as_bytes());
        mac.update(&[0]);
    }
    mac.finalize().into_bytes().into()
}

fn limited(r: Refused) -> ApiError {
    ApiError::RateLimited { what: r.message().to_string(), retry_after_secs: r.retry_after_secs }
}

#[cfg(test)]
mod code_key_tests {
    use super::*;

    /// A code hash kept in a snapshot verifies only under its own deployment's secret:
    /// whoever reads a snapshot cannot try the million codes offline without the secret.
    #[test]
    fn two_secrets_give_two_code_keys_and_a_hash_does_not_verify_under_another() {
        let (a, b) = (crate::config::Secret::from("deployment A's secret"), crate::config::Secret::from("B's"));
        assert_ne!(code_key(&a), code_key(&b));
        let poll = PollId::generate();
        let phone = Phone::parse("13800138000").unwrap();
        let code = SmsCode::generate();
        let kept = code_hash(&code_key(&a), &poll, &phone, &code);
        assert_eq!(kept, code_hash(&code_key(&a), &poll, &phone, &code));
        assert_ne!(kept, code_hash(&code_key(&b), &poll, &phone, &code));
    }
}
