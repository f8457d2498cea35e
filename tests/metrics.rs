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
            b"GET /nowhere HTTP/1.1\r\nConnection: close\r\n\r\n"
        )
        .status,
        404
    );

    let after = admin_get(&server, "/metrics").body;
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
