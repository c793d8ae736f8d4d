//! A private Redis Sentinel deployment: a primary, a replica and three sentinels
//! watching them (`down-after-milliseconds` 1 s, quorum 2), on loopback. Waits until
//! the sentinels know the replica and each other (a failover before that finds no one
//! to promote). Killed on drop. Included by path next to `redis_server.rs`.

#![allow(dead_code)] // each includer uses a different part

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::redis_server::{RedisServer, free_port};

pub const MASTER: &str = "mymaster";

pub struct RedisSentinel {
    /// The primary and the replica as started (a failover swaps their roles).
    pub servers: Vec<RedisServer>,
    pub sentinel_ports: Vec<u16>,
    sentinels: Vec<Child>,
    _dir: tempfile::TempDir,
}

fn cli(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli").args(["-p", &port.to_string()]).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

impl RedisSentinel {
    pub fn start() -> Self {
        let sync_now = ["--repl-diskless-sync-delay", "0"];
        let primary = RedisServer::start_with(free_port(), &sync_now);
        let p = primary.port.to_string();
        let mut args = vec!["--replicaof", "127.0.0.1", &p];
        args.extend(sync_now);
        let replica = RedisServer::start_with(free_port(), &args);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sentinels = Vec::new();
        let mut sentinel_ports = Vec::new();
        for i in 0..3 {
            let port = free_port();
            let conf = dir.path().join(format!("sentinel-{i}.conf"));
            let text = format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor {MASTER} 127.0.0.1 {p} 2\n\
                 sentinel down-after-milliseconds {MASTER} 1000\nsentinel failover-timeout {MASTER} 5000\n",
                dir.path().display()
            );
            std::fs::write(&conf, text).expect("sentinel.conf");
            let child = Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server runs as a sentinel");
            sentinels.push(child);
            sentinel_ports.push(port);
        }
        let s = Self { servers: vec![primary, replica], sentinel_ports, sentinels, _dir: dir };
        s.until_known(Duration::from_secs(30));
        s
    }

    /// `redis+sentinel://` naming every sentinel and the primary's name.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.sentinel_ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        format!("redis+sentinel://{}/{MASTER}", hosts.join(","))
    }

    /// Waits until every sentinel knows a replica in sync and the two other sentinels.
    pub fn until_known(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let known = self.sentinel_ports.iter().all(|&p| {
                let replicas = cli(p, &["SENTINEL", "REPLICAS", MASTER]).unwrap_or_default();
                let others = cli(p, &["SENTINEL", "SENTINELS", MASTER]).unwrap_or_default();
                replicas.contains("slave") && !replicas.contains("s_down") && others.matches("name").count() >= 2
            });
            let synced = self.servers.iter().filter(|s| s.is_running()).all(|s| {
                s.cli(&["INFO", "replication"])
                    .is_some_and(|r| r.contains("role:master") || r.contains("master_link_status:up"))
            });
            if known && synced {
                return;
            }
            assert!(Instant::now() < deadline, "the sentinels never learned of the replica and each other");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `host:port` of the primary, as the first sentinel says.
    pub fn primary(&self) -> String {
        cli(self.sentinel_ports[0], &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER])
            .unwrap_or_default()
            .replace('\n', ":")
    }

    /// The index in `servers` of the primary the sentinels name.
    pub fn primary_index(&self) -> usize {
        let addr = self.primary();
        self.servers.iter().position(|s| addr.ends_with(&format!(":{}", s.port))).expect("a known primary")
    }

    /// `SENTINEL FAILOVER`: the replica is promoted, the primary made its replica.
    pub fn failover(&self) {
        let r = cli(self.sentinel_ports[0], &["SENTINEL", "FAILOVER", MASTER]);
        assert_eq!(r.as_deref(), Some("OK"), "SENTINEL FAILOVER");
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        for c in &mut self.sentinels {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
