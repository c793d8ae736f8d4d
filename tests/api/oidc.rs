//! The OpenID Connect provider over real HTTP, one refusal per test (docs/api.md "OpenID
//! Connect provider"): a relying party's browser (no redirects followed, the session
//! cookie kept by hand) and its back end, against a server whose sandbox plays the phone.
//! The happy path with maintained client libraries is `tests/oidc` (openid-client,
//! Authlib).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Client, Response, redirect};
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::client::{delivered, parts};
use crate::helpers::{TestApp, spawn_app_with};
use scanlogin::config::{OidcClient, Settings};

const CB_A: &str = "https://a.example/cb";
const CB_B: &str = "https://b.example/cb";
const SECRET_B: &str = "b-secret-b-secret-b-secret-b-secret";
pub(crate) const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
}

/// Client `a`: public (PKCE); client `b`: confidential, ES256 ID tokens.
fn clients(s: &mut Settings) {
    s.oidc.enabled = true;
    s.oidc.clients = vec![
        OidcClient {
            client_id: "a".into(),
            redirect_uris: vec![CB_A.into()],
            post_logout_redirect_uris: vec!["https://a.example/bye".into()],
            ..Default::default()
        },
        OidcClient {
            client_id: "b".into(),
            client_secret: SECRET_B.into(),
            redirect_uris: vec![CB_B.into()],
            post_logout_redirect_uris: vec!["https://b.example/bye".into()],
            id_token_alg: scanlogin::token::SigningAlg::Es256,
            ..Default::default()
        },
    ];
}

async fn provider() -> TestApp {
    spawn_app_with(clients).await
}

/// A browser: follows no redirect, keeps the session cookie.
pub(crate) struct Browser {
    http: Client,
    cookie: Option<String>,
}

impl Browser {
    pub(crate) fn new() -> Self {
        scanlogin::install_crypto();
        Self { http: Client::builder().redirect(redirect::Policy::none()).build().unwrap(), cookie: None }
    }

    async fn get(&mut self, url: &str) -> Response {
        let mut r = self.http.get(url);
        if let Some(c) = &self.cookie {
            r = r.header("cookie", c);
        }
        let res = r.send().await.unwrap();
        if let Some(set) = res.headers().get("set-cookie").and_then(|v| v.to_str().ok()) {
            let pair = set.split(';').next().unwrap().to_string();
            self.cookie = (!pair.ends_with('=')).then_some(pair);
        }
        res
    }
}

fn location(r: &Response) -> url::Url {
    url::Url::parse(r.headers().get("location").expect("a redirect").to_str().unwrap()).unwrap()
}

pub(crate) fn query(u: &url::Url, key: &str) -> Option<String> {
    u.query_pairs().find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
}

/// The authorize URL (scope `openid phone profile offline_access` unless `extra` names one).
pub(crate) fn authorize_url(app: &TestApp, client: &str, redirect_uri: &str, extra: &[(&str, &str)]) -> String {
    let mut u = url::Url::parse(&app.url("/oidc/authorize")).unwrap();
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("state", "st8")
        .append_pair("nonce", "n0nce");
    if !extra.iter().any(|(k, _)| *k == "scope") {
        u.query_pairs_mut().append_pair("scope", "openid phone profile offline_access");
    }
    for (k, v) in extra {
        u.query_pairs_mut().append_pair(k, v);
    }
    u.to_string()
}

