#!/usr/bin/env bash
# GPU jobs through the daemon, with the stand-in driver library
# (tests/stubs/cuda_stub.c, loaded by stasisd via STASIS_CUDA_LIB), real CRIU,
# the real streamer and a real (CPU) process.
#
# This proves the ORDERING of the driver calls around CRIU and the ERROR PATHS,
# not the GPU itself: the stand-in keeps the driver's per-process state machine
# and records every call, but copies no device memory. The real-GPU check is
# scripts/gpu-device-check.sh.
#
# Cases: check line; exec --gpu-enabled and GPU? true; dump --stream 2 (Lock and
# Checkpoint while the process is runnable, before CRIU; gpu.json; GPUDuration);
# restore --stream 2 (Restore and Unlock after CRIU brought the process back;
# GPURestoreStats; counter goes on); --leave-running (the original is restored
# and unlocked); lock timeout (dump fails, job still running and unlocked); CRIU
# dump failure (the original goes back on its GPU); restore failure leaving
# FAILED (clear error, restored tree killed, checkpoint kept and restorable);
# other GPUs (refused before CRIU); driver without the API / no driver (exec
# refused, check says why).
. "$(dirname "$0")/../lib.sh"

STUB=$STASIS_BUILD/tests/lib/cuda_stub.so
STUB_OLD=$STASIS_BUILD/tests/lib/cuda_stub_old.so
[ -f "$STUB" ] && [ -f "$STUB_OLD" ] || die "stand-in libraries missing: make $STUB $STUB_OLD"

SD=$T/stub
mkdir -p "$SD" "$T/w"
chmod 0755 "$T/w"

# start_daemon NAME LIB: a private stasisd whose driver library is LIB.
start_daemon() {
	local name=$1 lib=$2
	mkdir -p "$T/$name"
	STASIS_CUDA_LIB=$lib STASIS_CUDA_STUB_DIR=$SD \
		stasisd --socket "$T/$name/sock" --state-dir "$T/$name/state" \
		--log-file "$T/$name/daemon.log" >"$T/$name/daemon.out" 2>&1 &
	track_pid $!
	at_exit "kill $!"
	wait_for 10 test -S "$T/$name/sock" || die "stasisd ($name) did not start"
}
use() { export STASIS_SOCKET=$T/$1/sock; STATE=$T/$1/state; }

# The driver calls made on PID, in order, GetState left out.
calls() {
	awk -v p="pid=$1" '$3 == p && $2 != "GetState" {printf "%s%s", sep, $2; sep=" "}' \
		"$SD/calls.log"
}
stub_state() { awk -v p="$1" '$1 == p {print $2}' "$SD/state" 2>/dev/null; }
inject() { printf '%s\n' "$@" >"$SD/inject"; }
job_pid() { stasis ps | awk -v id="$1" '$1 == id {print $3}'; }
last_count() { tail -1 "$STATE/logs/$1.log"; }
counting() { # counting ID: its log grows past what it shows now
	local n
	n=$(last_count "$1")
	wait_for 10 sh -c "[ \"\$(tail -1 '$STATE/logs/$1.log')\" -gt '$n' ] 2>/dev/null"
}
COUNTER="exec $PY -u -c 'import time
n = 0
while True:
    n += 1
    print(n, flush=True)
    time.sleep(0.05)'"

start_daemon d "$STUB"
use d

# ---- check and exec
stasis check >"$T/check.out" 2>&1
check check_gpu_available grep -q 'GPU checkpointing available' "$T/check.out"

stasis exec -i g1 -w "$T/w" --gpu-enabled "$COUNTER" >"$T/exec.out" 2>&1 || {
	cat "$T/exec.out"
	die "exec --gpu-enabled failed"
}
wait_for 10 test -s "$STATE/logs/g1.log" || die "workload did not start"
pid=$(job_pid g1)
check ps_gpu_true sh -c "stasis ps | awk '\$1 == \"g1\" {print \$6}' | grep -qx true"

