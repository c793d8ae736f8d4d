//! WeChat Official Account "safe mode" message crypto (docs/wechat.md, "Server URL
//! verification" and "Plaintext, compatible and safe mode").
//!
//! Pure functions, no I/O: SHA-1 signatures over sorted strings (`signature`,
//! `msg_signature`), the EncodingAESKey → AES key derivation, and the
//! AES-256-CBC envelope `random16 ‖ u32 BE len ‖ msg ‖ appid ‖ PKCS#7(32)`.
//!
//! CBC here is unauthenticated: callers must verify `msg_signature` *before*
//! calling [`decrypt`], and should not tell the peer which [`CryptoError`]
//! occurred, so the error kinds cannot serve as a padding oracle.

use aes::Aes256;
use aes::cipher::{Block, BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use sha1::{Digest, Sha1};
use std::fmt;
use subtle::ConstantTimeEq;

/// WeChat pads to 32 bytes (not AES's 16) in every SDK; §2.3.
const PAD_BLOCK: usize = 32;
/// 16 random bytes followed by the 4-byte big-endian message length.
const HEADER_LEN: usize = 20;
/// Length of an EncodingAESKey as shown in the WeChat console.
const ENCODING_KEY_LEN: usize = 43;

/// The 43rd key character carries 2 unused bits that are usually non-zero, so
/// a strict decoder rejects real keys (§2.3 "Rust trap"); the console also
/// hands out the key without its `=`, hence padding-indifferent.
const KEY_ENGINE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Errors from key decoding and [`decrypt`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("EncodingAESKey must be 43 characters from [A-Za-z0-9]")]
    BadKey,
    #[error("Encrypt is not valid base64")]
    Base64,
    #[error("ciphertext length is not a positive multiple of 32")]
    BadLength,
    #[error("invalid PKCS#7 padding")]
    BadPadding,
    #[error("invalid plaintext layout")]
    BadLayout,
    #[error("appid in message does not match")]
    AppIdMismatch,
}

/// SHA-1 (lowercase hex) of the parts sorted in byte order and concatenated
/// without separator: both the URL `signature` (§1) and `msg_signature` (§2.2).
pub fn sign(parts: &[&str]) -> String {
    let mut sorted = parts.to_vec();
    // `str`'s `Ord` is byte-wise lexicographic, which is what WeChat uses.
    sorted.sort_unstable();
    let mut hasher = Sha1::new();
    for part in sorted {
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Checks `expected_hex` against [`sign`]`(parts)` in constant time, so a
/// forger cannot learn the right signature byte by byte from response timing.
/// The comparison is case-sensitive: WeChat always sends lowercase hex.
pub fn verify_signature(expected_hex: &str, parts: &[&str]) -> bool {
    let actual = sign(parts);
    // `ct_eq` on slices of different lengths is simply false.
    bool::from(actual.as_bytes().ct_eq(expected_hex.as_bytes()))
}

/// The 32-byte AES-256 key derived from an EncodingAESKey.
#[derive(Clone)]
pub struct AesKey([u8; 32]);

impl fmt::Debug for AesKey {
    // Keys end up in config structs that get logged; never print the bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AesKey(..)")
    }
}

impl AesKey {
    /// Decodes the 43-character EncodingAESKey (base64 without the `=`).
    ///
    /// # Errors
    /// [`CryptoError::BadKey`] unless `s` is exactly 43 ASCII letters/digits.
    pub fn from_encoding_key(s: &str) -> Result<AesKey, CryptoError> {
        // `+` and `/` are valid base64 but WeChat never issues them; rejecting
        // them catches a key pasted from the wrong field early.
        if s.len() != ENCODING_KEY_LEN || !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(CryptoError::BadKey);
        }
        let bytes = KEY_ENGINE.decode(s).map_err(|_| CryptoError::BadKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::BadKey)?;
        Ok(AesKey(key))
    }

    /// The raw key bytes.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// WeChat uses the first 16 key bytes as a fixed IV (§2.3).
    fn iv(&self) -> [u8; 16] {
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&self.0[..16]);
        iv
    }
}

/// In-place AES-256-CBC encryption, no cipher-level padding.
/// `buf.len()` is a multiple of 32 (hence of 16) by construction.
fn cbc_encrypt(key: &AesKey, buf: &mut [u8]) {
    let iv = key.iv();
    let (blocks, tail) = Block::<Aes256>::slice_as_chunks_mut(buf);
    debug_assert!(tail.is_empty(), "caller pads to a whole number of blocks");
    cbc::Encryptor::<Aes256>::new((&key.0).into(), (&iv).into()).encrypt_blocks(blocks);
}

