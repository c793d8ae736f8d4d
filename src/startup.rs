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
use crate::config::{Settings, SnapshotBackend};
use crate::engine::persist::memory::MemoryStore;
use crate::engine::persist::seal::Seal;
use crate::engine::persist::{Persister, SnapshotStore, WriterConfig};
use crate::engine::{Clock, EngineConfig, LoginsHandle, Rules};
use crate::kv::Kv;
use crate::limits::Limits;
use crate::login::LoginService;
use crate::metrics::Metrics;
use crate::metrics::labels::LimitKind;
use crate::net::ClientIpPolicy;
use crate::pages;
use crate::sandbox::{self, Sandbox, SandboxState};
use crate::sms::{Outbox, SmsSender};
use crate::store::signing_keys::SigningKeys;
use crate::store::snapshots::redis::RedisStore;
use crate::store::snapshots::sql::SqlStore;
use crate::store::{Db, Users};
use crate::token::keyring::KeyPolicy;
use crate::token::{Keyring, Revocations, TokenIssuer};
use crate::wechat::WechatClient;
use crate::wechat::dedup::Dedup;

mod errors;
pub use errors::{StartError, keyring_error};
use errors::{connect_error, db_reason, listen, one_line, os_reason, read_error, shown_url};

/// The user database, connected: `storage.database_url` named in every failure.
pub async fn connect_database(settings: &Settings) -> Result<Db, StartError> {
    let url = &settings.storage.database_url;
    match Db::connect_with(url, settings.storage.sqlite_synchronous).await {
        Ok(db) => Ok(db),
        // The pool retries a refused connection until its timeout and then says only
        // that: one more attempt of our own tells why.
        Err(sqlx::Error::PoolTimedOut) => {
            use sqlx::Connection as _;
            let direct = url.replacen("mariadb://", "mysql://", 1);
            let cause = match tokio::time::timeout(Duration::from_secs(3), sqlx::AnyConnection::connect(&direct)).await
            {
                Ok(Err(e)) => e,
                Ok(Ok(conn)) => {
                    let _ = conn.close().await;
                    sqlx::Error::PoolTimedOut
                }
                Err(_) => sqlx::Error::PoolTimedOut,
            };
            Err(connect_error(url, &cause))
        }
        Err(e) => Err(connect_error(url, &e)),
    }
}

/// Applies the migrations not yet applied; answers how many ran.
pub async fn migrate_database(settings: &Settings, db: &Db) -> Result<usize, StartError> {
    db.migrate().await.map_err(|e| StartError::Database {
        what: "cannot migrate",
        url: shown_url(&settings.storage.database_url),
        reason: one_line(&db_reason(&e)),
        advice: "the URL's user must be allowed to create and alter tables".into(),
    })
}

pub struct Application {
    port: u16,
    server: Server,
    /// The registry's and the snapshot writer's thread; kept alive as long as the server.
    _engine_thread: Arbiter,
    /// The restore's, the login audit writer's and the SQLite checkpointer's thread.
    _store_thread: Arbiter,
    state: web::Data<AppState>,
    engine: LoginsHandle,
    grace: Duration,
}

/// The login engine and the threads it runs on.
struct EngineParts {
    handle: LoginsHandle,
    engine_thread: Arbiter,
    store_thread: Arbiter,
}

/// What the nodes of a deployment must agree on: push dedup keys, limit counters and
/// revoked tokens — in Redis when it is configured, else in this process (revocations
/// are always in the database too: Redis is only their cache).
struct DeploymentState {
    dedup: Dedup,
    limits: Arc<Limits>,
    revocations: Revocations,
}

/// A snapshot store and, when the snapshots live outside the user database (Redis),
/// that database as the fallback for consumed tokens.
type Stores = (Arc<dyn SnapshotStore>, Option<Arc<dyn SnapshotStore>>);

/// The stores `storage.snapshots` names.
fn snapshot_stores(backend: &SnapshotBackend, db: &Db, kv: Option<&Kv>, seal: Seal) -> Stores {
    match (backend, kv) {
        (SnapshotBackend::Memory, _) => (Arc::new(MemoryStore::new()), None),
        (SnapshotBackend::Redis(_), Some(kv)) => {
            (Arc::new(RedisStore::new(kv, crate::kv::PREFIX, seal)), Some(Arc::new(SqlStore::new(db.clone()))))
        }
        // `kv` is built from the same `redis://` URL, so it is there whenever Redis is named.
        (SnapshotBackend::Redis(_) | SnapshotBackend::Sql, _) => (Arc::new(SqlStore::new(db.clone())), None),
    }
}

