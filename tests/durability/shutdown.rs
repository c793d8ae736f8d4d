//! (d) SIGTERM with held long polls: each gets an answer with the current state, the
//! process exits 0 within the grace period, and what it held is restored next time; it
//! exits 1 when snapshots are left unwritten at the end of the grace period.

use std::time::{Duration, Instant};

use crate::process::server_alone;

#[tokio::test]
async fn sigterm_answers_held_polls_flushes_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    // WeChat is the server's own sandbox here: no scans needed.
    let (mut server, api) = server_alone(dir.path(), "sqlite", 120).await;
    let mut uuids = Vec::new();
    for _ in 0..3 {
        uuids.push(api.new_login().await.0);
    }
    let mut held = Vec::new();
    for uuid in &uuids {
        let (http, url) = (api.http.clone(), server.url(&format!("/api/v1/login/status?uuid={uuid}&wait=20")));
        held.push(tokio::spawn(async move {
            let answer = crate::client::parts(http.get(url).send().await.unwrap()).await;
            (answer, Instant::now())
        }));
    }
    api.until_held(u32::try_from(held.len()).unwrap()).await;
    assert!(held.iter().all(|h| !h.is_finished()), "the polls are held");
    let sent = Instant::now();
    // The grace period is 5 s; idle keep-alive connections may hold the HTTP stop that long.
    let status = server.terminate(Duration::from_secs(6)).await;
    assert_eq!(status.code(), Some(0), "exit 0; log:\n{}", server.log());
    for h in held {
        let ((status, body), at) = h.await.unwrap();
        assert_eq!((status, body["state"].as_str()), (200, Some("loop")), "{body}");
        let after = at.duration_since(sent);
        assert!(after < Duration::from_millis(1500), "a held poll was answered {after:?} after SIGTERM");
    }
    assert!(server.log().contains("snapshots flushed"), "{}", server.log());

    server.start().await;
    api.until_ready().await;
    for uuid in &uuids {
        let (_, body) = api.status(uuid).await;
        assert_eq!(body["state"], "loop", "restored after a clean stop");
    }
}

/// SIGTERM right after logins: every login's audit row (written behind the answers) is
/// in the database once the process has exited.
#[tokio::test]
async fn sigterm_flushes_the_login_audit() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, api) = server_alone(dir.path(), "sqlite", 120).await;
    api.register("o_audit", "13800138077").await;
    let mut tokens = 1;
    for _ in 0..5 {
        let (uuid, ticket) = api.new_login().await;
        crate::client::delivered(api.scan(&ticket, "o_audit", true).await);
        let (status, body) = api.status(&uuid).await;
        assert_eq!((status, body["state"].as_str()), (200, Some("reg")), "{body}");
        tokens += 1;
    }
    let status = server.terminate(Duration::from_secs(6)).await;
    assert_eq!(status.code(), Some(0), "exit 0; log:\n{}", server.log());
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}/server.db", dir.path().display());
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM logins").fetch_one(&pool).await.unwrap();
    assert_eq!(n, tokens, "one audit row per token handed out");
}

/// SIGTERM while the snapshot store does not answer (Redis frozen): the attempts made
/// since cannot be written within the grace period, and the exit status says so (1),
/// with the reason as the last line.
#[tokio::test]
async fn sigterm_with_snapshots_left_unwritten_exits_1() {
    let redis = crate::process::RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (mut server, api) = server_alone(dir.path(), &redis.url(), 120).await;
    redis.pause();
    // Made while Redis is frozen: answered from memory (degraded mode), queued for Redis.
    let (uuid, _) = api.new_login().await;
    assert_eq!(api.status(&uuid).await.1["state"], "loop");
    // The grace period is 5 s; the flush cannot finish in it.
    let status = server.terminate(Duration::from_secs(10)).await;
    let log = server.log();
    assert_eq!(status.code(), Some(1), "exit 1; log:\n{log}");
    let last = log.lines().last().unwrap_or_default();
    assert!(last.contains("snapshot(s) not written to redis"), "the reason is the last line: {last}\nlog:\n{log}");
    redis.resume();
}
