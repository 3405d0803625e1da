#!/usr/bin/env bash
# stasisd killed with SIGKILL and started again: every job and checkpoint is
# still listed, running jobs are re-adopted with their live status, jobs that
# ended meanwhile show as ended, and a job dumped before the crash restores.
. "$(dirname "$0")/../lib.sh"
. "$REPO/tests/helpers/daemon_lib.sh"

daemon_up
CASE=setup
sd exec -i run -w "$T" "exec $PY $WORKLOADS/daemon_counter.py" >/dev/null || die "exec run"
sd exec -i dumped -w "$T" "exec $PY $WORKLOADS/daemon_counter.py" >/dev/null || die "exec dumped"
sd exec -i three -w "$T" "exit 3" >/dev/null || die "exec three"
sd exec -i gone -w "$T" "exec sleep 1000" >/dev/null || die "exec gone"
wait_for 10 counted_past dumped 5 || die "not counting"
sd dump job dumped -d "$T/ck" >/dev/null || die "dump"
wait_for 10 sh -c "'$STASIS_BUILD/stasis' ps | grep -q 'JOB_DONE(3)'" || die "exit 3 not seen"
run_pid=$(job_pid run)
gone_pid=$(job_pid gone)

kill -9 "$DAEMON_PID"
wait_for 10 dead "$DAEMON_PID" || die "daemon survived SIGKILL"
check jobs_survive_daemon alive "$run_pid"
check stale_socket_left test -S "$STASIS_SOCKET"
kill -9 "$gone_pid"
wait_for 10 dead "$gone_pid"

daemon_up
check restarted_on_stale_socket sd daemon status
check run_still_running test "$(job_status run)" = JOB_RUNNING
check run_same_pid test "$(job_pid run)" = "$run_pid"
check dumped_still_killed test "$(job_status dumped)" = JOB_KILLED
check dumped_checkpoint_kept test "$(job_field dumped checkpoint)" = "$T/ck"
check three_exit_code test "$(sd ps | awk '$1=="three"{print $4}')" = "JOB_DONE(3)"
check gone_seen_ended test "$(sd ps | awk '$1=="gone"{print $4}')" = "JOB_DONE(?)"
check checkpoints_listed sh -c "'$STASIS_BUILD/stasis' checkpoints | grep -q '$T/ck\$'"

# The job dumped before the crash comes back and counts on.
before=$(last_count dumped)
check dumped_restores sd restore job dumped
check dumped_counts_on wait_for 10 counted_past dumped $((before + 5))
check dumped_log_continuous counts_in_order dumped

# An adopted job (not the new daemon's child) can be dumped, restored, killed.
check adopted_dump sd dump job run -d "$T/ck-run"
check adopted_restore sd restore job run
check adopted_running test "$(job_status run)" = JOB_RUNNING
check adopted_log_continuous counts_in_order run
# Live status: a job that dies is seen as ended at once, with no daemon restart.
kill -9 "$(job_pid dumped)"
check dead_job_seen wait_for 5 sh -c "[ \"\$('$STASIS_BUILD/stasis' ps | awk '\$1==\"dumped\"{print \$4}')\" = JOB_KILLED ]"

# The daemon killed in the middle of a streamed dump: CRIU and the streamer go on
# without it; the next daemon records the checkpoint they completed.
CASE=mid_dump
sd exec -i big -w "$T" "exec $PY $WORKLOADS/daemon_mem.py 512" >/dev/null || die "exec big"
wait_for 60 sh -c "'$STASIS_BUILD/stasis' logs big | grep -q '^tick'" || die "big not filled"
sum=$(sd logs big | awk '$1=="sum"{print $2}')
big_pid=$(job_pid big)
sd dump job big -d "$T/ck-big" --stream 2 >"$T/big-dump.out" 2>&1 &
dump_cli=$!
if wait_for 30 pgrep -P "$DAEMON_PID" -x criu >/dev/null; then
	kill -9 "$DAEMON_PID"
	wait "$dump_cli" 2>/dev/null
	daemon_up
	check mid_dump_recorded wait_for 60 sh -c "'$STASIS_BUILD/stasis' checkpoints big | grep -q '$T/ck-big\$'"
	check mid_dump_job_killed test "$(job_status big)" = JOB_KILLED
	check mid_dump_process_gone wait_for 10 dead "$big_pid"
	check mid_dump_marker test -f "$T/ck-big/stasis-checkpoint.json"
	check mid_dump_restores sd restore job big --stream 2
	sd kill --signal USR1 big >/dev/null
	wait_for 60 sh -c "'$STASIS_BUILD/stasis' logs big | grep -q '^check'"
	check mid_dump_memory_intact test "$(sd logs big | awk '$1=="check"{print $2}')" = "$sum"
	sd kill big >/dev/null
else
	fail "mid_dump (criu never seen running)"
fi

# A clean stop keeps everything too.
daemon_down
check socket_removed_on_stop test ! -e "$STASIS_SOCKET"
check jobs_survive_stop alive "$(job_pid run 2>/dev/null || echo "$run_pid")"
daemon_up
check after_stop_running test "$(job_status run)" = JOB_RUNNING
check kill_adopted sd kill run
check adopted_killed_status test "$(job_status run)" = JOB_KILLED
finish
