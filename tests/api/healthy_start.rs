//! A healthy start looks healthy: the real binary on `config/default.toml` (SQLite, and
//! with its snapshots on a fresh Redis or its database on a fresh PostgreSQL database),
//! started, used once, stopped and started again, logs one INFO line per part and no
//! WARN or ERROR line — no "snapshot store lost its data" on a Redis that is only new,
//! no PostgreSQL NOTICE from the migrations, no HTTP library's runtime notice.

use crate::process::{Instance, RedisServer};

/// A log line's second word is its level (`2025-01-01T00:00:00.000000Z  INFO …`).
fn level(line: &str) -> Option<&str> {
    line.split_whitespace().nth(1)
}

/// One run's log: only INFO lines, each part once, the parts a start has.
fn assert_calm(log: &str) {
    let mut seen = std::collections::HashSet::new();
    for line in log.lines() {
        assert_eq!(level(line), Some("INFO"), "a line that is not an INFO line: {line}\nlog:\n{log}");
        // Without the timestamp: the same line twice is a part said twice.
        let said = line.split_once(" INFO ").map_or(line, |(_, rest)| rest);
        assert!(seen.insert(said), "said twice: {said}\nlog:\n{log}");
    }
    for noise in ["already exists", "runtime found", "starting service", "lost its data"] {
        assert!(!log.contains(noise), "`{noise}` in the log:\n{log}");
    }
    for part in ["open-file limit", "starting", "scanlogin listening"] {
        assert!(log.contains(&format!(" {part}")), "no `{part}` line in the log:\n{log}");
    }
}

/// Starts `server` twice (a first start, then a restart on the same data), each time
/// ready, one QR code made (a snapshot written), stopped by SIGTERM; checks both logs.
async fn start_twice(server: &mut Instance) {
    for run in 1..=2 {
        server.start().await;
        let api = server.api(server);
        api.until_ready().await;
        let (status, body) = api.create_qr(serde_json::json!({})).await;
        assert_eq!(status, 200, "{body}");
        let exit = server.terminate(std::time::Duration::from_secs(15)).await;
        assert!(exit.success(), "run {run}: {exit}; log:\n{}", server.log());
        assert_calm(&server.log());
    }
}

/// The SQLite file in `dir`, then `extra`.
fn env_in(dir: &std::path::Path, extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut env = vec![("SCANLOGIN__STORAGE__DATABASE_URL", format!("sqlite://{}/h.db?mode=rwc", dir.display()))];
    env.extend_from_slice(extra);
    env
}

#[actix_web::test]
async fn a_start_on_the_default_config_logs_one_info_line_per_part_and_no_warning() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Instance::named(dir.path(), "sqlite", "http://127.0.0.1:1", &env_in(dir.path(), &[]));
    server.set("SCANLOGIN__SERVER__PUBLIC_URL", &server.url(""));
    start_twice(&mut server).await;
}

#[actix_web::test]
async fn a_fresh_redis_is_a_start_not_a_loss() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start();
    let snapshots = format!("redis://127.0.0.1:{}/3", redis.port);
    let env = env_in(dir.path(), &[("SCANLOGIN__STORAGE__SNAPSHOTS", snapshots)]);
    let mut server = Instance::named(dir.path(), "redis", "http://127.0.0.1:1", &env);
    server.set("SCANLOGIN__SERVER__PUBLIC_URL", &server.url(""));
    start_twice(&mut server).await;
}

#[actix_web::test]
async fn a_restart_on_postgresql_logs_no_notice() {
    let url = crate::helpers::scratch_postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let mut server =
        Instance::named(dir.path(), "postgres", "http://127.0.0.1:1", &[("SCANLOGIN__STORAGE__DATABASE_URL", url)]);
    server.set("SCANLOGIN__SERVER__PUBLIC_URL", &server.url(""));
    start_twice(&mut server).await;
}
