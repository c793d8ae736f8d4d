//! One address holding many connections whose request bodies never come
//! (docs/architecture.md, "Connections"), against the real binary under a low open-file
//! limit: the body's deadline closes them, the per-address cap refuses the ones past it,
//! and everyone else — another address, WeChat's callback — is still answered at once.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use scanlogin::wechat::xml::event_xml;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::client::Api;
use crate::process::Instance;

/// The server's open-file limit (soft and hard), and more slow connections than that.
const NOFILE: u64 = 1280;
const SLOW: usize = 1500;
const APP_ID: &str = "wxsandbox0000000001";

fn loopback(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// A connection from `from` to the server on `port`.
async fn connect_from(from: Ipv4Addr, port: u16) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    tokio::time::timeout(Duration::from_secs(2), socket.connect(SocketAddr::from((loopback(1), port))))
        .await
        .map_err(|_| std::io::Error::other("connect timed out"))?
}

/// A test client whose connections come from `from`, giving up after 2 s.
fn api_from(from: Ipv4Addr, base: &str) -> Api {
    let http =
        reqwest::Client::builder().local_address(IpAddr::V4(from)).timeout(Duration::from_secs(2)).build().unwrap();
    Api::with_client(http, base, base)
}

/// Reads until the server closes the connection (at most `within`): the status line of
/// what it answered first, or `None` if it was still open.
async fn closed_within(mut s: TcpStream, within: Duration) -> Option<String> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    });
    read.await.ok()?;
    Some(String::from_utf8_lossy(&got).lines().next().unwrap_or("closed, no answer").to_string())
}

#[actix_web::test]
async fn bodies_that_never_come_from_one_address_leave_the_server_to_everyone_else() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("SCANLOGIN__STORAGE__DATABASE_URL", format!("sqlite://{}/s.db?mode=rwc", dir.path().display())),
        // Small enough to start under NOFILE.
        ("SCANLOGIN__LIMITS__LONG_POLLS_MAX", "200".into()),
    ];
    let mut server = Instance::named(dir.path(), "slow", "http://127.0.0.1:1", &env);
    server.set("SCANLOGIN__SERVER__PUBLIC_URL", &server.url(""));
    server.nofile(NOFILE);
    server.start().await;

    // Heads with a Content-Length whose body never comes, all from 127.0.0.1: to a
    // handler that reads the body (sms-code), and chunked to one that does not (healthz).
    let opened = Instant::now();
    let mut slow = Vec::new();
    for i in 0..SLOW {
        let Ok(mut s) = connect_from(loopback(1), server.port).await else { break };
        let head = if i % 10 == 9 {
            "GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n"
        } else {
            "POST /api/v1/login/sms-code HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 64\r\n\r\n{"
        };
        if s.write_all(head.as_bytes()).await.is_ok() {
            slow.push(s);
        }
    }
    assert!(slow.len() > NOFILE as usize, "only {} slow connections opened", slow.len());

    // Another address is answered at once, and so is WeChat.
    let base = server.url("");
    let other = api_from(loopback(2), &base);
    let t = Instant::now();
    let r = other.http.get(other.url("/api/v1/login/status?uuid=nq2uTBv3JXbWQm5Pq1hkOM7o3bRzA8a4fH0lX2rS9dE")).send();
    let status = r.await.map(|r| r.status().as_u16());
    assert_eq!(status.ok(), Some(200), "another address, after {:?}; log:\n{}", t.elapsed(), server.log());
    let wechat = api_from(loopback(3), &base);
    let push = event_xml("gh_x", "o_slow", 1_700_000_000, "subscribe", Some("qrscene_sl_unknown"), None);
    let t = Instant::now();
    let r = wechat.push_plain(APP_ID, "sandbox-token", push).await;
    assert_eq!(r.status(), 200, "WeChat's callback");
    assert!(t.elapsed() < Duration::from_secs(1), "WeChat's callback took {:?}", t.elapsed());

    // Every slow connection is closed: past the per-address cap at once (429), the others
    // when their body's deadline (5 s) passes (408), each after actix-web's 1 s linger.
    // Nothing else would ever close them (actix-web's own request timeout covers the head
    // only), so 15 s leaves a loaded machine's late timers room and still tells.
    let left = Duration::from_secs(15).saturating_sub(opened.elapsed());
    let ends = join_all(slow.into_iter().map(|s| closed_within(s, left))).await;
    let still_open = ends.iter().filter(|e| e.is_none()).count();
    assert_eq!(still_open, 0, "slow connections still open 15 s after they were opened");
    let answered = |code: &str| ends.iter().flatten().filter(|l| l.contains(code)).count();
    assert!(answered(" 429 ") > 0 && answered(" 408 ") > 0, "{:?}", &ends[..20]);
    // And the address is served again.
    let again = api_from(loopback(1), &base);
    assert_eq!(again.http.get(again.url("/healthz")).send().await.unwrap().status(), 200);
}
