#!/usr/bin/env python3
"""Memory cost of an idle SSE subscriber connection in ssegate.

For each run this starts a fresh gateway, waits for its ready line, pays one-time costs with
a small warm-up batch of subscribers, reads the gateway's VmRSS (baseline), opens N idle
subscribers spread over P client processes, waits until every one of them has received the
response head and the first `:` comment (i.e. is registered), lets RSS settle, reads VmRSS
again and reports (loaded - baseline) * 1024 / N bytes per connection.

Standard library only (Python 3.11). Linux only (reads /proc). Connects to loopback only.

    python3 benches/idle_rss.py --conns 10000 --workers 1 --runs 3 \
        --out bench-results/idle-rss-$(date -u +%F).md

Kernel socket memory (socket buffers, struct sock, ...) is not part of the process's RSS
and is therefore not counted: the figure is the gateway's user-space cost only.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import hashlib
import math
import multiprocessing as mp
import os
import platform
import queue as _queue
import re
import resource
import selectors
import shlex
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
READY_RE = re.compile(rb"^ssegate listening on 127\.0\.0\.1:(\d+) \(workers=(\d+)\)\s*$")
REGISTERED = b"\r\n\r\n:\n"
MAX_HEAD_BYTES = 64 * 1024          # a response head larger than this is an error
WARMUP_CONNS = 200
SOCKETS_PER_PROC_MAX = 5000
CONNECT_CONCURRENCY = 256           # connections in flight per client process
# --tls: the spawned client processes learn it from the environment.
TLS = os.environ.get("IDLE_RSS_TLS") == "1"
TLS_FILES = None                     # (cert, key) given to the gateway with --tls
RSS_SAMPLE_INTERVAL = 0.2           # seconds between settling reads
RSS_STABLE_READS = 3                # identical consecutive reads = settled
RSS_SETTLE_MAX = 10.0               # seconds; after that the last read is used
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


class BenchError(Exception):
    """A failure that makes the measurement invalid."""


# --------------------------------------------------------------------------------------------
# Client processes
# --------------------------------------------------------------------------------------------

def _bound_socket(src):
    """A non-blocking socket bound to source address `src`, port chosen at connect time."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        try:
            # Let connect() pick the port from the full 4-tuple instead of a bind-time search
            # among the (many, TIME_WAIT included) ports already used on this address.
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        except OSError:
            pass
        sock.bind((src, 0))
        return sock
    except BaseException:
        sock.close()
        raise


async def _await_registration(recv):
    """Reads with `recv` until REGISTERED arrives; checks the response is a 200."""
    buf = b""
    while REGISTERED not in buf:                   # bounded by MAX_HEAD_BYTES and timeout
        chunk = await recv(4096)
        if not chunk:
            raise BenchError(f"closed by server before registration: {buf[:120]!r}")
        buf += chunk
        if len(buf) > MAX_HEAD_BYTES:
            raise BenchError("response head too large")
    if not buf.startswith(b"HTTP/1.1 200"):
        raise BenchError(f"unexpected response: {buf[:120]!r}")


async def _open_one(loop, port, src, topic, per_conn_timeout):
    """Opens one subscriber; returns its socket (or, over TLS, its StreamWriter) once
    REGISTERED has been received."""
    sock = _bound_socket(src)
    req = f"GET /.well-known/mercure?topic={topic} HTTP/1.1\r\nHost: x\r\n\r\n".encode()

    async def talk():
        await loop.sock_connect(sock, ("127.0.0.1", port))
        if not TLS:
            await loop.sock_sendall(sock, req)
            await _await_registration(lambda n: loop.sock_recv(sock, n))
            return sock
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE          # the bench's self-signed certificate
        ctx.set_alpn_protocols(["http/1.1"])
        reader, writer = await asyncio.open_connection(sock=sock, ssl=ctx,
                                                       server_hostname="localhost")
        writer.write(req)
        await writer.drain()
        await _await_registration(reader.read)
        return writer

    try:
        return await asyncio.wait_for(talk(), per_conn_timeout)
    except BaseException:
        sock.close()
        raise


