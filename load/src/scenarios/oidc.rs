//! `oidc`: the whole provider flow per iteration, as a relying party's browser and back
//! end do it, against the shipped `demo` client (public, PKCE).
//!
//! authorize (the login page; its embedded attempt) → WeChat resolves the ticket to its
//! scene → the page long-polls while WeChat posts the scan → a new user binds a phone →
//! the `reg` answer's continue URL (302 with a code) → the code and its verifier at the
//! token endpoint. No cookie is kept: every iteration is a full login (no single
//! sign-on), so its cost compares with the direct flow's (`login`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use sha2::Digest as _;

use super::login::scan_while_polling;
use super::phone_for;
use crate::driver::{Shared, Window, fan_out};
use crate::report::Recorder;

/// The shipped demo client (`config/default.toml`).
const CLIENT: &str = "demo";
const REDIRECT_URI: &str = "http://127.0.0.1:8090/callback";
const VERIFIER: &str = "load-tool-verifier-0123456789-0123456789-0123456789";

pub async fn run(shared: Arc<Shared>) -> (Recorder, Duration) {
    let window = Window::open(shared.opts.duration, shared.opts.rate);
    let users = shared.opts.users;
    // The continue step answers a redirect to the client: read, not followed.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(4))
        .build()
        .expect("HTTP client");
    let rec = fan_out(users, users, |u| user(shared.clone(), browser.clone(), window.clone(), u)).await;
    (rec, window.start.elapsed().min(shared.opts.duration))
}

async fn user(s: Arc<Shared>, browser: reqwest::Client, window: Arc<Window>, u: usize) -> Recorder {
    let mut rec = Recorder::default();
    // As the `login` scenario's: the first poll of each login records here, so what it
    // recorded stays when the window closes on the login.
    let mut poll_rec = Recorder::default();
    let openid = format!("o_oidc_{}_{u}", s.run_id);
    let phone = phone_for(s.run_id, u);
    let mut registered = false;
    while window.next().await {
        let login = once(&s, &browser, &mut rec, &mut poll_rec, &openid, &phone, registered);
        if let Some(done) = window.within(login).await {
            registered |= done;
        }
    }
    rec.merge(poll_rec);
    rec
}

/// The attempt a login page embeds.
fn embedded(html: &str) -> Option<Value> {
    let start = html.find(r#"id="scanlogin-attempt">"#)? + 23;
    let end = start + html[start..].find("</script>")?;
    serde_json::from_str(&html[start..end]).ok()
}

/// One login through the provider; `true` when it ended with tokens.
async fn once(
    s: &Shared,
    browser: &reqwest::Client,
    rec: &mut Recorder,
    poll_rec: &mut Recorder,
    openid: &str,
    phone: &str,
    registered: bool,
) -> bool {
    let api = &s.api;
    let started = Instant::now();
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(VERIFIER.as_bytes()));
    let authorize = browser.get(api.url("/oidc/authorize")).query(&[
        ("response_type", "code"),
        ("client_id", CLIENT),
        ("redirect_uri", REDIRECT_URI),
        ("scope", "openid phone"),
        ("state", "load"),
        ("nonce", "load"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ]);
    let Some((_, html)) = api.send(rec, "authorize", authorize).await else { return false };
    let Some(attempt) = embedded(&html) else { return api.fail(rec, "authorize", "no_attempt").unwrap_or(false) };
    let uuid = attempt["uuid"].as_str().unwrap_or_default().to_string();
    let ticket = attempt["qr_image_url"]
        .as_str()
        .and_then(|u| url::Url::parse(u).ok())
        .and_then(|u| u.query_pairs().find(|(k, _)| k == "ticket").map(|(_, v)| v.into_owned()))
        .unwrap_or_default();
    let Some(scene) = api.scene_of(rec, &ticket).await else { return false };
    let Some((mut answer, _)) = scan_while_polling(s, rec, poll_rec, &uuid, &scene, openid, registered).await else {
        return false;
    };
    if answer["state"] == "not_reg" && !registered {
        let Some(_) = api.sms_code(rec, &uuid, phone).await else { return false };
        let Some(code) = api.outbox_code(rec, phone).await else { return false };
        let Some(bound) = api.bind(rec, &uuid, phone, &code).await else { return false };
        answer = bound;
    }
    let Some(next) = answer["redirect"].as_str().map(str::to_string) else {
        return api
            .fail(rec, "poll", &format!("state_{}", answer["state"].as_str().unwrap_or("none")))
            .unwrap_or(false);
    };
    // The continue URL names the public address; the load goes to the target.
    let path = url::Url::parse(&next).map(|u| u.path().to_string()).unwrap_or_default();
    let t = Instant::now();
    let location = match browser.get(api.url(&path)).send().await {
        Ok(r) if r.status().as_u16() == 302 => {
            r.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_string).unwrap_or_default()
        }
        Ok(r) => return api.fail(rec, "continue", &format!("http_{}", r.status().as_u16())).unwrap_or(false),
        Err(_) => return api.fail(rec, "continue", "transport").unwrap_or(false),
    };
    rec.ok("continue", t.elapsed());
    let code = url::Url::parse(&location)
        .ok()
        .and_then(|u| u.query_pairs().find(|(k, _)| k == "code").map(|(_, v)| v.into_owned()))
        .unwrap_or_default();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT_URI),
        ("client_id", CLIENT),
        ("code_verifier", VERIFIER),
    ];
    let Some((_, tokens)) = api.send(rec, "token", api.http.post(api.url("/oidc/token")).form(&form)).await else {
        return false;
    };
    if !tokens.contains("id_token") {
        return api.fail(rec, "token", "no_id_token").unwrap_or(false);
    }
    rec.ok("login total", started.elapsed());
    true
}
