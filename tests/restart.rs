//! Zero-downtime restart: two processes share one port (SO_REUSEPORT); the old one, on
//! SIGTERM, stops accepting and closes its subscribers spread over `drain_period`, each
//! after a `retry:` hint, and they reconnect to the new one.

mod common;

use std::time::{Duration, Instant};

use common::{Got, Server, Subscriber};

#[test]
fn subscribers_move_to_the_new_process_when_the_old_one_drains() {
    let mut old = Server::start(&["--workers", "1", "--drain-period", "1s"]);
    let addr = old.addr.to_string();
    let new = Server::start_on(&addr, &["--workers", "1"]);
    assert_eq!(new.addr, old.addr);

    // Connections spread over both processes by the kernel's SO_REUSEPORT hash.
    let mut subs: Vec<Subscriber> = (0..24).map(|_| new.subscribe("topic=t", &[])).collect();
    assert!(subs.iter().all(|s| s.status == 200));

    let start = Instant::now();
    old.sigterm();
    // Every subscriber of the old process is closed after a retry hint; reconnect those.
    let mut closed_at = Vec::new();
    let mut moved = 0;
    let deadline = start + Duration::from_secs(8);
    let status = loop {
        if let Some(st) = old.wait_exit(Duration::from_millis(1)) {
            break st;
        }
        assert!(Instant::now() < deadline, "the old process did not exit");
        for s in subs.iter_mut() {
            if let Got::Closed = s.next(Duration::from_millis(5)) {
                closed_at.push(start.elapsed());
                assert!(s.retry_hints >= 1, "closed without a retry: hint");
                *s = new.subscribe("topic=t", &[]);
                assert_eq!(s.status, 200, "reconnection refused");
                moved += 1;
            }
        }
    };
    assert!(status.success(), "{status:?}");
    // Streams still open on the old process at its exit would show up as closed here.
    for s in subs.iter_mut() {
        if let Got::Closed = s.next(Duration::from_millis(20)) {
            panic!("a subscriber was left hanging by the old process");
        }
    }
    assert!(moved > 0, "no subscriber had landed on the old process");
    if closed_at.len() >= 4 {
        let spread = *closed_at.last().unwrap() - closed_at[0];
        assert!(
            spread >= Duration::from_millis(300),
            "closes not spread: {closed_at:?}"
        );
    }
    // Everyone is now on the new process and receives what it publishes.
    let id = new.publish(&[("topic", "t"), ("data", "after the restart")]);
    for s in subs.iter_mut() {
        assert_eq!(s.expect_event().id.unwrap(), id);
    }
    eprintln!(
        "{moved} of {} subscribers moved; closes at {closed_at:?}",
        subs.len()
    );
}

/// With the redis engine the history is the stream's, so the new process resumes what the
/// old one published before the new one existed.
#[test]
fn with_the_redis_engine_the_new_process_resumes_what_the_old_one_published() {
    let Some(redis) = common::Redis::start() else {
        return;
    };
    let engine = ["--engine", "redis", "--redis-url", &redis.url()];
    let mut old =
        Server::start(&[&engine[..], &["--workers", "1", "--drain-period", "200ms"]].concat());
    let ids: Vec<String> = (0..3)
        .map(|i| old.publish(&[("topic", "t"), ("data", &format!("before {i}"))]))
        .collect();
    let addr = old.addr.to_string();
    let new = Server::start_on(&addr, &[&engine[..], &["--workers", "1"]].concat());
    old.sigterm();
    let status = old
        .wait_exit(Duration::from_secs(10))
        .expect("the old process did not exit");
    assert!(status.success(), "{status:?}");
    // Only the new process is left on the port: this resume is served by it.
    let mut s = new.subscribe("topic=t", &[("Last-Event-ID", &ids[0])]);
    assert_eq!(s.status, 200);
    for (i, id) in ids.iter().enumerate().skip(1) {
        let e = s.expect_event();
        assert_eq!(
            (e.id.as_deref(), e.data),
            (Some(id.as_str()), format!("before {i}"))
        );
    }
    assert_eq!(s.next(Duration::from_millis(200)), Got::Timeout);
}
