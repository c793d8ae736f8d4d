//! scanlogin: log in by scanning a WeChat Official Account QR code.
//!
//! # Layout
//! - [`config`]: typed settings from TOML + `SCANLOGIN__SECTION__KEY` overrides (model,
//!   env overrides, validation; secrets that never print).
//! - [`startup`]: `Application`, the one real server that `main` and tests build, in
//!   steps: metrics, database, engine, shared services, login service, HTTP.
//! - [`engine`]: the login engine behind `LoginsHandle` — the pure state machine, the
//!   single-node engine (registry actor, one actor per attempt, snapshots through its
//!   persistence seam `engine::persist`) and the cluster engine (versioned records in
//!   Redis changed by compare-and-set, local view actors woken over pub/sub).
//! - [`login`]: the login flow composed from engine, users, WeChat, SMS and tokens, in
//!   domain results; `login::push`: WeChat pushes — dedup, the budget, what each does.
//! - [`api`]: HTTP handlers of docs/api.md and their answer bodies, the WeChat callback
//!   (open, verify, seal), operations endpoints.
//! - [`wechat`]: WeChat's protocol (signatures, AES message crypto, XML), its API client,
//!   the access-token manager (shared by the nodes of a cluster) and push dedup.
//! - [`pages`]: the demo login page at `/` and the sandbox phone's page, embedded.
//! - [`sandbox`]: a fake WeChat platform mounted at `/_sandbox` for laptops and tests.
//! - [`store`]: the user database (SQLite, PostgreSQL, MySQL), migrations, and the
//!   durable snapshot stores (SQL table, Redis) that implement the engine's seam.
//! - [`kv`]: the one Redis connection factory and key namespace (`sl:`).
//! - [`limits`], [`breaker`]: abuse limits (in process or in Redis); the circuit breaker
//!   of optional Redis calls.
//! - [`sms`], [`token`]: SMS providers and the sandbox outbox; login tokens (HS256 JWT)
//!   and revocations.
//! - [`ids`], [`net`], [`error`], [`metrics`], [`telemetry`]: parsed domain values, client
//!   identity, the API error enum, the metrics catalogue, logging.

pub mod admin;
pub mod api;
pub mod breaker;
pub mod config;
pub mod engine;
pub mod error;
pub mod ids;
pub mod kv;
pub mod limits;
pub mod login;
pub mod metrics;
pub mod net;
pub mod oidc;
pub mod open_files;
pub mod pages;
pub mod sandbox;
pub mod sms;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod token;
pub mod wall;
pub mod wechat;

/// A private `redis-server` per test (shared with the integration tests).
#[cfg(test)]
#[path = "../tests/support/redis_server.rs"]
pub(crate) mod test_redis;

/// reqwest is built without a default TLS crypto provider (lean build): install ring's,
/// once per process, before any HTTP client is built.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
