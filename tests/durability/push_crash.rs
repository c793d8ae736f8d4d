//! A crash between a push's dedup claim and its completion: the process is killed
//! (SIGKILL) while the first delivery holds the claim (the sandbox-only
//! `wechat.test_push_delay_ms` holds it open 1 s), and WeChat's resend after the restart
//! must be processed — answered with the scan's own reply and the attempt moved on —
//! not answered `success` on the strength of a claim whose holder is dead. With Redis
//! snapshots the claim itself survives the crash (dedup keys live in Redis).

use std::time::{Duration, Instant};

use crate::client::eventually;
use crate::player::Player;
use crate::process::{Instance, RedisServer};

async fn scenario(snapshots: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Instance::server(dir.path(), snapshots, 60);
    let mut wechat = Instance::wechat(dir.path(), server.port);
    server.use_wechat(wechat.port);
    server.set("SCANLOGIN__WECHAT__TEST_PUSH_DELAY_MS", "1000");
    wechat.start().await;
    server.start().await;
    let api = server.api(&wechat);
    api.until_ready().await;

    let (uuid, ticket) = api.new_login().await;
    let scene = api.scene_of(&ticket).await;
    let push = Player::scan("o_crash", &scene, false, 1_700_000_123);
    let player = Player::new(&api.server);
    let first = {
        let (player, push) = (Player::new(&api.server), push.clone());
        tokio::spawn(async move { player.deliver(&push, 1, Duration::ZERO).await })
    };
    // The claim is taken on arrival; the work waits 1 s behind it. Kill in between, once
    // the server says it holds the claim.
    let claimed = || async { server.log().contains("push claimed; held by").then_some(()) };
    eventually("the first delivery's claim is held", Duration::from_secs(5), claimed).await;
    assert_eq!(api.status(&uuid).await.1["state"], "loop", "claimed, not yet processed");
    server.kill9();
    let first = first.await.unwrap();
    assert!(first.acked.is_none(), "the first delivery died with the process: {first:?}");

    server.start().await;
    api.until_ready().await;
    let t = Instant::now();
    let retry = player.deliver(&push, 4, Duration::from_secs(1)).await;
    let body = retry.acked.unwrap_or_else(|| panic!("never acknowledged; log:\n{}", server.log()));
    assert!(body.contains("绑定手机号"), "the retry was processed, not acknowledged blindly: {body:?}");
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    let (status, b) = api.status(&uuid).await;
    assert_eq!((status, b["state"].as_str()), (200, Some("not_reg")), "{b}");
}

#[tokio::test]
async fn a_push_killed_between_claim_and_completion_is_processed_on_retry_with_sqlite() {
    scenario("sqlite").await;
}

#[tokio::test]
async fn a_push_killed_between_claim_and_completion_is_processed_on_retry_with_redis() {
    let redis = RedisServer::start();
    scenario(&redis.url()).await;
}
