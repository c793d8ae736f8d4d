//! WeChat: the pure protocol (signatures, message crypto, XML) and the API client.
//!
//! `crypto` and `xml` do no I/O and are what the sandbox and the load tool reuse to act
//! as WeChat; `client` is the only part that talks to WeChat's servers.

pub mod callback;
pub mod client;
pub mod crypto;
pub mod dedup;
pub mod token;
pub mod xml;

pub use client::{AppClient, QrImage, QrTicket, WechatClient, WechatError};
