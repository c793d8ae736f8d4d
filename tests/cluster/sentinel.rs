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
    tokio::time::sleep(Duration::from_secs(2)).await;
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
}