async def _client_main(idx, port, src, count, topics, topic_base, results, close_evt,
                       deadline):
    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(CONNECT_CONCURRENCY)
    socks: list[socket.socket] = []

    async def one(i):
        async with sem:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError("overall timeout while connecting")
            k = (topic_base + i) % topics
            s = await _open_one(loop, port, src, f"bench-idle-{k}", remaining)
            socks.append(s)

    tasks = [asyncio.create_task(one(i)) for i in range(count)]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for t in tasks:
            if t.done() and not t.cancelled() and t.exception() is not None:
                e = t.exception()
                raise BenchError(f"{type(e).__name__}: {e}")
        results.put(("ready", idx, len(socks)))

        # Wait for the parent's go-ahead to close (Event.wait in a thread: no polling).
        remaining = max(0.0, deadline - time.monotonic())
        told = await loop.run_in_executor(None, close_evt.wait, remaining)
        if not told:
            raise BenchError("overall timeout waiting for the close signal")

        # Before closing, check that no subscriber was dropped while idle: a readable
        # socket that returns b"" was closed by the server (heartbeats are 1h, so no data
        # is expected either).
        dropped = 0
        unexpected = 0
        for s in socks:
            if TLS:                                # a StreamWriter: no peeking through TLS
                dropped += int(s.transport.is_closing())
                continue
            try:
                data = s.recv(4096)
                if data:
                    unexpected += 1
                else:
                    dropped += 1
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                dropped += 1
        for s in socks:
            s.close()
        results.put(("closed", idx, dropped, unexpected))
    except BaseException as e:  # noqa: BLE001 - everything is reported to the parent
        for t in tasks:
            t.cancel()
        for s in socks:
            s.close()
        results.put(("error", idx, f"client {idx} ({src}): {type(e).__name__}: {e}"))


