//! Starts of the real binary that must fail, one test per class of failure, as an
//! operator meets them: `config/default.toml` plus `SCANLOGIN__…` overrides. Each checks
//! the exit status (2: the configuration is refused before anything is opened; 1:
//! something the configuration names cannot be used) and that stderr's one line that is
//! not a log line comes last and starts with the key to fix.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::process::free_port;

const BIN: &str = env!("CARGO_BIN_EXE_scanlogin");
const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml");

/// Runs `scanlogin serve` on a free port with its SQLite file in `dir` and `env` on top,
/// until it exits (it must, within 30 s): its exit code and its stderr.
fn failed_start(dir: &Path, env: &[(&str, String)]) -> (Option<i32>, String) {
    let port = free_port();
    let log_path = dir.join("stderr.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--config", CONFIG])
        .env("RUST_LOG", "info")
        .env("SCANLOGIN__SERVER__BIND", format!("127.0.0.1:{port}"))
        .env("SCANLOGIN__SERVER__PUBLIC_URL", format!("http://127.0.0.1:{port}"))
        .env("SCANLOGIN__SERVER__WORKERS", "1")
        .env("SCANLOGIN__STORAGE__DATABASE_URL", format!("sqlite://{}/s.db?mode=rwc", dir.display()))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    // The exit, awaited on a thread of its own (`wait` blocks until it comes).
    let pid = child.id().to_string();
    let (exit, exited) = std::sync::mpsc::channel();
    std::thread::spawn(move || exit.send(child.wait().unwrap()));
    let Ok(status) = exited.recv_timeout(Duration::from_secs(30)) else {
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
        panic!("still running after 30 s; stderr:\n{}", std::fs::read_to_string(&log_path).unwrap());
    };
    (status.code(), std::fs::read_to_string(&log_path).unwrap())
}

/// A log line's second word is its level (`2025-01-01T00:00:00.000000Z  INFO …`).
fn is_log_line(line: &str) -> bool {
    matches!(line.split_whitespace().nth(1), Some("TRACE" | "DEBUG" | "INFO" | "WARN" | "ERROR"))
}

/// The failure's one line, after checking the exit code, that it is the only line that
/// is not a log line, and that it is the last.
fn the_line((code, stderr): (Option<i32>, String), expected_code: i32) -> String {
    assert_eq!(code, Some(expected_code), "stderr:\n{stderr}");
    let said: Vec<&str> = stderr.lines().filter(|l| !is_log_line(l)).collect();
    assert_eq!(said.len(), 1, "one line besides the log; stderr:\n{stderr}");
    assert_eq!(stderr.lines().last(), Some(said[0]), "the reason comes last; stderr:\n{stderr}");
    said[0].to_string()
}

#[test]
fn a_bad_configuration_value_is_refused_with_status_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let line = the_line(failed_start(dir.path(), &[("SCANLOGIN__LOGIN__QR_TTL_SECS", "0".into())]), 2);
    assert!(line.starts_with("config: login.qr_ttl_secs: "), "{line}");
    // Refused before anything was opened: no database file.
    assert!(!dir.path().join("s.db").exists());
}

#[test]
fn an_unreachable_database_fails_with_status_1_naming_the_key_and_the_host_never_the_password() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 1.
    let url = "postgres://nobody:pw-never-printed@127.0.0.1:1/x";
    let (code, stderr) = failed_start(dir.path(), &[("SCANLOGIN__STORAGE__DATABASE_URL", url.into())]);
    assert!(!stderr.contains("pw-never-printed"), "{stderr}");
    let line = the_line((code, stderr), 1);
    assert!(
        line.starts_with(
            "storage.database_url: cannot connect to postgres://nobody:***@127.0.0.1:1/x (Connection refused): "
        ),
        "{line}"
    );
    assert!(line.contains("database server at 127.0.0.1:1 runs"), "{line}");
}

#[test]
fn an_address_in_use_fails_with_status_1_naming_server_bind() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let line = the_line(failed_start(dir.path(), &[("SCANLOGIN__SERVER__BIND", addr.clone())]), 1);
    assert!(line.starts_with(&format!("server.bind: cannot listen on {addr} (Address already in use): ")), "{line}");
    assert!(line.contains("another process listens there"), "{line}");
}

#[test]
fn a_metrics_bind_of_another_host_fails_with_status_1_naming_server_metrics_bind() {
    let dir = tempfile::tempdir().unwrap();
    // 192.0.2.1 (TEST-NET-1, for documentation) is never an address of this host;
    // binding it fails at once and sends nothing anywhere.
    let line = the_line(failed_start(dir.path(), &[("SCANLOGIN__SERVER__METRICS_BIND", "192.0.2.1:9100".into())]), 1);
    assert_eq!(
        line,
        "server.metrics_bind: cannot listen on 192.0.2.1:9100 (Cannot assign requested address): \
         set it to an address of this host or empty"
    );
    // Bound before the database is opened: a start that cannot listen opens nothing.
    assert!(!dir.path().join("s.db").exists());
}

#[test]
fn an_unreadable_redis_ca_file_fails_with_status_1_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("no-such-ca.pem");
    let env = [
        // Redis is not reached: the file is read before anything connects.
        ("SCANLOGIN__STORAGE__SNAPSHOTS", "rediss://127.0.0.1:6379/15".to_string()),
        ("SCANLOGIN__STORAGE__REDIS_CA_FILE", ca.display().to_string()),
    ];
    let line = the_line(failed_start(dir.path(), &env), 1);
    assert!(
        line.starts_with(&format!("storage.redis_ca_file: cannot read {} (No such file or directory): ", ca.display())),
        "{line}"
    );
}
