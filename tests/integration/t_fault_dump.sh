#!/usr/bin/env bash
# Faults during a dump, with the real daemon and CRIU: the streamer killed,
# CRIU killed, the daemon SIGKILLed (then restarted), the disk full. After
# each, the dump fails with a clear error, nothing is recorded, and the job is
# still running with its memory intact (memhog verifies its checksum) or,
# where the dump went through without the daemon, restorable; then a new dump
# and restore work.
. "$(dirname "$0")/../lib.sh"
. "$REPO/tests/helpers/daemon_lib.sh"
. "$(dirname "$0")/fault_lib.sh"

daemon_up
ncheckpoints() { sd checkpoints --json | $PY -c 'import json,sys; print(len(json.load(sys.stdin)))'; }
# after_failed_dump NAME ID DIR PID: the job runs as before, nothing recorded.
after_failed_dump() {
	local name=$1 id=$2 dir=$3 pid=$4
	check ${name}_job_running test "$(job_status "$id")" = JOB_RUNNING
	check ${name}_same_process alive "$pid"
	check ${name}_memory_intact verified "$id"
	check ${name}_no_manifest test ! -e "$dir/manifest.json"
	check ${name}_no_marker test ! -e "$dir/stasis-checkpoint.json"
	check ${name}_nothing_recorded test "$(ncheckpoints)" = "$n0"
}
# redo NAME ID DIR ARGS...: dumping again into the same dir works (or, if the
# failed dump left files there, is refused with a hint to use --force and then
# works with it), and so does the restore.
redo() {
	local name=$1 id=$2 dir=$3 out
	shift 3
	if ! out=$(sd dump job "$id" -d "$dir" "$@" 2>&1); then
		echo "# $name: retry said: $out"
		check ${name}_retry_says_force grep -q -- "--force" <<<"$out"
		check ${name}_dump_again sd dump job "$id" -d "$dir" "$@" --force
	else
		ok ${name}_dump_again
	fi
	check ${name}_restore sd restore job "$id"
	check ${name}_restored_memory_intact verified "$id"
	sd kill "$id" >/dev/null 2>&1
}

# 1. The streamer is SIGKILLed while shards are being written.
CASE=streamer_killed
n0=$(ncheckpoints)
hog s1 256M
pid=$(job_pid s1)
sd dump job s1 -d "$T/s1" --stream 2 >"$T/s1.out" 2>&1 &
dpid=$!
spid=$(stop_streamer "$T/s1" capture bytes:4194304) || die "streamer never wrote"
kill -9 "$spid"
wait $dpid
check streamer_killed_dump_fails test $? -ne 0
echo "# streamer_killed: $(cat "$T/s1.out")"
check streamer_killed_error_clear grep -Eq "streamer|criu dump failed" "$T/s1.out"
check streamer_killed_error_says_running grep -q "still running" "$T/s1.out"
after_failed_dump streamer_killed s1 "$T/s1" "$pid"
redo streamer_killed s1 "$T/s1" --stream 2

# 2. CRIU is SIGKILLed in the middle of a dump (the streamer held still so
# CRIU is blocked writing pages).
CASE=criu_killed_dump
n0=$(ncheckpoints)
hog c1 256M
pid=$(job_pid c1)
sd dump job c1 -d "$T/c1" --stream 2 >"$T/c1.out" 2>&1 &
dpid=$!
spid=$(stop_streamer "$T/c1" capture bytes:4194304) || die "streamer never wrote"
wait_for 10 test -n "$(criu_of "$T/c1" dump)" || die "no criu"
sleep 0.3
kill -9 "$(criu_of "$T/c1" dump)"
kill -CONT "$spid"
wait $dpid
check criu_killed_dump_fails test $? -ne 0
echo "# criu_killed_dump: $(cat "$T/c1.out")"
check criu_killed_error_clear grep -Eq "criu dump failed \(.*(signal 9|SIGKILL|Killed)" "$T/c1.out"
after_failed_dump criu_killed_dump c1 "$T/c1" "$pid"
check criu_killed_no_streamer_left test -z "$(find_proc stasis-streamer "$T/c1" capture)"
redo criu_killed_dump c1 "$T/c1" --stream 2

# 3. The daemon is SIGKILLed mid-dump, then restarted. CRIU and the streamer
# were its children; whatever they do, the job must be running or restorable.
CASE=daemon_killed_dump
hog d1 256M
pid=$(job_pid d1)
sd dump job d1 -d "$T/d1" --stream 2 >"$T/d1.out" 2>&1 &
dpid=$!
spid=$(stop_streamer "$T/d1" capture bytes:4194304) || die "streamer never wrote"
cpid=$(criu_of "$T/d1" dump)
kill -9 "$DAEMON_PID"
kill -CONT "$spid"
wait $dpid
check daemon_killed_dump_fails test $? -ne 0
check daemon_killed_error_clear grep -Eqi "daemon|connection|stasisd" "$T/d1.out"
# Let the orphaned CRIU and streamer finish whatever they do.
wait_for 60 sh -c "[ ! -d /proc/$spid ] && [ ! -d /proc/${cpid:-0} ]" || die "orphans still running"
daemon_up
check daemon_restarted sd daemon status
st=$(job_status d1)
if alive "$pid"; then
	echo "# daemon_killed_dump: the job kept running ($st)"
	check daemon_killed_job_listed_running test "$st" = JOB_RUNNING
	check daemon_killed_memory_intact verified d1
	redo daemon_killed_dump d1 "$T/d1b" --stream 2
else
	echo "# daemon_killed_dump: the orphaned dump completed; job is $st"
	check daemon_killed_job_not_shown_running test "$st" != JOB_RUNNING
	check daemon_killed_images_complete test -e "$T/d1/manifest.json"
	check daemon_killed_checkpoint_recorded test "$(job_field d1 checkpoint)" = "$T/d1"
	check daemon_killed_restorable sd restore job d1
	check daemon_killed_restored_memory_intact verified d1
	sd kill d1 >/dev/null 2>&1
fi

# 4. The disk fills up during the dump (an 8 MiB tmpfs for a 64 MiB job).
CASE=disk_full
mkdir -p "$T/small"
mount -t tmpfs -o size=8m tmpfs "$T/small" || die "cannot mount a tmpfs"
at_exit umount -l "$T/small"
n0=$(ncheckpoints)
hog f1 64M
pid=$(job_pid f1)
for mode in plain stream; do
	args=()
	[ $mode = stream ] && args=(--stream 2)
	out=$(sd dump job f1 -d "$T/small/$mode" "${args[@]}" 2>&1)
	check disk_full_${mode}_fails test $? -ne 0
	echo "# disk_full_$mode: $out"
	check disk_full_${mode}_error_says_failed grep -Eq "criu dump failed|streamer" <<<"$out"
	# The user must learn that the disk is full without digging in logs.
	check disk_full_${mode}_error_names_cause grep -Eqi "no space|disk full|ENOSPC" <<<"$out"
	after_failed_dump disk_full_$mode f1 "$T/small/$mode" "$pid"
	rm -rf "$T/small/$mode"
done
redo disk_full f1 "$T/f1" --stream 2
finish
