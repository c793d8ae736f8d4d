//! The nodes on a real Redis Cluster (six `redis-server`s: three primaries, each with a
//! replica; `redis+cluster://`): the whole cluster walk, held polls woken while the
//! slot of their attempt moves to another primary, and logins going on through the
//! `kill -9` of a primary.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cross_node::{
    held_poll_woken_across_nodes, hop_login, nine_polls_one_token, one_push_one_transition_one_owner,
};
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
    held_poll_woken_across_nodes(&c).await;
    one_push_one_transition_one_owner(&c).await;
    nine_polls_one_token(&c).await;
    let text = c.http.get(format!("{}/metrics", c.node(0))).send().await.unwrap().text().await.unwrap();
    assert_eq!(crate::client::metric(&text, "scanlogin_redis_topology", &["topology=\"cluster\""]), 1.0);
    let (status, ready) = c.api(1).get("/readyz").await;
    assert_eq!((status, ready["redis"].as_str()), (200, Some("cluster")), "{ready}");
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
    let first = held(2);
    c.api(2).until_held(1).await;
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
    let second = held(1);
    c.api(1).until_held(1).await;
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

/// One returning user's login, each request to another node, nothing assumed: the
/// token, or which step failed how (a failover answers 503 while it lasts).
async fn try_login(c: &Cluster, first: usize, openid: &str) -> Result<String, String> {
    let (status, body) = c.api(first).create_qr(serde_json::json!({"image": false})).await;
    if status != 200 {
        return Err(format!("qrcode {status} {body}"));
    }
    let uuid = body["uuid"].as_str().unwrap_or_default().to_string();
    let ticket = crate::client::ticket_of(&body);
    let asked = c.http.get(format!("{}/_sandbox/tickets", c.node(first + 1))).query(&[("ticket", &ticket)]).send();
    let (status, t) = crate::client::parts(asked.await.map_err(|e| e.to_string())?).await;
    let Some(scene) = t["scene"].as_str().filter(|_| status == 200) else { return Err(format!("ticket {status} {t}")) };
    let (status, reply) = c.push_to((first + 2) % 3, &Cluster::scan_push(openid, scene, true)).await;
    if status != 200 {
        return Err(format!("push {status} {reply}"));
    }
    let (status, body) = c.api(first).status(&uuid).await;
    match body["token"].as_str() {
        Some(token) if status == 200 => Ok(token.to_string()),
        _ => Err(format!("status {status} {body}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_go_on_through_the_kill_of_a_primary_and_no_token_is_handed_out_twice() {
    let c = Arc::new(Cluster::start_on_redis_cluster(&[]).await);
    const USERS: usize = 6;
    for u in 0..USERS {
        hop_login(&c, u, &format!("o_fo_{u}"), &format!("137{u:08}"), false).await;
    }
    let tokens = Arc::new(Tokens::default());
    let start = Instant::now();
    let killed_at = Duration::from_secs(3);
    let run_for = Duration::from_secs(18);
    let mut drivers = tokio::task::JoinSet::new();
    for u in 0..USERS {
        let (c, tokens) = (c.clone(), tokens.clone());
        drivers.spawn(async move {
            // (ok, failures, first and last failure since the start)
            let (mut ok_after, mut failed, mut window) = (0usize, 0usize, None::<(Duration, Duration)>);
            let mut i = u;
            while start.elapsed() < run_for {
                i += 1;
                match try_login(&c, i, &format!("o_fo_{u}")).await {
                    Ok(token) => {
                        tokens.record(&token);
                        ok_after += usize::from(start.elapsed() > killed_at);
                    }
                    Err(why) => {
                        failed += 1;
                        let at = start.elapsed();
                        window = Some(window.map_or((at, at), |(a, _)| (a, at)));
                        if failed <= 2 || (at > Duration::from_secs(12) && failed % 5 == 0) {
                            eprintln!("login failed at {at:?}: {why}");
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            (ok_after, failed, window)
        });
    }
    tokio::time::sleep(killed_at).await;
    let victim = c.redis_cluster.as_ref().unwrap().primary_of(0);
    // SIGKILL: the replica of its slots takes over after cluster-node-timeout (2 s).
    let pid_killed = kill_node(&c, victim);
    eprintln!("killed Redis Cluster primary {victim} (pid {pid_killed}) at {:?}", start.elapsed());
    let (mut ok_after, mut failed, mut first_fail, mut last_fail) = (0, 0, None, None);
    while let Some(r) = drivers.join_next().await {
        let (ok, f, window) = r.unwrap();
        ok_after += ok;
        failed += f;
        if let Some((a, b)) = window {
            first_fail = Some(first_fail.map_or(a, |x: Duration| x.min(a)));
            last_fail = Some(last_fail.map_or(b, |x: Duration| x.max(b)));
        }
    }
    let window = match (first_fail, last_fail) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => Duration::ZERO,
    };
    eprintln!(
        "kill -9 of a primary under {USERS} login loops: {ok_after} logins after the kill, {failed} failed, error window {window:?} (from {first_fail:?} to {last_fail:?})"
    );
    assert!(
        last_fail.is_none_or(|l| l < run_for - Duration::from_secs(3)),
        "logins did not resume: last failure at {last_fail:?}"
    );
    assert!(ok_after >= 2 * USERS, "logins after the kill: {ok_after}");
}

/// SIGKILLs node `i` of the Redis Cluster by its pid (read from the node itself; the
/// cluster is shared by the login loops, so its handle cannot be borrowed mutably).
fn kill_node(c: &Cluster, i: usize) -> String {
    let node = &c.redis_cluster.as_ref().unwrap().nodes[i];
    let info = node.cli(&["INFO", "server"]).unwrap();
    let pid = info.lines().find_map(|l| l.strip_prefix("process_id:")).unwrap().trim().to_string();
    assert!(std::process::Command::new("kill").args(["-9", &pid]).status().unwrap().success());
    pid
}
