//! `callbacks`: a storm of signed WeChat pushes at `--rate` (1000/s if unset) from
//! `--connections` senders, against `users` live attempts made first. The mix: scans of
//! real scenes (new and existing followers), scans of scenes that are not ours, other
//! events and text messages, and `--duplicates` of them re-sent as WeChat retries do.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::driver::{Shared, Window, fan_out, setup_attempts};
use crate::report::Recorder;
use crate::wechat::Push;

/// Pushes each sender remembers for retries.
const RETRY_MEMORY: usize = 16;
const DEFAULT_RATE: f64 = 1000.0;

pub async fn run(shared: Arc<Shared>) -> (Recorder, Duration) {
    let (slots, mut rec) = setup_attempts(&shared, true).await;
    let scenes: Arc<Vec<String>> = Arc::new(slots.into_iter().flatten().filter_map(|s| s.scene).collect());
    let rate = if shared.opts.rate > 0.0 { shared.opts.rate } else { DEFAULT_RATE };
    let window = Window::open(shared.opts.duration, rate);
    let senders = shared.opts.connections.max(1);
    rec.merge(fan_out(senders, senders, |i| sender(shared.clone(), scenes.clone(), window.clone(), i)).await);
    (rec, window.start.elapsed().min(shared.opts.duration))
}

async fn sender(s: Arc<Shared>, scenes: Arc<Vec<String>>, window: Arc<Window>, i: usize) -> Recorder {
    let mut rec = Recorder::default();
    let mut sent: VecDeque<Push> = VecDeque::with_capacity(RETRY_MEMORY);
    let mut n = 0u64;
    while window.next().await {
        n += 1;
        if !sent.is_empty() && rand::random_bool(s.opts.duplicates.clamp(0.0, 1.0)) {
            let push = sent[rand::random_range(0..sent.len())].clone();
            let _ = window.within(s.wechat.post(&s.api, &mut rec, "duplicate", &push)).await;
            continue;
        }
        let openid = format!("o_cb_{}_{i}_{n}", s.run_id);
        let roll = rand::random_range(0..100);
        let push = match roll {
            0..60 if !scenes.is_empty() => {
                let scene = &scenes[rand::random_range(0..scenes.len())];
                s.wechat.scan(&openid, scene, roll % 2 == 0)
            }
            0..75 => s.wechat.scan(&openid, scanlogin::ids::Scene::generate().as_str(), roll % 2 == 0),
            75..90 => s.wechat.unsubscribe(&openid),
            _ => s.wechat.text(&openid, "hello", n),
        };
        let _ = window.within(s.wechat.post(&s.api, &mut rec, "callback", &push)).await;
        if sent.len() == RETRY_MEMORY {
            sent.pop_front();
        }
        sent.push_back(push);
    }
    rec
}
