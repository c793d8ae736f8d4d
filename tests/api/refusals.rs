//! Starts of the real binary (`config/default.toml` plus `SCANLOGIN__…` overrides, as an
//! operator runs it) that must be refused: exit code 2 and one line naming the key.

use crate::process::Instance;

/// A strong `token.secret` (not shipped anywhere).
const STRONG: &str = "p9Jx2mQe7Lr4Vt8Wz1Ks5Nb3Hc6Gd0Fa-strong";

/// The topology of docs/operations.md: nginx on the host in front of a loopback bind,
/// `public_url` the proxy's HTTPS address, the proxy trusted.
fn behind_nginx(dir: &std::path::Path, extra: &[(&str, &str)]) -> Instance {
    let mut env = vec![
        ("SCANLOGIN__SERVER__TRUSTED_PROXIES", r#"["127.0.0.1/32"]"#.to_string()),
        ("SCANLOGIN__STORAGE__DATABASE_URL", format!("sqlite://{}/r.db?mode=rwc", dir.display())),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    Instance::named(dir, "behind-nginx", "https://login.example.com", &env)
}

/// The one line of a refusal, after checking the exit code and that it is alone.
fn refusal((code, log): (Option<i32>, String)) -> String {
    assert_eq!(code, Some(2), "a configuration refusal exits 2; log:\n{log}");
    let lines: Vec<&str> = log.lines().filter(|l| l.starts_with("config: ")).collect();
    assert_eq!(lines.len(), 1, "one line; log:\n{log}");
    lines[0].to_string()
}

#[actix_web::test]
async fn the_sandbox_behind_a_proxy_with_a_public_url_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let line = refusal(behind_nginx(dir.path(), &[]).refused().await);
    assert!(line.starts_with("config: wechat.sandbox:"), "{line}");
    assert!(line.contains("wechat.sandbox_public") && line.contains("server.public_url"), "{line}");
}

#[actix_web::test]
async fn a_sandbox_meant_to_be_public_still_needs_a_real_token_secret() {
    let dir = tempfile::tempdir().unwrap();
    let public = [("SCANLOGIN__WECHAT__SANDBOX_PUBLIC", "true")];
    let line = refusal(behind_nginx(dir.path(), &public).refused().await);
    assert!(line.starts_with("config: token.secret:") && line.contains("placeholder"), "{line}");
    // With a real secret it is a demo host, as meant.
    let mut demo = behind_nginx(dir.path(), &[public[0], ("SCANLOGIN__TOKEN__SECRET", STRONG)]);
    demo.start().await;
    let http = crate::client::client();
    assert_eq!(http.get(demo.url("/_sandbox/")).send().await.unwrap().status(), 200);
}

#[actix_web::test]
async fn the_log_sms_provider_refuses_to_start_outside_the_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let stand_in = "http://127.0.0.1:9/_sandbox";
    let env = [
        ("SCANLOGIN__WECHAT__SANDBOX", "false".to_string()),
        ("SCANLOGIN__TOKEN__SECRET", STRONG.into()),
        ("SCANLOGIN__WECHAT__APPS__0__API_BASE", stand_in.into()),
        ("SCANLOGIN__WECHAT__APPS__0__MP_BASE", stand_in.into()),
        ("SCANLOGIN__STORAGE__DATABASE_URL", format!("sqlite://{}/r.db?mode=rwc", dir.path().display())),
    ];
    let mut server = Instance::named(dir.path(), "no-sandbox", "https://login.example.com", &env);
    let line = refusal(server.refused().await);
    assert!(line.starts_with("config: sms.provider:") && line.contains("webhook"), "{line}");
}

