//! Opening a callback push and sealing its reply (pure protocol, no I/O) — and the two
//! mirror images WeChat's side needs, which the sandbox and the load tool use: sealing a
//! push ([`seal_push`]) and opening a reply ([`open_reply`]). One place signs and seals.
//!
//! Order per docs/wechat.md, "The order a push is handled in": the URL `signature` first;
//! then, for an app with an AES key, `msg_signature` over `Encrypt` and the decryption
//! with its appid check. An app with a key accepts only encrypted pushes, so a plaintext
//! event cannot bypass safe mode.

use super::crypto::{self, AesKey};
use super::xml::{self, Envelope, Fields, XmlError};

/// The query parameters WeChat puts on every push.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct PushQuery {
    #[serde(default)]
    pub signature: String,
    #[serde(default)]
    pub timestamp: String,
    #[serde(default)]
    pub nonce: String,
    #[serde(default)]
    pub echostr: Option<String>,
    #[serde(default)]
    pub encrypt_type: Option<String>,
    #[serde(default)]
    pub msg_signature: Option<String>,
}

/// The protocol keys of one official account.
#[derive(Debug, Clone)]
pub struct AppKeys {
    pub app_id: String,
    pub token: crate::config::Secret,
    /// Current key first, then the previous one during a rotation.
    pub aes_keys: Vec<AesKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// A message signature (a push's `msg_signature`, a reply's `MsgSignature`) does not
    /// match what it signs.
    #[error("bad signature")]
    BadSignature,
    #[error("this app accepts only encrypted pushes")]
    NotEncrypted,
    #[error("could not decrypt")]
    Decrypt,
    #[error(transparent)]
    Xml(#[from] XmlError),
}

/// How the push came, so the reply goes back the same way.
#[derive(Debug, Clone)]
pub enum Mode {
    Plain,
    /// Encrypted with `aes_keys[key_index]`.
    Encrypted {
        key_index: usize,
    },
}

/// An authenticated, decrypted and parsed push.
#[derive(Debug, Clone)]
pub struct Opened {
    pub envelope: Envelope,
    pub fields: Fields,
    pub mode: Mode,
}

/// A query whose URL `signature` checked out against an account's Token. Only
/// [`check_signature`] makes one and [`open`] requires one: a push body is opened only
/// after the check, and the check is made once per push.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    keys: &'a AppKeys,
    query: &'a PushQuery,
}

/// Checks the URL signature (`GET` verification and every `POST`, before its body is
/// read); `None` when it does not check out.
pub fn check_signature<'a>(keys: &'a AppKeys, q: &'a PushQuery) -> Option<Signed<'a>> {
    let ok = !q.signature.is_empty()
        && q.timestamp.len() <= 32
        && q.nonce.len() <= 64
        && crypto::verify_signature(&q.signature, &[keys.token.expose(), &q.timestamp, &q.nonce]);
    ok.then_some(Signed { keys, query: q })
}

/// Authenticates (safe mode: `msg_signature`, decryption) and parses one push body.
pub fn open(signed: Signed<'_>, body: &str) -> Result<Opened, OpenError> {
    let Signed { keys, query: q } = signed;
    // The outer XML is parsed first either way, so a DTD is refused before anything else.
    let outer = xml::parse_fields(body)?;
    if keys.aes_keys.is_empty() {
        let envelope = xml::parse_push(&outer)?;
        return Ok(Opened { envelope, fields: outer, mode: Mode::Plain });
    }
    let encrypted = q.encrypt_type.as_deref() == Some("aes");
    let (Some(enc), Some(msg_sig), true) = (outer.get("Encrypt"), q.msg_signature.as_deref(), encrypted) else {
        return Err(OpenError::NotEncrypted);
    };
    if !crypto::verify_signature(msg_sig, &[keys.token.expose(), &q.timestamp, &q.nonce, enc]) {
        return Err(OpenError::BadSignature);
    }
    for (i, key) in keys.aes_keys.iter().enumerate() {
        if let Ok(plain) = crypto::decrypt(key, &keys.app_id, enc) {
            let text = String::from_utf8(plain).map_err(|_| OpenError::Decrypt)?;
            let fields = xml::parse_fields(&text)?;
            let envelope = xml::parse_push(&fields)?;
            return Ok(Opened { envelope, fields, mode: Mode::Encrypted { key_index: i } });
        }
    }
    Err(OpenError::Decrypt)
}

