#!/usr/bin/env bash
# A lazy restore across a restart of stasisd (docs/lazy.md): the restarted
# daemon takes the lazy-pages daemon back (copies of its userfaultfds, the
# watch), or, when it is gone, keeps the job only if its log shows every page
# in. The lazy-pages daemon is slowed down to a crawl (a CPU quota,
# helpers/lazy_hold.py), so pages are certainly still to come.
#   a. stasisd SIGKILLed, restarted, then the lazy-pages daemon SIGKILLed:
#      the job is killed, never verifies wrong memory
#   b. stasisd SIGKILLed and restarted mid-way, the lazy-pages daemon goes on:
#      the job runs, verifies, the log says the restore completed
#   c. the lazy-pages daemon dies while stasisd is down: killed at restart
#   d. the lazy-pages daemon finishes while stasisd is down: the job runs on
#   e. a stop (SIGTERM) waits for a pending lazy restore to complete
#   f. a changed pages file whose check stasisd did not finish: checked again
#      at restart, the job is killed
#   g. as d, for a tree of 4 processes
#   h. restore --fill uffd (the tree stopped until every page is in) across
#      a restart: still stopped after it, resumed once every page is in
# Behaviour only, never wall-clock time.
# time-bound: 420
. "$(dirname "$0")/../lib.sh"
. "$REPO/tests/helpers/daemon_lib.sh"
. "$(dirname "$0")/fault_lib.sh"

daemon_up

SIZE_MB=256
# The job held_restore restores (JOB, from CK; its pid is $pid).
JOB=l1
CK=$T/plain
DLOG=$STASIS_STATE_DIR/stasisd.log

lazy_field() {
	$PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["lazy"][sys.argv[2]])' "$1" "$2"
}
# How many lines of the daemon's log hold PATTERN (fixed string).
nlog() { grep -cF -- "$1" "$DLOG" || true; }
# more_log N PATTERN: the log now holds PATTERN more than N times.
more_log() { [ "$(nlog "$2")" -gt "$1" ]; }
nverify() { sd logs l1 | grep -c '^verify ' || true; }

# The lazy-pages daemon is slowed down by a CPU quota (cgroup cpu
# controller; helpers/lazy_hold.py says why not SIGSTOP).
if [ -w /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]; then
	CG=/sys/fs/cgroup/cpu/stasis-lazyhold.$$
	mkdir "$CG" && echo 1000000 >"$CG/cpu.cfs_period_us" || die "cannot make $CG"
elif grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null; then
	CG=/sys/fs/cgroup/stasis-lazyhold.$$
	mkdir "$CG" || die "cannot make $CG"
else
	die "no cgroup cpu controller to slow the lazy-pages daemon down with"
fi
# On exit: whatever is still in it goes back to the parent cgroup, then it goes.
cg_rm() {
	local i p
	for i in $(seq 25); do
		for p in $(cat "$CG/cgroup.procs" 2>/dev/null); do
			echo "$p" >"$(dirname "$CG")/cgroup.procs"
		done
		rmdir "$CG" 2>/dev/null && return
		sleep 0.2
	done
}
at_exit cg_rm
# cg_quota US|max: CPU time per second the lazy-pages daemon may use.
cg_quota() {
	if [ -e "$CG/cpu.cfs_quota_us" ]; then
		echo "$([ "$1" = max ] && echo -1 || echo "$1")" >"$CG/cpu.cfs_quota_us"
	else
		echo "$1 1000000" >"$CG/cpu.max"
	fi
}

# held_restore OUT [stop]: lazy restore of $JOB from $CK whose lazy-pages daemon
# gets 20 ms of CPU per second until the reply (enough for the faults CRIU's
# restore needs) and 1 ms per second after it (its 256 MiB need some 200 ms);
# LP gets its pid. With "stop", stasisd is stopped (SIGSTOP) as soon as it replied.
held_restore() {
	cg_quota 20000
	$PY "$WORKLOADS/lazy_hold.py" "$STASIS_STATE_DIR/work/$JOB.restore" "$CG/cgroup.procs" 60 \
		>"$T/hold.out" &
	local hp=$!
	sd restore job "$JOB" -d "$CK" --lazy --json >"$1" 2>&1
	local rc=$?
	[ "${2:-}" = stop ] && kill -STOP "$DAEMON_PID"
	cg_quota 1000
	wait $hp || die "the lazy-pages daemon was not seen"
	[ $rc = 0 ] || die "lazy restore: $(cat "$1")"
	LP=$(cat "$T/hold.out")
	track_pid "$LP"
	[ "$(lazy_field "$1" pid)" = "$LP" ] || die "held $LP, the reply names $(lazy_field "$1" pid)"
	[ "$(lazy_field "$1" pending)" = True ] || die "no page pending: $(cat "$1")"
	alive "$LP" || die "the lazy-pages daemon ended before it was held"
	[ "${2:-}" = stop ] || [ "$(job_pid "$JOB")" = "$pid" ] || die "restored under another pid"
}
# Let the lazy-pages daemon go at full speed.
release() { cg_quota max; }
daemon_crash() {
	kill -9 "$DAEMON_PID"
	wait_for 10 dead "$DAEMON_PID" || die "stasisd survived SIGKILL"
}
# The job is gone and its PID free again, for the next restore.
job_gone() {
	sd kill l1 >/dev/null 2>&1
	wait_for 20 dead "$pid" || die "l1 still running"
	wait_for 20 test ! -d "/proc/$pid" || die "pid $pid not freed"
}
readopted_line() { echo "job l1: lazy restore still filling its memory: took its lazy-pages daemon (pid $LP) back"; }