/// Every held poll is an open connection: an open-file limit the process cannot raise to
/// `limits.long_polls_max` and a margin stops the start, instead of a server that stops
/// accepting (WeChat's callbacks included) once the polls use up its files.
#[actix_web::test]
async fn an_open_file_limit_below_long_polls_max_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    // More files than the kernel lets any process have (fs.nr_open): root cannot raise it either.
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open").unwrap().trim().to_string();
    let env = [
        ("SCANLOGIN__STORAGE__DATABASE_URL", format!("sqlite://{}/r.db?mode=rwc", dir.path().display())),
        ("SCANLOGIN__LIMITS__LONG_POLLS_MAX", nr_open),
    ];
    let mut server = Instance::named(dir.path(), "few-files", "http://127.0.0.1:1", &env);
    server.nofile(1024);
    let line = refusal(server.refused().await);
    assert!(line.starts_with("config: limits.long_polls_max:") && line.contains("open-file limit"), "{line}");
}

/// Cluster mode needs what the nodes share: Redis for the attempts, a database other
/// than a node's own SQLite file.
#[actix_web::test]
async fn cluster_mode_without_redis_or_on_sqlite_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}/r.db?mode=rwc", dir.path().display());
    let cluster = |snapshots: &str| {
        let env = [
            ("SCANLOGIN__CLUSTER__ENABLED", "true".to_string()),
            ("SCANLOGIN__STORAGE__SNAPSHOTS", snapshots.to_string()),
            ("SCANLOGIN__STORAGE__DATABASE_URL", sqlite.clone()),
        ];
        Instance::named(dir.path(), "cluster", "http://127.0.0.1:1", &env)
    };
    let line = refusal(cluster("sqlite").refused().await);
    assert!(line.starts_with("config: storage.snapshots:") && line.contains("redis://"), "{line}");
    let line = refusal(cluster("redis://127.0.0.1:6379/0").refused().await);
    assert!(line.starts_with("config: storage.database_url:") && line.contains("not SQLite"), "{line}");
}

/// A Redis Cluster and waiting for replicas are cluster mode's: a single node refuses
/// them at the start, with the setting named.
#[actix_web::test]
async fn a_redis_cluster_or_replicas_to_wait_for_without_cluster_mode_refuse_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let node = |env: &[(&str, &str)]| {
        let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (*k, v.to_string())).collect();
        Instance::named(dir.path(), "single", "http://127.0.0.1:1", &env)
    };
    let line =
        refusal(node(&[("SCANLOGIN__STORAGE__SNAPSHOTS", "redis+cluster://127.0.0.1:1,127.0.0.1:2")]).refused().await);
    assert!(line.starts_with("config: storage.snapshots:") && line.contains("cluster.enabled"), "{line}");
    let line = refusal(node(&[("SCANLOGIN__STORAGE__REDIS_WAIT_REPLICAS", "1")]).refused().await);
    assert!(line.starts_with("config: storage.redis_wait_replicas:") && line.contains("cluster"), "{line}");
}

/// A `wxsandbox…` app id is the sandbox's: without the sandbox it must name where its
/// WeChat is (`api_base`), or the start is refused.
#[actix_web::test]
async fn a_sandbox_app_id_without_the_sandbox_or_an_api_base_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("SCANLOGIN__WECHAT__SANDBOX", "false".to_string()),
        ("SCANLOGIN__TOKEN__SECRET", STRONG.into()),
        ("SCANLOGIN__WECHAT__APPS__0__APP_SECRET", "a-real-looking-app-secret-0123456789".into()),
        ("SCANLOGIN__WECHAT__APPS__0__TOKEN", "a-real-looking-token".into()),
        ("SCANLOGIN__SMS__PROVIDER", "webhook".into()),
        ("SCANLOGIN__SMS__WEBHOOK_URL", "https://sms.example.com/send".into()),
        ("SCANLOGIN__STORAGE__DATABASE_URL", format!("sqlite://{}/r.db?mode=rwc", dir.path().display())),
    ];
    let mut server = Instance::named(dir.path(), "wxsandbox", "https://login.example.com", &env);
    let line = refusal(server.refused().await);
    assert!(line.starts_with("config: wechat.apps[0].app_id:") && line.contains("api_base"), "{line}");
}
