//! The few libc calls the load generator needs, in one place: a monotonic clock whose readings
//! compare across processes, the source-port option for many client sockets, and CPU times.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;

/// CLOCK_MONOTONIC in nanoseconds. Unlike `Instant`, the raw value means the same thing in
/// every process on the machine, so a publisher's send time can be compared with a subscriber
/// process's receive time.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    debug_assert_eq!(rc, 0);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Sets IP_BIND_ADDRESS_NO_PORT, so that `bind(src, 0)` defers the port choice to `connect`,
/// which then picks from the full 4-tuple instead of searching the ports already bound on
/// `src` (TIME_WAIT included): thousands of connections per source address stay cheap.
pub fn set_bind_address_no_port(fd: RawFd) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: `fd` is an open socket owned by the caller; the option value is a c_int that
    // outlives the call, and its size is passed correctly.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// User + system CPU time of this process so far, in nanoseconds (all threads).
pub fn self_cpu_ns() -> u64 {
    // SAFETY: an all-zero rusage is a valid value; getrusage only writes into it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage; RUSAGE_SELF is always accepted.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return 0;
    }
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Clock ticks per second, the unit of utime/stime in /proc/PID/stat.
pub fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 {
        v as u64
    } else {
        100
    }
}

/// Raises the soft open-file limit to the hard one; returns the new soft limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `rl` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if rl.rlim_cur < rl.rlim_max {
        rl.rlim_cur = rl.rlim_max;
        // SAFETY: `rl` is a valid rlimit with cur <= max.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(rl.rlim_cur)
}

/// Sends SIGTERM to `pid` (the gateway started by the smoke mode, for a clean shutdown).
pub fn sigterm(pid: u32) -> io::Result<()> {
    signal(pid, libc::SIGTERM)
}

/// Sends SIGKILL to `pid` (a gateway that ignored SIGTERM past its time limit).
pub fn sigkill(pid: u32) -> io::Result<()> {
    signal(pid, libc::SIGKILL)
}

fn signal(pid: u32, sig: libc::c_int) -> io::Result<()> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: kill has no memory-safety preconditions; `pid` is a child we started.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Registers a connected socket with tokio's reactor for read readiness, so that its reader
/// can clear readiness itself after a short read (see `worker::subscriber`); `TcpStream`
/// offers no way to do that.
pub fn register_readable(
    stream: std::net::TcpStream,
) -> io::Result<tokio::io::unix::AsyncFd<std::net::TcpStream>> {
    // SAFETY: the AsyncFd takes ownership of `stream`, so its fd stays open and refers to the
    // same socket for the AsyncFd's whole life, and `TcpStream::as_raw_fd` always returns that
    // same fd.
    unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(stream, tokio::io::Interest::READABLE)
    }
    .map_err(|e| e.into_parts().1)
}