/// The body to answer with: a passive reply (`Some(xml)`) sealed as the push came, or
/// the "nothing to say" answer (`success` in plaintext, empty in safe mode).
pub fn seal(keys: &AppKeys, mode: &Mode, reply_xml: Option<&str>, timestamp: &str, nonce: &str) -> String {
    match (mode, reply_xml) {
        (Mode::Plain, None) => "success".into(),
        (Mode::Plain, Some(x)) => x.to_string(),
        (Mode::Encrypted { .. }, None) => String::new(),
        (Mode::Encrypted { key_index }, Some(x)) => {
            let key = &keys.aes_keys[*key_index];
            let enc = crypto::encrypt_random(key, &keys.app_id, x.as_bytes());
            encrypted_envelope(keys.token.expose(), &enc, timestamp, nonce)
        }
    }
}

/// `<xml><Encrypt/><MsgSignature/><TimeStamp/><Nonce/></xml>` (§2.6); also the shape of
/// an encrypted push minus `ToUserName`, which the sandbox adds.
pub fn encrypted_envelope(token: &str, encrypt: &str, timestamp: &str, nonce: &str) -> String {
    let sig = crypto::msg_signature(token, timestamp, nonce, encrypt);
    format!(
        "<xml><Encrypt>{}</Encrypt><MsgSignature>{}</MsgSignature><TimeStamp>{}</TimeStamp><Nonce>{}</Nonce></xml>",
        xml::cdata(encrypt),
        xml::cdata(&sig),
        timestamp,
        xml::cdata(nonce)
    )
}

/// A push sealed as WeChat sends it: the callback's query parameters and body.
#[derive(Debug, Clone)]
pub struct SealedPush {
    pub params: Vec<(&'static str, String)>,
    pub body: String,
}

/// Who posts a push, as WeChat signs it: the account's Token and AppID, its AES key for
/// a safe-mode account, and its original id (`gh_…`, the envelope's `ToUserName`).
#[derive(Clone, Copy)]
pub struct PushSender<'a> {
    pub token: &'a str,
    pub app_id: &'a str,
    pub key: Option<&'a AesKey>,
    pub account: &'a str,
}

/// What WeChat does before posting `plain` to the account's callback: sign the URL with
/// the Token and, for a safe-mode account (`key`), encrypt the message into the
/// `<ToUserName/><Encrypt/>` envelope with its `msg_signature`.
pub fn seal_push(from: &PushSender<'_>, openid: &str, plain: &str, (timestamp, nonce): (&str, &str)) -> SealedPush {
    let PushSender { token, app_id, key, account } = *from;
    let mut params = vec![
        ("signature", crypto::sign(&[token, timestamp, nonce])),
        ("timestamp", timestamp.to_string()),
        ("nonce", nonce.to_string()),
        ("openid", openid.to_string()),
    ];
    let body = match key {
        None => plain.to_string(),
        Some(k) => {
            let enc = crypto::encrypt_random(k, app_id, plain.as_bytes());
            params.push(("encrypt_type", "aes".into()));
            params.push(("msg_signature", crypto::msg_signature(token, timestamp, nonce, &enc)));
            format!(
                "<xml><ToUserName>{}</ToUserName><Encrypt>{}</Encrypt></xml>",
                xml::cdata(account),
                xml::cdata(&enc)
            )
        }
    };
    SealedPush { params, body }
}

