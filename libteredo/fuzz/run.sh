#!/bin/bash
# Runs every fuzz target for SECONDS each (default 20) on the stable
# toolchain, one after the other, and fails if any of them crashes.
#
#   libteredo/fuzz/run.sh [SECONDS]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). Stable Rust refuses the
# `-Zsanitizer=address` that cargo fuzz passes by default, so the targets
# are built with `--sanitizer none`: libFuzzer's coverage instrumentation
# (plain -C flags) still works, and a Rust panic, an overflow (debug
# assertions are on), a timeout or running out of memory is a crash.
# Each target starts from the committed seeds/<target>/ and grows a working
# corpus in corpus/<target>/ (not committed). A crash leaves its input in
# artifacts/<target>/ and the script stops with its name.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_EACH="${1:-20}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$(pwd)/../../target-fuzz}"
TARGETS=(wire conf_miredo conf_server privsep engine_client engine_relay engine_server portmap netlink http upnp)

# netlink fuzzes a parser of the Linux layer (libteredo's `sys` feature);
# the others build the sans-IO core alone, without any system crate.
cargo fuzz build --sanitizer none
cargo fuzz build --sanitizer none --features=sys netlink
status=0
for t in "${TARGETS[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    log="artifacts/$t/run.log"
    echo "fuzz: $t for ${SECONDS_EACH}s"
    case "$t" in
    netlink) features=(--features=sys) ;;
    *) features=() ;;
    esac
    if cargo fuzz run --sanitizer none "${features[@]}" "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
        -max_len=4096 -print_final_stats=1 >"$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
        speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
        cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
        echo "fuzz: $t ok: ${runs:-?} runs, ${speed:-?} exec/s, ${cov:-cov: ?}"
    else
        echo "fuzz: $t CRASHED (log $PWD/$log):"
        grep -E 'panicked|SUMMARY|Test unit written|ERROR' "$log" | head -20 || tail -30 "$log"
        status=1
    fi
done
exit "$status"
