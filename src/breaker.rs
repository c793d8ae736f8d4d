//! A tiny circuit breaker for optional Redis calls (dedup keys, limit counters): after a
//! failure the caller skips Redis for a moment and takes its fallback at once, so a dead
//! Redis costs each request at most one short timeout per second, not one per call.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long a failed store is skipped.
const OPEN_FOR: Duration = Duration::from_secs(1);
/// The response timeout of such calls: short, since each has a fallback.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(200);

fn now_ms() -> u64 {
    crate::wall::unix_ms()
}

#[derive(Debug, Default)]
pub struct Breaker {
    open_until_ms: AtomicU64,
}

impl Breaker {
    /// Should the call be tried now?
    pub fn allows(&self) -> bool {
        now_ms() >= self.open_until_ms.load(Ordering::Relaxed)
    }

    /// The call failed: skip the store for a moment.
    pub fn trip(&self) {
        self.open_until_ms.store(now_ms() + OPEN_FOR.as_millis() as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trips_and_recovers() {
        let b = Breaker::default();
        assert!(b.allows());
        b.trip();
        assert!(!b.allows());
        b.open_until_ms.store(now_ms().saturating_sub(1), Ordering::Relaxed);
        assert!(b.allows());
    }
}
