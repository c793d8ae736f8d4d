//! Fuzzes safe-mode decryption with a fixed key: arbitrary `Encrypt` text and arbitrary
//! ciphertext bytes must be refused or decrypted, never panic; round trips must hold.
#![no_main]

use std::sync::OnceLock;

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use scanlogin::wechat::crypto::{AesKey, decrypt, encrypt};

fn key() -> &'static AesKey {
    static KEY: OnceLock<AesKey> = OnceLock::new();
    KEY.get_or_init(|| AesKey::from_encoding_key("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG").unwrap())
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = decrypt(key(), "wx2c2769f8efd9abc2", text);
    }
    // Raw bytes as ciphertext, exercising the length, padding and layout checks.
    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
    let _ = decrypt(key(), "wx2c2769f8efd9abc2", &b64);
    let sealed = encrypt(key(), "wx2c2769f8efd9abc2", [7; 16], data);
    assert_eq!(decrypt(key(), "wx2c2769f8efd9abc2", &sealed).as_deref(), Ok(data));
});
