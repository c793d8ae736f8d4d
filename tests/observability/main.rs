//! Observability proved on real parts: the live `/metrics` passes `promtool check
//! metrics`, and on a real Prometheus scraping a real server under a short load every
//! dashboard panel query parses and returns data and every alert rule evaluates.

// Test code: a failed unwrap is how a test fails.
#![allow(clippy::unwrap_used)]

#[path = "../support/client.rs"]
mod client;
#[allow(dead_code)] // the API tests' helpers; this binary uses a few of them
#[path = "../api/helpers.rs"]
mod helpers;

mod dashboard;
mod prometheus;

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use client::delivered;
use helpers::{TestApp, spawn_app};
use prometheus::{JOB, Prometheus, tool};
use serde_json::{Value, json};

const APP: &str = "default";
const APP_ID: &str = "wxsandbox0000000001";

/// A short, varied load: failures WeChat injects, new users through SMS, returning
/// users through a held long poll, a wrong code, a refused resend, a forged callback.
async fn drive(app: &TestApp) {
    // The first access-token fetch fails (502), then one QR creation is refused by
    // WeChat's quota: the create falls back to code mode.
    for (api, errcode, status, mode) in [("token", 40013, 502, None), ("qrcode_create", 45009, 200, Some("code"))] {
        let r = app.post_json("/_sandbox/faults", &json!({"api": api, "errcode": errcode, "count": 1})).await;
        assert_eq!(r.status(), 200);
        let (s, b) = app.create_qr(json!({"image": false})).await;
        assert_eq!((s, b["mode"].as_str()), (status, mode), "{b}");
    }
    let users = [("o_obs_a", "13800138001"), ("o_obs_b", "13800138002"), ("o_obs_c", "13800138003")];
    for (openid, phone) in users {
        let token = app.register(openid, phone).await;
        assert_eq!(app.me(&token).await.0, 200);
    }
    // A returning user: the page long-polls, WeChat reports the scan, the poll wakes.
    for (openid, _) in users {
        let (uuid, ticket) = app.new_login().await;
        let poll = {
            let client = app.http.clone();
            let url = app.url(&format!("/api/v1/login/status?uuid={uuid}&wait=10"));
            actix_web::rt::spawn(async move { client.get(url).send().await.unwrap().json::<Value>().await })
        };
        app.until_held(1).await;
        delivered(app.scan(&ticket, openid, true).await);
        let answer = poll.await.unwrap().unwrap();
        assert_eq!(answer["state"], "reg", "{answer}");
    }
    // A new user types a wrong code and asks for a second code too soon.
    let (uuid, ticket) = app.new_login().await;
    app.status(&uuid).await;
    delivered(app.scan(&ticket, "o_obs_d", false).await);
    assert_eq!(app.sms_code(&uuid, "13800138004").await.0, 200);
    assert_eq!(app.sms_code(&uuid, "13800138004").await.0, 429);
    let wrong = client::wrong_code(&app.last_code("13800138004").await);
    assert_eq!(app.bind(&uuid, "13800138004", wrong).await.0, 400);
    // A forged push.
    let r = app
        .http
        .post(app.url(&format!("/wechat/{APP_ID}/callback?signature=bad&timestamp=1&nonce=1")))
        .body("<xml></xml>")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

fn promtool_check_metrics(text: &str) -> (bool, String) {
    let mut child = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success() && said.trim().is_empty(), said)
}

#[actix_web::test]
async fn live_metrics_pass_promtool_check() {
    let app = spawn_app().await;
    drive(&app).await;
    let text = app.metrics().await;
    assert!(text.contains("scanlogin_scan_to_token_seconds_bucket"), "the load reached the metrics");
    let (ok, said) = promtool_check_metrics(&text);
    assert!(ok, "promtool check metrics: {said}");
    // The check can fail: a counter without `_total` is reported.
    let (ok, said) = promtool_check_metrics("# HELP bad_counter x\n# TYPE bad_counter counter\nbad_counter 1\n");
    assert!(!ok, "promtool accepted a counter without _total: {said}");
}

