//! Fuzzes the JSON request bodies and the domain parsers behind them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scanlogin::api::login::{BindRequest, QrRequest, SmsRequest};
use scanlogin::ids::{Phone, PollId, SceneType, SmsCode};

fuzz_target!(|data: &[u8]| {
    if let Ok(q) = serde_json::from_slice::<QrRequest>(data)
        && let Some(t) = q.scene_type
    {
        let _ = SceneType::parse(&t);
    }
    if let Ok(s) = serde_json::from_slice::<SmsRequest>(data) {
        let _ = (PollId::parse(&s.uuid), Phone::parse(&s.phone).map(|p| p.masked()));
    }
    if let Ok(b) = serde_json::from_slice::<BindRequest>(data) {
        let _ = (PollId::parse(&b.uuid), Phone::parse(&b.phone), SmsCode::parse(&b.code));
    }
});