/// The Redis of `storage.snapshots`, if one is named (with the CA of
/// `storage.redis_ca_file` for a `rediss://` server, when set).
fn redis_kv(settings: &Settings) -> Result<Option<Kv>, StartError> {
    let Some(url) = settings.storage.snapshots.redis_url() else { return Ok(None) };
    let path = &settings.storage.redis_ca_file;
    let ca = (!path.is_empty()).then(|| std::fs::read(path)).transpose().map_err(|e| {
        StartError::Setting(format!(
            "storage.redis_ca_file: cannot read {path} ({}): set it to a readable PEM file of the CA(s), or empty",
            os_reason(&e)
        ))
    })?;
    let wait = (settings.storage.redis_wait_replicas, settings.storage.redis_wait_ms);
    Kv::with_ca(url, settings.token.secret.expose(), ca)
        .map(|kv| Some(kv.with_wait(wait.0, wait.1)))
        .map_err(|e| StartError::Redis { url: shown_url(url), reason: one_line(&e.to_string()) })
}

/// The metrics registry with every known series created at 0.
fn metrics_for(settings: &Settings) -> Metrics {
    let metrics = Metrics::new();
    let app_names: Vec<&str> = settings.wechat.apps.iter().map(|a| a.name.as_str()).collect();
    metrics.preset(&app_names, settings.sms.provider.name(), settings.storage.snapshots.name());
    metrics.capacity(LimitKind::LiveAttemptsMax, settings.limits.live_attempts_max);
    metrics.capacity(LimitKind::LongPollsMax, settings.limits.long_polls_max);
    metrics.qr_quota_limit(&app_names, settings.limits.qr_per_app_per_day);
    metrics.sms_budget_limit(settings.limits.sms_per_day);
    metrics
}

/// How tokens are signed: the keyring's key of `token.algorithm` (made on first start,
/// re-read from the database in the background), or HS256 with the secret.
async fn token_issuer(settings: &Settings, db: &Db) -> Result<TokenIssuer, StartError> {
    let t = &settings.token;
    let oidc = settings.oidc.enabled;
    let issuer = match (t.algorithm.asymmetric(), oidc) {
        (None, false) => return Ok(TokenIssuer::shared_secret(t)),
        (None, true) => TokenIssuer::shared_secret(t).with_keyring(open_keyring(settings, db).await?),
        (Some(alg), _) => TokenIssuer::with_keys(t, open_keyring(settings, db).await?, alg),
    };
    if let Some(ring) = issuer.keyring() {
        ring.spawn_reloader(ring.reload_every());
    }
    Ok(if oidc { issuer.with_access_issuer(settings.oidc.issuer(&settings.server.public_url)) } else { issuer })
}

/// [`keyring`], its failure named as the start names it.
async fn open_keyring(settings: &Settings, db: &Db) -> Result<Keyring, StartError> {
    keyring(settings, db).await.map_err(|e| keyring_error(settings, e))
}

/// The signing keys the configuration needs (login tokens' and, with the provider on,
/// every client's ID-token algorithm), opened — and made, the first time.
pub async fn keyring(settings: &Settings, db: &Db) -> Result<Keyring, crate::token::keyring::KeyringError> {
    let t = &settings.token;
    let mut algorithms: Vec<_> = t.algorithm.asymmetric().into_iter().collect();
    if settings.oidc.enabled {
        for c in &settings.oidc.clients {
            if !algorithms.contains(&c.id_token_alg) {
                algorithms.push(c.id_token_alg);
            }
        }
    }
    let policy = KeyPolicy { algorithms, publish_secs: t.key_publish_secs, max_token_secs: t.ttl_secs };
    Keyring::open(SigningKeys::new(db.clone()), &t.secret, &t.secret_previous, policy).await
}

/// The user database, migrated.
async fn database(settings: &Settings) -> Result<Db, StartError> {
    let db = connect_database(settings).await?;
    let ran = migrate_database(settings, &db).await?;
    if ran > 0 {
        tracing::info!(migrations = ran, "database migrated");
    }
    Ok(db)
}

