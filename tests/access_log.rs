//! The access log: one line per request (a subscriber's when its stream ends), flushed when
//! the gateway stops, with no token from the query string or the headers.

mod common;

use std::time::Duration;

use common::{raw_request, token, Server};

#[test]
fn one_line_per_request_without_tokens() {
    let path = std::env::temp_dir().join(format!("ssegate-access-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut server = Server::start(&[
        "--workers",
        "2",
        "--drain-period",
        "0s",
        "--access-log",
        path.to_str().unwrap(),
    ]);

    // A subscriber with its token in the query string, a publish, a 404.
    let sub_token = token(r#"{"mercure":{"subscribe":["*"]}}"#);
    let mut sub = server.subscribe(&format!("topic=t&authorization={sub_token}"), &[]);
    assert_eq!(sub.status, 200);
    let id = server.publish(&[("topic", "t"), ("data", "hello")]);
    assert_eq!(sub.expect_event().id.as_deref(), Some(id.as_str()));
    assert_eq!(
        raw_request(
            &server,
            b"GET /nowhere?authorization=secret HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .status,
        404
    );

    // Lines are handed to the writer on the sweep and at shutdown: stop, then read.
    server.sigterm();
    let (_, closed) = sub.drain(Duration::from_secs(5));
    assert!(closed, "subscriber not closed at shutdown");
    assert!(server.wait_exit(Duration::from_secs(10)).is_some());
    let log = std::fs::read_to_string(&path).expect("access log written");
    let _ = std::fs::remove_file(&path);

    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 3, "{log}");
    let find = |needle: &str| {
        lines
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in\n{log}"))
    };
    let publish = find("method=POST");
    assert!(
        publish.contains(" path=/.well-known/mercure status=200 "),
        "{publish}"
    );
    let missing = find("path=/nowhere ");
    assert!(
        missing.contains(" method=GET ") && missing.contains(" status=404 "),
        "{missing}"
    );
    let subscribe = find("end=");
    assert!(
        subscribe.contains(" method=GET path=/.well-known/mercure status=200 "),
        "{subscribe}"
    );
    assert!(subscribe.ends_with(" end=shutdown"), "{subscribe}");
    for line in &lines {
        // time, core, conn, peer, …: every field present, the peer is the test's loopback.
        assert!(line.contains(" core=") && line.contains(" conn="), "{line}");
        assert!(line.contains(" peer=127.0.0.1:"), "{line}");
        assert!(line.contains(" duration_ms="), "{line}");
        let bytes: u64 = line
            .split(" bytes=")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|b| b.parse().ok())
            .unwrap_or_else(|| panic!("no bytes in {line}"));
        assert!(bytes > 0, "{line}");
    }
    assert!(!log.contains(&sub_token), "a token reached the access log");
    assert!(
        !log.contains("authorization") && !log.contains("secret"),
        "{log}"
    );
}

/// A subscriber that follows another request on the same keep-alive connection is logged
/// with its own bytes (what the client read after the first response), not the connection's.
#[test]
fn a_subscriber_after_a_keep_alive_request_logs_its_own_bytes() {
    use std::io::{Read, Write};

    let path = std::env::temp_dir().join(format!(
        "ssegate-access-keepalive-{}.log",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    let mut server = Server::start(&[
        "--drain-period",
        "0s",
        "--anonymous",
        "true",
        "--access-log",
        path.to_str().unwrap(),
    ]);
    let mut conn = server.connect();
    conn.write_all(b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut first = Vec::new();
    let mut byte = [0u8; 1];
    while !first.ends_with(b"\r\n\r\n") {
        conn.read_exact(&mut byte).unwrap();
        first.push(byte[0]);
    }
    let head = String::from_utf8(first.clone()).unwrap();
    assert!(head.starts_with("HTTP/1.1 404 "), "{head}");
    assert!(head.contains("Connection: keep-alive"), "{head}");
    let body_len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("Content-Length");
    let mut body = vec![0u8; body_len];
    conn.read_exact(&mut body).unwrap();
    let first_len = first.len() + body_len;

    conn.write_all(b"GET /.well-known/mercure?topic=t HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut seen = Vec::new();
    while !seen.ends_with(b"\r\n\r\n:\n") {
        conn.read_exact(&mut byte).unwrap();
        seen.push(byte[0]);
    }
    server.publish(&[("topic", "t"), ("data", "hello")]);
    server.sigterm();
    conn.read_to_end(&mut seen).unwrap();
    assert!(
        String::from_utf8_lossy(&seen).contains("data: hello\n"),
        "event not received"
    );
    assert!(server.wait_exit(Duration::from_secs(10)).is_some());
    let log = std::fs::read_to_string(&path).expect("access log written");
    let _ = std::fs::remove_file(&path);

    let field = |line: &str, name: &str| -> u64 {
        line.split(&format!(" {name}="))
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|b| b.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line}"))
    };
    let missing = log
        .lines()
        .find(|l| l.contains(" path=/nowhere "))
        .unwrap_or_else(|| panic!("no 404 line in\n{log}"));
    assert_eq!(field(missing, "bytes"), first_len as u64, "{missing}");
    let subscribe = log
        .lines()
        .find(|l| l.contains(" end="))
        .unwrap_or_else(|| panic!("no subscriber line in\n{log}"));
    assert_eq!(field(subscribe, "bytes"), seen.len() as u64, "{subscribe}");
}
