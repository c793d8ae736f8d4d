//! Asymmetric signing keys: generating them, signing and verifying with them (`ring`:
//! an ES256 signature costs ~17 µs, where the RustCrypto path costs ~340 µs), their
//! public half as a JWK, and their private half sealed for the database.
//!
//! The private part of a key never leaves the process unencrypted: it is stored as
//! AES-256-GCM of its PKCS#8 document under a key derived from `token.secret`'s value,
//! with the key's `kid` as associated data (a sealed key moved to another row does not
//! open).

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// An asymmetric JWS algorithm we sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
pub enum SigningAlg {
    #[serde(rename = "ES256")]
    Es256,
    #[serde(rename = "EdDSA")]
    EdDsa,
    #[serde(rename = "RS256")]
    Rs256,
}

impl SigningAlg {
    pub const ALL: [SigningAlg; 3] = [SigningAlg::Es256, SigningAlg::EdDsa, SigningAlg::Rs256];

    /// The JWS `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::Es256 => "ES256",
            SigningAlg::EdDsa => "EdDSA",
            SigningAlg::Rs256 => "RS256",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl std::fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RSA keys we make: 2048 bits, what every relying party accepts.
const RSA_BITS: usize = 2048;

/// The public half of a key, as published in the JWK Set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    #[serde(rename = "use")]
    pub use_: String,
    pub alg: String,
    pub kid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
}

impl Jwk {
    /// RFC 7638 thumbprint: the SHA-256 of the required members in lexical order. It is
    /// the key's `kid`: the same key always has the same id, and it says nothing secret.
    fn thumbprint(&self) -> String {
        let canonical = match self.kty.as_str() {
            "EC" => format!(
                r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
                self.crv.as_deref().unwrap_or_default(),
                self.x.as_deref().unwrap_or_default(),
                self.y.as_deref().unwrap_or_default()
            ),
            "OKP" => format!(
                r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#,
                self.crv.as_deref().unwrap_or_default(),
                self.x.as_deref().unwrap_or_default()
            ),
            _ => format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                self.e.as_deref().unwrap_or_default(),
                self.n.as_deref().unwrap_or_default()
            ),
        };
        URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(canonical.as_bytes()))
    }

    fn new(alg: SigningAlg, kty: &str) -> Self {
        Self {
            kty: kty.into(),
            use_: "sig".into(),
            alg: alg.as_str().into(),
            kid: String::new(),
            crv: None,
            x: None,
            y: None,
            n: None,
            e: None,
        }
    }

    /// The verifier of this public key (`None`: a JWK we did not make).
    pub fn verifier(&self) -> Option<Verifier> {
        let alg = SigningAlg::parse(&self.alg)?;
        let b64 = |s: &Option<String>| s.as_deref().and_then(|s| URL_SAFE_NO_PAD.decode(s).ok());
        let bytes = match alg {
            SigningAlg::Es256 => {
                let (x, y) = (b64(&self.x)?, b64(&self.y)?);
                if x.len() != 32 || y.len() != 32 {
                    return None;
                }
                [&[4u8][..], &x, &y].concat()
            }
            SigningAlg::EdDsa => b64(&self.x).filter(|x| x.len() == 32)?,
            SigningAlg::Rs256 => {
                // ring takes an RSAPublicKey DER for verification; build it from n and e.
                let (n, e) = (b64(&self.n)?, b64(&self.e)?);
                return Some(Verifier { alg, key: VerifyKey::Rsa { n, e } });
            }
        };
        Some(Verifier { alg, key: VerifyKey::Raw(bytes) })
    }
}

/// A public key ready to check signatures.
#[derive(Debug, Clone)]
pub struct Verifier {
    pub alg: SigningAlg,
    key: VerifyKey,
}

#[derive(Debug, Clone)]
enum VerifyKey {
    Raw(Vec<u8>),
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

impl Verifier {
    pub fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        match (&self.key, self.alg) {
            (VerifyKey::Raw(k), SigningAlg::Es256) => {
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, k).verify(message, sig).is_ok()
            }
            (VerifyKey::Raw(k), SigningAlg::EdDsa) => {
                signature::UnparsedPublicKey::new(&signature::ED25519, k).verify(message, sig).is_ok()
            }
            (VerifyKey::Rsa { n, e }, SigningAlg::Rs256) => signature::RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, sig)
                .is_ok(),
            _ => false,
        }
    }
}

