//! Plays WeChat's servers: builds the pushes WeChat sends (scan events, other events,
//! text messages), signs them with the account's Token, encrypts them for a safe-mode
//! account, and posts them straight to the service's callback.

use std::time::{SystemTime, UNIX_EPOCH};

use scanlogin::sandbox::{PushSender, SignedPush, sign_push};
use scanlogin::wechat::crypto::AesKey;
use scanlogin::wechat::xml::{cdata, event_xml};

use crate::api::Api;
use crate::report::Recorder;

/// One push ready to (re)send: WeChat retries send the same message again.
pub type Push = SignedPush;

pub struct Wechat {
    app_id: String,
    token: String,
    aes: Option<AesKey>,
    /// The account's original id (`gh_…`), the pushes' `ToUserName`.
    account: String,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Wechat {
    pub fn new(app_id: &str, token: &str, aes_key: &str) -> Result<Self, String> {
        let aes = (!aes_key.is_empty())
            .then(|| AesKey::from_encoding_key(aes_key))
            .transpose()
            .map_err(|e| format!("--aes-key: {e}"))?;
        let account = format!("gh_{}", &app_id[app_id.len().saturating_sub(12)..]);
        Ok(Self { app_id: app_id.to_string(), token: token.to_string(), aes, account })
    }

    pub fn encrypted(&self) -> bool {
        self.aes.is_some()
    }

    /// A QR scan: `subscribe` with `qrscene_<scene>` for a new follower, `SCAN` for one.
    pub fn scan(&self, openid: &str, scene: &str, following: bool) -> Push {
        self.scan_at(openid, scene, following, now_secs())
    }

    /// [`Wechat::scan`] with its `CreateTime` given: every resend of one push has the same
    /// (it is part of the dedup key).
    pub fn scan_at(&self, openid: &str, scene: &str, following: bool, create_time: u64) -> Push {
        let xml = if following {
            event_xml(&self.account, openid, create_time, "SCAN", Some(scene), None)
        } else {
            event_xml(&self.account, openid, create_time, "subscribe", Some(&format!("qrscene_{scene}")), None)
        };
        self.seal(openid, &xml)
    }

    pub fn unsubscribe(&self, openid: &str) -> Push {
        self.seal(openid, &event_xml(&self.account, openid, now_secs(), "unsubscribe", None, None))
    }

    pub fn text(&self, openid: &str, content: &str, msg_id: u64) -> Push {
        let xml = format!(
            "<xml><ToUserName>{}</ToUserName><FromUserName>{}</FromUserName><CreateTime>{}</CreateTime>\
             <MsgType><![CDATA[text]]></MsgType><Content>{}</Content><MsgId>{msg_id}</MsgId></xml>",
            cdata(&self.account),
            cdata(openid),
            now_secs(),
            cdata(content)
        );
        self.seal(openid, &xml)
    }

    /// Signs (and for a safe-mode account encrypts) `plain` as WeChat does.
    fn seal(&self, openid: &str, plain: &str) -> Push {
        let from =
            PushSender { token: &self.token, app_id: &self.app_id, key: self.aes.as_ref(), account: &self.account };
        sign_push(&from, openid, plain)
    }

    /// Posts `push` to `/wechat/{app_id}/callback`; any 200 is success.
    pub async fn post(&self, api: &Api, rec: &mut Recorder, step: &'static str, push: &Push) -> Option<()> {
        let req = api
            .http
            .post(api.url(&format!("/wechat/{}/callback", self.app_id)))
            .query(&push.params)
            .header("content-type", "text/xml")
            .body(push.body.clone());
        api.send(rec, step, req).await.map(|_| ())
    }
}
