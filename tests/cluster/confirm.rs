//! Confirm on the phone across nodes: the scan lands on one node, the confirmation on a
//! second, and a poll held on the third is woken; a denial on one node is told as
//! `reason: denied` by another (the ticket index and the ending live in Redis).

use std::time::{Duration, Instant};

use crate::harness::{Cluster, Truth};

/// The path of the confirm link in a passive reply's XML.
fn link_in(reply: &str) -> String {
    let at = reply.find("/confirm/").unwrap_or_else(|| panic!("no confirm link in {reply}"));
    reply[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-')).collect()
}

async fn decide(c: &Cluster, i: usize, link: &str, decision: &str) -> u16 {
    let r = c.http.post(format!("{}{link}", c.node(i))).form(&[("decision", decision)]).send().await.unwrap();
    r.status().as_u16()
}

/// Scans `uuid`'s QR code as `openid` through node 1; answers the confirm link's path.
async fn scan_on_node_1(c: &Cluster, ticket: &str, openid: &str) -> String {
    let scene = c.scene(ticket).await;
    let (status, reply) = c.push_to(0, &Cluster::scan_push(openid, &scene, false)).await;
    assert_eq!(status, 200, "{reply}");
    link_in(&reply)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scanned_on_one_node_confirmed_on_another_and_the_poll_held_on_a_third_wakes() {
    confirm_across_nodes(Truth::Single).await;
}

/// The same on a Redis Cluster: the ticket's key, found by the ticket alone, lives in
/// another slot than its attempt and is written after the attempt's script.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmation_crosses_three_nodes_on_a_redis_cluster() {
    confirm_across_nodes(Truth::RedisCluster).await;
}

async fn confirm_across_nodes(truth: Truth) {
    let c = Cluster::start_on(truth, &[("SCANLOGIN__WECHAT__APPS__0__CONFIRM", "always")]).await;
    let (uuid, ticket) = c.api(0).new_login().await;
    let link = scan_on_node_1(&c, &ticket, "o_cluster_confirm").await;
    assert_eq!(c.api(1).status(&uuid).await.1["state"], "scanned");
    let held = {
        let api = c.api(2);
        let uuid = uuid.clone();
        tokio::spawn(async move { api.status_wait(&uuid, 20).await })
    };
    c.api(2).until_held(1).await;
    let page = c.http.get(format!("{}{link}", c.node(1))).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200, "node 2 finds the ticket");
    let confirmed = Instant::now();
    assert_eq!(decide(&c, 1, &link, "confirm").await, 200);
    let (_, body) = held.await.unwrap();
    assert_eq!(body["state"], "not_reg", "{body}");
    assert!(confirmed.elapsed() < Duration::from_secs(2), "woken by the confirmation: {:?}", confirmed.elapsed());
    assert_eq!(decide(&c, 2, &link, "confirm").await, 410, "used once, on every node");

    // A denial on node 3 is told by node 1.
    let (uuid, ticket) = c.api(1).new_login().await;
    let link = scan_on_node_1(&c, &ticket, "o_cluster_deny").await;
    assert_eq!(decide(&c, 2, &link, "deny").await, 200);
    let (_, body) = c.api(0).status(&uuid).await;
    assert_eq!((body["state"].as_str(), body["reason"].as_str()), (Some("expired"), Some("denied")), "{body}");
    assert_eq!(c.metric_sum("scanlogin_confirmations_total", "decision=\"deny\"").await, 1.0);
}
