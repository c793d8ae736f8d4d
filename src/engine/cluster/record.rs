//! The attempt records of the cluster in Redis, and the one write: compare-and-set.
//!
//! Layout (prefix `sl:`, see `crate::kv`):
//! - `sl:a:<record id>`: the attempt, sealed ([`crate::engine::persist::seal`]: no poll
//!   id in the clear, authenticated; the version sits at a fixed place, so Lua reads it
//!   without decoding), expiring [`GRACE_MS`] after the
//!   attempt's own deadline (`PXAT`): Redis forgets attempts by itself, once the node
//!   that made one had the time to write its end;
//! - `sl:s:<app>:<scene>`: the record id of the attempt with that scene, same expiry: how
//!   a WeChat push, which names the scene, finds its attempt. Set only if absent, so a
//!   code mode scene (a keyed hash of the code) is held by one attempt on every node;
//!   when a code mode attempt ends, its key lives one attempt lifetime more, so the code
//!   is not issued again that soon;
//! - `sl:t:<hex SHA-256 of a confirmation ticket>`: the record id of the `scanned` attempt
//!   it confirms, same expiry, deleted when the attempt leaves `scanned`: how the confirm
//!   page finds its attempt (the ticket itself is never stored);
//! - channel `sl:wake`: every committed transition publishes its record id there, so the
//!   nodes holding polls for it re-read.
//!
//! A write is one Lua script: read the stored version, write only if it is the version
//! the caller read (or, for a new attempt, if there is none), keep the scene key in step,
//! publish. Nothing half-written can remain: the script runs whole or not at all.
//!
//! On a Redis Cluster a script may touch one hash slot only, so the layout there is:
//! - `sl:a:{<b>}<record id>`, `<b>` the record id's first two hex digits (256 buckets,
//!   spread over the cluster's slots), and the sharded channel `sl:w:{<b>}` in the same
//!   slot: the script writes the record and `SPUBLISH`es its id, one slot;
//! - the scene key and the ticket key are found by what a push or the confirm page
//!   knows (a scene, a ticket), not by the record id, so they live in other slots and
//!   are separate commands: a new attempt takes its scene (`SET … NX`) before its record
//!   is written, and the ticket key follows a written record. A node that dies between
//!   the two leaves a scene held until its expiry (a code not reissued that soon) or a
//!   ticket that finds an attempt no longer waiting for it (refused as `wrong_state`).

use redis::Script;

use crate::engine::EngineError;
use crate::engine::Phase;
use crate::engine::persist::Snapshot;
use crate::engine::persist::codec::{self, version_u32};
use crate::engine::persist::seal::{RecordId, Seal};
use crate::ids::{LoginMode, PollId, Scene};
use crate::kv::{Class, Kv, TopologyKind};
use crate::metrics::Metrics;

/// KEYS: record, scene key, ticket key. ARGV: expected version (-1: none), data,
/// expires_at_ms, record id for the scene key ('' = leave it; only a new attempt sets it,
/// and only if no attempt holds the scene), channel, message, what to do with the ticket
/// key ('set', 'del', '' = leave it), when the scene key must expire instead ('' = with
/// the record; a code mode attempt that ends keeps its code from being issued again).
/// Answers -2 when written, -3 when the scene is taken, else the version found (-1: no
/// record).
const CAS_LUA: &str = r"
if v ~= tonumber(ARGV[1]) then return v end
if ARGV[4] ~= '' then
  if not redis.call('SET', KEYS[2], ARGV[4], 'PXAT', ARGV[3], 'NX') then return -3 end
end
redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
if ARGV[8] ~= '' then
  redis.call('PEXPIREAT', KEYS[2], ARGV[8])
end
if ARGV[7] == 'set' then
  redis.call('SET', KEYS[3], ARGV[6], 'PXAT', ARGV[3])
elseif ARGV[7] == 'del' then
  redis.call('DEL', KEYS[3])
end
redis.call('PUBLISH', ARGV[5], ARGV[6])
return -2
";

/// [`CAS_LUA`] for a Redis Cluster: the record and its sharded channel only (one slot).
/// KEYS: record. ARGV: expected version, data, expires_at_ms, channel, message.
const CAS_CLUSTER_LUA: &str = r"
if v ~= tonumber(ARGV[1]) then return v end
redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
redis.call('SPUBLISH', ARGV[4], ARGV[5])
return -2
";

/// How many sharded wake-up channels a Redis Cluster has (one per bucket of record ids,
/// named by two hex digits): every node subscribes to all of them.
pub const BUCKETS: usize = 256;

