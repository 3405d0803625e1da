#!/usr/bin/env bash
# How an ordinary restore fills memory (stasis restore --fill, docs/lazy.md):
# a tree of processes that shared little memory when dumped is filled through
# userfaultfd, held stopped until every page is in, and verifies; --fill criu
# takes CRIU's own path; a tree whose children share their parent's memory
# keeps CRIU's path (and the sharing); a page source that dies before the job
# ran fails the restore with the job not running and its checkpoint intact;
# a user's streamed tree is filled through userfaultfd as its owner; where
# page faults are cheap, auto keeps CRIU's copy.
# Behaviour only, never wall-clock time.
. "$(dirname "$0")/../lib.sh"
. "$REPO/tests/helpers/daemon_lib.sh"
. "$(dirname "$0")/fault_lib.sh"

# Whether auto takes userfaultfd depends on what a page fault costs on the
# host (memshare.h): the daemon is told the dear answer here; the cheap one is
# case 8.
STASIS_FAULT_US=20 daemon_up
stat_of() { # stat_of FILE KEY: a key of the reply's "stats" ("" when absent)
	$PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["stats"].get(sys.argv[2], ""))' "$1" "$2"
}

# A memhog tree: 4 processes, each its own memory.
tree_hog() {
	sd exec -i "$1" -w "$T" "exec $HELPERS/memhog --size $2 --mix mixed --procs 4" >/dev/null ||
		die "exec $1"
	wait_for 60 sh -c "'$STASIS_BUILD/stasis' logs $1 | grep -q '^ready '" || die "$1 not ready"
	track_pid "$(job_pid "$1")"
}

# 1. A tree that shares little: auto picks userfaultfd.
CASE=auto_uffd
tree_hog f1 128M
pid=$(job_pid f1)
sd dump job f1 -d "$T/c1" --json >"$T/d1.json" || die "dump: $(cat "$T/d1.json")"
check dump_measured_tree $PY -c 'import json,sys; t=json.load(open(sys.argv[1]))["stats"]["Tree"]
assert t["Procs"] == 4 and t["AnonKB"] > 100 * 1024, t' "$T/d1.json"
sd restore job f1 --json >"$T/r1.json" || die "restore: $(cat "$T/r1.json")"
check auto_fill_is_uffd test "$(stat_of "$T/r1.json" Fill)" = uffd
check auto_no_lazy_left test "$($PY -c 'import json,sys; print("lazy" in json.load(open(sys.argv[1])))' "$T/r1.json")" = False
check auto_running test "$(job_status f1)" = JOB_RUNNING
check auto_same_pid test "$(job_pid f1)" = "$pid"
check auto_memory_intact verified f1
check auto_log_says grep -q "job f1: memory filled through userfaultfd" "$STASIS_STATE_DIR/stasisd.log"
check auto_dump_again sd dump job f1 -d "$T/c1b" --leave-running

# 2. --fill criu: CRIU's own copy.
CASE=criu
sd kill f1 >/dev/null
wait_for 20 test "$(job_status f1)" != JOB_RUNNING || die "f1 still running"
sd restore job f1 -d "$T/c1" --fill criu --json >"$T/r2.json" || die "restore: $(cat "$T/r2.json")"
check criu_fill_not_uffd test -z "$(stat_of "$T/r2.json" Fill)"
check criu_memory_intact verified f1
out=$(sd restore job f1 --fill bogus 2>&1)
check bad_fill_refused grep -q "fill takes auto, criu or uffd" <<<"$out"
out=$(sd restore job f1 --lazy --fill uffd 2>&1)
check lazy_with_fill_refused grep -q "takes no --fill" <<<"$out"

# 3. Children that share their parent's memory keep CRIU's path and their sharing.
CASE=shared
cat >"$T/share.py" <<'EOF'
import os, signal, sys, time
buf = bytearray(os.urandom(1 << 20) * 96)  # 96 MiB, shared with the children after fork
kids = []
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        while True:
            time.sleep(1)
    kids.append(pid)
