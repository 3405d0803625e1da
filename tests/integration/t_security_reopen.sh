#!/usr/bin/env bash
# Findings 2 and 3 of the security review (docs/security.md): the daemon found
# a checkpoint directory again by its recorded path.
#  3. A restore reopened the recorded path: with a parent pointed at another
#     checkpoint, that directory was locked, failed its digest and was handed
#     to the user. Root's streamed checkpoints, with no digest, would have been
#     served as root from whatever the path led to.
#  2. Recovery after a daemon restart chowned whatever the recorded path led
#     to: a user stops their own CRIU mid-dump, swaps a parent for a symlink to
#     a root directory, and waits for a restart.
# Now a recorded directory is reopened only without a symlink on its path and
# only if it is the very directory recorded (device, inode); anything else is
# refused and left as it is.
. "$(dirname "$0")/../lib.sh"
. "$REPO/tests/helpers/daemon_lib.sh"

U=stasis_rp
make_user $U
uid=$(id -u $U)
as() { runuser -u $U -- env STASIS_SOCKET="$STASIS_SOCKET" "$STASIS_BUILD/stasis" "$@"; }
au() { runuser -u $U -- "$@"; }
asu() { setpriv --reuid=$U --regid=$U --init-groups "$@"; }
mkdir -p "$T/a" "$T/rootck"
chown $U: "$T/a"
chmod 0700 "$T/a"
chmod 0755 "$T/rootck"
start_job() { # ID USER-OR-root [ARGS]
	local id=$1 who=$2
	if [ "$who" = root ]; then
		sd exec -i "$id" -w / "exec $PY $WORKLOADS/daemon_counter.py" >/dev/null || die "exec $id"
	else
		as exec -i "$id" -w "$T/a" "exec $PY $WORKLOADS/daemon_counter.py" >/dev/null || die "exec $id"
	fi
	track_pid "$(job_pid "$id")"
	wait_for 10 counted_past "$id" 3 || die "$id not counting"
}
owner_mode() { stat -c %u:%a "$1"; }
daemon_up

# ---- 3a. A parent of the user's recorded checkpoint pointed at root's checkpoint.
CASE=restore_swap
start_job rj root
sd dump job rj -d "$T/rootck/x/ck" --leave-running >/dev/null 2>&1 ||
	{ mkdir -p "$T/rootck/x"; sd dump job rj -d "$T/rootck/x/ck" --leave-running >/dev/null; } ||
	die "root dump"
rootstate=$(owner_mode "$T/rootck/x/ck")
start_job aj $U
au mkdir -p "$T/a/p"
as dump job aj -d "$T/a/p/ck" >/dev/null || die "dump aj"
au mv "$T/a/p" "$T/a/p.real"
au ln -s "$T/rootck/x" "$T/a/p"
out=$(as restore job aj 2>&1)
rc=$?
echo "# restore through swapped parent: exit $rc: $out"
check swap_refused test $rc -ne 0
check swap_says_why grep -q "no longer the directory" <<<"$out"
check swap_root_dir_untouched test "$(owner_mode "$T/rootck/x/ck")" = "$rootstate"
check swap_root_files_root sh -c "! find '$T/rootck/x/ck' ! -uid 0 | grep -q ."
# A directory of the user's own put in its place is refused too (another inode).
au rm "$T/a/p"
au cp -a "$T/a/p.real" "$T/a/p"
out=$(as restore job aj 2>&1)
check copy_refused test $? -ne 0
check copy_says_why grep -q "no longer the directory" <<<"$out"
au rm -rf "$T/a/p"
au mv "$T/a/p.real" "$T/a/p"
out=$(as restore job aj 2>&1)
check genuine_restores test $? -eq 0
track_pid "$(job_pid aj)"
as kill aj >/dev/null 2>&1

# ---- 3b. Root's streamed checkpoint (no digest) in a directory under the user's.
CASE=root_streamed
sd kill rj >/dev/null 2>&1
sleep 0.5
start_job rs root
au mkdir "$T/a/forroot"
sd dump job rs -d "$T/a/forroot/ck" --stream 2 >/dev/null || die "root streamed dump"
# The user cannot write root's directory, but renames it away and plants their own.
start_job fake $U
as dump job fake -d "$T/a/fakeck" --stream 2 >/dev/null || die "fake dump"
au mv "$T/a/forroot/ck" "$T/a/forroot/ck.root"
au mv "$T/a/fakeck" "$T/a/forroot/ck"
out=$(sd restore job rs 2>&1)
rc=$?
echo "# root restore of a planted dir: exit $rc: $out"
check root_planted_refused test $rc -ne 0
check root_planted_says_why grep -q "no longer the directory" <<<"$out"
check root_planted_not_root_owned test "$(stat -c %u "$T/a/forroot/ck")" = "$uid"

# ---- 2. Recovery after a restart, with the user's CRIU stopped mid-dump.
CASE=recovery
mkdir -p "$T/rootck/victim"
chmod 0700 "$T/rootck/victim"
echo secret >"$T/rootck/victim/file"
as exec -i big -w "$T/a" "exec $PY -c 'import time,sys
b = bytearray(800 << 20)
for i in range(0, len(b), 4096): b[i] = 1
i = 0
while True:
    i += 1; print(i, flush=True); time.sleep(0.1)'" >/dev/null || die "exec big"
track_pid "$(job_pid big)"
wait_for 20 counted_past big 2 || die "big not counting"
au mkdir -p "$T/a/q"
as dump job big -d "$T/a/q/victim" >"$T/dump.out" 2>&1 &
dump_cli=$!
# Bounded in time, not in tries: on a loaded machine each look is slow.
user_criu() { criu=$(pgrep -u $uid -x criu | head -1); [ -n "$criu" ]; }
criu=
wait_for 60 user_criu || die "never saw the user's CRIU"
asu kill -STOP "$criu" || die "the user cannot stop their CRIU"
au mv "$T/a/q" "$T/a/q.real"
au ln -s "$T/rootck" "$T/a/q"
kill -9 "$DAEMON_PID"
wait $dump_cli 2>/dev/null
daemon_up
asu kill -CONT "$criu"
wait_for 60 sh -c "[ ! -d /proc/$criu ]" || die "CRIU did not finish"
wait_for 30 grep -q "nothing there is changed\|recorded checkpoint\|goes on" "$STASIS_STATE_DIR/stasisd.log"
sleep 1
check recovery_root_dir_untouched test "$(owner_mode "$T/rootck/victim")" = "0:700"
check recovery_root_file_untouched test "$(stat -c %u "$T/rootck/victim/file")" = 0
check recovery_logged grep -q "is not the directory the interrupted dump worked in" "$STASIS_STATE_DIR/stasisd.log"
finish
