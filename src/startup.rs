//! `Application`: builds the one real server from `Settings` (database, snapshot store,
//! engine, WeChat client, SMS, sandbox, HTTP). `main` and the tests both go through here,
//! so tests run exactly what production runs, on a port of their choosing.
//!
//! Start: the server listens at once while the engine restores the attempts of the
//! snapshot store in the background (`/readyz` says `recovering` until done).
//! Stop (SIGTERM/SIGINT, or the future given to [`Application::run`]), in order: held
//! long polls answer with the current state, the server stops accepting and finishes
//! the requests in flight, pending snapshots are flushed; all within
//! `server.shutdown_grace_secs`.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix::Arbiter;
use actix_cors::Cors;
use actix_web::dev::Server;
use actix_web::http::header;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use futures_util::FutureExt;

use crate::api::{self, AppState};
use crate::config::Settings;
use crate::engine::{Clock, EngineConfig, LoginsHandle, Rules};
use crate::limits::Limits;
use crate::login::LoginService;
use crate::metrics::Metrics;
use crate::net::ClientIpPolicy;
use crate::pages;
use crate::sandbox::{self, Sandbox};
use crate::sms::{Outbox, SmsSender};
use crate::store::snapshots::memory::MemoryStore;
use crate::store::snapshots::redis::RedisStore;
use crate::store::snapshots::sql::SqlStore;
use crate::store::snapshots::{Persister, SnapshotStore, StoreError, WriterConfig};
use crate::store::{Db, Users};
use crate::token::Revocations;
use crate::wechat::WechatClient;
use crate::wechat::dedup::Dedup;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("snapshot store: {0}")]
    Snapshots(#[from] StoreError),
}

/// The key prefix of everything scanlogin keeps in Redis.
pub const REDIS_PREFIX: &str = "sl:";

pub struct Application {
    port: u16,
    server: Server,
    /// The registry's own thread; kept alive as long as the server.
    _engine_thread: Arbiter,
    /// The snapshot writer's and the restore's thread.
    _store_thread: Arbiter,
    state: web::Data<AppState>,
    engine: LoginsHandle,
    grace: Duration,
}

/// A snapshot store and, when the snapshots live outside the user database (Redis), that
/// database as the fallback for consumed tokens.
type Stores = (Arc<dyn SnapshotStore>, Option<Arc<dyn SnapshotStore>>);

/// The stores `storage.snapshots` names.
fn snapshot_stores(spec: &str, db: &Db) -> Result<Stores, StoreError> {
    Ok(match spec {
        "memory" => (Arc::new(MemoryStore::new()), None),
        url if url.starts_with("redis://") => {
            (Arc::new(RedisStore::new(url, REDIS_PREFIX)?), Some(Arc::new(SqlStore::new(db.clone()))))
        }
        _ => (Arc::new(SqlStore::new(db.clone())), None),
    })
}

