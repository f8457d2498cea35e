#!/usr/bin/env bash
# Smoke test of the load generator against the gateway (what CI runs; the benchmarks do not):
# builds ssegate and benches/load in release, then `ssegate-load --smoke`, which starts the
# gateway, opens 300 subscribers over 2 processes and 10 topics, publishes 200 events/s for
# 3 s, and exits non-zero unless every delivery arrived exactly once.
set -euo pipefail
cd "$(dirname "$0")/.."

# glommio pins io_uring memory: give the memlock limit headroom where we can (root can).
ulimit -l unlimited 2>/dev/null || ulimit -l 65536 2>/dev/null || true

cargo build --release --locked --bin ssegate
cargo build --release --locked --manifest-path benches/load/Cargo.toml
cargo test --release --locked --manifest-path benches/load/Cargo.toml

timeout 120 benches/load/target/release/ssegate-load --smoke target/release/ssegate
