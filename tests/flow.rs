//! Flow control and liveness: slow consumers, heartbeats, close detection.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{admin_get, metric_sum, Got, Server};
use socket2::{Domain, Socket, Type};

#[test]
fn a_slow_subscriber_is_dropped_while_a_fast_one_gets_everything() {
    let server = Server::start(&["--workers", "1", "--max-queued-bytes", "65536"]);
    // The slow client: tiny receive buffer, never reads.
    let sk = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    sk.set_recv_buffer_size(4096).unwrap();
    sk.connect(&server.addr.into()).unwrap();
    let mut slow: TcpStream = sk.into();
    slow.write_all(b"GET /.well-known/mercure?topic=t HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut fast = server.subscribe("topic=t", &[]);
    // The slow one is registered once a publish made after its request reaches the fast one
    // (both are served by the single core in arrival order).
    server.publish(&[("topic", "t"), ("data", "sync")]);
    assert_eq!(fast.expect_event().data, "sync");

    // 1,000 events of 16 KiB: far more than kernel buffers plus the 64 KiB queue allowance.
    // The publisher stays at most WINDOW events ahead of the fast reader (it waits for the
    // reader's count, not for time), so the fast one is never slow, however loaded the machine
    // running the test is; the slow one never reads and must be cut off all the same.
    const WINDOW: usize = 2;
    let payload = "x".repeat(16 * 1024);
    let mut publisher = server.publisher();
    let (progress_tx, progress) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let start = Instant::now();
        let mut n = 0;
        while n < 1000 {
            let ev = fast.expect_event();
            assert_eq!(ev.data.len(), 16 * 1024);
            n += 1;
            let _ = progress_tx.send(n);
        }
        start.elapsed()
    });
    let mut received = 0;
    for i in 0..1000 {
        while received + WINDOW < i {
            received = progress
                .recv_timeout(Duration::from_secs(10))
                .expect("the fast subscriber stopped receiving");
        }
        assert_eq!(
            publisher.post(&[("topic", "t"), ("data", &payload)]).status,
            200
        );
    }
    let took = reader.join().unwrap();
    assert!(
        took < Duration::from_secs(20),
        "fast subscriber took {took:?}"
    );

    // The slow subscriber was cut off: reading what the kernel buffered ends in EOF or a
    // reset, long before 1,000 events (16 MB).
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut total = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    let closed = loop {
        match std::io::Read::read(&mut slow, &mut buf) {
            Ok(0) => break true,
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
            Err(_) => break true,
        }
    };
    assert!(
        closed,
        "slow subscriber still connected after {total} bytes"
    );
    assert!(
        total < 1000 * 16 * 1024,
        "slow subscriber received everything"
    );
}

#[test]
fn heartbeats_arrive_on_an_idle_stream() {
    let server = Server::start(&["--workers", "1", "--heartbeat-interval", "100ms"]);
    let mut sub = server.subscribe("topic=t", &[]);
    let start = Instant::now();
    assert_eq!(sub.next(Duration::from_millis(650)), Got::Timeout);
    // The opening comment plus at least four heartbeats in ~650 ms at a 100 ms interval.
    assert!(sub.comments >= 5, "only {} comment lines", sub.comments);
    assert!(start.elapsed() < Duration::from_secs(2));
    // A busy stream gets no heartbeats between events closer than the interval.
    let before = sub.comments;
    for i in 0..10 {
        server.publish(&[("topic", "t"), ("data", &i.to_string())]);
        assert_eq!(sub.expect_event().data, i.to_string());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        sub.comments - before <= 1,
        "{} heartbeats on a busy stream",
        sub.comments - before
    );
}

#[test]
fn a_closed_subscriber_frees_its_slot_at_once() {
    // One connection allowed: each round's subscriber can only be served once the previous
    // round's subscriber, closed by its client, has been noticed and removed.
    let server = Server::start(&["--workers", "1", "--max-connections", "1"]);
    for round in 0..20 {
        let deadline = Instant::now() + Duration::from_secs(2);
        let sub = loop {
            let sub = server.subscribe("topic=t", &[]);
            if sub.status == 200 {
                break sub;
            }
            assert_eq!(sub.status, 503);
            assert!(sub.headers.contains_key("retry-after"));
            assert!(
                Instant::now() < deadline,
                "round {round}: slot not released within 2 s"
            );
            drop(sub);
            std::thread::sleep(Duration::from_millis(5));
        };
        sub.stream.shutdown(std::net::Shutdown::Both).unwrap();
    }
}

