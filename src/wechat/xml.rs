//! WeChat's push XML in and passive-reply XML out (pure, no I/O).
//!
//! The reader is deliberately small: one flat `<xml>` element of named fields, CDATA or
//! plain text, whitespace anywhere between elements. A DTD or an entity other than
//! XML's five predefined ones is refused (no XXE, no entity expansion), and sizes are
//! bounded so a hostile body costs nothing.

use std::collections::HashMap;

use quick_xml::Reader;
use quick_xml::events::Event as X;

/// Fields a push may carry at most (real pushes have ~10).
const MAX_FIELDS: usize = 64;
/// Nesting WeChat never exceeds (`<xml><Video><MediaId>`), plus slack.
const MAX_DEPTH: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("DTDs and entity declarations are not accepted")]
    Dtd,
    #[error("malformed XML: {0}")]
    Malformed(String),
    #[error("the root element must be <xml>")]
    NotWechat,
    #[error("too many fields or too deep")]
    TooBig,
}

/// The top-level fields of a push, by element name. Nested elements are skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields(HashMap<String, String>);

impl Fields {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

fn predefined(name: &str) -> Option<char> {
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        _ => return None,
    })
}

/// Parses a push body into its top-level fields.
pub fn parse_fields(body: &str) -> Result<Fields, XmlError> {
    let mut reader = Reader::from_str(body);
    reader.config_mut().trim_text(false);
    let mut fields = HashMap::new();
    let mut depth = 0usize;
    let mut seen_root = false;
    let mut current: Option<(String, String)> = None;
    loop {
        let ev = reader.read_event().map_err(|e| XmlError::Malformed(e.to_string()))?;
        match ev {
            X::DocType(_) => return Err(XmlError::Dtd),
            X::Start(e) => {
                let name = e.local_name().as_ref().to_string();
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(XmlError::TooBig);
                }
                if depth == 1 {
                    if name != "xml" || seen_root {
                        return Err(XmlError::NotWechat);
                    }
                    seen_root = true;
                } else if depth == 2 {
                    current = Some((name, String::new()));
                }
            }
            X::Empty(e) => {
                if depth == 0 {
                    return Err(XmlError::NotWechat);
                }
                if depth == 1 {
                    let name = e.local_name().as_ref().to_string();
                    fields.insert(name, String::new());
                }
            }
            X::End(_) => {
                if depth == 2
                    && let Some((name, value)) = current.take()
                {
                    if fields.len() >= MAX_FIELDS {
                        return Err(XmlError::TooBig);
                    }
                    fields.insert(name, value);
                }
                depth = depth.saturating_sub(1);
            }
            X::Text(t) => {
                if let Some((_, v)) = current.as_mut().filter(|_| depth == 2) {
                    v.push_str(&t.into_inner());
                } else if depth == 0 && !t.into_inner().trim().is_empty() {
                    return Err(XmlError::NotWechat);
                }
            }
            X::CData(c) => {
                if let Some((_, v)) = current.as_mut().filter(|_| depth == 2) {
                    v.push_str(&c.into_inner());
                }
            }
            X::GeneralRef(r) => {
                let ch = if r.is_char_ref() {
                    r.resolve_char_ref().map_err(|e| XmlError::Malformed(e.to_string()))?
                } else {
                    Some(predefined(&r.into_inner()).ok_or(XmlError::Dtd)?)
                };
                if let (Some((_, v)), Some(ch)) = (current.as_mut().filter(|_| depth == 2), ch) {
                    v.push(ch);
                }
            }
            X::Eof => break,
            X::Decl(_) | X::Comment(_) | X::PI(_) => {}
        }
    }
    if !seen_root || depth != 0 {
        return Err(XmlError::NotWechat);
    }
    Ok(Fields(fields))
}

/// What a push means to us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Push {
    /// A follow; `scene` is set when it came through a parametric QR (`qrscene_` stripped).
    Subscribe {
        openid: String,
        scene: Option<String>,
    },
    /// An already-following user scanned a parametric QR.
    Scan {
        openid: String,
        scene: Option<String>,
    },
    Unsubscribe {
        openid: String,
    },
    Text {
        openid: String,
        msg_id: Option<u64>,
        content: String,
    },
    /// Anything else (other events and message types): acknowledged, ignored.
    Other {
        openid: String,
        kind: String,
    },
}

/// The account and user of a push, needed to address a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The account's original id (`gh_…`).
    pub to: String,
    /// The user's openid.
    pub from: String,
    pub create_time: u64,
    pub push: Push,
}