/// The attempt the login page embeds.
pub(crate) async fn embedded(r: Response) -> Value {
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    let start = html.find(r#"id="scanlogin-attempt">"#).expect("the page embeds the attempt") + 23;
    let end = start + html[start..].find("</script>").unwrap();
    serde_json::from_str(&html[start..end]).unwrap()
}

/// Logs `openid` in through the provider's page for `client` (a new user binds `phone`);
/// answers the redirect back to the client.
async fn log_in(app: &TestApp, b: &mut Browser, client: &str, cb: &str, openid: &str, phone: &str) -> url::Url {
    log_in_with(app, b, client, cb, openid, phone, "openid phone profile offline_access").await
}

/// [`log_in`] asking for `scope`.
pub(crate) async fn log_in_with(
    app: &TestApp,
    b: &mut Browser,
    client: &str,
    cb: &str,
    openid: &str,
    phone: &str,
    scope: &str,
) -> url::Url {
    let ch = challenge(VERIFIER);
    let url =
        authorize_url(app, client, cb, &[("code_challenge", &ch), ("code_challenge_method", "S256"), ("scope", scope)]);
    let attempt = embedded(b.get(&url).await).await;
    assert!(attempt.get("token").is_none());
    let uuid = attempt["uuid"].as_str().unwrap();
    delivered(app.scan(&crate::client::ticket_of(&attempt), openid, false).await);
    let (_, st) = app.status_wait(uuid, 5).await;
    let answer = if st["state"] == "not_reg" {
        let code = app.send_code(uuid, phone).await;
        let (status, body) = app.bind(uuid, phone, &code).await;
        assert_eq!(status, 200, "{body}");
        body
    } else {
        st
    };
    assert_eq!(answer["state"], "reg", "{answer}");
    assert!(answer.get("token").is_none(), "a provider attempt never hands out a token: {answer}");
    let next = answer["redirect"].as_str().expect("a redirect").to_string();
    let r = b.get(&next).await;
    assert_eq!(r.status(), 302);
    let back = location(&r);
    assert!(back.as_str().starts_with(cb), "{back}");
    assert_eq!(query(&back, "state").as_deref(), Some("st8"));
    assert_eq!(query(&back, "iss").as_deref(), Some(app.server.as_str()));
    assert_eq!(b.get(&next).await.status(), 410, "the continue link works once");
    back
}

/// A token request: status, body, and `WWW-Authenticate` if any.
pub(crate) async fn token(
    app: &TestApp,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (u16, Value, Option<String>) {
    let mut r = app.http.post(app.url("/oidc/token")).form(form);
    if let Some((id, secret)) = basic {
        r = r.basic_auth(id, Some(secret));
    }
    let res = r.send().await.unwrap();
    let status = res.status().as_u16();
    let www = res.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string());
    let body: Value = res.json().await.unwrap_or(Value::Null);
    (status, body, www)
}

async fn exchange_a(app: &TestApp, code: &str, verifier: &str) -> (u16, Value) {
    let (s, b, _) = token(
        app,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", CB_A),
            ("client_id", "a"),
            ("code_verifier", verifier),
        ],
        None,
    )
    .await;
    (s, b)
}

pub(crate) async fn userinfo(app: &TestApp, access: &str) -> (u16, Value) {
    parts(app.http.get(app.url("/oidc/userinfo")).bearer_auth(access).send().await.unwrap()).await
}

