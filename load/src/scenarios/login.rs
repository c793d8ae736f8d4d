//! `login`: the whole flow per iteration, as a browser and WeChat do it.
//!
//! create → (WeChat resolves the ticket to its scene) → the browser long-polls while
//! WeChat posts the scan, signed (and encrypted for a safe-mode app), to the callback →
//! a new user: SMS code (read from the sandbox outbox) → bind → token; a returning user
//! gets the token in the poll answer → `/me`. A user's first login binds its phone when
//! the server asks for one (`not_reg`); its later logins are returning-user scans.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::phone_for;
use crate::driver::{Shared, Window, fan_out};
use crate::report::Recorder;

pub async fn run(shared: Arc<Shared>) -> (Recorder, Duration) {
    let window = Window::open(shared.opts.duration, shared.opts.rate);
    let users = shared.opts.users;
    let rec = fan_out(users, users, |u| user(shared.clone(), window.clone(), u)).await;
    (rec, window.start.elapsed().min(shared.opts.duration))
}

async fn user(s: Arc<Shared>, window: Arc<Window>, u: usize) -> Recorder {
    let mut rec = Recorder::default();
    // The first poll of each login, made beside the scan; kept here, so what it recorded
    // stays when the window closes on the login (as the progress counters keep it).
    let mut poll_rec = Recorder::default();
    let openid = format!("o_load_{}_{u}", s.run_id);
    let phone = phone_for(s.run_id, u);
    let mut registered = false;
    while window.next().await {
        if let Some(done) = window.within(once(&s, &mut rec, &mut poll_rec, &openid, &phone, registered)).await {
            registered |= done;
        }
    }
    rec.merge(poll_rec);
    rec
}

/// One login; `true` when it ended with a token.
async fn once(
    s: &Shared,
    rec: &mut Recorder,
    poll_rec: &mut Recorder,
    openid: &str,
    phone: &str,
    registered: bool,
) -> bool {
    let api = &s.api;
    let started = Instant::now();
    let Some(qr) = api.create_qr(rec).await else { return false };
    let Some(scene) = api.scene_of(rec, &qr.ticket).await else { return false };
    let Some((answer, sent_at)) = scan_while_polling(s, rec, poll_rec, &qr.uuid, &scene, openid, registered).await
    else {
        return false;
    };
    rec.ok("wake", sent_at.elapsed());
    let token = match (answer["state"].as_str(), registered) {
        // A known user (or a server that counts every scanner as registered).
        (Some("reg"), _) => answer["token"].as_str().map(str::to_string),
        (Some("not_reg"), false) => bind(s, rec, &qr.uuid, phone).await,
        (state, _) => return api.fail(rec, "poll", &format!("state_{}", state.unwrap_or("none"))).unwrap_or(false),
    };
    let Some(token) = token else { return false };
    rec.ok("login total", started.elapsed());
    api.me(rec, &token).await.is_some()
}

/// The page long-polls `uuid` while WeChat posts `openid`'s scan of `scene` (the page is
/// already polling when the person scans); while the answer is `loop` — the poll came back
/// before the scan landed, or the server has no long polls, like the seed's design — the
/// page polls again. The first answer past `loop`, and when the scan was sent. The first
/// poll records into `poll_rec` (see [`user`]).
pub(super) async fn scan_while_polling(
    s: &Shared,
    rec: &mut Recorder,
    poll_rec: &mut Recorder,
    uuid: &str,
    scene: &str,
    openid: &str,
    registered: bool,
) -> Option<(Value, Instant)> {
    let (api, wechat) = (&s.api, &s.wechat);
    let mut sent_at = None;
    let poll = api.status(poll_rec, "poll", uuid, s.opts.wait);
    let scan = async {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let push = wechat.scan(openid, scene, registered);
        sent_at = Some(Instant::now());
        wechat.post(api, rec, "scan", &push).await
    };
    let (answer, scanned) = tokio::join!(poll, scan);
    let (Some(mut answer), Some(())) = (answer, scanned) else { return None };
    while answer["state"] == "loop" {
        tokio::time::sleep(Duration::from_millis(5)).await;
        answer = api.status(rec, "poll", uuid, s.opts.wait).await?;
    }
    Some((answer, sent_at?))
}

/// The new-user half: SMS code, read it from the outbox, bind; the token.
async fn bind(s: &Shared, rec: &mut Recorder, uuid: &str, phone: &str) -> Option<String> {
    s.api.sms_code(rec, uuid, phone).await?;
    let code = s.api.outbox_code(rec, phone).await?;
    let answer: Value = s.api.bind(rec, uuid, phone, &code).await?;
    match answer["token"].as_str() {
        Some(t) => Some(t.to_string()),
        None => s.api.fail(rec, "bind", "no_token"),
    }
}
