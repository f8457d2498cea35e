//! The server under test as seen from outside: its memory and CPU time read from /proc, and,
//! for the smoke mode, an ssegate process started and stopped by the load generator.

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::sys;

/// Most processes followed (nginx has a master, its workers and a cache manager at most).
const MAX_PROCS: usize = 64;

/// The server's processes: the given pids and all their descendants, found afresh at every
/// read so that nginx's workers are counted with their master.
#[derive(Debug, Clone)]
pub struct ServerProcs {
    roots: Vec<u32>,
    ticks_per_sec: u64,
}

impl ServerProcs {
    pub fn new(roots: Vec<u32>) -> Self {
        ServerProcs {
            roots,
            ticks_per_sec: sys::clock_ticks_per_sec(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// The roots and their descendants (breadth first, at most MAX_PROCS).
    fn pids(&self) -> anyhow::Result<Vec<u32>> {
        let mut seen = BTreeSet::new();
        let mut queue: Vec<u32> = self.roots.clone();
        while let Some(pid) = queue.pop() {
            if seen.len() >= MAX_PROCS || !seen.insert(pid) {
                continue;
            }
            let tasks = Path::new("/proc").join(pid.to_string()).join("task");
            let entries = std::fs::read_dir(&tasks)
                .with_context(|| format!("server process {pid} is gone"))?;
            for task in entries.flatten() {
                if let Ok(children) = std::fs::read_to_string(task.path().join("children")) {
                    queue.extend(
                        children
                            .split_whitespace()
                            .filter_map(|c| c.parse::<u32>().ok()),
                    );
                }
            }
        }
        Ok(seen.into_iter().collect())
    }

    /// Σ VmRSS in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        let mut total = 0;
        for pid in self.pids()? {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
                .with_context(|| format!("reading /proc/{pid}/status"))?;
            let kib = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .with_context(|| format!("no VmRSS in /proc/{pid}/status"))?;
            total += kib;
        }
        Ok(total)
    }

    /// Σ utime + stime in nanoseconds (10 ms resolution with the usual 100 Hz ticks).
    pub fn cpu_ns(&self) -> anyhow::Result<u64> {
        let mut ticks = 0;
        for pid in self.pids()? {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .with_context(|| format!("reading /proc/{pid}/stat"))?;
            // The command name may hold spaces and parentheses: fields are counted after the
            // last ')'. utime and stime are fields 14 and 15, i.e. 12th and 13th after it.
            let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
            let mut fields = after.split_whitespace().skip(11);
            let utime: u64 = fields
                .next()
                .and_then(|v| v.parse().ok())
                .context("no utime")?;
            let stime: u64 = fields
                .next()
                .and_then(|v| v.parse().ok())
                .context("no stime")?;
            ticks += utime + stime;
        }
        Ok(ticks * 1_000_000_000 / self.ticks_per_sec)
    }
}

/// An ssegate process started by the smoke mode.
pub struct Gateway {
    /// `None` once `stop` has handed the process to its waiting thread.
    child: Option<Child>,
    pub addr: SocketAddr,
}

impl Gateway {
    /// Starts `binary` on a free loopback port and waits for its ready line
    /// (`ssegate listening on 127.0.0.1:PORT (workers=N)`), at most `timeout`.
    pub fn start(
        binary: &Path,
        workers: u32,
        jwt_key: &str,
        timeout: Duration,
    ) -> anyhow::Result<Gateway> {
        let mut child = Command::new(binary)
            .args(["--listen", "127.0.0.1:0", "--workers", &workers.to_string()])
            .args(["--publisher-jwt-key", jwt_key, "--heartbeat-interval", "1h"])
            .args(["--max-connections", "100000"])
            // No admin listener: no fixed port to collide on, and the ready line comes first.
            .args(["--admin-addr", "off"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stdout = child.stdout.take().context("gateway stdout")?;
        // A reading thread hands over the first line, so the wait is bounded by a timeout.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let result = BufReader::new(stdout).read_line(&mut line).map(|_| line);
            let _ = tx.send(result);
        });
        let line = match rx.recv_timeout(timeout) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => {
                let _ = child.kill();
                return Err(e).context("reading the gateway's ready line");
            }
            Err(_) => {
                let _ = child.kill();
                bail!("the gateway printed no ready line within {timeout:?}");
            }
        };
        let addr = line
            .strip_prefix("ssegate listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse::<SocketAddr>().ok());
        match addr {
            Some(addr) => Ok(Gateway {
                child: Some(child),
                addr,
            }),
            None => {
                let _ = child.kill();
                bail!("unexpected first line from the gateway: {line:?}")
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGTERM, then waits up to `timeout` for a clean exit (status 0).
    pub fn stop(mut self, timeout: Duration) -> anyhow::Result<()> {
        let mut child = self
            .child
            .take()
            .context("the gateway was already stopped")?;
        let pid = child.id();
        sys::sigterm(pid).context("sending SIGTERM to the gateway")?;
        // A thread blocks in wait() and hands over the status: the wait is bounded by a
        // timeout without polling; past it the pid is killed, which ends the thread's wait.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        match rx.recv_timeout(timeout) {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => bail!("the gateway exited with {status} after SIGTERM"),
            Ok(Err(e)) => Err(e).context("waiting for the gateway"),
            Err(_) => {
                let _ = sys::sigkill(pid);
                bail!("the gateway did not exit within {timeout:?} of SIGTERM (killed)")
            }
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // Never leave a gateway behind when the smoke run fails half-way.
        if let Some(child) = self.child.as_mut() {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
