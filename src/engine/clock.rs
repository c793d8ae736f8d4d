//! The engine's one source of time: wall-clock milliseconds that follow tokio's clock.
//!
//! Snapshots need absolute times, tests need tokio's paused clock: so the wall time is
//! read once at start and advanced by `tokio::time::Instant`, which pauses in tests.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base_ms: u64,
    base: Instant,
}

impl Clock {
    pub fn new() -> Self {
        let base_ms = crate::wall::unix_ms();
        Self { base_ms, base: Instant::now() }
    }

    /// Milliseconds since the Unix epoch, as the engine sees them.
    pub fn now_ms(&self) -> u64 {
        self.base_ms + self.base.elapsed().as_millis() as u64
    }

    /// How long from now until the absolute time `at_ms` (zero if past).
    pub fn until(&self, at_ms: u64) -> Duration {
        Duration::from_millis(at_ms.saturating_sub(self.now_ms()))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}