/// In-place AES-256-CBC decryption, no cipher-level padding.
/// `buf.len()` must be a multiple of 16 (callers check for 32).
fn cbc_decrypt(key: &AesKey, buf: &mut [u8]) {
    let iv = key.iv();
    let (blocks, tail) = Block::<Aes256>::slice_as_chunks_mut(buf);
    debug_assert!(tail.is_empty(), "caller checks the length first");
    cbc::Decryptor::<Aes256>::new((&key.0).into(), (&iv).into()).decrypt_blocks(blocks);
}

/// Encrypts `msg` for `appid` with the given 16-byte random prefix and returns
/// the `Encrypt` text (standard base64 with `=` padding). Deterministic, so it
/// can be checked against fixed vectors; production code uses [`encrypt_random`].
///
/// # Panics
/// If `msg` is 4 GiB or longer (its length must fit the u32 header field);
/// replies are a few KiB.
pub fn encrypt(key: &AesKey, appid: &str, random16: [u8; 16], msg: &[u8]) -> String {
    let msg_len = u32::try_from(msg.len()).unwrap_or_else(|_| panic!("message exceeds 4 GiB"));
    let body_len = HEADER_LEN + msg.len() + appid.len();
    // Always 1..=32: an already aligned body gets a full block of 0x20, which
    // the decrypting side requires (skipping it breaks replies, §9 item 6).
    let pad = PAD_BLOCK - body_len % PAD_BLOCK;
    let mut buf = Vec::with_capacity(body_len + pad);
    buf.extend_from_slice(&random16);
    buf.extend_from_slice(&msg_len.to_be_bytes());
    buf.extend_from_slice(msg);
    buf.extend_from_slice(appid.as_bytes());
    // `pad` is at most 32, so it fits a byte.
    buf.resize(body_len + pad, pad as u8);
    cbc_encrypt(key, &mut buf);
    STANDARD.encode(&buf)
}

/// [`encrypt`] with a fresh random prefix from rand's thread-local CSPRNG, so
/// equal replies never produce equal ciphertexts.
pub fn encrypt_random(key: &AesKey, appid: &str, msg: &[u8]) -> String {
    let random16: [u8; 16] = rand::random();
    encrypt(key, appid, random16, msg)
}

/// Decrypts an `Encrypt` text and returns the message bytes, checking every
/// field of the layout (§2.5) and that the embedded appid equals `appid`.
///
/// # Errors
/// [`CryptoError::Base64`], [`CryptoError::BadLength`],
/// [`CryptoError::BadPadding`], [`CryptoError::BadLayout`] or
/// [`CryptoError::AppIdMismatch`], in the order the checks run.
pub fn decrypt(key: &AesKey, appid: &str, encrypt_b64: &str) -> Result<Vec<u8>, CryptoError> {
    // Strict decoder: WeChat emits canonical padded base64, and the text was
    // already covered by msg_signature, so leniency would buy nothing.
    let mut buf = STANDARD.decode(encrypt_b64).map_err(|_| CryptoError::Base64)?;
    if buf.is_empty() || buf.len() % PAD_BLOCK != 0 {
        return Err(CryptoError::BadLength);
    }
    cbc_decrypt(key, &mut buf);

    // The official SDKs treat an out-of-range pad as 0; we reject it, since
    // it can only come from a wrong key or a corrupted message.
    let pad = buf.last().map_or(0, |&b| usize::from(b));
    if !(1..=PAD_BLOCK).contains(&pad) {
        return Err(CryptoError::BadPadding);
    }
    let body_len = buf.len() - pad;
    if buf[body_len..].iter().any(|&b| usize::from(b) != pad) {
        return Err(CryptoError::BadPadding);
    }
    buf.truncate(body_len);

    if buf.len() < HEADER_LEN {
        return Err(CryptoError::BadLayout);
    }
    let declared = u32::from_be_bytes([buf[16], buf[17], buf[18], buf[19]]);
    let msg_end = usize::try_from(declared)
        .ok()
        .and_then(|n| n.checked_add(HEADER_LEN))
        .filter(|&end| end <= buf.len())
        .ok_or(CryptoError::BadLayout)?;

    // Without this check a message encrypted for another account sharing the
    // key would be accepted (WxJava has it commented out; §2.5 step 8).
    if !bool::from(buf[msg_end..].ct_eq(appid.as_bytes())) {
        return Err(CryptoError::AppIdMismatch);
    }
    buf.truncate(msg_end);
    buf.drain(..HEADER_LEN);
    Ok(buf)
}

