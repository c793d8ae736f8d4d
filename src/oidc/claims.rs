//! What the provider says about a user, per granted scope (docs/api.md): `sub` is our user
//! id (stable, opaque, never an openid); `phone` gives the number in E.164 — the one
//! place a phone leaves unmasked, to a client that asked for it; `profile` the masked
//! number and when the account changed; `email` follows the client's policy, since
//! WeChat gives no email.

use serde_json::{Map, Value, json};

use crate::config::{EmailPolicy, OidcClient};
use crate::ids::mask_phone;
use crate::store::UserRow;
use crate::store::oidc::Grant;

/// The claims of `scope` for `user`, added to `out`.
pub fn scope_claims(scope: &str, user: &UserRow, client: &OidcClient, out: &mut Map<String, Value>) {
    let has = |s: &str| scope.split_ascii_whitespace().any(|x| x == s);
    if has("phone")
        && let Some(phone) = &user.phone
    {
        out.insert("phone_number".into(), json!(format!("+86{phone}")));
        out.insert("phone_number_verified".into(), json!(true));
    }
    if has("profile") {
        let name = user.phone.as_deref().map(mask_phone).unwrap_or_else(|| user.id.clone());
        out.insert("preferred_username".into(), json!(name));
        out.insert("updated_at".into(), json!(user.created_at));
    }
    if has("email") && client.email == EmailPolicy::Synthetic {
        out.insert("email".into(), json!(format!("{}@{}", user.id, client.synthetic_email_domain)));
        out.insert("email_verified".into(), json!(false));
    }
}

/// The claims of an ID token for `grant` (`nonce` empty: none).
pub fn id_token(
    issuer: &str,
    client: &OidcClient,
    grant: &Grant,
    user: &UserRow,
    nonce: &str,
    now: i64,
    ttl: i64,
) -> Value {
    let mut c = Map::new();
    c.insert("iss".into(), json!(issuer));
    c.insert("sub".into(), json!(user.id));
    c.insert("aud".into(), json!(client.client_id));
    c.insert("azp".into(), json!(client.client_id));
    c.insert("exp".into(), json!(now + ttl));
    c.insert("iat".into(), json!(now));
    c.insert("auth_time".into(), json!(grant.authn.auth_time));
    if !nonce.is_empty() {
        c.insert("nonce".into(), json!(nonce));
    }
    let amr: Vec<&str> = grant.authn.amr.split(',').filter(|m| !m.is_empty()).collect();
    c.insert("amr".into(), json!(amr));
    c.insert("sid".into(), json!(grant.sid));
    scope_claims(&grant.scope, user, client, &mut c);
    Value::Object(c)
}

/// The userinfo answer: `sub` and the scope's claims.
pub fn userinfo(scope: &str, user: &UserRow, client: &OidcClient) -> Value {
    let mut c = Map::new();
    c.insert("sub".into(), json!(user.id));
    scope_claims(scope, user, client, &mut c);
    Value::Object(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::oidc::Authn;

    fn user() -> UserRow {
        UserRow { id: "2b1f".into(), phone: Some("13800138000".into()), created_at: 1_700_000_000 }
    }

    #[test]
    fn each_scope_gives_its_claims_and_no_more() {
        let mut client = OidcClient { client_id: "c".into(), ..Default::default() };
        let only = userinfo("openid", &user(), &client);
        assert_eq!(only, json!({"sub": "2b1f"}), "openid alone: the subject only");
        let all = userinfo("openid phone profile email", &user(), &client);
        assert_eq!(all["phone_number"], "+8613800138000");
        assert_eq!(all["preferred_username"], "138****8000");
        assert!(all.get("email").is_none(), "email omitted by default");
        client.email = EmailPolicy::Synthetic;
        client.synthetic_email_domain = "users.example".into();
        let all = userinfo("openid email", &user(), &client);
        assert_eq!(all["email"], "2b1f@users.example");
        assert_eq!(all["email_verified"], false);
    }

    #[test]
    fn an_id_token_names_its_client_login_and_methods() {
        let client = OidcClient { client_id: "c".into(), ..Default::default() };
        let grant = Grant {
            client_id: "c".into(),
            scope: "openid".into(),
            sid: "s".into(),
            authn: Authn { user_id: "2b1f".into(), amr: "wechat,sms".into(), auth_time: 5 },
        };
        let t = id_token("https://i", &client, &grant, &user(), "n0", 100, 60);
        assert_eq!(t["aud"], "c");
        assert_eq!(t["exp"], 160);
        assert_eq!(t["nonce"], "n0");
        assert_eq!(t["amr"], json!(["wechat", "sms"]));
        assert!(id_token("https://i", &client, &grant, &user(), "", 100, 60).get("nonce").is_none());
    }
}
