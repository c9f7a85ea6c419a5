#!/usr/bin/env bash
# Runs the Postern fuzz targets (fuzz/Cargo.toml) for a bounded time each.
#
#   fuzz/run.sh SECONDS [TARGET...]   fuzz every target (or the named ones)
#   fuzz/run.sh --minimize [TARGET...] fold new inputs into fuzz/corpus/, minimised
#   fuzz/run.sh --list                 print the target names
#
# Exits non-zero if any target crashed (panic, sanitizer report, timeout or
# out-of-memory); the crashing input is in fuzz/artifacts/TARGET/ and the
# log in fuzz/target/logs/TARGET.log.
#
# Toolchain: cargo-fuzz needs nightly-only rustc flags (-Zsanitizer=address,
# -Cpasses=sancov-module). Only stable Rust is installed here, so the script
# sets RUSTC_BOOTSTRAP=1, which lets stable rustc accept them. It is used for
# these fuzz builds only, never for the shipped binaries.
#
# Environment:
#   FUZZ_SANITIZER  address (default) or none (if ASan is unavailable)
#   FUZZ_PARALLEL   targets run at once, 1 or 2 (default 2; the build
#                   machines have 2 cores shared with other builders)
#   FUZZ_RSS_MB     libFuzzer -rss_limit_mb (default 2048)
#
# Committed seeds live in fuzz/corpus/TARGET and are only read; inputs a run
# discovers go to fuzz/target/corpus/TARGET, so a run never dirties the tree.
# `--minimize` merges both with `cargo fuzz cmin` into fuzz/corpus/TARGET,
# keeping a smallest set of inputs that covers every edge reached (hit
# counts are ignored, so the committed corpus stays small; a run rebuilds
# the rest in seconds).
set -euo pipefail

FUZZ_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$FUZZ_DIR/.."

export RUSTC_BOOTSTRAP=1
# The fuzz build uses its own flags (sanitizer, coverage), so it keeps its own
# target dir instead of invalidating the workspace's shared one.
unset CARGO_TARGET_DIR
TARGET_DIR="$FUZZ_DIR/target"
SANITIZER="${FUZZ_SANITIZER:-address}"
PARALLEL="${FUZZ_PARALLEL:-2}"
RSS_MB="${FUZZ_RSS_MB:-2048}"
TRIPLE="x86_64-unknown-linux-gnu"
# Inputs that use SMTP words get these as mutation material.
DICT_TARGETS=" command_parser address session reply_parser "

usage() {
    sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

all_targets() {
    cargo fuzz list --fuzz-dir "$FUZZ_DIR"
}

build() {
    echo "building fuzz targets (sanitizer: $SANITIZER)" >&2
    cargo fuzz build --fuzz-dir "$FUZZ_DIR" --target-dir "$TARGET_DIR" \
        --sanitizer "$SANITIZER" "$@" >&2
}

binary() {
    echo "$TARGET_DIR/$TRIPLE/release/$1"
}

# One bounded run of one target; prints a summary line, returns its status.
run_one() {
    local target="$1" seconds="$2"
    local log="$TARGET_DIR/logs/$target.log"
    local new_corpus="$TARGET_DIR/corpus/$target"
    mkdir -p "$new_corpus" "$FUZZ_DIR/corpus/$target" "$FUZZ_DIR/artifacts/$target" \
        "$(dirname "$log")"
    local args=(
        "$new_corpus" "$FUZZ_DIR/corpus/$target"
        -max_total_time="$seconds"
        -rss_limit_mb="$RSS_MB"
        -timeout=10
        -print_final_stats=1
        -artifact_prefix="$FUZZ_DIR/artifacts/$target/"
    )
    if [[ "$DICT_TARGETS" == *" $target "* ]]; then
        args+=(-dict="$FUZZ_DIR/smtp.dict")
    fi
    local status=0
    "$(binary "$target")" "${args[@]}" >"$log" 2>&1 || status=$?
    local done_line
    done_line="$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)"
    if [[ $status -eq 0 ]]; then
        echo "ok    $target  ${seconds}s  ${done_line:-no DONE line}"
    else
        echo "CRASH $target  exit $status  see $log and $FUZZ_DIR/artifacts/$target/"
        grep -E 'panicked at|ERROR: (AddressSanitizer|libFuzzer)|SUMMARY' "$log" | head -n 5 | sed 's/^/      /'
    fi
    return "$status"
}

minimize() {
    local target
    for target in "$@"; do
        local new_corpus="$TARGET_DIR/corpus/$target"
        if [[ -d "$new_corpus" ]]; then
            cp -n "$new_corpus"/* "$FUZZ_DIR/corpus/$target/" 2>/dev/null || true
        fi
        cargo fuzz cmin --fuzz-dir "$FUZZ_DIR" --target-dir "$TARGET_DIR" \
            --sanitizer "$SANITIZER" "$target" "$FUZZ_DIR/corpus/$target" \
            -- -set_cover_merge=1 -use_counters=0 -rss_limit_mb="$RSS_MB" -timeout=10 \
            >"$TARGET_DIR/logs/cmin-$target.log" 2>&1
        echo "minimised $target: $(ls "$FUZZ_DIR/corpus/$target" | wc -l) files," \
            "$(cat "$FUZZ_DIR/corpus/$target"/* | wc -c) bytes"
    done
}

[[ $# -ge 1 ]] || usage
case "$1" in
--list)
    all_targets
    exit 0
    ;;
--minimize)
    shift
    mapfile -t targets < <([[ $# -gt 0 ]] && printf '%s\n' "$@" || all_targets)
    mkdir -p "$TARGET_DIR/logs"
    build
    minimize "${targets[@]}"
    exit 0
    ;;
esac

seconds="$1"
shift
[[ "$seconds" =~ ^[0-9]+$ && "$seconds" -gt 0 ]] || usage
[[ "$PARALLEL" == 1 || "$PARALLEL" == 2 ]] || { echo "FUZZ_PARALLEL must be 1 or 2" >&2; exit 2; }
mapfile -t targets < <([[ $# -gt 0 ]] && printf '%s\n' "$@" || all_targets)
known=" $(all_targets | tr '\n' ' ') "
for target in "${targets[@]}"; do
    [[ "$known" == *" $target "* ]] || { echo "unknown target: $target" >&2; exit 2; }
done

build
failed=0
running=0
for target in "${targets[@]}"; do
    if [[ $running -ge $PARALLEL ]]; then
        wait -n || failed=1
        running=$((running - 1))
    fi
    run_one "$target" "$seconds" &
    running=$((running + 1))
done
while [[ $running -gt 0 ]]; do
    wait -n || failed=1
    running=$((running - 1))
done
if [[ $failed -ne 0 ]]; then
    echo "fuzzing found crashes" >&2
fi
exit "$failed"
