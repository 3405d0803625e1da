#!/usr/bin/env bash
# The job is the workload: a plain command is exec'ed itself (ps shows the
# program's PID, signals reach it), a shell command is still run by sh, and
# every process of a job is tracked, killed and removed with it, also after
# a restore. Then the CLI's defaults: dump/restore without an ID, exec with
# stasis flags after the command and `--`.
. "$(dirname "$0")/../lib.sh"
. "$REPO/tests/helpers/daemon_lib.sh"

daemon_up
# A workload that counts, logs each SIGUSR1 it gets with its own PID, and
# with --child first forks a child that does the same and writes child.pid.
cat >"$T/wl.py" <<'PY'
import os, signal, sys, time
def usr1(s, f):
    print("usr1 %d" % os.getpid(), flush=True)
signal.signal(signal.SIGUSR1, usr1)
if "--child" in sys.argv:
    pid = os.fork()
    if pid == 0:
        while True:
            time.sleep(0.05)
    with open("child.pid.tmp", "w") as f:
        f.write("%d\n" % pid)
    os.rename("child.pid.tmp", "child.pid")
n = 0
while True:
    n += 1
    print(n, flush=True)
    time.sleep(0.02)
PY
counts() { sd logs "$1" | grep -c '^[0-9]'; }
counting() { local n; n=$(counts "$1"); sleep 0.3; [ "$(counts "$1")" -gt "$n" ]; }
cmdline_has() { tr '\0' ' ' <"/proc/$1/cmdline" | grep -q -- "$2"; }
comm_is() { [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ]; }
session_of() { ps -o pid= -s "$1" 2>/dev/null | tr -d ' '; }

# ---- a plain command runs without a shell
sd exec -i direct -w "$T" "$PY $T/wl.py" >/dev/null || die "exec direct"
pid=$(job_pid direct)
check direct_pid_is_program cmdline_has "$pid" "wl.py"
check direct_not_sh comm_is "$pid" python3
check direct_shell_false test "$(job_field direct shell)" = False
check direct_counting wait_for 10 counting direct
kill -USR1 "$pid"
check direct_usr1_reaches_workload wait_for 5 sh -c "'$STASIS_BUILD/stasis' logs direct | grep -qx 'usr1 $pid'"
check direct_still_running test "$(job_status direct)" = JOB_RUNNING
# PATH is searched as the user's shell would; a missing program says so.
refused direct_not_found "command not found: no-such-prog" sd exec -i nf -w "$T" "no-such-prog --x"
check direct_not_found_nothing_recorded test -z "$(job_status nf)"
# Quoted words are split like sh would, without a shell.
sd exec -i quoted -w "$T" "printf '%s|' 'a b' \"c d\" e" >/dev/null
check quoted_words wait_for 5 sh -c "[ \"\$('$STASIS_BUILD/stasis' logs quoted)\" = 'a b|c d|e|' ]"
check quoted_no_shell test "$(job_field quoted shell)" = False
# `exec CMD` still goes through sh, which becomes the program.
sd exec -i viaexec -w "$T" "exec $PY $T/wl.py" >/dev/null
check exec_prefix_is_program wait_for 5 cmdline_has "$(job_pid viaexec)" wl.py
check exec_prefix_shell_true test "$(job_field viaexec shell)" = True
sd kill viaexec >/dev/null

# ---- a shell command (pipeline) is run by sh and tracked whole
sd exec -i pipe -w "$T" "sleep 1000 | cat" >/dev/null || die "exec pipe"
ppid=$(job_pid pipe)
check pipe_shell_true test "$(job_field pipe shell)" = True
check pipe_top_is_sh comm_is "$ppid" sh
check pipe_has_members wait_for 5 sh -c "[ \$(ps -o pid= -s $ppid | wc -l) -ge 3 ]"
members=$(session_of "$ppid")
check pipe_kill sd kill pipe
gone() { for p in $members; do alive "$p" && return 1; done; return 0; }
check pipe_all_dead wait_for 5 gone
check pipe_killed_status test "$(job_status pipe)" = JOB_KILLED

