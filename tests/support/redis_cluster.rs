//! A private Redis Cluster: six `redis-server`s on loopback (three primaries, each with a
//! replica, `cluster-node-timeout` 2 s so that a replica takes over quickly), made into a
//! cluster by `redis-cli --cluster create`. Killed on drop. Included by path next to
//! `redis_server.rs` (as `redis_server`).

#![allow(dead_code)] // each includer uses a different part

use std::process::Command;
use std::time::{Duration, Instant};

use super::redis_server::{RedisServer, free_port};

pub struct RedisCluster {
    /// Every node, primaries first as they were created (a failover changes the roles).
    pub nodes: Vec<RedisServer>,
}

/// A free port whose cluster bus port (port + 10000) is free too.
fn cluster_port() -> u16 {
    loop {
        let p = free_port();
        if p <= 55_535 && std::net::TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
            return p;
        }
    }
}

impl RedisCluster {
    /// Six nodes, the cluster created, and every node seeing every slot served.
    pub fn start() -> Self {
        let args =
            ["--cluster-enabled", "yes", "--cluster-node-timeout", "2000", "--cluster-config-file", "nodes.conf"];
        let nodes: Vec<RedisServer> = (0..6).map(|_| RedisServer::start_with(cluster_port(), &args)).collect();
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let made = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        assert!(made.status.success(), "cluster create: {}", String::from_utf8_lossy(&made.stdout));
        let c = Self { nodes };
        c.until_ok(Duration::from_secs(20));
        c
    }

    /// `redis+cluster://` with every node as a seed.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    /// Waits until every running node says `cluster_state:ok` and every running
    /// replica is in sync with its primary.
    pub fn until_ok(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let ok = self.nodes.iter().filter(|n| n.is_running()).all(|n| {
                n.cli(&["CLUSTER", "INFO"]).is_some_and(|i| i.contains("cluster_state:ok"))
                    && n.cli(&["INFO", "replication"])
                        .is_some_and(|r| r.contains("role:master") || r.contains("master_link_status:up"))
            });
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "the Redis Cluster did not become ok");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The node serving `slot` as primary right now.
    pub fn primary_of(&self, slot: u16) -> usize {
        for (i, n) in self.nodes.iter().enumerate().filter(|(_, n)| n.is_running()) {
            let nodes = n.cli(&["CLUSTER", "NODES"]).unwrap_or_default();
            let Some(myself) = nodes.lines().find(|l| l.contains("myself,master")) else { continue };
            // id addr flags master ping pong epoch state slot…
            for range in myself.split_whitespace().skip(8) {
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>())
                    && (a..=b).contains(&slot)
                {
                    return i;
                }
            }
        }
        panic!("no running primary serves slot {slot}");
    }

    /// The node ID of node `i`.
    pub fn id(&self, i: usize) -> String {
        self.nodes[i].cli(&["CLUSTER", "MYID"]).expect("node answers")
    }

    /// The slot of `key`, as the cluster computes it.
    pub fn slot(&self, key: &str) -> u16 {
        let n = self.nodes.iter().find(|n| n.is_running()).expect("a running node");
        n.cli(&["CLUSTER", "KEYSLOT", key]).expect("KEYSLOT").parse().expect("a slot number")
    }

    /// Moves `slot` from its primary to primary `to`, keys and all, as `redis-cli
    /// --cluster reshard` does: IMPORTING on the target, MIGRATING on the source, every
    /// key MIGRATEd, then NODE on both (and the rest learn it by the bus).
    pub fn migrate_slot(&self, slot: u16, to: usize) {
        let from = self.primary_of(slot);
        assert_ne!(from, to, "slot {slot} is on node {to} already");
        let (src, dst) = (&self.nodes[from], &self.nodes[to]);
        let s = slot.to_string();
        let ok = |r: Option<String>, what: &str| assert_eq!(r.as_deref(), Some("OK"), "{what}");
        ok(dst.cli(&["CLUSTER", "SETSLOT", &s, "IMPORTING", &self.id(from)]), "importing");
        ok(src.cli(&["CLUSTER", "SETSLOT", &s, "MIGRATING", &self.id(to)]), "migrating");
        loop {
            let keys = src.cli(&["CLUSTER", "GETKEYSINSLOT", &s, "100"]).unwrap_or_default();
            let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let port = dst.port.to_string();
            let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
            args.extend(keys);
            let r = src.cli(&args).unwrap_or_default();
            assert!(r == "OK" || r == "NOKEY", "MIGRATE: {r}");
        }
        for n in [dst, src] {
            ok(n.cli(&["CLUSTER", "SETSLOT", &s, "NODE", &self.id(to)]), "node");
        }
    }
}
