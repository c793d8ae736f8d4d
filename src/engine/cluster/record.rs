//! The attempt records of the cluster in Redis, and the one write: compare-and-set.
//!
//! Every attempt has a bucket (256 of them: the first byte of the SHA-256 of its poll
//! id, [`AttemptId::bucket`], which is also the first two hex digits of its record id),
//! and its scene is drawn in that bucket ([`Scene::bucket`]; a code mode scene is fixed,
//! so its poll id is drawn instead). The keys of one attempt carry the bucket as a hash
//! tag, so a Redis Cluster keeps them in one slot and one script writes them all; one
//! server ignores the tags. Layout (prefix `sl:`, see `crate::kv`):
//! - `sl:a:<record id>` (a cluster: `sl:a:{<b>}<record id>`): the attempt, sealed
//!   ([`crate::engine::persist::seal`]: no poll id in the clear, authenticated; the
//!   version sits at a fixed place, so Lua reads it without decoding), expiring
//!   [`GRACE_MS`] after the attempt's own deadline (`PXAT`): Redis forgets attempts by
//!   itself, once the node that made one had the time to write its end;
//! - `sl:s:{<b>}<app>:<scene>`: the record id of the attempt with that scene, same
//!   expiry: how a WeChat push, which names the scene, finds its attempt — and, the
//!   record being in the same slot, reads it in the same call ([`BY_SCENE_LUA`]). Set
//!   only if absent, so a code mode scene (a keyed hash of the code) is held by one
//!   attempt on every node; when a code mode attempt ends, its key lives one attempt
//!   lifetime more, so the code is not issued again that soon;
//! - the admin index's entries of the attempt ([`super::index`]), same bucket;
//! - `sl:t:<hex SHA-256 of a confirmation ticket>`: the record id of the `scanned` attempt
//!   it confirms, same expiry, deleted when the attempt leaves `scanned`: how the confirm
//!   page finds its attempt (the ticket itself is never stored). Found by the ticket
//!   alone, so in a cluster it lives in another slot: written after the script (a node
//!   that dies between the two leaves a ticket that finds an attempt no longer waiting
//!   for it, refused as `wrong_state`);
//! - channel `sl:wake` (a cluster: the sharded channel `sl:w:{<b>}`, in the bucket's
//!   slot): every committed transition but a new attempt's publishes its record id
//!   there, so the nodes holding polls for it re-read.
//!
//! A write is one Lua script: read the stored version, write only if it is the version
//! the caller read (or, for a new attempt, if there is none, taking its scene), keep the
//! scene key and the admin index in step, publish. Nothing half-written can remain: the
//! script runs whole or not at all. A returning user's login costs 12 commands on every
//! topology (tests/cluster/commands.rs counts them with `MONITOR`).

use redis::Script;

use super::index;
use crate::engine::EngineError;
use crate::engine::Phase;
use crate::engine::admin::AttemptId;
use crate::engine::persist::Snapshot;
use crate::engine::persist::codec::{self, version_u32};
use crate::engine::persist::seal::{RecordId, Seal};
use crate::ids::{LoginMode, PollId, Scene};
use crate::kv::{Class, Kv, TopologyKind};
use crate::metrics::Metrics;

/// The one write of every topology. KEYS: record, scene key, admin live set, admin id
/// key (all in the attempt's bucket: one slot of a Redis Cluster), ticket key (one server
/// only; a cluster passes the record again and writes the ticket key after).
/// ARGV: 1 expected version (-1: none), 2 data, 3 keep-until ms, 4 record id for the
/// scene key ('' = leave it; only a new attempt sets it, and only if no attempt holds the
/// scene), 5 `PUBLISH`, `SPUBLISH` or '' (a new attempt: nobody can wait on it yet), 6 channel, 7 record id (the message), 8 what to do
/// with the ticket key ('set', 'del', ''), 9 when the scene key must expire instead (''
/// = with the record; an ended code mode attempt keeps its code from being issued
/// again), 10 admin index ('add', 'rem', ''), 11 its entry, 12 the id key's value.
/// Answers -2 when written, -3 when the scene is taken, else the version found (-1: no
/// record).
const CAS_LUA: &str = r"
if v ~= tonumber(ARGV[1]) then return v end
if ARGV[4] ~= '' then
  if not redis.call('SET', KEYS[2], ARGV[4], 'PXAT', ARGV[3], 'NX') then return -3 end
