//! Connections one address can hold (docs/architecture.md, "Connections"), in process: a
//! body that does not come in time is 408 and closes its connection, a body nobody reads
//! closes it after the answer, and an address past `limits.connections_per_ip` is refused
//! (429, closed), except a trusted proxy. The same against the real binary under a low
//! open-file limit: `slow_clients.rs`.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::{eventually, metric};
use crate::helpers::{TestApp, spawn_app_with};

/// A raw connection to the server under test.
async fn connect(app: &TestApp) -> TcpStream {
    let addr = app.server.trim_start_matches("http://").to_string();
    TcpStream::connect(addr).await.unwrap()
}

/// A connection the server has taken (and so counts): it answered a request on it, and
/// the connection stays open (keep-alive), idle.
async fn counted(app: &TestApp) -> TcpStream {
    let mut s = connect(app).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
    s
}

/// Sends `head` and reads until the server closes the connection (at most `within`):
/// what it answered and when it closed; `None` if it was still open.
async fn answer_then_close(app: &TestApp, head: &str, within: Duration) -> Option<(String, Duration)> {
    let mut s = connect(app).await;
    s.write_all(head.as_bytes()).await.unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = s.read(&mut buf).await {
            got.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(within, read).await.ok()?;
    Some((String::from_utf8_lossy(&got).into_owned(), start.elapsed()))
}

#[actix_web::test]
async fn a_body_that_does_not_come_in_time_is_408_and_its_connection_closed() {
    let app = spawn_app_with(|_| {}).await;
    let (ts, nonce) = (scanlogin::wall::unix_secs().to_string(), "1");
    let signature = scanlogin::wechat::crypto::sign(&["sandbox-token", &ts, nonce]);
    let callback = format!(
        "POST /wechat/wxsandbox0000000001/callback?signature={signature}&timestamp={ts}&nonce={nonce} HTTP/1.1\r\n\
         Host: x\r\nContent-Length: 100\r\n\r\n<xml>"
    );
    let json = "POST /api/v1/login/sms-code HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Content-Length: 64\r\n\r\n{\"uuid\":";
    let (callback, json) = tokio::join!(
        answer_then_close(&app, &callback, Duration::from_secs(10)),
        answer_then_close(&app, json, Duration::from_secs(10)),
    );
    // WeChat's callback within its 5 s, JSON bodies within 5 s.
    for ((answer, after), within) in [(callback, 3), (json, 5)].map(|(a, s)| (a.expect("closed"), s)) {
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains(r#""error":"request_timeout""#), "{answer}");
        // Closed after actix-web's linger (1 s) for the client to read the answer.
        let secs = after.as_secs_f64();
        assert!(
            secs > within as f64 - 0.5 && secs < within as f64 + 2.5,
            "{within} s deadline, closed after {after:?}"
        );
    }
    // A body that arrives, however it is cut into pieces, is read as ever.
    let mut s = connect(&app).await;
    let body = r#"{"image":false}"#;
    let head = format!("POST /api/v1/login/qrcode HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", body.len());
    s.write_all(head.as_bytes()).await.unwrap();
    for piece in [&body[..5], &body[5..]] {
        // The pause between the pieces is the slow client under test, not a wait.
        tokio::time::sleep(Duration::from_millis(300)).await;
        s.write_all(piece.as_bytes()).await.unwrap();
    }
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
}

/// actix-web reads a chunked body its handler dropped to the end, however slowly it
/// comes: the answer now closes the connection instead.
#[actix_web::test]
async fn a_chunked_body_nobody_reads_closes_its_connection_after_the_answer() {
    let app = spawn_app_with(|_| {}).await;
    let head = "GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n";
    let (answer, after) = answer_then_close(&app, head, Duration::from_secs(3)).await.expect("closed");
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("connection: close"), "{answer}");
    // After actix-web's linger (`client_disconnect_timeout`, 1 s) for the client to read it.
    assert!(after < Duration::from_secs(2), "{after:?}");
}

#[actix_web::test]
async fn connections_past_the_per_address_cap_are_refused_and_closed() {
    let app = spawn_app_with(|s| s.limits.connections_per_ip = 3).await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(counted(&app).await);
    }
    let head = "POST /api/v1/login/sms-code HTTP/1.1\r\nHost: x\r\nContent-Length: 64\r\n\r\n{";
    let (answer, after) = answer_then_close(&app, head, Duration::from_secs(3)).await.expect("closed");
    assert!(answer.starts_with("HTTP/1.1 429") && answer.contains(r#""error":"rate_limited""#), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 5"), "{answer}");
    // Closed without waiting for the body it announced: at once, or on a loaded machine
    // after actix-web's 1 s linger (`client_disconnect_timeout`), never at the 3 s wait.
    assert!(after < Duration::from_millis(1_500), "closed without waiting for the body: {after:?}");
    // A closed connection gives its place back (once the server has seen it close): a
    // new one is served. Each refusal until then is counted, so they are counted here too.
    drop(idle.pop());
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let refused = std::cell::Cell::new(0.0);
    let served = || async {
        let answer = http.get(app.url("/metrics")).send().await.ok().filter(|r| r.status() == 200);
        if answer.is_none() {
            refused.set(refused.get() + 1.0);
        }
        answer?.text().await.ok()
    };
    let m = eventually("a closed connection gives its place back", Duration::from_secs(5), served).await;
    assert_eq!(metric(&m, "scanlogin_limits_hit_total", &["kind=\"connections_per_ip\""]), 1.0 + refused.get());
}

/// Behind a proxy every connection comes from the proxy: it is not counted (it limits
/// its clients itself), only its clients' requests are.
#[actix_web::test]
async fn a_trusted_proxy_is_not_capped() {
    let app = spawn_app_with(|s| {
        s.limits.connections_per_ip = 2;
        s.server.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..5 {
        idle.push(counted(&app).await);
    }
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    assert_eq!(http.get(app.url("/healthz")).send().await.unwrap().status(), 200);
}