/// The engine. Single node: its snapshot writer, its registry, and the restore (started
/// now, so the engine counts as recovering before the server listens). Cluster: the
/// records in Redis and this node's views.
fn build_engine(settings: &Settings, db: &Db, kv: Option<&Kv>, metrics: &Metrics) -> Result<EngineParts, StartError> {
    let l = &settings.limits;
    let rules = Rules {
        code_attempts: l.code_attempts,
        sms_resend_ms: l.sms_resend_secs * 1000,
        sms_per_attempt: l.sms_per_attempt,
    };
    let cfg = EngineConfig { live_attempts_max: l.live_attempts_max, long_polls_max: l.long_polls_max, rules };
    let engine_thread = Arbiter::new();
    let store_thread = Arbiter::new();
    let clock = Clock::new();
    // Attempt records in Redis are sealed with keys of the token secret (every node's).
    let seal = Seal::new(settings.token.secret.expose().as_bytes());
    if let (true, Some(kv)) = (settings.cluster.enabled, kv) {
        let handle =
            LoginsHandle::start_cluster(cfg, kv.clone(), seal, clock, metrics.clone(), Some(&engine_thread.handle()));
        return Ok(EngineParts { handle, engine_thread, store_thread });
    }
    let (primary, fallback) = snapshot_stores(&settings.storage.snapshots, db, kv, seal);
    let writer_cfg = WriterConfig { clock, ..WriterConfig::default() };
    let (persister, writer) = Persister::new(primary, fallback, writer_cfg, metrics.clone());
    // The writer beside the registry and its actors: a transition's snapshot then goes
    // from its actor to the writer and back without two thread switches.
    engine_thread.spawn(writer);
    let handle = LoginsHandle::start(cfg, clock, metrics.clone(), persister, Some(&engine_thread.handle()));
    store_thread.spawn(handle.restore().map(|_| ()));
    Ok(EngineParts { handle, engine_thread, store_thread })
}

/// Dedup, limits and revocations (see [`DeploymentState`]); a `sole` writer of the database keeps
/// the revocations in memory.
async fn build_shared(
    settings: &Settings,
    kv: Option<&Kv>,
    users: &Users,
    metrics: &Metrics,
    sole: bool,
) -> DeploymentState {
    let dedup_ttl = Duration::from_secs(settings.wechat.dedup_ttl_secs);
    let revocations = if sole {
        Revocations::sole_writer(users.clone(), kv.cloned()).await
    } else {
        Revocations::new(users.clone(), kv.cloned())
    };
    let shared = match kv {
        Some(kv) => DeploymentState {
            dedup: Dedup::redis(kv, dedup_ttl),
            limits: Limits::redis(kv, &settings.limits, metrics.clone()),
            revocations,
        },
        None => DeploymentState {
            dedup: Dedup::memory(dedup_ttl),
            limits: Limits::local(&settings.limits, metrics.clone()),
            revocations,
        },
    };
    // Forget idle limiter keys, so churning addresses cannot grow memory without bound.
    let sweeper = Arc::downgrade(&shared.limits);
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            match sweeper.upgrade() {
                Some(l) => l.sweep(),
                None => break,
            }
        }
    });
    shared
}

/// The sockets the server listens on: the API's, and the metrics' and the admin API's
/// when they have their own addresses.
struct Listeners {
    api: TcpListener,
    metrics: Option<TcpListener>,
    admin: Option<TcpListener>,
}

/// The parts mounted only when configured.
struct Mounted {
    sandbox: Option<web::Data<Sandbox>>,
    provider: Option<web::Data<crate::oidc::Provider>>,
    admin: Option<web::Data<crate::admin::Admin>>,
}

