//! `hold`: `users` browsers each holding a long poll (`--wait`), re-polling when it
//! times out. Once all polls are held (or after 30 s), the measured window opens: with
//! `--rate`, WeChat scans that many held QR codes per second (new followers, posted
//! straight to the callback) and the `wake` step measures the time from sending the
//! scan to the held poll's answer.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::driver::{Shared, Slot, Window, fan_out, make_slot, setup_attempts};
use crate::report::Recorder;

/// Scanner tasks sharing the scan rate.
const SCANNERS: usize = 8;
/// The longest the browsers get to have all their polls held before scans start.
const RAMP_MAX: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Held {
    slot: Option<Slot>,
    /// When WeChat's scan of this slot's QR code was sent.
    scanned_at: Option<Instant>,
}

type Board = Arc<Vec<Mutex<Held>>>;

pub async fn run(shared: Arc<Shared>) -> (Recorder, Duration) {
    let (slots, mut rec) = setup_attempts(&shared, true).await;
    let board: Board = Arc::new(slots.into_iter().map(|slot| Mutex::new(Held { slot, scanned_at: None })).collect());
    let users = shared.opts.users;
    // The browsers hold through the ramp and the measured window, until told to stop.
    let holding = Window::open(shared.opts.duration + RAMP_MAX, 0.0);
    let (stop, stopped) = watch::channel(false);
    let browsers = {
        let (s, b, w) = (shared.clone(), board.clone(), holding.clone());
        tokio::spawn(fan_out(users, users, move |u| browser(s.clone(), b.clone(), w.clone(), stopped.clone(), u)))
    };
    // Scans start once every poll is held, so the ramp's burst does not count as wake time.
    let ramp = Instant::now();
    while (shared.api.progress.held.load(Ordering::Relaxed) as usize) < users && ramp.elapsed() < RAMP_MAX {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let window = Window::open(shared.opts.duration, shared.opts.rate);
    let scanners = if shared.opts.rate > 0.0 { SCANNERS } else { 0 };
    rec.merge(fan_out(scanners, scanners, |i| scanner(shared.clone(), board.clone(), window.clone(), i)).await);
    tokio::time::sleep_until(window.end.into()).await;
    let _ = stop.send(true);
    if let Ok(r) = browsers.await {
        rec.merge(r);
    }
    (rec, window.start.elapsed().min(shared.opts.duration))
}

fn lock(h: &Mutex<Held>) -> std::sync::MutexGuard<'_, Held> {
    h.lock().unwrap_or_else(|p| p.into_inner())
}

async fn browser(
    s: Arc<Shared>,
    board: Board,
    window: Arc<Window>,
    mut stop: watch::Receiver<bool>,
    u: usize,
) -> Recorder {
    let mut rec = Recorder::default();
    while !window.over() && !*stop.borrow() {
        let current = lock(&board[u]).slot.clone();
        let Some(slot) = current else {
            // A fresh QR code after a scan or an expiry.
            let fresh = window.within(make_slot(&s, &mut rec, true)).await.flatten();
            *lock(&board[u]) = Held { slot: fresh, scanned_at: None };
            continue;
        };
        s.api.progress.hold();
        let answer = tokio::select! {
            a = window.within(s.api.status(&mut rec, "poll", &slot.uuid, s.opts.wait)) => a,
            _ = stop.changed() => None,
        };
        s.api.progress.release();
        let Some(Some(answer)) = answer else { continue };
        match answer["state"].as_str() {
            Some("loop") => {}
            // A new follower (our service); the baselines count every scanner as registered.
            Some("not_reg" | "reg") => {
                let scanned_at = lock(&board[u]).scanned_at;
                match scanned_at {
                    Some(t) => rec.ok("wake", t.elapsed()),
                    None => {
                        s.api.fail::<()>(&mut rec, "poll", "woken_without_scan");
                    }
                }
                lock(&board[u]).slot = None;
            }
            Some("expired") => lock(&board[u]).slot = None,
            other => {
                s.api.fail::<()>(&mut rec, "poll", &format!("state_{}", other.unwrap_or("none")));
                lock(&board[u]).slot = None;
            }
        }
    }
    rec
}

async fn scanner(s: Arc<Shared>, board: Board, window: Arc<Window>, i: usize) -> Recorder {
    let mut rec = Recorder::default();
    let mut n = 0u64;
    while window.next().await {
        let u = rand::random_range(0..board.len());
        let scene = {
            let mut h = lock(&board[u]);
            match (h.slot.as_ref().and_then(|s| s.scene.clone()), h.scanned_at) {
                (Some(scene), None) => {
                    h.scanned_at = Some(Instant::now());
                    scene
                }
                _ => continue, // being replaced, or already scanned: try another next slot
            }
        };
        n += 1;
        let push = s.wechat.scan(&format!("o_hold_{}_{i}_{n}", s.run_id), &scene, false);
        let sent = Instant::now();
        lock(&board[u]).scanned_at = Some(sent);
        let _ = window.within(s.wechat.post(&s.api, &mut rec, "scan", &push)).await;
    }
    rec
}
