//! The redis engine over real sockets: several gateway processes on one real `redis-server`
//! (started here on a free port; installed by `.ci/run`).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{admin_get, metric_sum, Got, Proxy, Redis, Server};

fn node(redis: &Redis, workers: &str) -> Server {
    node_with(redis, workers, &[])
}

/// A node with more flags.
fn node_with(redis: &Redis, workers: &str, extra: &[&str]) -> Server {
    let url = redis.url();
    let mut args = vec![
        "--engine",
        "redis",
        "--redis-url",
        &url,
        "--workers",
        workers,
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

const QUERY: &str = "topic=https://example.com/books/%7Bid%7D";

#[test]
fn three_nodes_deliver_every_event_in_one_order() {
    let Some(redis) = Redis::start() else { return };
    let nodes = [node(&redis, "1"), node(&redis, "2"), node(&redis, "1")];
    // Two subscribers per node (on two cores where the node has two).
    let mut subs: Vec<_> = nodes
        .iter()
        .flat_map(|n| [n.subscribe(QUERY, &[]), n.subscribe(QUERY, &[])])
        .collect();
    for s in &subs {
        assert_eq!(s.status, 200);
    }
    let mut publishers: Vec<_> = nodes.iter().map(Server::publisher).collect();
    // Each publish is answered before the next is sent, round-robin over the nodes: the
    // one order must be exactly the order of the answers.
    let mut sent = Vec::new();
    for i in 0..30 {
        let topic = format!("https://example.com/books/{i}");
        let data = format!("event {i}");
        let r = publishers[i % 3].post(&[("topic", &topic), ("data", &data)]);
        assert_eq!(r.status, 200, "publish {i} on node {}: {}", i % 3, r.body);
        sent.push(r.body);
    }
    // Not matched by the selector: no subscriber may see it.
    let r = publishers[0].post(&[("topic", "https://example.com/authors/1"), ("data", "x")]);
    assert_eq!(r.status, 200);
    for (k, s) in subs.iter_mut().enumerate() {
        let mut got = Vec::new();
        while got.len() < sent.len() {
            match s.next(Duration::from_secs(10)) {
                Got::Event(e) => {
                    assert_eq!(e.data, format!("event {}", got.len()), "subscriber {k}");
                    got.push(e.id.expect("id"));
                }
                other => panic!("subscriber {k} after {} events: {other:?}", got.len()),
            }
        }
        assert_eq!(got, sent, "subscriber {k} saw another order");
        assert_eq!(
            s.next(Duration::from_millis(300)),
            Got::Timeout,
            "subscriber {k}"
        );
    }
}

#[test]
fn private_updates_reach_only_authorized_subscribers_on_every_node() {
    let Some(redis) = Redis::start() else { return };
    let a = node(&redis, "1");
    let b = node(&redis, "1");
    let token = common::token(r#"{"mercure":{"subscribe":["https://example.com/users/7"]}}"#);
    let cookie = format!("Bearer {token}");
    let mut allowed = b.subscribe(
        "topic=https://example.com/users/%7Bid%7D",
        &[("Authorization", &cookie)],
    );
    let mut anonymous = b.subscribe("topic=https://example.com/users/%7Bid%7D", &[]);
    assert_eq!((allowed.status, anonymous.status), (200, 200));
    let mut p = a.publisher();
    let r = p.post(&[
        ("topic", "https://example.com/users/7"),
        ("data", "secret"),
        ("private", "on"),
    ]);
    assert_eq!(r.status, 200, "{}", r.body);
    let r = p.post(&[("topic", "https://example.com/users/8"), ("data", "public")]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(allowed.expect_event().data, "secret");
    assert_eq!(allowed.expect_event().data, "public");
    assert_eq!(anonymous.expect_event().data, "public");
}

#[test]
fn publishes_are_refused_while_redis_is_down_and_flow_again_after() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let port = redis.port;
    let a = node(&redis, "2");
    let b = node(&redis, "1");
    let mut sub = a.subscribe(QUERY, &[]);
    let first = b.publish(&[("topic", "https://example.com/books/1"), ("data", "before")]);
    assert_eq!(sub.expect_event().id.as_deref(), Some(first.as_str()));
    assert_eq!(admin_get(&a, "/readyz").status, 200);
    let m = admin_get(&b, "/metrics").body;
    assert_eq!(
        metric_sum(&m, "ssegate_engine_up", "engine=\"redis\""),
        1,
        "{m}"
    );
    assert_eq!(
        metric_sum(
            &m,
            "ssegate_engine_publish_seconds_count",
            "engine=\"redis\""
        ),
        1,
        "{m}"
    );

    redis.kill();
    let started = Instant::now();
    let mut p = a.publisher();
    let r = p.post(&[("topic", "https://example.com/books/2"), ("data", "lost?")]);
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.headers.get("retry-after").map(String::as_str), Some("1"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused after {:?}",
        started.elapsed()
    );
    // Another node, another connection: refused too, never a 200 for what was not stored.
    let r = b
        .publisher()
        .post(&[("topic", "https://example.com/books/3"), ("data", "x")]);
    assert_eq!(r.status, 503, "{}", r.body);
    // Not ready while the engine refuses, with the reason; the process itself is healthy.
    let r = admin_get(&a, "/readyz");
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("Redis"), "{}", r.body);
    assert_eq!(admin_get(&a, "/healthz").status, 200);
    let m = admin_get(&a, "/metrics").body;
    assert_eq!(
        metric_sum(&m, "ssegate_engine_up", "engine=\"redis\""),
        0,
        "{m}"
    );

    let _redis = Redis::start_on(port).expect("redis-server again");
    // The nodes reconnect on their own (back-off at most ~2 s): publish until accepted.
    let deadline = Instant::now() + Duration::from_secs(15);
    let id = loop {
        let r = b
            .publisher()
            .post(&[("topic", "https://example.com/books/4"), ("data", "after")]);
        if r.status == 200 {
            break r.body;
        }
        assert_eq!(r.status, 503, "{}", r.body);
        assert!(
            Instant::now() < deadline,
            "Redis back, publishes still refused"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // The subscriber stayed connected through it and gets what came through the other node.
    let e = sub.expect_event();
    assert_eq!(
        (e.id.as_deref(), e.data.as_str()),
        (Some(id.as_str()), "after")
    );
    assert_eq!(admin_get(&b, "/readyz").status, 200);
    let m = admin_get(&b, "/metrics").body;
    assert_eq!(
        metric_sum(&m, "ssegate_engine_up", "engine=\"redis\""),
        1,
        "{m}"
    );
    assert!(metric_sum(&m, "ssegate_engine_reconnects_total", "engine=\"redis\"") >= 1);
}

#[test]
fn a_node_that_cannot_reach_redis_does_not_start() {
    let port = common::free_port();
    let out = Command::new(env!("CARGO_BIN_EXE_ssegate"))
        .args(["--listen", "127.0.0.1:0", "--admin-addr", "off"])
        .args(["--publisher-jwt-key", common::KEY, "--engine", "redis"])
        .args(["--redis-url", &format!("redis://127.0.0.1:{port}")])
        .args(["--redis-timeout", "500ms"])
        .stdin(Stdio::null())
        .output()
        .expect("run ssegate");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot start the redis engine at 127.0.0.1:"),
        "{stderr}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_ssegate"))
        .args([
            "--engine",
            "redis",
            "--redis-url",
            "http://x",
            "--check-config",
        ])
        .output()
        .expect("run ssegate");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid `redis_url`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_node_started_later_serves_resume_from_the_stream() {
    let Some(redis) = Redis::start() else { return };
    let a = node(&redis, "1");
    let ids: Vec<String> = (0..5)
        .map(|i| {
            a.publish(&[
                ("topic", &format!("https://example.com/books/{i}")),
                ("data", &format!("event {i}")),
            ])
        })
        .collect();
    // A node that did not exist when they were published: it loads the stream's tail
    // before it accepts, so resume works on its very first connection, on every core.
    let b = node(&redis, "2");
    for _ in 0..4 {
        let mut s = b.subscribe(QUERY, &[("Last-Event-ID", &ids[1])]);
        assert_eq!(s.status, 200);
        for (i, id) in ids.iter().enumerate().skip(2) {
            let e = s.expect_event();
            assert_eq!(
                (e.id.as_deref(), e.data),
                (Some(id.as_str()), format!("event {i}"))
            );
        }
        assert_eq!(s.next(Duration::from_millis(200)), Got::Timeout);
    }
    let mut all = b.subscribe(&format!("{QUERY}&lastEventID=earliest"), &[]);
    for id in &ids {
        assert_eq!(all.expect_event().id.as_deref(), Some(id.as_str()));
    }
    // And then live, whichever node publishes.
    let next = a.publish(&[("topic", "https://example.com/books/9"), ("data", "live")]);
    assert_eq!(all.expect_event().id.as_deref(), Some(next.as_str()));
}

#[test]
fn a_replaced_stream_is_not_spliced_onto_the_old_one() {
    // Redis loses everything (a flush, or a failover to an empty replica), or someone
    // deletes the stream alone.
    for loss in [&["FLUSHALL"][..], &["DEL", "ssegate:events"][..]] {
        a_lost_stream_resumes_as_earliest(loss);
    }
}

fn a_lost_stream_resumes_as_earliest(loss: &[&str]) {
    let Some(redis) = Redis::start() else { return };
    let a = node(&redis, "1");
    let b = node(&redis, "2");
    let topic = "https://example.com/books/1";
    let old: Vec<String> = (0..2)
        .map(|i| a.publish(&[("topic", topic), ("data", &format!("old {i}"))]))
        .collect();
    // Connected after the old events (b may read them a moment after a answered).
    let mut live = b.subscribe(QUERY, &[("Last-Event-ID", &old[1])]);
    assert_eq!(live.headers.get("last-event-id"), Some(&old[1]));
    assert!(redis.command(loss).starts_with(['+', ':']), "{loss:?}");
    let new = a.publish(&[("topic", topic), ("data", "new 0")]);
    // A connected subscriber goes on with the new stream, missing nothing of it.
    let e = live.expect_event();
    assert_eq!(
        (e.id.as_deref(), e.data.as_str()),
        (Some(new.as_str()), "new 0")
    );
    // A client holding an id of the old stream gets `earliest` (events may have been
    // lost) and the new stream's events, on every node and core, not a splice after it.
    for n in [&a, &b, &b] {
        let mut s = n.subscribe(QUERY, &[("Last-Event-ID", &old[1])]);
        assert_eq!(s.status, 200);
        assert_eq!(
            s.headers.get("last-event-id").map(String::as_str),
            Some("earliest")
        );
        assert_eq!(s.expect_event().id.as_deref(), Some(new.as_str()));
        assert_eq!(s.next(Duration::from_millis(200)), Got::Timeout);
    }
}

#[test]
fn resume_on_a_node_that_has_not_read_the_id_yet_waits_for_it() {
    let Some(redis) = Redis::start() else { return };
    let b = node(&redis, "2");
    // Another node writes a burst straight into the stream (the entries ssegate writes),
    // so that b's reader is still working through it when the client arrives with the
    // id of its next-to-last entry.
    let n = 5000;
    let xadds: Vec<Vec<String>> = (0..n)
        .map(|i| {
            [
                "XADD",
                "ssegate:events",
                "*",
                "i",
                &format!("urn:ext:{i}"),
                "t",
            ]
            .iter()
            .map(|s| s.to_string())
            .chain([
                format!("https://example.com/books/{i}"),
                "d".into(),
                format!("burst {i}"),
            ])
            .collect()
        })
        .collect();
    let replies = redis.pipeline(&xadds);
    assert!(
        replies.iter().all(|r| r.contains('-')),
        "{:?}",
        &replies[..3]
    );
    let last_but_one = format!("urn:ext:{}", n - 2);
    let mut s = b.subscribe(QUERY, &[("Last-Event-ID", &last_but_one)]);
    assert_eq!(s.status, 200);
    // Found, not `earliest`: exactly the one entry after it, then nothing.
    assert_eq!(
        s.headers.get("last-event-id").map(String::as_str),
        Some(last_but_one.as_str())
    );
    let e = s.expect_event();
    assert_eq!(
        (e.id.as_deref(), e.data),
        (
            Some(format!("urn:ext:{}", n - 1).as_str()),
            format!("burst {}", n - 1)
        )
    );
    assert_eq!(s.next(Duration::from_millis(200)), Got::Timeout);
}

#[test]
fn a_subscriber_moving_between_nodes_under_publishing_gets_every_event_once_in_order() {
    let Some(redis) = Redis::start() else { return };
    let nodes = [node(&redis, "1"), node(&redis, "2"), node(&redis, "1")];
    let total = 300;
    let mut s = nodes[0].subscribe(QUERY, &[]);
    assert_eq!(s.status, 200);
    // Published without pause, round-robin over the nodes, while the subscriber moves.
    let mut publishers: Vec<_> = nodes.iter().map(Server::publisher).collect();
    let publishing = std::thread::spawn(move || {
        (0..total)
            .map(|i| {
                let topic = format!("https://example.com/books/{i}");
                let r = publishers[i % 3].post(&[("topic", &topic), ("data", &format!("e{i}"))]);
                assert_eq!(r.status, 200, "publish {i}: {}", r.body);
                r.body
            })
            .collect::<Vec<String>>()
    });
    let mut got: Vec<String> = Vec::new();
    let mut moves = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < total {
        assert!(Instant::now() < deadline, "only {} events", got.len());
        match s.next(Duration::from_secs(10)) {
            Got::Event(e) => got.push(e.id.expect("id")),
            other => panic!("after {} events: {other:?}", got.len()),
        }
        // Every 23 events, drop the connection and resume on the next node.
        if got.len() % 23 == 0 && got.len() < total {
            moves += 1;
            let last = got.last().unwrap().clone();
            s = nodes[moves % 3].subscribe(QUERY, &[("Last-Event-ID", &last)]);
            assert_eq!(s.status, 200);
            assert_eq!(s.headers.get("last-event-id"), Some(&last), "move {moves}");
        }
    }
    let sent = publishing.join().expect("publisher");
    assert!(moves >= 10, "{moves} moves");
    assert_eq!(got, sent, "every event once, in the order of the answers");
    assert_eq!(s.next(Duration::from_millis(300)), Got::Timeout);
}

#[test]
fn a_node_killed_and_started_again_serves_resume_from_before_the_kill() {
    let Some(redis) = Redis::start() else { return };
    let mut a = node(&redis, "2");
    let ids: Vec<String> = (0..3)
        .map(|i| {
            a.publish(&[
                ("topic", "https://example.com/books/1"),
                ("data", &format!("before {i}")),
            ])
        })
        .collect();
    let addr = a.addr.to_string();
    let killed = Command::new("kill")
        .args(["-9", &a.pid().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    assert!(a.wait_exit(Duration::from_secs(10)).is_some(), "not killed");
    let engine = ["--engine", "redis", "--redis-url", &redis.url()];
    let again = Server::start_on(&addr, &[&engine[..], &["--workers", "2"]].concat());
    for _ in 0..4 {
        let mut s = again.subscribe(QUERY, &[("Last-Event-ID", &ids[0])]);
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
}

#[test]
fn a_node_cut_off_from_redis_gets_what_the_others_published_meanwhile() {
    let Some(redis) = Redis::start() else { return };
    let proxy = Proxy::start(redis.port);
    let a = Server::start(&[
        "--engine",
        "redis",
        "--redis-url",
        &proxy.url(),
        "--redis-timeout",
        "500ms",
        "--workers",
        "2",
        "--heartbeat-interval",
        "200ms",
    ]);
    let b = node(&redis, "1");
    let mut sub = a.subscribe(QUERY, &[]);
    let first = b.publish(&[("topic", "https://example.com/books/0"), ("data", "e0")]);
    assert_eq!(sub.expect_event().id.as_deref(), Some(first.as_str()));

    proxy.cut();
    // a notices at once (its reader's connection closed): not ready, publishes refused.
    let deadline = Instant::now() + Duration::from_secs(5);
    while admin_get(&a, "/readyz").status != 503 {
        assert!(Instant::now() < deadline, "a still says ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = a.publisher().post(&[
        ("topic", "https://example.com/books/1"),
        ("data", "refused"),
    ]);
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.headers.contains_key("retry-after"));
    // The others go on.
    let meanwhile: Vec<String> = (1..4)
        .map(|i| {
            b.publish(&[
                ("topic", &format!("https://example.com/books/{i}")),
                ("data", &format!("e{i}")),
            ])
        })
        .collect();
    // a's subscriber stays connected: heartbeats keep coming, no event.
    let beats = sub.comments;
    assert_eq!(sub.next(Duration::from_millis(700)), Got::Timeout);
    assert!(sub.comments > beats, "no heartbeat while cut off");

    proxy.restore();
    // Back: a's reader continues from its last id, so its subscriber gets what b published
    // while a was cut off, in order, then what a publishes.
    for id in &meanwhile {
        let e = sub.next(Duration::from_secs(10));
        match e {
            Got::Event(e) => assert_eq!(e.id.as_deref(), Some(id.as_str())),
            other => panic!("{other:?}"),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let id = loop {
        // A 503 ends its connection: a new one each time.
        let r = a
            .publisher()
            .post(&[("topic", "https://example.com/books/9"), ("data", "after")]);
        if r.status == 200 {
            break r.body;
        }
        assert_eq!(r.status, 503, "{}", r.body);
        assert!(Instant::now() < deadline, "a still refuses");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(sub.expect_event().id.as_deref(), Some(id.as_str()));
    assert_eq!(admin_get(&a, "/readyz").status, 200);
}

#[test]
fn resume_from_an_id_older_than_memory_reads_the_rest_from_the_stream() {
    let Some(redis) = Redis::start() else { return };
    // Memory keeps five events; the stream keeps them all.
    let small = |workers| node_with(&redis, workers, &["--history-size", "5"]);
    let a = small("1");
    let b = small("2");
    // More than two pages of the stream; every third a custom id, books and authors mixed.
    let mut p = a.publisher();
    let mut books = Vec::new();
    let mut custom = Vec::new();
    for i in 0..1300 {
        let topic = match i % 2 {
            0 => format!("https://example.com/books/{i}"),
            _ => format!("https://example.com/authors/{i}"),
        };
        let data = format!("event {i}");
        let id = format!("custom-{i}");
        let mut form = vec![("topic", topic.as_str()), ("data", data.as_str())];
        if i % 3 == 0 {
            form.push(("id", id.as_str()));
        }
        let r = p.post(&form);
        assert_eq!(r.status, 200, "publish {i}: {}", r.body);
        if i % 3 == 0 {
            assert_eq!(r.body, id);
            custom.push(i);
        }
        books.push((i, r.body));
    }
    // Resumes on both of b's cores, after a hub-made id and after a custom one, while a
    // publisher keeps going: each gets every matching event after its id once, in order,
    // then live.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let more = {
        let stop = stop.clone();
        let mut p = a.publisher();
        std::thread::spawn(move || {
            let mut ids = Vec::new();
            for i in (1300..1700).step_by(2) {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let topic = format!("https://example.com/books/{i}");
                let r = p.post(&[("topic", &topic), ("data", &format!("event {i}"))]);
                assert_eq!(r.status, 200, "publish {i}: {}", r.body);
                ids.push((i, r.body));
            }
            ids
        })
    };
    let after = [1usize, 3, 100, 601];
    let mut subs: Vec<_> = after
        .iter()
        .map(|&k| {
            let id = &books[k].1;
            let s = b.subscribe(QUERY, &[("Last-Event-ID", id)]);
            assert_eq!(s.status, 200);
            assert_eq!(s.headers.get("last-event-id"), Some(id), "after {k}");
            s
        })
        .collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let later = more.join().unwrap();
    let last = a.publish(&[
        ("topic", "https://example.com/books/live"),
        ("data", "live"),
    ]);
    let everything: Vec<_> = books.iter().chain(later.iter()).cloned().collect();
    for (s, &k) in subs.iter_mut().zip(&after) {
        for (i, id) in everything.iter().filter(|(i, _)| *i > k && i % 2 == 0) {
            let e = s.expect_event();
            assert_eq!(
                (e.id.as_deref(), e.data.as_str()),
                (Some(id.as_str()), format!("event {i}").as_str()),
                "after {k}"
            );
        }
        assert_eq!(s.expect_event().id, Some(last.clone()), "after {k}");
        assert_eq!(
            s.next(Duration::from_millis(200)),
            Got::Timeout,
            "after {k}"
        );
    }
    // An id the stream never held: `earliest`, and what memory keeps.
    let mut unknown = b.subscribe(QUERY, &[("Last-Event-ID", "urn:uuid:never")]);
    assert_eq!(
        unknown.headers.get("last-event-id").map(String::as_str),
        Some("earliest")
    );
    let tail = everything[everything.len() - 4..].iter().map(|(_, id)| id);
    for id in tail.chain([&last]) {
        assert_eq!(unknown.expect_event().id.as_ref(), Some(id));
    }
    // Only the publishers' own ids are indexed: a hub-made id names its stream entry.
    assert_eq!(
        redis.command(&["ZCARD", "ssegate:events:ids"]),
        format!(":{}", custom.len())
    );
    let m = admin_get(&b, "/metrics").body;
    assert_eq!(
        metric_sum(&m, "ssegate_resumes_from_engine_total", ""),
        after.len() as u64,
        "{m}"
    );
}

#[test]
fn the_id_index_is_trimmed_with_the_stream_and_a_trimmed_id_resumes_as_earliest() {
    let Some(redis) = Redis::start() else { return };
    let a = node_with(
        &redis,
        "1",
        &["--history-size", "5", "--redis-history-size", "100"],
    );
    // Publishers' own ids: those are the ones the index holds.
    let mut p = a.publisher();
    let ids: Vec<String> = (0..1500)
        .map(|i| {
            let r = p.post(&[
                ("topic", &format!("https://example.com/books/{i}")),
                ("data", &format!("event {i}")),
                ("id", &format!("mine-{i}")),
            ]);
            assert_eq!(r.status, 200, "publish {i}: {}", r.body);
            r.body
        })
        .collect();
    // `MAXLEN ~ 100` keeps a little more than 100 entries; the index at most 1024 more.
    let count = |args: &[&str]| -> usize { redis.command(args)[1..].parse().unwrap() };
    let (xlen, zcard) = (
        count(&["XLEN", "ssegate:events"]),
        count(&["ZCARD", "ssegate:events:ids"]),
    );
    assert!((100..=300).contains(&xlen), "XLEN {xlen}");
    assert!((xlen..=100 + 1024 + 1).contains(&zcard), "ZCARD {zcard}");
    // Trimmed from the stream: `earliest`, then the five memory keeps.
    let mut gone = a.subscribe(QUERY, &[("Last-Event-ID", &ids[10])]);
    assert_eq!(
        gone.headers.get("last-event-id").map(String::as_str),
        Some("earliest")
    );
    for id in &ids[1495..] {
        assert_eq!(gone.expect_event().id.as_ref(), Some(id));
    }
    // Still in the stream, not in memory: from the stream.
    let mut kept = a.subscribe(QUERY, &[("Last-Event-ID", &ids[1450])]);
    assert_eq!(kept.headers.get("last-event-id"), Some(&ids[1450]));
    for id in &ids[1451..] {
        assert_eq!(kept.expect_event().id.as_ref(), Some(id));
    }
    assert_eq!(kept.next(Duration::from_millis(200)), Got::Timeout);
}

#[test]
fn rediss_carries_the_cluster_over_tls_and_refuses_a_certificate_it_does_not_trust() {
    let Some(redis) = Redis::start_tls() else {
        return;
    };
    let url = format!("rediss://localhost:{}", redis.port);
    let ca = common::fixture("redis-ca-cert.pem");
    let tls_node = |workers| {
        Server::start(&[
            "--engine",
            "redis",
            "--redis-url",
            &url,
            "--redis-tls-ca",
            &ca,
            "--workers",
            workers,
        ])
    };
    let a = tls_node("1");
    let b = tls_node("2");
    let mut sub = b.subscribe(QUERY, &[]);
    assert_eq!(sub.status, 200);
    let first = a.publish(&[
        ("topic", "https://example.com/books/1"),
        ("data", "over tls"),
    ]);
    let e = sub.expect_event();
    assert_eq!(
        (e.id.as_deref(), e.data.as_str()),
        (Some(first.as_str()), "over tls")
    );
    // Resume through the other node, from the stream.
    let second = b.publish(&[("topic", "https://example.com/books/2"), ("data", "two")]);
    let mut resumed = a.subscribe(QUERY, &[("Last-Event-ID", &first)]);
    assert_eq!(resumed.expect_event().id, Some(second));

    // A certificate that does not chain to the configured CA (the HTTPS fixture is its own
    // CA): the node does not start, and says it is TLS.
    let run = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_ssegate"))
            .args(["--listen", "127.0.0.1:0", "--admin-addr", "off"])
            .args(["--publisher-jwt-key", common::KEY, "--engine", "redis"])
            .args(["--redis-timeout", "1s"])
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .expect("run ssegate");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let other_ca = common::fixture("tls-a-cert.pem");
    let stderr = run(&["--redis-url", &url, "--redis-tls-ca", &other_ca]);
    assert!(stderr.contains("TLS to Redis"), "{stderr}");
    // A CA file for a plain URL is a configuration error.
    let plain = format!("redis://localhost:{}", redis.port);
    let stderr = run(&["--redis-url", &plain, "--redis-tls-ca", &ca]);
    assert!(stderr.contains("redis_tls_ca"), "{stderr}");
}
