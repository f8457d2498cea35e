#!/usr/bin/env bash
# The ceiling for scenario (5), publish throughput on one core: how many POSTs per second one
# core can answer at all here, measured with wrk (C, one thread, pinned to the other core) as
#   1. nginx answering `return 204` (no work: the cost of HTTP over loopback alone),
#   2. nchan publishing to a channel nobody subscribes to,
#   3. ssegate publishing (HS256 token verified per request) to a topic nobody subscribes to,
# interleaved, RUNS runs each (default 3), medians printed. Loads 127.0.0.1 only; needs nginx,
# libnginx-mod-nchan and wrk (installed when missing) and a release build of ssegate.
# Usage: benches/publish_ceiling.sh [RUNS] [CONNECTIONS] [SECONDS]
# With SSEGATE_BASELINE=/path/to/an/older/ssegate, that binary runs as a fourth server, for
# before/after figures measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
CONNS=${2:-64}
SECS=${3:-5}
if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null \
   || [ ! -e /usr/lib/nginx/modules/ngx_nchan_module.so ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y wrk nginx libnginx-mod-nchan
fi
cargo build --release --locked --bin ssegate
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
ulimit -l unlimited 2>/dev/null || ulimit -l 65536 2>/dev/null || true

TMP=$(mktemp -d /tmp/publish-ceiling.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # bounded: 100 × 50 ms
    for _ in $(seq 100); do
        python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "nothing listens on $1" >&2; return 1
}

P204=$(free_port)
mkdir -p "$TMP/ng204"
cat > "$TMP/ng204/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $TMP/ng204/nginx.pid;
error_log $TMP/ng204/error.log warn;
events { worker_connections 4096; }
http { access_log off; server { listen 127.0.0.1:$P204; location / { return 204; } } }
EOF
taskset -c 0 nginx -p "$TMP/ng204" -c "$TMP/ng204/nginx.conf" & PIDS+=($!)

PNCHAN=$(free_port)
mkdir -p "$TMP/nchan"
sed -e "s/@WORKERS@/1/" -e "s/@LISTEN@/listen 127.0.0.1:$PNCHAN backlog=4096;/" -e "s#@PREFIX@#$TMP/nchan#" \
    benches/peers/nchan/nginx.conf > "$TMP/nchan/nginx.conf"
taskset -c 0 nginx -p "$TMP/nchan" -c "$TMP/nchan/nginx.conf" & PIDS+=($!)

KEY=publish-ceiling-key
PSSE=$(free_port)
taskset -c 0 target/release/ssegate --listen "127.0.0.1:$PSSE" --workers 1 \
    --publisher-jwt-key "$KEY" --admin-addr off --log-level warn >/dev/null & PIDS+=($!)
NAMES=("nginx return 204" "nchan publish" "ssegate publish")
if [ -n "${SSEGATE_BASELINE:-}" ]; then
    PBASE=$(free_port)
    taskset -c 0 "$SSEGATE_BASELINE" --listen "127.0.0.1:$PBASE" --workers 1 \
        --publisher-jwt-key "$KEY" --admin-addr off --log-level warn >/dev/null & PIDS+=($!)
    wait_port "$PBASE"
    NAMES+=("ssegate baseline")
fi
wait_port "$P204"; wait_port "$PNCHAN"; wait_port "$PSSE"

TOKEN=$(python3 - "$KEY" <<'EOF'
import base64, hashlib, hmac, json, sys
b = lambda d: base64.urlsafe_b64encode(d).rstrip(b"=")
head = b(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b(json.dumps({"mercure": {"publish": ["*"]}}).encode())
sig = b(hmac.new(sys.argv[1].encode(), head + b"." + body, hashlib.sha256).digest())
print((head + b"." + body + b"." + sig).decode())
EOF
)
DATA=$(printf 'x%.0s' $(seq 100))
cat > "$TMP/mercure.lua" <<EOF
wrk.method = "POST"
wrk.body = "topic=ceiling&data=$DATA"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Bearer $TOKEN"
EOF
cat > "$TMP/plain.lua" <<EOF
wrk.method = "POST"
wrk.body = "$DATA"
wrk.headers["Content-Type"] = "text/plain"
EOF

declare -A RESULTS
run() { # name url script
    local out rps
    out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${SECS}s" -s "$3" "$2")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    if grep -q "Non-2xx" <<<"$out"; then echo "$1: non-2xx answers" >&2; grep "Non-2xx" <<<"$out" >&2; fi
    RESULTS[$1]="${RESULTS[$1]:-} $rps"
    printf '  run %-8s %-22s %10s req/s\n' "$i" "$1" "$rps"
}
echo "publish ceiling: wrk -t1 -c$CONNS -d${SECS}s, servers on core 0, wrk on core 1, $RUNS runs"
for i in $(seq "$RUNS"); do
    run "nginx return 204" "http://127.0.0.1:$P204/" "$TMP/plain.lua"
    run "nchan publish" "http://127.0.0.1:$PNCHAN/pub/ceiling" "$TMP/plain.lua"
    run "ssegate publish" "http://127.0.0.1:$PSSE/.well-known/mercure" "$TMP/mercure.lua"
    if [ -n "${PBASE:-}" ]; then
        run "ssegate baseline" "http://127.0.0.1:$PBASE/.well-known/mercure" "$TMP/mercure.lua"
    fi
done
echo "medians:"
for name in "${NAMES[@]}"; do
    # shellcheck disable=SC2086
    printf '  %-22s %10.0f req/s\n' "$name" "$(python3 -c 'import statistics,sys; print(statistics.median(map(float, sys.argv[1:])))' ${RESULTS[$name]})"
done
