//! scanlogin-load: drives a scanlogin server (with its sandbox) the way browsers and
//! WeChat do, and reports latency per step.
//!
//! # Layout
//! - [`options`]: the command line (target, users, rate, duration, WeChat app keys).
//! - [`report`]: per-step HDR histograms, error kinds, the text and JSON report.
//! - [`api`]: one timed call per endpoint of the service and its sandbox.
//! - [`wechat`]: plays WeChat: signs (and for a safe-mode app encrypts) pushes and posts
//!   them straight to `/wechat/{appid}/callback`.
//! - [`limits`]: a 429/503 names the server limit and the setting that lifts it; the
//!   tool backs off for `Retry-After` instead of spinning.
//! - [`driver`]: pacing (`--rate`), the deadline, the progress line, merging reports.
//! - [`scenarios`]: `login`, `poll-storm`, `hold`, `callbacks`.
//! - [`baseline`]: the designs the benchmarks compare against (the seed's Redis keys; a
//!   lean in-process map with a timer wheel) and the memory-per-attempt measurement.

pub mod api;
pub mod baseline;
pub mod driver;
pub mod limits;
pub mod options;
pub mod report;
pub mod scenarios;
pub mod wechat;

pub use api::Progress;
pub use driver::{run, run_counted};
pub use options::{Options, Scenario};
pub use report::Report;