def client_proc(idx, port, src, count, topics, topic_base, results, close_evt, deadline_in):
    """Entry point of a client process (spawned)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
    deadline = time.monotonic() + deadline_in
    asyncio.run(_client_main(idx, port, src, count, topics, topic_base, results, close_evt,
                             deadline))


@dataclass
class ClientGroup:
    procs: list
    results: object
    close_evt: object
    counts: list


def start_clients(ctx, port, total, nprocs, topics, deadline):
    """Starts nprocs client processes opening `total` subscribers between them."""
    results = ctx.Queue()
    close_evt = ctx.Event()
    base, extra = divmod(total, nprocs)
    counts = [base + (1 if i < extra else 0) for i in range(nprocs)]
    procs = []
    topic_base = 0
    for i, c in enumerate(counts):
        src = f"127.0.0.{2 + i}"
        p = ctx.Process(target=client_proc, name=f"idle-rss-client-{i}",
                        args=(i, port, src, c, topics, topic_base, results, close_evt,
                              max(1.0, deadline - time.monotonic())),
                        daemon=True)
        p.start()
        procs.append(p)
        topic_base += c
    return ClientGroup(procs, results, close_evt, counts)


def _get(group, deadline, what):
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise BenchError(f"overall timeout waiting for {what}")
    try:
        return group.results.get(timeout=remaining)
    except _queue.Empty:
        dead = [p.name for p in group.procs if not p.is_alive() and p.exitcode != 0]
        msg = f"overall timeout waiting for {what}"
        if dead:
            msg += f" (client processes died: {', '.join(dead)})"
        raise BenchError(msg) from None


def wait_clients_ready(group, deadline):
    pending = set(range(len(group.procs)))
    while pending:                                    # at most len(procs) messages
        msg = _get(group, deadline, "subscribers to register")
        if msg[0] == "error":
            raise BenchError(f"connection failed: {msg[2]}")
        if msg[0] == "ready":
            _, idx, n = msg
            if n != group.counts[idx]:
                raise BenchError(f"client {idx} registered {n} of {group.counts[idx]}")
            pending.discard(idx)


def close_clients(group, deadline):
    """Tells the clients to close; returns the number of subscribers dropped while idle."""
    group.close_evt.set()
    pending = set(range(len(group.procs)))
    dropped = unexpected = 0
    while pending:
        msg = _get(group, deadline, "clients to close")
        if msg[0] == "error":
            raise BenchError(msg[2])
        if msg[0] == "closed":
            _, idx, d, u = msg
            dropped += d
            unexpected += u
            pending.discard(idx)
    for p in group.procs:
        p.join(timeout=max(0.1, deadline - time.monotonic()))
    return dropped, unexpected


def kill_clients(group):
    if group is None:
        return
    group.close_evt.set()
    for p in group.procs:
        if p.is_alive():
            p.terminate()
    for p in group.procs:
        p.join(timeout=5)


# --------------------------------------------------------------------------------------------
# Gateway
# --------------------------------------------------------------------------------------------

class Gateway:
    def __init__(self, binary, workers, deadline):
        self.log = tempfile.NamedTemporaryFile(prefix="ssegate-idle-rss-", suffix=".log",
                                               delete=False)
        cmd = [str(binary), "--listen", "127.0.0.1:0", "--workers", str(workers),
               "--publisher-jwt-key", "somekey", "--max-connections", "100000",
               "--heartbeat-interval", "1h", "--admin-addr", "off"]
        if TLS_FILES:
            cmd += ["--tls-cert", TLS_FILES[0], "--tls-key", TLS_FILES[1]]
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self.log, cwd=REPO_ROOT)
        self.port = self._wait_ready(deadline)

    def _stderr_tail(self, n=20):
        try:
            lines = Path(self.log.name).read_text(errors="replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""

    def _wait_ready(self, deadline):
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        fd = self.proc.stdout.fileno()
        buf = b""
        try:
            while True:                               # bounded by the deadline
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BenchError("gateway did not print its ready line before the "
                                     f"timeout\n{self._stderr_tail()}")
                if not sel.select(timeout=remaining):
                    continue
                chunk = os.read(fd, 4096)
                if not chunk:
                    code = self.proc.wait(timeout=5)
                    raise BenchError(f"gateway exited (code {code}) before becoming ready\n"
                                     f"{self._stderr_tail()}")
                buf += chunk
                while b"\n" in buf:                   # other lines (e.g. a token) come first
                    line, buf = buf.split(b"\n", 1)
                    m = READY_RE.match(line)
                    if m:
                        return int(m.group(1))
                if len(buf) > 4096:
                    raise BenchError("no ready line in the first 4 KiB of stdout")
        finally:
            sel.close()

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise BenchError("no VmRSS in /proc/<pid>/status")

    def settled_rss_kib(self):
        """Reads VmRSS every 200 ms until RSS_STABLE_READS equal reads (max RSS_SETTLE_MAX s).
        Returns (kib, settled?)."""
        reads = [self.rss_kib()]
        t_end = time.monotonic() + RSS_SETTLE_MAX
        while time.monotonic() < t_end:
            if len(reads) >= RSS_STABLE_READS and len(set(reads[-RSS_STABLE_READS:])) == 1:
                return reads[-1], True
            time.sleep(RSS_SAMPLE_INTERVAL)           # settling measurement, not sync
            if self.proc.poll() is not None:
                raise BenchError(f"gateway exited (code {self.proc.returncode})\n"
                                 f"{self._stderr_tail()}")
            reads.append(self.rss_kib())
        return reads[-1], False

    def stop(self, timeout=20.0):
        """SIGTERM and wait; returns the exit code (raises if it does not exit)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
            raise BenchError(f"gateway did not exit within {timeout:.0f}s of SIGTERM")
        finally:
            self.proc.stdout.close()
            self.log.close()
        return code

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


# --------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------

@dataclass
class RunResult:
    run: int
    baseline_kib: int
    loaded_kib: int
    conns: int
    settled: bool
    exit_code: int
    connect_secs: float

    @property
    def bytes_per_conn(self):
        return (self.loaded_kib - self.baseline_kib) * 1024 / self.conns


def one_run(ctx, args, run_no):
    deadline = time.monotonic() + args.timeout
    gw = Gateway(args.binary, args.workers, deadline)
    group = None
    try:
        # Warm-up: pay allocator / one-time costs, then close.
        warm = min(WARMUP_CONNS, args.conns)
        group = start_clients(ctx, gw.port, warm, 1, args.topics, deadline)
        wait_clients_ready(group, deadline)
        close_clients(group, deadline)
        group = None
        baseline, _ = gw.settled_rss_kib()

        t0 = time.monotonic()
        group = start_clients(ctx, gw.port, args.conns, args.procs, args.topics, deadline)
        wait_clients_ready(group, deadline)
        connect_secs = time.monotonic() - t0
        loaded, settled = gw.settled_rss_kib()

        dropped, unexpected = close_clients(group, deadline)
        group = None
        if dropped:
            raise BenchError(f"{dropped} subscribers were closed by the gateway while idle")
        if unexpected:
            print(f"warning: {unexpected} idle subscribers received unexpected data",
                  file=sys.stderr)
        code = gw.stop()
        if code != 0:
            raise BenchError(f"gateway exited with code {code} after SIGTERM\n"
                             f"{gw._stderr_tail()}")
        os.unlink(gw.log.name)
        return RunResult(run_no, baseline, loaded, args.conns, settled, code, connect_secs)
    except BaseException:
        kill_clients(group)
        gw.kill()
        print(f"gateway log kept at {gw.log.name}", file=sys.stderr)
        raise


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------

