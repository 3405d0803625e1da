#!/usr/bin/env bash
# Day-to-day operations and every error path: four dumps at once,
# --leave-running, kill, logs (-f), rm, refused inputs. After each refusal the
# job and its checkpoint are as they were.
. "$(dirname "$0")/../lib.sh"
. "$REPO/tests/helpers/daemon_lib.sh"

daemon_up
counter() { sd exec -i "$1" -w "$T" "exec $PY $WORKLOADS/daemon_counter.py" >/dev/null; }
ncheckpoints() { sd checkpoints --json | $PY -c 'import json,sys; print(len(json.load(sys.stdin)))'; }

# Four jobs dumped at the same time, two plain and two streamed.
for i in 1 2 3 4; do counter c$i || die "exec c$i"; done
for i in 1 2 3 4; do wait_for 10 counted_past c$i 5 || die "c$i not counting"; done
pids=()
for i in 1 2 3 4; do
	args=()
	[ $((i % 2)) = 0 ] && args=(--stream 2)
	sd dump job c$i -d "$T/cc$i" "${args[@]}" >"$T/dump$i.out" 2>&1 &
	pids+=($!)
done
for i in 1 2 3 4; do
	wait "${pids[$((i - 1))]}"
	check concurrent_dump_$i test $? -eq 0
	check concurrent_killed_$i test "$(job_status c$i)" = JOB_KILLED
done
for i in 1 2 3 4; do sd restore job c$i >"$T/rest$i.out" 2>&1 & pids[$((i - 1))]=$!; done
for i in 1 2 3 4; do
	wait "${pids[$((i - 1))]}"
	check concurrent_restore_$i test $? -eq 0
done
for i in 1 2 3 4; do
	before=$(last_count c$i)
	check counts_on_$i wait_for 10 counted_past c$i $((before + 3))
	check log_continuous_$i counts_in_order c$i
	sd kill c$i >/dev/null
done

# --leave-running: a checkpoint, and the job goes on.
counter lr || die "exec lr"
wait_for 10 counted_past lr 5
pid=$(job_pid lr)
check leave_running_dump sd dump job lr -d "$T/lr" --leave-running
check leave_running_still_running test "$(job_status lr)" = JOB_RUNNING
check leave_running_same_pid alive "$pid"
check leave_running_checkpoint_recorded test "$(job_field lr checkpoint)" = "$T/lr"
before=$(last_count lr)
check leave_running_counts_on wait_for 10 counted_past lr $((before + 3))
refused restore_running_refused "is running" sd restore job lr
check leave_running_streamed sd dump job lr -d "$T/lr-s" --leave-running --stream 3 --codec zstd

# kill: default SIGKILL, --signal by name; status follows.
check kill_ok sd kill --signal TERM lr
check kill_status wait_for 5 sh -c "[ \"\$('$STASIS_BUILD/stasis' ps | awk '\$1==\"lr\"{print \$4}')\" = JOB_KILLED ]"
refused kill_not_running "not running" sd kill lr
refused kill_bad_signal "unknown signal" sd kill --signal NOPE c1
# The restore of a killed job from its --leave-running checkpoint works.
check restore_after_kill sd restore job lr -d "$T/lr"
sd kill lr >/dev/null

# logs: the whole output; -f follows until the job ends.
sd exec -i talk -w "$T" 'for i in 1 2 3 4 5; do echo line $i; sleep 0.2; done; echo err >&2; exit 7' >/dev/null
out=$(timeout 20 "$STASIS_BUILD/stasis" logs -f talk)
check logs_follow_all test "$(echo "$out" | grep -c '^line ')" = 5
check logs_stderr_too grep -q '^err$' <<<"$out"
check exit_code_shown test "$(sd ps | awk '$1=="talk"{print $4}')" = "JOB_DONE(7)"
check logs_after_end test "$(sd logs talk | wc -l)" = 6
sd exec -i envjob -w "$T" -e FOO=bar -e N=1 'echo "$FOO-$N-$STASIS_JOB_ID"' >/dev/null
check env_passed wait_for 5 sh -c "'$STASIS_BUILD/stasis' logs envjob | grep -q '^bar-1-envjob$'"

# rm: a running job is refused unless --force; the log goes, checkpoints stay.
counter rmme || die "exec rmme"
refused rm_running_refused "is running" sd rm rmme
check rm_force sd rm --force rmme
check rm_gone test -z "$(job_status rmme)"
check rm_log_gone test ! -e "$STASIS_STATE_DIR/logs/rmme.log"
refused logs_removed_job "no such job" sd logs rmme
check rm_done_job sd rm talk
check rm_keeps_files test -f "$T/cc1/inventory.img"

# exec errors: nothing is started.
counter dup || die "exec dup"
refused exec_duplicate_id "already in use" sd exec -i dup -w "$T" true
refused exec_bad_id "invalid job ID" sd exec -i '../x' -w "$T" true
refused exec_missing_dir "cannot enter working directory" sd exec -i nodir -w "$T/missing" true
check exec_nothing_recorded test -z "$(job_status nodir)"
refused exec_no_command "needs a command" sd exec -i nocmd