CASE=setup
hog l1 ${SIZE_MB}M
pid=$(job_pid l1)
sd dump job l1 -d "$T/plain" >/dev/null || die "plain dump"

# a. Taken back after a crash of stasisd; then its source dies: the job is killed.
CASE=a_source_dies_after_restart
held_restore "$T/a.json"
n=$(nverify)
daemon_crash
check a_job_survives_crash alive "$pid"
daemon_up
check a_taken_back grep -qF "$(readopted_line)" "$DLOG"
check a_job_running test "$(job_status l1)" = JOB_RUNNING
out=$(sd dump job l1 -d "$T/a-dump" --leave-running 2>&1)
check a_dump_refused grep -q "still getting its memory back from a lazy restore" <<<"$out"
kill -USR1 "$pid"
sleep 0.5 # not a timing check: gives the job the chance to read a missing page
check a_no_verify_yet test "$(nverify)" -eq "$n"
killed=$(nlog "job l1: its lazy-pages daemon ended before every page was in")
kill -9 "$LP"
check a_job_killed wait_for 20 dead "$pid"
check a_logged wait_for 10 more_log "$killed" "job l1: its lazy-pages daemon ended before every page was in"
check a_status wait_for 20 sh -c "[ \"\$('$STASIS_BUILD/stasis' ps | awk '\$1==\"l1\"{print \$4}')\" != JOB_RUNNING ]"
check a_never_bad sh -c "! '$STASIS_BUILD/stasis' logs l1 | grep -q BAD"
check a_no_verify test "$(nverify)" -eq "$n"

# b. Restart mid-way, the lazy-pages daemon finishes under the new stasisd.
CASE=b_finishes_after_restart
job_gone
held_restore "$T/b.json"
daemon_crash
daemon_up
check b_taken_back grep -qF "$(readopted_line)" "$DLOG"
done_n=$(nlog "job l1: lazy restore complete: every page is in (its lazy-pages daemon was taken back")
release
check b_complete wait_for 60 more_log "$done_n" \
	"job l1: lazy restore complete: every page is in (its lazy-pages daemon was taken back"
check b_running test "$(job_status l1)" = JOB_RUNNING
check b_memory_intact verified l1
check b_dump_after sd dump job l1 -d "$T/b-dump" --leave-running

# c. The lazy-pages daemon dies while stasisd is down. The job is stopped
# first, so that it is still there (not crashed on a zero page) for the
# restarted stasisd to kill.
CASE=c_source_dies_while_down
job_gone
held_restore "$T/c.json"
daemon_crash
kill -STOP "$pid"
kill -9 "$LP"
wait_for 10 dead "$LP" || die "lazy-pages daemon survived SIGKILL"
daemon_up
check c_job_killed wait_for 20 dead "$pid"
check c_logged grep -qF "job l1: its lazy-pages daemon (pid $LP) ended while the daemon was away and its log shows 0 of 1 processes' pages all in: the job was killed" "$DLOG"
check c_status wait_for 20 sh -c "[ \"\$('$STASIS_BUILD/stasis' ps | awk '\$1==\"l1\"{print \$4}')\" != JOB_RUNNING ]"
check c_never_bad sh -c "! '$STASIS_BUILD/stasis' logs l1 | grep -q BAD"

# d. The lazy-pages daemon finishes while stasisd is down: its log shows
# every page in, the job runs on.
CASE=d_finishes_while_down
wait_for 20 test ! -d "/proc/$pid" || die "pid $pid not freed"
held_restore "$T/d.json"
daemon_crash
release
check d_lazy_daemon_done wait_for 60 dead "$LP"
daemon_up
check d_complete grep -qF "job l1: lazy restore complete: every page is in (its lazy-pages daemon finished while the daemon was away; its log shows 1 of 1" "$DLOG"
check d_running test "$(job_status l1)" = JOB_RUNNING
check d_memory_intact verified l1

# e. A stop on purpose waits for the pending lazy restore.
CASE=e_stop_waits
job_gone
held_restore "$T/e.json"
# SIGTERM, as `stasis daemon stop` sends it (the CLI itself may see no reply
# to its shutdown request when the daemon closes the socket first).
kill -TERM "$DAEMON_PID"
check e_waiting wait_for 20 grep -qF "waiting up to 30 s for 1 lazy restore(s) to get every page in" "$DLOG"
done_n=$(nlog "job l1: lazy restore complete: every page is in")
release
check e_stopped wait_for 60 dead "$DAEMON_PID"
check e_completed_before_stop more_log "$done_n" "job l1: lazy restore complete: every page is in"
check e_nothing_left sh -c "! grep -q 'lazy restore(s) still pending' '$DLOG'"
taken=$(nlog "took its lazy-pages daemon")
daemon_up
check e_nothing_taken_back test "$(nlog "took its lazy-pages daemon")" -eq "$taken"
check e_memory_intact verified l1

