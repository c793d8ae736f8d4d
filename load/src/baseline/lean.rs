//! Baseline (b): the lean in-process design. One map (poll id → entry) and one index
//! (scene → poll id) behind a single mutex, one timer wheel with a slot per second that
//! a single task sweeps, and a `Notify` per attempt created only when a long poll waits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::RngCore;
use tokio::sync::Notify;

use super::{EXPIRED, LOOP, REG};

/// Slots of the wheel: one per second, longer than any TTL used.
const WHEEL: usize = 1024;

struct Entry {
    phase: u8,
    scene: String,
    /// Seconds since `Lean::epoch`.
    expires_at: u32,
    waiters: Option<Arc<Notify>>,
}

#[derive(Default)]
struct Inner {
    by_poll: HashMap<String, Entry>,
    by_scene: HashMap<String, String>,
    wheel: Vec<Vec<String>>,
}

pub struct Lean {
    inner: Mutex<Inner>,
    epoch: Instant,
}

fn random_id(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Lean {
    /// The store and its sweeper task (on the current runtime).
    pub fn start() -> Arc<Self> {
        let inner = Inner { wheel: vec![Vec::new(); WHEEL], ..Default::default() };
        let lean = Arc::new(Self { inner: Mutex::new(inner), epoch: Instant::now() });
        let l = lean.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                l.sweep();
            }
        });
        lean
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> u32 {
        self.epoch.elapsed().as_secs() as u32
    }

    pub fn create(&self, ttl_secs: u64) -> (String, String) {
        let (poll, scene) = (random_id(32), random_id(24));
        let expires_at = self.now() + ttl_secs as u32;
        let mut g = self.lock();
        g.wheel[expires_at as usize % WHEEL].push(poll.clone());
        g.by_scene.insert(scene.clone(), poll.clone());
        g.by_poll.insert(poll.clone(), Entry { phase: LOOP, scene: scene.clone(), expires_at, waiters: None });
        (poll, scene)
    }

    pub fn live(&self) -> usize {
        self.lock().by_poll.len()
    }

    /// Expires this second's slot.
    fn sweep(&self) {
        let now = self.now();
        let mut g = self.lock();
        let due = std::mem::take(&mut g.wheel[now as usize % WHEEL]);
        for poll in due {
            let expired = g.by_poll.get(&poll).is_some_and(|e| e.expires_at <= now);
            if expired && let Some(e) = g.by_poll.remove(&poll) {
                g.by_scene.remove(&e.scene);
                if let Some(w) = e.waiters {
                    w.notify_waiters();
                }
            }
        }
    }

    /// The poll: REG hands the token once (the entry goes); LOOP may wait for a change.
    pub async fn status(&self, poll: &str, wait: Duration) -> u8 {
        let notified = {
            let mut g = self.lock();
            let Some(e) = g.by_poll.get_mut(poll) else { return EXPIRED };
            if e.phase != LOOP || wait.is_zero() {
                return self.claim(&mut g, poll);
            }
            e.waiters.get_or_insert_with(|| Arc::new(Notify::new())).clone()
        };
        let woken = notified.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        // Re-check after registering, so a scan between the unlock and here is seen.
        if self.lock().by_poll.get(poll).is_some_and(|e| e.phase == LOOP) {
            let _ = tokio::time::timeout(wait, woken).await;
        }
        let mut g = self.lock();
        self.claim(&mut g, poll)
    }

    fn claim(&self, g: &mut Inner, poll: &str) -> u8 {
        match g.by_poll.get(poll).map(|e| e.phase) {
            None => EXPIRED,
            Some(REG) => {
                if let Some(e) = g.by_poll.remove(poll) {
                    g.by_scene.remove(&e.scene);
                }
                REG
            }
            Some(p) => p,
        }
    }

    /// WeChat's scan of `scene`: REG (every scanner counts as registered), wake waiters.
    pub fn scanned(&self, scene: &str) {
        let mut g = self.lock();
        let Some(poll) = g.by_scene.get(scene).cloned() else { return };
        if let Some(e) = g.by_poll.get_mut(&poll)
            && e.phase == LOOP
        {
            e.phase = REG;
            if let Some(w) = &e.waiters {
                w.notify_waiters();
            }
        }
    }
}