# ---- the top process dies, its child lives on: the job runs on
# (run twice: with job cgroups, then tracked by session only: P is the case prefix)
orphan_cases() {
local P=$1 orph=$1orph orph2=$1orph2 child top
mkdir -p "$T/$orph"
sd exec -i $orph -w "$T/$orph" "sleep 1000 & echo \$! > child.pid" >/dev/null || die "exec $orph"
top=$(job_pid $orph)
wait_for 5 test -s "$T/$orph/child.pid" || die "$orph child.pid"
child=$(cat "$T/$orph/child.pid")
check ${P}orphan_top_gone wait_for 5 dead "$top"
check ${P}orphan_child_alive alive "$child"
check ${P}orphan_job_running test "$(job_status $orph)" = JOB_RUNNING
check ${P}orphan_ps_keeps_pid test "$(job_pid $orph)" = "$top"
refused ${P}orphan_dump_refused "top process $top is gone; 1 process\\(es\\) of it still run: $child \\(sleep\\)" \
	sd dump job $orph -d "$T/$orph-ck"
check ${P}orphan_dump_nothing_written test ! -e "$T/$orph-ck/inventory.img"
check ${P}orphan_kill sd kill $orph
check ${P}orphan_child_killed wait_for 5 dead "$child"
check ${P}orphan_killed_status test "$(job_status $orph)" = JOB_KILLED
# rm --force reaches the orphan too.
mkdir -p "$T/$orph2"
sd exec -i $orph2 -w "$T/$orph2" "sleep 1000 & echo \$! > child.pid" >/dev/null
wait_for 5 test -s "$T/$orph2/child.pid"
child=$(cat "$T/$orph2/child.pid")
wait_for 5 dead "$(job_pid $orph2)"
refused ${P}orphan_rm_refused "is running" sd rm $orph2
check ${P}orphan_rm_force sd rm --force $orph2
check ${P}orphan_rm_child_killed wait_for 5 dead "$child"
check ${P}orphan_rm_gone test -z "$(job_status $orph2)"
}
orphan_cases ""

# A job whose child was orphaned out of its tree (the middle process died).
mkdir -p "$T/mid"
sd exec -i mid -w "$T/mid" "$PY -c \"
import os, time
if os.fork() == 0:
    if os.fork() == 0:
        open('gc.pid', 'w').write(str(os.getpid()))
        time.sleep(1000)
    os._exit(0)
while True:
    time.sleep(0.1)
\"" >/dev/null
wait_for 5 test -s "$T/mid/gc.pid"
gc=$(cat "$T/mid/gc.pid")
refused outside_tree_dump_refused "outside the tree of its top process.*$gc" sd dump job mid -d "$T/mid-ck"
check outside_tree_still_running alive "$gc"
check outside_tree_kill sd kill mid
check outside_tree_killed wait_for 5 dead "$gc"

# ---- dump and restore of a directly exec'ed job, plain and streamed
restore_cases() {
local P=$1 mode id pid child cg args
for mode in plain stream; do
	id=${P}dr-$mode
	args=()
	[ $mode = stream ] && args=(--stream 2)
	mkdir -p "$T/$id"
	sd exec -i $id -w "$T/$id" "$PY $T/wl.py --child" >/dev/null || die "exec $id"
	wait_for 10 counting $id || die "$id not counting"
	wait_for 5 test -s "$T/$id/child.pid"
	pid=$(job_pid $id)
	child=$(cat "$T/$id/child.pid")
	check ${P}${mode}_dump sd dump job $id -d "$T/$id-ck" "${args[@]}"
	check ${P}${mode}_dumped_killed test "$(job_status $id)" = JOB_KILLED
	check ${P}${mode}_child_gone dead "$child"
	check ${P}${mode}_restore sd restore job $id
	check ${P}${mode}_same_pid test "$(job_pid $id)" = "$pid"
	check ${P}${mode}_restored_is_program cmdline_has "$pid" wl.py
	check ${P}${mode}_restored_counting wait_for 10 counting $id
	kill -USR1 "$pid"
	check ${P}${mode}_usr1_after_restore wait_for 5 sh -c "'$STASIS_BUILD/stasis' logs $id | grep -qx 'usr1 $pid'"
	check ${P}${mode}_child_back alive "$child"
	cg=$(grep '^0::' "/proc/$pid/cgroup" | cut -d: -f3)
	if [ -n "$P" ]; then
		check ${P}${mode}_not_in_job_cgroup test "${cg##*/}" != "job_$id"
	elif grep -q "job cgroups under" "$STASIS_STATE_DIR/stasisd.log"; then
		check ${P}${mode}_restored_in_job_cgroup test "${cg##*/}" = "job_$id"
		check ${P}${mode}_child_in_job_cgroup test "$(grep '^0::' "/proc/$child/cgroup")" = "0::$cg"
	else
		echo "# no job cgroups on this host: the cgroup cases were not run"
	fi
	# Tracking after restore: the top dies, the restored child keeps the job running.
	kill -9 "$pid"
	check ${P}${mode}_restored_top_dead wait_for 5 dead "$pid"
	check ${P}${mode}_restored_child_runs_job test "$(job_status $id)" = JOB_RUNNING
	check ${P}${mode}_restored_kill sd kill $id
	check ${P}${mode}_restored_child_killed wait_for 5 dead "$child"
done
}
restore_cases ""

# ---- the same without cgroups: jobs tracked by their session only
daemon_down
STASIS_JOB_CGROUPS=0 daemon_up
check sessiononly_mode grep -q "session only (STASIS_JOB_CGROUPS=0)" "$STASIS_STATE_DIR/stasisd.log"
orphan_cases so-
restore_cases so-

