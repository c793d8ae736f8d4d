//! Baseline (a), the seed's design: no state in the process, two Redis keys per
//! attempt. Create sets `status:{uuid}` = LOOP with the QR's TTL; the scene is
//! `web_{uuid}` (scene type + separator + uuid, as the seed builds it); a scan sets
//! `openid:{uuid}` and `status:{uuid}` = REG; the poll does the seed's two GETs, openid
//! first, then status, and answers expired when the status key is gone.

use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use super::{EXPIRED, LOOP, REG};

const STATUS: &str = "weixin_mp_user_status:";
const OPENID: &str = "weixin_mp_user_openid:";
const SCENE_SPLIT: &str = "_";

#[derive(Clone)]
pub struct Seed {
    redis: ConnectionManager,
}

fn err(e: redis::RedisError) -> String {
    e.to_string()
}

impl Seed {
    pub async fn connect(url: &str) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(err)?;
        Ok(Self { redis: ConnectionManager::new(client).await.map_err(err)? })
    }

    /// A new attempt: its uuid and scene.
    pub async fn create(&self, ttl_secs: u64) -> Result<(String, String), String> {
        let uuid = uuid::Uuid::new_v4().simple().to_string();
        let mut r = self.redis.clone();
        let _: () = r.set_ex(format!("{STATUS}{uuid}"), LOOP, ttl_secs).await.map_err(err)?;
        let scene = format!("web{SCENE_SPLIT}{uuid}");
        Ok((uuid, scene))
    }

    /// The seed's poll: GET openid, GET status.
    pub async fn status(&self, uuid: &str) -> Result<u8, String> {
        let mut r = self.redis.clone();
        let _openid: Option<String> = r.get(format!("{OPENID}{uuid}")).await.map_err(err)?;
        let status: Option<u8> = r.get(format!("{STATUS}{uuid}")).await.map_err(err)?;
        Ok(status.unwrap_or(EXPIRED))
    }

    /// WeChat's scan: the seed writes the openid and the new status.
    pub async fn scanned(&self, scene: &str, openid: &str, ttl_secs: u64) -> Result<(), String> {
        let Some((_, uuid)) = scene.split_once(SCENE_SPLIT) else { return Ok(()) };
        let mut r = self.redis.clone();
        let key = format!("{STATUS}{uuid}");
        let live: bool = r.exists(&key).await.map_err(err)?;
        if live {
            let _: () = r.set_ex(format!("{OPENID}{uuid}"), openid, ttl_secs).await.map_err(err)?;
            let _: () = r.set_ex(key, REG, ttl_secs).await.map_err(err)?;
        }
        Ok(())
    }
}
