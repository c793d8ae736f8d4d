//! The nodes on a real Redis Cluster (six `redis-server`s: three primaries, each with a
//! replica; `redis+cluster://`): the whole cluster walk, held polls woken while the
//! slot of their attempt moves to another primary, and logins going on through the
//! `kill -9` of a primary; a login's Redis commands counted ([`crate::commands`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cross_node::{
    held_poll_woken_across_nodes, hop_login, nine_polls_one_token, one_push_one_transition_one_owner,
};
use crate::failover::{Traffic, kill_redis};
use crate::harness::{Cluster, Tokens, assert_spent};
use crate::process::redis_cluster::RedisCluster;
use crate::shared::logout_cooldown_and_access_token_shared;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_walk_runs_on_a_redis_cluster() {
    let c = Arc::new(Cluster::start_on_redis_cluster(&[]).await);
    // First: one access-token fetch between the nodes counts from a fresh start.
    logout_cooldown_and_access_token_shared(&c).await;
    let tokens = Tokens::default();
    for returning in [false, true] {
        for u in 0..12 {
            let (openid, phone) = (format!("o_rc_{u}"), format!("138{u:08}"));
            let (token, uuid) = hop_login(&c, u + returning as usize, &openid, &phone, returning).await;
            tokens.record(&token);
            for i in 0..3 {
                assert_eq!(c.api(i).me(&token).await.0, 200, "node{}", i + 1);
            }
            assert_spent(&c, &uuid).await;
        }
    }
    held_poll_woken_across_nodes(&c, 3).await;
    one_push_one_transition_one_owner(&c).await;
    nine_polls_one_token(&c).await;
    let text = c.http.get(format!("{}/metrics", c.node(0))).send().await.unwrap().text().await.unwrap();
    assert_eq!(crate::client::metric(&text, "scanlogin_redis_topology", &["topology=\"cluster\""]), 1.0);
    let (status, ready) = c.api(1).get("/readyz").await;
    assert_eq!((status, ready["redis"].as_str()), (200, Some("cluster")), "{ready}");
    // Every key a login touches in its attempt's slot: the bound holds here too.
    let rc = c.redis_cluster.as_ref().unwrap();
    let primaries: Vec<u16> = [0, 5461, 10923].iter().map(|&s| rc.nodes[rc.primary_of(s)].port).collect();
    crate::commands::one_returning_login_within_the_bound(&c, &primaries, "redis cluster").await;
}