/// The sharded channel of bucket `b` (two hex digits).
pub fn bucket_channel(b: &str) -> String {
    crate::kv::key(&["w", &format!("{{{b}}}")])
}

/// How long Redis keeps a record past its attempt's deadline.
pub const GRACE_MS: u64 = 30_000;

/// What a compare-and-set did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cas {
    Written,
    /// Someone else wrote first (or the record vanished): read again.
    Conflict,
    /// A new attempt's scene is held by another attempt of the app (code mode).
    SceneTaken,
}

pub struct Records {
    kv: Kv,
    seal: Seal,
    cas: Script,
    /// The one-slot script of a Redis Cluster.
    cas_cluster: Script,
    channel: String,
    metrics: Metrics,
}

/// Redis did not answer (in time): the caller answers 503 `overloaded`.
fn unavailable(e: redis::RedisError) -> EngineError {
    tracing::warn!(error = %e, "cluster: redis call failed");
    EngineError::Unavailable
}

impl Records {
    pub fn new(kv: Kv, seal: Seal, metrics: Metrics) -> Self {
        let channel = kv.key(&["wake"]);
        let cas = Script::new(&codec::lua_with_version(CAS_LUA));
        let cas_cluster = Script::new(&codec::lua_with_version(CAS_CLUSTER_LUA));
        Self { kv, seal, cas, cas_cluster, channel, metrics }
    }

    /// The id the attempt polled by `poll` is stored under.
    pub fn id(&self, poll: &PollId) -> RecordId {
        self.seal.record_id(poll)
    }

    fn sharded(&self) -> bool {
        self.kv.topology() == TopologyKind::Cluster
    }

    /// The pub/sub channel every commit is announced on (one server; a cluster has
    /// [`bucket_channel`]s).
    pub fn channel(&self) -> &str {
        &self.channel
    }

    pub fn kv(&self) -> &Kv {
        &self.kv
    }

    fn key(&self, id: &RecordId) -> String {
        if self.sharded() {
            let id = id.as_str();
            return self.kv.key(&["a", &format!("{{{}}}{id}", &id[..2])]);
        }
        self.kv.key(&["a", id.as_str()])
    }

    fn scene_key(&self, app: &str, scene: &Scene) -> String {
        self.kv.key(&["s", app, scene.as_str()])
    }

    fn ticket_key(&self, ticket: &[u8; 32]) -> String {
        self.kv.key(&["t", &hex::encode(ticket)])
    }

    /// The record id of the attempt whose confirmation ticket hashes to `ticket`.
    pub async fn id_of_ticket(&self, ticket: &[u8; 32]) -> Result<Option<RecordId>, EngineError> {
        let mut c = self.kv.conn(Class::Fast);
        let id: Option<String> =
            redis::cmd("GET").arg(self.ticket_key(ticket)).query_async(&mut c).await.map_err(unavailable)?;
        Ok(id.and_then(|p| RecordId::parse(&p)))
    }

    /// The stored attempt, ended ones included; `None` when Redis has none (never
    /// existed, or past its deadline).
    /// `poll`, when the caller knows it: the record's own copy need not be decrypted.
    pub async fn load(&self, id: &RecordId, poll: Option<&PollId>) -> Result<Option<Snapshot>, EngineError> {
        let mut c = self.kv.conn(Class::Fast);
        let blob: Option<Vec<u8>> =
            redis::cmd("GET").arg(self.key(id)).query_async(&mut c).await.map_err(unavailable)?;
        let open = |b: Vec<u8>| match poll {
            Some(p) => self.seal.open_for(p, id, &b),
            None => self.seal.open(id, &b),
        };
        match blob.map(open) {
            None => Ok(None),
            Some(Ok(s)) => Ok(Some(s)),
            // Not written by a node of this deployment (or damaged): no state of it is
            // believed, so nobody can mint a login by writing to Redis.
            Some(Err(e)) => {
                self.metrics.redis_record_rejected();
                tracing::error!(error = %e, "cluster: attempt record refused; treated as gone");
                Ok(None)
            }
        }
    }

    /// The record id of the attempt of (`app`, `scene`).
    pub async fn id_of(&self, app: &str, scene: &Scene) -> Result<Option<RecordId>, EngineError> {
        let mut c = self.kv.conn(Class::Fast);
        let id: Option<String> =
            redis::cmd("GET").arg(self.scene_key(app, scene)).query_async(&mut c).await.map_err(unavailable)?;
        Ok(id.and_then(|p| RecordId::parse(&p)))
    }