# ---- dump --stream 2
CASE=dump
stasis dump job g1 -d "$T/ck1" --stream 2 >"$T/dump1.out" 2>&1
rc=$?
check dump_ok [ $rc = 0 ]
check dump_gpu_duration grep -q '"GPUDuration":' "$T/dump1.out"
check dump_calls_lock_checkpoint [ "$(calls "$pid")" = "Lock Checkpoint" ]
check dump_state_checkpointed [ "$(stub_state "$pid")" = CHECKPOINTED ]
check dump_inventory grep -q '"processes": 1' "$T/ck1/gpu.json"
check dump_job_stopped wait_for 5 dead "$pid"
# The GPU checkpoint came before CRIU (the stand-in also refuses a frozen target).
check dump_gpu_before_criu sh -c "grep -n -e 'checkpointed in' -e 'dumping pid' '$T/d/daemon.log' |
	head -2 | tr '\n' ' ' | grep -q 'checkpointed in.*dumping pid'"
# CRIU's -L points at an empty directory: no host plugin joins in.
check dump_plugin_dir_empty sh -c "[ -d '$STATE/criu-no-plugins' ] && [ -z \"\$(ls -A '$STATE/criu-no-plugins')\" ]"
before=$(last_count g1)

# ---- restore --stream 2
stasis restore job g1 --stream 2 >"$T/restore1.out" 2>&1
rc=$?
check restore_ok [ $rc = 0 ]
check restore_gpu_stats grep -q '"GPURestoreStats":{"copyMemTime":[0-9]*,"replayCallsTime":[0-9]*}' \
	"$T/restore1.out"
check restore_gpu_duration grep -q '"GPUDuration":' "$T/restore1.out"
# Restore only succeeds on a live pid: it ran after CRIU brought the process back.
check restore_calls_order [ "$(calls "$pid")" = "Lock Checkpoint Restore Unlock" ]
check restore_state_running [ "$(stub_state "$pid")" = RUNNING ]
check restore_same_pid [ "$(job_pid g1)" = "$pid" ]
check restore_counter_goes_on wait_for 10 sh -c "[ \$(tail -1 '$STATE/logs/g1.log') -gt $before ]"

# ---- --leave-running
stasis dump job g1 -d "$T/ck2" --stream 2 --leave-running >"$T/dump2.out" 2>&1
check leave_running_ok [ $? = 0 ]
check leave_running_calls [ "$(calls "$pid")" = "Lock Checkpoint Restore Unlock Lock Checkpoint Restore Unlock" ]
check leave_running_state [ "$(stub_state "$pid")" = RUNNING ]
check leave_running_alive alive "$pid"
check leave_running_counting counting g1

# ---- lock timeout: dump fails, job still running and unlocked
inject lock=timeout
stasis dump job g1 -d "$T/ck3" --stream 2 >"$T/dump3.out" 2>&1
check lock_timeout_fails [ $? != 0 ]
check lock_timeout_message grep -q 'GPU busy: process [0-9]* could not be locked within' "$T/dump3.out"
check lock_timeout_not_ready grep -q 'CUDA_ERROR_NOT_READY' "$T/dump3.out"
check lock_timeout_state_running [ "$(stub_state "$pid")" = RUNNING ]
check lock_timeout_alive alive "$pid"
check lock_timeout_counting counting g1
check lock_timeout_no_checkpoint [ ! -e "$T/ck3/manifest.json" ]
inject