/// A private key, parsed once (signing re-parses nothing).
pub struct KeyPair {
    pub alg: SigningAlg,
    pub jwk: Jwk,
    inner: Inner,
    pkcs8: zeroizing::Bytes,
}

enum Inner {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
    Rs256(RsaKeyPair),
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair").field("alg", &self.alg).field("kid", &self.jwk.kid).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key generation failed")]
    Generate,
    #[error("the stored key {0} is not a valid key")]
    Rejected(String),
    #[error(
        "the stored signing key {0} cannot be decrypted: token.secret is not the one it was stored with (set token.secret_previous to the old one while rotating)"
    )]
    Sealed(String),
}

impl KeyPair {
    /// A new random key.
    pub fn generate(alg: SigningAlg) -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        let pkcs8 = match alg {
            SigningAlg::Es256 => EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| KeyError::Generate)?
                .as_ref()
                .to_vec(),
            SigningAlg::EdDsa => {
                Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| KeyError::Generate)?.as_ref().to_vec()
            }
            // ring does not make RSA keys; the RSA crate (already in the tree) does.
            SigningAlg::Rs256 => {
                use rsa::pkcs8::EncodePrivateKey as _;
                let key = rsa::RsaPrivateKey::new(&mut RingRng(rng), RSA_BITS).map_err(|_| KeyError::Generate)?;
                key.to_pkcs8_der().map_err(|_| KeyError::Generate)?.as_bytes().to_vec()
            }
        };
        Self::from_pkcs8(alg, pkcs8, "new")
    }

    /// A key from its PKCS#8 document; `kid` only names it in an error.
    fn from_pkcs8(alg: SigningAlg, pkcs8: Vec<u8>, kid: &str) -> Result<Self, KeyError> {
        let rejected = |_| KeyError::Rejected(kid.to_string());
        let mut jwk;
        let inner = match alg {
            SigningAlg::Es256 => {
                let k =
                    EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &SystemRandom::new())
                        .map_err(rejected)?;
                let point = k.public_key().as_ref();
                jwk = Jwk::new(alg, "EC");
                jwk.crv = Some("P-256".into());
                jwk.x = Some(URL_SAFE_NO_PAD.encode(&point[1..33]));
                jwk.y = Some(URL_SAFE_NO_PAD.encode(&point[33..65]));
                Inner::Es256(k)
            }
            SigningAlg::EdDsa => {
                let k = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8).map_err(rejected)?;
                jwk = Jwk::new(alg, "OKP");
                jwk.crv = Some("Ed25519".into());
                jwk.x = Some(URL_SAFE_NO_PAD.encode(k.public_key().as_ref()));
                Inner::EdDsa(k)
            }
            SigningAlg::Rs256 => {
                use rsa::pkcs8::DecodePrivateKey as _;
                use rsa::traits::PublicKeyParts as _;
                let parts = rsa::RsaPrivateKey::from_pkcs8_der(&pkcs8).map_err(|_| KeyError::Rejected(kid.into()))?;
                jwk = Jwk::new(alg, "RSA");
                jwk.n = Some(URL_SAFE_NO_PAD.encode(parts.n().to_bytes_be()));
                jwk.e = Some(URL_SAFE_NO_PAD.encode(parts.e().to_bytes_be()));
                Inner::Rs256(RsaKeyPair::from_pkcs8(&pkcs8).map_err(rejected)?)
            }
        };
        jwk.kid = jwk.thumbprint();
        Ok(Self { alg, jwk, inner, pkcs8: zeroizing::Bytes(pkcs8) })
    }

    pub fn kid(&self) -> &str {
        &self.jwk.kid
    }

    /// The signature of `message` as a JWS wants it (ES256: r‖s, 64 bytes).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match &self.inner {
            Inner::Es256(k) => {
                k.sign(&SystemRandom::new(), message).expect("ECDSA signing with a valid key").as_ref().to_vec()
            }
            Inner::EdDsa(k) => k.sign(message).as_ref().to_vec(),
            Inner::Rs256(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &SystemRandom::new(), message, &mut sig)
                    .expect("RSA signing with a valid key and a buffer of the modulus' length");
                sig
            }
        }
    }

    /// The private part sealed for storage: base64 of nonce ‖ AES-256-GCM(PKCS#8).
    pub fn seal(&self, at_rest: &[u8; 32]) -> String {
        use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, at_rest).expect("a 32-byte key"));
        let mut nonce = [0u8; 12];
        SystemRandom::new().fill(&mut nonce).expect("the system's random source");
        let mut data = self.pkcs8.0.clone();
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(self.kid().as_bytes()), &mut data)
            .expect("sealing a key");
        STANDARD.encode([&nonce[..], &data].concat())
    }

    /// A stored key, opened with the first of `at_rest` keys that opens it.
    pub fn open(alg: SigningAlg, kid: &str, sealed: &str, at_rest: &[[u8; 32]]) -> Result<Self, KeyError> {
        use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
        let raw = STANDARD.decode(sealed).map_err(|_| KeyError::Rejected(kid.into()))?;
        if raw.len() < 12 + 16 {
            return Err(KeyError::Rejected(kid.into()));
        }
        for k in at_rest {
            let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, k).expect("a 32-byte key"));
            let nonce = Nonce::try_assume_unique_for_key(&raw[..12]).expect("12 bytes");
            let mut data = raw[12..].to_vec();
            if let Ok(plain) = key.open_in_place(nonce, Aad::from(kid.as_bytes()), &mut data) {
                let pair = Self::from_pkcs8(alg, plain.to_vec(), kid)?;
                if pair.kid() != kid {
                    return Err(KeyError::Rejected(kid.into()));
                }
                return Ok(pair);
            }
        }
        Err(KeyError::Sealed(kid.into()))
    }
}

