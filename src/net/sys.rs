//! The one module that talks to the socket layer below glommio: listener sockets with
//! SO_REUSEPORT and a chosen backlog, `shutdown(2)` and socket options on a subscriber's raw
//! fd (abortive close, send buffer cap), and the
//! flusher's non-blocking sends (one `send(2)` each, or a batch on an io_uring).
//!
//! Owns: every `unsafe` block and raw socket call, each with its SAFETY note. May call:
//! nothing of the crate.
#![allow(unsafe_code)]

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::time::Duration;

use bytes::Bytes;
use io_uring::{opcode, types};

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

/// A subscriber's socket as the core's tables hold it, for the calls below. Made only from a
/// live socket ([`SocketFd::of`]). Its holder is the shard entry of a subscriber, and that
/// entry is removed by the subscriber's registration guard, which its connection drops
/// before the stream that owns the socket (`conn::subscriber::Live` holds both, in that
/// order, on the same thread): so the number is never used after its socket closed, and
/// cannot have been reused by another socket meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketFd(RawFd);

impl SocketFd {
    /// The socket of a live stream.
    pub fn of(socket: &impl AsRawFd) -> SocketFd {
        SocketFd(socket.as_raw_fd())
    }

    /// No socket (tests of the tables): every call below does nothing with it.
    pub const NONE: SocketFd = SocketFd(-1);

    fn borrow(&self) -> Option<BorrowedFd<'_>> {
        // SAFETY: see the type's docs: a `SocketFd` held by a table names an open socket for
        // as long as the table holds it, and `BorrowedFd` never closes it.
        (self.0 >= 0).then(|| unsafe { BorrowedFd::borrow_raw(self.0) })
    }
}

/// Shuts down both directions of a connected socket. A write blocked on it fails at once and
/// a pending read sees end of stream, so the connection's task wakes and cleans up.
pub fn shutdown_both(fd: SocketFd) {
    if let Some(fd) = fd.borrow() {
        let _ = socket2::SockRef::from(&fd).shutdown(std::net::Shutdown::Both);
    }
}

/// Sets `SO_LINGER` to zero seconds: when the socket is closed, the kernel resets the
/// connection and frees what it still holds for it at once, instead of keeping an orphan
/// socket with its unsent bytes until the peer acknowledges them (it never will, for a
/// reader that stopped reading). For subscribers the gateway gives up on.
pub fn abort_on_close(fd: SocketFd) {
    with_socket(fd, |s| s.set_linger(Some(Duration::ZERO)));
}

/// Caps the socket's kernel send buffer (`SO_SNDBUF`; the kernel doubles the value for its
/// bookkeeping and stops autotuning it). 0 leaves the kernel's autotuning on.
pub fn set_send_buffer(fd: SocketFd, bytes: usize) {
    if bytes > 0 {
        with_socket(fd, |s| s.set_send_buffer_size(bytes));
    }
}