impl Envelope {
    /// WeChat's dedup key: `MsgId` for messages, `openid|CreateTime|Event|EventKey` for events.
    pub fn dedup_key(&self, fields: &Fields) -> String {
        match fields.get("MsgId") {
            Some(id) if !id.trim().is_empty() => format!("{}|{}", self.from, id.trim()),
            _ => format!(
                "{}|{}|{}|{}",
                self.from,
                self.create_time,
                fields.get("Event").unwrap_or("").to_ascii_lowercase(),
                fields.get("EventKey").unwrap_or("")
            ),
        }
    }
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

/// Interprets parsed fields. Missing `FromUserName`/`ToUserName` is malformed.
pub fn parse_push(fields: &Fields) -> Result<Envelope, XmlError> {
    let from = non_empty(fields.get("FromUserName")).ok_or_else(|| XmlError::Malformed("no FromUserName".into()))?;
    let to = non_empty(fields.get("ToUserName")).ok_or_else(|| XmlError::Malformed("no ToUserName".into()))?;
    let create_time = fields.get("CreateTime").and_then(|s| s.trim().parse().ok()).unwrap_or(0);
    let msg_type = fields.get("MsgType").unwrap_or("").trim().to_ascii_lowercase();
    let openid = from.clone();
    let push = if msg_type == "event" {
        let event = fields.get("Event").unwrap_or("").trim().to_ascii_lowercase();
        let key = non_empty(fields.get("EventKey"));
        match event.as_str() {
            "subscribe" => Push::Subscribe {
                openid,
                scene: key.and_then(|k| k.strip_prefix("qrscene_").map(str::to_string)).filter(|s| !s.is_empty()),
            },
            "scan" => Push::Scan { openid, scene: key },
            "unsubscribe" => Push::Unsubscribe { openid },
            other => Push::Other { openid, kind: format!("event:{other}") },
        }
    } else if msg_type == "text" {
        Push::Text {
            openid,
            msg_id: fields.get("MsgId").and_then(|s| s.trim().parse().ok()),
            content: fields.get("Content").unwrap_or("").to_string(),
        }
    } else {
        Push::Other { openid, kind: msg_type }
    };
    Ok(Envelope { to, from, create_time, push })
}

/// Wraps untrusted text in CDATA, splitting any `]]>` so it cannot close the section.
pub fn cdata(text: &str) -> String {
    format!("<![CDATA[{}]]>", text.replace("]]>", "]]]]><![CDATA[>"))
}

/// The passive text reply: To/From swapped relative to the push.
pub fn text_reply(to_user: &str, from_account: &str, create_time: u64, content: &str) -> String {
    format!(
        "<xml><ToUserName>{}</ToUserName><FromUserName>{}</FromUserName><CreateTime>{}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content>{}</Content></xml>",
        cdata(to_user),
        cdata(from_account),
        create_time,
        cdata(content)
    )
}

/// An event push as WeChat sends it (used by the sandbox and the load tool).
/// A text message as WeChat pushes it (the person typed `content` to the account).
pub fn text_xml(to_account: &str, openid: &str, create_time: u64, content: &str, msg_id: u64) -> String {
    format!(
        "<xml><ToUserName>{}</ToUserName><FromUserName>{}</FromUserName><CreateTime>{}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content>{}</Content><MsgId>{}</MsgId></xml>",
        cdata(to_account),
        cdata(openid),
        create_time,
        cdata(content),
        msg_id
    )
}

pub fn event_xml(
    to_account: &str,
    openid: &str,
    create_time: u64,
    event: &str,
    event_key: Option<&str>,
    ticket: Option<&str>,
) -> String {
    let mut s = format!(
        "<xml><ToUserName>{}</ToUserName><FromUserName>{}</FromUserName><CreateTime>{}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event>{}</Event>",
        cdata(to_account),
        cdata(openid),
        create_time,
        cdata(event)
    );
    if let Some(k) = event_key {
        s.push_str(&format!("<EventKey>{}</EventKey>", cdata(k)));
    }
    if let Some(t) = ticket {
        s.push_str(&format!("<Ticket>{}</Ticket>", cdata(t)));
    }
    s.push_str("</xml>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(xml: &str) -> Push {
        parse_push(&parse_fields(xml).unwrap()).unwrap().push
    }

    #[test]
    fn subscribe_with_and_without_scene() {
        let x = "<xml><ToUserName><![CDATA[toUser]]></ToUserName><FromUserName><![CDATA[FromUser]]></FromUserName><CreateTime>123456789</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[qrscene_123123]]></EventKey><Ticket><![CDATA[TICKET]]></Ticket></xml>";
        assert_eq!(push(x), Push::Subscribe { openid: "FromUser".into(), scene: Some("123123".into()) });
        let plain = "<xml><ToUserName><![CDATA[toUser]]></ToUserName><FromUserName><![CDATA[FromUser]]></FromUserName><CreateTime>123456789</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event></xml>";
        assert_eq!(push(plain), Push::Subscribe { openid: "FromUser".into(), scene: None });
        let empty_key = plain.replace("</xml>", "<EventKey><![CDATA[]]></EventKey></xml>");
        assert_eq!(push(&empty_key), Push::Subscribe { openid: "FromUser".into(), scene: None });
    }

    #[test]
    fn scan_is_case_insensitive_and_unprefixed() {
        let x = "<xml>\n <ToUserName>toUser</ToUserName>\n <FromUserName><![CDATA[FromUser]]></FromUserName>\n <CreateTime>1</CreateTime>\n <MsgType>event</MsgType>\n <Event><![CDATA[SCAN]]></Event>\n <EventKey><![CDATA[SCENE_VALUE]]></EventKey>\n</xml>";
        assert_eq!(push(x), Push::Scan { openid: "FromUser".into(), scene: Some("SCENE_VALUE".into()) });
    }

    #[test]
    fn text_message_with_u64_msgid_and_entities() {
        let x = "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o1]]></FromUserName><CreateTime>1348831860</CreateTime><MsgType><![CDATA[text]]></MsgType><Content>a &lt;b&gt; &#20320;</Content><MsgId>6054768590064713728</MsgId></xml>";
        assert_eq!(
            push(x),
            Push::Text { openid: "o1".into(), msg_id: Some(6054768590064713728), content: "a <b> 你".into() }
        );
    }

    #[test]
    fn unsubscribe_and_other() {
        let x = "<xml><ToUserName>t</ToUserName><FromUserName>o</FromUserName><CreateTime>1</CreateTime><MsgType>event</MsgType><Event>unsubscribe</Event></xml>";
        assert_eq!(push(x), Push::Unsubscribe { openid: "o".into() });
        let x = "<xml><ToUserName>t</ToUserName><FromUserName>o</FromUserName><CreateTime>1</CreateTime><MsgType>image</MsgType><Video><MediaId>m</MediaId></Video></xml>";
        assert_eq!(push(x), Push::Other { openid: "o".into(), kind: "image".into() });
    }

    #[test]
    fn dtd_and_custom_entities_are_refused() {
        let xxe = "<?xml version=\"1.0\"?><!DOCTYPE xml [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><xml><Content>&x;</Content></xml>";
        assert_eq!(parse_fields(xxe), Err(XmlError::Dtd));
        assert_eq!(parse_fields("<xml><Content>&x;</Content></xml>"), Err(XmlError::Dtd));
    }

    #[test]
    fn malformed_inputs_fail_cleanly() {
        for bad in ["", "hello", "<xml>", "<other/>", "<xml></xml><xml></xml>", "<xml><a></b></xml>"] {
            assert!(parse_fields(bad).is_err(), "{bad:?}");
        }
        let deep = format!("<xml>{}{}</xml>", "<a>".repeat(10), "</a>".repeat(10));
        assert_eq!(parse_fields(&deep), Err(XmlError::TooBig));
        let many: String = (0..100).map(|i| format!("<f{i}>v</f{i}>")).collect();
        assert_eq!(parse_fields(&format!("<xml>{many}</xml>")), Err(XmlError::TooBig));
        let no_from = "<xml><ToUserName>t</ToUserName></xml>";
        assert!(parse_push(&parse_fields(no_from).unwrap()).is_err());
    }

    #[test]
    fn reply_round_trips_and_cdata_cannot_be_broken() {
        let r = text_reply("o1", "gh_1", 5, "hi ]]> <b>");
        let f = parse_fields(&r).unwrap();
        assert_eq!(f.get("Content"), Some("hi ]]> <b>"));
        assert_eq!(f.get("ToUserName"), Some("o1"));
        assert_eq!(f.get("FromUserName"), Some("gh_1"));
        let e = event_xml("gh_1", "o1", 7, "subscribe", Some("qrscene_abc"), Some("T+/="));
        assert_eq!(push(&e), Push::Subscribe { openid: "o1".into(), scene: Some("abc".into()) });
    }

    #[test]
    fn dedup_key_shapes() {
        let x = event_xml("gh", "o1", 7, "SCAN", Some("s1"), None);
        let f = parse_fields(&x).unwrap();
        assert_eq!(parse_push(&f).unwrap().dedup_key(&f), "o1|7|scan|s1");
        let t = "<xml><ToUserName>t</ToUserName><FromUserName>o</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><MsgId>42</MsgId></xml>";
        let f = parse_fields(t).unwrap();
        assert_eq!(parse_push(&f).unwrap().dedup_key(&f), "o|42");
    }
}
