#!/usr/bin/env bash
# smoke.sh - CTest's fuzz_smoke: builds the libFuzzer targets with clang
# (tests/fuzz as a standalone project, parsers only) and runs each for a
# short fixed time over a copy of its seed corpus, two at a time.
#
# usage: smoke.sh SOURCE_DIR BUILD_DIR CORPUS_DIR   (FUZZ_SMOKE_SECONDS: 15)
# Exit: 0 all ran clean; 1 a fuzzer found something (crash, leak, timeout,
# OOM: the input is saved under BUILD_DIR/artifacts/<harness>/ and its log
# printed) or the build failed; 77 (skip) only when clang or libFuzzer is
# missing, which .ci/install-deps installs.
set -uo pipefail
SRC=$1 BUILD=$2 CORPUS=$3
SECS=${FUZZ_SMOKE_SECONDS:-15}
. "$SRC/fuzz_opts.sh"

CC_FUZZ=${CLIPSCORE_FUZZ_CC:-clang}
if ! command -v "$CC_FUZZ" >/dev/null; then
    echo "fuzz_smoke: $CC_FUZZ not found: skipped (install clang and libclang-rt-dev)"
    exit 77
fi
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' >"$probe/p.c"
if ! "$CC_FUZZ" -fsanitize=fuzzer "$probe/p.c" -o "$probe/p" 2>"$probe/err"; then
    echo "fuzz_smoke: $CC_FUZZ cannot link libFuzzer: skipped (install libclang-rt-dev)"
    cat "$probe/err"
    exit 77
fi

echo "fuzz_smoke: building the fuzzers in $BUILD"
if ! { cmake -S "$SRC" -B "$BUILD" -DCMAKE_C_COMPILER="$CC_FUZZ" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    >"$BUILD.configure.log" 2>&1 && cmake --build "$BUILD" -j2 >"$BUILD.build.log" 2>&1; }; then
    cat "$BUILD.configure.log" "$BUILD.build.log" 2>/dev/null | tail -40
    echo "fuzz_smoke: build failed"
    exit 1
fi
HARNESSES=$(cd "$BUILD" && ls fuzz_* | grep -v '\.' | sed 's/^fuzz_//' | sort)
[ -n "$HARNESSES" ] || { echo "fuzz_smoke: no fuzzers built"; exit 1; }

run() {
    local h=$1 work="$BUILD/smoke/$h"
    rm -rf "$work" "$BUILD/artifacts/$h"
    mkdir -p "$work" "$BUILD/artifacts/$h"
    # shellcheck disable=SC2046
    nice -n 19 "$BUILD/fuzz_$h" $(fuzz_opts "$h" "$SRC") -max_total_time="$SECS" \
        -print_final_stats=1 -artifact_prefix="$BUILD/artifacts/$h/" \
        "$work" "$CORPUS/$h" >"$BUILD/smoke/$h.log" 2>&1
}

mkdir -p "$BUILD/smoke"
pids=() names=()
fail=0
for h in $HARNESSES; do
    run "$h" &
    pids+=($!) names+=("$h")
    # Two at a time: wait for the older of the pair.
    if [ ${#pids[@]} -eq 2 ]; then
        wait "${pids[0]}" || { fail=1; failed+=" ${names[0]}"; }
        pids=("${pids[1]}") names=("${names[1]}")
    fi
done
for i in "${!pids[@]}"; do wait "${pids[$i]}" || { fail=1; failed+=" ${names[$i]}"; }; done

for h in $HARNESSES; do
    log="$BUILD/smoke/$h.log"
    execs=$(awk '/^stat::number_of_executed_units:/ { print $2 }' "$log")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    echo "fuzz_smoke: $h: ${execs:-?} executions, ${cov:-cov: ?}"
done
if [ "$fail" -ne 0 ]; then
    for h in ${failed:-}; do
        echo "==== fuzz_$h found a problem; its log ends:"
        tail -60 "$BUILD/smoke/$h.log"
        echo "==== inputs: $(ls "$BUILD/artifacts/$h"/* 2>/dev/null | tr '\n' ' ')"
        echo "     (minimise with fuzz_$h -minimize_crash=1 -runs=10000 FILE, add it to"
        echo "      tests/fuzz/regressions/$h/ with the fix)"
    done
    exit 1
fi
echo "fuzz_smoke: every fuzzer ran ${SECS}s clean"
