//! The cluster's index of live attempts, for the admin API: list and find attempts
//! without scanning Redis's keyspace.
//!
//! - `sl:adm:live`: a sorted set, every score 0, members `<deadline ms, 13 digits>:<admin
//!   id>:<record id>`, so they sort by deadline and a page is one `ZRANGEBYLEX` from the
//!   cursor. The node that makes an attempt adds it; the commit that ends it (on any
//!   node) removes it; what a crash left behind is pruned by deadline (the members'
//!   prefix) before each listing.
//! - `sl:adm:id:<admin id>`: the record id and the node that made the attempt, expiring
//!   with the record: how an operator's id finds its attempt.
//!
//! These are separate commands after the transition's own script (not inside it): in a
//! Redis Cluster the index keys live in other hash slots than the attempt's. A node that
//! dies between the two leaves at most an entry that the next prune or an `end` clears.

use crate::engine::EngineError;
use crate::engine::admin::AttemptId;
use crate::engine::persist::Snapshot;
use crate::engine::persist::seal::RecordId;
use crate::kv::{Class, Kv};

use super::record::GRACE_MS;

pub struct Index {
    kv: Kv,
    set: String,
}

fn unavailable(e: redis::RedisError) -> EngineError {
    tracing::warn!(error = %e, "cluster: admin index call failed");
    EngineError::Unavailable
}

/// The index's entry of `snap`, stored under `id`.
fn member(snap: &Snapshot, id: &RecordId) -> String {
    format!("{:013}:{}:{}", snap.state.expires_at_ms, AttemptId::of(&snap.poll), id.as_str())
}

/// The record id an entry names (`None`: not an entry of ours).
pub fn record_of(member: &str) -> Option<RecordId> {
    RecordId::parse(member.rsplit(':').next()?)
}

impl Index {
    pub fn new(kv: Kv) -> Self {
        let set = kv.key(&["adm", "live"]);
        Self { kv, set }
    }

    fn id_key(&self, id: AttemptId) -> String {
        self.kv.key(&["adm", "id", &id.to_string()])
    }

    /// Adds the attempt just made by `node`.
    pub async fn add(&self, snap: &Snapshot, id: &RecordId, node: &str) -> Result<(), EngineError> {
        let mut c = self.kv.conn(Class::Fast);
        redis::pipe()
            .cmd("ZADD")
            .arg(&self.set)
            .arg(0)
            .arg(member(snap, id))
            .ignore()
            .cmd("SET")
            .arg(self.id_key(AttemptId::of(&snap.poll)))
            .arg(format!("{} {node}", id.as_str()))
            .arg("PXAT")
            .arg(snap.state.expires_at_ms + GRACE_MS)
            .ignore()
            .query_async::<()>(&mut c)
            .await
            .map_err(unavailable)
    }

    /// Takes the attempt out of the listing (it ended); its id still finds it while
    /// its record is kept.
    pub async fn remove(&self, snap: &Snapshot, id: &RecordId) -> Result<(), EngineError> {
        let mut c = self.kv.conn(Class::Fast);
        redis::cmd("ZREM").arg(&self.set).arg(member(snap, id)).query_async::<()>(&mut c).await.map_err(unavailable)
    }

    /// Drops the entries of attempts past their deadline (a node that died before it
    /// could end its attempts leaves theirs): run by every node's sweep now and then,
    /// and before each listing.
    pub async fn prune(&self, now_ms: u64) -> Result<(), EngineError> {
        let mut c = self.kv.conn(Class::Fast);
        redis::cmd("ZREMRANGEBYLEX")
            .arg(&self.set)
            .arg("-")
            .arg(format!("({:013}", now_ms.saturating_sub(GRACE_MS)))
            .query_async::<()>(&mut c)
            .await
            .map_err(unavailable)
    }

    /// Up to `n` entries after `after` (an entry, or from the start), once the entries of
    /// attempts past their deadline are pruned.
    pub async fn page(&self, after: Option<&str>, n: usize, now_ms: u64) -> Result<Vec<String>, EngineError> {
        self.prune(now_ms).await?;
        let mut c = self.kv.conn(Class::Fast);
        let members: Vec<String> = redis::cmd("ZRANGEBYLEX")
            .arg(&self.set)
            .arg(after.map_or_else(|| "-".to_string(), |a| format!("({a}")))
            .arg("+")
            .arg("LIMIT")
            .arg(0)
            .arg(n)
            .query_async(&mut c)
            .await
            .map_err(unavailable)?;
        Ok(members)
    }

    /// The record id of the attempt `id`, and the node that made it.
    pub async fn find(&self, id: AttemptId) -> Result<Option<(RecordId, String)>, EngineError> {
        let mut c = self.kv.conn(Class::Fast);
        let v: Option<String> =
            redis::cmd("GET").arg(self.id_key(id)).query_async(&mut c).await.map_err(unavailable)?;
        Ok(v.and_then(|v| {
            let (rec, node) = v.split_once(' ')?;
            Some((RecordId::parse(rec)?, node.to_string()))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::persist::testing::loop_snapshot;

    #[test]
    fn entries_sort_by_deadline_and_name_their_record() {
        let (mut a, mut b) = (loop_snapshot(1_000), loop_snapshot(1_000));
        a.state.expires_at_ms = 9_000;
        b.state.expires_at_ms = 10_000;
        let id = RecordId::parse(&"ab".repeat(16)).unwrap();
        let (ma, mb) = (member(&a, &id), member(&b, &id));
        assert!(ma < mb, "{ma} {mb}");
        assert_eq!(record_of(&ma), Some(id));
        assert!(ma.contains(&AttemptId::of(&a.poll).to_string()));
        assert!(!ma.contains(a.poll.as_str()), "no poll id in the index");
    }
}