/// Runs a socket option call on a connected socket's fd; failures (the peer already gone)
/// are ignored: the next write finds out.
fn with_socket(fd: SocketFd, f: impl FnOnce(&socket2::SockRef<'_>) -> io::Result<()>) {
    if let Some(fd) = fd.borrow() {
        let _ = f(&socket2::SockRef::from(&fd));
    }
}

/// One non-blocking `send(2)` on a connected socket: the subscriber flusher's fast path.
/// Returns the bytes the kernel took (possibly fewer than `buf.len()`), `WouldBlock` when its
/// send buffer is full, or the socket's error (`EPIPE`, `ECONNRESET`: the peer is gone).
/// `MSG_NOSIGNAL`: a closed peer is an error here, never a SIGPIPE.
pub fn send_nowait(fd: SocketFd, buf: &[u8]) -> io::Result<usize> {
    let Some(fd) = fd.borrow() else {
        return Err(io::ErrorKind::NotConnected.into());
    };
    loop {
        // SAFETY: `buf` is a live, initialised slice for the duration of the call and the
        // kernel only reads `buf.len()` bytes from it; `fd` is borrowed from an open socket.
        let n = unsafe {
            libc::send(
                fd.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// A small io_uring of the core's own, for the flusher's batched sends: the sends of a whole
/// slice of subscribers go to the kernel in one `io_uring_enter`.
///
/// Every send carries `MSG_DONTWAIT`, so the kernel completes it during the submission (with
/// the bytes it took, `EAGAIN`, or the socket's error) instead of parking it: [`send_all`]
/// waits for all of them and returns, and no buffer is ever referenced by the kernel after it
/// returns (the rule an owned-buffer io_uring API exists for).
///
/// [`send_all`]: SendRing::send_all
pub struct SendRing {
    ring: io_uring::IoUring,
    done: Vec<bool>,
}

/// How long [`SendRing::send_all`] waits for completions before it shuts down the sockets of
/// the sends still pending (which should never happen with `MSG_DONTWAIT`).
const SEND_RING_WAIT: Duration = Duration::from_secs(1);

impl SendRing {
    /// A ring for batches of up to `entries` sends.
    pub fn new(entries: u32) -> io::Result<SendRing> {
        let ring = io_uring::IoUring::builder()
            .setup_submit_all()
            .build(entries)?;
        Ok(SendRing {
            ring,
            done: Vec::new(),
        })
    }

    /// Most sends per batch.
    pub fn capacity(&self) -> usize {
        self.ring.params().sq_entries() as usize
    }

    /// Sends each `(fd, bytes)` as one non-blocking, `MSG_NOSIGNAL` send, all in one
    /// submission; `out` gets each send's outcome, in order (as [`send_nowait`] would report
    /// it). At most [`capacity`](Self::capacity) sends: the rest get `WouldBlock`.
    pub fn send_all(&mut self, sends: &[(SocketFd, Bytes)], out: &mut Vec<io::Result<usize>>) {
        out.clear();
        out.extend(sends.iter().map(|_| Err(io::ErrorKind::WouldBlock.into())));
        let n = sends.len().min(self.capacity());
        self.done.clear();
        self.done.resize(n, false);
        {
            let mut sq = self.ring.submission();
            for (i, (fd, buf)) in sends[..n].iter().enumerate() {
                let len = buf.len().min(u32::MAX as usize) as u32;
                let sqe = opcode::Send::new(types::Fd(fd.0), buf.as_ptr(), len)
                    .flags(libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
                    .build()
                    .user_data(i as u64);
                // SAFETY: `buf` is borrowed for the whole call and this function does not
                // return before the kernel has completed every send pushed here (or, should
                // one never complete, keeps its buffer alive forever, below). `n` is at most
                // the ring's size and the ring is empty between calls, so the push fits.
                if unsafe { sq.push(&sqe) }.is_err() {
                    self.done[i] = true;
                }
            }
        }
        let mut left = self.done.iter().filter(|d| !**d).count();
        let mut shut = false;
        for round in 0..3 {
            if left == 0 {
                break;
            }
            let ts = types::Timespec::from(SEND_RING_WAIT);
            let args = types::SubmitArgs::new().timespec(&ts);
            if let Err(e) = self.ring.submitter().submit_with_args(left, &args) {
                let expected = matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR));
                if !expected && round == 0 {
                    tracing::error!(error = %e, "io_uring submission failed");
                }
            }
            for cqe in self.ring.completion() {
                let i = cqe.user_data() as usize;
                if i < n && !self.done[i] {
                    self.done[i] = true;
                    left -= 1;
                    let r = cqe.result();
                    out[i] = if r >= 0 {
                        Ok(r as usize)
                    } else {
                        Err(io::Error::from_raw_os_error(-r))
                    };
                }
            }
            if left > 0 && !shut {
                // A send that did not complete at once: shutting its socket down fails it
                // promptly, and the subscriber's task then ends the stream.
                tracing::error!(pending = left, "io_uring sends did not complete at once");
                for (i, (fd, _)) in sends[..n].iter().enumerate() {
                    if !self.done[i] {
                        shutdown_both(*fd);
                    }
                }
                shut = true;
            }
        }
        if left > 0 {
            // Still in the kernel's hands: their buffers must outlive the ring.
            for (i, (_, buf)) in sends[..n].iter().enumerate() {
                if !self.done[i] {
                    std::mem::forget(buf.clone());
                    out[i] = Err(io::ErrorKind::TimedOut.into());
                }
            }
        }
    }
}
