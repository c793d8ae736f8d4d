//! The admin API in cluster mode: an attempt made on one node is listed and ended
//! through another node's admin listener, and the poll held on the first answers at once;
//! a user logged out through one node is refused on every node.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::client::{delivered, parts};
use crate::harness::{Cluster, Truth};
use crate::process::free_port;

const KEY: &str = "cluster-admin-key-0123456789abcdefghijkl";

/// The operator's id of the attempt polled by `uuid`.
fn id_of(uuid: &str) -> String {
    hex::encode(Sha256::digest(uuid.as_bytes()))[..16].to_string()
}

/// A cluster whose second node (index 1) has an admin listener; answers its base URL.
async fn cluster_with_admin(truth: Truth) -> (Cluster, String) {
    let sha = hex::encode(Sha256::digest(KEY.as_bytes()));
    let keys = format!(
        r#"[{{name = "oncall", token_sha256 = "{sha}", scopes = ["attempts:read", "attempts:write", "users:read", "users:write", "audit:read"]}}]"#
    );
    let mut c = Cluster::start_on(truth, &[("SCANLOGIN__ADMIN__KEYS", keys.as_str())]).await;
    let port = free_port();
    c.nodes[1].terminate(Duration::from_secs(15)).await;
    c.nodes[1].set("SCANLOGIN__ADMIN__BIND", &format!("127.0.0.1:{port}"));
    c.nodes[1].start().await;
    c.until_ready(1).await;
    (c, format!("http://127.0.0.1:{port}"))
}

async fn admin(c: &Cluster, method: reqwest::Method, url: &str) -> (u16, Value) {
    parts(c.http.request(method, url).bearer_auth(KEY).send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_made_on_one_node_is_listed_and_ended_from_another() {
    listed_and_ended_across_nodes(Truth::Single).await;
}

/// The same on a Redis Cluster, whose admin index is kept per bucket of attempts (in
/// each attempt's slot) and listed by merging the buckets: a page of 2 at a time lists
/// every attempt once, in deadline order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_are_listed_in_pages_and_ended_on_a_redis_cluster() {
    let (c, base) = listed_and_ended_across_nodes(Truth::RedisCluster).await;
    let mut made = Vec::new();
    for i in 0..7 {
        made.push(id_of(&c.api(i % 3).new_login().await.0));
    }
    let (mut seen, mut cursor) = (Vec::new(), None::<String>);
    loop {
        let q = cursor.as_ref().map_or(String::new(), |c| format!("&cursor={c}"));
        let (s, page) = admin(&c, reqwest::Method::GET, &format!("{base}/admin/v1/attempts?limit=2{q}")).await;
        assert_eq!(s, 200, "{page}");
        let attempts = page["attempts"].as_array().unwrap();
        assert!(attempts.len() <= 2, "{page}");
        // RFC 3339 at one-second precision: their text sorts as their time.
        let at = |a: &Value| a["expires_at"].as_str().unwrap().to_string();
        seen.extend(attempts.iter().map(|a| (at(a), a["id"].as_str().unwrap().to_string())));
        match page["next_cursor"].as_str() {
            Some(n) => cursor = Some(n.to_string()),
            None => break,
        }
    }
    let ids: Vec<&String> = seen.iter().map(|(_, id)| id).collect();
    for id in &made {
        assert_eq!(ids.iter().filter(|s| **s == id).count(), 1, "{id} listed once: {seen:?}");
    }
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "deadline order: {seen:?}");
}