/// The HTTP server over `state`: middleware, API, pages and (when on) the sandbox, the
/// provider and the admin API.
fn http_server(
    settings: &Settings,
    listeners: Listeners,
    state: web::Data<AppState>,
    mounted: Mounted,
) -> Result<Server, StartError> {
    let Mounted { sandbox, provider, admin } = mounted;
    let failed = |e: std::io::Error| StartError::Http(os_reason(&e));
    let origins = settings.server.cors_origins.clone();
    let (demo_page, sandbox_on) = (settings.server.demo_page, settings.wechat.sandbox);
    let connections = api::intake::Connections::new(
        settings.limits.connections_per_ip,
        ClientIpPolicy::new(&settings.server.trusted_proxies),
    );
    let provider_on = provider.is_some();
    let confirm_on = settings.wechat.apps.iter().any(|a| a.confirm == crate::config::ConfirmMode::Always);
    let mut server = HttpServer::new(move || {
        let sandbox = sandbox.clone();
        let provider = provider.clone();
        let admin = admin.clone();
        // An explicit allow-list, no wildcard, no credentials: tokens travel in the
        // Authorization header, never in cookies.
        let cors = origins
            .iter()
            .fold(Cors::default(), |c, o| c.allowed_origin(o))
            .allowed_methods(["GET", "POST"])
            .allowed_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .max_age(600);
        App::new()
            .app_data(state.clone())
            .wrap(from_fn(api::intake::guard))
            .wrap(from_fn(api::ops::metrics_port))
            .wrap(from_fn(crate::admin::listener_guard))
            .wrap(from_fn(api::observe))
            .wrap(cors)
            // The sandbox first: its scope is one prefix compare, and its calls (a QR
            // code per login) then skip the patterns of the routes after it.
            .configure(move |c| {
                if let Some(sb) = sandbox {
                    c.app_data(sb);
                    sandbox::configure(c);
                }
            })
            .configure(api::configure)
            .configure(move |c| {
                if let Some(p) = provider {
                    c.app_data(p);
                    crate::oidc::configure(c);
                }
            })
            .configure(move |c| {
                if let Some(a) = admin {
                    c.app_data(a);
                    crate::admin::configure(c);
                }
            })
            .configure(|c| pages::configure(c, demo_page, sandbox_on, provider_on, confirm_on))
            .default_service(api::default_service())
    })
    // Each connection's place in its address's count (`limits.connections_per_ip`).
    .on_connect(move |conn, data| api::intake::on_connect(&connections, conn, data))
    .listen(listeners.api)
    .map_err(failed)?
    // Idle keep-alive connections close after 5 s; a proxy's own idle timeout must be
    // shorter (config/nginx.example.conf: 4 s), or it reuses a connection we are closing.
    .keep_alive(Duration::from_secs(5))
    // Long polls hold connections: allow many more than actix's default 25k/worker.
    .max_connections(100_000)
    // Signals are ours: the shutdown order matters (see the module doc). The HTTP
    // stop (idle keep-alive connections hold it) leaves a second of the grace
    // period for flushing snapshots.
    .disable_signals()
    .shutdown_timeout(settings.server.shutdown_grace_secs.saturating_sub(1).max(1));
    for l in [listeners.metrics, listeners.admin].into_iter().flatten() {
        server = server.listen(l).map_err(failed)?;
    }
    if settings.server.workers > 0 {
        server = server.workers(settings.server.workers);
    }
    Ok(server.run())
}

