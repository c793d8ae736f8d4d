//! Parsed domain values ("parse, don't validate"): handlers take these, never raw strings.
//!
//! Each type has one `parse` that is the whole rule for what the outside may send,
//! and the random ones have one generator with the entropy docs/api.md asks for.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;

/// `bytes` random bytes as URL-safe base64 without padding: every random id, secret and
/// code of the service (and of its sandbox) is made here.
pub fn random_b64(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// The browser's secret poll key (docs/api.md: 22–64 URL-safe chars, ≥128 random bits).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PollId(String);

/// Whom an attempt's answers go to: the page that polls (a `reg` answer carries the
/// token), or the OpenID Connect provider (a `reg` answer carries a redirect, never a
/// token). Told by the poll id's length: only the server makes the ids of live attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollKind {
    Direct,
    Provider,
}

impl PollId {
    /// 32 random bytes = 256 bits, 43 characters.
    pub fn generate() -> Self {
        Self::generate_for(PollKind::Direct)
    }

    /// A direct attempt's id has 43 characters (32 random bytes), a provider attempt's 44
    /// (33 bytes).
    pub fn generate_for(kind: PollKind) -> Self {
        match kind {
            PollKind::Direct => Self(random_b64(32)),
            PollKind::Provider => Self(random_b64(33)),
        }
    }

