# daemon_lib.sh: a private stasisd per test script (source after tests/lib.sh).
#
# Each script gets its own socket and state dir under $T, so tests never clash
# with each other or with a system daemon. `sd` runs the CLI against it.
STASIS_SOCKET=$T/stasisd.sock
STASIS_STATE_DIR=$T/state
export STASIS_SOCKET STASIS_STATE_DIR
WORKLOADS=$REPO/tests/helpers

sd() { "$STASIS_BUILD/stasis" "$@"; }

# daemon_up: start the private daemon (detached) and wait until it answers.
daemon_up() {
	sd daemon start >/dev/null || die "stasisd did not start: $(tail -5 "$STASIS_STATE_DIR/stasisd.log" 2>/dev/null)"
	DAEMON_PID=$(cat "$STASIS_STATE_DIR/stasisd.pid")
}
daemon_down() { sd daemon stop >/dev/null 2>&1 || true; }
at_exit daemon_down
# Jobs outlive the daemon by design: kill every job the test started, on exit.
# Straight from the database, so that a test whose daemon died leaks nothing either;
# a pid counts only while its start time still matches (PIDs are reused).
daemon_kill_jobs() {
	local p
	for p in $($PY -c 'import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
for pid, start in db.execute("SELECT pid, start FROM jobs WHERE state = \"running\""):
    try:
        stat = open("/proc/%d/stat" % pid).read()
    except OSError:
        continue
    if int(stat.rsplit(")", 1)[1].split()[19]) == start:
        print(pid)' "$STASIS_STATE_DIR/stasis.db" 2>/dev/null); do
		kill -9 -- "-$p" "$p" 2>/dev/null
	done
}
# On failure, show the end of the daemon's log (it goes with $T otherwise); through a
# saved stdout, since lib.sh silences its exit hooks.
exec {DAEMON_OUT}>&1
daemon_show_log() {
	[ "$_failed" = 1 ] || return 0
	tail -25 "$STASIS_STATE_DIR/stasisd.log" 2>/dev/null | sed 's/^/# daemon: /' >&"$DAEMON_OUT"
}
_cleanups=("daemon_show_log" "daemon_kill_jobs" "${_cleanups[@]}")
# The daemon's job cgroups (jobgroup.h) outlive it like its jobs: remove the empty ones.
daemon_rm_cgroups() {
	local base i
	base=$(sed -n 's/.*job cgroups under //p' "$STASIS_STATE_DIR/stasisd.log" 2>/dev/null | tail -1)
	[ -n "$base" ] && [ -d "$base" ] || return 0
	for i in 1 2 3 4 5 6 7 8 9 10; do
		rmdir "$base"/job_* "$base" 2>/dev/null
		[ -d "$base" ] || return 0
		sleep 0.2
	done
}
at_exit daemon_rm_cgroups

# Field of a job from `ps --json`: job_field ID FIELD
job_field() {
	sd ps --json | $PY -c 'import json,sys
for j in json.load(sys.stdin):
    if j["id"] == sys.argv[1]: print(j[sys.argv[2]])' "$1" "$2"
}
job_status() { job_field "$1" status; }
job_pid() { job_field "$1" pid; }

# The log of a counting job holds 1, 2, 3, ... with no gap and no restart.
counts_in_order() {
	sd logs "$1" | $PY -c 'import sys
n = [int(l) for l in sys.stdin.read().split()]
sys.exit(0 if n and n == list(range(1, len(n) + 1)) else 1)'
}
last_count() { sd logs "$1" | tail -1; }
# wait until job ID has counted past N
counted_past() { [ "$(last_count "$1")" -gt "$2" ] 2>/dev/null; }