/// `msg_signature` of an `Encrypt` text (§2.2), also the reply's
/// `MsgSignature` (§2.6).
pub fn msg_signature(token: &str, timestamp: &str, nonce: &str, encrypt_b64: &str) -> String {
    sign(&[token, timestamp, nonce, encrypt_b64])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    const V1_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    const V1_ENCRYPT: &str = "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE=";
    const V1_MSG: &str = "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>\n<FromUserName><![CDATA[oyORnuP8q7ou2gfYjqLzSIWZf0rs]]></FromUserName>\n<CreateTime>1409735668</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[abcdteT]]></Content>\n<MsgId>6054768590064713728</MsgId>\n</xml>";
    const V1_APPID: &str = "wx2c2769f8efd9abc2";

    const V2_APPID: &str = "wxb11529c136998cb6";
    const V2_PLAIN_A: &str = "我是中文abcd123";
    const V2_CIPHER_A: &str =
        "jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832WzZGMhkP72vVOfg==";
    const V2_PLAIN_B: &str = "<xml><ToUserName><![CDATA[oia2Tj我是中文jewbmiOUlr6X-1crbLOvLw]]></ToUserName><FromUserName><![CDATA[gh_7f083739789a]]></FromUserName><CreateTime>1407743423</CreateTime><MsgType><![CDATA[video]]></MsgType><Video><MediaId><![CDATA[eYJ1MbwPRJtOvIEabaxHs7TX2D-HV71s79GUxqdUkjm6Gs2Ed1KF3ulAOA9H1xG0]]></MediaId><Title><![CDATA[testCallBackReplyVideo]]></Title><Description><![CDATA[testCallBackReplyVideo]]></Description></Video></xml>";
    const V2_CIPHER_B: &str = "jn1L23DB+6ELqJ+6bruv23M2GmYfkv0xBh2h+XTBOKVKcgDFHle6gqcZ1cZrk3e1qjPQ1F4RsLWzQRG9udbKWesxlkupqcEcW7ZQweImX9+wLMa0GaUzpkycA8+IamDBxn5loLgZpnS7fVAbExOkK5DYHBmv5tptA9tklE/fTIILHR8HLXa5nQvFb3tYPKAlHF3rtTeayNf0QuM+UW/wM9enGIDIJHF7CLHiDNAYxr+r+OrJCmPQyTy8cVWlu9iSvOHPT/77bZqJucQHQ04sq7KZI27OcqpQNSto2OdHCoTccjggX5Z9Mma0nMJBU+jLKJ38YB1fBIz+vBzsYjrTmFQ44YfeEuZ+xRTQwr92vhA9OxchWVINGC50qE/6lmkwWTwGX9wtQpsJKhP+oS7rvTY8+VdzETdfakjkwQ5/Xka042OlUb1/slTwo4RscuQ+RdxSGvDahxAJ6+EAjLt9d8igHngxIbf6YyqqROxuxqIeIch3CssH/LqRs+iAcILvApYZckqmA7FNERspKA5f8GoJ9sv8xmGvZ9Yrf57cExWtnX8aCMMaBropU/1k+hKP5LVdzbWCG0hGwx/dQudYR/eXp3P0XxjlFiy+9DMlaFExWUZQDajPkdPrEeOwofJb";

    const V3_KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
    const V3_APPID: &str = "wx49f0ab532d5d035a";
    const V3_ENCRYPT: &str = "RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDXzF6Bv283dGymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cvkKR2/nPwBiT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54SNdshoQgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91eBdCRxthuL0=";
    const V3_MSG: &str = "<xml><ToUserName><![CDATA[wx49f0ab532d5d035a]]></ToUserName>\n<FromUserName><![CDATA[messense]]></FromUserName>\n<CreateTime>1411525903</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[test]]></Content>\n<MsgId>4363689963896700987</MsgId>\n<AgentID>1</AgentID>\n</xml>";
    const V3_REPLY: &str = "<xml>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[test]]></Content>\n<FromUserName><![CDATA[wx49f0ab532d5d035a]]></FromUserName>\n<ToUserName><![CDATA[messense]]></ToUserName>\n<AgentID>1</AgentID>\n<CreateTime>1411525903</CreateTime>\n</xml>";
    const V3_REPLY_ENCRYPT: &str = "9s4gMv99m88kKTh/H8IdkOiMg6bisoy3ypwy9H4hvSPe9nsGaqyw5hhSjdYbcrKk+j3nba4HMOTzHrluLBYqxgNcBqGsL8GqxlhZgURnAtObvesEl5nZ+uBE8bviY0LWke8Zy9V/QYKxNV2FqllNXcfmstttyIkMKCCmVbCFM2JTF5wY0nFhHZSjPUL2Q1qvSUCUld+/WIXrx0oyKQmpB6o8NRrrNrsDf03oxI1p9FxUgMnwKKZeOA/uu+2IEvEBtb7muXsVbwbgX05UPPJvFurDXafG0RQyPR+mf1nDnAtQmmNOuiR5MIkdQ39xn1vWwi1O5oazPoQJz0nTYjxxEE8kv3kFxtAGVRe3ypD3WeK2XeFYFMNMpatF9XiKzHo3";

    fn key(s: &str) -> AesKey {
        AesKey::from_encoding_key(s).expect("valid test key")
    }

    /// Encrypts a hand-built plaintext, to test decrypt's layout checks.
    fn raw_encrypt(key: &AesKey, mut plain: Vec<u8>) -> String {
        cbc_encrypt(key, &mut plain);
        STANDARD.encode(plain)
    }

    #[test]
    fn signature_vectors() {
        let s1 = ["test", "1410685589", "test"];
        assert_eq!(sign(&s1), "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff");
        assert!(verify_signature("f21891de399b4e33a1a93c9a7b8a8fffb5a443ff", &s1));
        assert!(!verify_signature("f21891de399b4e33a1a93c9a7b8a8fffb5a443fe", &s1));
        assert!(!verify_signature("F21891DE399B4E33A1A93C9A7B8A8FFFB5A443FF", &s1));
        assert!(!verify_signature("f21891de399b4e33a1a93c9a7b8a8fffb5a443f", &s1));
        assert!(!verify_signature("", &s1));
        let s2 = ["AAAAA", "1714037059", "486452656"];
        assert_eq!(sign(&s2), "899cf89e464efb63f54ddac96b0a0a235f53aa78");
        let s3 = ["spamtest", "1409735669", "1320562132"];
        assert_eq!(sign(&s3), "16120ec1b8dbb870f510d87ce6bc2463eae6ca1a");
        assert_eq!(sign(&["a", "b", "c"]), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(sign(&["c", "a", "b"]), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(sign(&["123", "345"]), "9f537aeb751ec72605f57f94a2f6dc3e3958e1dd");
    }

    #[test]
    fn key_decoding() {
        assert_eq!(
            hex::encode(key(V1_KEY).bytes()),
            "69b71d79f8218a39259a7a29aabb2dbafc31cb3d35db7e39ebbf3d0010831051"
        );
        assert_eq!(
            hex::encode(key(V3_KEY).bytes()),
            "916c4f115d94103cb15a998f74a0b71787603c398ebdf297d471a71140d2d5a4"
        );
        let short = &V1_KEY[..42];
        let long = format!("{V1_KEY}A");
        let odd = ['+', '/', '-', '=', ' ', 'é'].map(|c| format!("{short}{c}"));
        for bad in [short, "", &long].into_iter().chain(odd.iter().map(String::as_str)) {
            let res = AesKey::from_encoding_key(bad).map(|_| ());
            assert_eq!(res, Err(CryptoError::BadKey), "{bad:?}");
        }
        assert_eq!(format!("{:?}", key(V1_KEY)), "AesKey(..)");
    }

    #[test]
    fn v1_official_sample_decrypts() {
        assert_eq!(
            msg_signature("spamtest", "1409735669", "1320562132", V1_ENCRYPT),
            "5d197aaffba7e9b25a30732f161a50dee96bd5fa"
        );
        let msg = decrypt(&key(V1_KEY), V1_APPID, V1_ENCRYPT).expect("V1 decrypts");
        assert_eq!(msg.len(), 280);
        assert_eq!(msg, V1_MSG.as_bytes());
        assert_eq!(decrypt(&key(V1_KEY), "wx2c2769f8efd9abc3", V1_ENCRYPT), Err(CryptoError::AppIdMismatch));
        assert_eq!(decrypt(&key(V1_KEY), "", V1_ENCRYPT), Err(CryptoError::AppIdMismatch));
    }

    #[test]
    fn v2_wxjava_encrypts_byte_for_byte() {
        let k = key(V1_KEY);
        let random = *b"aaaabbbbccccdddd";
        let sig_a = "82c962d39941aa48552f90ef55aa323dc620cc10";
        let sig_b = "ea88b765074e41eb8c7a75b449db34fa2fd560d5";
        for (plain, cipher, sig) in [(V2_PLAIN_A, V2_CIPHER_A, sig_a), (V2_PLAIN_B, V2_CIPHER_B, sig_b)] {
            assert_eq!(encrypt(&k, V2_APPID, random, plain.as_bytes()), cipher);
            assert_eq!(msg_signature("pamtest", "1409304348", "xxxxxx", cipher), sig);
            assert_eq!(decrypt(&k, V2_APPID, cipher).as_deref(), Ok(plain.as_bytes()));
        }
    }

    #[test]
    fn v3_wechatpy_decrypt_and_reply() {
        let k = key(V3_KEY);
        let msg = decrypt(&k, V3_APPID, V3_ENCRYPT).expect("V3 decrypts");
        assert_eq!(msg, V3_MSG.as_bytes());
        let reply = encrypt(&k, V3_APPID, *b"1234567890123456", V3_REPLY.as_bytes());
        assert_eq!(reply, V3_REPLY_ENCRYPT);
        assert_eq!(
            msg_signature("123456", "1411525903", "461056294", &reply),
            "407518b7649e86ef23978113f92d27afa9296533"
        );
    }

    #[test]
    fn aligned_body_gets_full_pad_block() {
        let k = key(V3_KEY);
        // 20 + 26 + 18 (appid) = 64: already a multiple of 32.
        let msg = b"abcdefghijklmnopqrstuvwxyz";
        let b64 = encrypt(&k, V3_APPID, [7; 16], msg);
        let mut raw = STANDARD.decode(&b64).expect("own output is base64");
        assert_eq!(raw.len(), 96);
        cbc_decrypt(&k, &mut raw);
        assert!(raw[64..].iter().all(|&b| b == 0x20));
        assert_eq!(decrypt(&k, V3_APPID, &b64).as_deref(), Ok(&msg[..]));
    }

    #[test]
    fn rejects_malformed_input() {
        let k = key(V1_KEY);
        let err = |s: &str| decrypt(&k, V1_APPID, s).map(|_| ());
        assert_eq!(err("not base64!"), Err(CryptoError::Base64));
        for len in [0, 16, 31, 48, 336] {
            let b64 = STANDARD.encode(vec![0u8; len]);
            assert_eq!(err(&b64), Err(CryptoError::BadLength), "{len} bytes");
        }

        let with_pad = |last: &[u8]| {
            let mut p = vec![b'r'; 64 - last.len()];
            p.extend_from_slice(last);
            raw_encrypt(&k, p)
        };
        assert_eq!(err(&with_pad(&[0])), Err(CryptoError::BadPadding));
        assert_eq!(err(&with_pad(&[33])), Err(CryptoError::BadPadding));
        assert_eq!(err(&with_pad(&[2, 3, 3])), Err(CryptoError::BadPadding));

        // 19 bytes left after removing the pad: shorter than the header.
        assert_eq!(err(&raw_encrypt(&k, [[0u8; 19].as_slice(), &[13; 13]].concat())), Err(CryptoError::BadLayout));
        // Declared length runs past the end of the body.
        let mut p = vec![0u8; 16];
        p.extend_from_slice(&u32::MAX.to_be_bytes());
        p.extend_from_slice(&[12; 12]);
        assert_eq!(err(&raw_encrypt(&k, p)), Err(CryptoError::BadLayout));
    }

    #[test]
    fn any_flipped_ciphertext_byte_is_detected() {
        let k = key(V1_KEY);
        let raw = STANDARD.decode(V1_ENCRYPT).expect("vector is base64");
        for pos in 0..raw.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut tampered = raw.clone();
                tampered[pos] ^= mask;
                let res = decrypt(&k, V1_APPID, &STANDARD.encode(&tampered));
                assert_ne!(res.as_deref(), Ok(V1_MSG.as_bytes()), "pos {pos} mask {mask:#x}");
            }
        }
    }

    #[test]
    fn random_round_trips() {
        let mut rng = rand::rng();
        const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        for _ in 0..300 {
            let enc_key: String = (0..43).map(|_| char::from(ALNUM[rng.random_range(0..ALNUM.len())])).collect();
            let k = key(&enc_key);
            let appid = format!("wx{:016x}", rng.random::<u64>());
            let mut msg = vec![0u8; rng.random_range(0..2000)];
            rng.fill(&mut msg[..]);
            let b64 = encrypt_random(&k, &appid, &msg);
            let ct_len = STANDARD.decode(&b64).expect("own output is base64").len();
            assert_eq!(ct_len, (20 + msg.len() + appid.len()) / 32 * 32 + 32);
            assert_eq!(decrypt(&k, &appid, &b64), Ok(msg));
        }
    }

    #[test]
    fn random_prefix_differs_between_calls() {
        let k = key(V1_KEY);
        assert_ne!(encrypt_random(&k, V1_APPID, b"x"), encrypt_random(&k, V1_APPID, b"x"));
    }
}
