#!/usr/bin/env bash
# Builds every fuzz target once, then runs each for the given time (seconds, default 20).
# Fails if any target finds a crash (a panic: a broken property), a timeout (one input
# slower than 10 s) or an out-of-memory; prints each target's executions at the end.
#
#   tests/fuzz/run.sh            # 20 s per target
#   tests/fuzz/run.sh 600        # longer
#   FUZZ_TARGETS="selector jwt" tests/fuzz/run.sh 60
#   FUZZ_RUNS=10000000 tests/fuzz/run.sh 7200   # 10M executions each (or 2 h, if sooner)
#   FUZZ_TOOLCHAIN=nightly FUZZ_SANITIZER=address tests/fuzz/run.sh   # + ASan, leak checks
#   FUZZ_TARGET_DIR=~/.cache/ssegate-fuzz tests/fuzz/run.sh   # keep the build between clones
#
# By default the targets are built with the default (stable) toolchain and no sanitizer
# (`-s none`: coverage instrumentation only, which stable supports); the code under test
# forbids `unsafe` outside src/net/sys.rs. A nightly with `-s address` also checks the
# unsafe Rust below it and reports leaks, at a fifth to a half of the speed (the per-input
# time budget of the selector target is set for builds without a sanitizer).
#
# A cold build takes about 8 minutes on one core (mostly the dependencies: aws-lc, glommio);
# FUZZ_TARGET_DIR outside the work tree lets the next run reuse it.
#
# New inputs go to a scratch corpus (the committed seeds in corpus/<target>/ stay as
# they are); crashing inputs are kept in tests/fuzz/artifacts/<target>/ (not committed).
# Reproduce one with: tests/fuzz/target/<triple>/release/<target> <file>
set -euo pipefail
secs=${1:-20}
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."

toolchain=${FUZZ_TOOLCHAIN:+"+$FUZZ_TOOLCHAIN"}
sanitizer=${FUZZ_SANITIZER:-none}
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
target_dir=${FUZZ_TARGET_DIR:-$here/target}
# shellcheck disable=SC2086 # $toolchain is empty or one word
cargo $toolchain fuzz build -s "$sanitizer" --fuzz-dir tests/fuzz --target-dir "$target_dir"
# shellcheck disable=SC2086
triple=$(rustc $toolchain -vV | sed -n 's/^host: //p')
bin="$target_dir/$triple/release"
targets=${FUZZ_TARGETS:-$(cargo $toolchain fuzz list --fuzz-dir tests/fuzz)}

# Longest input per target: past the 8 KiB head limit for heads; selectors and topics of
# realistic size, so the per-input time budget of the selector target means something.
max_len() {
    case $1 in
        http_head) echo 10000 ;;
        selector) echo 1024 ;;
        *) echo 4096 ;;
    esac
}

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failed=()
summary=()
for t in $targets; do
    mkdir -p "$scratch/$t" "$here/artifacts/$t"
    echo "== $t: ${secs}s"
    status=0
    "$bin/$t" "$scratch/$t" "$here/corpus/$t" \
        -max_total_time="$secs" ${FUZZ_RUNS:+-runs="$FUZZ_RUNS"} -timeout=10 -rss_limit_mb=2048 -max_len="$(max_len "$t")" \
        -print_final_stats=1 -artifact_prefix="$here/artifacts/$t/" \
        >"$scratch/$t.log" 2>&1 || status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$scratch/$t.log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$scratch/$t.log" | tail -n 1)
    if [ "$status" -ne 0 ]; then
        failed+=("$t")
        echo "-- $t FAILED (exit $status); the end of its log:"
        grep -v '^#[0-9]' "$scratch/$t.log" | tail -n 40
        ls -t "$here/artifacts/$t/" | head -n 3 | sed "s#^#   artifact: $here/artifacts/$t/#"
    fi
    summary+=("$(printf '%-14s %10s executions %8s exec/s  %s' "$t" "${execs:-?}" "${rate:-?}" \
        "$([ "$status" -eq 0 ] && echo ok || echo FAILED)")")
done

echo
echo "fuzz summary (${secs}s${FUZZ_RUNS:+ or $FUZZ_RUNS runs} per target, toolchain ${FUZZ_TOOLCHAIN:-default}, sanitizer $sanitizer):"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -ne 0 ]; then
    echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]}"
    exit 1
fi
echo "fuzz: all targets ok"
