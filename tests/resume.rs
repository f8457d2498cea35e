//! `Last-Event-ID` resume: by header and by query, while publishing goes on, on any core.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{enc, Server, Subscriber};

/// Publishes numbered events on `t` from another thread until stopped; returns their ids.
fn background_publisher(
    server: &Server,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<String>> {
    let mut p = server.publisher();
    std::thread::spawn(move || {
        let mut ids = Vec::new();
        let mut i = 0u32;
        while !stop.load(Ordering::Relaxed) && i < 5_000 {
            let r = p.post(&[("topic", "t"), ("data", &i.to_string())]);
            assert_eq!(r.status, 200);
            ids.push(r.body);
            i += 1;
            std::thread::sleep(Duration::from_micros(300));
        }
        ids
    })
}

/// Subscribes, reconnects `rounds` times during publishing (with `resume` building the next
/// request from the last id seen), and checks the concatenated ids equal what was published.
fn resume_rounds(resume: impl Fn(&Server, &str) -> Subscriber) {
    let server = Server::start(&["--workers", "2"]);
    let mut sub = server.subscribe("topic=t", &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = background_publisher(&server, stop.clone());

    let mut seen: Vec<String> = Vec::new();
    let mut workers = Vec::new();
    for _round in 0..6 {
        workers.push(sub.worker());
        for _ in 0..40 {
            seen.push(sub.expect_event().id.unwrap());
        }
        drop(sub);
        // Events keep being published while nobody is connected.
        std::thread::sleep(Duration::from_millis(20));
        sub = resume(&server, seen.last().unwrap());
        assert_eq!(sub.status, 200);
        assert_eq!(
            sub.headers.get("last-event-id"),
            seen.last(),
            "response Last-Event-ID must name the event preceding the first one sent"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let published = publisher.join().unwrap();
    while seen.len() < published.len() {
        seen.push(sub.expect_event().id.unwrap());
    }
    assert_eq!(seen, published, "gap or duplicate across reconnects");
    assert_eq!(sub.next(Duration::from_millis(100)), common::Got::Timeout);
    eprintln!("reconnected on workers {workers:?}");
}

#[test]
fn resume_by_header_has_no_gap_and_no_duplicate() {
    resume_rounds(|server, last| server.subscribe("topic=t", &[("Last-Event-ID", last)]));
}

#[test]
fn resume_by_query_has_no_gap_and_no_duplicate() {
    resume_rounds(|server, last| {
        server.subscribe(&format!("topic=t&lastEventID={}", enc(last)), &[])
    });
}

#[test]
fn header_wins_over_query() {
    let server = Server::start(&["--workers", "1"]);
    let ids: Vec<String> = (0..3)
        .map(|i| server.publish(&[("topic", "t"), ("data", &i.to_string())]))
        .collect();
    let mut sub = server.subscribe(
        &format!("topic=t&lastEventID={}", enc(&ids[0])),
        &[("Last-Event-ID", &ids[1])],
    );
    assert_eq!(sub.headers["last-event-id"], ids[1]);
    assert_eq!(sub.expect_event().id.as_ref(), Some(&ids[2]));
}

#[test]
fn earliest_replays_all_matching_history() {
    let server = Server::start(&["--workers", "2"]);
    for i in 0..5 {
        server.publish(&[("topic", "t"), ("data", &i.to_string())]);
        server.publish(&[("topic", "other"), ("data", "no")]);
    }
    for _ in 0..4 {
        // Whichever core it lands on, the same history is there.
        let mut sub = server.subscribe("topic=t", &[("Last-Event-ID", "earliest")]);
        assert_eq!(sub.headers["last-event-id"], "earliest");
        let got: Vec<_> = (0..5).map(|_| sub.expect_event().data).collect();
        assert_eq!(got, ["0", "1", "2", "3", "4"]);
        assert_eq!(sub.next(Duration::from_millis(50)), common::Got::Timeout);
    }
}

#[test]
fn an_id_no_longer_in_history_replays_what_is_left_and_says_earliest() {
    let server = Server::start(&["--workers", "1", "--history-size", "3"]);
    let ids: Vec<String> = (0..5)
        .map(|i| server.publish(&[("topic", "t"), ("data", &i.to_string())]))
        .collect();
    let mut sub = server.subscribe("topic=t", &[("Last-Event-ID", &ids[0])]);
    assert_eq!(sub.headers["last-event-id"], "earliest");
    let got: Vec<_> = (0..3).map(|_| sub.expect_event().data).collect();
    assert_eq!(got, ["2", "3", "4"]);
    // A fresh subscription without Last-Event-ID replays nothing and has no such header.
    let mut fresh = server.subscribe("topic=t", &[]);
    assert!(!fresh.headers.contains_key("last-event-id"));
    assert_eq!(fresh.next(Duration::from_millis(50)), common::Got::Timeout);
}

#[test]
fn history_max_age_drops_old_events() {
    let server = Server::start(&["--workers", "1", "--history-max-age", "200ms"]);
    server.publish(&[("topic", "t"), ("data", "old")]);
    std::thread::sleep(Duration::from_millis(400));
    server.publish(&[("topic", "t"), ("data", "new")]);
    let mut sub = server.subscribe("topic=t", &[("Last-Event-ID", "earliest")]);
    assert_eq!(sub.expect_event().data, "new");
    assert_eq!(sub.next(Duration::from_millis(50)), common::Got::Timeout);
}

#[test]
fn streams_ended_by_max_stream_duration_resume_without_gap() {
    let server = Server::start(&[
        "--workers",
        "2",
        "--max-stream-duration",
        "300ms",
        "--heartbeat-interval",
        "100ms",
    ]);
    // Subscribed before the first publish: every event must arrive.
    let mut sub = server.subscribe("topic=t", &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = background_publisher(&server, stop.clone());
    let mut seen: Vec<String> = Vec::new();
    let mut closes = 0;
    let start = std::time::Instant::now();
    // Read like an EventSource: when the server ends the stream, reconnect with the last id.
    while closes < 4 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "only {closes} server closes"
        );
        match sub.next(Duration::from_secs(5)) {
            common::Got::Event(e) => seen.push(e.id.unwrap()),
            common::Got::Closed => {
                closes += 1;
                let last = seen.last().cloned().unwrap_or_else(|| "earliest".into());
                sub = server.subscribe("topic=t", &[("Last-Event-ID", &last)]);
            }
            common::Got::Timeout => panic!("no event for 5 s"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let published = publisher.join().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while seen.last() != published.last() && std::time::Instant::now() < deadline {
        match sub.next(Duration::from_secs(2)) {
            common::Got::Event(e) => seen.push(e.id.unwrap()),
            common::Got::Closed => {
                let last = seen.last().cloned().unwrap();
                sub = server.subscribe("topic=t", &[("Last-Event-ID", &last)]);
            }
            common::Got::Timeout => break,
        }
    }
    if seen != published {
        let pos = |id: &String| published.iter().position(|p| p == id);
        let positions: Vec<_> = seen.iter().map(pos).collect();
        let breaks: Vec<_> = positions
            .windows(2)
            .enumerate()
            .filter(|(_, w)| w[1] != w[0].map(|p| p + 1))
            .map(|(i, w)| (i, w[0], w[1]))
            .collect();
        panic!(
            "gap or duplicate across server-ended streams: seen {} of {}, breaks (index, from, to): {breaks:?}",
            seen.len(),
            published.len()
        );
    }
}
