//! Three real `scanlogin` nodes in cluster mode on one private `redis-server` and one
//! fresh PostgreSQL database, behind Debian's nginx running `config/nginx.example.conf`
//! (only its `# test:` lines rewritten). Everything on 127.0.0.1, free ports, one temp
//! dir per cluster; dropped in order (nginx, nodes, Redis, then the database).

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::Client;

use crate::client::{Api, client, eventually_showing, metric};
use crate::process::redis_cluster::RedisCluster;
use crate::process::redis_sentinel::RedisSentinel;
use crate::process::{Instance, RedisServer, free_port};

pub const APP: &str = "wxsandbox0000000001";
const WECHAT_TOKEN: &str = "sandbox-token";
const PG_SERVER: &str = "postgres://scanlogin_test:scanlogin_test@127.0.0.1:5432";
const NGINX_EXAMPLE: &str = include_str!("../../config/nginx.example.conf");

/// Per-test settings on top of the common ones (`SCANLOGIN__…` keys).
pub type Overrides<'a> = &'a [(&'a str, &'a str)];

/// Which Redis holds the cluster's truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truth {
    Single,
    RedisCluster,
    Sentinel,
}

pub struct Cluster {
    pub nginx: Nginx,
    /// WeChat outside the cluster (its own process and memory), when asked for; else the
    /// nodes' own sandbox, through nginx.
    wechat: Option<Instance>,
    pub nodes: Vec<Instance>,
    pub redis: RedisServer,
    /// The Redis Cluster holding the truth instead of `redis`, when asked for.
    pub redis_cluster: Option<RedisCluster>,
    /// The Sentinel-watched primary and replica holding the truth, when asked for.
    pub redis_sentinel: Option<RedisSentinel>,
    pub http: Client,
    db: Option<String>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Redis, a database, three nodes (started one after the other: the first runs the
    /// migrations), nginx in front; returns once every node and nginx answer `/readyz`.
    /// WeChat is the nodes' own sandbox (its state in the cluster's Redis).
    pub async fn start(extra: Overrides<'_>) -> Self {
        Self::start_with(extra, false, Truth::Single).await
    }

    /// As [`Cluster::start`], on `truth`: a walk written once runs on each topology.
    pub async fn start_on(truth: Truth, extra: Overrides<'_>) -> Self {
        Self::start_with(extra, false, truth).await
    }

    /// As [`Cluster::start`], the nodes on a 6-node Redis Cluster (`redis+cluster://`).
    pub async fn start_on_redis_cluster(extra: Overrides<'_>) -> Self {
        Self::start_with(extra, false, Truth::RedisCluster).await
    }

    /// As [`Cluster::start`], the nodes on the primary Redis Sentinel names
    /// (`redis+sentinel://`).
    pub async fn start_on_sentinel(extra: Overrides<'_>) -> Self {
        Self::start_with(extra, false, Truth::Sentinel).await
    }

    /// As [`Cluster::start`], with WeChat played by a sandbox process of its own, as the
    /// real one is: up while the cluster's Redis is not.
    pub async fn start_with_outside_wechat(extra: Overrides<'_>) -> Self {
        Self::start_with(extra, true, Truth::Single).await
    }

    async fn start_with(extra: Overrides<'_>, outside_wechat: bool, truth: Truth) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("scanlogin-cluster-")
            .disable_cleanup(std::env::var_os("KEEP_CLUSTER_LOGS").is_some())
            .tempdir()
            .unwrap();
        let redis = RedisServer::start();
        let redis_cluster = (truth == Truth::RedisCluster).then(RedisCluster::start);
        let redis_sentinel = (truth == Truth::Sentinel).then(RedisSentinel::start);
        let truth = match (&redis_cluster, &redis_sentinel) {
            (Some(c), _) => c.url(),
            (_, Some(s)) => s.url(),
            _ => redis.url(),
        };
        let db = create_database().await;
        let nginx_port = free_port();
        let public = format!("http://127.0.0.1:{nginx_port}");
        let wechat = match outside_wechat {
            true => {
                let mut w = Instance::wechat(dir.path(), nginx_port);
                w.start().await;
                Some(w)
            }
            false => None,
        };
        let wechat_base = wechat.as_ref().map_or_else(|| public.clone(), |w| w.url(""));
        let mut env: Vec<(&str, String)> = vec![
            ("SCANLOGIN__CLUSTER__ENABLED", "true".into()),
            ("SCANLOGIN__STORAGE__SNAPSHOTS", truth),
            ("SCANLOGIN__STORAGE__DATABASE_URL", format!("{PG_SERVER}/{db}")),
            ("SCANLOGIN__SERVER__TRUSTED_PROXIES", r#"["127.0.0.1/32"]"#.into()),
            // Behind a proxy the sandbox counts as public (the proxy brings other hosts'
            // requests): meant here, and then the token secret must be a real one.
            ("SCANLOGIN__WECHAT__SANDBOX_PUBLIC", "true".into()),
            ("SCANLOGIN__TOKEN__SECRET", "cluster-test-secret-of-at-least-32-bytes".into()),
            // WeChat's API: the nodes' own sandbox reached through nginx, or the outside one.
            ("SCANLOGIN__WECHAT__APPS__0__API_BASE", format!("{wechat_base}/_sandbox")),
            ("SCANLOGIN__WECHAT__APPS__0__MP_BASE", format!("{wechat_base}/_sandbox")),
            ("SCANLOGIN__LOGIN__QR_TTL_SECS", "120".into()),
            ("SCANLOGIN__LOGIN__LONG_POLL_MAX_SECS", "20".into()),
            // One test host is every client: per-address caps would stop the volume.
            ("SCANLOGIN__LIMITS__QR_PER_IP_PER_MINUTE", "100000".into()),
            ("SCANLOGIN__LIMITS__QR_PER_IP_PER_DAY", "1000000".into()),
            ("SCANLOGIN__LIMITS__QR_PER_NETWORK_PER_DAY", "1000000".into()),
            ("SCANLOGIN__LIMITS__CODE_FAILURES_PER_IP_PER_DAY", "1000000".into()),
            ("SCANLOGIN__LIMITS__BIND_PER_IP_PER_DAY", "1000000".into()),
            ("SCANLOGIN__LIMITS__SMS_PER_IP_PER_DAY", "100000".into()),
            ("SCANLOGIN__LIMITS__SMS_PER_PHONE_PER_DAY", "1000".into()),
            ("SCANLOGIN__LIMITS__LONG_POLLS_PER_IP", "10000".into()),
        ];
        for (k, v) in extra {
            env.retain(|(key, _)| key != k);
            env.push((k, v.to_string()));
        }
        let mut nodes = Vec::new();
        for i in 1..=3 {
            let mut node_env = env.clone();
            node_env.push(("SCANLOGIN__CLUSTER__NODE_ID", format!("node{i}")));
            let mut node = Instance::named(dir.path(), &format!("node{i}"), &public, &node_env);
            node.start().await;
            nodes.push(node);
        }
        let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
        let nginx = Nginx::start(dir.path(), nginx_port, &ports);
        let listens = || async { tokio::net::TcpStream::connect(("127.0.0.1", nginx_port)).await.ok().map(drop) };
        eventually_showing("nginx listens", Duration::from_secs(10), listens, || nginx.log()).await;
        let c = Self {
            nginx,
            wechat,
            nodes,
            redis,
            redis_cluster,
            redis_sentinel,
            http: client(),
            db: Some(db),
            _dir: dir,
        };
        for i in 0..3 {
            c.until_ready(i).await;
        }
        c
    }

    /// The cluster's SQL database (for the command line's `keys` commands).
    pub fn database_url(&self) -> String {
        format!("{PG_SERVER}/{}", self.db.as_deref().expect("a database"))
    }

    /// Base URL of node `i` (0-based), straight, not through nginx.
    pub fn node(&self, i: usize) -> String {
        self.nodes[i % 3].url("")
    }

    /// Base URL of WeChat's sandbox (tickets, the phone's scan).
    pub fn wechat(&self) -> String {
        self.wechat.as_ref().map_or_else(|| self.nginx.url(), |w| w.url(""))
    }

    /// The test client talking to node `i`.
    pub fn api(&self, i: usize) -> Api {
        Api::with_client(self.http.clone(), &self.node(i), &self.wechat())
    }

    /// A test client of its own (its own connections) talking to nginx.
    pub fn front(&self) -> Api {
        Api::at(&self.nginx.url(), &self.wechat())
    }

    pub async fn until_ready(&self, i: usize) {
        let ready = || async {
            let r = self.http.get(format!("{}/readyz", self.node(i))).send().await;
            r.is_ok_and(|r| r.status() == 200).then_some(())
        };
        let what = format!("node{} ready", i + 1);
        eventually_showing(&what, Duration::from_secs(20), ready, || self.nodes[i].log()).await;
    }

    /// The scene WeChat knows for `ticket` (what a scan of the QR code carries).
    pub async fn scene(&self, ticket: &str) -> String {
        Api::with_client(self.http.clone(), &self.nginx.url(), &self.wechat()).scene_of(ticket).await
    }

    /// Posts a signed scan push (as WeChat does) straight to node `i`'s callback; answers
    /// the HTTP status and the passive reply's text.
    pub async fn push_to(&self, i: usize, push: &scanlogin::sandbox::SignedPush) -> (u16, String) {
        self.try_push_to(i, push).await.unwrap()
    }

    /// [`Cluster::push_to`] that answers a transport error instead of failing the test
    /// (traffic through a failover assumes nothing of any answer).
    pub async fn try_push_to(
        &self,
        i: usize,
        push: &scanlogin::sandbox::SignedPush,
    ) -> Result<(u16, String), reqwest::Error> {
        let r = self
            .http
            .post(format!("{}/wechat/{APP}/callback", self.node(i)))
            .query(&push.params)
            .header("content-type", "text/xml")
            .body(push.body.clone())
            .send()
            .await?;
        Ok((r.status().as_u16(), r.text().await?))
    }

    /// A scan push by `openid`: `subscribe` for a new follower, `SCAN` for one.
    pub fn scan_push(openid: &str, scene: &str, following: bool) -> scanlogin::sandbox::SignedPush {
        scanlogin_load::wechat::Wechat::new(APP, WECHAT_TOKEN, "").unwrap().scan(openid, scene, following)
    }

    /// A text message `content` sent by `openid` to the account (code mode).
    pub fn text_push(openid: &str, content: &str) -> scanlogin::sandbox::SignedPush {
        let msg_id = rand::random_range(1u64..1 << 62);
        scanlogin_load::wechat::Wechat::new(APP, WECHAT_TOKEN, "").unwrap().text(openid, content, msg_id)
    }

    /// A metric summed over every series of `name` (optionally only lines containing
    /// `filter`) on every running node.
    pub async fn metric_sum(&self, name: &str, filter: &str) -> f64 {
        let mut sum = 0.0;
        for (i, n) in self.nodes.iter().enumerate() {
            if !n.is_running() {
                continue;
            }
            let text = self.http.get(format!("{}/metrics", self.node(i))).send().await.unwrap().text().await.unwrap();
            sum += metric(&text, name, &[filter]);
        }
        sum
    }
}

/// Every token handed out in a test: a second sighting of one is a failure.
#[derive(Default)]
pub struct Tokens(std::sync::Mutex<HashSet<String>>);

impl Tokens {
    pub fn record(&self, token: &str) {
        assert!(self.0.lock().unwrap().insert(token.to_string()), "a token was handed out twice");
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// After its token was handed out, the attempt answers `expired` (no token) on every node.
pub async fn assert_spent(c: &Cluster, uuid: &str) {
    for i in 0..3 {
        if !c.nodes[i].is_running() {
            continue;
        }
        let (status, body) = c.api(i).status(uuid).await;
        assert_eq!((status, body["state"].as_str()), (200, Some("expired")), "node{}: {body}", i + 1);
        assert!(body.get("token").is_none(), "{body}");
    }
}

impl Cluster {
    /// Every node's warnings and errors over all its runs (for failure messages).
    pub fn troubles(&self) -> String {
        self.nodes.iter().map(Instance::troubles).collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.nginx.stop();
        self.nodes.clear(); // SIGKILLs the nodes still running
        if let Some(db) = self.db.take() {
            // Dropping happens outside the test's runtime: a thread with its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(drop_database(&db));
            })
            .join();
        }
    }
}

async fn admin() -> sqlx::PgConnection {
    use sqlx::Connection;
    let url = std::env::var("SCANLOGIN_TEST_POSTGRES").unwrap_or_else(|_| format!("{PG_SERVER}/postgres"));
    match tokio::time::timeout(Duration::from_secs(10), sqlx::PgConnection::connect(&url)).await {
        Ok(Ok(c)) => c,
        other => panic!(
            "PostgreSQL on 127.0.0.1:5432 does not answer ({:?}); run scripts/services.sh",
            other.map(|r| r.err())
        ),
    }
}

/// A fresh database named like `src/store/testdb.rs` names its scratch databases, so
/// the unit tests' sweep drops it if a crashed run leaves it behind.
async fn create_database() -> String {
    use sqlx::Executor;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let name = format!("scanlogin_test_{now}_{}_{:08x}", std::process::id(), rand::random::<u32>());
    let mut conn = admin().await;
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.expect("create the test database");
    name
}

async fn drop_database(name: &str) {
    use sqlx::Executor;
    let mut conn = admin().await;
    let _ = conn.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).await;
}

/// Debian's nginx as a child process (no daemon, no master), on the example config.
pub struct Nginx {
    pub port: u16,
    child: Option<Child>,
    dir: std::path::PathBuf,
}

/// The example config with its `# test:` lines pointed at this run's ports and files.
/// Every marked line must be found, so the example and the test cannot drift apart.
pub fn render_nginx_conf(dir: &std::path::Path, port: u16, nodes: &[u16]) -> String {
    let d = dir.display();
    let mut node_ports = nodes.iter();
    let mut seen = std::collections::BTreeMap::<&str, usize>::new();
    let mut out = String::new();
    for line in NGINX_EXAMPLE.lines() {
        let Some((code, tag)) = line.split_once("# test: ") else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let indent = &code[..code.len() - code.trim_start().len()];
        let tag = tag.trim();
        *seen
            .entry(match tag {
                "pid" | "error_log" | "temp" | "node" | "listen" => tag,
                other => panic!("unknown `# test: {other}` in nginx.example.conf"),
            })
            .or_default() += 1;
        let new = match tag {
            "pid" => format!("pid {d}/nginx.pid;"),
            "error_log" => format!("error_log {d}/nginx-error.log warn;"),
            "temp" => {
                let directive = code.split_whitespace().next().unwrap();
                format!("{directive} {d}/{};", directive.trim_end_matches("_temp_path"))
            }
            "node" => {
                let port = node_ports.next().expect("the example has one `server` line per test node");
                // `server ADDRESS PARAMETERS…;`: only the address changes.
                let words: Vec<&str> = code.split_whitespace().collect();
                assert_eq!(words[0], "server", "a `# test: node` line is an upstream `server` line");
                match words.len() {
                    2 => format!("server 127.0.0.1:{port};"),
                    _ => format!("server 127.0.0.1:{port} {}", words[2..].join(" ")),
                }
            }
            "listen" => format!("listen 127.0.0.1:{port};"),
            _ => unreachable!(),
        };
        out.push_str(&format!("{indent}{new}\n"));
    }
    assert!(node_ports.next().is_none(), "the example has fewer `server` lines than the test has nodes");
    for tag in ["pid", "error_log", "temp", "node", "listen"] {
        assert!(seen.contains_key(tag), "nginx.example.conf lost its `# test: {tag}` line");
    }
    out
}

impl Nginx {
    /// Spawns nginx on `port` in front of `nodes`; the caller awaits it listening.
    pub fn start(dir: &std::path::Path, port: u16, nodes: &[u16]) -> Self {
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, render_nginx_conf(dir, port, nodes)).unwrap();
        let log = std::fs::File::create(dir.join("nginx-stderr.log")).unwrap();
        // Debian puts it in /usr/sbin, which a non-root PATH may lack.
        let bin = if std::path::Path::new("/usr/sbin/nginx").exists() { "/usr/sbin/nginx" } else { "nginx" };
        let child = Command::new(bin)
            .args(["-p", &dir.display().to_string(), "-c", &conf.display().to_string()])
            .args(["-g", "daemon off; master_process off;"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nginx runs (scripts/test.sh installs Debian's nginx-light)");
        Self { port, child: Some(child), dir: dir.to_path_buf() }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        format!("{}{}", read("nginx-stderr.log"), read("nginx-error.log"))
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
