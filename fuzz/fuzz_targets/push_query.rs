//! Fuzzes the callback query string and signature check: any query must parse or be
//! refused, and the check must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scanlogin::wechat::callback::{AppKeys, PushQuery, check_signature};

fuzz_target!(|data: &[u8]| {
    if let Ok(q) = std::str::from_utf8(data)
        && let Ok(parsed) = actix_web::web::Query::<PushQuery>::from_query(q)
    {
        let keys = AppKeys { app_id: "wx1".into(), token: "token".into(), aes_keys: vec![] };
        let _ = check_signature(&keys, &parsed);
    }
});
