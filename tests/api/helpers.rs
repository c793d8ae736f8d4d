//! `spawn_app()`: the real `Application` on a random port with a fresh SQLite file; a
//! [`TestApp`] is the server's state plus the one test client ([`Api`]), which it
//! dereferences to, so tests read like a front end (or WeChat) talking.

use std::net::TcpListener;

use reqwest::Client;
use scanlogin::config::{self, Settings};
use scanlogin::startup::Application;

use crate::client::Api;

pub struct TestApp {
    /// The client, talking to the server (which plays WeChat too, with its sandbox).
    pub api: Api,
    /// The server's own state, for looking inside (database, metrics).
    pub state: actix_web::web::Data<scanlogin::api::AppState>,
    /// Stops the server gracefully, as SIGTERM would (see [`TestApp::stop`]).
    stop: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    _dir: tempfile::TempDir,
}

/// The default configuration, as shipped, with `tweak` applied.
pub fn settings(tweak: impl FnOnce(&mut Settings)) -> Settings {
    let text = include_str!("../../config/default.toml");
    let mut s = config::load_from_str(text, &Default::default()).expect("default config").settings;
    s.server.workers = 2;
    // Tests make many requests from one address; the abuse tests set the limits they test.
    s.limits.qr_per_ip_per_minute = 100_000;
    s.limits.sms_per_ip_per_day = 100_000;
    s.limits.qr_per_ip_per_day = 100_000;
    s.limits.qr_per_network_per_day = 100_000;
    s.limits.code_failures_per_ip_per_day = 100_000;
    s.limits.bind_per_ip_per_day = 100_000;
    s.limits.connections_per_ip = 100_000;
    tweak(&mut s);
    s
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_on(None, tweak).await
}

/// A fresh, empty PostgreSQL database on the test server (`scripts/services.sh` makes its
/// login), for apps that must share one; left for the server's next sweep of old ones.
pub async fn scratch_postgres() -> String {
    use sqlx::{Connection, Executor};
    let server = std::env::var("SCANLOGIN_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://scanlogin_test:scanlogin_test@127.0.0.1:5432/postgres".into());
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&server).await.expect("test PostgreSQL answers");
    let name =
        format!("scanlogin_test_{}_{}_{:08x}", scanlogin::wall::unix_secs(), std::process::id(), rand::random::<u32>());
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.expect("create database");
    let mut url = url::Url::parse(&server).expect("server URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// An app on `database_url` (`None`: a fresh SQLite file of its own).
pub async fn spawn_app_on(database_url: Option<&str>, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    scanlogin::install_crypto();
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().unwrap().port();
    let mut s = settings(tweak);
    s.server.public_url = format!("http://127.0.0.1:{port}");
    s.storage.database_url =
        database_url.map_or_else(|| format!("sqlite://{}/test.db?mode=rwc", dir.path().display()), str::to_string);
    let app = Application::with_listener(s, listener).await.expect("app builds");
    let state = app.state();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    actix_web::rt::spawn(app.run(async {
        // Only an explicit stop counts; a dropped TestApp leaves the server to the runtime.
        if stopped.await.is_err() {
            std::future::pending::<()>().await;
        }
    }));
    let address = format!("http://127.0.0.1:{port}");
    // As `client::client()`: no read waits longer than a minute.
    let client = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(std::time::Duration::from_secs(10))
        .read_timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap();
    TestApp {
        api: Api::with_client(client, &address, &address),
        state,
        stop: std::sync::Mutex::new(Some(stop)),
        _dir: dir,
    }
}

impl TestApp {
    /// How often this server's sandbox (its "WeChat") served `cgi-bin/<call>` so far.
    pub async fn wechat_calls(&self, call: &str) -> f64 {
        let route = format!("route=\"/_sandbox/cgi-bin/{call}\"");
        crate::client::metric(&self.metrics().await, "scanlogin_http_requests_total", &[&route])
    }

    /// Starts the graceful shutdown (held polls and streams answer, then the server stops).
    pub fn stop(&self) {
        if let Some(tx) = self.stop.lock().unwrap().take() {
            let _ = tx.send(());
        }
    }
}

impl std::ops::Deref for TestApp {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}
