//! The nodes on a primary that Redis Sentinel names (`redis+sentinel://`): a planned
//! failover (`SENTINEL FAILOVER`) and then the `kill -9` of the new primary, under
//! login traffic; the nodes follow both by themselves. Before that, a login's Redis
//! commands counted ([`crate::commands`]).

use std::sync::Arc;
use std::time::Duration;

use crate::failover::{Traffic, kill_redis};
use crate::harness::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_follow_a_sentinel_failover_and_the_kill_of_the_new_primary() {
    let c = Arc::new(Cluster::start_on_sentinel(&[]).await);
    let (status, ready) = c.api(0).get("/readyz").await;
    assert_eq!((status, ready["redis"].as_str()), (200, Some("sentinel")), "{ready}");
    let s = c.redis_sentinel.as_ref().unwrap();
    let primary = s.servers[s.primary_index()].port;
    crate::commands::one_returning_login_within_the_bound(&c, &[primary], "sentinel").await;
    let traffic = Traffic::start(&c, Duration::from_secs(30)).await;
    traffic.until_flowing().await;
    let before = s.primary();
    let failed_over_at = traffic.elapsed();
    s.failover();
    let moved = || async { (s.primary() != before).then_some(()) };
    crate::client::eventually("the sentinels promote the replica", Duration::from_secs(10), moved).await;
    eprintln!("SENTINEL FAILOVER at {failed_over_at:?}: {before} -> {}", s.primary());
    // The old primary is the new one's replica now; once the sentinels know it again
    // and it is in sync, the new primary dies.
    s.until_known(Duration::from_secs(20));
    let victim = s.primary_index();
    let killed_at = traffic.elapsed();
    let pid = kill_redis(&s.servers[victim]);
    eprintln!("killed the new primary (pid {pid}) at {killed_at:?}");
    traffic.finish("SENTINEL FAILOVER, then kill -9 of the new primary", failed_over_at).await;
    // The planned failover, noticed by the three nodes through the sentinels (the
    // kill that follows may first be seen as the lost connection it is).
    let noticed = c.metric_sum("scanlogin_cluster_resubscriptions_total", "reason=\"failover\"").await;
    assert!(noticed >= 3.0, "every node subscribed again on the new primary: {noticed}");
    // And wake-ups arrive there: a held poll is woken by a scan on another node.
    crate::cross_node::held_poll_woken_across_nodes(&c, 3).await;
}

/// `storage.redis_wait_replicas = 1`: a step is acknowledged only once the replica has
/// it. With the replica frozen a scan is refused (not acknowledged), and when the primary
/// then dies, every scan acknowledged before is on the promoted replica. Without `WAIT`
/// the frozen replica's scan would have been acknowledged and then lost with the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_wait_replicas_no_acknowledged_scan_is_lost_with_the_primary() {
    let wait = [("SCANLOGIN__STORAGE__REDIS_WAIT_REPLICAS", "1"), ("SCANLOGIN__STORAGE__REDIS_WAIT_MS", "300")];
    let c = Arc::new(Cluster::start_on_sentinel(&wait).await);
    let s = c.redis_sentinel.as_ref().unwrap();
    let (primary, replica) = (s.primary_index(), 1 - s.primary_index());
    let mut acknowledged = Vec::new();
    for i in 0..6 {
        let (uuid, ticket) = c.api(i % 3).new_login().await;
        let scene = c.scene(&ticket).await;
        let (status, reply) = c.push_to((i + 1) % 3, &Cluster::scan_push(&format!("o_wait_{i}"), &scene, false)).await;
        assert_eq!(status, 200, "{reply}");
        acknowledged.push(uuid);
    }
    let (_, ticket) = c.api(0).new_login().await;
    let scene = c.scene(&ticket).await;
    s.servers[replica].pause();
    let (status, reply) = c.push_to(1, &Cluster::scan_push("o_wait_frozen", &scene, false)).await;
    assert_ne!(status, 200, "acknowledged while no replica had it: {reply}");
    let before = s.primary();
    kill_redis(&s.servers[primary]);
    s.servers[replica].resume();
    let moved = || async { (s.primary() != before).then_some(()) };
    crate::client::eventually("the sentinels promote the replica", Duration::from_secs(20), moved).await;
    for uuid in &acknowledged {
        let scanned = || async {
            let (status, body) = c.api(2).status(uuid).await;
            (status == 200).then_some(body)
        };
        let body = crate::client::eventually("the promoted primary answers", Duration::from_secs(10), scanned).await;
        assert_eq!(body["state"], "not_reg", "an acknowledged scan survived the primary: {body}");
    }
}
