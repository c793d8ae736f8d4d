//! The built `scanlogin` binary as a real process: started with env overrides, killed
//! with SIGKILL or stopped with SIGTERM, restarted on the same port and files; plus a
//! second instance that plays WeChat (its sandbox) so that "WeChat" survives the crash
//! of the server under test, as the real one would. Only process control: the tests talk
//! to the instances with the one test client, [`Api`] (`client.rs`). Shared by the
//! durability and cluster tests (included by path).

#![allow(dead_code)] // each includer uses a different part

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::client::{Api, client, eventually, eventually_showing};

/// Whether `/healthz` answered 200 (see [`Instance::look`]).
type Pending = std::pin::Pin<Box<dyn Future<Output = bool> + Send>>;

#[path = "redis_server.rs"]
pub mod redis_server;
pub use redis_server::{RedisServer, free_port};
#[path = "redis_cluster.rs"]
pub mod redis_cluster;
#[path = "redis_sentinel.rs"]
pub mod redis_sentinel;

const BIN: &str = env!("CARGO_BIN_EXE_scanlogin");

/// One configured instance: its port, files and settings, and the process when running.
pub struct Instance {
    pub port: u16,
    env: Vec<(String, String)>,
    dir: PathBuf,
    name: String,
    child: Option<Child>,
    starts: u32,
    /// Started under this open-file limit (soft and hard, `ulimit -n`), when set.
    nofile: Option<u64>,
}

impl Instance {
    /// The server under test: its own SQLite file in `dir`, snapshots as given, WeChat
    /// played by its own sandbox until [`Instance::use_wechat`].
    pub fn server(dir: &std::path::Path, snapshots: &str, qr_ttl_secs: u64) -> Self {
        let port = free_port();
        let mut env = base_env(port, &format!("http://127.0.0.1:{port}"));
        env.push(("SCANLOGIN__STORAGE__DATABASE_URL".into(), format!("sqlite://{}/server.db?mode=rwc", dir.display())));
        env.push(("SCANLOGIN__STORAGE__SNAPSHOTS".into(), snapshots.into()));
        env.push(("SCANLOGIN__LOGIN__QR_TTL_SECS".into(), qr_ttl_secs.to_string()));
        Self { port, env, dir: dir.to_path_buf(), name: "server".into(), child: None, starts: 0, nofile: None }
    }

    /// WeChat's API is the sandbox of the instance on `port`.
    pub fn use_wechat(&mut self, port: u16) {
        let base = format!("http://127.0.0.1:{port}/_sandbox");
        self.set("SCANLOGIN__WECHAT__APPS__0__API_BASE", &base);
        self.set("SCANLOGIN__WECHAT__APPS__0__MP_BASE", &base);
    }

    /// "WeChat": a sandbox-only instance whose scans are delivered to `server_port`.
    pub fn wechat(dir: &std::path::Path, server_port: u16) -> Self {
        let port = free_port();
        let mut env = base_env(port, &format!("http://127.0.0.1:{server_port}"));
        env.push(("SCANLOGIN__STORAGE__DATABASE_URL".into(), format!("sqlite://{}/wechat.db?mode=rwc", dir.display())));
        env.push(("SCANLOGIN__STORAGE__SNAPSHOTS".into(), "memory".into()));
        Self { port, env, dir: dir.to_path_buf(), name: "wechat".into(), child: None, starts: 0, nofile: None }
    }