# ---- the CLI: dump and restore without a job ID, exec's trailing flags and --
# (a daemon with the stand-in GPU driver, so that --gpu-enabled is accepted)
daemon_down
mkdir -p "$T/stub"
STASIS_CUDA_LIB=$STASIS_BUILD/tests/lib/cuda_stub.so STASIS_CUDA_STUB_DIR=$T/stub daemon_up
for id in $(sd ps --json | $PY -c 'import json,sys; print(" ".join(j["id"] for j in json.load(sys.stdin)))'); do
	sd rm --force "$id" >/dev/null
done
check_exit() { local want=$1 out; shift; out=$("$@" 2>&1); [ $? = "$want" ] || { echo "# $out"; return 1; }; }
refused noid_dump_none "no job ID given, and you have no running job" sd dump job -d "$T/n0"
check noid_dump_none_exit check_exit 1 sd dump job -d "$T/n0"
refused noid_restore_none "no job ID given, and you have no restorable job" sd restore job
sd exec -i cli1 -w "$T" "$PY $T/wl.py" >/dev/null || die "exec cli1"
wait_for 10 counting cli1
pid1=$(job_pid cli1)
# Another user's running job does not count for root.
make_user stasis_jw
runuser -u stasis_jw -- env STASIS_SOCKET="$STASIS_SOCKET" "$STASIS_BUILD/stasis" exec -i other \
	-w /tmp sleep 1000 >/dev/null || fail "exec as stasis_jw"
out=$(sd dump job -d "$T/cli-ck" --stream 8 2>&1)
check noid_dump_takes_only_job grep -q "^Success Checkpoint=$T/cli-ck " <<<"$out"
check noid_dump_killed test "$(job_status cli1)" = JOB_KILLED
check noid_dump_shards test "$(ls "$T/cli-ck"/img-*.lz4 | wc -l)" = 8
check noid_dump_other_user_untouched test "$(job_status other)" = JOB_RUNNING
out=$(sd restore job --stream 8 2>&1)
check noid_restore_takes_only_job grep -q "^Success PID=$pid1 " <<<"$out"
check noid_restore_running test "$(job_status cli1)" = JOB_RUNNING
sd exec -i cli2 -w "$T" "$PY $T/wl.py" >/dev/null || die "exec cli2"
refused noid_dump_several "you have 2 running jobs: (cli1, cli2|cli2, cli1); name one" sd dump job -d "$T/n2"
check noid_dump_several_exit check_exit 1 sd dump job -d "$T/n2"
check noid_dump_several_nothing test ! -e "$T/n2/inventory.img"
check noid_dump_several_running test "$(job_status cli1)/$(job_status cli2)" = JOB_RUNNING/JOB_RUNNING
sd dump job cli1 -d "$T/c1" >/dev/null || fail "dump cli1"
sd dump job cli2 -d "$T/c2" >/dev/null || fail "dump cli2"
refused noid_restore_several "you have 2 restorable jobs: (cli1, cli2|cli2, cli1)" sd restore job
check noid_restore_several_exit check_exit 1 sd restore job
check noid_dump_usage check_exit 2 sd dump job
check named_restore_still_works sd restore job cli2
sd kill cli2 >/dev/null
sd kill other >/dev/null

# exec: options after the command, --json and --gpu-enabled at the end, -- verbatim.
out=$(sd exec -i ced -w "$T" $PY -c 'import sys; print(sys.argv[1:])' --start=tell me a story --gpu-enabled --json)
check trailing_json_taken $PY -c 'import json,sys; json.loads(sys.argv[1])' "$out"
check trailing_gpu_taken test "$(job_field ced gpu)" = True
check trailing_not_in_command sh -c "! '$STASIS_BUILD/stasis' ps --json | grep -q -- '--gpu-enabled'"
check trailing_command_words wait_for 5 sh -c "'$STASIS_BUILD/stasis' logs ced | grep -qxF \"['--start=tell', 'me', 'a', 'story']\""
check trailing_no_shell test "$(job_field ced shell)" = False
sd exec -i dd -w "$T" -- $PY -c 'import sys; print(sys.argv[1:])' --start=x --json --gpu-enabled >"$T/dd.out"
check dashdash_verbatim wait_for 5 sh -c "'$STASIS_BUILD/stasis' logs dd | grep -qxF \"['--start=x', '--json', '--gpu-enabled']\""
check dashdash_not_json grep -q "^Success JobID=dd " "$T/dd.out"
check dashdash_no_gpu test "$(job_field dd gpu)" = False
sd exec -i single -w "$T" "$PY -c 'print(123)' --gpu-enabled" >/dev/null 2>&1
check one_word_verbatim wait_for 5 sh -c "'$STASIS_BUILD/stasis' logs single | grep -qx 123"
check one_word_no_gpu_taken test "$(job_field single gpu)" = False
check exec_help_states_rule sh -c "'$STASIS_BUILD/stasis' exec --help | grep -q -- '\`--\` ends'"
finish
