//! Fuzzes the callback XML reader and the push interpretation: no input may panic,
//! and whatever parses must interpret without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scanlogin::wechat::xml::{parse_fields, parse_push};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(fields) = parse_fields(text)
        && let Ok(env) = parse_push(&fields)
    {
        let _ = env.dedup_key(&fields);
    }
});
