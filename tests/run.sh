#!/usr/bin/env bash
# run.sh: the whole test suite: sanitized unit tests, then integration tests
# against the real binaries, real CRIU and real processes. Prints one closing
# "N passed, N failed" line and exits non-zero if anything failed.
set -u
here=$(cd "$(dirname "$0")" && pwd)
unit_dir=${STASIS_UNIT_DIR:-$here/../build-asan/tests}
tally=$(mktemp)
trap 'rm -f "$tally"' EXIT

"$here/run-unit.sh" "$unit_dir"/test_* | tee -a "$tally"
"$here/run-integration.sh" "$@" | tee -a "$tally"

passed=$(grep -c '^ok ' "$tally")
failed=$(grep -c '^FAIL ' "$tally")
echo
grep '^FAIL ' "$tally" | sed 's/^/  /'
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
