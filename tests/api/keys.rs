//! Signing keys as a relying service meets them (docs/api.md "Tokens and signing keys"): a
//! login token is an ES256 JWT that a maintained library verifies with the published key
//! alone; forgeries (`alg: none`, HS256 keyed with our public key, a key we do not
//! publish) are 401; `scanlogin keys rotate|list` work on the running service's
//! database, and a rotated key is published before it signs.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::client::eventually;
use crate::helpers::{spawn_app, spawn_app_with};

fn part(token: &str, i: usize) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(i).unwrap()).unwrap()).unwrap()
}

#[actix_web::test]
async fn a_login_token_verifies_with_the_published_key_alone() {
    let app = spawn_app().await;
    let token = app.register("o_keys_1", "13800138101").await;
    let header = part(&token, 0);
    assert_eq!(header["alg"], "ES256");
    let (status, jwks) = app.get("/.well-known/jwks.json").await;
    assert_eq!(status, 200);
    let key =
        jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == header["kid"]).expect("its key is published");
    // jsonwebtoken (its RustCrypto backend): an implementation that is not ours.
    let dk =
        jsonwebtoken::DecodingKey::from_ec_components(key["x"].as_str().unwrap(), key["y"].as_str().unwrap()).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&["scanlogin"]);
    let data = jsonwebtoken::decode::<Value>(&token, &dk, &v).expect("a standard ES256 signature");
    assert_eq!(data.claims["iss"], "scanlogin");
    assert_eq!(app.me(&token).await.0, 200);
}

#[actix_web::test]
async fn forged_tokens_are_401() {
    let app = spawn_app().await;
    let token = app.register("o_keys_2", "13800138102").await;
    let header = part(&token, 0);
    let payload = token.split('.').nth(1).unwrap();
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    // alg: none.
    let none = format!("{}.{payload}.", b64(&json!({"alg": "none", "typ": "JWT", "kid": header["kid"]})));
    // Key confusion: HS256 keyed with what we publish (the JWK, and its raw point).
    let (_, jwks) = app.get("/.well-known/jwks.json").await;
    let jwk = jwks["keys"][0].clone();
    let hs_header = json!({"alg": "HS256", "typ": "JWT", "kid": header["kid"]});
    let confused: Vec<String> =
        [jwk.to_string().into_bytes(), URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap()]
            .into_iter()
            .map(|secret| {
                let claims: Value = part(&token, 1);
                jsonwebtoken::encode(
                    &serde_json::from_value::<jsonwebtoken::Header>(hs_header.clone()).unwrap(),
                    &claims,
                    &jsonwebtoken::EncodingKey::from_secret(&secret),
                )
                .unwrap()
            })
            .collect();
    // A key of the right algorithm that we do not publish (and the right kid with it).
    let stranger = scanlogin::token::keys::KeyPair::generate(scanlogin::token::SigningAlg::Es256).unwrap();
    let unknown = scanlogin::token::jws::sign(&stranger, "JWT", &part(&token, 1));
    let mut header_ours = header.clone();
    header_ours["kid"] = json!(stranger.kid());
    let signing_input = format!("{}.{payload}", b64(&json!({"alg": "ES256", "typ": "JWT", "kid": header["kid"]})));
    let wrong_key = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(stranger.sign(signing_input.as_bytes())));
    for (what, t) in [("alg none", &none), ("unknown kid", &unknown), ("our kid, another key", &wrong_key)]
        .into_iter()
        .chain(confused.iter().map(|t| ("HS256 with our public key", t)))
    {
        assert_eq!(app.me(t).await.0, 401, "{what}");
    }
    assert_eq!(app.me(&token).await.0, 200, "the real one still works");
}

#[actix_web::test]
async fn hs256_stays_available_when_configured() {
    let app = spawn_app_with(|s| s.token.algorithm = scanlogin::config::TokenAlgorithm::Hs256).await;
    let token = app.register("o_keys_3", "13800138103").await;
    assert_eq!(part(&token, 0)["alg"], "HS256");
    assert_eq!(app.me(&token).await.0, 200);
}

/// `keys rotate` on the database of a running node: the new key is in its JWK Set
/// within a reload, tokens keep their old key until the publish delay passes, and
/// `keys list` shows both with their states.
#[actix_web::test]
async fn a_rotated_key_is_published_by_the_running_service_before_it_signs() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/keys.db?mode=rwc", dir.path().display());
    let app = crate::helpers::spawn_app_on(Some(&db), |s| s.token.key_publish_secs = 4).await;
    let before = part(&app.register("o_keys_4", "13800138104").await, 0)["kid"].clone();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_scanlogin"))
            .args(args)
            .args(["--config", concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml")])
            .env("SCANLOGIN__STORAGE__DATABASE_URL", &db)
            .env("SCANLOGIN__TOKEN__KEY_PUBLISH_SECS", "4")
            .env("SCANLOGIN__OIDC__ENABLED", "false")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let rotated = cli(&["keys", "rotate"]);
    let new_kid = rotated.split_whitespace().nth(1).unwrap().to_string();
    assert!(rotated.contains("pending"), "{rotated}");
    // The node re-reads the table every publish/4 s (at least every second here).
    let published = || async { app.get("/.well-known/jwks.json").await.1.to_string().contains(&new_kid).then_some(()) };
    eventually("the rotated key is published", std::time::Duration::from_secs(3), published).await;
    let during = part(&app.register("o_keys_5", "13800138105").await, 0)["kid"].clone();
    assert_eq!(during, before, "published, not yet signing");
    // The publish delay is the node's wall clock against the key's row: nothing to await
    // but the time itself (the node tells no one when it starts signing with the key).
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    let after = app.register("o_keys_6", "13800138106").await;
    assert_eq!(part(&after, 0)["kid"], json!(new_kid), "signs after the publish delay");
    let list = cli(&["keys", "list"]);
    assert!(list.contains("retired") && list.contains("active"), "{list}");
}
