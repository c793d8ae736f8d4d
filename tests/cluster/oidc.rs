//! The OpenID Connect provider across nodes: every step on another node — authorize on
//! node 1, the scan pushed to node 2, the continue link on node 2, the token exchange on
//! node 3, userinfo on node 1 — and a code presented to two nodes at once accepted once;
//! a key rotated with the command line is published by every node before it signs.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::redirect;
use serde_json::Value;
use sha2::Digest as _;

use crate::client::{eventually, parts};
use crate::harness::Cluster;

const CB: &str = "http://127.0.0.1:8090/callback";

fn query(u: &url::Url, key: &str) -> Option<String> {
    u.query_pairs().find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
}

#[tokio::test]
async fn a_provider_login_crosses_three_nodes_and_a_code_is_accepted_once() {
    let c = Cluster::start(&[("SCANLOGIN__TOKEN__KEY_PUBLISH_SECS", "4")]).await;
    let browser = reqwest::Client::builder().redirect(redirect::Policy::none()).build().unwrap();
    let verifier = "cluster-verifier-0123456789-0123456789-0123456789";
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    // Node 1: the login page of a new attempt (the shipped demo client).
    let mut authorize = url::Url::parse(&format!("{}/oidc/authorize", c.node(0))).unwrap();
    authorize
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", "demo")
        .append_pair("redirect_uri", CB)
        .append_pair("scope", "openid phone")
        .append_pair("state", "s1")
        .append_pair("nonce", "n1")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let html = browser.get(authorize.as_str()).send().await.unwrap().text().await.unwrap();
    let start = html.find(r#"id="scanlogin-attempt">"#).expect("the login page") + 23;
    let attempt: Value = serde_json::from_str(&html[start..start + html[start..].find("</script>").unwrap()]).unwrap();
    let uuid = attempt["uuid"].as_str().unwrap();
    // Node 2: WeChat's push of a new follower's scan, then the phone step there.
    let scene = c.scene(&crate::client::ticket_of(&attempt)).await;
    let (status, _) = c.push_to(1, &Cluster::scan_push("o_cluster_oidc", &scene, false)).await;
    assert_eq!(status, 200);
    let node2 = c.api(1);
    let code = node2.send_code(uuid, "13800138055").await;
    let (status, bound) = node2.bind(uuid, "13800138055", &code).await;
    assert_eq!(status, 200, "{bound}");
    assert!(bound.get("token").is_none());
    // The continue link names the public address (nginx); taken here on node 2.
    let link = url::Url::parse(bound["redirect"].as_str().unwrap()).unwrap();
    let r = browser.get(format!("{}{}", c.node(1), link.path())).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let back = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let code = query(&back, "code").unwrap();
    // Node 3 and node 1 at once: the code is accepted once.
    let exchange = |node: String| {
        let http = c.http.clone();
        let code = code.clone();
        async move {
            let form = [
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", CB),
                ("client_id", "demo"),
                ("code_verifier", verifier),
            ];
            parts(http.post(format!("{node}/oidc/token")).form(&form).send().await.unwrap()).await
        }
    };
    let (a, b) = tokio::join!(exchange(c.node(2)), exchange(c.node(0)));
    let won: Vec<&(u16, Value)> = [&a, &b].into_iter().filter(|(s, _)| *s == 200).collect();
    assert_eq!(won.len(), 1, "one exchange wins: {a:?} {b:?}");
    let loser = if a.0 == 200 { &b } else { &a };
    assert_eq!(loser.1["error"], "invalid_grant");
    // The replay revoked what the winner got: on every node.
    let access = won[0].1["access_token"].as_str().unwrap();
    for i in 0..3 {
        let r = c.http.get(format!("{}/oidc/userinfo", c.node(i))).bearer_auth(access).send().await.unwrap();
        assert_eq!(r.status(), 401, "node{}", i + 1);
    }
}

#[tokio::test]
async fn a_key_rotated_by_the_command_line_is_published_by_every_node() {
    let c = Cluster::start(&[("SCANLOGIN__TOKEN__KEY_PUBLISH_SECS", "4")]).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scanlogin"))
        .args(["keys", "rotate", "--config", concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml")])
        .env("SCANLOGIN__STORAGE__DATABASE_URL", c.database_url())
        .env("SCANLOGIN__TOKEN__KEY_PUBLISH_SECS", "4")
        // The cluster's secret: the stored keys are sealed with a key derived from it.
        .env("SCANLOGIN__TOKEN__SECRET", "cluster-test-secret-of-at-least-32-bytes")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let kids: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("rotated: "))
        .map(|l| l.split_whitespace().nth(1).unwrap().into())
        .collect();
    assert!(!kids.is_empty(), "{text}");
    for i in 0..3 {
        let published = || async {
            let jwks = c.http.get(format!("{}/.well-known/jwks.json", c.node(i))).send().await.unwrap();
            let jwks = jwks.text().await.unwrap();
            kids.iter().all(|k| jwks.contains(k.as_str())).then_some(())
        };
        eventually(&format!("node{} publishes {kids:?}", i + 1), Duration::from_secs(5), published).await;
    }
}