    /// Writes `snap` if the stored version is still `expected` (`None`: a new attempt,
    /// whose scene key is written too), and announces it.
    pub async fn cas(&self, expected: Option<u64>, snap: &Snapshot) -> Result<Cas, EngineError> {
        let data = self.seal.seal(snap).map_err(|e| {
            tracing::error!(error = %e, "cluster: attempt does not encode");
            EngineError::Unavailable
        })?;
        let expected = expected.map_or(-1, |v| i64::from(version_u32(v)));
        let id = self.id(&snap.poll);
        let scene_value = if expected < 0 { id.as_str() } else { "" };
        // The ticket finds its attempt only while the attempt waits for it.
        let (ticket_key, ticket_op) = match &snap.state.ticket {
            Some(t) if snap.state.phase == Phase::Scanned => (self.ticket_key(t), "set"),
            Some(t) => (self.ticket_key(t), "del"),
            None => (self.key(&id), ""),
        };
        // A code mode attempt that ends holds its code for another lifetime (docs/api.md).
        let scene_until = match (snap.state.phase, snap.scene.mode()) {
            (Phase::Expired, LoginMode::Code) => {
                let now = crate::wall::unix_ms();
                let lifetime = snap.state.expires_at_ms.saturating_sub(snap.state.created_ms.unwrap_or(now));
                (now + lifetime).to_string()
            }
            _ => String::new(),
        };
        if self.sharded() {
            let scene = (self.scene_key(&snap.app, &snap.scene), expected < 0);
            let ticket = (!ticket_op.is_empty()).then_some((ticket_key.as_str(), ticket_op));
            let keep_until = snap.state.expires_at_ms + GRACE_MS;
            return self.cas_sharded(expected, &id, data, keep_until, scene, ticket, &scene_until).await;
        }
        let mut c = self.kv.conn(Class::Fast);
        let r: i64 = self
            .cas
            .key(self.key(&id))
            .key(self.scene_key(&snap.app, &snap.scene))
            .key(ticket_key)
            .arg(expected)
            .arg(data)
            .arg(snap.state.expires_at_ms + GRACE_MS)
            .arg(scene_value)
            .arg(&self.channel)
            .arg(id.as_str())
            .arg(ticket_op)
            .arg(scene_until)
            .invoke_async(&mut c)
            .await
            .map_err(unavailable)?;
        if r == -2 {
            self.kv.replicated(&self.key(&id)).await.map_err(unavailable)?;
        }
        Ok(match r {
            -2 => Cas::Written,
            -3 => Cas::SceneTaken,
            _ => Cas::Conflict,
        })
    }

    /// [`Records::cas`] on a Redis Cluster (see the module's doc): the scene taken first
    /// for a new attempt, the one-slot script, then the ticket key and a code's scene
    /// expiry.
    #[allow(clippy::too_many_arguments)]
    async fn cas_sharded(
        &self,
        expected: i64,
        id: &RecordId,
        data: Vec<u8>,
        keep_until: u64,
        (scene, take_scene): (String, bool),
        ticket: Option<(&str, &str)>,
        scene_until: &str,
    ) -> Result<Cas, EngineError> {
        let mut c = self.kv.conn(Class::Fast);
        if take_scene {
            let set: Option<String> = redis::cmd("SET")
                .arg(&scene)
                .arg(id.as_str())
                .arg("PXAT")
                .arg(keep_until)
                .arg("NX")
                .query_async(&mut c)
                .await
                .map_err(unavailable)?;
            if set.is_none() {
                return Ok(Cas::SceneTaken);
            }
        }
        let r: i64 = self
            .cas_cluster
            .key(self.key(id))
            .arg(expected)
            .arg(data)
            .arg(keep_until)
            .arg(bucket_channel(&id.as_str()[..2]))
            .arg(id.as_str())
            .invoke_async(&mut c)
            .await
            .map_err(unavailable)?;
        if r != -2 {
            return Ok(Cas::Conflict);
        }
        self.kv.replicated(&self.key(id)).await.map_err(unavailable)?;
        let mut after = redis::pipe();
        match ticket {
            Some((key, "set")) => {
                after.cmd("SET").arg(key).arg(id.as_str()).arg("PXAT").arg(keep_until).ignore();
            }
            Some((key, _)) => {
                after.cmd("DEL").arg(key).ignore();
            }
            None => {}
        }
        if !scene_until.is_empty() {
            // The scene key of a code attempt that ended: held one lifetime more.
            after.cmd("PEXPIREAT").arg(&scene).arg(scene_until).ignore();
        }
        if after.cmd_iter().next().is_some() {
            after.query_async::<()>(&mut c).await.map_err(unavailable)?;
        }
        Ok(Cas::Written)
    }
}
