//! Bad input and limits: each gets a clear 4xx/5xx with a short reason, and the server
//! keeps serving.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{raw_request, token, token_with_key, Server};

fn post(server: &Server, auth: Option<&str>, body: &str) -> common::Response {
    let mut p = server.publisher();
    match auth {
        Some(a) => p.post_raw(body, &[("Authorization", a)]),
        None => p.post_raw(body, &[]),
    }
}

#[test]
fn publisher_authorization() {
    let server = Server::start(&["--workers", "1"]);
    let r = post(&server, None, "topic=t&data=x");
    assert_eq!(r.status, 401);
    assert!(r.body.contains("missing bearer token"), "{}", r.body);

    let forged = token_with_key(r#"{"mercure":{"publish":["*"]}}"#, "another-key");
    let r = post(&server, Some(&format!("Bearer {forged}")), "topic=t&data=x");
    assert_eq!(r.status, 401);
    assert!(r.body.contains("signature"), "{}", r.body);

    let expired = token(r#"{"mercure":{"publish":["*"]},"exp":1000}"#);
    let r = post(&server, Some(&format!("Bearer {expired}")), "topic=t");
    assert_eq!(r.status, 401);
    assert!(r.body.contains("expired"), "{}", r.body);

    let r = post(&server, Some("Bearer not.a.jwt"), "topic=t");
    assert_eq!(r.status, 401);

    // Valid, but only for topic "a": every topic of the update must be allowed.
    let limited = format!("Bearer {}", token(r#"{"mercure":{"publish":["a"]}}"#));
    assert_eq!(post(&server, Some(&limited), "topic=a&data=x").status, 200);
    let r = post(&server, Some(&limited), "topic=a&topic=b&data=x");
    assert_eq!(r.status, 403);
    assert!(r.body.starts_with("forbidden"), "{}", r.body);
    let none = format!("Bearer {}", token(r#"{"mercure":{"subscribe":["*"]}}"#));
    assert_eq!(post(&server, Some(&none), "topic=a").status, 403);
}

#[test]
fn malformed_publications_are_400() {
    let server = Server::start(&["--workers", "1", "--max-topics", "4"]);
    let auth = format!("Bearer {}", server.token);
    for (body, why) in [
        ("data=x", "missing \"topic\""),
        ("topic=t&id=a%0Ab", "\"id\""),
        ("topic=t&id=%23frag", "\"id\""),
        ("topic=t&type=a%0D", "\"type\""),
        ("topic=t&retry=soon", "\"retry\""),
        ("topic=%zz", "percent-encoding"),
        ("topic=%C3%28", "UTF-8"),
        ("topic=a&topic=b&topic=c&topic=d&topic=e", "too many"),
    ] {
        let r = post(&server, Some(&auth), body);
        assert_eq!(r.status, 400, "{body}");
        assert!(r.body.contains(why), "{body}: {}", r.body);
    }
    // Still serving, on the same keep-alive connection too.
    let mut p = server.publisher();
    assert_eq!(
        p.post_raw("data=x", &[("Authorization", &auth)]).status,
        400
    );
    assert_eq!(p.post(&[("topic", "t")]).status, 200);
}

#[test]
fn malformed_subscriptions_are_400() {
    let server = Server::start(&["--workers", "1", "--max-topics", "2"]);
    for (query, why) in [
        ("", "missing \"topic\""),
        ("lastEventID=x", "missing \"topic\""),
        ("topic=", "empty"),
        ("topic=%G1", "percent-encoding"),
        ("topic=a&topic=b&topic=c", "too many"),
    ] {
        let mut sub = server.subscribe(query, &[]);
        assert_eq!(sub.status, 400, "{query}");
        let body = sub.body_text();
        assert!(body.contains(why), "{query}: {body}");
    }
}

#[test]
fn routing_and_framing_errors() {
    let server = Server::start(&["--workers", "1", "--max-body-bytes", "1024"]);
    let r = raw_request(&server, b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 404);
    let r = raw_request(
        &server,
        b"DELETE /.well-known/mercure HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(r.status, 405);
    assert_eq!(r.headers["allow"], "GET, POST, OPTIONS");

    let auth = format!("Bearer {}", server.token);
    let big = format!("topic=t&data={}", "x".repeat(2000));
    let r = post(&server, Some(&auth), &big);
    assert_eq!(r.status, 413);

    let r = raw_request(
        &server,
        format!("POST /.well-known/mercure HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").as_bytes(),
    );
    assert_eq!(r.status, 411);
    let r = raw_request(
        &server,
        format!("POST /.well-known/mercure HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}").as_bytes(),
    );
    assert_eq!(r.status, 415);
}

#[test]
fn oversized_heads_are_431_and_garbage_is_400() {
    let server = Server::start(&["--workers", "1", "--max-header-bytes", "1024"]);
    let huge = format!(
        "GET /.well-known/mercure?topic=t HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(4000)
    );
    assert_eq!(raw_request(&server, huge.as_bytes()).status, 431);
    let long_uri = format!(
        "GET /.well-known/mercure?topic={} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(4000)
    );
    assert_eq!(raw_request(&server, long_uri.as_bytes()).status, 414);
    assert_eq!(
        raw_request(
            &server,
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n"
        )
        .status,
        400
    );
    assert_eq!(raw_request(&server, b"GET / HTTP/2.0\r\n\r\n").status, 505);
    // Still serving.
    server.publish(&[("topic", "t")]);
}

#[test]
fn max_connections_gives_503_with_retry_after() {
    let server = Server::start(&["--workers", "1", "--max-connections", "3"]);
    let held: Vec<_> = (0..3).map(|_| server.subscribe("topic=t", &[])).collect();
    assert!(held.iter().all(|s| s.status == 200));
    let mut refused = server.subscribe("topic=t", &[]);
    assert_eq!(refused.status, 503);
    assert_eq!(refused.headers["retry-after"], "1");
    assert!(refused.body_text().contains("too many connections"));
}

#[test]
fn a_slow_loris_is_disconnected() {
    let server = Server::start(&["--workers", "1", "--header-timeout", "300ms"]);
    let mut s = server.connect();
    s.write_all(b"GET /.well-known/mercure?topic=t HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let start = Instant::now();
    // Dribble a header byte every 100 ms: each read makes progress, the head never ends.
    let mut closed = false;
    for _ in 0..30 {
        if s.write_all(b"X").is_err() {
            closed = true;
            break;
        }
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        match s.read(&mut [0u8; 64]) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => panic!("unexpected {n} bytes"),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(closed, "never disconnected");
    let took = start.elapsed();
    assert!(took < Duration::from_secs(2), "took {took:?}");
}
