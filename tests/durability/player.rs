//! Plays WeChat's push delivery: a signed push with a fixed `CreateTime` (so every resend
//! has the same dedup key), each delivery given WeChat's 5 s, sent again while it is not
//! acknowledged — a bounded number of times, as WeChat does (docs/wechat.md, "Timeouts,
//! resends, dedup"). Only a 200 counts as acknowledged; a refused connection, a timeout
//! or a 5xx is a failed delivery.

use std::time::Duration;

use reqwest::Client;
use scanlogin::sandbox::SignedPush;

pub const APP_ID: &str = "wxsandbox0000000001";
const TOKEN: &str = "sandbox-token";
/// How long WeChat waits for an answer.
const WECHAT_WAIT: Duration = Duration::from_secs(5);

pub struct Player {
    http: Client,
    callback: String,
}

/// What became of one push: the acknowledged body (`success` or a passive reply), if
/// any delivery was acknowledged, and how many deliveries it took.
#[derive(Debug)]
pub struct Delivered {
    pub acked: Option<String>,
    pub deliveries: u32,
}

impl Player {
    /// Delivers to the server whose base URL is `server`.
    pub fn new(server: &str) -> Self {
        scanlogin::install_crypto();
        let http = Client::builder().timeout(WECHAT_WAIT).build().unwrap();
        Self { http, callback: format!("{server}/wechat/{APP_ID}/callback") }
    }

    /// The push of a scan of `scene` by `openid` (`SCAN` for a follower, else `subscribe`),
    /// built as the load tool builds it (the one signed-push builder).
    pub fn scan(openid: &str, scene: &str, following: bool, create_time: u64) -> SignedPush {
        let wechat = scanlogin_load::wechat::Wechat::new(APP_ID, TOKEN, "").expect("no AES key to read");
        wechat.scan_at(openid, scene, following, create_time)
    }

    /// Up to `deliveries` deliveries of `push`, `pause` apart, until one is acknowledged.
    pub async fn deliver(&self, push: &SignedPush, deliveries: u32, pause: Duration) -> Delivered {
        for n in 1..=deliveries {
            let sent = self
                .http
                .post(&self.callback)
                .query(&push.params)
                .header("content-type", "text/xml")
                .body(push.body.clone())
                .send()
                .await;
            if let Ok(r) = sent
                && r.status() == 200
                && let Ok(body) = r.text().await
            {
                return Delivered { acked: Some(body), deliveries: n };
            }
            if n < deliveries {
                // WeChat's own pause between resends: the behaviour played, not a wait.
                tokio::time::sleep(pause).await;
            }
        }
        Delivered { acked: None, deliveries }
    }
}
