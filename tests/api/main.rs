//! Black-box tests of scanlogin over real HTTP, driven only by API.md: one binary,
//! each test with its own server, database file and sandbox.

mod helpers;

mod abuse;
mod errors;
mod login_flow;
mod openapi;
mod ops;
mod pages;
mod sse;
mod wechat_callback;
mod wechat_protocol;
