//! What the nodes share through Redis: a logout on one node is refused on the others,
//! the SMS resend cooldown holds across nodes, and the three nodes fetch one WeChat
//! access token between them.

use std::time::Duration;

use serde_json::json;

use crate::client::eventually;
use crate::harness::Cluster;

/// A logout, the SMS cooldown and the access token shared by the nodes of `c`, on one
/// Redis and on a Redis Cluster (the first QR codes `c` makes: run it first).
pub async fn logout_cooldown_and_access_token_shared(c: &Cluster) {
    // Every node makes QR codes (each needs the account's access token) at once.
    let mut made = Vec::new();
    let apis = [c.api(0), c.api(1), c.api(2)];
    for _ in 0..3 {
        let (a, b, d) = tokio::join!(apis[0].new_login(), apis[1].new_login(), apis[2].new_login());
        made.extend([a, b, d]);
    }
    let (uuid, ticket) = made.pop().unwrap();
    let (status, _) = c.push_to(1, &Cluster::scan_push("o_shared", &c.scene(&ticket).await, false)).await;
    assert_eq!(status, 200);

    // SMS on node 1; a resend on node 2 or 3 within sms_resend_secs is refused.
    let phone = "13500000000";
    let code = c.api(0).send_code(&uuid, phone).await;
    for i in [1, 2] {
        let r =
            c.http.post(format!("{}/api/v1/login/sms-code", c.node(i))).json(&json!({"uuid": uuid, "phone": phone}));
        let r = r.send().await.unwrap();
        let retry = r.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let (status, body) = crate::client::parts(r).await;
        assert_eq!((status, body["error"].as_str()), (429, Some("rate_limited")), "node{}: {body}", i + 1);
        assert!(retry.is_some_and(|s| (1..=60).contains(&s)), "Retry-After {retry:?}");
    }
    // The per-phone cooldown too, for another attempt (another browser) on another node.
    let (other, ticket) = made.pop().unwrap();
    c.push_to(0, &Cluster::scan_push("o_shared_2", &c.scene(&ticket).await, false)).await;
    let (status, body) = c.api(2).post("/api/v1/login/sms-code", json!({"uuid": other, "phone": phone})).await;
    assert_eq!(status, 429, "the phone's cooldown is shared: {body}");

    let (status, body) = c.api(1).bind(&uuid, phone, &code).await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap().to_string();
    for i in 0..3 {
        assert_eq!(c.api(i).me(&token).await.0, 200);
    }
    // Logout on node 3: refused on every node from then on.
    assert_eq!(c.api(2).logout(&token).await, 204);
    for i in 0..3 {
        let (status, body) = c.api(i).me(&token).await;
        assert_eq!(status, 401, "node{} still takes a logged-out token: {body}", i + 1);
    }

    // One access-token fetch for the account, by whichever node came first (a request
    // is counted as it ends, so the counts are awaited).
    let counts = || async {
        let fetched = c.metric_sum("scanlogin_access_token_refreshes_total", "result=\"ok\"").await;
        // WeChat's side of it: the token endpoints of the sandbox, summed over the nodes.
        let served = c.metric_sum("scanlogin_http_requests_total", "route=\"/_sandbox/cgi-bin/stable_token\"").await
            + c.metric_sum("scanlogin_http_requests_total", "route=\"/_sandbox/cgi-bin/token\"").await;
        (fetched >= 1.0 && served >= 1.0).then_some((fetched, served))
    };
    let (fetched, served) = eventually("the access-token fetch is counted", Duration::from_secs(5), counts).await;
    assert_eq!(
        (fetched, served),
        (1.0, 1.0),
        "three nodes, one account: one token fetch (nodes' count, WeChat's count)"
    );
}
