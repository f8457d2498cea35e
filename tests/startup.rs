//! Start-up: every core reports ready, also when many gateways start at once.

mod common;

use common::Server;

#[test]
fn sixteen_gateways_started_at_once_all_report_ready() {
    // glommio 0.9 can park an executor that still has runnable work when its preempt timer
    // is short (glommio/glommio#53): with a 1 ms timer, about one start in ten hung here
    // before any core reported ready. `Server::start` fails the test if the ready line does
    // not come within its deadline.
    let threads: Vec<_> = (0..16)
        .map(|_| std::thread::spawn(|| Server::start(&["--workers", "2"]).addr))
        .collect();
    for t in threads {
        t.join().expect("a gateway did not report ready");
    }
}