print("ready", flush=True)
while True:
    time.sleep(1)
EOF
sd exec -i f2 -w "$T" "exec python3 $T/share.py" >/dev/null || die "exec f2"
wait_for 60 sh -c "'$STASIS_BUILD/stasis' logs f2 | grep -q '^ready'" || die "f2 not ready"
track_pid "$(job_pid f2)"
sd dump job f2 -d "$T/c2" --json >"$T/d2.json" || die "dump f2: $(cat "$T/d2.json")"
check shared_measured $PY -c 'import json,sys; t=json.load(open(sys.argv[1]))["stats"]["Tree"]
assert t["Procs"] == 4 and t["SharedAnonKB"] > 3 * 90 * 1024, t' "$T/d2.json"
sd restore job f2 --json >"$T/r3.json" || die "restore f2: $(cat "$T/r3.json")"
check shared_fill_is_criu test -z "$(stat_of "$T/r3.json" Fill)"
kid=$(pgrep -P "$(job_pid f2)" | head -1)
check shared_still_shared $PY -c 'import sys
kb = sum(int(l.split()[1]) for l in open("/proc/%s/smaps" % sys.argv[1]) if l.startswith("Shared_"))
assert kb > 90 * 1024, kb' "$kid"
sd kill f2 >/dev/null

# 4. The page source fails before the job ran: the restore fails, the job is
# not running, the checkpoint restores again. The lazy-pages daemon is held
# (SIGSTOP) as soon as its socket exists, so it never takes the tree's fds
# (whether or not it said it was ready): the restore gives up on it and fails.
CASE=source_dies
sd kill f1 >/dev/null
wait_for 20 test "$(job_status f1)" != JOB_RUNNING || die "f1 still running"
sock=$STASIS_STATE_DIR/work/f1.restore/lazy-pages.socket
rm -f "$sock"
sd restore job f1 -d "$T/c1" --fill uffd --timeout 5 --json >"$T/r4.json" 2>&1 &
rp=$!
for ((i = 0; i < 3000; i++)); do [ -S "$sock" ] && break; sleep 0.01; done
lp=$(find_proc criu "$T/c1" lazy-pages)
[ -n "$lp" ] || die "no lazy-pages daemon seen"
kill -STOP "$lp"
wait "$rp"
rc=$?
kill -KILL "$lp" 2>/dev/null
check source_dies_restore_fails test "$rc" -ne 0
check source_dies_error_says_unchanged grep -q "checkpoint are unchanged\|killed before it ran" "$T/r4.json"
wait_for 20 test "$(job_status f1)" != JOB_RUNNING
check source_dies_job_not_running test "$(job_status f1)" != JOB_RUNNING
sd restore job f1 -d "$T/c1" --json >"$T/r5.json" || die "restore again: $(cat "$T/r5.json")"
check source_dies_restores_again verified f1

# 5. auto's pick fails (the lazy-pages daemon killed as soon as it listens):
# the restore falls back to CRIU's own copy and succeeds.
CASE=auto_fallback
sd kill f1 >/dev/null
wait_for 20 test "$(job_status f1)" != JOB_RUNNING || die "f1 still running"
rm -f "$sock"
sd restore job f1 -d "$T/c1" --json >"$T/r6.json" 2>&1 &
rp=$!
for ((i = 0; i < 3000; i++)); do [ -S "$sock" ] && break; sleep 0.01; done
lp=$(find_proc criu "$T/c1" lazy-pages)
[ -n "$lp" ] || die "no lazy-pages daemon seen"
kill -KILL "$lp"
wait "$rp"
check fallback_restore_succeeds test $? -eq 0
check fallback_took_criu test -z "$(stat_of "$T/r6.json" Fill)"
check fallback_logged grep -q "job f1: filling its memory through userfaultfd failed; restoring it again" \
	"$STASIS_STATE_DIR/stasisd.log"
check fallback_memory_intact verified f1

