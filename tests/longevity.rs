//! A core must survive any number of events between two connections: nothing a steady
//! stream of publishes does may wear out per-task state.

mod common;

use std::io::{BufReader, Write};
use std::time::Duration;

use common::{admin_get, form, try_read_response, Server};

/// glommio's `accept` keeps one more clone of its task's waker each time it is polled while
/// pending, and a task's waker count is an `i16`. When every publish woke the accept loop
/// (it waits for a connection or the stop), 32,767 publishes with no new connection in
/// between made core 0 panic. 40,000 publishes on one keep-alive connection, two cores (the
/// sequencer path, which woke every waiter per event), then both cores must still serve.
#[test]
fn forty_thousand_publishes_between_two_connections_leave_every_core_serving() {
    const EVENTS: usize = 40_000;
    const PIPELINE: usize = 100;
    let server = Server::start(&["--workers", "2"]);
    let stream = server.connect();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let body = form(&[("topic", "https://example.com/t"), ("data", "x")]);
    let request = format!(
        "POST /.well-known/mercure HTTP/1.1\r\nHost: test\r\nContent-Type: application/x-www-form-urlencoded\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\n\r\n{body}",
        server.token,
        body.len()
    );
    let batch = request.repeat(PIPELINE);
    for sent in (0..EVENTS).step_by(PIPELINE) {
        writer.write_all(batch.as_bytes()).unwrap();
        for i in 0..PIPELINE {
            let resp = try_read_response(&mut reader)
                .unwrap_or_else(|e| panic!("publish {} got no answer: {e}", sent + i + 1));
            assert_eq!(resp.status, 200, "publish {}", sent + i + 1);
        }
    }
    // Fresh connections land on both cores (SO_REUSEPORT); every one must be served, and the
    // admin listener (core 0) must answer.
    for _ in 0..16 {
        assert_eq!(
            server
                .publisher()
                .post(&[("topic", "https://example.com/t"), ("data", "after")])
                .status,
            200
        );
    }
    assert_eq!(admin_get(&server, "/healthz").status, 200);
}