# f. A pages file changed after the dump, and stasisd dies before its check
# of the pages files is done (the file is out of the page cache, stasisd is
# stopped as soon as it replied): the restarted stasisd runs the check again
# and kills the job.
CASE=f_pages_check_after_restart
job_gone
pf=$(ls "$T/plain"/pages-*.img | head -1)
printf 'X' | dd of="$pf" bs=1 seek=123456 conv=notrunc status=none
$PY -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.fsync(fd)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)' "$pf"
held_restore "$T/f.json" stop
checked=$($PY -c 'import sqlite3, sys
r = sqlite3.connect(sys.argv[1]).execute("SELECT checked FROM lazy WHERE job = ?", ("l1",)).fetchone()
print(r[0] if r else "none")' "$STASIS_STATE_DIR/stasis.db")
echo "# f: pages files checked before stasisd died: $checked (0: the restarted stasisd checks them)"
daemon_crash
bad_n=$(nlog "job l1: its checkpoint's pages do not match what was dumped")
daemon_up
check f_job_killed wait_for 30 dead "$pid"
check f_logged wait_for 10 more_log "$bad_n" "job l1: its checkpoint's pages do not match what was dumped"
release

# g. A tree of 4 processes (4 userfaultfds) finishes while stasisd is down:
# the log shows each process's pages all in, the job runs on.
CASE=g_tree_finishes_while_down
wait_for 30 dead "$pid" || die "l1 still running"
JOB=l2
CK=$T/tree
sd exec -i l2 -w "$T" "exec $HELPERS/memhog --size ${SIZE_MB}M --mix random --procs 4" >/dev/null ||
	die "exec l2"
wait_for 30 sh -c "'$STASIS_BUILD/stasis' logs l2 | grep -q '^ready '" || die "l2 not ready"
pid=$(job_pid l2)
track_pid "$pid"
sd dump job l2 -d "$CK" >/dev/null || die "tree dump"
wait_for 20 test ! -d "/proc/$pid" || die "pid $pid not freed"
held_restore "$T/g.json"
daemon_crash
release
check g_lazy_daemon_done wait_for 60 dead "$LP"
daemon_up
check g_complete grep -qF "job l2: lazy restore complete: every page is in (its lazy-pages daemon finished while the daemon was away; its log shows 4 of 4" "$DLOG"
check g_running test "$(job_status l2)" = JOB_RUNNING
check g_memory_intact verified l2

# h. `restore --fill uffd` keeps the tree stopped until every page is in;
# its stasisd dies meanwhile: the next one takes the lazy-pages daemon back,
# keeps the tree stopped, and resumes it once every page is in.
CASE=h_fill_held_across_restart
sd kill l2 >/dev/null
wait_for 20 dead "$pid" || die "l2 still running"
wait_for 20 test ! -d "/proc/$pid" || die "pid $pid not freed"
lazy_recorded() {
	[ "$($PY -c 'import sqlite3, sys
print(sqlite3.connect(sys.argv[1]).execute("SELECT count(*) FROM lazy WHERE job = ?",
      (sys.argv[2],)).fetchone()[0])' "$STASIS_STATE_DIR/stasis.db" "$1")" = 1 ]
}
cg_quota 20000
$PY "$WORKLOADS/lazy_hold.py" "$STASIS_STATE_DIR/work/l2.restore" "$CG/cgroup.procs" 60 \
	>"$T/hold.out" &
hp=$!
sd restore job l2 -d "$T/tree" --fill uffd >"$T/h.out" 2>&1 &
cli=$!
wait $hp || die "the lazy-pages daemon was not seen"
LP=$(cat "$T/hold.out")
track_pid "$LP"
wait_for 60 lazy_recorded l2 || die "no pending lazy restore recorded: $(cat "$T/h.out")"
cg_quota 1000
daemon_crash
wait $cli
daemon_up
check h_taken_back grep -qF "job l2: lazy restore still filling its memory: took its lazy-pages daemon (pid $LP) back" "$DLOG"
check h_still_stopped grep -q '^State:.*T' "/proc/$pid/status"
done_n=$(nlog "job l2: lazy restore complete: every page is in (its lazy-pages daemon was taken back")
release
check h_complete wait_for 60 more_log "$done_n" \
	"job l2: lazy restore complete: every page is in (its lazy-pages daemon was taken back"
check h_resumed wait_for 10 sh -c "! grep -q '^State:.*T' /proc/$pid/status"
check h_running test "$(job_status l2)" = JOB_RUNNING
check h_memory_intact verified l2
sd kill l2 >/dev/null
finish
