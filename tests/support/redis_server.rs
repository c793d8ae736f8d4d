//! A private `redis-server` on a free port, for tests and benchmarks that stop, pause,
//! restart or fill Redis (the shared one on 6379 is never touched). No persistence: a
//! restart loses everything, like a cache node that died. Included by path from the unit
//! tests, the durability tests and the benchmark.

#![allow(dead_code)] // each includer uses a different part

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// More `redis-server` arguments (a cluster node's).
    args: Vec<String>,
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

impl RedisServer {
    /// Starts one and waits until it answers.
    pub fn start() -> Self {
        Self::start_with(free_port(), &[])
    }

    /// Starts one on `port` with more arguments, and waits until it answers.
    pub fn start_with(port: u16, args: &[&str]) -> Self {
        let args = args.iter().map(|a| a.to_string()).collect();
        let mut s = Self { port, child: None, dir: tempfile::tempdir().expect("tempdir"), args };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let mut child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--dir", &self.dir.path().display().to_string()])
            .args(&self.args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (scripts/services.sh installs it)");
        // Redis logs when it accepts connections: that line is awaited. The thread then
        // drains the log, so that a full pipe never blocks the server.
        let log = child.stdout.take().expect("piped");
        let (ready, listening) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut ready = Some(ready);
            for line in BufReader::new(log).lines().map_while(Result::ok) {
                if line.contains("eady to accept connections")
                    && let Some(ready) = ready.take()
                {
                    let _ = ready.send(());
                }
            }
        });
        self.child = Some(child);
        let said = listening.recv_timeout(Duration::from_secs(10));
        assert!(said.is_ok() && ping(self.port), "redis-server on {} does not answer", self.port);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let ok = Command::new("kill").args([sig, &pid]).status().expect("kill runs").success();
        assert!(ok, "kill {sig} {pid}");
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Empties it (FLUSHALL), as an operator's mistake or an eviction storm would.
    pub fn flush(&self) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut buf = [0u8; 5];
        s.write_all(b"FLUSHALL\r\n").and_then(|_| s.read_exact(&mut buf)).expect("FLUSHALL");
        assert_eq!(&buf, b"+OK\r\n");
    }

    /// Its answer to `redis-cli ARGS…` (trimmed), or `None` when it does not answer.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli").args(["-p", &self.port.to_string()]).args(args).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Kills it (SIGKILL): everything it held is gone, connections are refused.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again, empty, on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SIGKILL ends a paused (SIGSTOPped) server too.
        self.kill();
    }
}