    /// A node of its own name on a free port; `env` is added to the base settings.
    pub fn named(dir: &std::path::Path, name: &str, public_url: &str, env: &[(&str, String)]) -> Self {
        let port = free_port();
        let mut i = Self {
            port,
            env: base_env(port, public_url),
            dir: dir.to_path_buf(),
            name: name.into(),
            child: None,
            starts: 0,
            nofile: None,
        };
        for (k, v) in env {
            i.set(k, v);
        }
        i
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn set(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The test client talking to this instance, with WeChat played by `wechat`.
    pub fn api(&self, wechat: &Instance) -> Api {
        Api::at(&self.url(""), &wechat.url(""))
    }

    /// Starts the next runs under the open-file limit `n` (soft and hard, as `ulimit -n`).
    pub fn nofile(&mut self, n: u64) {
        self.nofile = Some(n);
    }

    /// Spawns the process (stderr to `<dir>/<name>-<n>.log`).
    fn spawn(&mut self) {
        assert!(self.child.is_none(), "already running");
        self.starts += 1;
        let log = std::fs::File::create(self.log_path(self.starts)).unwrap();
        let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml");
        let mut cmd = match self.nofile {
            Some(n) => {
                let mut c = Command::new("bash");
                c.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\""), BIN]);
                c
            }
            None => Command::new(BIN),
        };
        let child = cmd
            .args(["--config", config])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", std::env::var("SCANLOGIN_TEST_NODE_LOG").unwrap_or_else(|_| "info".into()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the scanlogin binary starts");
        self.child = Some(child);
    }

    /// Starts a run that must refuse to start: answers its exit code and its log (stderr).
    /// Panics if it answers `/healthz` instead, or is still running after 20 s.
    pub async fn refused(&mut self) -> (Option<i32>, String) {
        self.spawn();
        let what = format!("{} exits", self.name);
        let status = eventually(
            &what,
            Duration::from_secs(20),
            self.look(|exited, up, log| async move {
                assert!(exited.is_some() || !up.await, "started where it must refuse; log:\n{}", log());
                exited
            }),
        )
        .await;
        self.child = None;
        (status.code(), self.log())
    }

    /// A look at the latest run for [`eventually`]: `judge` gets whether it has exited,
    /// whether `/healthz` answers 200 (a future), and a way to read its log.
    fn look<'a, T, F: Future<Output = Option<T>>>(
        &'a mut self,
        judge: impl Fn(Option<ExitStatus>, Pending, Box<dyn FnOnce() -> String + Send>) -> F + 'a,
    ) -> impl FnMut() -> F + 'a {
        let (http, url, log_path) = (client(), self.url("/healthz"), self.log_path(self.starts));
        move || {
            let exited = self.child.as_mut().unwrap().try_wait().unwrap();
            let request = http.get(&url).send();
            let up: Pending = Box::pin(async move { request.await.is_ok_and(|r| r.status() == 200) });
            let log_path = log_path.clone();
            judge(exited, up, Box::new(move || std::fs::read_to_string(log_path).unwrap_or_default()))
        }
    }

    /// Starts the process (stderr to `<dir>/<name>-<n>.log`) and waits until it listens.
    pub async fn start(&mut self) {
        self.spawn();
        let what = format!("{} answers /healthz", self.name);
        let log_path = self.log_path(self.starts);
        let log = move || std::fs::read_to_string(log_path).unwrap_or_default();
        let up = self.look(|exited, up, log| async move {
            if let Some(status) = exited {
                panic!("exited at start ({status}); log:\n{}", log());
            }
            up.await.then_some(())
        });
        eventually_showing(&what, Duration::from_secs(20), up, log).await;
    }

    /// The latest run's log (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path(self.starts)).unwrap_or_default()
    }

    /// Where run `n` (counted from 1) writes its stderr.
    fn log_path(&self, n: u32) -> PathBuf {
        self.dir.join(format!("{}-{n}.log", self.name))
    }

    /// The warnings and errors of every run so far, each line tagged with its run: what
    /// a failure message needs when the cause was logged before a restart.
    pub fn troubles(&self) -> String {
        let mut out = String::new();
        for n in 1..=self.starts {
            let log = std::fs::read_to_string(self.log_path(n)).unwrap_or_default();
            for line in log.lines().filter(|l| l.contains(" WARN ") || l.contains(" ERROR ")) {
                out.push_str(&format!("{}#{n}: {line}\n", self.name));
            }
        }
        out
    }

    /// SIGKILL: no shutdown code runs, exactly like a crash.
    pub fn kill9(&mut self) {
        let mut c = self.child.take().expect("running");
        c.kill().unwrap();
        c.wait().unwrap();
    }

    /// SIGTERM; answers the exit status once the process is gone (at most `within`).
    pub async fn terminate(&mut self, within: Duration) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        let ok = Command::new("kill").args(["-TERM", &c.id().to_string()]).status().unwrap().success();
        assert!(ok);
        let pid = c.id();
        // The exit, awaited on a thread of its own (`wait` blocks until it comes).
        let exited = tokio::task::spawn_blocking(move || c.wait().unwrap());
        match tokio::time::timeout(within, exited).await {
            Ok(status) => status.unwrap(),
            Err(_) => {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
                panic!("{} still running {within:?} after SIGTERM; log:\n{}", self.name, self.log());
            }
        }
    }
}

/// The server under test on its own sandbox (no scans needed), started and ready.
pub async fn server_alone(dir: &std::path::Path, snapshots: &str, qr_ttl_secs: u64) -> (Instance, Api) {
    let mut server = Instance::server(dir, snapshots, qr_ttl_secs);
    server.start().await;
    let api = server.api(&server);
    api.until_ready().await;
    (server, api)
}

/// The server under test and the "WeChat" that delivers its scans, both started.
pub async fn server_and_wechat(dir: &std::path::Path, snapshots: &str, qr_ttl_secs: u64) -> (Instance, Instance, Api) {
    let mut server = Instance::server(dir, snapshots, qr_ttl_secs);
    let mut wechat = Instance::wechat(dir, server.port);
    server.use_wechat(wechat.port);
    wechat.start().await;
    server.start().await;
    let api = server.api(&wechat);
    api.until_ready().await;
    (server, wechat, api)
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn base_env(port: u16, public_url: &str) -> Vec<(String, String)> {
    vec![
        ("SCANLOGIN__SERVER__BIND".into(), format!("127.0.0.1:{port}")),
        ("SCANLOGIN__SERVER__PUBLIC_URL".into(), public_url.into()),
        ("SCANLOGIN__SERVER__WORKERS".into(), "2".into()),
        ("SCANLOGIN__SERVER__SHUTDOWN_GRACE_SECS".into(), "5".into()),
    ]
}
