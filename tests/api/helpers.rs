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
    s.limits.bind_per_ip_per_day = 100_000;
    s.limits.connections_per_ip = 100_000;
    tweak(&mut s);
    s
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    scanlogin::install_crypto();
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().unwrap().port();
    let mut s = settings(tweak);
    s.server.public_url = format!("http://127.0.0.1:{port}");
    s.storage.database_url = format!("sqlite://{}/test.db?mode=rwc", dir.path().display());
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
    let client = Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    TestApp {
        api: Api::with_client(client, &address, &address),
        state,
        stop: std::sync::Mutex::new(Some(stop)),
        _dir: dir,
    }
}

impl TestApp {
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