end
redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
if ARGV[9] ~= '' then
  redis.call('PEXPIREAT', KEYS[2], ARGV[9])
end
if ARGV[8] == 'set' then
  redis.call('SET', KEYS[5], ARGV[7], 'PXAT', ARGV[3])
elseif ARGV[8] == 'del' then
  redis.call('DEL', KEYS[5])
end
if ARGV[10] == 'add' then
  redis.call('ZADD', KEYS[3], 0, ARGV[11])
  redis.call('SET', KEYS[4], ARGV[12], 'PXAT', ARGV[3])
elseif ARGV[10] == 'rem' then
  redis.call('ZREM', KEYS[3], ARGV[11])
end
if ARGV[5] ~= '' then
  redis.call(ARGV[5], ARGV[6], ARGV[7])
end
return -2
";

/// A push's read: the record id its scene key names and that record, in one call.
/// KEYS: scene key. ARGV: the record keys' prefix (the record key is the prefix and the
/// id: in a cluster the same slot, the bucket being in both). Answers nil (no such
/// scene) or {id, record or nil}.
const BY_SCENE_LUA: &str = r"
local id = redis.call('GET', KEYS[1])
if not id then return false end
return {id, redis.call('GET', ARGV[1] .. id)}
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
    by_scene: Script,
    channel: String,
    metrics: Metrics,
}

/// Redis did not answer (in time): the caller answers 503 `overloaded`.
fn unavailable(e: redis::RedisError) -> EngineError {
    tracing::warn!(error = %e, "cluster: redis call failed");
    EngineError::Unavailable
}

/// The hash tag of bucket `b`: two hex digits in braces.
pub fn bucket_tag(b: u8) -> String {
    format!("{{{b:02x}}}")
}