/// The one record key in the cluster (there is one attempt): its slot.
fn slot_of_the_only_record(rc: &RedisCluster) -> u16 {
    let mut keys = Vec::new();
    for n in rc.nodes.iter().filter(|n| n.is_running()) {
        let role = n.cli(&["ROLE"]).unwrap_or_default();
        if role.starts_with("master") {
            keys.extend(n.cli(&["--scan", "--pattern", "sl:a:*"]).unwrap_or_default().lines().map(str::to_string));
        }
    }
    assert_eq!(keys.len(), 1, "one attempt record: {keys:?}");
    rc.slot(&keys[0])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_polls_are_woken_after_their_slot_moved_to_another_primary() {
    let c = Arc::new(Cluster::start_on_redis_cluster(&[]).await);
    let rc = c.redis_cluster.as_ref().unwrap();
    let (uuid, ticket) = c.api(0).new_login().await;
    let scene = c.scene(&ticket).await;
    let slot = slot_of_the_only_record(rc);
    let held = |node: usize| {
        let (c, uuid) = (c.clone(), uuid.clone());
        tokio::spawn(async move {
            let (status, body) = c.api(node).get(&format!("/api/v1/login/status?uuid={uuid}&wait=15")).await;
            (status, body, Instant::now())
        })
    };
    let mut first = held(2);
    c.api(2).until_held_or_answered(1, &mut first).await;
    // The slot (record, and the sharded channel beside it) moves under the held poll:
    // the old primary drops the channel's subscribers (a server-sent `sunsubscribe`).
    let from = rc.primary_of(slot);
    let to = (0..3).map(|i| rc.primary_of([0, 5461, 10923][i])).find(|&p| p != from).unwrap();
    rc.migrate_slot(slot, to);
    assert_eq!(rc.primary_of(slot), to);
    let moved = || async {
        let n = c.metric_sum("scanlogin_cluster_resubscriptions_total", "reason=\"slot_moved\"").await;
        (n >= 3.0).then_some(n)
    };
    crate::client::eventually("every node subscribed the moved channel again", Duration::from_secs(10), moved).await;
    // A poll held after the move too.
    let mut second = held(1);
    c.api(1).until_held_or_answered(1, &mut second).await;
    let scanned = Instant::now();
    let (status, reply) = c.push_to(0, &Cluster::scan_push("o_moved", &scene, false)).await;
    assert_eq!(status, 200, "{reply}");
    for poll in [first, second] {
        let (status, body, answered) = poll.await.unwrap();
        assert_eq!((status, body["state"].as_str()), (200, Some("not_reg")), "{body}");
        let woke = answered.saturating_duration_since(scanned);
        assert!(woke < Duration::from_secs(1), "woken by the scan, not the 15 s wait: {woke:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_and_wake_ups_go_on_through_the_kill_of_a_primary_and_no_token_is_handed_out_twice() {
    let c = Arc::new(Cluster::start_on_redis_cluster(&[]).await);
    let traffic = Traffic::start(&c, Duration::from_secs(18)).await;
    traffic.until_flowing().await;
    // Then 3 s more of load before the kill, as in every run before session 13. Killed at
    // 0.2 s instead, one CI run of two lost a wake-up on the promoted primary afterwards
    // (0 of 4 runs here): not explained yet (README, "Running on Redis Cluster or
    // Sentinel", the known issue), so this test keeps
    // the timing it was proven with rather than pass or fail by chance.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rc = c.redis_cluster.as_ref().unwrap();
    let victim = rc.primary_of(0);
    // SIGKILL: the replica of its slots takes over after cluster-node-timeout (2 s).
    let killed_at = traffic.elapsed();
    let pid = kill_redis(&rc.nodes[victim]);
    eprintln!("killed Redis Cluster primary {victim} (pid {pid}) at {killed_at:?}");
    traffic.finish("kill -9 of a Redis Cluster primary", killed_at).await;
    // The wake-up channels of the dead primary's slots live on the promoted replica now:
    // held polls are still woken there (24 attempts in random buckets: a third of them,
    // about 8, on those slots). Once, the nodes only dialled the dead address again.
    held_poll_woken_across_nodes(&c, 24).await;
}

/// `storage.redis_wait_replicas = 1` on a Redis Cluster: `WAIT` goes to the primary of
/// the attempt's slot. With that primary's replica frozen a scan is refused (not
/// acknowledged); when the primary then dies, every scan acknowledged before is on the
/// promoted replica (or on another primary, untouched).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_wait_replicas_no_acknowledged_scan_is_lost_with_a_primary() {
    let wait = [("SCANLOGIN__STORAGE__REDIS_WAIT_REPLICAS", "1"), ("SCANLOGIN__STORAGE__REDIS_WAIT_MS", "300")];
    let c = Arc::new(Cluster::start_on_redis_cluster(&wait).await);
    let rc = c.redis_cluster.as_ref().unwrap();
    let (_, ticket) = c.api(0).new_login().await;
    let frozen_scene = c.scene(&ticket).await;
    let slot = slot_of_the_only_record(rc);
    let primary = rc.primary_of(slot);
    let port = rc.nodes[primary].port.to_string();
    let replica = (0..rc.nodes.len())
        .find(|&i| {
            rc.nodes[i].cli(&["ROLE"]).is_some_and(|r| r.starts_with("slave") && r.lines().nth(2) == Some(&port))
        })
        .expect("the primary has a replica");
    let mut acknowledged = Vec::new();
    for i in 0..12 {
        let (uuid, ticket) = c.api(i % 3).new_login().await;
        let scene = c.scene(&ticket).await;
        let (status, reply) = c.push_to((i + 1) % 3, &Cluster::scan_push(&format!("o_wait_{i}"), &scene, false)).await;
        assert_eq!(status, 200, "{reply}");
        acknowledged.push(uuid);
    }
    rc.nodes[replica].pause();
    let (status, reply) = c.push_to(1, &Cluster::scan_push("o_wait_frozen", &frozen_scene, false)).await;
    assert_ne!(status, 200, "acknowledged while no replica had it: {reply}");
    kill_redis(&rc.nodes[primary]);
    rc.nodes[replica].resume();
    for uuid in &acknowledged {
        let scanned = || async {
            let (status, body) = c.api(2).status(uuid).await;
            (status == 200).then_some(body)
        };
        let body = crate::client::eventually("the slots answer again", Duration::from_secs(20), scanned).await;
        assert_eq!(body["state"], "not_reg", "an acknowledged scan survived its primary: {body}");
    }
}

/// The wedge itself (a cluster connection stuck in its slot refresh, see
/// `scanlogin::kv::conn::LazyCluster`) cannot be called up on demand; what it looks like
/// from outside can: calls through the connection time out and so does a probe. That
/// is a whole cluster frozen (every node SIGSTOPped), and the connection is opened anew;
/// one frozen primary is not (the probe's PINGs reach the others), and it is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_connection_that_answers_nothing_is_opened_anew_and_one_frozen_primary_is_not_that() {
    use scanlogin::kv::{Class, Kv};
    let rc = RedisCluster::start();
    let kv = Kv::new(&rc.url(), "reopen-test-secret").unwrap();
    let mut conn = kv.conn(Class::Fast);
    let get = |conn: &mut scanlogin::kv::Conn, key: &'static str| {
        let mut c = conn.clone();
        async move { redis::cmd("GET").arg(key).query_async::<Option<String>>(&mut c).await }
    };
    let _: () = redis::cmd("SET").arg("sl:t:{a}").arg("1").query_async(&mut conn).await.unwrap();
    assert_eq!(get(&mut conn, "sl:t:{a}").await.unwrap().as_deref(), Some("1"));
    // One primary frozen: its key times out, the probe is answered by another node.
    let frozen = rc.primary_of(rc.slot("sl:t:{a}"));
    rc.nodes[frozen].pause();
    let err = get(&mut conn, "sl:t:{a}").await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let kept = kv.reopened(Class::Fast);
    rc.nodes[frozen].resume();
    assert_eq!(kept, 0, "a connection that reaches the other nodes is kept");
    assert_eq!(get(&mut conn, "sl:t:{a}").await.unwrap().as_deref(), Some("1"));
    // Every node frozen: nothing answers through the connection, not even the probe.
    // Resumed before cluster-node-timeout (2 s), so no node marks another failed.
    for n in &rc.nodes {
        n.pause();
    }
    let frozen_at = Instant::now();
    let err = get(&mut conn, "sl:t:{a}").await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    while kv.reopened(Class::Fast) == 0 && frozen_at.elapsed() < Duration::from_millis(1600) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reopened = (kv.reopened(Class::Fast), frozen_at.elapsed());
    for n in &rc.nodes {
        n.resume();
    }
    assert_eq!(reopened.0, 1, "dropped as wedged within {:?}", reopened.1);
    // The next call opens a fresh connection, which answers.
    assert_eq!(get(&mut conn, "sl:t:{a}").await.unwrap().as_deref(), Some("1"));
    assert_eq!(kv.reopened(Class::Fast), 1);
}
