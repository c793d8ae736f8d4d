//! A real Prometheus server for the test: Debian's `prometheus` binary on a free
//! loopback port, scraping the app every second and evaluating `dashboards/alerts.yml`.
//! `scripts/test.sh` installs the package when it is missing.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// The job name the dashboards' `$job` variable is given in the test.
pub const JOB: &str = "scanlogin";

/// Finds a tool on `PATH`, or fails the test saying how to get it.
pub fn tool(name: &str) -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| panic!("`{name}` not found: run scripts/test.sh, or `apt-get install prometheus`"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

pub struct Prometheus {
    child: Child,
    pub base: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (host:port) with `rules` loaded.
    pub async fn start(target: &str, rules: &Path) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: ['{target}']\n",
            rules = rules.display()
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write config");
        let port = free_port();
        let child = Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("prometheus starts");
        let p = Self { child, base: format!("http://127.0.0.1:{port}"), http: reqwest::Client::new(), _dir: dir };
        p.wait_for("prometheus to answer", |p| async move { p.ready().await }).await;
        p
    }

    async fn ready(&self) -> bool {
        let r = self.http.get(format!("{}/-/ready", self.base)).send().await;
        r.is_ok_and(|r| r.status().is_success())
    }

    /// Waits up to 30 s until `check` holds.
    pub async fn wait_for<'a, F, Fut>(&'a self, what: &str, check: F)
    where
        F: Fn(&'a Self) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let holds = || async { check(self).await.then_some(()) };
        crate::client::eventually(what, Duration::from_secs(30), holds).await;
    }

    /// `GET /api/v1/<path>` with `params`; the parsed JSON answer.
    pub async fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let r = self.http.get(format!("{}/api/v1/{path}", self.base)).query(params).send().await.expect("query");
        r.json().await.expect("JSON answer")
    }

    /// An instant query: `Ok(result vector)` or `Err(Prometheus' error)`.
    pub async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let v = self.api("query", &[("query", expr)]).await;
        if v["status"] != "success" {
            return Err(format!("{}: {}", v["errorType"], v["error"]));
        }
        match &v["data"]["result"] {
            Value::Array(a) => Ok(a.clone()),
            other => Ok(vec![other.clone()]), // scalar or string results
        }
    }

    /// Samples of `up` for the job so far (how many scrapes happened).
    pub async fn scrapes(&self) -> usize {
        let q = format!("count_over_time(up{{job=\"{JOB}\"}}[10m])");
        let r = self.query(&q).await.unwrap_or_default();
        r.first().and_then(|s| s["value"][1].as_str()).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    /// Waits until `n` more scrapes have happened.
    pub async fn wait_scrapes(&self, n: usize) {
        let start = self.scrapes().await;
        self.wait_for("scrapes", |p| async move { p.scrapes().await >= start + n }).await;
    }
}
