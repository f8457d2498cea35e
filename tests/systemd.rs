//! The systemd notify protocol, for real: the binary runs with NOTIFY_SOCKET pointing at a
//! datagram socket this test listens on.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Receives notify datagrams until one contains `what` (bounded by `limit`); returns the
/// messages seen.
fn wait_for(sock: &UnixDatagram, what: &str, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        sock.set_read_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ))
        .unwrap();
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let hit = msg.lines().any(|l| l == what);
                seen.push(msg);
                if hit {
                    return seen;
                }
            }
            Err(_) => break,
        }
    }
    panic!("no {what} within {limit:?}; saw {seen:?}");
}

#[test]
fn ready_watchdog_and_stopping_are_sent_at_the_right_moments() {
    let dir = std::env::temp_dir().join(format!("ssegate-notify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&path);
    let sock = UnixDatagram::bind(&path).unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_ssegate"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--publisher-jwt-key",
            "k",
        ])
        .args([
            "--log-level",
            "warn",
            "--admin-addr",
            "127.0.0.1:0",
            "--drain-period",
            "100ms",
        ])
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "200000")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());

    // READY=1 comes once the listeners are bound: by then the port accepts connections.
    let seen = wait_for(&sock, "READY=1", Duration::from_secs(20));
    assert!(!seen.iter().any(|m| m.contains("STOPPING=1")));
    let addr = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("ssegate listening on ")
                .map(|r| r.split(' ').next().unwrap().to_owned())
        })
        .expect("ready line");
    std::net::TcpStream::connect(&addr).expect("READY=1 before the port accepts");

    // WATCHDOG=1 at half the period (100 ms) while the cores run: several in a second.
    let start = Instant::now();
    for _ in 0..3 {
        wait_for(&sock, "WATCHDOG=1", Duration::from_secs(2));
    }
    assert!(start.elapsed() < Duration::from_secs(2));

    // SIGTERM: STOPPING=1, then a clean exit.
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    wait_for(&sock, "STOPPING=1", Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "did not exit after STOPPING=1");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
