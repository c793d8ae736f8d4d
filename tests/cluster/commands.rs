//! Redis commands per login, as Redis sees them: `MONITOR` on every primary while one
//! returning user logs in across the three nodes (create on one, the poll held on
//! another, the scan on the third, `/me`). Counted: the commands the nodes send, a
//! script call counting one; the commands a script runs inside Redis, the sandbox's own
//! keys (`sl:sbx:*`, the stand-in for WeChat's servers) and the nodes' housekeeping on
//! a timer (the probe's `PING`, the admin index's prune) are not. Issue 28's bound is 13 on every topology.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::cross_node::hop_login;
use crate::harness::Cluster;

/// The most commands one returning user's login may cost (issue 28).
pub const MAX_PER_LOGIN: usize = 13;

/// `redis-cli MONITOR` on some servers, each into its own file.
struct Monitor {
    ports: Vec<u16>,
    children: Vec<Child>,
    files: Vec<PathBuf>,
}

/// Sent to every watched server at the end: once its line is in a file, every command
/// before it is too.
const END: &str = "scanlogin-monitor-end";

/// Waits until `f` holds what `seen` looks for (MONITOR writes as commands arrive).
fn until_in_file(f: &Path, what: &str, seen: impl Fn(&str) -> bool) {
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(f).is_ok_and(|t| seen(&t)) {
        assert!(std::time::Instant::now() < until, "{what} not within 5 s: {f:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Monitor {
    fn start(ports: &[u16], dir: &Path) -> Self {
        let (mut children, mut files) = (Vec::new(), Vec::new());
        for p in ports {
            let file = dir.join(format!("monitor-{p}.txt"));
            let out = std::fs::File::create(&file).unwrap();
            let child = Command::new("redis-cli")
                .args(["-p", &p.to_string(), "MONITOR"])
                .stdout(out)
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-cli");
            children.push(child);
            files.push(file);
        }
        // MONITOR answers OK once it is attached: from then on every command shows.
        for f in &files {
            until_in_file(f, "MONITOR attached", |t| t.starts_with("OK"));
        }
        Self { ports: ports.to_vec(), children, files }
    }

    /// Stops watching; what the servers were sent meanwhile.
    fn stop(mut self) -> Counted {
        // The end marker's line reached each file: so did every command sent before it.
        for (p, f) in self.ports.iter().zip(&self.files) {
            let sent = Command::new("redis-cli").args(["-p", &p.to_string(), "ECHO", END]).output().expect("redis-cli");
            assert!(sent.status.success(), "ECHO on {p}");
            until_in_file(f, "the end marker", |t| t.contains(END));
        }
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let mut counted = Counted::default();
        for f in &self.files {
            for line in std::fs::read_to_string(f).unwrap().lines().skip(1) {
                counted.add(line);
            }
        }
        counted
    }
}

#[derive(Default, Debug)]
struct Counted {
    /// (command, key family) → calls the nodes sent.
    sent: BTreeMap<(String, String), usize>,
    inside_scripts: usize,
    sandbox: usize,
    housekeeping: usize,
}

impl Counted {
    /// One MONITOR line: `<time> [<db> <client or lua>] "CMD" "key" …`.
    fn add(&mut self, line: &str) {
        let Some((source, rest)) = line.split_once("] ") else { return };
        let words: Vec<&str> = rest.split("\" \"").map(|w| w.trim_matches('"')).collect();
        let cmd = words[0].to_ascii_uppercase();
        // A script call is named by its first key (`EVALSHA <sha> <n> <key> …`).
        let key_at = if cmd.starts_with("EVAL") { 3 } else { 1 };
        let key = words.get(key_at).copied().unwrap_or("");
        if key.starts_with("__sentinel__") || (cmd == "ECHO" && key == END) {
            // The sentinels' own hellos on the primary, and our end marker: not the
            // nodes' commands.
            return;
        }
        if key.starts_with("sl:sbx:") {
            self.sandbox += 1;
        } else if source.ends_with("lua") {
            self.inside_scripts += 1;
        } else if cmd == "PING" || (cmd == "ZREMRANGEBYLEX" && key.starts_with("sl:adm:")) {
            // Housekeeping on a timer, not per login: the once-a-second probe, and the
            // admin index's prune (256 commands per node per minute).
            self.housekeeping += 1;
        } else {
            let family = key.splitn(3, ':').take(2).collect::<Vec<_>>().join(":");
            *self.sent.entry((cmd, family)).or_default() += 1;
        }
    }

    fn total(&self) -> usize {
        self.sent.values().sum()
    }
}

/// One returning user's login (registered first, not measured) across the nodes of
/// `c`, watched on `primaries`: the count, asserted within [`MAX_PER_LOGIN`].
pub async fn one_returning_login_within_the_bound(c: &Arc<Cluster>, primaries: &[u16], topology: &str) {
    let (openid, phone) = ("o_counted", "15900000077");
    // Not measured: the user registers, and logs in once with the scan on node 3, as
    // the measured one does, so that node holds WeChat's access token like any node
    // that served a login before (it is fetched once per node per token lifetime).
    hop_login(c, 0, openid, phone, false).await;
    hop_login(c, 1, openid, phone, true).await;
    let dir = tempfile::tempdir().unwrap();
    let monitor = Monitor::start(primaries, dir.path());
    let (uuid, ticket) = c.api(0).new_login().await;
    let scene = c.scene(&ticket).await;
    let poll = {
        let (c, uuid) = (c.clone(), uuid.clone());
        tokio::spawn(async move { c.api(1).status_wait(&uuid, 10).await })
    };
    c.api(1).until_held(1).await;
    let (status, reply) = c.push_to(2, &Cluster::scan_push(openid, &scene, true)).await;
    assert_eq!(status, 200, "{reply}");
    let (status, body) = poll.await.unwrap();
    assert_eq!((status, body["state"].as_str()), (200, Some("reg")), "{body}");
    let (status, me) = c.api(0).me(body["token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{me}");
    let counted = monitor.stop();
    let lines: Vec<String> = counted.sent.iter().map(|((cmd, key), n)| format!("{n:>3} {cmd} {key}")).collect();
    eprintln!(
        "{topology}: {} commands sent for one login ({} run inside scripts, {} on the sandbox's keys, \
         {} housekeeping):\n{}",
        counted.total(),
        counted.inside_scripts,
        counted.sandbox,
        counted.housekeeping,
        lines.join("\n")
    );
    assert!(counted.total() > 0, "MONITOR saw the login: {counted:?}");
    assert!(
        counted.total() <= MAX_PER_LOGIN,
        "{topology}: {} Redis commands for one login, bound {MAX_PER_LOGIN}:\n{}",
        counted.total(),
        lines.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_costs_at_most_thirteen_redis_commands_on_one_redis() {
    let c = Arc::new(Cluster::start(&[]).await);
    let port = c.redis.port;
    one_returning_login_within_the_bound(&c, &[port], "one redis").await;
}