def _cmd_out(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10,
                              cwd=REPO_ROOT).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def binary_identity(path):
    """(sha256 prefix, mtime UTC) of the gateway binary, to detect a rebuild mid-benchmark."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):   # bounded by the file size
            h.update(chunk)
    mtime = _dt.datetime.fromtimestamp(os.stat(path).st_mtime, _dt.timezone.utc)
    return h.hexdigest()[:16], f"{mtime:%Y-%m-%d %H:%M:%S}"


def machine_info():
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                kib = int(line.split()[1])
                mem = f"{kib / 1024 / 1024:.1f} GiB ({kib} kB)"
                break
    except OSError:
        pass
    dirty = _cmd_out(["git", "diff", "--name-only", "HEAD"])
    return {
        "nproc": _cmd_out(["nproc"]),
        "cpu": cpu,
        "mem": mem,
        "kernel": platform.release(),
        "commit": _cmd_out(["git", "rev-parse", "--short", "HEAD"]),
        "dirty": sorted(dirty.splitlines()) if dirty != "?" else [],
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
        "somaxconn": _read_sysctl("net/core/somaxconn"),
        "port_range": _read_sysctl("net/ipv4/ip_local_port_range"),
    }


def _read_sysctl(name):
    try:
        return " ".join(Path("/proc/sys", name).read_text().split())
    except OSError:
        return "?"


def raise_sysctls():
    """Best effort: a larger accept backlog cap and ephemeral port range."""
    def bump(name, want_value, is_larger):
        path = Path("/proc/sys", name)
        try:
            cur = path.read_text().split()
            if is_larger(cur):
                path.write_text(want_value)
        except (OSError, ValueError):
            pass
    bump("net/core/somaxconn", "65535", lambda cur: int(cur[0]) < 65535)
    bump("net/ipv4/ip_local_port_range", "1024 65535",
         lambda cur: int(cur[0]) > 1024 or int(cur[1]) < 65535)


def table(results):
    lines = ["| run | baseline KiB | loaded KiB | delta KiB | bytes/conn | register time s |",
             "|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r.run} | {r.baseline_kib} | {r.loaded_kib} | "
                     f"{r.loaded_kib - r.baseline_kib} | {r.bytes_per_conn:.0f}"
                     f"{'' if r.settled else ' (RSS not settled)'} | {r.connect_secs:.2f} |")
    return lines


def write_markdown(path, args, results, median, info, started):
    cmdline = shlex.join(["python3", *sys.argv])
    md = [
        f"## Idle subscriber RSS: {args.conns} connections, {args.workers} worker(s)",
        "",
        f"- Command: `{cmdline}`",
        f"- Date (UTC): {started:%Y-%m-%d %H:%M:%S}",
        f"- Git commit: `{info['commit']}`"
        + (" plus uncommitted changes to " + ", ".join(f"`{p}`" for p in info["dirty"])
           + " (state when the benchmark started)" if info["dirty"] else " (clean tree)"),
        f"- Binary: `{args.binary}`, sha256 `{info['binary'][0]}...`, built (mtime) "
        f"{info['binary'][1]} UTC; unchanged throughout the runs",
        f"- Machine: nproc={info['nproc']}, CPU: {info['cpu']}, memory: {info['mem']}, "
        f"kernel {info['kernel']}",
        f"- Limits: RLIMIT_NOFILE={info['nofile'][0]}/{info['nofile'][1]}, "
        f"somaxconn={info['somaxconn']}, ip_local_port_range={info['port_range']}",
        f"- Setup: {args.procs} client process(es) (source addresses 127.0.0.2..127.0.0."
        f"{1 + args.procs}), {args.topics} distinct topic(s), warm-up of "
        f"{min(WARMUP_CONNS, args.conns)} subscribers opened and closed before the baseline, "
        f"gateway flags `--workers {args.workers} --max-connections 100000 "
        f"--heartbeat-interval 1h`",
        "",
        *table(results),
        "",
        f"**Median: {median:.0f} bytes per idle connection** "
        f"({median / 1024:.2f} KiB) over {len(results)} run(s).",
        "",
        "bytes/conn = (VmRSS loaded - VmRSS baseline) * 1024 / connections, VmRSS read from "
        "`/proc/<pid>/status` after it stopped changing (3 equal reads 200 ms apart). "
        "Kernel socket memory (struct sock, socket buffers, ...) is not part of RSS and is "
        "not counted here: this is the gateway's user-space cost only.",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        if f.tell() == 0:
            f.write("# ssegate idle subscriber memory\n\n")
        f.write("\n".join(md) + "\n")


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------

def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--conns", type=int, default=10000, help="idle subscribers (default 10000)")
    ap.add_argument("--workers", type=int, default=1, help="gateway workers (default 1)")
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"),
                    help="serve TLS with this PEM certificate and key; clients connect over TLS")
    ap.add_argument("--runs", type=int, default=3, help="runs (default 3)")
    ap.add_argument("--binary", type=Path, default=REPO_ROOT / "target/release/ssegate",
                    help="gateway binary (default target/release/ssegate in the repo)")
    ap.add_argument("--procs", type=int, default=None,
                    help=f"client processes (default ceil(conns/{SOCKETS_PER_PROC_MAX}))")
    ap.add_argument("--topics", type=int, default=1,
                    help="distinct topics, subscribers spread round-robin (default 1)")
    ap.add_argument("--timeout", type=float, default=120.0,
                    help="overall time limit of one run in seconds (default 120)")
    ap.add_argument("--out", type=Path, default=None,
                    help="markdown file to append a result section to")
    args = ap.parse_args(argv)
    if args.conns < 1 or args.runs < 1 or args.workers < 1 or args.topics < 1:
        ap.error("--conns, --runs, --workers and --topics must be at least 1")
    if args.procs is None:
        args.procs = math.ceil(args.conns / SOCKETS_PER_PROC_MAX)
    if args.procs < 1 or args.procs > 250:
        ap.error("--procs must be between 1 and 250")
    if math.ceil(args.conns / args.procs) > SOCKETS_PER_PROC_MAX * 3:
        ap.error("too many sockets per client process for the open-file limit")
    args.binary = args.binary if args.binary.is_absolute() else (Path.cwd() / args.binary)
    if not os.access(args.binary, os.X_OK):
        ap.error(f"{args.binary} is not an executable (run `cargo build --release`)")
    return args


def main(argv=None):
    global TLS, TLS_FILES
    args = parse_args(argv)
    if args.tls:
        TLS, TLS_FILES = True, [str(Path(f).resolve()) for f in args.tls]
        os.environ["IDLE_RSS_TLS"] = "1"
    started = _dt.datetime.now(_dt.timezone.utc)
    raise_sysctls()
    info = machine_info()
    ctx = mp.get_context("spawn")
    results = []
    print(f"ssegate idle RSS: {args.conns} conns, {args.workers} worker(s), {args.runs} run(s),"
          f" {args.procs} client process(es)", flush=True)
    info["binary"] = binary_identity(args.binary)
    try:
        for run in range(1, args.runs + 1):          # bounded by --runs
            if binary_identity(args.binary) != info["binary"]:
                raise BenchError(f"{args.binary} was rebuilt during the benchmark; "
                                 "results would mix two builds")
            r = one_run(ctx, args, run)
            results.append(r)
            if binary_identity(args.binary) != info["binary"]:
                raise BenchError(f"{args.binary} was rebuilt during the benchmark; "
                                 "results would mix two builds")
            print(f"  run {run}: baseline {r.baseline_kib} KiB, loaded {r.loaded_kib} KiB, "
                  f"{r.bytes_per_conn:.0f} bytes/conn (registered in {r.connect_secs:.2f}s)"
                  + ("" if r.settled else " [RSS not settled]"), flush=True)
    except BenchError as e:
        print(f"idle_rss: FAILED: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("idle_rss: interrupted", file=sys.stderr)
        return 130

    median = statistics.median(r.bytes_per_conn for r in results)
    print()
    print("\n".join(table(results)))
    print(f"\nmedian: {median:.0f} bytes/conn ({median / 1024:.2f} KiB)")
    if args.out:
        out = args.out if args.out.is_absolute() else Path.cwd() / args.out
        write_markdown(out, args, results, median, info, started)
        print(f"appended to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