#[test]
fn a_subscriber_whose_writes_stall_is_dropped_after_write_timeout() {
    // A queue allowance far above what is published: only the stalled write can end it.
    let server = Server::start(&[
        "--workers",
        "1",
        "--max-queued-bytes",
        "268435456",
        "--write-timeout",
        "500ms",
    ]);
    let sk = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    sk.set_recv_buffer_size(4096).unwrap();
    sk.connect(&server.addr.into()).unwrap();
    let mut stalled: TcpStream = sk.into();
    stalled
        .write_all(b"GET /.well-known/mercure?topic=t HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut probe = server.subscribe("topic=t", &[]);
    let payload = "y".repeat(64 * 1024);
    let mut publisher = server.publisher();
    // 16 MB: more than the kernel buffers of a non-reading peer can take.
    for _ in 0..256 {
        assert_eq!(
            publisher.post(&[("topic", "t"), ("data", &payload)]).status,
            200
        );
        probe.expect_event();
    }
    // The client has read nothing so far: once the kernel buffers are full the gateway's
    // write stalls, and `write_timeout` later it gives up. Wait for it to say so (reading
    // earlier would let a fast run's stalled write make progress again).
    let start = Instant::now();
    loop {
        let metrics = admin_get(&server, "/metrics").body;
        if metric_sum(&metrics, "ssegate_write_timeout_disconnects_total", "") >= 1 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no write timeout counted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0usize;
    let closed = loop {
        match std::io::Read::read(&mut stalled, &mut buf) {
            Ok(0) => break true,
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
            Err(_) => break true,
        }
    };
    assert!(closed, "stalled subscriber still open after {total} bytes");
    assert!(
        total < 256 * 64 * 1024,
        "it received everything: no stall happened"
    );
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_subscriber_that_pauses_gets_every_event_once_in_order_when_it_reads_again() {
    pause_and_catch_up("send");
}

#[test]
fn the_io_uring_write_path_hands_over_and_catches_up_the_same_way() {
    pause_and_catch_up("io_uring");
}

fn pause_and_catch_up(write_path: &str) {
    // A queue allowance far above what is published: this subscriber must not be dropped.
    let server = Server::start(&[
        "--workers",
        "1",
        "--max-queued-bytes",
        "67108864",
        "--write-path",
        write_path,
    ]);
    let mut sub = server.subscribe("topic=t", &[]);
    let mut others: Vec<_> = (0..5).map(|_| server.subscribe("topic=t", &[])).collect();
    let mut publisher = server.publisher();
    // ~16 MB while the client reads nothing: more than loopback socket buffers hold, so
    // the gateway's non-blocking sends come up short and the connection's own task has to
    // wait for writability and take over from the core's flusher.
    let payload = "y".repeat(16 * 1024 - 8);
    for i in 0..1000 {
        let data = format!("{i:07} {payload}");
        assert_eq!(
            publisher.post(&[("topic", "t"), ("data", &data)]).status,
            200
        );
    }
    for i in 0..1000 {
        let ev = sub.expect_event();
        assert_eq!(&ev.data[..7], format!("{i:07}"), "event {i} out of order");
        assert_eq!(ev.data.len(), 16 * 1024);
    }
    // Caught up: small events flow again one by one.
    for i in 0..20 {
        server.publish(&[("topic", "t"), ("data", &format!("after {i}"))]);
        assert_eq!(sub.expect_event().data, format!("after {i}"));
    }
    // The others paused too, and read everything in one go.
    for other in &mut others {
        for i in 0..1000 {
            let ev = other.expect_event();
            assert_eq!(&ev.data[..7], format!("{i:07}"), "event {i} out of order");
        }
        for i in 0..20 {
            assert_eq!(other.expect_event().data, format!("after {i}"));
        }
    }
}