impl Application {
    /// Binds `server.bind` and builds everything.
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        let listener = TcpListener::bind(&settings.server.bind)?;
        Self::with_listener(settings, listener).await
    }

    /// Builds on an already bound listener (tests bind port 0 and set `public_url`).
    pub async fn with_listener(settings: Settings, listener: TcpListener) -> Result<Self, StartError> {
        crate::install_crypto();
        let port = listener.local_addr()?.port();
        let metrics = Metrics::new();
        let app_names: Vec<&str> = settings.wechat.apps.iter().map(|a| a.name.as_str()).collect();
        let store_kind = if settings.storage.snapshots.starts_with("redis://") {
            "redis"
        } else {
            settings.storage.snapshots.as_str()
        };
        metrics.preset(&app_names, &settings.sms.provider, store_kind);
        metrics.capacity("live_attempts_max", settings.limits.live_attempts_max);
        metrics.capacity("long_polls_max", settings.limits.long_polls_max);
        metrics.qr_quota_limit(&app_names, settings.limits.qr_per_app_per_day);
        let db = Db::connect(&settings.storage.database_url).await?;
        let ran = db.migrate().await?;
        if ran > 0 {
            tracing::info!(migrations = ran, "database migrated");
        }
        let (primary, fallback) = snapshot_stores(&settings.storage.snapshots, &db)?;
        let (persister, writer) = Persister::new(primary, fallback, WriterConfig::default(), metrics.clone());
        let store_thread = Arbiter::new();
        store_thread.spawn(writer);
        let users = Users::new(db);
        let engine_thread = Arbiter::new();
        let rules = Rules {
            code_attempts: settings.limits.code_attempts,
            sms_resend_ms: settings.limits.sms_resend_secs * 1000,
            sms_per_attempt: settings.limits.sms_per_attempt,
        };
        let engine_cfg = EngineConfig {
            live_attempts_max: settings.limits.live_attempts_max,
            long_polls_max: settings.limits.long_polls_max,
            rules,
        };
        let engine =
            LoginsHandle::start(engine_cfg, Clock::new(), metrics.clone(), persister, Some(&engine_thread.handle()));
        // Marks the engine recovering now, before the server listens.
        store_thread.spawn(engine.restore().map(|_| ()));
        let outbox = Outbox::default();
        let sms = SmsSender::new(&settings.sms, outbox.clone(), metrics.clone());
        let wechat = Arc::new(WechatClient::new(&settings, metrics.clone()));
        // Redis, when configured, holds everything several nodes must agree on:
        // push dedup keys, limit counters and revoked tokens.
        let dedup_ttl = std::time::Duration::from_secs(settings.wechat.dedup_ttl_secs);
        let local = || {
            (
                Dedup::memory(dedup_ttl),
                Limits::local(&settings.limits, metrics.clone()),
                Revocations::new(users.clone(), None),
            )
        };
        let (dedup, limits, revocations) = if settings.storage.snapshots.starts_with("redis://") {
            let url = &settings.storage.snapshots;
            let shared = async {
                let cfg = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(std::time::Duration::from_secs(2)))
                    .set_response_timeout(Some(std::time::Duration::from_secs(1)));
                let conn =
                    redis::aio::ConnectionManager::new_with_config(redis::Client::open(url.as_str())?, cfg).await?;
                Ok::<_, redis::RedisError>((
                    Dedup::redis(url, dedup_ttl).await?,
                    Limits::redis(url, &settings.limits, metrics.clone()).await?,
                    Revocations::new(users.clone(), Some(conn)),
                ))
            };
            match shared.await {
                Ok(parts) => parts,
                // The service must start while Redis is down (snapshots wait for it). Until
                // the next start, dedup, limits and revocations then stay on this node.
                Err(e) => {
                    tracing::warn!(error = %e, "redis unreachable at start: dedup, limits and revocations are node-local until restart");
                    local()
                }
            }
        } else {
            local()
        };
        // Forget idle limiter keys, so churning addresses cannot grow memory without bound.
        let sweeper = Arc::downgrade(&limits);
        actix_web::rt::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tick.tick().await;
                match sweeper.upgrade() {
                    Some(l) => l.sweep(),
                    None => break,
                }
            }
        });
        let login = Arc::new(LoginService::new(
            &settings,
            engine.clone(),
            users,
            wechat,
            sms,
            metrics.clone(),
            limits,
            revocations,
        ));
        let sandbox = settings.wechat.sandbox.then(|| web::Data::new(Sandbox::new(&settings, outbox)));
        let state = web::Data::new(AppState {
            login,
            ip_policy: ClientIpPolicy::new(&settings.server.trusted_proxies),
            origins: api::origin::OriginPolicy::new(&settings.server),
            dedup,
            settings: Arc::new(settings.clone()),
            metrics,
        });
        let app_state = state.clone();
        let origins = settings.server.cors_origins.clone();
        let (demo_page, sandbox_on) = (settings.server.demo_page, settings.wechat.sandbox);
        let mut server = HttpServer::new(move || {
            let sandbox = sandbox.clone();
            // An explicit allow-list, no wildcard, no credentials: tokens travel in the
            // Authorization header, never in cookies.
            let cors = origins
                .iter()
                .fold(Cors::default(), |c, o| c.allowed_origin(o))
                .allowed_methods(["GET", "POST"])
                .allowed_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
                .max_age(600);
            App::new()
                .app_data(app_state.clone())
                .wrap(from_fn(api::ops::metrics_port))
                .wrap(from_fn(api::observe))
                .wrap(cors)
                .configure(api::configure)
                .configure(|c| pages::configure(c, demo_page, sandbox_on))
                .configure(move |c| {
                    if let Some(sb) = sandbox {
                        c.app_data(sb);
                        sandbox::configure(c);
                    }
                })
                .default_service(api::default_service())
        })
        .listen(listener)?
        // Long polls hold connections: allow many more than actix's default 25k/worker.
        .max_connections(100_000)
        // Signals are ours: the shutdown order matters (see the module doc). The HTTP
        // stop (idle keep-alive connections hold it) leaves a second of the grace
        // period for flushing snapshots.
        .disable_signals()
        .shutdown_timeout(settings.server.shutdown_grace_secs.saturating_sub(1).max(1));
        if !settings.server.metrics_bind.is_empty() {
            server = server.listen(TcpListener::bind(&settings.server.metrics_bind)?)?;
        }
        if settings.server.workers > 0 {
            server = server.workers(settings.server.workers);
        }
        let grace = Duration::from_secs(settings.server.shutdown_grace_secs);
        Ok(Self {
            port,
            server: server.run(),
            _engine_thread: engine_thread,
            _store_thread: store_thread,
            state,
            engine,
            grace,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The shared state (tests use it to look inside).
    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until SIGTERM or SIGINT, then shuts down in order (see the module doc).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run(shutdown_signal()).await
    }

    /// Serves until `stop` resolves, then shuts down in order. An error means the grace
    /// period ended with snapshots still unwritten.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) -> std::io::Result<()> {
        let Self { server, engine, grace, _engine_thread, _store_thread, .. } = self;
        let handle = server.handle();
        let mut server = std::pin::pin!(server);
        tokio::select! {
            r = &mut server => return r,
            _ = stop => {}
        }
        let deadline = tokio::time::Instant::now() + grace;
        tracing::info!(grace_secs = grace.as_secs(), "shutting down: answering held polls");
        engine.close();
        let stopped = async {
            handle.stop(true).await;
            let _ = server.await;
        };
        if tokio::time::timeout_at(deadline, stopped).await.is_err() {
            tracing::warn!("requests still running at the end of the grace period");
        }
        if engine.flush(deadline).await {
            tracing::info!("snapshots flushed; bye");
            Ok(())
        } else {
            let h = engine.store_health();
            tracing::error!(store = h.store, pending = h.pending, "grace period over with snapshots unwritten");
            Err(std::io::Error::other(format!("{} snapshot(s) not written to {}", h.pending, h.store)))
        }
    }
}

/// SIGTERM (what orchestrators send) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
