#!/usr/bin/env bash
# campaign.sh - the long fuzzing campaign: every harness for N minutes
# (default 30), two at a time, under nice -n 19 (the machine is shared).
#
# usage: tests/fuzz/campaign.sh [MINUTES] [OUT]      (OUT: /work/fuzz-campaign)
#        CAMPAIGN_HARNESSES="image npy" tests/fuzz/campaign.sh ...   (a subset)
#
# Builds the libFuzzer targets with clang in OUT/build, makes the seed
# corpora (OUT/seeds, make_corpus.py), then fuzzes each harness with its own
# growing corpus (OUT/corpus/<harness>, kept between campaigns). A crash,
# leak, timeout or OOM ends a libFuzzer run, so a harness is restarted for
# the time it has left; every crash file stays in OUT/artifacts/<harness>/.
# Logs: OUT/logs/<harness>.log (libFuzzer output, final stats of every run).
# Summary: OUT/summary.md, one table row per finished harness (wall and CPU
# minutes, executions, exec/s, cov, ft, corpus, crash files), "queued" or
# "running" until then.
set -uo pipefail
MINUTES=${1:-30}
OUT=${2:-/work/fuzz-campaign}
HERE=$(cd "$(dirname "$0")" && pwd)
TIMEFORMAT='=== cpu %U %S' # bash's `time`: user and system seconds of a run
ROOT=$(cd "$HERE/../.." && pwd)
# CAMPAIGN_HARNESSES="image csv" fuzzes only those.
read -r -a HARNESSES <<<"${CAMPAIGN_HARNESSES:-image tokenizer csv safetensors vocab npy model_config tar}"
PARALLEL=2
. "$HERE/fuzz_opts.sh"
SECONDS_EACH=$(awk -v m="$MINUTES" 'BEGIN { print int(m * 60) }')

mkdir -p "$OUT"/{logs,corpus,artifacts}
exec >>"$OUT/campaign.log" 2>&1
echo "$(date -u +%FT%TZ) campaign: ${MINUTES} min per harness, $PARALLEL at a time, pid $$"

nice -n 19 cmake -S "$HERE" -B "$OUT/build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
    nice -n 19 cmake --build "$OUT/build" -j2 >/dev/null || { echo "build failed"; exit 1; }
python3 "$HERE/make_corpus.py" --out "$OUT/seeds" --conformance "$ROOT/../shared/conformance" ||
    { echo "seed corpus failed"; exit 1; }

# The summary table: rewritten whenever a harness finishes.
declare -A ROW
write_summary() {
    local h
    {
        echo "# Fuzz campaign ($MINUTES min per harness, started $START)"
        echo
        echo "| harness | minutes | cpu minutes | executions | exec/s | cov | ft | corpus | findings |"
        echo "|---|---|---|---|---|---|---|---|---|"
        for h in "${HARNESSES[@]}"; do
            if [ -n "${ROW[$h]:-}" ]; then
                echo "${ROW[$h]}"
            elif [ -f "$OUT/logs/$h.log" ]; then
                echo "| $h | running | | | | | | | |"
            else
                echo "| $h | queued | | | | | | | |"
            fi
        done
    } >"$OUT/summary.md.tmp" && mv "$OUT/summary.md.tmp" "$OUT/summary.md"
}
START=$(date -u +%FT%TZ)
write_summary

# Fuzzes one harness for its whole time, restarting after a finding; writes
# OUT/logs/<harness>.done (seconds fuzzed) at the end.
fuzz_one() {
    local h=$1 log="$OUT/logs/$h.log" t0 end left runs=0
    t0=$(date +%s)
    end=$((t0 + SECONDS_EACH))
    mkdir -p "$OUT/corpus/$h" "$OUT/artifacts/$h"
    : >"$log"
    while left=$((end - $(date +%s))) && [ "$left" -gt 5 ]; do
        runs=$((runs + 1))
        echo "=== run $runs: $left s left" >>"$log"
        # A generous unit timeout: on this shared machine other people's
        # benchmarks stop (SIGSTOP) niced processes for minutes, and the
        # stopped time counts as wall-clock time of the unit. CPU time is
        # logged to tell fuzzing time from stopped time.
        # shellcheck disable=SC2046
        { time nice -n 19 "$OUT/build/fuzz_$h" $(fuzz_opts "$h" "$HERE") -timeout=600 \
            -max_total_time="$left" -print_final_stats=1 -artifact_prefix="$OUT/artifacts/$h/" \
            "$OUT/corpus/$h" "$OUT/seeds/$h" >>"$log" 2>&1; } 2>>"$log"
        echo "=== exit $?" >>"$log"
    done
    echo $(($(date +%s) - t0)) >"$OUT/logs/$h.done"
}

# A summary row from a finished harness's log, totals over its runs.
summarise() {
    local h=$1
    awk -v h="$h" -v secs="$(cat "$OUT/logs/$h.done")" \
        -v crashes="$(find "$OUT/artifacts/$h" -type f | wc -l)" \
        -v corp="$(find "$OUT/corpus/$h" -type f | wc -l)" '
        /^stat::number_of_executed_units:/ { execs += $2 }
        /cov: [0-9]+ ft: [0-9]+/ {
            for (i = 1; i <= NF; i++) { if ($i == "cov:") cov = $(i + 1); if ($i == "ft:") ft = $(i + 1) }
        }
        /^=== exit / { runs++; if ($3 != 0) stops++ }
        /^=== cpu / { cpu += $3 + $4 }
        END {
            printf "| %s | %.1f | %.1f | %d | %d | %s | %s | %d files | %d artifact files, %d of %d runs stopped |\n",
                h, secs / 60, cpu / 60, execs, secs ? execs / secs : 0, cov, ft, corp, crashes, stops, runs
        }' "$OUT/logs/$h.log"
}

refresh() {
    local h
    for h in "${HARNESSES[@]}"; do
        [ -f "$OUT/logs/$h.done" ] && [ -z "${ROW[$h]:-}" ] && ROW[$h]=$(summarise "$h")
    done
    write_summary
}

for h in "${HARNESSES[@]}"; do rm -f "$OUT/logs/$h.done" "$OUT/logs/$h.log"; done
running=0
for h in "${HARNESSES[@]}"; do
    if [ "$running" -ge "$PARALLEL" ]; then
        wait -n
        running=$((running - 1))
        refresh
    fi
    : >"$OUT/logs/$h.log"
    fuzz_one "$h" &
    running=$((running + 1))
    echo "$(date -u +%FT%TZ) $h started"
    write_summary
done
while [ "$running" -gt 0 ]; do
    wait -n
    running=$((running - 1))
    refresh
done
refresh
echo "$(date -u +%FT%TZ) campaign done: $OUT/summary.md"
