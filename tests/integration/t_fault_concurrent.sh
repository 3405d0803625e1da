#!/usr/bin/env bash
# Eight dumps at once, then eight restores at once (half plain, half streamed,
# as root and as a user), with a second operation on a busy job and reads of
# the job table in between: every operation succeeds or is refused cleanly,
# and every job comes back with its memory intact. Also: a dump into a
# directory whose previous checkpoint was deleted by hand.
. "$(dirname "$0")/../lib.sh"
. "$REPO/tests/helpers/daemon_lib.sh"
. "$(dirname "$0")/fault_lib.sh"

UA=stasis_sa
make_user $UA
mkdir -p "$T/a"
chown $UA: "$T/a"
as() { local u=$1; shift; runuser -u "$u" -- env STASIS_SOCKET="$STASIS_SOCKET" "$STASIS_BUILD/stasis" "$@"; }
daemon_up
N=8
for i in $(seq 1 $N); do hog k$i 32M; done
# Jobs 5-8 belong to user A (re-created as A).
for i in $(seq 5 $N); do
	sd rm --force k$i >/dev/null
	as $UA exec -i k$i -w "$T/a" "exec $HELPERS/memhog --size 32M --mix random" >/dev/null ||
		die "exec k$i as A"
	wait_for 30 sh -c "'$STASIS_BUILD/stasis' logs k$i | grep -q '^ready '" || die "k$i not ready"
	track_pid "$(job_pid k$i)"
done
declare -A pid
for i in $(seq 1 $N); do pid[$i]=$(job_pid k$i); done
run_as() { if [ "$1" -ge 5 ]; then shift; as $UA "$@"; else shift; sd "$@"; fi; }
dir_of() { if [ "$1" -ge 5 ]; then echo "$T/a/k$1"; else echo "$T/k$1"; fi; }

CASE=dumps
pids=()
for i in $(seq 1 $N); do
	args=()
	[ $((i % 2)) = 0 ] && args=(--stream 2)
	run_as $i dump job k$i -d "$(dir_of $i)" "${args[@]}" >"$T/d$i.out" 2>&1 &
	pids+=($!)
done
# While they run: the table reads fine and a second dump of a busy job is refused.
check ps_during_dumps sd ps
# The first dump of k1 must hold the job before the second asks: wait until
# its CRIU runs (dump.log exists) or it is already over.
wait_for 30 sh -c "[ -e '$T/k1/dump.log' ] || ! kill -0 ${pids[0]} 2>/dev/null"
out=$(sd dump job k1 -d "$T/k1-again" 2>&1)
check second_dump_refused test $? -ne 0
echo "# second dump: $out"
for i in $(seq 1 $N); do
	wait "${pids[$((i - 1))]}"
	check dump_$i test $? -eq 0
done
check all_killed test "$(sd ps | grep -c JOB_KILLED)" -eq $N

CASE=restores
pids=()
for i in $(seq 1 $N); do
	run_as $i restore job k$i >"$T/r$i.out" 2>&1 &
	pids+=($!)
done
for i in $(seq 1 $N); do
	wait "${pids[$((i - 1))]}"
	check restore_$i test $? -eq 0
done
for i in $(seq 1 $N); do
	check same_pid_$i test "$(job_pid k$i)" = "${pid[$i]}"
	check memory_intact_$i verified k$i
done

# A dump into a directory whose checkpoint was removed by hand (rm -rf) after
# it was recorded: it must work, or be refused before the job is touched.
CASE=stale_dir
rm -rf "$T/k1"
out=$(sd dump job k1 -d "$T/k1" 2>&1)
rc=$?
echo "# stale_dir: exit $rc: $out"
if [ $rc -eq 0 ]; then
	ok stale_dir_dump
	check stale_dir_restore sd restore job k1
	check stale_dir_memory_intact verified k1
else
	# Refused: the job must not have been dumped-and-stopped for nothing.
	check stale_dir_job_still_running test "$(job_status k1)" = JOB_RUNNING
	check stale_dir_same_process alive "${pid[1]}"
	check stale_dir_memory_intact verified k1
	check stale_dir_error_clear grep -q "$T/k1" <<<"$out"
fi
for i in $(seq 1 $N); do sd kill k$i >/dev/null 2>&1; done
finish
