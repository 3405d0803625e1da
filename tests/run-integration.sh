#!/usr/bin/env bash
# run-integration.sh [PATTERN]: run tests/integration/t_*.sh (those whose name
# holds PATTERN). Each script prints "ok CASE" / "FAIL CASE" lines; a script
# that exits non-zero without a FAIL line counts as one failure. Each script's
# full output is kept in $STASIS_TEST_LOGS (default /tmp/stasis-test-logs).
set -u
here=$(cd "$(dirname "$0")" && pwd)
logs=${STASIS_TEST_LOGS:-/tmp/stasis-test-logs}
mkdir -p "$logs"
rc=0
for t in "$here"/integration/t_*.sh; do
	name=$(basename "$t" .sh)
	[ -n "${1:-}" ] && [[ $name != *"$1"* ]] && continue
	start=$(date +%s)
	timeout --kill-after=10 "${STASIS_TEST_TIMEOUT:-900}" bash "$t" >"$logs/$name.log" 2>&1
	code=$?
	grep -E '^(ok|FAIL) ' "$logs/$name.log"
	if [ $code -ne 0 ]; then
		rc=1
		grep -q '^FAIL ' "$logs/$name.log" || echo "FAIL $name (exit $code)"
		echo "---- last lines of $logs/$name.log" >&2
		tail -40 "$logs/$name.log" | sed 's/^/    /' >&2
	fi
	echo "# $name: $(( $(date +%s) - start ))s" >&2
done
exit $rc
