#!/usr/bin/env bash
# run.sh SECONDS [TARGET...]: build the libFuzzer targets (make fuzz), seed
# their corpora from real checkpoints (make-seeds.sh) and run each for SECONDS
# (default 25), one after another. Corpora grow in build-fuzz/corpus/<target>;
# crashes, leaks and hangs land in build-fuzz/findings/<target>/ and make the
# run fail. Prints one line per target: "fuzz TARGET: N runs, status".
#   FUZZ_JOBS=N   run N targets at once (default 1; CI has 2 cores)
set -u
secs=${1:-25}
shift || true
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo" || exit 1
make -s fuzz >/dev/null || { echo "FAIL fuzz build"; exit 1; }
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=($(ls build-fuzz/ | sed -n 's/^\(fuzz_[a-z_]*\)$/\1/p'))
seeds=build-fuzz/seeds
# Seeds come from the current streamer: make them again when it or the seed
# script changed (or FUZZ_RESEED is set).
if [ ! -e "$seeds/.stamp" ] || [ -n "${FUZZ_RESEED:-}" ] ||
	[ tests/fuzz/make-seeds.sh -nt "$seeds/.stamp" ] ||
	[ "${STASIS_BUILD:-build}/stasis-streamer" -nt "$seeds/.stamp" ]; then
	rm -rf "$seeds"
	tests/fuzz/make-seeds.sh "$seeds" >/dev/null || { echo "FAIL fuzz seeds"; exit 1; }
	touch "$seeds/.stamp"
fi
# Stop at the first problem of any sanitizer; libFuzzer checks leaks itself.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

run_one() {
	local t=$1 corpus=build-fuzz/corpus/$1 found=build-fuzz/findings/$1 log
	mkdir -p "$corpus" "$found"
	log=build-fuzz/$t.log
	build-fuzz/$t -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -max_len=65536 \
		-print_final_stats=1 -artifact_prefix="$found/" "$corpus" "$seeds/$t" \
		>"$log" 2>&1
	local rc=$? runs
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	if [ $rc -eq 0 ]; then
		echo "fuzz $t: ${runs:-?} runs in ${secs}s, no finding"
	else
		echo "fuzz $t: ${runs:-?} runs, FINDING (exit $rc): $(ls "$found" | head -3 | tr '\n' ' ')"
		grep -E 'ERROR|SUMMARY|runtime error|descriptor leak' "$log" | head -5 | sed 's/^/    /'
	fi
	return $rc
}

rc=0
jobs=${FUZZ_JOBS:-1}
pids=()
for t in "${targets[@]}"; do
	[ -x "build-fuzz/$t" ] || { echo "FAIL no target $t"; rc=1; continue; }
	run_one "$t" &
	pids+=($!)
	if [ ${#pids[@]} -ge "$jobs" ]; then
		wait "${pids[0]}" || rc=1
		pids=("${pids[@]:1}")
	fi
done
for p in "${pids[@]}"; do wait "$p" || rc=1; done
exit $rc
