//! [`Secret`]: a configured secret (signing keys, app secrets, webhook keys). It never
//! prints — `{:?}` and `{}` both say `<redacted>` — so a settings dump or an error
//! message cannot leak it; code that needs the value asks for it by name.

use serde::Deserialize;

#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that uses it (signing, hashing, sending).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A 32-byte key for `purpose` (e.g. `"sms-code/v1"`): HMAC-SHA256 keyed by the
    /// secret's value. Two deployments with two secrets get two keys; the purpose keeps
    /// the keys of different uses apart.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        use hmac::{Hmac, KeyInit, Mac};
        let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(self.0.as_bytes()).expect("any key length");
        mac.update(b"scanlogin/");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints() {
        let s = Secret::from("hunter2-very-secret");
        assert_eq!(format!("{s:?} {s}"), "<redacted> <redacted>");
        assert_eq!(s.expose(), "hunter2-very-secret");
    }

    #[test]
    fn keys_are_derived_from_the_value_not_the_display() {
        let (a, b) = (Secret::from("one deployment's secret"), Secret::from("another deployment's secret"));
        assert_ne!(a.derive("sms-code/v1"), b.derive("sms-code/v1"));
        assert_ne!(a.derive("sms-code/v1"), a.derive("other/v1"), "one key per purpose");
        assert_eq!(a.derive("sms-code/v1"), Secret::from("one deployment's secret").derive("sms-code/v1"));
    }
}
