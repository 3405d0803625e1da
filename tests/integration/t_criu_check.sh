#!/usr/bin/env bash
# The provisioned CRIU is the engine of everything: a broken one must fail the
# suite here, not hide behind later failures.
. "$(dirname "$0")/../lib.sh"

check criu_present test -x "$STASIS_CRIU"
check criu_version_4_1_1 sh -c "'$STASIS_CRIU' --version | grep -q 'Version: 4.1.1'"
check criu_check sh -c "'$STASIS_CRIU' check 2>&1 | tee $T/check.log | grep -q 'Looks good'"

# A plain dump and restore of a real process, without any stasis code involved:
# proves the kernel and CRIU work before the rest of the suite relies on them.
CASE=criu_plain_roundtrip
setsid $PY -c '
import time, sys
n = 0
while True:
    n += 1
    print(n, flush=True)
    time.sleep(0.05)
' </dev/null >>"$T/out.log" 2>&1 &
pid=$!
track_pid "$pid"
wait_for 10 test -s "$T/out.log" || die "workload did not start"
mkdir "$T/img"
if "$STASIS_CRIU" dump -t "$pid" -D "$T/img" -o dump.log >/dev/null 2>&1; then
	wait "$pid" 2>/dev/null
	before=$(tail -1 "$T/out.log")
	if "$STASIS_CRIU" restore -D "$T/img" -d -o restore.log >/dev/null 2>&1 &&
		wait_for 10 sh -c "[ \$(tail -1 '$T/out.log') -gt $before ]"; then
		ok $CASE
	else
		tail -5 "$T/img/restore.log"
		fail $CASE
	fi
	kill -9 "$pid" 2>/dev/null
else
	tail -5 "$T/img/dump.log"
	fail $CASE
fi
finish
