//! Black-box tests of scanlogin over real HTTP, driven only by docs/api.md: one binary,
//! each test with its own server, database file and sandbox.

// Test code: a failed unwrap is how a test fails.
#![allow(clippy::unwrap_used)]

#[path = "../support/client.rs"]
mod client;
mod helpers;
#[path = "../support/process.rs"]
mod process;

mod abuse;
mod admin;
mod code_mode;
mod confirm;
mod connections;
mod errors;
mod healthy_start;
mod keys;
mod login_flow;
mod oidc;
mod oidc_snippets;
mod openapi;
mod ops;
mod pages;
mod refusals;
mod security;
mod shared_token;
mod slow_clients;
mod sse;
mod start_errors;
mod systemd_unit;
mod wechat_callback;
mod wechat_protocol;
