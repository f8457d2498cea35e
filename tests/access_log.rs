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
