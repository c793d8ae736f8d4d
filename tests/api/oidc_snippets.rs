//! The README's provider snippets, checked the way Grafana and oauth2-proxy would use them
//! (neither can be installed here): the client registration parses and validates as our
//! config; each snippet's endpoints, scopes and PKCE method are what discovery announces;
//! and a login with the snippet's scope gives the claims its attribute paths read — an
//! `email` for both, unverified, which is why oauth2-proxy's snippet must allow that.

use std::collections::HashMap;

use crate::helpers::{TestApp, spawn_app_with};
use crate::oidc::{Browser, VERIFIER, id_claims, log_in_with, query, token, userinfo};

const README: &str = include_str!("../../README.md");

/// The first fenced block of `lang` after the line that starts with `marker`.
fn block(marker: &str, lang: &str) -> String {
    let start = README.find(marker).unwrap_or_else(|| panic!("README has no `{marker}`"));
    let fence = format!("```{lang}\n");
    let open = start + README[start..].find(&fence).unwrap() + fence.len();
    let close = open + README[open..].find("```").unwrap();
    README[open..close].to_string()
}

/// `key = value` lines (quotes dropped), sections ignored.
fn ini(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        .collect()
}

fn path_of(url: &str) -> String {
    url::Url::parse(url).unwrap().path().to_string()
}

#[actix_web::test]
async fn the_grafana_and_oauth2_proxy_snippets_match_a_running_provider() {
    // The registration snippet, as our config (the sandbox around it).
    let toml = block("Register a client", "toml");
    // On a laptop's sandbox (outside it the placeholder secret would be refused, as meant).
    let text = format!("[wechat]\nsandbox = true\n\n{toml}");
    let registered = scanlogin::config::load_from_str(&text, &Default::default()).expect("the snippet parses").settings;
    let mut client = registered.oidc.clients[0].clone();
    assert!(registered.oidc.enabled);
    client.client_secret = "a-secret-of-at-least-32-bytes-0123456789".into();
    let grafana = ini(&block("Grafana (`grafana.ini`", "ini"));
    let proxy = ini(&block("oauth2-proxy (`oauth2-proxy.cfg`", "ini"));
    let cb = client.redirect_uris[0].clone();
    let secret = client.client_secret.expose().to_string();
    let app: TestApp = spawn_app_with(|s| {
        s.oidc.enabled = true;
        s.oidc.clients = vec![client.clone()];
    })
    .await;
    let (_, d) = app.get("/.well-known/openid-configuration").await;
    // Endpoints: the snippets name ours (their host is the reader's own).
    for (key, endpoint) in
        [("auth_url", "authorization_endpoint"), ("token_url", "token_endpoint"), ("api_url", "userinfo_endpoint")]
    {
        assert_eq!(path_of(&grafana[key]), path_of(d[endpoint].as_str().unwrap()), "grafana {key}");
    }
    assert_eq!(path_of(&proxy["oidc_issuer_url"]), "/", "oauth2-proxy discovers from the issuer's root");
    assert_eq!(grafana["use_pkce"], "true");
    assert!(
        d["code_challenge_methods_supported"].as_array().unwrap().iter().any(|m| m == &proxy["code_challenge_method"])
    );
    for scope in [&grafana["scopes"], &proxy["scope"]] {
        for s in scope.split_whitespace() {
            assert!(d["scopes_supported"].as_array().unwrap().iter().any(|x| x == s), "{s}");
        }
    }
    assert_eq!(grafana["client_id"], client.client_id, "the registration and Grafana's snippet agree");
    // A login with Grafana's scope: the attributes its paths read are there.
    let mut b = Browser::new();
    let back = log_in_with(&app, &mut b, &client.client_id, &cb, "o_snippet", "13800138066", &grafana["scopes"]).await;
    let code = query(&back, "code").unwrap();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", cb.as_str()),
        ("code_verifier", VERIFIER),
    ];
    let (status, t, _) = token(&app, &form, Some((&client.client_id, &secret))).await;
    assert_eq!(status, 200, "{t}");
    let (status, info) = userinfo(&app, t["access_token"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    for key in ["email_attribute_path", "login_attribute_path", "name_attribute_path"] {
        assert!(
            info.get(&grafana[key]).is_some_and(|v| v.is_string()),
            "grafana {key} = {} not in {info}",
            grafana[key]
        );
    }
    // oauth2-proxy: the email's domain passes its filter, and it is unverified, so the
    // snippet must say that this is allowed.
    let claims = id_claims(t["id_token"].as_str().unwrap());
    let email = claims["email"].as_str().expect("the ID token carries the synthetic email");
    assert!(proxy["email_domains"].contains(email.rsplit('@').next().unwrap()), "{email}");
    assert_eq!(claims["email_verified"], false);
    assert_eq!(proxy["insecure_oidc_allow_unverified_email"], "true");
}
