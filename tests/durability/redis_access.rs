//! Access to Redis is not access to logins. A server keeps its snapshots in a private
//! Redis while logins are under way (one scanned by a registered user, its token waiting
//! for the browser's next poll). Everything Redis holds is read (every key, every value)
//! and everything the server sends it is watched (`MONITOR`): no poll uuid appears.
//! Then the records are moved between keys, as someone with write access could, and the
//! server restarted: none is believed, and no poll gets a token.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::client::{delivered, eventually};
use crate::process::{RedisServer, server_and_wechat};

/// Every line `MONITOR` shows, collected on a thread until the connection closes.
fn monitor(port: u16) -> Arc<Mutex<String>> {
    let seen = Arc::new(Mutex::new(String::new()));
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"MONITOR\r\n").unwrap();
    let lines = seen.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(s).lines() {
            let Ok(line) = line else { return };
            lines.lock().unwrap().push_str(&line);
            lines.lock().unwrap().push('\n');
        }
    });
    seen
}

/// Every key of the database and its value, as text (binary values escaped).
async fn dump(redis: &RedisServer) -> (Vec<String>, String) {
    let mut c = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut c).await.unwrap();
    let mut text = keys.join("\n");
    for k in &keys {
        let kind: String = redis::cmd("TYPE").arg(k).query_async(&mut c).await.unwrap();
        let value: Vec<Vec<u8>> = match kind.as_str() {
            "string" => vec![redis::cmd("GET").arg(k).query_async(&mut c).await.unwrap()],
            "hash" => redis::cmd("HGETALL").arg(k).query_async(&mut c).await.unwrap(),
            other => panic!("a {other} key {k}: extend the dump"),
        };
        for v in value {
            text.push('\n');
            text.push_str(&String::from_utf8_lossy(&v));
        }
    }
    (keys, text)
}

#[tokio::test]
async fn reading_redis_gives_no_poll_id_and_moved_records_are_refused() {
    let redis = RedisServer::start();
    let watched = monitor(redis.port);
    let dir = tempfile::tempdir().unwrap();
    let (mut server, _wechat, api) = server_and_wechat(dir.path(), &redis.url(), 60).await;
    api.register("o_reg", "13800138000").await;
    let (waiting, ticket) = api.new_login().await;
    delivered(api.scan(&ticket, "o_reg", true).await);
    let (looping, _) = api.new_login().await;
    let (scanned, ticket) = api.new_login().await;
    delivered(api.scan(&ticket, "o_new", false).await);
    let polls = [&waiting, &looping, &scanned];

    // Snapshots are written behind the answers: wait until none is pending.
    let written = || async { api.metrics().await.lines().any(|l| l == "scanlogin_snapshot_pending 0").then_some(()) };
    eventually("no snapshot pending", Duration::from_secs(10), written).await;
    let (keys, text) = dump(&redis).await;
    // Ours, and the one `register` logged in with.
    assert!(keys.iter().filter(|k| k.starts_with("sl:a:")).count() >= 3, "{keys:?}");
    let commands = watched.lock().unwrap().clone();
    assert!(commands.contains("EVALSHA"), "MONITOR saw the writes:\n{commands}");
    for poll in polls {
        assert!(!text.contains(poll.as_str()), "a poll id in redis's keys or values:\n{text}");
        assert!(!commands.contains(poll.as_str()), "a poll id in a command to redis");
    }

    // Someone with write access moves the records around (the waiting token's record
    // onto the key of another attempt), then the server restarts from Redis.
    let records: Vec<&String> = keys.iter().filter(|k| k.starts_with("sl:a:")).collect();
    let mut c = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let values: Vec<Vec<u8>> = redis::cmd("MGET").arg(&records).query_async(&mut c).await.unwrap();
    for (i, k) in records.iter().enumerate() {
        let _: () = redis::cmd("SET")
            .arg(k.as_str())
            .arg(&values[(i + 1) % values.len()])
            .arg("KEEPTTL")
            .query_async(&mut c)
            .await
            .unwrap();
    }
    // The restore walks the live ones (the index); the consumed one is not in it.
    let live: usize = redis::cmd("HLEN").arg("sl:scenes").query_async(&mut c).await.unwrap();
    assert_eq!(live, 3);
    server.kill9();
    server.start().await;
    api.until_ready().await;
    let m = api.metrics().await;
    for line in
        ["scanlogin_restore_attempts{outcome=\"corrupt\"} 3", "scanlogin_restore_attempts{outcome=\"restored\"} 0"]
    {
        assert!(m.lines().any(|l| l == line), "none believed: `{line}` missing in\n{m}");
    }
    for poll in polls {
        let (status, body) = api.status(poll).await;
        assert_eq!((status, body["state"].as_str()), (200, Some("expired")), "{body}");
        assert!(body.get("token").is_none(), "{body}");
    }
}