impl Application {
    /// Binds `server.bind` and builds everything.
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        let listener = listen("server.bind", &settings.server.bind)?;
        Self::with_listener(settings, listener).await
    }

    /// Builds on an already bound listener (tests bind port 0 and set `public_url`), in
    /// steps: the metrics address and the Redis CA file (what fails fast first), the
    /// metrics, database, engine, shared services, the login service, HTTP.
    pub async fn with_listener(settings: Settings, listener: TcpListener) -> Result<Self, StartError> {
        crate::install_crypto();
        let port = listener.local_addr().map_err(|e| StartError::Http(os_reason(&e)))?.port();
        let metrics_bind = &settings.server.metrics_bind;
        let metrics_listener =
            (!metrics_bind.is_empty()).then(|| listen("server.metrics_bind", metrics_bind)).transpose()?;
        let admin_bind = &settings.admin.bind;
        let admin_listener = (!admin_bind.is_empty()).then(|| listen("admin.bind", admin_bind)).transpose()?;
        let kv = redis_kv(&settings)?;
        let metrics = metrics_for(&settings);
        let db = database(&settings).await?;
        let node = settings.cluster.node_name();
        metrics.node(&node);
        tracing::info!(node = %node, cluster = settings.cluster.enabled, store = settings.storage.snapshots.name(), "starting");
        let engine = build_engine(&settings, &db, kv.as_ref(), &metrics)?;
        engine.handle.name_node(&node);
        // Only a single node on its own SQLite file can be sure nobody else writes its
        // database: then the login audit's and the revocations' reads are answered from
        // memory. On PostgreSQL or MySQL another node or a tool may write too (a logout
        // there must hold here), so those are read from the database.
        let sole = !settings.cluster.enabled && db.backend == crate::store::Backend::Sqlite;
        let users = if sole {
            Users::sole_writer(db).await.map_err(|e| read_error(&settings, "cannot read the accounts from", &e))?
        } else {
            Users::new(db)
        };
        // The login audit is written behind the answers, on the thread that outlives the
        // HTTP workers (so shutdown can flush it).
        engine.store_thread.spawn(users.audit_writer());
        // SQLite's log is checkpointed beside the writers, not inside their commits.
        engine.store_thread.spawn(crate::store::wal::checkpointer(users.db().clone(), metrics.clone()));
        let shared = build_shared(&settings, kv.as_ref(), &users, &metrics, sole).await;
        // The nodes of a cluster share one sandbox: its tickets, tokens and outbox.
        let cluster_kv = kv.as_ref().filter(|_| settings.cluster.enabled);
        let outbox = cluster_kv.map_or_else(Outbox::default, |kv| Outbox::Redis(kv.clone()));
        let sms = SmsSender::new(&settings.sms, outbox.clone(), metrics.clone());
        let wechat = Arc::new(WechatClient::new(&settings, metrics.clone(), cluster_kv.map(|kv| (kv, node.as_str()))));
        let tokens = token_issuer(&settings, users.db()).await?;
        let admin = settings.admin.enabled().then(|| {
            web::Data::new(crate::admin::Admin::new(
                &settings,
                crate::admin::AdminParts {
                    engine: engine.handle.clone(),
                    users: users.clone(),
                    revocations: shared.revocations.clone(),
                    metrics: metrics.clone(),
                    node: node.clone(),
                },
            ))
        });
        let oidc_store = settings.oidc.enabled.then(|| crate::store::oidc::OidcStore::new(users.db().clone()));
        let login = LoginService::new(
            &settings,
            engine.handle.clone(),
            users,
            wechat,
            sms,
            metrics.clone(),
            shared.limits,
            shared.revocations,
            shared.dedup,
            tokens,
        );
        let login = Arc::new(match &oidc_store {
            Some(store) => login.with_provider(crate::login::ProviderLink {
                store: store.clone(),
                continue_ttl_secs: settings.oidc.code_ttl_secs,
                continue_base: format!("{}/oidc/continue/", settings.server.public_url.trim_end_matches('/')),
            }),
            None => login,
        });
        let provider = oidc_store
            .map(|store| web::Data::new(crate::oidc::Provider::new(&settings, login.clone(), store, metrics.clone())));
        let sandbox = settings.wechat.sandbox.then(|| {
            let state = cluster_kv.map_or_else(SandboxState::memory, |kv| SandboxState::Redis(kv.clone()));
            web::Data::new(Sandbox::new(&settings, state, outbox))
        });
        let state = web::Data::new(AppState {
            login,
            ip_policy: ClientIpPolicy::new(&settings.server.trusted_proxies),
            origins: api::origin::OriginPolicy::new(&settings.server),
            settings: Arc::new(settings.clone()),
            metrics,
            node: node.clone(),
        });
        let listeners = Listeners { api: listener, metrics: metrics_listener, admin: admin_listener };
        let server = http_server(&settings, listeners, state.clone(), Mounted { sandbox, provider, admin })?;
        Ok(Self {
            port,
            server,
            _engine_thread: engine.engine_thread,
            _store_thread: engine.store_thread,
            state,
            engine: engine.handle,
            grace: Duration::from_secs(settings.server.shutdown_grace_secs),
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
        let Self { server, engine, grace, _engine_thread, _store_thread, state, .. } = self;
        let handle = server.handle();
        let mut server = std::pin::pin!(server);
        tokio::select! {
            r = &mut server => return r,
            _ = stop => {}
        }
        let deadline = tokio::time::Instant::now() + grace;
        tracing::info!(grace_secs = grace.as_secs(), "shutting down: answering held polls");
        engine.close();
        // The stop command is handled by the server future itself: poll both together
        // (awaiting the stop before the server would leave the listener accepting, and
        // every request served, until the grace period ran out and cut them).
        let stopped = async {
            let _ = futures_util::future::join(handle.stop(true), server).await;
        };
        if tokio::time::timeout_at(deadline, stopped).await.is_err() {
            tracing::warn!("requests still running at the end of the grace period");
        }
        if !state.login.users().flush(deadline).await {
            let n = state.login.users().audit_pending();
            tracing::error!(rows = n, "grace period over with login audit rows unwritten");
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
