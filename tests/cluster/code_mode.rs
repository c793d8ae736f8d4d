//! Code mode across nodes: a code issued by node 1 is matched by a text push that lands
//! on node 2, and a poll held on node 3 is answered at once (the code index is the
//! scene key in Redis, the wake-up the commit's announcement).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Cluster, Truth};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_issued_on_one_node_and_sent_to_another_wakes_a_poll_held_on_a_third() {
    code_across_nodes(Truth::Single).await;
}

/// The same on a Redis Cluster: the code's scene key, held `NX` by one attempt, lives in
/// its attempt's slot (the poll id is drawn to match the code's bucket).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_crosses_three_nodes_on_a_redis_cluster() {
    code_across_nodes(Truth::RedisCluster).await;
}

async fn code_across_nodes(truth: Truth) {
    let c = Cluster::start_on(truth, &[("SCANLOGIN__WECHAT__APPS__0__KIND", "subscription")]).await;
    let (status, body) = c.api(0).create_qr(json!({"image": false})).await;
    assert_eq!((status, body["mode"].as_str()), (200, Some("code")), "{body}");
    let (uuid, code) = (body["uuid"].as_str().unwrap().to_string(), body["code"].as_str().unwrap().to_string());
    let held = {
        let api = c.api(2);
        let uuid = uuid.clone();
        tokio::spawn(async move { api.status_wait(&uuid, 20).await })
    };
    c.api(2).until_held(1).await;
    let sent = Instant::now();
    let (status, reply) = c.push_to(1, &Cluster::text_push("o_cluster_code", &code)).await;
    assert_eq!(status, 200, "{reply}");
    let (_, body) = held.await.unwrap();
    assert_eq!(body["state"], "not_reg", "{body}");
    assert!(sent.elapsed() < Duration::from_secs(1), "woken by the code: {:?}", sent.elapsed());
    // The code is used on every node: sent by someone else to node 3, it matches nothing.
    let (_, reply) = c.push_to(2, &Cluster::text_push("o_cluster_other", &code)).await;
    assert!(reply.contains("wrong or expired"), "{reply}");
}
