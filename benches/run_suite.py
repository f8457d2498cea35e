#!/usr/bin/env python3
"""Runs the benchmark scenarios of issue 3 against ssegate and its peers, and writes a dated
report with every table and ssegate's ratio to each peer, measured in the same run.

Called by benches/run-suite.sh (which installs the peers and builds everything); standard
library only. Every server is started fresh for every run, pinned with taskset (one core, or
both for the two-core group); the load generator (benches/load, `ssegate-load`) always runs on
core 1. Each (scenario, server) pair runs --runs times and the table shows medians.

    benches/run-suite.sh                 # everything, 3 runs each
    benches/run-suite.sh --quick         # smaller and shorter, for development
    benches/run-suite.sh --scenarios idle,broadcast,publish --runs 3
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import selectors
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOAD = ROOT / "benches/load/target/release/ssegate-load"
SSEGATE = ROOT / "target/release/ssegate"
GO_PEER = ROOT / "benches/peers/go/ssegate-peer-go"
AXUM_PEER = ROOT / "benches/peers/axum/target/release/ssegate-peer-axum"
NCHAN_CONF = ROOT / "benches/peers/nchan/nginx.conf"
# The TLS targets serve a test leaf certificate (SAN 127.0.0.1, signed by a test CA); the load
# generator trusts the CA and verifies the chain as a browser would.
TLS_CERT = ROOT / "tests/fixtures/redis-cert.pem"
TLS_KEY = ROOT / "tests/fixtures/redis-key.pem"
TLS_CA = ROOT / "tests/fixtures/redis-ca-cert.pem"
JWT_KEY = "bench-suite-key"
SERVER_CORES = {1: "0", 2: "0,1"}
LOADGEN_CORE = "1"
READY_TIMEOUT = 20.0          # seconds for a server to start listening
RUN_TIMEOUT = 600.0           # seconds for one load generator run


class SuiteError(Exception):
    """A run that could not be measured."""


# ---------------------------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------------------------

@dataclass
class Scenario:
    key: str
    title: str
    args: list            # ssegate-load arguments
    quick_args: list
    # (JSON field, column title, "lower" or "higher" is better); the first is the headline.
    metrics: list


LAT = [("latency_us.p50", "p50 µs", "lower"), ("latency_us.p99", "p99 µs", "lower"),
       ("latency_us.p999", "p99.9 µs", "lower"), ("latency_us.max", "max µs", "lower"),
       ("missing", "missing", "lower"), ("server_cpu_us_per_delivery", "CPU µs/delivery", "lower"),
       ("rss_peak_kib", "peak RSS KiB", "lower"), ("first_publish_ack_us", "first publish ack µs", "lower"),
       ("loadgen_cpu_us_per_delivery", "loadgen µs/delivery", "info"),
       ("kernel_backlog_drops", "kernel drops", "info"), ("tcp_retransmits", "TCP retransmits", "info"),
       ("redis_cpu_us_per_delivery", "Redis CPU µs/delivery", "info")]

SCENARIOS = [
    Scenario("idle", "(1) idle: bytes of server RSS per idle subscriber",
             ["--subscribers", "19000", "--duration", "0"],
             ["--subscribers", "2000", "--duration", "0"],
             [("bytes_per_idle_conn", "bytes/conn", "lower"), ("rss_idle_kib", "idle RSS KiB", "lower"),
              ("connect_ms", "registered in ms", "lower")]),
    Scenario("broadcast", "(2) broadcast: 10k subscribers, one topic, 5 events/s, 100 B",
             ["--subscribers", "10000", "--topics", "1", "--rate", "5", "--duration", "10"],
             ["--subscribers", "1000", "--topics", "1", "--rate", "5", "--duration", "3"], LAT),
    Scenario("hot", "(3) hot broadcast: 10k subscribers, one topic, 50 events/s, 100 B",
             ["--subscribers", "10000", "--topics", "1", "--rate", "50", "--duration", "10"],
             ["--subscribers", "1000", "--topics", "1", "--rate", "50", "--duration", "3"], LAT),
    Scenario("spread", "(4) spread: 19k subscribers over 1,000 topics, 2,000 events/s",
             ["--subscribers", "19000", "--topics", "1000", "--rate", "2000", "--duration", "10",
              "--publish-connections", "8"],
             ["--subscribers", "2000", "--topics", "100", "--rate", "500", "--duration", "3",
              "--publish-connections", "8"], LAT),
    # 64 publishers (one request in flight each) keep a single-core server busy; with 16 the
    # request round trips, not the server, set the rate on this machine.
    Scenario("publish", "(5) publish throughput: 64 keep-alive publishers, 100 subscribers on 64 topics",
             ["--subscribers", "100", "--topics", "64", "--rate", "0", "--duration", "10",
              "--publish-connections", "64"],
             ["--subscribers", "100", "--topics", "64", "--rate", "0", "--duration", "3",
              "--publish-connections", "64"],
             [("publish_rate", "events/s accepted", "higher"), ("ack_us.p50", "ack p50 µs", "lower"),
              ("ack_us.p99", "ack p99 µs", "lower"), ("server_cpu_us_per_publish", "CPU µs/publish", "lower"),
              ("missing", "missing", "lower"),
              ("redis_cpu_us_per_publish", "Redis CPU µs/publish", "info")]),
]


# ---------------------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------------------

@dataclass
class ServerKind:
    name: str             # as shown in tables
    impl: str             # ssegate | go | axum | nchan
    cores: int            # 1 or 2 (taskset and, for ssegate/nchan, workers)
    flavor: str = "mercure"
    extra: tuple = ()     # more ssegate flags (variants of the gateway itself)
    binary_env: str = ""  # ssegate: take the binary from this environment variable (a baseline)
    redis: bool = False   # ssegate/nchan: keep the order in a fresh redis-server, pinned with it
    nodes: int = 1        # with redis: that many server processes on one Redis, the load spread
    transport: str = "plain"  # plain | tls (HTTP/1.1 over TLS) | h2 (subscribers over HTTP/2, TLS)


TARGETS = {
    "ssegate-1": ServerKind("ssegate (1 core)", "ssegate", 1),
    "go-1": ServerKind("Go stdlib (1 core)", "go", 1),
    "axum-1": ServerKind("axum broadcast (1 core)", "axum", 1),
    "nchan-1": ServerKind("nchan, 1 worker", "nchan", 1, "nchan"),
    "ssegate-2": ServerKind("ssegate (2 workers)", "ssegate", 2),
    "nchan-2": ServerKind("nchan, 2 workers", "nchan", 2, "nchan"),
    "go-2": ServerKind("Go stdlib (2 cores)", "go", 2),
    "axum-2": ServerKind("axum broadcast (2 cores)", "axum", 2),
    # Variants of ssegate itself, for before/after and write-path comparisons.
    "ssegate-1-send": ServerKind("ssegate send(2) writes (1 core)", "ssegate", 1,
                                 extra=("--write-path", "send")),
    "ssegate-2-send": ServerKind("ssegate send(2) writes (2 workers)", "ssegate", 2,
                                 extra=("--write-path", "send")),
    # The Redis engines: a fresh redis-server per run on the same core as the server (its CPU
    # is not in the server's CPU columns; the report says so).
    "ssegate-1-redis": ServerKind("ssegate + Redis (1 core)", "ssegate", 1, redis=True),
    "nchan-1-redis": ServerKind("nchan + Redis, 1 worker", "nchan", 1, "nchan", redis=True),
    # Two nodes of one cluster on the same core(s), subscribers and publishers spread over
    # both: what a second node costs, not what it adds (this machine has two cores).
    "ssegate-2node-redis": ServerKind("ssegate + Redis, 2 nodes (1 core)", "ssegate", 1,
                                      redis=True, nodes=2),
    "nchan-2node-redis": ServerKind("nchan + Redis, 2 nodes (1 core)", "nchan", 1, "nchan",
                                    redis=True, nodes=2),
    # TLS, as every production deployment runs: subscribers over HTTP/1.1 (one connection
    # each) or HTTP/2 (20 streams per connection); publishers over HTTP/1.1 with TLS.
    "ssegate-1-tls": ServerKind("ssegate TLS (1 core)", "ssegate", 1, transport="tls"),
    "ssegate-1-h2": ServerKind("ssegate HTTP/2 (1 core)", "ssegate", 1, transport="h2"),
    "nchan-1-tls": ServerKind("nchan TLS, 1 worker", "nchan", 1, "nchan", transport="tls"),
    "nchan-1-h2": ServerKind("nchan HTTP/2, 1 worker", "nchan", 1, "nchan", transport="h2"),
    "ssegate-1-base": ServerKind("ssegate baseline (1 core)", "ssegate", 1,
                                 binary_env="SSEGATE_BASELINE"),
    "ssegate-1-redis-base": ServerKind("ssegate baseline + Redis (1 core)", "ssegate", 1,
                                       binary_env="SSEGATE_BASELINE", redis=True),
}
DEFAULT_TARGETS = ["ssegate-1", "go-1", "axum-1", "nchan-1", "ssegate-2", "nchan-2"]


def free_port():
    """A loopback port free right now (nginx has no port 0 mode)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One server process (for nginx: the master), started pinned and waited for."""

    def __init__(self, kind: ServerKind, shared_redis=None):
        self.kind = kind
        self.others = []
        self.tmp = tempfile.mkdtemp(prefix=f"bench-{kind.impl}-")
        self.log = open(Path(self.tmp) / "stderr.log", "wb")
        cores = SERVER_CORES[kind.cores]
        self.redis = shared_redis
        self.own_redis = False
        redis_url = ""
        if kind.redis:
            if self.redis is None:
                self.redis = start_redis(cores, self.tmp)
                self.own_redis = True
            redis_url = f"redis://127.0.0.1:{self.redis.port}"
        if kind.impl == "ssegate":
            binary = SSEGATE
            if kind.binary_env:
                if not os.environ.get(kind.binary_env):
                    raise SuiteError(f"{kind.name} needs ${kind.binary_env}: an ssegate binary")
                binary = os.environ[kind.binary_env]
            cmd = [str(binary), "--listen", "127.0.0.1:0", "--workers", str(kind.cores),
                   "--publisher-jwt-key", JWT_KEY, "--heartbeat-interval", "1h", "--admin-addr", "off",
                   "--max-connections", "100000", "--log-level", "warn", *kind.extra]
            if redis_url:
                cmd += ["--engine", "redis", "--redis-url", redis_url]
            if kind.transport != "plain":
                cmd += ["--tls-cert", str(TLS_CERT), "--tls-key", str(TLS_KEY)]
        elif kind.impl == "go":
            cmd = [str(GO_PEER), "--listen", "127.0.0.1:0"]
        elif kind.impl == "axum":
            cmd = [str(AXUM_PEER), "--listen", "127.0.0.1:0"]
        elif kind.impl == "nchan":
            self.port = free_port()
            listen = f"listen 127.0.0.1:{self.port}"
            if kind.transport != "plain":
                # nginx 1.22 (Debian 12) spells HTTP/2 as a `listen` parameter.
                listen += " ssl http2" if kind.transport == "h2" else " ssl"
                listen += (f" backlog=4096;\n        ssl_certificate {TLS_CERT};"
                           f"\n        ssl_certificate_key {TLS_KEY};")
            else:
                listen += " backlog=4096;"
            conf = (NCHAN_CONF.read_text().replace("@WORKERS@", str(kind.cores))
                    .replace("@LISTEN@", listen).replace("@PREFIX@", self.tmp)
                    .replace("@REDIS@", f'nchan_redis_url "{redis_url}"; nchan_use_redis on;'
                             if redis_url else ""))
            (Path(self.tmp) / "nginx.conf").write_text(conf)
            cmd = ["nginx", "-p", self.tmp, "-c", f"{self.tmp}/nginx.conf"]
        else:
            raise SuiteError(f"unknown server {kind.impl}")
        self.cmd = ["taskset", "-c", cores, *cmd]
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self.log, cwd=self.tmp)
        deadline = time.monotonic() + READY_TIMEOUT
        if kind.impl == "nchan":
            self.addr = f"127.0.0.1:{self.port}"
            self._wait_connectable(deadline)
        else:
            self.addr = self._wait_ready_line(deadline)
        one = ServerKind(**{**kind.__dict__, "nodes": 1})
        for _ in range(kind.nodes - 1):
            self.others.append(Server(one, shared_redis=self.redis))

    def nodes(self):
        """This process and the other nodes of its cluster."""
        return [self, *self.others]

    def _wait_ready_line(self, deadline):
        """The first stdout line names the address: `... listening on ADDR ...`."""
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        buf = b""
        try:
            while b"\n" not in buf:                       # bounded by the deadline
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SuiteError(f"{self.kind.name} printed no ready line")
                if not sel.select(timeout=left):
                    continue
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    raise SuiteError(f"{self.kind.name} exited before ready: {self.stderr_tail()}")
                buf += chunk
        finally:
            sel.close()
        words = buf.split(b"\n", 1)[0].decode().split()
        if "on" not in words:
            raise SuiteError(f"unexpected ready line from {self.kind.name}: {words}")
        return words[words.index("on") + 1]

    def _wait_connectable(self, deadline):
        """nginx prints nothing when ready: its listener accepting a connection is the signal.
        Retries every 50 ms (a connect refused returns at once), bounded by the deadline."""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SuiteError(f"nginx exited: {self.stderr_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise SuiteError("nginx did not start listening")

    def stderr_tail(self):
        try:
            text = (Path(self.tmp) / "stderr.log").read_text(errors="replace")
            err = Path(self.tmp) / "error.log"
            if err.exists():
                text += err.read_text(errors="replace")
            return text[-1500:]
        except OSError:
            return ""

    def stop(self):
        for other in self.others:
            other.stop()
        if self.proc.poll() is None:
            self.proc.terminate()              # SIGTERM: nginx's fast shutdown, ssegate's drain
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc.stdout.close()
        self.log.close()
        if self.redis and self.own_redis:
            self.redis.terminate()
            self.redis.wait(timeout=10)


def start_redis(cores, tmp):
    """A fresh redis-server (no persistence) on a free port, pinned to `cores`; returns once
    it says it accepts connections (its own readiness line, bounded by READY_TIMEOUT)."""
    port = free_port()
    proc = subprocess.Popen(["taskset", "-c", cores, "redis-server", "--port", str(port),
                             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", tmp], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    proc.port = port
    deadline = time.monotonic() + READY_TIMEOUT
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    buf = b""
    try:
        while b"Ready to accept connections" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or proc.poll() is not None:
                raise SuiteError(f"redis-server did not start: {buf[-500:]!r}")
            if sel.select(timeout=left):
                buf += os.read(proc.stdout.fileno(), 4096)
    finally:
        sel.close()
    # Its log is not read any further: send it nowhere rather than fill the pipe.
    threading.Thread(target=lambda: proc.stdout.read(), daemon=True).start()
    return proc


# ---------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------

def kernel_counters():
    """Loopback packets the kernel dropped (the per-CPU input backlog, `netdev_max_backlog`,
    column 2 of /proc/net/softnet_stat) and TCP segments retransmitted, machine-wide. A drop on
    loopback costs the stream a retransmission timeout (200 ms, then doubling): a latency
    outlier that is the kernel's, not the server's, and that the report must show."""
    drops = 0
    with open("/proc/net/softnet_stat") as f:
        for line in f:
            drops += int(line.split()[1], 16)
    retrans = 0
    with open("/proc/net/snmp") as f:
        rows = [l.split() for l in f if l.startswith("Tcp:")]
    if len(rows) >= 2:
        retrans = int(rows[1][rows[0].index("RetransSegs")])
    return drops, retrans


def one_run(kind: ServerKind, scenario: Scenario, quick: bool, label: str):
    server = Server(kind)
    try:
        nodes = server.nodes()
        cmd = ["taskset", "-c", LOADGEN_CORE, str(LOAD),
               *[a for n in nodes for a in ("--target", n.addr)],
               "--flavor", kind.flavor, *[a for n in nodes for a in ("--server-pid", str(n.proc.pid))],
               "--jwt-key", JWT_KEY, "--label", label,
               *(["--transport", kind.transport, "--ca", str(TLS_CA)]
                 if kind.transport != "plain" else []),
               *(scenario.quick_args if quick else scenario.args)]
        drops0, retrans0 = kernel_counters()
        redis0 = cpu_us(server.redis.pid) if server.redis else 0
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise SuiteError(f"ssegate-load timed out after {RUN_TIMEOUT:.0f}s") from None
        if out.returncode != 0:
            raise SuiteError(f"ssegate-load failed: {out.stderr.strip()[-800:]}")
        lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
        if not lines:
            raise SuiteError("ssegate-load printed no JSON summary")
        for n in nodes:
            if n.proc.poll() is not None:
                raise SuiteError(f"{kind.name} died during the run: {n.stderr_tail()}")
        summary = json.loads(lines[-1])
        drops1, retrans1 = kernel_counters()
        summary["kernel_backlog_drops"] = drops1 - drops0
        summary["tcp_retransmits"] = retrans1 - retrans0
        if server.redis:
            redis_us = cpu_us(server.redis.pid) - redis0
            if summary.get("published"):
                summary["redis_cpu_us_per_publish"] = redis_us / summary["published"]
            if summary.get("received"):
                summary["redis_cpu_us_per_delivery"] = redis_us / summary["received"]
        return summary, shlex.join(cmd)

    finally:
        server.stop()


def cpu_us(pid):
    """User + system CPU of a process so far, in µs (/proc/<pid>/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1e6 / os.sysconf("SC_CLK_TCK")


def get(summary, path):
    """A summary's value at a dotted path; None where the run has none (the Redis columns of
    a server without Redis)."""
    v = summary
    for part in path.split("."):
        if not isinstance(v, dict) or part not in v:
            return None
        v = v[part]
    return v


@dataclass
class Cell:
    runs: list = field(default_factory=list)       # summaries
    errors: list = field(default_factory=list)

    def median(self, path):
        vals = [v for v in (get(s, path) for s in self.runs) if v is not None]
        return statistics.median(vals) if vals else None


def fmt(v):
    if v is None:
        return "—"
    if isinstance(v, float) and not v.is_integer():
        return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
    return f"{int(v):,}"


def ratio(ours, theirs, better):
    if ours is None or theirs is None or better == "info":
        return ""
    if theirs == 0:
        return "=" if ours == 0 else "∞"
    r = ours / theirs
    return f"{r:.2f}×"


def scenario_table(scenario: Scenario, cells: dict, kinds: list):
    """Markdown: one row per server (medians), then ssegate's ratio to each peer."""
    cols = scenario.metrics
    head = "| server | runs | " + " | ".join(f"{t} ({b})" if b != "info" else t for _, t, b in cols) + " |"
    lines = [head, "|---|---:|" + "---:|" * len(cols)]
    for k in kinds:
        c = cells[k]
        lines.append(f"| {TARGETS[k].name} | {len(c.runs)}{' (+' + str(len(c.errors)) + ' failed)' if c.errors else ''} | "
                     + " | ".join(fmt(c.median(p)) for p, _, _ in cols) + " |")
    for ours_key in [k for k in kinds if TARGETS[k].impl == "ssegate"]:
        peers = [k for k in kinds if TARGETS[k].impl != "ssegate"
                 and TARGETS[k].cores == TARGETS[ours_key].cores]
        for peer in peers:
            lines.append(f"| *{TARGETS[ours_key].name} ÷ {TARGETS[peer].name}* | | "
                         + " | ".join(ratio(cells[ours_key].median(p), cells[peer].median(p), b)
                                      for p, _, b in cols) + " |")
    errors = [(k, e) for k in kinds for e in cells[k].errors]
    for k, e in errors:
        lines.append(f"\n- failed run, {TARGETS[k].name}: `{e[:300]}`")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

def sh(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10, cwd=ROOT).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), "?")
    mem_kib = next((int(l.split()[1]) for l in Path("/proc/meminfo").read_text().splitlines()
                    if l.startswith("MemTotal:")), 0)
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return {"cpu": cpu, "nproc": sh(["nproc"]), "mem": f"{mem_kib / 1048576:.1f} GiB",
            "kernel": platform.release(), "loadavg_at_start": load,
            "commit": sh(["git", "rev-parse", "--short", "HEAD"]),
            "branch": sh(["git", "rev-parse", "--abbrev-ref", "HEAD"]),
            "dirty": sh(["git", "status", "--porcelain", "--untracked-files=no"]),
            "nginx": sh(["nginx", "-v"]) or subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip(),
            "go": sh(["go", "version"]), "rustc": sh(["rustc", "--version"])}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer connections, shorter runs")
    ap.add_argument("--runs", type=int, default=None, help="runs per cell (default 3, --quick 1)")
    ap.add_argument("--scenarios", default=",".join(s.key for s in SCENARIOS),
                    help="comma-separated subset of: " + ", ".join(s.key for s in SCENARIOS))
    ap.add_argument("--targets", default=",".join(DEFAULT_TARGETS),
                    help="comma-separated subset of: " + ", ".join(TARGETS))
    ap.add_argument("--out", type=Path, default=None, help="report path (default bench-results/suite-<UTC time>.md)")
    args = ap.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    if not 1 <= runs <= 9:
        ap.error("--runs must be within 1..9")
    scenarios = [s for key in args.scenarios.split(",") for s in SCENARIOS if s.key == key.strip()]
    kinds = [t.strip() for t in args.targets.split(",") if t.strip()]
    if not scenarios or any(k not in TARGETS for k in kinds):
        ap.error("unknown scenario or target")
    for binary in [LOAD, SSEGATE] + [GO_PEER] * ("go-1" in kinds or "go-2" in kinds) + [AXUM_PEER] * any(k.startswith("axum") for k in kinds):
        if not os.access(binary, os.X_OK):
            ap.error(f"{binary} is missing: run benches/run-suite.sh, which builds everything")

    started = _dt.datetime.now(_dt.timezone.utc)
    out = args.out or ROOT / f"bench-results/suite-{started:%Y-%m-%dT%H%MZ}.md"
    info = machine()
    command = shlex.join(["benches/run-suite.sh", *sys.argv[1:]])
    sections = []
    commands = {}
    for sc in scenarios:
        cells = {k: Cell() for k in kinds}
        print(f"\n== {sc.title} ==", flush=True)
        # Interleave servers within each round, so that slow drifts in machine load (another
        # engineer compiles on this machine) spread over all servers rather than one.
        for r in range(1, runs + 1):
            for k in kinds:
                try:
                    summary, cmd = one_run(TARGETS[k], sc, args.quick, f"{sc.key}/{k}/{r}")
                    cells[k].runs.append(summary)
                    commands.setdefault(sc.key, cmd)
                    head = sc.metrics[0]
                    extra = "".join(f", {m[1]} = {fmt(get(summary, m[0]))}" for m in sc.metrics[1:2])
                    print(f"  run {r} {TARGETS[k].name:<26} {head[1]} = {fmt(get(summary, head[0]))}{extra}, "
                          f"kernel drops {summary['kernel_backlog_drops']}, "
                          f"TCP retransmits {summary['tcp_retransmits']}", flush=True)
                except SuiteError as e:
                    cells[k].errors.append(str(e))
                    print(f"  run {r} {TARGETS[k].name:<26} FAILED: {e}", file=sys.stderr, flush=True)
        table = scenario_table(sc, cells, kinds)
        print(table, flush=True)
        sections.append((sc, table, cells))

    md = [f"# ssegate benchmark suite, {started:%Y-%m-%d %H:%M} UTC", "",
          f"- Command: `{command}`" + (" (quick mode: reduced sizes)" if args.quick else ""),
          f"- Commit: `{info['commit']}` on `{info['branch']}`" + (" (uncommitted changes)" if info["dirty"] else ""),
          f"- Machine: {info['cpu']}, nproc {info['nproc']}, {info['mem']}, Linux {info['kernel']}; "
          f"load average at start {info['loadavg_at_start']}",
          f"- Peers: {info['nginx']} with libnginx-mod-nchan; {info['go']}; {info['rustc']} (ssegate, axum peer, load generator)",
          f"- Placement: servers pinned with `taskset -c 0` (one core) or `-c 0,1` (two-core group); "
          f"the load generator on core {LOADGEN_CORE}. Every server is started fresh for every run.",
          f"- Medians of {runs} run(s) per cell; runs of different servers are interleaved.",
          "- **Noise**: this machine is shared with another engineer who compiles and runs tests; "
          "figures move between runs, so compare ratios measured in the same suite, not absolute "
          "numbers across reports.",
          "- Ratios are ssegate ÷ peer for the same column: below 1× is better for ssegate where "
          "lower is better (latency, CPU, memory), above 1× where higher is better (events/s).",
          "- Peers do not verify publisher JWTs (ssegate verifies an HS256 token per publish); "
          "axum encodes each event per subscriber (its `Event` is per stream); ssegate, nchan and the Go peer encode it once per publish.",
          *(["- \"+ Redis\" rows: a fresh `redis-server` (" + sh(["redis-server", "--version"]).split(" sha")[0]
             + ", no persistence) per run, pinned to the server's core(s); the server's CPU columns count "
             "its own process only; Redis's CPU is its own column (— for servers without Redis)."] if any(TARGETS[k].redis for k in kinds) else []),
          ""]
    for sc, table, cells in sections:
        md += [f"## {sc.title}", "", f"`{commands.get(sc.key, '(no successful run)')}` (sizes for this scenario; "
               "target, pid and label vary per run)", "", table, ""]
    md += ["## Raw summaries (one JSON line per run)", "", "```"]
    for sc, _, cells in sections:
        for k in kinds:
            md += [json.dumps(s, separators=(",", ":")) for s in cells[k].runs]
    md += ["```", ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a") as f:
        f.write("\n".join(md) + "\n")
    print(f"\nreport written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
