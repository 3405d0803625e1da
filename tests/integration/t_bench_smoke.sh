#!/usr/bin/env bash
# A smoke run of the benchmark suite (bench/run.sh --quick): 64 MiB workloads,
# one round, every kind of system (plain CRIU, CRIU + lz4, the streamer driven
# directly, the daemon). It checks that the suite runs and that every restored
# workload verified its memory; the figures themselves are never judged here.
. "$(dirname "$0")/../lib.sh"

CASE=bench_quick
out=$T/results
if STASIS_BUILD=$STASIS_BUILD "$REPO/bench/run.sh" --quick --workdir "$T/work" --out "$out" \
	>"$T/bench.log" 2>&1; then
	ok $CASE
else
	tail -20 "$T/bench.log"
	fail $CASE
fi
check bench_results_table grep -q '^| mixed | 0.0625 | plain | 1/1 ' "$out/results.md"
check bench_stream_row grep -q '^| mixed | 0.0625 | stream-lz4-n2 | 1/1 ' "$out/results.md"
check bench_daemon_row grep -q '^| mixed | 0.0625 | stasis-lz4-n2 | 1/1 ' "$out/results.md"
check bench_tree_row grep -q '^| tree8 (8 procs) | 0.0625 | plain | 1/1 ' "$out/results.md"
check bench_raw_csv test "$(grep -c ',ok,' "$out/raw.csv")" -ge 9
check bench_no_failures sh -c "! grep -q 'Failed trials' '$out/results.md'"
finish
