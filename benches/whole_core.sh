#!/usr/bin/env bash
# Whole-core cross-check of "CPU per delivery": samples everything CPU 0 runs (perf cpu-clock,
# system-wide on CPU 0) while one server pinned there is driven by ssegate-load on CPU 1, and
# counts the samples that are not the idle task.
#
# Why: the suite's CPU figure is the server process's utime + stime. On loopback, the receive
# half of each send runs in softirq context on the sender's CPU, and a kernel with IRQ time
# accounting charges that softirq time to nobody's process. perf charges a sample to whatever
# CPU 0 was doing, softirqs included, so servers that make the kernel do different amounts of
# that work compare fairly here. It covers the whole load-generator run (connections included),
# so compare servers within one scenario, not with the suite's phase-only figures.
#
# Usage: benches/whole_core.sh SERVER -- ssegate-load arguments...
#   SERVER: ssegate | nchan | axum   (release builds, peers as built by benches/run-suite.sh)
#   KEEP=file.data keeps the perf recording (e.g. `perf report -i file.data --comm nginx`).
# Prints: deliveries, samples by context, and busy µs per delivery. Loads 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
kind=$1; shift
[ "${1:-}" = "--" ] && shift
command -v perf >/dev/null || { echo "needs perf (linux-perf)" >&2; exit 2; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
ulimit -l unlimited 2>/dev/null || true
TMP=$(mktemp -d /tmp/whole-core.XXXXXX)
SERVER=""
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; wait 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
FLAVOR=mercure
case $kind in
    ssegate)
        taskset -c 0 target/release/ssegate --listen "127.0.0.1:$PORT" --workers 1 \
            --publisher-jwt-key whole-core-key --heartbeat-interval 1h --admin-addr off \
            --max-connections 100000 --log-level warn >/dev/null 2>&1 & SERVER=$! ;;
    axum)
        taskset -c 0 benches/peers/axum/target/release/ssegate-peer-axum \
            --listen "127.0.0.1:$PORT" >/dev/null 2>&1 & SERVER=$! ;;
    nchan)
        FLAVOR=nchan
        sed -e "s/@WORKERS@/1/" -e "s/@LISTEN@/listen 127.0.0.1:$PORT backlog=4096;/" -e "s#@PREFIX@#$TMP#" \
            benches/peers/nchan/nginx.conf > "$TMP/nginx.conf"
        taskset -c 0 nginx -p "$TMP" -c "$TMP/nginx.conf" 2>/dev/null & SERVER=$! ;;
    *) echo "unknown server $kind" >&2; exit 2 ;;
esac
for _ in $(seq 100); do # bounded: 100 × 100 ms
    python3 -c "import socket; socket.create_connection(('127.0.0.1',$PORT),0.2)" 2>/dev/null && break
    sleep 0.1
done
perf record -q -e cpu-clock -F 4000 -C 0 -o "$TMP/perf.data" -- sleep 900 >/dev/null 2>&1 &
PERF=$!
sleep 0.3 # perf has no readiness signal; it is recording long before the subscribers connect
taskset -c 1 benches/load/target/release/ssegate-load --target "127.0.0.1:$PORT" \
    --flavor "$FLAVOR" --server-pid "$SERVER" --jwt-key whole-core-key --label "whole-core/$kind" \
    "$@" 2>/dev/null | tail -1 > "$TMP/summary.json"
kill -INT "$PERF"; wait "$PERF" 2>/dev/null || true
[ -n "${KEEP:-}" ] && cp "$TMP/perf.data" "$KEEP"
perf report -q -i "$TMP/perf.data" -n --sort comm -g none 2>/dev/null > "$TMP/comms"
python3 - "$kind" "$TMP/summary.json" "$TMP/comms" <<'EOF'
import json, sys
kind, summary, comms = sys.argv[1:]
s = json.load(open(summary))
rows = []
for line in open(comms):
    parts = line.split()
    if len(parts) >= 3:
        rows.append((parts[2], int(parts[1])))
total = sum(n for _, n in rows)
idle = sum(n for c, n in rows if c == "swapper")
busy = total - idle
us = busy * 250 / s["received"] if s["received"] else 0.0   # 4000 Hz: 250 µs per sample
top = ", ".join(f"{c} {n}" for c, n in sorted(rows, key=lambda r: -r[1])[:4])
print(f"{kind}: received {s['received']} missing {s['missing']}; CPU 0 samples {total} "
      f"(idle {idle}, busy {busy}: {top}); busy {us:.2f} µs per delivery; "
      f"process CPU {s['server_cpu_us_per_delivery']:.2f} µs per delivery (measured phase); "
      f"p99 {s['latency_us']['p99']} µs")
EOF
