//! The admin listener: /metrics moves as a workload runs, /healthz and /readyz answer.

mod common;

use common::{admin_get, metric_sum, raw_request, Server};

#[test]
fn metrics_follow_the_workload_on_every_core() {
    let server = Server::start(&["--workers", "2"]);
    assert_eq!(admin_get(&server, "/healthz").status, 200);
    assert_eq!(admin_get(&server, "/readyz").status, 200);
    let before = admin_get(&server, "/metrics");
    assert_eq!(before.status, 200);
    assert!(before.headers["content-type"].starts_with("text/plain"));
    assert!(before.body.contains("ssegate_build_info{version="));
    assert_eq!(metric_sum(&before.body, "ssegate_subscribers", ""), 0);
    // Both cores report.
    assert!(before.body.contains("ssegate_subscribers{core=\"0\"}"));
    assert!(before.body.contains("ssegate_subscribers{core=\"1\"}"));

    let mut subs: Vec<_> = (0..4).map(|_| server.subscribe("topic=t", &[])).collect();
    for i in 0..5 {
        server.publish(&[("topic", "t"), ("data", &i.to_string())]);
    }
    for s in &mut subs {
        for _ in 0..5 {
            s.expect_event();
        }
    }
    assert_eq!(
        raw_request(
            &server,
            b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .status,
        404
    );

    // A refused publish (no token) is counted by status.
    let mut anon = server.publisher();
    anon.token = "not-a-token".into();
    assert_eq!(anon.post(&[("topic", "t"), ("data", "x")]).status, 401);

    let after = admin_get(&server, "/metrics").body;
    // One latency observation per write, at least one write per subscriber.
    let observed = metric_sum(&after, "ssegate_delivery_latency_seconds_count", "");
    assert!((4..=20).contains(&observed), "{observed} observations");
    assert_eq!(
        metric_sum(
            &after,
            "ssegate_delivery_latency_seconds_bucket",
            "le=\"+Inf\""
        ),
        observed
    );
    assert!(after.contains("# TYPE ssegate_delivery_latency_seconds histogram\n"));
    assert!(after.contains("ssegate_delivery_latency_seconds_sum{core=\"0\"}"));
    assert!(after.contains("ssegate_queued_bytes{core=\"1\"}"));
    assert_eq!(
        metric_sum(&after, "ssegate_publish_errors_total", "status=\"401\""),
        1
    );
    assert!(after.contains("ssegate_tls_handshakes_total{core=\"0\"} 0\n"));
    assert!(after.contains("ssegate_tls_handshake_failures_total{core=\"0\"} 0\n"));
    assert!(after.contains(&format!(
        "ssegate_build_info{{version=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION")
    )));
    for reason in [
        "client_closed",
        "answered",
        "slow_consumer",
        "write_timeout",
    ] {
        assert!(
            after.contains(&format!(
                "ssegate_connections_closed_total{{core=\"0\",reason=\"{reason}\"}}"
            )),
            "no closed series for {reason}"
        );
    }
    // The 404's connection was closed by the gateway after its answer; the count follows
    // once its task has ended (bounded wait: the close happens after the client read it).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let m = admin_get(&server, "/metrics").body;
        if metric_sum(
            &m,
            "ssegate_connections_closed_total",
            "reason=\"answered\"",
        ) >= 1
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no connection counted as closed after an answer"
        );
    }
    assert_eq!(metric_sum(&after, "ssegate_subscribers", ""), 4);
    assert_eq!(metric_sum(&after, "ssegate_events_delivered_total", ""), 20);
    assert_eq!(metric_sum(&after, "ssegate_events_published_total", ""), 5);
    assert_eq!(
        metric_sum(&after, "ssegate_requests_refused_total", "status=\"404\""),
        1
    );
    assert!(metric_sum(&after, "ssegate_bytes_written_total", "") > 0);
    assert!(metric_sum(&after, "ssegate_connections_accepted_total", "") >= 10);
    assert_eq!(
        metric_sum(&after, "ssegate_history_events", "core=\"0\""),
        5
    );
    assert_eq!(
        metric_sum(&after, "ssegate_history_events", "core=\"1\""),
        5
    );
    assert_eq!(admin_get(&server, "/nope").status, 404);
}
