#!/usr/bin/env bash
# The CLI itself: daemon start/stop/status without a service manager, check,
# inspect, reset, --socket, usage errors and exit codes.
. "$(dirname "$0")/../lib.sh"
. "$REPO/tests/helpers/daemon_lib.sh"

# exit_is CODE CMD...: CMD exits with CODE.
exit_is() { local want=$1; shift; "$@" >/dev/null 2>&1; [ $? = "$want" ]; }

check status_not_running exit_is 3 sd daemon status
out=$(sd ps 2>&1)
check ps_without_daemon_fails exit_is 1 sd ps
check ps_without_daemon_says grep -q "cannot reach stasisd.*daemon start" <<<"$out"
out=$(sd check 2>&1)
check check_without_daemon_fails test $? = 1
check check_says_socket_missing grep -q "MISSING  socket" <<<"$out"

check start sd daemon start
pid=$(cat "$STASIS_STATE_DIR/stasisd.pid")
check start_idempotent sd daemon start
check start_same_daemon test "$(cat "$STASIS_STATE_DIR/stasisd.pid")" = "$pid"
check status_running sd daemon status
check socket_mode test "$(stat -c %a "$STASIS_SOCKET")" = 666
check db_wal test "$($PY -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('pragma journal_mode').fetchone()[0])" "$STASIS_STATE_DIR/stasis.db")" = wal
make_user stasis_uc
out=$(runuser -u stasis_uc -- env STASIS_SOCKET="$T/other.sock" STASIS_STATE_DIR="$T/uc" "$STASIS_BUILD/stasis" daemon start 2>&1 </dev/null)
check start_as_user_refused grep -q "runs as root" <<<"$out"
out=$(runuser -u stasis_uc -- env STASIS_SOCKET="$STASIS_SOCKET" "$STASIS_BUILD/stasis" daemon stop 2>&1)
check stop_as_user_refused grep -q "only root" <<<"$out"
check still_running_after_user_stop sd daemon status

out=$(sd check)
check check_ok test $? = 0
check check_criu grep -q "^ok  *criu: .*4\.1\.1" <<<"$out"
check check_criu_check grep -q "^ok  *criu check: Looks good" <<<"$out"
check check_streamer grep -q "streamer:" <<<"$out"
check check_gpu_line grep -q "gpu:" <<<"$out"
check check_json sh -c "'$STASIS_BUILD/stasis' check --json | $PY -c 'import json,sys; json.load(sys.stdin)'"

# --socket overrides the environment.
check socket_option env STASIS_SOCKET=/nonexistent "$STASIS_BUILD/stasis" --socket "$STASIS_SOCKET" ps

# inspect: plain, streamed, incomplete.
sd exec -i insp -w "$T" "exec $PY $WORKLOADS/daemon_counter.py" >/dev/null
wait_for 10 counted_past insp 3
sd dump job insp -d "$T/p" --leave-running >/dev/null
sd dump job insp -d "$T/s" --stream 2 >/dev/null
out=$(sd inspect "$T/p")
check inspect_plain grep -q "Kind: plain" <<<"$out"
check inspect_plain_recorded grep -q "Recorded by stasisd: yes" <<<"$out"
check inspect_plain_json sh -c "'$STASIS_BUILD/stasis' inspect --json '$T/p' | $PY -c 'import json,sys; assert json.load(sys.stdin)[\"kind\"] == \"plain\"'"
check inspect_streamed sd inspect "$T/s"
mkdir "$T/empty"
check inspect_incomplete exit_is 1 sd inspect "$T/empty"
out=$(sd checkpoints insp)
check checkpoints_listed test "$(echo "$out" | grep -c "^insp ")" = 2

# Usage errors exit 2 and change nothing.
check usage_no_command exit_is 2 sd
check usage_unknown_command exit_is 2 sd frobnicate
check usage_dump_no_dir exit_is 2 sd dump job insp
check usage_dump_bad_stream exit_is 2 sd dump job insp -d "$T/x" --stream abc
check usage_exec_no_command exit_is 2 sd exec -i y
check usage_restore_extra exit_is 2 sd restore job a b
check usage_nothing_created test ! -e "$T/x"
check help_lists_commands sh -c "'$STASIS_BUILD/stasis' --help | grep -q 'dump'"
for c in exec ps dump restore kill logs rm checkpoints inspect check daemon reset; do
	check help_$c sh -c "'$STASIS_BUILD/stasis' $c --help | grep -q usage"
done
check jobs_alias sd jobs

# stop: jobs keep running; reset without --yes does nothing; with --yes kills jobs and
# removes the state, but never checkpoint directories.
sd exec -i keep -w "$T" "exec sleep 1000" >/dev/null
jpid=$(job_pid keep)
check stop sd daemon stop
check stop_idempotent sd daemon stop
check job_outlives_daemon alive "$jpid"
check restart sd daemon start
check reset_needs_yes exit_is 1 sd reset
check reset_without_yes_keeps test -f "$STASIS_STATE_DIR/stasis.db"
check reset sd reset --yes
check reset_killed_job wait_for 5 dead "$jpid"
check reset_removed_db test ! -e "$STASIS_STATE_DIR/stasis.db"
check reset_removed_logs test ! -e "$STASIS_STATE_DIR/logs"
check reset_keeps_checkpoints test -f "$T/s/manifest.json"
check reset_daemon_stopped exit_is 3 sd daemon status
check fresh_start sd daemon start
check fresh_state_empty test -z "$(sd ps | awk 'NR>1')"
finish