# ---- CRIU dump failure: the original goes back on its GPU. CRIU refuses a
# UNIX socket connected to a peer outside the dumped tree.
$PY -c 'import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(1)
open(sys.argv[2], "w").close()
c, _ = s.accept(); time.sleep(600)' "$T/ext.sock" "$T/ext.ready" &
track_pid $!
wait_for 10 test -e "$T/ext.ready" || die "socket peer did not start"
stasis exec -i g2 -w "$T/w" --gpu-enabled "exec $PY -u -c 'import socket, time
s = socket.socket(socket.AF_UNIX); s.connect(\"$T/ext.sock\")
n = 0
while True:
    n += 1; print(n, flush=True); time.sleep(0.05)'" >"$T/exec2.out" 2>&1 ||
	{ cat "$T/exec2.out"; die "exec g2 failed"; }
wait_for 10 test -s "$STATE/logs/g2.log" || { cat "$T/exec2.out"; die "g2 did not start"; }
pid2=$(job_pid g2)
stasis dump job g2 -d "$T/ck4" --stream 2 >"$T/dump4.out" 2>&1
check criu_fail_dump_fails [ $? != 0 ]
check criu_fail_message grep -q 'criu dump failed' "$T/dump4.out"
check criu_fail_back_on_gpu grep -q 'the job is back on its GPU' "$T/dump4.out"
check criu_fail_calls [ "$(calls "$pid2")" = "Lock Checkpoint Restore Unlock" ]
check criu_fail_state_running [ "$(stub_state "$pid2")" = RUNNING ]
check criu_fail_alive alive "$pid2"
check criu_fail_counting counting g2
stasis kill g2 >/dev/null 2>&1

# ---- GPU restore failure leaving FAILED: clear error, tree killed, checkpoint kept
stasis dump job g1 -d "$T/ck5" --stream 2 >"$T/dump5.out" 2>&1 || die "dump ck5 failed"
wait_for 5 dead "$pid"
inject restore=fail
stasis restore job g1 --stream 2 >"$T/restore5.out" 2>&1
check restore_fail_fails [ $? != 0 ]
check restore_fail_message grep -q 'GPU restore of process [0-9]* failed: cuCheckpointProcessRestore returned CUDA_ERROR_OUT_OF_MEMORY' "$T/restore5.out"
check restore_fail_failed_state grep -q 'the process is now FAILED: its GPU state is lost' "$T/restore5.out"
check restore_fail_kept grep -q 'is kept for another try' "$T/restore5.out"
check restore_fail_killed wait_for 5 dead "$pid"
check restore_fail_job_not_running sh -c "! stasis ps | awk '\$1 == \"g1\"' | grep -q JOB_RUNNING"
check restore_fail_checkpoint_intact test -s "$T/ck5/manifest.json"
# Another try: the images still hold the process as CHECKPOINTED (the stand-in
# keys its state by pid, so the test puts that back, as the real images would).
inject
sed -i "s/^$pid FAILED /$pid CHECKPOINTED /" "$SD/state"
stasis restore job g1 --stream 2 >"$T/restore6.out" 2>&1
check restore_retry_ok [ $? = 0 ]
check restore_retry_running [ "$(stub_state "$pid")" = RUNNING ]
check restore_retry_counting counting g1

# ---- other GPUs: refused before CRIU runs
stasis dump job g1 -d "$T/ck7" --stream 2 >/dev/null 2>&1 || die "dump ck7 failed"
wait_for 5 dead "$pid"
inject "gpus=Other Model"
n_restores=$(grep -c 'restoring from' "$T/d/daemon.log")
stasis restore job g1 --stream 2 >"$T/restore7.out" 2>&1
check other_gpu_refused [ $? != 0 ]
check other_gpu_message grep -q 'different GPUs: the checkpoint was taken on Stand-in GPU' "$T/restore7.out"
check other_gpu_names_host grep -q 'this host has Other Model' "$T/restore7.out"
check other_gpu_no_criu [ "$(grep -c 'restoring from' "$T/d/daemon.log")" = "$n_restores" ]
inject
stasis restore job g1 --stream 2 >/dev/null 2>&1
check other_gpu_then_same_ok counting g1
stasis kill g1 >/dev/null 2>&1

# ---- driver without the checkpoint API, and no driver at all
start_daemon old "$STUB_OLD"
use old
stasis check >"$T/check-old.out" 2>&1
check old_driver_check_says_why grep -q 'driver too old: it supports CUDA 12.4 and has no cuCheckpointProcess' "$T/check-old.out"
stasis exec -i g3 -w "$T/w" --gpu-enabled "$COUNTER" >"$T/exec-old.out" 2>&1
check old_driver_exec_refused [ $? != 0 ]
check old_driver_exec_message grep -q -- '--gpu-enabled refused: .*driver too old' "$T/exec-old.out"
check old_driver_no_job sh -c "! stasis ps | grep -q '^g3 '"
stasis exec -i c1 -w "$T/w" "$COUNTER" >/dev/null 2>&1
check old_driver_cpu_job_ok [ "$(stasis ps | awk '$1 == "c1" {print $6}')" = false ]
stasis kill c1 >/dev/null 2>&1

start_daemon none /nonexistent/libcuda.so.1
use none
stasis check >"$T/check-none.out" 2>&1
check no_driver_check_says_why grep -q 'cannot load /nonexistent/libcuda.so.1' "$T/check-none.out"
stasis exec -i g4 -w "$T/w" --gpu-enabled "$COUNTER" >"$T/exec-none.out" 2>&1
check no_driver_exec_refused [ $? != 0 ]

finish
