#!/usr/bin/env bash
# Jobs in a PID namespace of their own (exec --pid-ns, docs/pidns.md), run by
# an unprivileged user: PID 1 inside with its own /proc; ps shows both PIDs; a
# restore while another process holds the job's old host PID; four clones of
# one checkpoint running at once, each verifying its memory and ticking into
# its own log while the original runs on; a failed clone leaves nothing; and
# for a job without its own namespace the PID-taken error stays as it was.
. "$(dirname "$0")/../lib.sh"
. "$REPO/tests/helpers/daemon_lib.sh"
. "$TESTS_DIR/integration/fault_lib.sh"

U=stasis-pidns
make_user $U
at_exit userdel $U
daemon_up
mkdir -p "$T/w" && chown $U "$T/w"
us() { runuser -u $U -- env STASIS_SOCKET="$STASIS_SOCKET" "$STASIS_BUILD/stasis" "$@"; }
field() {
	us ps --json | $PY -c 'import json,sys
for j in json.load(sys.stdin):
    if j["id"] == sys.argv[1]: print(j.get(sys.argv[2]))' "$1" "$2"
}
ticks() { us logs "$1" | grep -c '^tick '; }
ticking() { local n; n=$(ticks "$1"); sleep 0.4; [ "$(ticks "$1")" -gt "$n" ]; }
# verified_as ID: as fault_lib's verified, for the user's job.
verified_as() {
	local pid n
	pid=$(field "$1" pid)
	n=$(us logs "$1" | grep -c '^verify ' || true)
	kill -USR1 "$pid" 2>/dev/null || return 1
	wait_for 30 sh -c "[ \$(runuser -u $U -- env STASIS_SOCKET='$STASIS_SOCKET' \
		'$STASIS_BUILD/stasis' logs $1 | grep -c '^verify ') -gt $n ]" || return 1
	us logs "$1" | grep '^verify ' | tail -1 | grep -q ' ok$'
}
# No "tick N" twice in a log: only one process ever wrote to it.
one_writer() { ! us logs "$1" | grep '^tick ' | sort | uniq -d | grep -q .; }

# ---- exec --pid-ns: PID 1 of its own namespace, with its own /proc
CASE=pidns_exec
us exec -i p -w "$T/w" --pid-ns -- "exec $HELPERS/memhog --size 32M" >/dev/null || die "exec"
wait_for 30 sh -c "runuser -u $U -- env STASIS_SOCKET='$STASIS_SOCKET' '$STASIS_BUILD/stasis' \
	logs p | grep -q '^ready '" || die "p not ready"
pid=$(field p pid)
track_pid "$pid"
check pidns_ps_json_pid_ns test "$(field p pid_ns)" = True
check pidns_ps_json_ns_pid test "$(field p ns_pid)" = 1
check pidns_nspid_is_1 sh -c "grep -q '^NSpid:[[:space:]]*$pid[[:space:]]*1\$' /proc/$pid/status"
check pidns_ps_table sh -c "'$STASIS_BUILD/stasis' ps | awk '\$1==\"p\" && \$3==$pid && \$NF==1' | grep -q ."
check pidns_runs_as_user test "$(stat -c %U /proc/$pid)" = $U
# Its /proc is its own: it sees itself as 1, and nothing of the host.
check pidns_own_proc sh -c "test \"\$(ls /proc/$pid/root/proc | grep -E '^[0-9]+\$')\" = 1"
check pidns_host_mounts_untouched sh -c "grep -c ' /proc ' /proc/self/mountinfo | grep -qx 1"

# ---- dump; another process takes its old host PID; restore anyway
CASE=pidns_restore_pid_taken
us dump job p -d "$T/w/ck" >/dev/null || die "dump p"
wait_for 10 dead "$pid" || die "p still alive after the dump"
take_pid "$pid" || die "cannot take pid $pid"
check pidns_old_pid_taken alive "$pid"
if out=$(us restore job p 2>&1); then
	ok $CASE
	npid=$(field p pid)
	track_pid "$npid"
	check pidns_restored_new_host_pid test "$npid" != "$pid"
	check pidns_restored_ns_pid_1 test "$(field p ns_pid)" = 1
	check pidns_restored_verifies verified_as p
	check pidns_restored_ticks wait_for 10 ticking p
