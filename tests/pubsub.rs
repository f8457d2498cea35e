//! Publish → subscribe over real sockets, on one core and across cores.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{Event, Server};

#[test]
fn round_trip_with_multiline_data_custom_id_type_and_retry() {
    let server = Server::start(&["--workers", "1"]);
    let mut sub = server.subscribe("topic=https%3A%2F%2Fexample.com%2Fbooks%2F1", &[]);
    assert_eq!(sub.status, 200);
    assert_eq!(sub.headers["content-type"], "text/event-stream");
    assert!(sub.headers["cache-control"].contains("no-cache"));
    assert_eq!(sub.headers["x-accel-buffering"], "no");

    let id = server.publish(&[
        ("topic", "https://example.com/books/1"),
        ("data", "line one\nline two\r\nline three\rline four"),
        ("id", "custom-42"),
        ("type", "book-updated"),
        ("retry", "2500"),
    ]);
    assert_eq!(id, "custom-42");
    assert_eq!(
        sub.expect_event(),
        Event {
            id: Some("custom-42".into()),
            event: Some("book-updated".into()),
            data: "line one\nline two\nline three\nline four".into(),
            retry: Some(2500),
        }
    );

    // Without a custom id the hub makes a urn:uuid, returned to the publisher and sent as id.
    let id = server.publish(&[("topic", "https://example.com/books/1"), ("data", "x")]);
    assert!(id.starts_with("urn:uuid:"), "{id}");
    let ev = sub.expect_event();
    assert_eq!(ev.id.as_deref(), Some(id.as_str()));
    assert_eq!(ev.data, "x");
    assert_eq!(ev.event, None);
}

#[test]
fn only_matching_topics_are_delivered_and_alternates_count() {
    let server = Server::start(&["--workers", "1"]);
    let mut books = server.subscribe("topic=books", &[]);
    let mut all = server.subscribe("topic=*", &[]);
    let mut two = server.subscribe("topic=a&topic=b", &[]);

    server.publish(&[("topic", "other"), ("data", "1")]);
    // Canonical "x", alternate "books": books subscribers get it.
    server.publish(&[("topic", "x"), ("topic", "books"), ("data", "2")]);
    // Matches both of `two`'s selectors: delivered once.
    server.publish(&[("topic", "a"), ("topic", "b"), ("data", "3")]);

    assert_eq!(books.expect_event().data, "2");
    let got: Vec<_> = (0..3).map(|_| all.expect_event().data).collect();
    assert_eq!(got, ["1", "2", "3"]);
    assert_eq!(two.expect_event().data, "3");
    // Nothing else arrives: a marker published last is the very next event each one sees.
    server.publish(&[("topic", "books"), ("topic", "a"), ("data", "end")]);
    assert_eq!(books.expect_event().data, "end");
    assert_eq!(two.expect_event().data, "end");
}

#[test]
fn publisher_keep_alive_serves_many_posts_on_one_connection() {
    let server = Server::start(&["--workers", "1"]);
    let mut sub = server.subscribe("topic=t", &[]);
    let mut publisher = server.publisher();
    let mut ids = Vec::new();
    for i in 0..200 {
        let r = publisher.post(&[("topic", "t"), ("data", &i.to_string())]);
        assert_eq!(r.status, 200);
        assert_eq!(r.headers["connection"], "keep-alive");
        ids.push(r.body);
    }
    for (i, id) in ids.iter().enumerate() {
        let ev = sub.expect_event();
        assert_eq!(ev.data, i.to_string());
        assert_eq!(ev.id.as_ref(), Some(id));
    }
}

/// Opens connections until one lands on each worker; the kernel's SO_REUSEPORT hash decides.
fn one_per_worker<T>(mut open: impl FnMut() -> (usize, T)) -> Vec<T> {
    let mut slots: Vec<Option<T>> = vec![None, None];
    for _ in 0..200 {
        let (w, t) = open();
        if slots[w].is_none() {
            slots[w] = Some(t);
        }
        if slots.iter().all(Option::is_some) {
            return slots.into_iter().map(Option::unwrap).collect();
        }
    }
    panic!("200 connections never reached both workers");
}

#[test]
fn events_cross_cores_in_one_order() {
    let server = Server::start(&["--workers", "2"]);
    let mut subs = one_per_worker(|| {
        let s = server.subscribe("topic=t", &[]);
        (s.worker(), s)
    });
    let mut pubs = one_per_worker(|| {
        let mut p = server.publisher();
        let r = p.post(&[("topic", "warmup")]);
        (r.headers["x-ssegate-worker"].parse().unwrap(), p)
    });
    assert_eq!(subs[0].worker(), 0);
    assert_eq!(subs[1].worker(), 1);

    // Interleave publishes through both cores' connections.
    let mut published = Vec::new();
    for i in 0..100 {
        let p = &mut pubs[i % 2];
        let r = p.post(&[("topic", "t"), ("data", &format!("{i}"))]);
        assert_eq!(r.status, 200);
        published.push(r.body);
    }
    for sub in &mut subs {
        let got: Vec<String> = (0..100).map(|_| sub.expect_event().id.unwrap()).collect();
        assert_eq!(got, published, "worker {} saw another order", sub.worker());
    }
    // Concurrent publishers on both cores: every subscriber sees the same single order.
    let handles: Vec<_> = pubs
        .into_iter()
        .enumerate()
        .map(|(w, mut p)| {
            std::thread::spawn(move || {
                (0..100)
                    .map(|i| {
                        p.post(&[("topic", "t"), ("data", &format!("{w}-{i}"))])
                            .body
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let sent: HashSet<String> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let orders: Vec<Vec<String>> = subs
        .iter_mut()
        .map(|s| (0..200).map(|_| s.expect_event().id.unwrap()).collect())
        .collect();
    assert_eq!(orders[0], orders[1]);
    assert_eq!(orders[0].iter().cloned().collect::<HashSet<_>>(), sent);
    assert_eq!(
        subs[0].next(Duration::from_millis(100)),
        common::Got::Timeout
    );
}
