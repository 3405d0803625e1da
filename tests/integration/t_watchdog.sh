#!/usr/bin/env bash
# No operation can hang: a CRIU stopped dead mid-dump is cut off after the
# --timeout bound, with an error naming the stall, the bound and CRIU's last
# log line; the job runs on (not traced, not stopped, memory intact). Ctrl-C
# of the client cancels a dump; `stasis kill` during a dump cancels it, then
# kills; a stalled restore is cut off and leaves job and checkpoint as they
# were. After each, no CRIU or streamer is left and the next dump and restore
# work.
. "$(dirname "$0")/../lib.sh"
. "$REPO/tests/helpers/daemon_lib.sh"
. "$(dirname "$0")/fault_lib.sh"

daemon_up

# running_free PID: alive, not stopped, not traced by anyone.
running_free() {
	alive "$1" || return 1
	grep -q '^State:.*[tT]' "/proc/$1/status" && return 1
	grep -q '^TracerPid:[[:space:]]*0$' "/proc/$1/status"
}
no_criu_left() { [ -z "$(find_proc criu "$1" dump)$(find_proc criu "$1" restore)$(find_proc stasis-streamer "$1")" ]; }
counts() { sd logs "$1" | grep -c '^verify ' || true; }

# 1. CRIU stopped dead once its parasite runs in the job: cut off after 3 s.
hog w1 128M
pid=$(job_pid w1)
start=$(date +%s%N)
sd dump job w1 -d "$T/w1" --timeout 3 >"$T/w1.out" 2>&1 &
dpid=$!
cpid=$(stop_criu "$T/w1" "switched to daemon mode") || die "CRIU never reached its parasite"
t_stop=$(date +%s%N)
wait $dpid
rc=$?
t_end=$(date +%s%N)
echo "# stalled dump: $(cat "$T/w1.out")"
echo "# watchdog reaction: $(( (t_end - t_stop) / 1000000 )) ms after CRIU stopped (bound 3000 ms)"
check stalled_dump_fails test $rc -ne 0
check stalled_error_names_stall grep -q "stalled: no progress for 3 s" "$T/w1.out"
check stalled_error_names_phase grep -q "cut off in phase criu" "$T/w1.out"
check stalled_error_has_log_line grep -q "CRIU's last log line: (" "$T/w1.out"
check stalled_error_says_running grep -q "still running" "$T/w1.out"
check stalled_criu_gone dead "$cpid"
check stalled_nothing_left no_criu_left "$T/w1"
check stalled_job_runs_free running_free "$pid"
check stalled_job_status test "$(job_status w1)" = JOB_RUNNING
check stalled_memory_intact verified w1
check stalled_no_marker test ! -e "$T/w1/stasis-checkpoint.json"
check stalled_dump_again sd dump job w1 -d "$T/w1b" --stream 2
check stalled_restore sd restore job w1
check stalled_restored_memory_intact verified w1

# 2. Ctrl-C of the client of a streamed dump: the daemon cancels it. The
# client gets SIGINT's default action, as in a terminal (a background job of
# a script would ignore it). Its bound is long: only the cancel can end it soon.
pid=$(job_pid w1)
$PY -c 'import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.execv(sys.argv[1], sys.argv[1:])' "$STASIS_BUILD/stasis" dump job w1 -d "$T/w2" --stream 2 \
	--timeout 120 >"$T/w2.out" 2>&1 &
dpid=$!
cpid=$(stop_criu "$T/w2" "switched to daemon mode") || die "CRIU never reached its parasite (w2)"
sleep 0.5
t_int=$(date +%s%N)
kill -INT "$dpid"
wait $dpid
check ctrl_c_client_exits_nonzero test $? -ne 0
check ctrl_c_criu_killed wait_for 10 dead "$cpid"
echo "# cancel reaction: CRIU gone $(( ($(date +%s%N) - t_int) / 1000000 )) ms after Ctrl-C"
check ctrl_c_nothing_left wait_for 10 no_criu_left "$T/w2"
check ctrl_c_job_runs_free wait_for 10 running_free "$pid"
check ctrl_c_logged wait_for 5 grep -q "the client went away" "$STASIS_STATE_DIR/stasisd.log"
check ctrl_c_memory_intact verified w1
check ctrl_c_no_manifest test ! -e "$T/w2/manifest.json"

# 3. `stasis kill` during a dump: the dump is cancelled, then the job killed.
pid=$(job_pid w1)
sd dump job w1 -d "$T/w3" --timeout 120 >"$T/w3.out" 2>&1 &
dpid=$!
cpid=$(stop_criu "$T/w3" "switched to daemon mode") || die "CRIU never reached its parasite (w3)"
check kill_during_dump sd kill w1
wait $dpid
check kill_dump_fails test $? -ne 0
echo "# dump under kill: $(cat "$T/w3.out")"
check kill_dump_says_cancelled grep -q "cancelled (the job was killed" "$T/w3.out"
check kill_criu_killed dead "$cpid"
check kill_nothing_left no_criu_left "$T/w3"
check kill_job_dead wait_for 10 dead "$pid"
check kill_job_status_killed test "$(job_status w1)" = JOB_KILLED

# 4. A streamed restore that stalls (its streamer held still once CRIU forked
# the task) is cut off; the job stays down, its checkpoint restorable.
hog w4 64M
pid=$(job_pid w4)
check restore_stall_dump sd dump job w4 -d "$T/w4" --stream 2
sd restore job w4 --fill criu --timeout 3 >"$T/w4.out" 2>&1 &
rpid=$!
spid=$(stop_streamer "$T/w4" serve "pid:$pid") || die "restore never started"
wait $rpid
rc=$?
kill -CONT "$spid" 2>/dev/null
echo "# stalled restore: $(cat "$T/w4.out")"
check restore_stall_fails test $rc -ne 0
check restore_stall_error grep -q "restore cut off in phase criu: stalled: no progress for 3 s" "$T/w4.out"
check restore_stall_unchanged grep -q "unchanged" "$T/w4.out"
check restore_stall_nothing_left wait_for 10 no_criu_left "$T/w4"
check restore_stall_streamer_gone dead "$spid"
check restore_stall_job_down test "$(job_status w4)" = JOB_KILLED
check restore_stall_retry sd restore job w4
check restore_stall_memory_intact verified w4

# 5. Bad bounds are refused before anything runs.
check timeout_negative_refused refused_with "timeout" sd dump job w4 -d "$T/w5" --timeout -1
check timeout_word_refused refused_with "timeout" sd restore job w4 --timeout soon
check timeout_job_untouched running_free "$(job_pid w4)"
finish