#[test]
fn dashboard_is_importable_grafana_json() {
    let d = dashboard::load();
    assert!(d["uid"].is_string() && d["title"].is_string() && d["schemaVersion"].as_u64() >= Some(30));
    let vars: Vec<&Value> = d["templating"]["list"].as_array().expect("templating").iter().collect();
    let var = |n: &str| vars.iter().find(|v| v["name"] == n).copied();
    assert_eq!(var("datasource").expect("datasource variable")["type"], "datasource");
    assert_eq!(var("datasource").unwrap()["query"], "prometheus");
    let app = var("app").expect("app variable");
    assert_eq!(app["includeAll"], true);
    assert!(app["definition"].as_str().unwrap().contains("scanlogin_"));
    let mut ids = HashSet::new();
    for p in dashboard::panels(&d) {
        let title = p["title"].as_str().unwrap_or("?");
        assert!(ids.insert(p["id"].as_u64().expect("numeric id")), "duplicate id at {title}");
        assert!(p["gridPos"]["w"].as_u64().is_some_and(|w| w <= 24), "{title}: gridPos");
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}: datasource must be the variable");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        let refs: HashSet<&str> = targets.iter().map(|t| t["refId"].as_str().unwrap()).collect();
        assert_eq!(refs.len(), targets.len(), "{title}: refIds repeat");
    }
    // The app filter is used wherever a metric has an app label (capacities are per server).
    let with_app = ["scanlogin_attempts_created_total", "scanlogin_callbacks_total", "scanlogin_live_attempts"];
    for q in dashboard::queries(&d) {
        if with_app.iter().any(|m| q.expr.contains(m)) && !q.expr.contains("scanlogin_capacity") {
            assert!(q.expr.contains("app=~\"$app\""), "{}: `{}` ignores $app", q.panel, q.expr);
        }
    }
}

#[actix_web::test]
async fn every_panel_and_alert_works_on_a_real_prometheus() {
    let app = spawn_app().await;
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards/alerts.yml");
    let prom = Prometheus::start(app.server.trim_start_matches("http://"), &rules).await;
    prom.wait_scrapes(1).await;
    drive(&app).await;
    prom.wait_scrapes(3).await;

    let names = prom.api("label/__name__/values", &[]).await;
    let known: HashSet<&str> = names["data"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    let d = dashboard::load();
    let queries = dashboard::queries(&d);
    assert!(queries.len() >= 30, "only {} panel queries", queries.len());
    let mut failures = Vec::new();
    for q in &queries {
        for name in dashboard::metric_names(&q.expr) {
            if !known.contains(name.as_str()) {
                failures.push(format!("{}: `{name}` is not a scraped series", q.panel));
            }
        }
        let expr = dashboard::substitute(&q.expr, APP, JOB);
        match prom.query(&expr).await {
            Ok(r) if r.is_empty() => failures.push(format!("{}: no data for `{expr}`", q.panel)),
            Ok(_) => {}
            Err(e) => failures.push(format!("{}: `{expr}` does not parse: {e}", q.panel)),
        }
    }
    // Template variables resolve to the real values.
    for (var, want) in [("app", APP), ("job", JOB)] {
        let v = d["templating"]["list"].as_array().unwrap().iter().find(|v| v["name"] == var).unwrap();
        let def = v["definition"].as_str().unwrap();
        let (metric, label) = def.trim_start_matches("label_values(").trim_end_matches(')').split_once(", ").unwrap();
        let vals = prom.api(&format!("label/{label}/values"), &[("match[]", metric)]).await;
        if !vals["data"].as_array().is_some_and(|a| a.iter().any(|x| x == want)) {
            failures.push(format!("variable {var}: {def} does not list {want}: {vals}"));
        }
    }

    // Every alert rule: loaded, parsed, evaluated without error.
    let declared = std::fs::read_to_string(&rules).unwrap().matches("- alert:").count();
    prom.wait_for("every rule evaluated", |p| async move {
        let r = p.api("rules", &[]).await;
        let rules: Vec<&Value> =
            r["data"]["groups"].as_array().into_iter().flatten().flat_map(|g| g["rules"].as_array().unwrap()).collect();
        rules.len() == declared && rules.iter().all(|r| r["health"] == "ok" && r["lastEvaluation"] != "")
    })
    .await;
    let r = prom.api("rules", &[]).await;
    for group in r["data"]["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let expr = rule["query"].as_str().unwrap();
            if let Err(e) = prom.query(expr).await {
                failures.push(format!("alert {}: {e}", rule["name"]));
            }
            for name in dashboard::metric_names(expr) {
                if !known.contains(name.as_str()) {
                    failures.push(format!("alert {}: `{name}` is not a scraped series", rule["name"]));
                }
            }
        }
    }
    // The check itself can fail: a misspelt metric has no data.
    assert!(prom.query("rate(scanlogin_no_such_metric_total[30s])").await.unwrap().is_empty());
    assert!(prom.query("rate(scanlogin_polls_total[30s]").await.is_err());

    println!("{} panel queries and {declared} alert rules checked on Prometheus", queries.len());
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}
