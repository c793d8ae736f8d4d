//! The engine's persistence seam: what a snapshot of an attempt is, what a store must
//! do with it, and the policy of writing (the [`writer::Persister`]).
//!
//! A [`Snapshot`] is everything an Attempt actor needs to be re-created: poll id, scene,
//! app and the machine's [`AttemptState`] (phase, openid, user, hashed SMS code and its
//! counters, absolute expiry, version). Stores implement [`SnapshotStore`]; the durable
//! ones live in `crate::store::snapshots` (SQL table, Redis), the in-memory one here
//! ([`memory::MemoryStore`]: nothing durable, for `storage.snapshots = "memory"` and the
//! engine's own tests). [`codec`] is the one byte format every store keeps.
//!
//! Every write is versioned: a store keeps the highest version it has seen for an attempt
//! and ignores an older or equal one, so a late or retried write never undoes a newer
//! state. Ended attempts are written too (`live = false`) and kept until their expiry,
//! which is what makes a token's "consumed" mark stick. The engine never talks to a store
//! directly: [`writer::Persister`] batches, retries and reports health.

pub mod codec;
pub mod memory;
pub mod seal;
pub mod writer;

use std::future::Future;
use std::pin::Pin;

use super::state::{AttemptState, Phase};
use crate::ids::{PollId, Scene};

pub use writer::{Health, Persister, Stored, WriterConfig};

/// One attempt as a store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub poll: PollId,
    pub scene: Scene,
    pub app: String,
    pub state: AttemptState,
}

impl Snapshot {
    pub fn version(&self) -> u64 {
        self.state.version
    }

    /// Still a login in progress: not ended and not past its expiry.
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.state.phase != Phase::Expired && self.state.expires_at_ms > now_ms
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("the store did not answer in time")]
    Timeout,
    #[error("{0}")]
    Codec(#[from] codec::CodecError),
}

/// What a health probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The store answers and still holds what we wrote.
    Intact,
    /// The store answers but has lost its contents since we last looked (a Redis
    /// restarted without persistence): every live attempt must be written again.
    Lost,
    /// The store answers and this process had not looked at it before: it holds no
    /// mark of ours yet, so it is new to the service (its first use, or it was emptied
    /// while no node ran, which no node can tell apart or undo). Nothing this process
    /// wrote is missing: a start, not a loss.
    New,
}

/// A page of [`SnapshotStore::load_page`]: snapshots, how many entries could not be
/// decoded, how many were found already expired without a snapshot to return (Redis
/// forgets expired keys by itself), and where to go on (`None`: done).
#[derive(Debug, Default)]
pub struct Page {
    pub snapshots: Vec<Snapshot>,
    pub corrupt: usize,
    pub expired: usize,
    pub next: Option<String>,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A place that keeps snapshots. Implementations are cheap to share (`Arc`) and safe to
/// call concurrently; each call is one round trip (or one transaction) where possible.
pub trait SnapshotStore: Send + Sync + 'static {
    /// Short name for `/readyz`, logs and metric labels: `sqlite`, `redis`, `memory`.
    fn name(&self) -> &'static str;

    /// Writes `batch` (at most one snapshot per poll id) in one round trip; each entry
    /// only replaces an older version of the same attempt.
    fn write<'a>(&'a self, batch: &'a [Snapshot]) -> BoxFuture<'a, Result<(), StoreError>>;

    /// One page of the stored snapshots (ended and expired ones may be included; callers
    /// filter). Start with `None`, go on with `Page::next`.
    fn load_page(&self, cursor: Option<String>) -> BoxFuture<'_, Result<Page, StoreError>>;

    /// The latest snapshot of one attempt, ended ones included.
    fn load<'a>(&'a self, poll: &'a PollId) -> BoxFuture<'a, Result<Option<Snapshot>, StoreError>>;

    /// [`SnapshotStore::load`] of an attempt whose expiry is known: a store keyed by
    /// expiry (SQLite's table) finds the row by its key instead of scanning for the id.
    fn load_at<'a>(
        &'a self,
        poll: &'a PollId,
        expires_at_ms: u64,
    ) -> BoxFuture<'a, Result<Option<Snapshot>, StoreError>> {
        let _ = expires_at_ms;
        self.load(poll)
    }

    /// Answers while the store does; notices a store that lost its data.
    fn probe(&self) -> BoxFuture<'_, Result<Probe, StoreError>>;

    /// Deletes what expired before `now_ms` (a no-op where the store expires by itself).
    fn purge(&self, now_ms: u64) -> BoxFuture<'_, Result<u64, StoreError>>;
}

/// Snapshots shaped like the ones the engine writes, for the stores' tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::engine::state::{Ending, PendingCode, UserRef};

    pub fn loop_snapshot(ttl_ms: u64) -> Snapshot {
        Snapshot {
            poll: PollId::generate(),
            scene: Scene::generate(),
            app: "default".into(),
            state: AttemptState::new(crate::engine::Clock::new().now_ms() + ttl_ms),
        }
    }

    pub fn not_reg_with_code(ttl_ms: u64) -> Snapshot {
        let mut s = loop_snapshot(ttl_ms);
        let st = &mut s.state;
        st.phase = Phase::NotReg;
        st.openid = Some("oJ3x0t5Ue2Vv9Lw7Qp1Rk4Ys6Zn8".into());
        st.sms_sent = 1;
        st.code = Some(PendingCode {
            phone: "13800138000".into(),
            hash: [7; 32],
            sent_at_ms: st.expires_at_ms - ttl_ms,
            expires_at_ms: st.expires_at_ms,
            wrong: 2,
        });
        st.version = 2;
        s
    }

    pub fn reg_snapshot(ttl_ms: u64) -> Snapshot {
        let mut s = loop_snapshot(ttl_ms);
        s.state.phase = Phase::Reg;
        s.state.openid = Some("oAbC".into());
        s.state.user =
            Some(UserRef { id: "3f1e0c52-7d7e-4a53-9f43-5b1f4f0d2a11".into(), phone: Some("13900139000".into()) });
        s.state.version = 1;
        s
    }

    /// `s` ended by handing out its token, one version later.
    pub fn consumed(s: &Snapshot) -> Snapshot {
        let mut c = s.clone();
        c.state.phase = Phase::Expired;
        c.state.ending = Some(Ending::Consumed);
        c.state.code = None;
        c.state.version += 1;
        c
    }
}
