//! The five scenarios. Each sets up what it needs (QR codes, scenes) outside the
//! measured window, then runs its users inside it and returns what they recorded.

pub mod callbacks;
pub mod hold;
pub mod login;
pub mod oidc;
pub mod poll_storm;

/// Report order of the steps (composite steps have a space in their name).
pub const STEP_ORDER: &[&str] = &[
    "authorize",
    "create",
    "ticket",
    "scan",
    "poll",
    "wake",
    "sms_code",
    "sms_outbox",
    "bind",
    "me",
    "continue",
    "token",
    "login total",
    "callback",
    "duplicate",
];

/// A mainland mobile number unique to (run, user) for up to 100,000 users.
pub fn phone_for(run_id: u64, user: usize) -> String {
    format!("13{:09}", (run_id % 10_000) * 100_000 + (user as u64 % 100_000))
}

#[cfg(test)]
mod tests {
    #[test]
    fn phones_are_valid_and_distinct() {
        let a = super::phone_for(42, 7);
        assert_eq!(a.len(), 11);
        assert!(scanlogin::ids::Phone::parse(&a).is_some(), "{a}");
        assert_ne!(a, super::phone_for(42, 8));
        assert_ne!(a, super::phone_for(43, 7));
    }
}
