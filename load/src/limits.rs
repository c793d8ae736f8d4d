//! What to tell the load tool's user when the server refuses with 429 or 503: which
//! server limit stopped the load and which setting lifts it, once per limit; and how
//! long to back off (the server's `Retry-After`, bounded) instead of spinning.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use scanlogin::limits::Kind;

/// The longest one refusal makes a virtual user wait: a daily cap's `Retry-After` is
/// hours, the run is seconds.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The wait before the next try: `Retry-After` seconds, at least 100 ms, at most
/// [`MAX_BACKOFF`]; 1 s when the header is missing or unreadable.
pub fn backoff(retry_after: Option<&str>) -> Duration {
    let secs = retry_after.and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(1);
    Duration::from_secs(secs).clamp(Duration::from_millis(100), MAX_BACKOFF)
}

/// The `[limits]` setting behind a refusal, from its status, the step that got it and
/// the error body's `message`; `None` when no setting lifts it.
pub fn setting_for(status: u16, step: &str, message: &str) -> Option<&'static str> {
    if status == 503 {
        return (step == "create").then_some("live_attempts_max");
    }
    if let Some(k) = Kind::ALL.into_iter().find(|k| k.message() == message) {
        return Some(k.setting());
    }
    // Refusals of the engine and of the event stream, not in `limits::Kind`.
    if message.starts_with("too many codes for this login") {
        return Some("sms_per_attempt");
    }
    if message.starts_with("too many held polls") {
        return Some("long_polls_per_ip");
    }
    if message == scanlogin::api::intake::TOO_MANY_CONNECTIONS {
        return Some("connections_per_ip");
    }
    None
}

/// The one line for the user.
pub fn hint(status: u16, step: &str, message: &str) -> String {
    let what = if message.is_empty() { "no message" } else { message };
    match setting_for(status, step, message) {
        Some(s) => format!(
            "server limit hit at step {step} (HTTP {status}: {what}); it is lifted by limits.{s}, e.g. SCANLOGIN__LIMITS__{}=1000000000 in the server's environment",
            s.to_uppercase()
        ),
        None => format!(
            "server refused at step {step} (HTTP {status}: {what}); no setting lifts it: the server is at capacity, lower --users or --rate"
        ),
    }
}

/// Prints each distinct hint once per run.
#[derive(Default)]
pub struct Hints(Mutex<HashSet<String>>);

impl Hints {
    pub fn once(&self, status: u16, step: &str, message: &str) {
        let line = hint(status, step, message);
        if self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(line.clone()) {
            eprintln!("load: {line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_limit_maps_back_to_its_setting() {
        for k in Kind::ALL {
            assert_eq!(setting_for(429, "create", k.message()), Some(k.setting()), "{k:?}");
        }
        assert_eq!(setting_for(429, "sms", "too many codes for this login; wait"), Some("sms_per_attempt"));
        let connections = scanlogin::api::intake::TOO_MANY_CONNECTIONS;
        assert_eq!(setting_for(429, "poll", connections), Some("connections_per_ip"));
        assert_eq!(setting_for(503, "create", "the service is at capacity, retry shortly"), Some("live_attempts_max"));
        assert_eq!(setting_for(503, "poll", "the service is at capacity, retry shortly"), None);
        assert!(hint(429, "create", Kind::QrPerApp.message()).contains("SCANLOGIN__LIMITS__QR_PER_APP_PER_DAY"));
    }

    #[test]
    fn backoff_follows_retry_after_within_bounds() {
        assert_eq!(backoff(Some("2")), Duration::from_secs(2));
        assert_eq!(backoff(Some("86400")), MAX_BACKOFF);
        assert_eq!(backoff(Some("0")), Duration::from_millis(100));
        assert_eq!(backoff(None), Duration::from_secs(1));
        assert_eq!(backoff(Some("soon")), Duration::from_secs(1));
    }
}