pub(crate) fn id_claims(id_token: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(id_token.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

#[actix_web::test]
async fn a_login_through_the_provider_gives_verified_tokens_and_no_token_to_the_page() {
    let app = provider().await;
    let mut b = Browser::new();
    let back = log_in(&app, &mut b, "a", CB_A, "o_oidc_1", "13800138001").await;
    let (status, t) = exchange_a(&app, &query(&back, "code").unwrap(), VERIFIER).await;
    assert_eq!(status, 200, "{t}");
    let claims = id_claims(t["id_token"].as_str().unwrap());
    assert_eq!(claims["aud"], "a");
    assert_eq!(claims["nonce"], "n0nce");
    assert_eq!(claims["amr"], json!(["wechat", "sms"]));
    assert_eq!(claims["phone_number"], "+8613800138001");
    assert_ne!(claims["sub"], "o_oidc_1", "sub is never an openid");
    let (s, info) = userinfo(&app, t["access_token"].as_str().unwrap()).await;
    assert_eq!((s, &info["sub"]), (200, &claims["sub"]));
    let (s, me) = app.me(t["access_token"].as_str().unwrap()).await;
    assert_eq!((s, &me["id"]), (200, &claims["sub"]), "the access token works at /api/v1/me");
    assert!(t["refresh_token"].is_string(), "offline_access was granted");
}

#[actix_web::test]
async fn a_wrong_code_verifier_is_refused() {
    let app = provider().await;
    let back = log_in(&app, &mut Browser::new(), "a", CB_A, "o_oidc_2", "13800138002").await;
    let other = "x".repeat(43);
    let (status, body) = exchange_a(&app, &query(&back, "code").unwrap(), &other).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
}

#[actix_web::test]
async fn the_plain_method_and_a_public_client_without_pkce_are_refused_at_authorize() {
    let app = provider().await;
    let mut b = Browser::new();
    for extra in [vec![("code_challenge", VERIFIER), ("code_challenge_method", "plain")], vec![]] {
        let r = b.get(&authorize_url(&app, "a", CB_A, &extra)).await;
        assert_eq!(r.status(), 302, "{extra:?}");
        let back = location(&r);
        assert!(back.as_str().starts_with(CB_A));
        assert_eq!(query(&back, "error").as_deref(), Some("invalid_request"), "{extra:?}");
        assert_eq!(query(&back, "state").as_deref(), Some("st8"));
    }
}

#[actix_web::test]
async fn a_replayed_code_is_refused_and_revokes_what_it_gave() {
    let app = provider().await;
    let back = log_in(&app, &mut Browser::new(), "a", CB_A, "o_oidc_3", "13800138003").await;
    let code = query(&back, "code").unwrap();
    let (status, first) = exchange_a(&app, &code, VERIFIER).await;
    assert_eq!(status, 200);
    let access = first["access_token"].as_str().unwrap();
    assert_eq!(userinfo(&app, access).await.0, 200);
    let (status, body) = exchange_a(&app, &code, VERIFIER).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    assert_eq!(userinfo(&app, access).await.0, 401, "the first exchange's access token is revoked");
    let refresh = first["refresh_token"].as_str().unwrap();
    let (status, _, _) =
        token(&app, &[("grant_type", "refresh_token"), ("refresh_token", refresh), ("client_id", "a")], None).await;
    assert_eq!(status, 400, "and its refresh token");
}

#[actix_web::test]
async fn a_code_past_its_ttl_is_refused() {
    let app = spawn_app_with(|s| {
        clients(s);
        s.oidc.code_ttl_secs = 1;
    })
    .await;
    let back = log_in(&app, &mut Browser::new(), "a", CB_A, "o_oidc_4", "13800138004").await;
    // A real process's clock: the shortest TTL there is, waited out (no event marks its end).
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (status, body) = exchange_a(&app, &query(&back, "code").unwrap(), VERIFIER).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
}

#[actix_web::test]
async fn a_redirect_uri_that_differs_at_token_time_is_refused() {
    let app = provider().await;
    let back = log_in(&app, &mut Browser::new(), "a", CB_A, "o_oidc_5", "13800138005").await;
    let code = query(&back, "code").unwrap();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", "https://a.example/other"),
        ("client_id", "a"),
        ("code_verifier", VERIFIER),
    ];
    let (status, body, _) = token(&app, &form, None).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
}

#[actix_web::test]
async fn an_unregistered_redirect_uri_or_client_gets_a_page_not_a_redirect() {
    let app = provider().await;
    let mut b = Browser::new();
    for url in [authorize_url(&app, "a", "https://evil.example/cb", &[]), authorize_url(&app, "nobody", CB_A, &[])] {
        let r = b.get(&url).await;
        assert_eq!(r.status(), 400, "{url}");
        assert!(r.headers().get("location").is_none(), "never redirected to");
        assert!(r.text().await.unwrap().contains("<html"));
    }
}

#[actix_web::test]
async fn a_wrong_client_secret_is_401_with_www_authenticate() {
    let app = provider().await;
    let form = [("grant_type", "authorization_code"), ("code", "whatever"), ("redirect_uri", CB_B)];
    let (status, body, www) = token(&app, &form, Some(("b", "not-the-secret"))).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")));
    assert!(www.unwrap().starts_with("Basic"));
    // The same secret in the form is refused the same way.
    let form = [("grant_type", "authorization_code"), ("code", "x"), ("client_id", "b"), ("client_secret", "nope")];
    assert_eq!(token(&app, &form, None).await.0, 401);
}

#[actix_web::test]
async fn a_reused_refresh_token_revokes_its_family() {
    let app = provider().await;
    let back = log_in(&app, &mut Browser::new(), "a", CB_A, "o_oidc_6", "13800138006").await;
    let (_, t) = exchange_a(&app, &query(&back, "code").unwrap(), VERIFIER).await;
    let r1 = t["refresh_token"].as_str().unwrap().to_string();
    let refresh = |rt: String| {
        let app = &app;
        async move { token(app, &[("grant_type", "refresh_token"), ("refresh_token", &rt), ("client_id", "a")], None).await }
    };
    let (status, t2, _) = refresh(r1.clone()).await;
    assert_eq!(status, 200, "{t2}");
    let r2 = t2["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(r1, r2, "rotated");
    let (status, body, _) = refresh(r1).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "reuse");
    let (status, _, _) = refresh(r2).await;
    assert_eq!(status, 400, "the whole family is revoked");
    assert!(app.metrics().await.contains(r#"scanlogin_oidc_refresh_reuse_total{client="a"} 1"#));
}

#[actix_web::test]
async fn a_code_or_id_token_of_client_a_is_nothing_to_client_b() {
    let app = provider().await;
    let mut br = Browser::new();
    let back = log_in(&app, &mut br, "a", CB_A, "o_oidc_7", "13800138007").await;
    let code = query(&back, "code").unwrap();
    let form = [("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", CB_A)];
    let (status, body, _) = token(&app, &form, Some(("b", SECRET_B))).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "a's code, b's exchange");
    // An ID token of a: as b's logout hint it does not send the browser to b.
    let back = log_in(&app, &mut Browser::new(), "a", CB_A, "o_oidc_7", "13800138007").await;
    let (_, t) = exchange_a(&app, &query(&back, "code").unwrap(), VERIFIER).await;
    let id_token = t["id_token"].as_str().unwrap();
    let mut u = url::Url::parse(&app.url("/oidc/logout")).unwrap();
    u.query_pairs_mut()
        .append_pair("id_token_hint", id_token)
        .append_pair("post_logout_redirect_uri", "https://b.example/bye");
    let r = Browser::new().get(u.as_str()).await;
    assert_eq!(r.status(), 200, "a signed-out page, not b's address");
}

#[actix_web::test]
async fn prompt_none_without_a_session_is_login_required() {
    let app = provider().await;
    let ch = challenge(VERIFIER);
    let url = authorize_url(
        &app,
        "a",
        CB_A,
        &[("code_challenge", &ch), ("code_challenge_method", "S256"), ("prompt", "none")],
    );
    let r = Browser::new().get(&url).await;
    assert_eq!(r.status(), 302);
    assert_eq!(query(&location(&r), "error").as_deref(), Some("login_required"));
}

/// One scan logs the browser into both clients; one logout ends both.
#[actix_web::test]
async fn one_scan_signs_in_two_clients_and_one_logout_ends_both() {
    let app = provider().await;
    let mut b = Browser::new();
    let back = log_in(&app, &mut b, "a", CB_A, "o_oidc_8", "13800138008").await;
    let (_, ta) = exchange_a(&app, &query(&back, "code").unwrap(), VERIFIER).await;
    // Client b, same browser: a code at once, no scan.
    let r = b.get(&authorize_url(&app, "b", CB_B, &[])).await;
    assert_eq!(r.status(), 302, "single sign-on");
    let code_b = query(&location(&r), "code").expect("a code");
    let form = [("grant_type", "authorization_code"), ("code", code_b.as_str()), ("redirect_uri", CB_B)];
    let (status, tb, _) = token(&app, &form, Some(("b", SECRET_B))).await;
    assert_eq!(status, 200, "{tb}");
    let (ca, cb) = (id_claims(ta["id_token"].as_str().unwrap()), id_claims(tb["id_token"].as_str().unwrap()));
    assert_eq!(ca["sub"], cb["sub"]);
    assert_eq!(ca["auth_time"], cb["auth_time"], "one login");
    // prompt=login asks again.
    let r = b.get(&authorize_url(&app, "b", CB_B, &[("prompt", "login")])).await;
    assert_eq!(r.status(), 200, "the login page again");
    // Logout from b's hint ends the session: both clients' tokens stop working.
    let mut u = url::Url::parse(&app.url("/oidc/logout")).unwrap();
    u.query_pairs_mut()
        .append_pair("id_token_hint", tb["id_token"].as_str().unwrap())
        .append_pair("post_logout_redirect_uri", "https://b.example/bye")
        .append_pair("state", "bye1");
    let r = b.get(u.as_str()).await;
    assert_eq!(r.status(), 302);
    assert_eq!(query(&location(&r), "state").as_deref(), Some("bye1"));
    for t in [&ta, &tb] {
        assert_eq!(userinfo(&app, t["access_token"].as_str().unwrap()).await.0, 401);
    }
    let (status, _, _) = token(
        &app,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", ta["refresh_token"].as_str().unwrap()),
            ("client_id", "a"),
        ],
        None,
    )
    .await;
    assert_eq!(status, 400, "a's refresh token ended with the session");
    let ch = challenge(VERIFIER);
    let r = b
        .get(&authorize_url(
            &app,
            "a",
            CB_A,
            &[("code_challenge", &ch), ("code_challenge_method", "S256"), ("prompt", "none")],
        ))
        .await;
    assert_eq!(query(&location(&r), "error").as_deref(), Some("login_required"));
}

#[actix_web::test]
async fn discovery_and_jwks_describe_the_provider() {
    let app = provider().await;
    let (status, d) = app.get("/.well-known/openid-configuration").await;
    assert_eq!(status, 200);
    assert_eq!(d["issuer"], app.server.as_str());
    assert_eq!(d["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(d["id_token_signing_alg_values_supported"], json!(["RS256", "ES256"]));
    let (status, jwks) = app.get("/.well-known/jwks.json").await;
    assert_eq!(status, 200);
    let keys = jwks["keys"].as_array().unwrap();
    let algs: Vec<&str> = keys.iter().map(|k| k["alg"].as_str().unwrap()).collect();
    assert!(algs.contains(&"ES256") && algs.contains(&"RS256"), "{algs:?}");
    assert!(keys.iter().all(|k| k.get("d").is_none() && k["kid"].is_string()), "public parts only");
}