/// ring's system random source for the RSA crate's key generation.
struct RingRng(SystemRandom);

impl rsa::rand_core::RngCore for RingRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill(dest).expect("the system's random source");
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rsa::rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rsa::rand_core::CryptoRng for RingRng {}

mod zeroizing {
    //! The PKCS#8 bytes of a private key, overwritten when dropped.
    pub struct Bytes(pub Vec<u8>);

    impl Drop for Bytes {
        fn drop(&mut self) {
            for b in self.0.iter_mut() {
                // A volatile-free best effort: the optimiser may keep it, it costs nothing.
                *b = std::hint::black_box(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_signs_what_its_public_key_verifies() {
        for alg in SigningAlg::ALL {
            let k = KeyPair::generate(alg).unwrap();
            let sig = k.sign(b"message");
            let v = k.jwk.verifier().unwrap();
            assert!(v.verify(b"message", &sig), "{alg}");
            assert!(!v.verify(b"messagf", &sig), "{alg}: another message");
            let other = KeyPair::generate(alg).unwrap();
            assert!(!other.jwk.verifier().unwrap().verify(b"message", &sig), "{alg}: another key");
            assert_eq!(k.kid().len(), 43, "a SHA-256 thumbprint");
        }
    }

    /// RFC 7638 §3.1's example key has this thumbprint.
    #[test]
    fn the_kid_is_the_rfc7638_thumbprint() {
        let mut jwk = Jwk::new(SigningAlg::Rs256, "RSA");
        jwk.e = Some("AQAB".into());
        jwk.n = Some("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw".into());
        assert_eq!(jwk.thumbprint(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    #[test]
    fn a_sealed_key_opens_only_with_its_secret_and_its_kid() {
        let k = KeyPair::generate(SigningAlg::Es256).unwrap();
        let (right, wrong) = ([1u8; 32], [2u8; 32]);
        let sealed = k.seal(&right);
        assert!(!sealed.contains(&STANDARD.encode(&k.pkcs8.0[..16])), "not the plain document");
        let opened = KeyPair::open(SigningAlg::Es256, k.kid(), &sealed, &[wrong, right]).unwrap();
        assert_eq!(opened.jwk, k.jwk, "the previous secret is tried too");
        assert!(matches!(KeyPair::open(SigningAlg::Es256, k.kid(), &sealed, &[wrong]), Err(KeyError::Sealed(_))));
        let other = KeyPair::generate(SigningAlg::Es256).unwrap();
        assert!(KeyPair::open(SigningAlg::Es256, other.kid(), &sealed, &[right]).is_err(), "bound to its kid");
    }
}