impl Records {
    pub fn new(kv: Kv, seal: Seal, metrics: Metrics) -> Self {
        let channel = kv.key(&["wake"]);
        let cas = Script::new(&codec::lua_with_version(CAS_LUA));
        let by_scene = Script::new(BY_SCENE_LUA);
        Self { kv, seal, cas, by_scene, channel, metrics }
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

    /// Where the records of bucket `b` are named: the key is this and the record id.
    fn record_prefix(&self, b: &str) -> String {
        if self.sharded() {
            return self.kv.key(&["a", &format!("{{{b}}}")]);
        }
        self.kv.key(&["a", ""])
    }

    fn key(&self, id: &RecordId) -> String {
        let id = id.as_str();
        format!("{}{id}", self.record_prefix(&id[..2]))
    }

    /// The scene key, in the scene's bucket (a new attempt is made in it, see
    /// [`Scene::bucket`]).
    fn scene_key(&self, app: &str, scene: &Scene) -> String {
        self.kv.key(&["s", &format!("{}{app}", bucket_tag(scene.bucket())), scene.as_str()])
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

    /// `blob` as stored under `id`, opened (`poll`, when the caller knows it, spares the
    /// decryption of the record's own copy); `None` when there is none or it is refused.
    fn open(&self, id: &RecordId, poll: Option<&PollId>, blob: Option<Vec<u8>>) -> Option<Snapshot> {
        let open = |b: Vec<u8>| match poll {
            Some(p) => self.seal.open_for(p, id, &b),
            None => self.seal.open(id, &b),
        };
        match blob.map(open)? {
            Ok(s) => Some(s),
            // Not written by a node of this deployment (or damaged): no state of it is
            // believed, so nobody can mint a login by writing to Redis.
            Err(e) => {
                self.metrics.redis_record_rejected();
                tracing::error!(error = %e, "cluster: attempt record refused; treated as gone");
                None
            }
        }
    }

    /// The stored attempt, ended ones included; `None` when Redis has none (never
    /// existed, or past its deadline).
    pub async fn load(&self, id: &RecordId, poll: Option<&PollId>) -> Result<Option<Snapshot>, EngineError> {
        let mut c = self.kv.conn(Class::Fast);
        let blob: Option<Vec<u8>> =
            redis::cmd("GET").arg(self.key(id)).query_async(&mut c).await.map_err(unavailable)?;
        Ok(self.open(id, poll, blob))
    }

    /// The attempt of (`app`, `scene`): its record id and its record (`None` inside: the
    /// record is gone), one call.
    pub async fn load_by_scene(
        &self,
        app: &str,
        scene: &Scene,
    ) -> Result<Option<(RecordId, Option<Snapshot>)>, EngineError> {
        let mut c = self.kv.conn(Class::Fast);
        let prefix = self.record_prefix(&format!("{:02x}", scene.bucket()));
        let found: Option<(String, Option<Vec<u8>>)> = self
            .by_scene
            .key(self.scene_key(app, scene))
            .arg(prefix)
            .invoke_async(&mut c)
            .await
            .map_err(unavailable)?;
        let Some((id, blob)) = found else { return Ok(None) };
        let Some(id) = RecordId::parse(&id) else { return Ok(None) };
        let snap = self.open(&id, None, blob);
        Ok(Some((id, snap)))
    }

    /// Writes `snap` if the stored version is still `expected` (`None`: a new attempt,
    /// whose scene key and admin index entry, naming `node`, are written too), and
    /// announces it.
    pub async fn cas(&self, expected: Option<u64>, snap: &Snapshot, node: &str) -> Result<Cas, EngineError> {
        let data = self.seal.seal(snap).map_err(|e| {
            tracing::error!(error = %e, "cluster: attempt does not encode");
            EngineError::Unavailable
        })?;
        let expected = expected.map_or(-1, |v| i64::from(version_u32(v)));
        let id = self.id(&snap.poll);
        let record = self.key(&id);
        let keep_until = snap.state.expires_at_ms + GRACE_MS;
        let scene_value = if expected < 0 { id.as_str() } else { "" };
        // The ticket finds its attempt only while the attempt waits for it.
        let (ticket_key, ticket_op) = match &snap.state.ticket {
            Some(t) if snap.state.phase == Phase::Scanned => (self.ticket_key(t), "set"),
            Some(t) => (self.ticket_key(t), "del"),
            None => (record.clone(), ""),
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
        // Listed from its making until it is over (a failure leaves it to the prune).
        let index_op = match (expected < 0, snap.state.phase) {
            (true, _) => "add",
            (false, Phase::Expired) => "rem",
            (false, _) => "",
        };
        let admin = AttemptId::of(&snap.poll);
        let sharded = self.sharded();
        // A cluster's ticket key lives in another slot: written after the script.
        let (script_ticket, script_ticket_op) =
            if sharded { (record.as_str(), "") } else { (ticket_key.as_str(), ticket_op) };
        // Nobody can wait on a new attempt yet (its poll id is not out): no announcement,
        // which would only wake the first poll's waiter for nothing.
        let (publish, channel) = match (expected < 0, sharded) {
            (true, _) => ("", String::new()),
            (false, true) => ("SPUBLISH", bucket_channel(&id.as_str()[..2])),
            (false, false) => ("PUBLISH", self.channel.clone()),
        };
        let mut c = self.kv.conn(Class::Fast);
        let r: i64 = self
            .cas
            .key(&record)
            .key(self.scene_key(&snap.app, &snap.scene))
            .key(index::live_key(&self.kv, admin.bucket()))
            .key(index::id_key(&self.kv, admin))
            .key(script_ticket)
            .arg(expected)
            .arg(data)
            .arg(keep_until)
            .arg(scene_value)
            .arg(publish)
            .arg(channel)
            .arg(id.as_str())
            .arg(script_ticket_op)
            .arg(scene_until)
            .arg(index_op)
            .arg(index::member(snap, &id))
            .arg(format!("{} {node}", id.as_str()))
            .invoke_async(&mut c)
            .await
            .map_err(unavailable)?;
        match r {
            -2 => {}
            -3 => return Ok(Cas::SceneTaken),
            _ => return Ok(Cas::Conflict),
        }
        self.kv.replicated(&record, &c).await.map_err(unavailable)?;
        if sharded && !ticket_op.is_empty() {
            let mut cmd = redis::cmd(if ticket_op == "set" { "SET" } else { "DEL" });
            cmd.arg(&ticket_key);
            if ticket_op == "set" {
                cmd.arg(id.as_str()).arg("PXAT").arg(keep_until);
            }
            cmd.query_async::<()>(&mut c).await.map_err(unavailable)?;
        }
        Ok(Cas::Written)
    }
}
