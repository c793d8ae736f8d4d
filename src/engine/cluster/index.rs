//! The cluster's index of live attempts, for the admin API: list and find attempts
//! without scanning Redis's keyspace.
//!
//! Kept per bucket (the attempt's [`AttemptId::bucket`], which is also its record's), so
//! a Redis Cluster holds an attempt's entries in its record's hash slot and the
//! transition's own script writes them (no command of its own on a login):
//! - `sl:adm:live:{<b>}`: a sorted set, every score 0, members `<deadline ms, 13
//!   digits>:<admin id>:<record id>`, so they sort by deadline. The script that makes an
//!   attempt adds it; the one that ends it (on any node) removes it; what a crash left
//!   behind is pruned by deadline (the members' prefix) before each listing. A listing
//!   merges the 256 sets (an operator's request, not a login's).
//! - `sl:adm:id:{<b>}<admin id>`: the record id and the node that made the attempt,
//!   expiring with the record: how an operator's id finds its attempt (the id names its
//!   bucket).

use crate::engine::EngineError;
use crate::engine::admin::AttemptId;
use crate::engine::persist::Snapshot;
use crate::engine::persist::seal::RecordId;
use crate::kv::{Class, Kv};

use super::record::{BUCKETS, GRACE_MS, bucket_tag};

/// Entries read per bucket per round of a listing: the merged page is exact up to the
/// least last entry of the buckets that had more.
const PER_BUCKET: usize = 16;

pub struct Index {
    kv: Kv,
}

fn unavailable(e: redis::RedisError) -> EngineError {
    tracing::warn!(error = %e, "cluster: admin index call failed");
    EngineError::Unavailable
}

/// The live set of bucket `b`.
pub fn live_key(kv: &Kv, b: u8) -> String {
    kv.key(&["adm", "live", &bucket_tag(b)])
}

/// The key that finds the attempt `id`.
pub fn id_key(kv: &Kv, id: AttemptId) -> String {
    kv.key(&["adm", "id", &format!("{}{id}", bucket_tag(id.bucket()))])
}

/// The index's entry of `snap`, stored under `id`.
pub fn member(snap: &Snapshot, id: &RecordId) -> String {
    format!("{:013}:{}:{}", snap.state.expires_at_ms, AttemptId::of(&snap.poll), id.as_str())
}

/// The record id an entry names (`None`: not an entry of ours).
pub fn record_of(member: &str) -> Option<RecordId> {
    RecordId::parse(member.rsplit(':').next()?)
}

/// The entries after the cursor that are surely the least: all of them when no bucket
/// had more than it answered, else those up to the least last entry of such a bucket
/// (an entry of another bucket past it may not be read yet). Sorted; `true` when more
/// may follow.
fn merge(per_bucket: Vec<Vec<String>>, per: usize, n: usize) -> (Vec<String>, bool) {
    let frontier = per_bucket.iter().filter(|b| b.len() >= per).filter_map(|b| b.last()).min().cloned();
    let mut all: Vec<String> = per_bucket.into_iter().flatten().collect();
    all.sort_unstable();
    if let Some(f) = &frontier {
        all.retain(|m| m <= f);
    }
    let more = frontier.is_some() || all.len() > n;
    all.truncate(n);
    (all, more)
}

impl Index {
    pub fn new(kv: Kv) -> Self {
        Self { kv }
    }

    /// One command per bucket, sent as one pipeline (a cluster sends each to its slot).
    async fn each_bucket<T: redis::FromRedisValue>(
        &self,
        cmd: impl Fn(u8) -> redis::Cmd,
    ) -> Result<Vec<T>, EngineError> {
        let mut p = redis::pipe();
        for b in 0..BUCKETS {
            p.add_command(cmd(b as u8));
        }
        p.query_async(&mut self.kv.conn(Class::Fast)).await.map_err(unavailable)
    }

    /// Drops the entries of attempts past their deadline (a node that died before it
    /// could end its attempts leaves theirs): run by every node's sweep now and then,
    /// and before each listing.
    pub async fn prune(&self, now_ms: u64) -> Result<(), EngineError> {
        let upto = format!("({:013}", now_ms.saturating_sub(GRACE_MS));
        let _: Vec<redis::Value> = self
            .each_bucket(|b| {
                let mut c = redis::cmd("ZREMRANGEBYLEX");
                c.arg(live_key(&self.kv, b)).arg("-").arg(&upto);
                c
            })
            .await?;
        Ok(())
    }

    /// Up to `n` entries after `after` (an entry, or from the start), once the entries of
    /// attempts past their deadline are pruned; `true` when more may follow.
    pub async fn page(&self, after: Option<&str>, n: usize, now_ms: u64) -> Result<(Vec<String>, bool), EngineError> {
        self.prune(now_ms).await?;
        let from = after.map_or_else(|| "-".to_string(), |a| format!("({a}"));
        let per = PER_BUCKET.min(n.max(1));
        let per_bucket: Vec<Vec<String>> = self
            .each_bucket(|b| {
                let mut c = redis::cmd("ZRANGEBYLEX");
                c.arg(live_key(&self.kv, b)).arg(&from).arg("+").arg("LIMIT").arg(0).arg(per);
                c
            })
            .await?;
        Ok(merge(per_bucket, per, n))
    }

    /// The record id of the attempt `id`, and the node that made it.
    pub async fn find(&self, id: AttemptId) -> Result<Option<(RecordId, String)>, EngineError> {
        let mut c = self.kv.conn(Class::Fast);
        let v: Option<String> =
            redis::cmd("GET").arg(id_key(&self.kv, id)).query_async(&mut c).await.map_err(unavailable)?;
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

    #[test]
    fn a_merged_page_stops_where_a_bucket_may_hold_an_unread_entry() {
        let v = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        // Both buckets may hold more: past "c" (bucket 1's last) an unread entry may sort.
        let (page, more) = merge(vec![v(&["a", "d"]), v(&["b", "c"])], 2, 10);
        assert_eq!(page, v(&["a", "b", "c"]));
        assert!(more);
        // Every bucket answered all it had: the page is everything, cut at n.
        let (page, more) = merge(vec![v(&["a"]), v(&["b"])], 2, 10);
        assert_eq!((page, more), (v(&["a", "b"]), false));
        let (page, more) = merge(vec![v(&["a"]), v(&["b"])], 2, 1);
        assert_eq!((page, more), (v(&["a"]), true));
    }
}
