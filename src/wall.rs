//! Wall-clock time as the service records it: Unix seconds and milliseconds, read in
//! this one place. (The engine's deadlines use its injected [`crate::engine::Clock`],
//! which tests drive with tokio's paused clock; everything else — limit windows, audit
//! rows, token times, breakers — reads the wall clock here.)

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Seconds since the Unix epoch.
pub fn unix_secs() -> u64 {
    unix_ms() / 1000
}

#[cfg(test)]
mod tests {
    #[test]
    fn seconds_follow_milliseconds() {
        let (ms, s) = (super::unix_ms(), super::unix_secs());
        assert!(ms > 1_700_000_000_000, "a plausible clock");
        assert!(s.abs_diff(ms / 1000) <= 1);
    }
}
