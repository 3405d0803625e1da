#!/usr/bin/env bash
# run-integration.sh [PATTERN]: run tests/integration/t_*.sh (those whose name
# holds PATTERN). Each script prints "ok CASE" / "FAIL CASE" lines; a script
# that exits non-zero without a FAIL line counts as one failure. Each script's
# full output is kept in $STASIS_TEST_LOGS (default /tmp/stasis-test-logs).
# Every script runs under a time bound (300 s, or its "# time-bound: S" line,
# or $STASIS_TEST_TIMEOUT): a hung test fails by name, with its log's tail.
set -u
here=$(cd "$(dirname "$0")" && pwd)
logs=${STASIS_TEST_LOGS:-/tmp/stasis-test-logs}
REPO=$(cd "$here/.." && pwd)
. "$here/breakpoints.sh"
echo "# CRIU run by the tests themselves: breakpoints $STASIS_TEST_BREAKPOINTS${CRIU_FAULT:+ (CRIU_FAULT=$CRIU_FAULT)}"
mkdir -p "$logs"
rc=0

# kill_tagged TAG: SIGKILL every process whose environment holds STASIS_TEST_RUN=TAG.
kill_tagged() {
	local e p
	for e in /proc/[0-9]*/environ; do
		p=${e#/proc/}
		p=${p%/environ}
		grep -qxz "STASIS_TEST_RUN=$1" "$e" 2>/dev/null && kill -9 "$p" 2>/dev/null
	done
}

for t in "$here"/integration/t_*.sh; do
	name=$(basename "$t" .sh)
	[ -n "${1:-}" ] && [[ $name != *"$1"* ]] && continue
	start=$(date +%s)
	# A script may ask for a longer bound with a "# time-bound: SECONDS" line.
	bound=$(sed -n 's/^# time-bound: *\([0-9][0-9]*\).*/\1/p' "$t" | head -1)
	bound=${STASIS_TEST_TIMEOUT:-${bound:-300}}
	# Tagged, so that what a hung script left behind (a detached daemon escapes
	# timeout's process group) can be found and ended.
	tag="$name.$$.$start"
	STASIS_TEST_RUN=$tag timeout --kill-after=10 "$bound" bash "$t" >"$logs/$name.log" 2>&1
	code=$?
	[ $code -eq 124 ] || [ $code -eq 137 ] && kill_tagged "$tag"
	grep -E '^(ok|FAIL) ' "$logs/$name.log"
	if [ $code -ne 0 ]; then
		rc=1
		if [ $code -eq 124 ] || [ $code -eq 137 ]; then
			echo "FAIL $name (hung: killed after its time bound of ${bound}s)"
		else
			grep -q '^FAIL ' "$logs/$name.log" || echo "FAIL $name (exit $code)"
		fi
		echo "---- last lines of $logs/$name.log" >&2
		tail -40 "$logs/$name.log" | sed 's/^/    /' >&2
	fi
	echo "# $name: $(( $(date +%s) - start ))s" >&2
done
exit $rc