# 6. One process that shares nothing: auto picks userfaultfd when it is large
# enough to repay its fixed cost (256 MiB), CRIU's copy when it is small.
CASE=single
hog f4 16M
sd dump job f4 -d "$T/c4" >/dev/null || die "dump f4"
sd restore job f4 --json >"$T/r8.json" || die "restore f4: $(cat "$T/r8.json")"
check small_fill_is_criu test -z "$(stat_of "$T/r8.json" Fill)"
check small_memory_intact verified f4
sd kill f4 >/dev/null
hog f3 300M
sd dump job f3 -d "$T/c3" >/dev/null || die "dump f3"
sd restore job f3 --json >"$T/r7.json" || die "restore f3: $(cat "$T/r7.json")"
check single_fill_is_uffd test "$(stat_of "$T/r7.json" Fill)" = uffd
check single_memory_intact verified f3
sd kill f3 >/dev/null

# 7. A user's tree, streamed, as users type it: auto picks userfaultfd too.
# Root's page server extracts the images; the owner's CRIU reads them
# through an fd, read-only (docs/lazy.md).
CASE=user_streamed
U=stasis_fill_u
make_user $U
as() { runuser -u $U -- env STASIS_SOCKET="$STASIS_SOCKET" "$STASIS_BUILD/stasis" "$@"; }
mkdir -p "$T/u" && chown $U "$T/u"
as exec -i f5 -w "$T/u" "exec $HELPERS/memhog --size 128M --mix mixed --procs 4" >/dev/null ||
	die "exec f5"
wait_for 60 sh -c "'$STASIS_BUILD/stasis' logs f5 | grep -q '^ready '" || die "f5 not ready"
upid=$(job_pid f5)
track_pid "$upid"
as dump job f5 -d "$T/u/ck" --stream 2 >/dev/null || die "dump f5"
wait_for 20 test ! -d "/proc/$upid" || die "pid $upid not freed"
as restore job f5 --stream 2 --json >"$T/r9.json" || die "restore f5: $(cat "$T/r9.json")"
check user_streamed_fill_is_uffd test "$(stat_of "$T/r9.json" Fill)" = uffd
check user_streamed_same_pid test "$(job_pid f5)" = "$upid"
check user_streamed_runs_as_owner test "$(stat -c %U /proc/$upid)" = $U
check user_streamed_memory_intact verified f5
check user_streamed_images_gone test ! -e "$STASIS_STATE_DIR/work/f5.restore.images"
sd kill f5 >/dev/null

# 8. Where page faults are cheap, auto keeps CRIU's own copy for the same
# tree (uffd is still there when asked for); unforced, the daemon probes
# the host and says what it found.
CASE=cheap_faults
daemon_down
STASIS_FAULT_US=1 daemon_up
check cheap_logged grep -q "costs 1.00 us to fault in here (forced: STASIS_FAULT_US): --fill auto keeps CRIU's own copy" \
	"$STASIS_STATE_DIR/stasisd.log"
check cheap_in_check sh -c "'$STASIS_BUILD/stasis' check | grep -q '^ok       faults: a fresh page costs 1.00 us'"
tree_hog f6 128M
pid=$(job_pid f6)
sd dump job f6 -d "$T/c6" >/dev/null || die "dump f6"
sd restore job f6 --json >"$T/r10.json" || die "restore f6: $(cat "$T/r10.json")"
check cheap_auto_is_criu test -z "$(stat_of "$T/r10.json" Fill)"
check cheap_memory_intact verified f6
sd kill f6 >/dev/null
wait_for 20 test ! -d "/proc/$pid" || die "pid $pid not freed"
sd restore job f6 --fill uffd --json >"$T/r11.json" || die "restore f6: $(cat "$T/r11.json")"
check cheap_uffd_when_asked test "$(stat_of "$T/r11.json" Fill)" = uffd
check cheap_uffd_memory_intact verified f6
sd kill f6 >/dev/null
daemon_down
daemon_up
check probed_logged grep -E -q "a fresh page costs [0-9.]+ us to fault in here: --fill auto" \
	"$STASIS_STATE_DIR/stasisd.log"

finish
