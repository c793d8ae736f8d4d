//! Code mode survives `kill -9`: a code shown before the crash still logs in after the
//! restart (the code's index is the attempt's scene, which the snapshot keeps). Once
//! with SQLite snapshots, once with Redis.

use serde_json::json;

use crate::client::{delivered, parts};
use crate::process::{RedisServer, server_and_wechat};

async fn scenario(snapshots: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, _wechat, api) = server_and_wechat(dir.path(), snapshots, 60).await;
    server.kill9();
    server.set("SCANLOGIN__WECHAT__APPS__0__KIND", "subscription");
    server.start().await;
    api.until_ready().await;
    let (status, body) = api.create_qr(json!({"image": false})).await;
    assert_eq!((status, body["mode"].as_str()), (200, Some("code")), "{body}");
    let (uuid, code) = (body["uuid"].as_str().unwrap().to_string(), body["code"].as_str().unwrap().to_string());
    server.kill9();

    server.start().await;
    api.until_ready().await;
    assert_eq!(api.status(&uuid).await.1["state"], "loop");
    let sent = json!({"openid": "o_code_restart", "text": code});
    let r = api.http.post(format!("{}/_sandbox/message", api.wechat)).json(&sent).send().await.unwrap();
    let answer = parts(r).await;
    let reply = answer.1["reply"]["content"].as_str().unwrap_or_default().to_string();
    delivered(answer);
    assert!(reply.contains("Please bind your phone"), "the restored code matches: {reply}");
    assert_eq!(api.status(&uuid).await.1["state"], "not_reg");
}

#[tokio::test]
async fn a_code_attempt_survives_kill_9_with_sqlite_snapshots() {
    scenario("sqlite").await;
}

#[tokio::test]
async fn a_code_attempt_survives_kill_9_with_redis_snapshots() {
    let redis = RedisServer::start();
    scenario(&redis.url()).await;
}
