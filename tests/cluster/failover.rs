//! Login traffic through a Redis failover: returning users log in over and over, each
//! request on another node, nothing assumed of any answer; at the end, when the errors
//! came (the error window, printed), that logins went on after it, and that no token
//! was handed out twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::cross_node::hop_login;
use crate::harness::{Cluster, Tokens};
use crate::process::RedisServer;

/// Login loops running at once.
const USERS: usize = 6;

/// What one loop saw: when each login succeeded and when each failed.
type Seen = (Vec<Duration>, Vec<Duration>);

pub struct Traffic {
    start: Instant,
    run_for: Duration,
    drivers: tokio::task::JoinSet<Seen>,
    /// Logins done so far, by all the loops.
    done: Arc<AtomicUsize>,
}

/// One returning user's login, each request to another node, nothing assumed: the
/// token, or which step failed how (a failover answers 503 while it lasts).
async fn try_login(c: &Cluster, first: usize, openid: &str) -> Result<String, String> {
    let created =
        c.http.post(format!("{}/api/v1/login/qrcode", c.node(first))).json(&serde_json::json!({"image": false}));
    let (status, body) = crate::client::parts(created.send().await.map_err(|e| format!("qrcode {e}"))?).await;
    if status != 200 {
        return Err(format!("qrcode {status} {body}"));
    }
    let uuid = body["uuid"].as_str().unwrap_or_default().to_string();
    let ticket = crate::client::ticket_of(&body);
    let asked = c.http.get(format!("{}/_sandbox/tickets", c.node(first + 1))).query(&[("ticket", &ticket)]).send();
    let (status, t) = crate::client::parts(asked.await.map_err(|e| e.to_string())?).await;
    let Some(scene) = t["scene"].as_str().filter(|_| status == 200) else { return Err(format!("ticket {status} {t}")) };
    let pushed = c.try_push_to((first + 2) % 3, &Cluster::scan_push(openid, scene, true)).await;
    let (status, reply) = pushed.map_err(|e| format!("push {e}"))?;
    if status != 200 {
        return Err(format!("push {status} {reply}"));
    }
    let asked = c.http.get(format!("{}/api/v1/login/status", c.node(first))).query(&[("uuid", &uuid)]).send();
    let (status, body) = crate::client::parts(asked.await.map_err(|e| format!("status {e}"))?).await;
    match body["token"].as_str() {
        Some(token) if status == 200 => Ok(token.to_string()),
        _ => Err(format!("status {status} {body}")),
    }
}

impl Traffic {
    /// Registers the users, then starts their login loops for `run_for`.
    pub async fn start(c: &Arc<Cluster>, run_for: Duration) -> Self {
        for u in 0..USERS {
            hop_login(c, u, &format!("o_fo_{u}"), &format!("137{u:08}"), false).await;
        }
        let tokens = Arc::new(Tokens::default());
        let done = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let mut drivers = tokio::task::JoinSet::new();
        for u in 0..USERS {
            let (c, tokens, done) = (c.clone(), tokens.clone(), done.clone());
            drivers.spawn(async move {
                let (mut ok, mut failed) = (Vec::new(), Vec::new());
                let mut i = u;
                while start.elapsed() < run_for {
                    i += 1;
                    match try_login(&c, i, &format!("o_fo_{u}")).await {
                        // A token seen twice fails the test here.
                        Ok(token) => {
                            tokens.record(&token);
                            ok.push(start.elapsed());
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(why) => {
                            if failed.len() < 2 {
                                eprintln!("login failed at {:?}: {why}", start.elapsed());
                            }
                            failed.push(start.elapsed());
                            // A page's pause before it tries again: the load, not a wait.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                (ok, failed)
            });
        }
        Self { start, run_for, drivers, done }
    }

    /// Waits until every loop could have logged in twice (the premise of a fault "under
    /// load": logins are flowing), however fast this host is.
    pub async fn until_flowing(&self) {
        let flowing = || async { (self.done.load(Ordering::Relaxed) >= 2 * USERS).then_some(()) };
        crate::client::eventually("logins flowing before the fault", Duration::from_secs(10), flowing).await;
    }

    /// Since the traffic started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Waits for the loops to end; prints the error window of `what` (done at
    /// `fault_at`) and checks that logins went on after it.
    pub async fn finish(mut self, what: &str, fault_at: Duration) {
        let (mut ok, mut failed) = (Vec::new(), Vec::new());
        while let Some(r) = self.drivers.join_next().await {
            let (o, f) = r.unwrap();
            ok.extend(o);
            failed.extend(f);
        }
        let (first, last) = (failed.iter().min().copied(), failed.iter().max().copied());
        let window = first.zip(last).map_or(Duration::ZERO, |(a, b)| b - a);
        let after = ok.iter().filter(|&&t| t > last.unwrap_or(fault_at)).count();
        eprintln!(
            "{what} under {USERS} login loops: {} logins, {} failed, error window {window:?} (from {first:?} to {last:?}, the fault at {fault_at:?}); {after} logins after the last error",
            ok.len(),
            failed.len()
        );
        assert!(
            last.is_none_or(|l| l < self.run_for - Duration::from_secs(3)),
            "logins did not resume: last failure at {last:?}"
        );
        assert!(after >= 2 * USERS, "logins after the last error: {after}");
    }
}

/// SIGKILLs `server` by its pid (read from the server itself: the cluster is shared by
/// the login loops, so the handle cannot be borrowed mutably).
pub fn kill_redis(server: &RedisServer) -> String {
    let info = server.cli(&["INFO", "server"]).unwrap();
    let pid = info.lines().find_map(|l| l.strip_prefix("process_id:")).unwrap().trim().to_string();
    assert!(std::process::Command::new("kill").args(["-9", &pid]).status().unwrap().success());
    pid
}
