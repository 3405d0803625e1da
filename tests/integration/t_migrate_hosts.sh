#!/usr/bin/env bash
# The two-host harness the migration tests stand on (tests/netns-hosts.sh):
# private networks joined by a veth pair, private PID numbering, private
# /var/lib/stasis and /run/stasis, a working CRIU inside each host, and the
# CRIU behaviour migration relies on: a job dumped --leave-stopped on one host
# is stopped (SIGCONT resumes it) and restores on the other with its PID.
. "$(dirname "$0")/../lib.sh"
. "$TESTS_DIR/netns-hosts.sh"

host_up a 10.77.0.1
host_up b 10.77.0.2
hosts_link a b

# One TCP connection across the veth pair: b listens, a connects.
tcp_across() {
	host_bg b "$T/listen.out" $PY -c '
import socket
s = socket.socket(); s.bind(("10.77.0.2", 7999)); s.listen(1)
c, a = s.accept(); c.sendall(b"hello from b\n")' || return 1
	wait_for 5 host_exec a $PY -c '
import socket, sys
s = socket.create_connection(("10.77.0.2", 7999), timeout=2)
sys.exit(0 if s.recv(64) == b"hello from b\n" else 1)'
}
check hosts_tcp_across_veth tcp_across
check hosts_no_route_outside sh -c "! nsenter -t $(host_init a) -n ip route get 1.1.1.1 >/dev/null 2>&1"
check criu_check_a sh -c "nsenter -t $(host_init a) -n -p -m '$STASIS_CRIU' check 2>&1 | grep -q 'Looks good'"
check criu_check_b sh -c "nsenter -t $(host_init b) -n -p -m '$STASIS_CRIU' check 2>&1 | grep -q 'Looks good'"

CASE=private_state_dirs
host_exec a sh -c 'echo a >/var/lib/stasis/mark && echo a >/run/stasis/mark'
if host_exec b sh -c '! test -e /var/lib/stasis/mark && ! test -e /run/stasis/mark' &&
	! test -e /var/lib/stasis/mark && test -e "$T/hosts/a/lib/mark"; then
	ok $CASE
else
	fail $CASE
fi

# A counting job on host a, dumped frozen, restored on host b.
CASE=leave_stopped_then_restore_elsewhere
mkdir -p "$T/img"
host_pid_base a 5000
host_bg a "$T/job.out" setsid $PY -c '
import time, sys
n = 0
while True:
    n += 1
    print(n, flush=True)
    time.sleep(0.05)
' || die "job did not start"
job=$host_bg_pid
track_pid "$job"
wait_for 10 test -s "$T/job.out" || die "job output"
nspid=$(awk '/^NSpid:/ { print $3 }' "/proc/$job/status")
if host_exec a "$STASIS_CRIU" dump -t "$nspid" -D "$T/img" --leave-stopped -o dump.log \
	>/dev/null 2>&1; then
	state=$(awk '/^State:/ { print $2 }' "/proc/$job/status")
	frozen=$(tail -1 "$T/job.out")
	sleep 0.3
	if [ "$state" = T ] && [ "$(tail -1 "$T/job.out")" = "$frozen" ]; then
		ok leave_stopped_is_sigstop
	else
		fail "leave_stopped_is_sigstop (state $state)"
	fi
	# Restore on b while a's copy is still frozen: b has its own PID numbering.
	if host_exec b "$STASIS_CRIU" restore -D "$T/img" -d -o restore.log >/dev/null 2>&1 &&
		host_exec b sh -c "test -d /proc/$nspid" &&
		wait_for 10 sh -c "[ \$(tail -1 '$T/job.out') -gt $frozen ]"; then
		ok $CASE
	else
		tail -5 "$T/img/restore.log"
		fail $CASE
	fi
	host_exec b kill -9 "$nspid"
	# And SIGCONT resumes the frozen original (what a failed migration does).
	kill -CONT "$job"
	n=$(tail -1 "$T/job.out")
	check sigcont_resumes_frozen_job wait_for 5 sh -c "[ \$(tail -1 '$T/job.out') -gt $n ]"
else
	tail -5 "$T/img/dump.log"
	fail $CASE
fi
kill -9 "$job" 2>/dev/null
finish