else
	fail "$CASE ($out)"
fi

# ---- four clones of that checkpoint at once, the original running on
CASE=pidns_clones
for i in 1 2 3 4; do
	us restore job p --as "p$i" >"$T/clone$i.out" 2>&1 || { fail "pidns_clone_$i: $(cat "$T/clone$i.out")"; continue; }
	track_pid "$(field "p$i" pid)"
done
check pidns_clone_success_line grep -Eq '^Success JobID=p1 PID=[0-9]+ ' "$T/clone1.out"
pids=""
for i in 1 2 3 4; do
	check "pidns_clone_${i}_running" test "$(field "p$i" status)" = JOB_RUNNING
	pids="$pids $(field "p$i" pid)"
done
check pidns_clones_distinct_pids test "$(echo $pids | tr ' ' '\n' | sort -u | wc -l)" = 4
check pidns_original_still_running test "$(field p status)" = JOB_RUNNING
for i in 1 2 3 4; do
	check "pidns_clone_${i}_verifies" verified_as "p$i"
	check "pidns_clone_${i}_ticks" wait_for 10 ticking "p$i"
	check "pidns_clone_${i}_own_log" one_writer "p$i"
	check "pidns_clone_${i}_log_is_users" test "$(stat -c %U "$STASIS_STATE_DIR/logs/p$i.log")" = $U
done
check pidns_original_log_untouched one_writer p
check pidns_original_record_kept sh -c "runuser -u $U -- env STASIS_SOCKET='$STASIS_SOCKET' \
	'$STASIS_BUILD/stasis' checkpoints p | grep -q '$T/w/ck'"
# A clone's name must be new: the job of that name is untouched, nothing is left.
out=$(us restore job p --as p1 2>&1) && fail "pidns_clone_name_taken (succeeded)" ||
	check pidns_clone_name_taken grep -q "already in use" <<<"$out"
check pidns_clone_name_taken_kept test "$(field p1 status)" = JOB_RUNNING
# Another user cannot clone it.
make_user stasis-pidns2
at_exit userdel stasis-pidns2
out=$(runuser -u stasis-pidns2 -- env STASIS_SOCKET="$STASIS_SOCKET" "$STASIS_BUILD/stasis" \
	restore job p --as theirs 2>&1) && fail "pidns_clone_other_user (succeeded)" ||
	check pidns_clone_other_user grep -q "no such job" <<<"$out"
check pidns_clone_other_user_nothing test -z "$(field theirs status)"
for i in 1 2 3 4; do us rm -f "p$i" >/dev/null 2>&1 || us kill "p$i" >/dev/null 2>&1; done
us kill p >/dev/null 2>&1

# ---- without its own namespace: the PID-taken error is as clear as before
CASE=plain_pid_taken
us exec -i q -w "$T/w" -- "exec $HELPERS/memhog --size 8M" >/dev/null || die "exec q"
wait_for 30 sh -c "runuser -u $U -- env STASIS_SOCKET='$STASIS_SOCKET' '$STASIS_BUILD/stasis' \
	logs q | grep -q '^ready '" || die "q not ready"
qpid=$(field q pid)
check plain_ns_pid_absent test "$(field q ns_pid)" = None
us dump job q -d "$T/w/ckq" >/dev/null || die "dump q"
wait_for 10 dead "$qpid" || die "q still alive"
take_pid "$qpid" || die "cannot take pid $qpid"
out=$(us restore job q 2>&1) && fail "$CASE (restored: $out)" ||
	check $CASE grep -q "PID $qpid is taken" <<<"$out"
check plain_pid_taken_not_recorded test "$(field q status)" = JOB_KILLED
finish
