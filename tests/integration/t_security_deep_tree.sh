#!/usr/bin/env bash
# Finding 11 (docs/security.md): walks over a job's process tree recursed on
# the daemon's stack, one frame per generation, so a deep enough chain of
# processes crashed it. A job forks a chain of 20000 nested processes; the
# daemon lists it (ps walks the tree), starts a dump of it (the progress
# estimate sums the tree's memory) and answers progress, and kills it (every
# process of the chain gone), and is still the same daemon afterwards.
. "$(dirname "$0")/../lib.sh"
. "$REPO/tests/helpers/daemon_lib.sh"

DEPTH=20000
# The daemon's threads get stacks of RLIMIT_STACK: 2 MiB here, as a host may
# well set. The recursion took ~400 bytes a generation, ~8 MiB for this chain
# (just enough to survive the default 8 MiB); a loop takes none.
ulimit -Ss 2048
daemon_up
ulimit -Ss 8192
# Root's job: a user's job is held to its NPROC limit (finding 7), below this.
sd exec -i chain -w / "exec $HELPERS/chain $DEPTH" >/dev/null || die "exec chain"
log=$STASIS_STATE_DIR/logs/chain.log
wait_for 180 grep -q '^ready' "$log" || die "the chain did not get ready"
got=$(awk '/^ready/ { print $2 }' "$log")
[ "$got" = "$DEPTH" ] || die "the chain reached depth $got only (fork failed: PIDs exhausted?)"
ok chain_built
# The chain is the job's session and process group: gone on exit, daemon or not.
at_exit "kill -9 -- -$(job_pid chain)"

# The same daemon answers (one that crashed left its pid file behind).
daemon_same() {
	sd ps >/dev/null 2>&1 && alive "$DAEMON_PID" &&
		[ "$(cat "$STASIS_STATE_DIR/stasisd.pid")" = "$DAEMON_PID" ]
}
check ps_survives test "$(job_status chain)" = JOB_RUNNING
check ps_daemon_alive daemon_same

# A dump of the chain: the dump's checks list the tree, its progress sums the
# tree's memory, and whatever CRIU makes of the chain, the failed dump resumes
# the tree (SIGCONT to every process).
sd dump job chain -d "$T/ck" --timeout 30 >"$T/dump.out" 2>&1 &
dumper=$!
track_pid $dumper
progress() {
	curl -sf --unix-socket "$STASIS_SOCKET" http://localhost/v1/jobs/chain/progress >"$T/prog.json"
}
if wait_for 60 progress; then
	echo "# progress: $(cat "$T/prog.json")"
	ok progress_answers
else
	check progress_dump_ended dead "$dumper"
fi
wait_for 120 dead "$dumper"
echo "# dump: $(tail -1 "$T/dump.out")"
check dump_daemon_alive daemon_same
check dump_job_runs_on test "$(job_status chain)" = JOB_RUNNING

# kill reaches every process of the chain, and the daemon survives the walk.
sd kill chain --signal KILL >/dev/null 2>&1
chain_gone() { ! grep -qx chain /proc/[0-9]*/comm 2>/dev/null; }
check kill_reaches_all wait_for 120 chain_gone
chain_gone || echo "# left of the chain: $(ps -o stat=,ppid= -C chain | sort | uniq -c | head -5 | tr '\n' ' ') (daemon $DAEMON_PID)"
check kill_daemon_alive daemon_same
killed() { [ "$(job_status chain)" = JOB_KILLED ]; }
check kill_recorded wait_for 20 killed
finish
