//! Whether a restore is under way: shared by the restore walk ([`super::recovery`]),
//! which moves it on, and the registry, whose commands for an attempt it does not know
//! yet wait (bounded) for the restore instead of answering `expired`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::watch;

/// The longest a command for an unknown attempt waits for the restore to finish.
pub const RECOVERY_WAIT: Duration = Duration::from_secs(3);

/// Whether a restore is under way, and how far it got.
pub struct Recovery {
    pending: AtomicBool,
    restored: AtomicUsize,
    done: watch::Sender<bool>,
}

impl Recovery {
    pub fn new() -> Self {
        Self { pending: AtomicBool::new(false), restored: AtomicUsize::new(0), done: watch::Sender::new(true) }
    }

    pub fn begin(&self) {
        self.pending.store(true, Ordering::SeqCst);
        self.done.send_replace(false);
    }

    pub(super) fn finish(&self) {
        self.pending.store(false, Ordering::SeqCst);
        self.done.send_replace(true);
    }

    pub fn is_pending(&self) -> bool {
        self.pending.load(Ordering::SeqCst)
    }

    pub(super) fn add_restored(&self, n: usize) {
        self.restored.fetch_add(n, Ordering::SeqCst);
    }

    /// Attempts restored so far.
    pub fn restored(&self) -> usize {
        self.restored.load(Ordering::SeqCst)
    }

    /// Waits until the restore is done, at most [`RECOVERY_WAIT`].
    pub async fn wait(&self) {
        let mut rx = self.done.subscribe();
        let _ = tokio::time::timeout(RECOVERY_WAIT, rx.wait_for(|d| *d)).await;
    }
}

impl Default for Recovery {
    fn default() -> Self {
        Self::new()
    }
}