    pub fn kind(&self) -> PollKind {
        if self.0.len() == 44 { PollKind::Provider } else { PollKind::Direct }
    }
    pub fn parse(s: &str) -> Option<Self> {
        let ok = (22..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        ok.then(|| Self(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Only a prefix: the poll id is a bearer secret and must not land in logs whole.
impl fmt::Debug for PollId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PollId({}…)", &self.0[..6.min(self.0.len())])
    }
}

/// The single-use ticket of a confirmation on the phone (docs/api.md "Confirm on the
/// phone"): 32 random bytes (256 bits), 43 URL-safe characters. The attempt keeps only
/// its SHA-256 ([`ConfirmTicket::hash`]); the ticket itself is in the link sent to the
/// scanner and nowhere else (no `Debug` of it shows it).
#[derive(Clone, PartialEq, Eq)]
pub struct ConfirmTicket(String);

impl ConfirmTicket {
    pub fn generate() -> Self {
        Self(random_b64(32))
    }

    /// Exactly what [`ConfirmTicket::generate`] makes: 43 URL-safe characters.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = s.len() == 43 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        ok.then(|| Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What the attempt and the indexes keep.
    pub fn hash(&self) -> [u8; 32] {
        use sha2::Digest as _;
        sha2::Sha256::digest(self.0.as_bytes()).into()
    }
}

impl fmt::Debug for ConfirmTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConfirmTicket(…)")
    }
}

/// The scene string put into the QR code; independent of the poll id (ARCHITECTURE rule 3).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scene(String);

impl Scene {
    /// `sl_` + 24 random bytes: 35 characters, well inside WeChat's 64.
    pub fn generate() -> Self {
        Self(format!("sl_{}", random_b64(24)))
    }
    /// What may arrive in an `EventKey`: 1..=64 visible ASCII characters.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic());
        ok.then(|| Self(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// FNV-1a (32 bits) of `bytes`: cheap, and enough to spread scenes over buckets (a
/// scene is not a secret: ARCHITECTURE rule 3).
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

impl Scene {
    /// The scene of a code mode attempt: `c_` + 128 bits of the keyed hash of its app and
    /// code (see `crate::login::code`), so a text push finds its attempt by the same
    /// index as a scan, and a snapshot restores the code with the attempt.
    pub fn of_code(digest: &[u8]) -> Self {
        Self(format!("c_{}", hex::encode(&digest[..16])))
    }

    /// The Redis bucket of this scene (FNV-1a of its bytes, low byte): a cluster keeps
    /// the scene's key in the slot of its attempt's record, whose bucket is made to match
    /// (see `engine::cluster`), so a push finds and reads its attempt in one script.
    pub fn bucket(&self) -> u8 {
        fnv1a(self.0.as_bytes()) as u8
    }

    /// A random scene (as [`Scene::generate`]) in bucket `b`. FNV-1a's last step makes
    /// the low byte `((low ^ c) × 0x93) mod 256` (the prime's higher bytes only carry
    /// upwards), so exactly one last byte `c` lands in `b`; the first 31 characters are
    /// drawn again while that byte is not a URL-safe character (3 times in 4), instead of
    /// whole scenes 256 times over.
    pub fn generate_in(b: u8) -> Self {
        /// The inverse of FNV's prime modulo 256 (0x93 × 0x9b = 1 + 89 × 256).
        const INVERSE: u8 = 0x9b;
        loop {
            let mut s = Self::generate().0;
            s.pop();
            let c = (fnv1a(s.as_bytes()) as u8) ^ b.wrapping_mul(INVERSE);
            if c.is_ascii_alphanumeric() || c == b'-' || c == b'_' {
                s.push(char::from(c));
                return Self(s);
            }
        }
    }

    /// How the attempt of this scene is logged in.
    pub fn mode(&self) -> LoginMode {
        if self.0.starts_with("c_") { LoginMode::Code } else { LoginMode::Qr }
    }
}

/// How an attempt is logged in: a scan of its QR code, or a code sent to the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginMode {
    Qr,
    Code,
}

impl LoginMode {
    pub fn label(self) -> &'static str {
        match self {
            LoginMode::Qr => "qr",
            LoginMode::Code => "code",
        }
    }
}

impl fmt::Debug for Scene {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scene({}…)", &self.0[..6.min(self.0.len())])
    }
}

/// A label of the client kind (`web`, `tv`): `^[a-z0-9_-]{1,16}$`, safe as a metric label.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SceneType(String);

impl SceneType {
    pub fn parse(s: &str) -> Option<Self> {
        let ok = (1..=16).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        ok.then(|| Self(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for SceneType {
    fn default() -> Self {
        Self("web".into())
    }
}

/// `^[a-z0-9_-]{1,32}$`: the configured name of an official account.
pub fn is_app_name(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// A mainland China mobile number, normalised to its 11 digits.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Phone(String);

impl Phone {
    /// Accepts `+86`/`86`/`0086` prefixes, spaces and dashes; then `1[3-9]` + 9 digits.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() > 32 {
            return None;
        }
        let compact: String = s.chars().filter(|c| *c != ' ' && *c != '-').collect();
        let digits = compact
            .strip_prefix("+86")
            .or_else(|| compact.strip_prefix("0086"))
            .or_else(|| if compact.len() == 13 { compact.strip_prefix("86") } else { None })
            .unwrap_or(&compact);
        let b = digits.as_bytes();
        let ok = b.len() == 11 && b[0] == b'1' && (b'3'..=b'9').contains(&b[1]) && b.iter().all(u8::is_ascii_digit);
        ok.then(|| Self(digits.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// `138****0000`: the only form in which a phone leaves the service or enters a log.
    pub fn masked(&self) -> String {
        mask_phone(&self.0)
    }
}

/// Masks any stored phone string the same way (`138****0000`).
pub fn mask_phone(p: &str) -> String {
    if p.len() == 11 && p.is_ascii() { format!("{}****{}", &p[..3], &p[7..]) } else { "****".into() }
}

/// Masks an openid for an operator's eyes (`oAbc****wxyz`): enough to match one a user
/// reads out, not enough to act as them anywhere.
pub fn mask_openid(o: &str) -> String {
    let chars: Vec<char> = o.chars().collect();
    if chars.len() < 12 {
        return "****".into();
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}****{tail}")
}

impl fmt::Debug for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Phone({})", self.masked())
    }
}

/// A six-digit SMS code as typed by the person.
#[derive(Clone, PartialEq, Eq)]
pub struct SmsCode(String);

impl SmsCode {
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        (s.len() == 6 && s.bytes().all(|b| b.is_ascii_digit())).then(|| Self(s.to_string()))
    }
    /// Uniform over 000000..=999999 from the OS-seeded CSPRNG.
    pub fn generate() -> Self {
        let n = rand::random_range(0..1_000_000u32);
        Self(format!("{n:06}"))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SmsCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SmsCode(******)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_id_shape_and_entropy() {
        let a = PollId::generate();
        assert_eq!(a.as_str().len(), 43);
        assert!(PollId::parse(a.as_str()).is_some());
        assert_ne!(a, PollId::generate());
        assert!(PollId::parse(&"a".repeat(21)).is_none());
        assert!(PollId::parse(&"a".repeat(22)).is_some());
        assert!(PollId::parse(&"a".repeat(64)).is_some());
        assert!(PollId::parse(&"a".repeat(65)).is_none());
        assert!(PollId::parse(&format!("{}+", "a".repeat(30))).is_none());
        assert!(!format!("{a:?}").contains(a.as_str()));
    }

    #[test]
    fn scene_is_independent_and_bounded() {
        let s = Scene::generate();
        assert!(s.as_str().len() <= 64 && s.as_str().starts_with("sl_"));
        assert!(Scene::parse("").is_none());
        assert!(Scene::parse(&"x".repeat(65)).is_none());
        assert!(Scene::parse("has space").is_none());
        assert!(Scene::parse("123123").is_some());
    }

    #[test]
    fn a_scene_drawn_in_a_bucket_lands_there_and_looks_like_any_other() {
        let mut seen = std::collections::HashSet::new();
        for b in 0..=255u8 {
            for _ in 0..4 {
                let s = Scene::generate_in(b);
                assert_eq!(s.bucket(), b, "{}", s.as_str());
                assert_eq!((s.as_str().len(), &s.as_str()[..3]), (35, "sl_"), "{}", s.as_str());
                assert_eq!(Scene::parse(s.as_str()).as_ref(), Some(&s));
                assert!(URL_SAFE_NO_PAD.decode(&s.as_str()[3..]).is_ok_and(|raw| raw.len() == 24));
                assert!(seen.insert(s), "a scene drawn twice");
            }
        }
    }

    #[test]
    fn scene_type_rule() {
        assert!(SceneType::parse("web").is_some());
        assert!(SceneType::parse("tv_2-b").is_some());
        assert!(SceneType::parse("TV").is_none());
        assert!(SceneType::parse("").is_none());
        assert!(SceneType::parse(&"a".repeat(17)).is_none());
    }

    #[test]
    fn phone_normalises_and_masks() {
        for ok in ["13800138000", "+8613800138000", "+86 138-0013-8000", "8613800138000", "008613800138000"] {
            assert_eq!(Phone::parse(ok).map(|p| p.as_str().to_string()).as_deref(), Some("13800138000"), "{ok}");
        }
        for bad in ["12800138000", "1380013800", "138001380000", "+1 4155550100", "1380013800x", "", "+8612800138000"] {
            assert!(Phone::parse(bad).is_none(), "{bad}");
        }
        let p = Phone::parse("13800138000").unwrap();
        assert_eq!(p.masked(), "138****8000");
        assert!(!format!("{p:?}").contains("13800138000"));
    }

    #[test]
    fn sms_code_rule() {
        assert!(SmsCode::parse("012345").is_some());
        assert!(SmsCode::parse("12345").is_none());
        assert!(SmsCode::parse("12345a").is_none());
        let c = SmsCode::generate();
        assert_eq!(c.as_str().len(), 6);
        assert_eq!(format!("{c:?}"), "SmsCode(******)");
    }
}
