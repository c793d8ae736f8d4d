//! The durable implementations of the engine's snapshot store
//! ([`crate::engine::persist::SnapshotStore`]):
//! - [`sql::SqlStore`]: the `attempt_snapshots` table of the user database
//!   (`storage.snapshots = "sqlite"`, the default);
//! - [`redis::RedisStore`]: one key per attempt expiring with it, plus a scene index
//!   (`storage.snapshots = "redis://host:port/db"`).
//!
//! The snapshot record, the trait and the writing policy are the engine's
//! (`engine::persist`); this room only stores bytes.

pub mod redis;
pub mod sql;

#[cfg(test)]
mod engine_outages;
#[cfg(test)]
mod tests;
