//! SIGTERM: stop accepting, finish publishes in flight, deliver everything acknowledged,
//! close subscribers, exit within `shutdown_timeout`.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::Server;

#[test]
fn graceful_shutdown_delivers_every_acknowledged_event_then_closes() {
    let mut server = Server::start(&[
        "--workers",
        "2",
        "--shutdown-timeout",
        "3s",
        "--drain-period",
        "300ms",
    ]);
    let mut subs: Vec<_> = (0..8).map(|_| server.subscribe("topic=t", &[])).collect();
    let workers: HashSet<usize> = subs.iter().map(|s| s.worker()).collect();

    // Publishers on separate connections keep publishing through the signal.
    let publishers: Vec<_> = (0..4)
        .map(|w| {
            let mut p = server.publisher();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for i in 0..100_000 {
                    match p.try_post(&[("topic", "t"), ("data", &format!("{w}-{i}"))]) {
                        Some(r) if r.status == 200 => acked.push(r.body),
                        Some(r) => {
                            assert_eq!(r.status, 503, "{}", r.body);
                            break;
                        }
                        None => break, // connection closed by the server
                    }
                }
                acked
            })
        })
        .collect();
    // Let some traffic flow: wait until every subscriber has seen 50 events.
    let mut seen: Vec<Vec<String>> = subs
        .iter_mut()
        .map(|s| (0..50).map(|_| s.expect_event().id.unwrap()).collect())
        .collect();

    let start = Instant::now();
    server.sigterm();
    let acked: HashSet<String> = publishers
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    for (sub, seen) in subs.iter_mut().zip(seen.iter_mut()) {
        let (rest, closed) = sub.drain(Duration::from_secs(5));
        assert!(closed, "subscriber not closed by shutdown");
        seen.extend(rest.into_iter().map(|e| e.id.unwrap()));
        let got: HashSet<String> = seen.iter().cloned().collect();
        assert_eq!(got.len(), seen.len(), "duplicate delivery");
        let missing: Vec<_> = acked.difference(&got).collect();
        assert!(
            missing.is_empty(),
            "acknowledged but never delivered: {missing:?}"
        );
    }
    let status = server
        .wait_exit(Duration::from_secs(4))
        .expect("did not exit within shutdown_timeout");
    assert!(status.success(), "{status:?}");
    let took = start.elapsed();
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    eprintln!(
        "{} events acknowledged, subscribers on workers {workers:?}, shutdown in {took:?}",
        acked.len()
    );
}

#[test]
fn a_stopping_gateway_accepts_no_new_connections() {
    let mut server = Server::start(&[
        "--workers",
        "2",
        "--shutdown-timeout",
        "2s",
        "--drain-period",
        "200ms",
    ]);
    let addr = server.addr;
    let sub = server.subscribe("topic=t", &[]);
    server.sigterm();
    server
        .wait_exit(Duration::from_secs(3))
        .expect("did not exit");
    drop(sub);
    assert!(std::net::TcpStream::connect(addr).is_err());
}
