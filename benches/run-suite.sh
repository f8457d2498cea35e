#!/usr/bin/env bash
# The whole benchmark suite of issue 3: installs the peers, builds everything, tunes the
# loopback limits (best effort), then runs benches/run_suite.py, which writes
# bench-results/suite-<UTC time>.md. Arguments go to run_suite.py (--quick, --runs,
# --scenarios, --targets, --out). Loads 127.0.0.1 only. Not run in CI (see benches/smoke.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

# Peers: Go for the stdlib peer, nginx + nchan, redis-server for the "+ Redis" targets. apt
# only when something is missing.
if ! command -v go >/dev/null || ! command -v nginx >/dev/null \
   || ! command -v redis-server >/dev/null \
   || [ ! -e /usr/lib/nginx/modules/ngx_nchan_module.so ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y golang-go nginx libnginx-mod-nchan redis-server
fi

cargo build --release --locked --bin ssegate
cargo build --release --locked --manifest-path benches/load/Cargo.toml
cargo build --release --locked --manifest-path benches/peers/axum/Cargo.toml
# Standard library only: no module download, so no network and no proxy.
(cd benches/peers/go && GOFLAGS=-mod=mod GOPROXY=off go build -o ssegate-peer-go .)

# Best effort: deeper accept queues, more ephemeral ports, room for many files.
sysctl -q -w net.core.somaxconn=65535 2>/dev/null || true
sysctl -q -w net.ipv4.ip_local_port_range="1024 65535" 2>/dev/null || true
sysctl -q -w fs.nr_open=1048576 2>/dev/null || true
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# glommio pins io_uring memory.
ulimit -l unlimited 2>/dev/null || ulimit -l 65536 2>/dev/null || true

exec python3 benches/run_suite.py "$@"
