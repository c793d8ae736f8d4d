//! `poll-storm`: `users` browsers, each with a live QR code, short-polling its status
//! (as the seed's pages did, without `wait`). With `--rate` the polls are paced over all
//! users; without, every browser polls again as soon as it has its answer.

use std::sync::Arc;
use std::time::Duration;

use crate::driver::{Shared, Window, fan_out, setup_attempts};
use crate::report::Recorder;

pub async fn run(shared: Arc<Shared>) -> (Recorder, Duration) {
    let (slots, mut rec) = setup_attempts(&shared, false).await;
    let window = Window::open(shared.opts.duration, shared.opts.rate);
    let users = shared.opts.users;
    let uuids: Vec<Option<String>> = slots.into_iter().map(|s| s.map(|s| s.uuid)).collect();
    rec.merge(fan_out(users, users, |u| browser(shared.clone(), window.clone(), uuids[u].clone())).await);
    (rec, window.start.elapsed().min(shared.opts.duration))
}

async fn browser(s: Arc<Shared>, window: Arc<Window>, mut uuid: Option<String>) -> Recorder {
    let mut rec = Recorder::default();
    while window.next().await {
        let id = match &uuid {
            Some(id) => id.clone(),
            None => match s.api.create_qr(&mut rec).await {
                Some(qr) => uuid.insert(qr.uuid).clone(),
                None => continue,
            },
        };
        let Some(Some(answer)) = window.within(s.api.status(&mut rec, "poll", &id, 0)).await else { continue };
        match answer["state"].as_str() {
            Some("loop") => {}
            // The QR code ran out (qr_ttl_secs): the page asks for a new one.
            Some("expired") => uuid = None,
            other => {
                s.api.fail::<()>(&mut rec, "poll", &format!("state_{}", other.unwrap_or("none")));
            }
        }
    }
    rec
}