/// [`an_attempt_made_on_one_node_is_listed_and_ended_from_another`] on `truth`; the
/// cluster and its admin listener's base URL.
async fn listed_and_ended_across_nodes(truth: Truth) -> (Cluster, String) {
    let (c, base) = cluster_with_admin(truth).await;
    let (uuid, _) = c.api(0).new_login().await;
    let id = id_of(&uuid);
    let held = async {
        let started = Instant::now();
        let r = c.api(2).status_wait(&uuid, 15).await;
        (r, started.elapsed())
    };
    let act = async {
        let (s, list) = admin(&c, reqwest::Method::GET, &format!("{base}/admin/v1/attempts?state=loop")).await;
        assert_eq!(s, 200, "{list}");
        let ids: Vec<_> = list["attempts"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap()).collect();
        assert!(ids.contains(&id.as_str()), "made on node1, listed by node2: {list}");
        let (s, one) = admin(&c, reqwest::Method::GET, &format!("{base}/admin/v1/attempts/{id}")).await;
        assert_eq!(s, 200, "{one}");
        assert_eq!(one["transitions"][0]["node"], "node1", "{one}");
        // Ended once node3 holds the poll: it must be woken, not merely read `expired`.
        c.api(2).until_held(1).await;
        admin(&c, reqwest::Method::POST, &format!("{base}/admin/v1/attempts/{id}/end")).await
    };
    let (((s, b), took), (es, eb)) = futures_util::future::join(held, act).await;
    assert_eq!((es, eb["reason"].as_str()), (200, Some("ended")), "{eb}");
    assert_eq!((s, b), (200, json!({"status": 1, "state": "expired", "reason": "ended"})));
    assert!(took < Duration::from_secs(10), "answered at the end, not at the poll's limit: {took:?}");
    for i in 0..3 {
        assert_eq!(c.api(i).status(&uuid).await.1["reason"], "ended", "node{} says why", i + 1);
    }
    let (_, list) = admin(&c, reqwest::Method::GET, &format!("{base}/admin/v1/attempts")).await;
    assert!(list["attempts"].as_array().unwrap().iter().all(|a| a["id"] != id.as_str()), "ended: off the list");
    (c, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_logged_out_through_one_node_is_refused_on_every_node() {
    let (c, base) = cluster_with_admin(Truth::Single).await;
    let token = c.api(0).register("oClusterLogout000001", "13800138021").await;
    let (uuid, ticket) = c.api(2).new_login().await;
    delivered(c.api(2).scan(&ticket, "oClusterLogout000001", true).await);
    let second = c.api(2).status(&uuid).await.1["token"].as_str().unwrap().to_string();
    let (s, me) = c.api(1).me(&token).await;
    assert_eq!(s, 200, "{me}");
    for i in 0..3 {
        assert_eq!(c.api(i).me(&second).await.0, 200);
    }
    let user = me["id"].as_str().unwrap();
    let (s, b) = admin(&c, reqwest::Method::POST, &format!("{base}/admin/v1/users/{user}/logout")).await;
    assert_eq!(s, 200, "{b}");
    for i in 0..3 {
        for t in [&token, &second] {
            assert_eq!(c.api(i).me(t).await.0, 401, "node{} refuses a token of before the logout", i + 1);
        }
    }
    let (s, audit) = admin(&c, reqwest::Method::GET, &format!("{base}/admin/v1/audit")).await;
    assert_eq!(s, 200);
    let logout = audit["entries"].as_array().unwrap().iter().find(|e| e["action"] == "users.logout").cloned();
    assert_eq!(
        logout.map(|e| (e["key_name"].clone(), e["target"].clone(), e["outcome"].clone())),
        Some((json!("oncall"), json!(user), json!("ok")))
    );
}

/// An attempt's transitions say where each step was written: made on node1, scanned on
/// whichever node nginx gave WeChat's push to (a name of the cluster's, with its time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_transition_names_the_node_that_wrote_it() {
    let (c, base) = cluster_with_admin(Truth::Single).await;
    let (uuid, ticket) = c.api(0).new_login().await;
    delivered(c.api(0).scan(&ticket, "oClusterTrail0000001", false).await);
    let (s, one) = admin(&c, reqwest::Method::GET, &format!("{base}/admin/v1/attempts/{}", id_of(&uuid))).await;
    assert_eq!(s, 200, "{one}");
    let steps = one["transitions"].as_array().unwrap();
    let seen: Vec<_> = steps.iter().map(|t| (t["state"].as_str().unwrap(), t["at"].is_string())).collect();
    assert_eq!(seen, vec![("loop", true), ("not_reg", true)], "{one}");
    assert_eq!(steps[0]["node"], "node1", "{one}");
    let scanned_on = steps[1]["node"].as_str().unwrap_or_default();
    assert!(["node1", "node2", "node3"].contains(&scanned_on), "the scan's node is named: {one}");
}
