//! The access token shared by the nodes of a cluster: three token managers ("nodes")
//! over one private Redis fetch one token between them from the sandbox of a real
//! server, and a token reported bad by one is replaced once for all.

use std::sync::Arc;
use std::time::Duration;

use scanlogin::config::Secret;
use scanlogin::kv::Kv;
use scanlogin::metrics::Metrics;
use scanlogin::wechat::token::{Claim, ClusterToken, TokenManager, TokenSource};

use crate::client::metric;
use crate::helpers::spawn_app;
use crate::process::RedisServer;

fn node(base: &str, kv: &Kv, name: &str) -> (Arc<TokenManager>, Metrics) {
    node_with(base, kv, name, reqwest::Client::new())
}

fn node_with(base: &str, kv: &Kv, name: &str, http: reqwest::Client) -> (Arc<TokenManager>, Metrics) {
    let src = TokenSource {
        app: "default".into(),
        app_id: "wxsandbox0000000001".into(),
        secret: Secret::from("sandbox-secret"),
        api_base: base.into(),
        use_stable: true,
    };
    let metrics = Metrics::new();
    let shared = ClusterToken::new(kv, "wxsandbox0000000001", name);
    (TokenManager::new(src, http, metrics.clone(), Some(shared)), metrics)
}

fn fetches(nodes: &[(Arc<TokenManager>, Metrics)]) -> f64 {
    nodes.iter().map(|(_, m)| metric(&m.render(), "scanlogin_access_token_refreshes_total", &["result=\"ok\""])).sum()
}

#[actix_web::test]
async fn three_nodes_fetch_one_token_and_invalidate_it_once_for_all() {
    let wechat = spawn_app().await;
    let redis = RedisServer::start();
    let kv = Kv::new(&redis.url(), "test").unwrap();
    let base = format!("{}/_sandbox", wechat.server);
    let nodes: Vec<_> = ["n1", "n2", "n3"].iter().map(|n| node(&base, &kv, n)).collect();
    let calls: Vec<_> = (0..30).map(|i| nodes[i % 3].0.get()).collect();
    let tokens: Vec<String> =
        futures_util::future::join_all(calls).await.into_iter().map(|r| r.expect("a token")).collect();
    assert!(tokens.iter().all(|t| *t == tokens[0]), "every node uses the one token");
    assert_eq!(fetches(&nodes), 1.0, "fetched once for the three nodes together");
    // WeChat says the token is bad (40001) on node 2: it is dropped once, for everyone.
    nodes[1].0.invalidate(&tokens[0]).await;
    nodes[2].0.invalidate(&tokens[0]).await;
    let again: Vec<_> = (0..9).map(|i| nodes[i % 3].0.get()).collect();
    for r in futures_util::future::join_all(again).await {
        r.expect("a token after the invalidation");
    }
    // Node 1 was never told and keeps its copy; nodes 2 and 3 needed a new one and got
    // it with one fetch between them (stable_token may hand back the same string).
    assert_eq!(fetches(&nodes), 2.0, "one refetch after the invalidation, not one per node");
}

#[actix_web::test]
async fn with_redis_down_each_node_fetches_for_itself() {
    let wechat = spawn_app().await;
    let mut redis = RedisServer::start();
    let kv = Kv::new(&redis.url(), "test").unwrap();
    redis.kill();
    let base = format!("{}/_sandbox", wechat.server);
    let nodes: Vec<_> = ["n1", "n2"].iter().map(|n| node(&base, &kv, n)).collect();
    for (n, _) in &nodes {
        n.get().await.expect("logins go on without Redis");
    }
    assert_eq!(fetches(&nodes), 2.0);
}

/// The race CI once lost (two fetches for three nodes): node 2 reads "no token", node 1
/// then fetches, publishes and frees the lease, and only then does node 2 ask for the
/// lease. It must get node 1's token, not the lease and a second fetch.
#[actix_web::test]
async fn a_lease_won_after_another_node_published_brings_its_token() {
    let redis = RedisServer::start();
    let kv = Kv::new(&redis.url(), "test").unwrap();
    let (n1, n2) = (ClusterToken::new(&kv, "wxapp", "n1"), ClusterToken::new(&kv, "wxapp", "n2"));
    assert_eq!(n1.claim(None).await.unwrap(), Claim::Lease, "nothing published yet: n1 fetches");
    assert_eq!(n2.claim(None).await.unwrap(), Claim::Held, "n1 holds the lease");
    n1.publish("tok-1", Duration::from_secs(7000)).await.unwrap();
    match n2.claim(None).await.unwrap() {
        Claim::Published(t, usable) => {
            assert_eq!(t, "tok-1");
            assert!(usable > Duration::from_secs(6900) && usable <= Duration::from_secs(7000), "{usable:?}");
        }
        other => panic!("n2 took {other:?} although n1 had published: a second fetch"),
    }
    // Finding the token frees the lease again; a node refreshing away from tok-1 gets it.
    assert_eq!(n1.claim(Some("tok-1")).await.unwrap(), Claim::Lease, "the lease was not left taken");
}

/// A lease holder whose fetch fails frees the lease at once: a node waiting for its token
/// takes the lease and fetches, instead of waiting out the 5 s lease wait for a token that
/// will not come (seen in the Redis Cluster failover bench as 5 s of stalled QR codes).
#[actix_web::test]
async fn a_lease_holder_whose_fetch_fails_frees_the_lease_for_the_others() {
    let wechat = spawn_app().await;
    let redis = RedisServer::start();
    let kv = Kv::new(&redis.url(), "test").unwrap();
    // WeChat as n1 sees it: a server that takes the connection and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_base = format!("http://{}", silent.local_addr().unwrap());
    let http = reqwest::Client::builder().timeout(Duration::from_millis(1000)).build().unwrap();
    let (n1, _) = node_with(&silent_base, &kv, "n1", http);
    let (n2, m2) = node(&format!("{}/_sandbox", wechat.server), &kv, "n2");
    let started = std::time::Instant::now();
    let failing = tokio::spawn(async move { n1.get().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // n1 holds the lease now: n2 waits for it.
    let token = n2.get().await.expect("n2 gets a token");
    let took = started.elapsed();
    assert!(failing.await.unwrap().is_err(), "n1's fetch timed out");
    assert!(!token.is_empty());
    assert_eq!(fetches(&[(n2, m2)]), 1.0, "n2 fetched it itself");
    assert!(took < Duration::from_secs(3), "n2 took the freed lease, not the 5 s wait: {took:?}");
}
