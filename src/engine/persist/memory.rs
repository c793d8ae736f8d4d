//! A snapshot store in process memory (`storage.snapshots = "memory"`): nothing survives
//! a restart, but the engine's supervision (restart a crashed attempt from its last
//! snapshot) still works, and the engine's paused-clock tests use it because it never
//! waits on I/O. It keeps the same encoded bytes the other stores keep, so what comes
//! back is exactly what a real store would return.

use std::collections::HashMap;
use std::sync::Mutex;

use super::codec::{self, version_u32};
use super::{BoxFuture, Page, Probe, Snapshot, SnapshotStore, StoreError};
use crate::ids::PollId;

#[derive(Default)]
pub struct MemoryStore {
    /// Encoded snapshot and its expiry, by poll id.
    map: Mutex<HashMap<PollId, (Vec<u8>, u64)>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<PollId, (Vec<u8>, u64)>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SnapshotStore for MemoryStore {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn write<'a>(&'a self, batch: &'a [Snapshot]) -> BoxFuture<'a, Result<(), StoreError>> {
        let result = (|| {
            let mut map = self.map();
            for s in batch {
                let bytes = codec::encode(s)?;
                let newer = match map.get(&s.poll) {
                    Some((old, _)) => codec::stored_version(old) < Some(version_u32(s.version())),
                    None => true,
                };
                if newer {
                    map.insert(s.poll.clone(), (bytes, s.state.expires_at_ms));
                }
            }
            Ok(())
        })();
        Box::pin(async move { result })
    }

    fn load_page(&self, cursor: Option<String>) -> BoxFuture<'_, Result<Page, StoreError>> {
        // One page holds everything: the map is in memory already.
        let mut page = Page::default();
        if cursor.is_none() {
            for (poll, (bytes, _)) in self.map().iter() {
                match codec::decode(poll.clone(), bytes) {
                    Ok(s) => page.snapshots.push(s),
                    Err(_) => page.corrupt += 1,
                }
            }
        }
        Box::pin(async move { Ok(page) })
    }

    fn load<'a>(&'a self, poll: &'a PollId) -> BoxFuture<'a, Result<Option<Snapshot>, StoreError>> {
        let found = self.map().get(poll).map(|(b, _)| codec::decode(poll.clone(), b)).transpose();
        Box::pin(async move { Ok(found?) })
    }

    fn probe(&self) -> BoxFuture<'_, Result<Probe, StoreError>> {
        Box::pin(async { Ok(Probe::Intact) })
    }

    fn purge(&self, now_ms: u64) -> BoxFuture<'_, Result<u64, StoreError>> {
        let mut map = self.map();
        let before = map.len();
        map.retain(|_, (_, expires_at_ms)| *expires_at_ms > now_ms);
        let n = (before - map.len()) as u64;
        Box::pin(async move { Ok(n) })
    }
}
