//! Many nodes through real processes: three `scanlogin` nodes in cluster mode on one
//! private Redis and one fresh PostgreSQL database, behind Debian's nginx running the
//! shipped `config/nginx.example.conf`. Requests of one login hop from node to node;
//! nodes are killed, restarted in turn under load, and Redis is frozen.

// Test code: a failed unwrap is how a test fails.
#![allow(clippy::unwrap_used)]

#[path = "../support/client.rs"]
mod client;
#[path = "../support/process.rs"]
mod process;

mod harness;

mod admin;
mod code_mode;
mod commands;
mod confirm;
mod cross_node;
mod failover;
mod faults;
mod oidc;
mod redis_cluster;
mod rolling;
mod sentinel;
mod shared;
