#!/usr/bin/env bash
# Finding 7 (docs/security.md): users' jobs ran with the daemon's limits (open
# files 1048576, processes unbounded), and jobs per user and their logs were
# unbounded. As an unprivileged user: a job gets a login session's limits, not
# the daemon's; a job that lowered its own limits comes back from a restore
# with those, not more; forking past the process bound fails; a user cannot
# record more jobs than the bound; a log that grows past its bound keeps only
# its newest part; the job list a user gets holds their jobs only.
. "$(dirname "$0")/../lib.sh"
. "$REPO/tests/helpers/daemon_lib.sh"

U=stasis-lim7
make_user $U
uid=$(id -u $U)
# Whatever the user's jobs left (children of a job whose top process ended).
kill_user_procs() { local p; for p in $(pgrep -u $U); do kill -9 "$p"; done; }
kill_user_procs
at_exit userdel $U
at_exit kill_user_procs
mkdir -p "$T/ck" "$T/w"
chown $U "$T/ck" "$T/w"
# The daemon with small bounds, so that the test reaches them quickly.
mkdir -p "$STASIS_STATE_DIR"
"$STASIS_BUILD/stasisd" --socket "$STASIS_SOCKET" --state-dir "$STASIS_STATE_DIR" \
	--log-file "$STASIS_STATE_DIR/stasisd.log" --job-limits nofile=1024:524288,nproc=60:60 \
	--max-jobs-per-user 3 --log-max 131072 </dev/null >/dev/null 2>&1 &
DAEMON_PID=$!
track_pid $DAEMON_PID
wait_for 10 sd ps >/dev/null 2>&1 || die "stasisd did not start"
as_user() { setpriv --reuid=$U --regid=$U --init-groups "$STASIS_BUILD/stasis" "$@"; }
# limit PID NAME: "soft hard" of a limit in /proc/PID/limits.
limit() { awk -v n="$2" 'index($0, n) == 1 { print $(NF-2), $(NF-1) }' "/proc/$1/limits"; }

# ---- a job's limits are a session's, not the daemon's
echo "# the daemon: open files $(limit $DAEMON_PID 'Max open files'), processes $(limit $DAEMON_PID 'Max processes')"
as_user exec -i lj -w "$T/w" -- sleep 1000 >/dev/null || die "exec lj"
# The hard bound is 524288, or less if the daemon itself has less.
dhard=$(limit $DAEMON_PID 'Max open files' | awk '{ print $2 }')
[ "$dhard" = unlimited ] || [ "$dhard" -gt 524288 ] && dhard=524288
check job_nofile test "$(limit "$(job_pid lj)" 'Max open files')" = "1024 $dhard"
check job_nproc test "$(limit "$(job_pid lj)" 'Max processes')" = "60 60"

# ---- a restore gives back the job's own limits, never more
as_user exec -i low -w "$T/w" -- $PY -c '
import resource, time
resource.setrlimit(resource.RLIMIT_NOFILE, (100, 200))
print("low", flush=True)
while True:
    time.sleep(1)' >/dev/null || die "exec low"
lowered() { grep -q '^low' "$STASIS_STATE_DIR/logs/low.log"; }
wait_for 10 lowered || die "low did not lower its limits"
if as_user dump job low -d "$T/ck" >/dev/null 2>"$T/dump.err" &&
	as_user restore job low >/dev/null 2>"$T/restore.err"; then
	check restore_keeps_lowered test "$(limit "$(job_pid low)" 'Max open files')" = "100 200"
	check restore_nproc test "$(limit "$(job_pid low)" 'Max processes')" = "60 60"
else
	cat "$T/dump.err" "$T/restore.err"
	fail restore_limits
fi

# ---- the process bound holds: 80 children are tried, fewer exist
as_user kill low >/dev/null
as_user exec -i forker -w "$T/w" -- $PY -c '
import os, time
made = failed = 0
for i in range(80):
    try:
        if os.fork() == 0:
            time.sleep(1000)
            os._exit(0)
        made += 1
    except OSError:
        failed += 1
print("forked", made, "failed", failed, flush=True)
time.sleep(1000)' >/dev/null || die "exec forker"
forked() { grep -q '^forked' "$STASIS_STATE_DIR/logs/forker.log"; }
wait_for 20 forked || die "forker did not finish forking"
echo "# $(grep '^forked' "$STASIS_STATE_DIR/logs/forker.log"); processes of the user: $(pgrep -u $U -c)"
check nproc_enforced test "$(pgrep -u $U -c)" -le 60
check nproc_forks_refused grep -q 'failed [1-9]' "$STASIS_STATE_DIR/logs/forker.log"
as_user kill forker >/dev/null

# ---- jobs per user: 3 recorded (lj, low, forker), a fourth is refused
if as_user exec -i fourth -w "$T/w" -- true >"$T/fourth.out" 2>&1; then
	fail "jobs_per_user (a fourth job started)"
else
	check jobs_per_user grep -q "the most this host allows per user" "$T/fourth.out"
fi
sd exec -i rootjob -w / -- sleep 1000 >/dev/null || fail "root is not bounded"
as_user rm low >/dev/null
as_user rm forker >/dev/null

# ---- the job list is the caller's own
check list_own_only test "$(as_user ps --json | $PY -c 'import json, sys
print(" ".join(sorted(j["id"] for j in json.load(sys.stdin))))')" = "lj"

# ---- a log past its bound (128 KiB here) keeps its newest part
as_user exec -i loud -w "$T/w" -- 'yes 0123456789abcdef | head -c 3000000; echo END; exec sleep 1000' \
	>/dev/null || die "exec loud"
log=$STASIS_STATE_DIR/logs/loud.log
# (3000000 bytes of 17-byte lines end mid-line: the last line is "0123456789END".)
trimmed() { [ "$(stat -c %s "$log")" -le 131072 ] && tail -c 4 "$log" | grep -qx END; }
check log_bounded wait_for 20 trimmed
echo "# loud.log: $(stat -c %s "$log") bytes"
check log_keeps_newest sh -c "tail -2 '$log' | head -1 | grep -qx 0123456789abcdef"
check log_api_serves sh -c "setpriv --reuid=$U --regid=$U --init-groups '$STASIS_BUILD/stasis' logs loud | tail -c 4 | grep -qx END"
finish