# dump errors: the job keeps running, nothing is recorded.
pid=$(job_pid dup)
wait_for 10 counted_past dup 3
n0=$(ncheckpoints)
refused dump_no_such_job "no such job" sd dump job nope -d "$T/x"
refused dump_not_running "not running" sd dump job c1 -d "$T/x"
refused dump_relative_needs_dir "usage" sd dump job dup
refused dump_existing_checkpoint "already holds a checkpoint" sd dump job dup -d "$T/cc1"
mkdir "$T/notes"
echo mine >"$T/notes/notes.txt"
refused dump_foreign_files "holds other files \\(notes.txt\\)" sd dump job dup -d "$T/notes"
check dump_foreign_untouched test "$(stat -c %a "$T/notes/notes.txt")" = 644
# A job connected to a UNIX socket outside its tree: CRIU refuses to dump it.
$PY -c "
import socket, time
s = socket.socket(socket.AF_UNIX)
s.bind('$T/srv.sock')
s.listen(1)
c = s.accept()
time.sleep(1000)
" &
track_pid $!
wait_for 10 test -S "$T/srv.sock"
sd exec -i ext -w "$T" "exec $PY -c \"
import socket, time
s = socket.socket(socket.AF_UNIX)
s.connect('$T/srv.sock')
while True:
    time.sleep(0.1)
\"" >/dev/null
sleep 0.5
epid=$(job_pid ext)
refused dump_criu_fails "criu dump failed.*dump.log.*still running" sd dump job ext -d "$T/bad"
check dump_fail_job_running test "$(job_status ext)" = JOB_RUNNING
check dump_fail_same_process alive "$epid"
check dump_fail_log_kept test -s "$T/bad/dump.log"
check dump_fail_no_marker test ! -e "$T/bad/stasis-checkpoint.json"
refused dump_stream_criu_fails "criu dump failed" sd dump job ext -d "$T/bad-s" --stream 2
check dump_stream_fail_running alive "$epid"
check dump_stream_fail_no_manifest test ! -e "$T/bad-s/manifest.json"
check dump_fail_retry_refused_cleanly test "$(job_status ext)" = JOB_RUNNING
refused dump_bad_codec "streamer" sd dump job dup -d "$T/badc" --stream 2 --codec nonsense
check dump_bad_codec_running test "$(job_status dup)" = JOB_RUNNING
refused dump_bad_stream "shard count" sd dump job dup -d "$T/x" --stream 0
refused dump_tcp_both "exclude each other" sd dump job dup -d "$T/x" --tcp-established --tcp-close
# A full disk: the dump fails wherever it happens to, and the job still runs.
mkdir -p "$T/full"
if mount -t tmpfs -o size=1m tmpfs "$T/full"; then
	at_exit umount -l "$T/full"
	for mode in plain stream; do
		args=()
		[ $mode = stream ] && args=(--stream 1 --codec none)
		refused dump_disk_full_$mode "failed" sd dump job dup -d "$T/full/$mode" "${args[@]}"
		check dump_disk_full_${mode}_running test "$(job_status dup)" = JOB_RUNNING
		check dump_disk_full_${mode}_no_marker test ! -e "$T/full/$mode/stasis-checkpoint.json"
		rm -rf "${T:?}/full/$mode"
	done
else
	fail "dump_disk_full (cannot mount a tmpfs)"
fi
check dump_fail_nothing_recorded test "$(ncheckpoints)" = "$n0"
before=$(last_count dup)
check dump_fail_counts_on wait_for 10 counted_past dup $((before + 3))
check dump_force_replaces sd dump job dup -d "$T/cc1" --force --leave-running
check dump_force_recorded test "$(sd checkpoints --json | grep -c "\"$T/cc1\"")" = 1

# restore errors: the job and its checkpoint are untouched, and restore later.
sd dump job dup -d "$T/dupck" >/dev/null || fail dump_for_restore_errors
refused restore_stream_on_plain "plain checkpoint" sd restore job dup --stream 2
sd dump job c2 -d "$T/x" >/dev/null 2>&1
refused restore_no_checkpoint "has no checkpoint" sd restore job envjob
mv "$T/dupck/inventory.img" "$T/inv.save"
refused restore_incomplete "no complete checkpoint" sd restore job dup
check restore_incomplete_untouched test "$(job_status dup)" = JOB_KILLED
mv "$T/inv.save" "$T/dupck/inventory.img"
# Someone else holds the PID.
pid=$(job_pid dup)
taken=
for try in $(seq 1 50); do
	echo $((pid - 1)) >/proc/sys/kernel/ns_last_pid
	sleep 1000 &
	if [ $! = "$pid" ]; then taken=$!; break; fi
	kill $! 2>/dev/null
done
if [ -n "$taken" ]; then
	track_pid "$taken"
	refused restore_pid_taken "PID $pid is taken" sd restore job dup
	kill "$taken"
	wait "$taken" 2>/dev/null
else
	fail "restore_pid_taken (could not take PID $pid for the test)"
fi
check restore_after_errors sd restore job dup
check restore_after_errors_same_pid test "$(job_pid dup)" = "$pid"
# Streamed: wrong shard count, corrupt shard.
sd kill dup >/dev/null
sd restore job c2 >/dev/null 2>&1
sd dump job c2 -d "$T/c2s" --stream 3 >/dev/null || fail dump_c2_stream
refused restore_wrong_shards "dumped with --stream 3, not 5" sd restore job c2 --stream 5
cp "$T/c2s/img-1.lz4" "$T/img1.save"
printf 'garbage' | dd of="$T/c2s/img-1.lz4" bs=1 seek=100 conv=notrunc 2>/dev/null
refused restore_corrupt_shard "criu restore failed|streamer" sd restore job c2
check restore_corrupt_untouched test "$(job_status c2)" = JOB_KILLED
cp "$T/img1.save" "$T/c2s/img-1.lz4"
check restore_after_corrupt sd restore job c2 --stream 3
before=$(last_count c2)
check restore_after_corrupt_counts wait_for 10 counted_past c2 $((before + 3))
finish