/// What WeChat does with a passive reply (a non-empty body other than `success`): with a
/// key, check the envelope's `MsgSignature` and decrypt it; then read its fields.
pub fn open_reply(token: &str, app_id: &str, key: Option<&AesKey>, body: &str) -> Result<Fields, OpenError> {
    let outer = xml::parse_fields(body)?;
    let (Some(k), Some(enc)) = (key, outer.get("Encrypt")) else { return Ok(outer) };
    let (ts, nonce) = (outer.get("TimeStamp").unwrap_or_default(), outer.get("Nonce").unwrap_or_default());
    let signed = outer.get("MsgSignature").is_some_and(|s| crypto::verify_signature(s, &[token, ts, nonce, enc]));
    if !signed {
        return Err(OpenError::BadSignature);
    }
    let plain = crypto::decrypt(k, app_id, enc).map_err(|_| OpenError::Decrypt)?;
    Ok(xml::parse_fields(&String::from_utf8(plain).map_err(|_| OpenError::Decrypt)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_push_opens_and_a_sealed_reply_opens_back() {
        let k = keys(true);
        let key = &k.aes_keys[0];
        let plain = "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o1]]></FromUserName><CreateTime>1</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[SCAN]]></Event><EventKey><![CDATA[s1]]></EventKey></xml>";
        let from = PushSender { token: k.token.expose(), app_id: &k.app_id, key: Some(key), account: "gh_1" };
        let sealed = seal_push(&from, "o1", plain, ("1700000000", "42"));
        let q = |name: &str| sealed.params.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone());
        let query = PushQuery {
            signature: q("signature").unwrap(),
            timestamp: q("timestamp").unwrap(),
            nonce: q("nonce").unwrap(),
            echostr: None,
            encrypt_type: q("encrypt_type"),
            msg_signature: q("msg_signature"),
        };
        let opened = checked_open(&k, &query, &sealed.body).expect("the callback opens what the sandbox sealed");
        let reply = "<xml><Content><![CDATA[hi]]></Content></xml>";
        let body = seal(&k, &opened.mode, Some(reply), "1700000001", "43");
        let fields = open_reply(k.token.expose(), &k.app_id, Some(key), &body).expect("and WeChat opens the reply");
        assert_eq!(fields.get("Content"), Some("hi"));
        let tampered = body.replace("<Nonce><![CDATA[43]]>", "<Nonce><![CDATA[44]]>");
        assert_eq!(open_reply(k.token.expose(), &k.app_id, Some(key), &tampered).unwrap_err(), OpenError::BadSignature);
    }

    /// What the callback does: the URL signature, then the body.
    fn checked_open(keys: &AppKeys, q: &PushQuery, body: &str) -> Result<Opened, OpenError> {
        open(check_signature(keys, q).ok_or(OpenError::BadSignature)?, body)
    }

    fn keys(aes: bool) -> AppKeys {
        AppKeys {
            app_id: "wx2c2769f8efd9abc2".into(),
            token: "spamtest".into(),
            aes_keys: if aes {
                vec![AesKey::from_encoding_key("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG").unwrap()]
            } else {
                vec![]
            },
        }
    }

    fn q(token: &str, encrypt: Option<&str>) -> PushQuery {
        let (ts, nonce) = ("1409735669", "1320562132");
        PushQuery {
            signature: crypto::sign(&[token, ts, nonce]),
            timestamp: ts.into(),
            nonce: nonce.into(),
            echostr: None,
            encrypt_type: encrypt.map(|_| "aes".into()),
            msg_signature: encrypt.map(|e| crypto::msg_signature(token, ts, nonce, e)),
        }
    }

    const EVENT: &str = "<xml><ToUserName>gh_1</ToUserName><FromUserName>o1</FromUserName><CreateTime>1</CreateTime><MsgType>event</MsgType><Event>SCAN</Event><EventKey>s1</EventKey></xml>";

    #[test]
    fn plaintext_push_opens_and_forged_one_does_not() {
        let k = keys(false);
        let o = checked_open(&k, &q("spamtest", None), EVENT).unwrap();
        assert_eq!(o.envelope.from, "o1");
        assert_eq!(checked_open(&k, &q("other", None), EVENT).unwrap_err(), OpenError::BadSignature);
        assert_eq!(seal(&k, &o.mode, None, "1", "2"), "success");
    }

    #[test]
    fn safe_mode_requires_encryption_and_round_trips() {
        let k = keys(true);
        assert_eq!(checked_open(&k, &q("spamtest", None), EVENT).unwrap_err(), OpenError::NotEncrypted);
        let enc = crypto::encrypt_random(&k.aes_keys[0], &k.app_id, EVENT.as_bytes());
        let body = format!("<xml><ToUserName>gh_1</ToUserName><Encrypt>{}</Encrypt></xml>", xml::cdata(&enc));
        let o = checked_open(&k, &q("spamtest", Some(&enc)), &body).unwrap();
        assert_eq!(o.envelope.from, "o1");
        // A tampered msg_signature fails even with a good URL signature.
        let mut bad = q("spamtest", Some(&enc));
        bad.msg_signature = Some("0".repeat(40));
        assert_eq!(checked_open(&k, &bad, &body).unwrap_err(), OpenError::BadSignature);
        // The sealed reply decrypts under the same key and verifies.
        let sealed = seal(&k, &o.mode, Some("<xml><Content>hi</Content></xml>"), "5", "6");
        let f = xml::parse_fields(&sealed).unwrap();
        let e = f.get("Encrypt").unwrap();
        assert_eq!(f.get("MsgSignature").unwrap(), crypto::msg_signature("spamtest", "5", "6", e));
        assert_eq!(crypto::decrypt(&k.aes_keys[0], &k.app_id, e).unwrap(), b"<xml><Content>hi</Content></xml>");
        assert_eq!(seal(&k, &o.mode, None, "5", "6"), "");
    }

    #[test]
    fn official_sample_v1_opens() {
        let enc = "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE=";
        let mut query = q("spamtest", Some(enc));
        assert_eq!(query.msg_signature.as_deref(), Some("5d197aaffba7e9b25a30732f161a50dee96bd5fa"));
        let body = format!(
            "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><Encrypt><![CDATA[{enc}]]></Encrypt></xml>"
        );
        let o = checked_open(&keys(true), &query, &body).unwrap();
        assert_eq!(o.envelope.from, "oyORnuP8q7ou2gfYjqLzSIWZf0rs");
        query.encrypt_type = None;
        assert_eq!(checked_open(&keys(true), &query, &body).unwrap_err(), OpenError::NotEncrypted);
    }
}
