//! The one module that talks to the socket layer below glommio: listener sockets with
//! SO_REUSEPORT and a chosen backlog, and `shutdown(2)` on a subscriber's raw fd.
#![allow(unsafe_code)]

use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd, RawFd};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Binds `n` listening sockets on `addr` with SO_REUSEPORT, one per core, so the kernel
/// spreads connections over the cores. With port 0 the first socket picks the port and the
/// others join it. Binding here, before any executor starts, turns a bad address into a
/// clear start-up error.
pub fn bind_reuseport(
    addr: SocketAddr,
    n: usize,
    backlog: u32,
) -> io::Result<(Vec<OwnedFd>, SocketAddr)> {
    let mut fds = Vec::with_capacity(n);
    let mut bound = addr;
    for i in 0..n {
        let sk = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        sk.set_reuse_address(true)?;
        sk.set_reuse_port(true)?;
        if addr.is_ipv6() {
            sk.set_only_v6(false).ok();
        }
        sk.bind(&SockAddr::from(bound))?;
        sk.listen(backlog.min(i32::MAX as u32) as i32)?;
        if i == 0 {
            bound = sk
                .local_addr()?
                .as_socket()
                .ok_or_else(|| io::Error::other("listener has no IP address"))?;
        }
        fds.push(OwnedFd::from(sk));
    }
    Ok((fds, bound))
}

/// Hands a bound, listening socket to the current executor.
pub fn glommio_listener(fd: OwnedFd) -> glommio::net::TcpListener {
    // SAFETY: `fd` is an owned, bound and listening TCP socket (from `bind_reuseport`);
    // ownership moves into the listener, which closes it on drop.
    unsafe { glommio::net::TcpListener::from_raw_fd(fd.into_raw_fd()) }
}

/// Shuts down both directions of a connected socket. A write blocked on it fails at once and
/// a pending read sees end of stream, so the connection's task wakes and cleans up.
pub fn shutdown_both(fd: RawFd) {
    if fd < 0 {
        return;
    }
    // SAFETY: shutdown(2) touches no memory. The caller holds the fd of a live stream: a
    // subscriber's table entry is removed before its stream (and so the fd) is dropped, on
    // the same thread, so the number cannot have been reused.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}
