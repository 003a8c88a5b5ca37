#!/usr/bin/env bash
# Fuzzes the launch path with cargo-fuzz (libFuzzer): builds every target in fuzz/, then runs each for
# SECONDS from the seeds committed in fuzz/corpus/<target>. Fails when any target finds a crash: a
# panic, a broken property (a signed launch that does not verify, a tampered one that does), a 500
# from the server, or a connection that hangs. The input is saved in fuzz/artifacts/<target>/ and
# replays with `cargo fuzz run -s none -a <target> fuzz/artifacts/<target>/crash-...`.
#
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET]          default 60, as CI runs it
#   FUZZ_TARGETS="oauth_verify" bash scripts/fuzz.sh 600
#
# A longer run, before a release or overnight: inputs that reach new code are kept in
# fuzz/target/corpus/<target> (ignored by git), so each run continues where the last one stopped.
#   bash scripts/fuzz.sh 3600
#
# Stable Rust: cargo-fuzz needs nightly only for sanitizers (-Zsanitizer). The project has no unsafe
# code, so by default the targets are built without one (-s none), with debug assertions and overflow
# checks (-a), which works on stable as it is. FUZZ_SANITIZER=address builds with AddressSanitizer
# instead; stable rustc then takes the -Z flag only with RUSTC_BOOTSTRAP=1, which this script sets.
# cargo-fuzz is pinned below and fuzz/Cargo.lock is committed, so every machine builds the same thing.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
case "$seconds" in
    '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET]" >&2; exit 2 ;;
esac
cargo_fuzz_version=0.13.2
sanitizer="${FUZZ_SANITIZER:-none}"
if [ "$sanitizer" != none ]; then
    export RUSTC_BOOTSTRAP=1
fi
flags=(--sanitizer "$sanitizer" --debug-assertions)
unset CARGO_TARGET_DIR

if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $cargo_fuzz_version" ]; then
    echo "== installing cargo-fuzz $cargo_fuzz_version"
    cargo install --locked --version "$cargo_fuzz_version" cargo-fuzz
fi

targets="${FUZZ_TARGETS:-$(cargo fuzz list)}"
started=$SECONDS
echo "== building fuzz targets (sanitizer: $sanitizer)"
cargo fuzz build "${flags[@]}"
echo "built in $((SECONDS - started)) s"

# launch_handler keeps its SQLite database in a temporary directory that libFuzzer's exit leaves.
export TMPDIR="$PWD/fuzz/target/tmp"
rm -rf "$TMPDIR"
mkdir -p "$TMPDIR"

passed=0
failed=()
for target in $targets; do
    echo "== fuzzing $target for ${seconds}s"
    mkdir -p "fuzz/target/corpus/$target"
    # New inputs go to the first directory; the committed seeds are only read.
    if cargo fuzz run "${flags[@]}" "$target" "fuzz/target/corpus/$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 \
        -print_funcs=0; then
        passed=$((passed + 1))
    else
        failed+=("$target")
    fi
done
rm -rf "$TMPDIR"

echo "== fuzzing took $((SECONDS - started)) s"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzzing failed for: ${failed[*]} (crashing inputs are in fuzz/artifacts/<target>/)" >&2
fi
echo "fuzz: $passed passed, ${#failed[@]} failed"
[ "${#failed[@]}" -eq 0 ]
