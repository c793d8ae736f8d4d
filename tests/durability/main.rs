//! Durability through real processes: the built binary is killed with SIGKILL, stopped
//! with SIGTERM, and its Redis paused and emptied, while logins are under way. Each test
//! runs its own server, its own "WeChat" instance, files and (where needed) a private
//! redis-server on free ports.

// Test code: a failed unwrap is how a test fails.
#![allow(clippy::unwrap_used)]

#[path = "../support/client.rs"]
mod client;
mod player;
#[path = "../support/process.rs"]
mod process;

mod chaos;
mod code_mode;
mod outage;
mod push_crash;
mod redis_access;
mod restart;
mod shutdown;
