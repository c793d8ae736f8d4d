//! Every node answers every request: the requests of one login each go to another node
//! (straight, not through nginx), a poll held on one node is woken by a scan on another,
//! one push on three nodes is one transition, and one token is handed out once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::{Cluster, Tokens, assert_spent};

/// One login whose requests rotate over the nodes from `first`: create on `first`,
/// the callback on the next, the poll on the third, SMS on `first`, bind on the next.
/// Answers the token and the attempt.
pub async fn hop_login(c: &Cluster, first: usize, openid: &str, phone: &str, returning: bool) -> (String, String) {
    let (a, b, p) = (first, first + 1, first + 2);
    let (uuid, ticket) = c.api(a).new_login().await;
    let scene = c.scene(&ticket).await;
    let (status, reply) = c.push_to(b, &Cluster::scan_push(openid, &scene, returning)).await;
    assert_eq!(status, 200, "{reply}");
    // The callback answered only once Redis took the scan: the third node sees it.
    let (status, body) = c.api(p).status(&uuid).await;
    assert_eq!(status, 200, "{body}");
    let token = if returning {
        assert_eq!(body["state"], "reg", "{body}");
        body["token"].as_str().unwrap().to_string()
    } else {
        assert_eq!(body["state"], "not_reg", "{body}");
        let code = c.api(a).send_code(&uuid, phone).await;
        let (status, body) = c.api(b).bind(&uuid, phone, &code).await;
        assert_eq!(status, 200, "{body}");
        body["token"].as_str().unwrap().to_string()
    };
    (token, uuid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_logins_with_each_request_on_another_node() {
    let c = Arc::new(Cluster::start(&[]).await);
    let tokens = Arc::new(Tokens::default());
    const USERS: usize = 100;
    const TASKS: usize = 10;
    let started = Instant::now();
    // First round: 100 new users bind a phone; second: the same 100 come back.
    for returning in [false, true] {
        let mut set = tokio::task::JoinSet::new();
        for t in 0..TASKS {
            let (c, tokens) = (c.clone(), tokens.clone());
            set.spawn(async move {
                for u in (t..USERS).step_by(TASKS) {
                    let (openid, phone) = (format!("o_hop_{u}"), format!("139{:08}", u));
                    let (token, uuid) = hop_login(&c, u + returning as usize, &openid, &phone, returning).await;
                    tokens.record(&token);
                    for i in 0..3 {
                        let (status, body) = c.api(i).me(&token).await;
                        assert_eq!(status, 200, "node{}: {body}", i + 1);
                        assert_eq!(body["phone"], format!("139****{:04}", u % 10_000), "{body}");
                    }
                    assert_spent(&c, &uuid).await;
                }
            });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
    }
    assert_eq!(tokens.len(), 2 * USERS);
    // Every node played every role: each created a third of the attempts.
    for i in 0..3 {
        let text = c.http.get(format!("{}/metrics", c.node(i))).send().await.unwrap().text().await.unwrap();
        let made = crate::client::metric(&text, "scanlogin_attempts_created_total", &[]);
        assert!(made >= 60.0, "node{} created {made} attempts", i + 1);
    }
    eprintln!("200 hopping logins in {:?}", started.elapsed());
}

/// The walks that leave nothing another walk minds share one cluster on one Redis, as
/// they do on a Redis Cluster (`redis_cluster.rs`): what the nodes share first (it counts
/// the first access-token fetch), then a held poll woken across nodes, one push as one
/// transition and one owner, nine polls and one token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_walks_run_on_one_cluster_on_one_redis() {
    let c = Arc::new(Cluster::start(&[]).await);
    crate::shared::logout_cooldown_and_access_token_shared(&c).await;
    held_poll_woken_across_nodes(&c, 3).await;
    one_push_one_transition_one_owner(&c).await;
    nine_polls_one_token(&c).await;
}

/// `rounds` times: a long poll held on node 3 is answered when the scan lands on node 2.
pub async fn held_poll_woken_across_nodes(c: &Arc<Cluster>, rounds: usize) {
    for round in 0..rounds {
        let (uuid, ticket) = c.api(0).new_login().await;
        let scene = c.scene(&ticket).await;
        let held = {
            let c = c.clone();
            tokio::spawn(async move {
                let (status, body) = c.api(2).get(&format!("/api/v1/login/status?uuid={uuid}&wait=15")).await;
                (status, body, Instant::now())
            })
        };
        c.api(2).until_held(1).await;
        assert!(!held.is_finished(), "the poll was not held");
        let scanned = Instant::now();
        let (status, _) = c.push_to(1, &Cluster::scan_push(&format!("o_wake_{round}"), &scene, false)).await;
        assert_eq!(status, 200);
        let (status, body, answered) = held.await.unwrap();
        assert_eq!((status, body["state"].as_str()), (200, Some("not_reg")), "{body}");
        let woke = answered - scanned;
        assert!(woke < Duration::from_secs(1), "woken by the scan on another node, not the 15 s wait: {woke:?}");
    }
    assert!(c.metric_sum("scanlogin_cluster_wakeups_total", "").await > 0.0);
}

/// One push on three nodes is one transition, and of two scanners one owns the code.
pub async fn one_push_one_transition_one_owner(c: &Arc<Cluster>) {
    for round in 0..5 {
        let (uuid, ticket) = c.api(0).new_login().await;
        let scene = c.scene(&ticket).await;
        let before = c.metric_sum("scanlogin_transitions_total", "to=\"not_reg\"").await;
        // WeChat's retry of one push (same signature, same body) reaching all three.
        let push = Cluster::scan_push(&format!("o_dup_{round}"), &scene, false);
        let (x, y, z) = tokio::join!(c.push_to(0, &push), c.push_to(1, &push), c.push_to(2, &push));
        for (status, body) in [x, y, z] {
            assert_eq!(status, 200, "{body}");
        }
        let after = c.metric_sum("scanlogin_transitions_total", "to=\"not_reg\"").await;
        assert_eq!(after - before, 1.0, "one transition for one push, on whichever node won");
        assert_eq!(c.api(2).status(&uuid).await.1["state"], "not_reg");

        // Two people scan one fresh code at the same moment on two nodes.
        let (uuid, ticket) = c.api(0).new_login().await;
        let scene = c.scene(&ticket).await;
        let (x, y) = (format!("o_x{round}"), format!("o_y{round}"));
        let (px, py) = (Cluster::scan_push(&x, &scene, false), Cluster::scan_push(&y, &scene, false));
        let ((sx, rx), (sy, ry)) = tokio::join!(c.push_to(1, &px), c.push_to(2, &py));
        assert_eq!((sx, sy), (200, 200));
        let owners = [&rx, &ry].iter().filter(|r| r.contains("bind your phone")).count();
        let refused = [&rx, &ry].iter().filter(|r| r.contains("expired")).count();
        assert_eq!((owners, refused), (1, 1), "one owner, one told the code is gone:\n{rx}\n{ry}");
        // The owner, and only the owner, goes on: its code binds the phone.
        let phone = format!("137{:08}", round);
        let code = c.api(0).send_code(&uuid, &phone).await;
        let (status, body) = c.api(1).bind(&uuid, &phone, &code).await;
        assert!(status == 200 && body["token"].is_string(), "{body}");
    }
}

/// Nine polls on three nodes for a `reg` attempt get exactly one token.
pub async fn nine_polls_one_token(c: &Arc<Cluster>) {
    // A registered user first.
    let (uuid, ticket) = c.api(0).new_login().await;
    c.push_to(1, &Cluster::scan_push("o_nine", &c.scene(&ticket).await, false)).await;
    let code = c.api(2).send_code(&uuid, "13600000000").await;
    assert_eq!(c.api(0).bind(&uuid, "13600000000", &code).await.0, 200);
    let tokens = Tokens::default();
    for _ in 0..10 {
        let (uuid, ticket) = c.api(0).new_login().await;
        let (status, _) = c.push_to(1, &Cluster::scan_push("o_nine", &c.scene(&ticket).await, true)).await;
        assert_eq!(status, 200);
        let mut polls = tokio::task::JoinSet::new();
        for i in 0..9 {
            let (c, uuid) = (c.clone(), uuid.clone());
            polls.spawn(async move { c.api(i % 3).status(&uuid).await });
        }
        let mut won = 0;
        while let Some(answer) = polls.join_next().await {
            let (status, body) = answer.unwrap();
            assert_eq!(status, 200, "{body}");
            match body["state"].as_str() {
                Some("reg") => {
                    tokens.record(body["token"].as_str().unwrap());
                    won += 1;
                }
                Some("expired") => assert!(body.get("token").is_none()),
                _ => panic!("{body}"),
            }
        }
        assert_eq!(won, 1, "exactly one of nine polls on three nodes gets the token");
    }
}
