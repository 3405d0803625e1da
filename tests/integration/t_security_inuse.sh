#!/usr/bin/env bash
# Finding 1 of the security review (docs/security.md): the "in use" check
# compared /proc/*/fd links as path strings, so a writer on ck/pages-1.img
# went unseen once a parent directory was swapped for a symlink, and could
# rewrite the images between the digest and CRIU's read. Now a checkpoint is
# frozen before it is verified: immutable, and proven by inode to have no
# writer left (a read lease, which the kernel refuses while any open file
# description has write access, even one in flight in a UNIX socket).
# At dump time, a file planted with a writer kept on it is removed before CRIU
# writes, so the writer holds a dead inode.
. "$(dirname "$0")/../lib.sh"
. "$REPO/tests/helpers/daemon_lib.sh"

U=stasis_iu
make_user $U
uid=$(id -u $U)
as() { runuser -u $U -- env STASIS_SOCKET="$STASIS_SOCKET" "$STASIS_BUILD/stasis" "$@"; }
au() { runuser -u $U -- "$@"; }
mkdir -p "$T/a"
chown $U: "$T/a"
chmod 0700 "$T/a"
daemon_up

# hold MODE FILE [inflight]: as U, keep FILE open (O_RDWR) in the background;
# "inflight": pass the fd through a socketpair and close every copy but the one
# queued in the socket (no /proc/*/fd shows it). Prints the holder's PID.
hold() {
	# setpriv execs: $! is the holder itself.
	setpriv --reuid=$U --regid=$U --init-groups $PY - "$1" "${2:-}" >/dev/null 2>&1 <<'PYEOF' &
import os, socket, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
if sys.argv[2] == "inflight":
    a, b = socket.socketpair()
    socket.send_fds(a, [b"x"], [fd])
    os.close(fd)
time.sleep(120)
PYEOF
	echo $!
}
start_job() {
	as exec -i "$1" -w "$T/a" "exec $PY $WORKLOADS/daemon_counter.py" >/dev/null || die "exec $1"
	track_pid "$(job_pid "$1")"
	wait_for 10 counted_past "$1" 3 || die "$1 not counting"
}
no_marks() { ! lsattr -R "$1" 2>/dev/null | grep -q -- '^----i'; }

# ---- Restore: a writer kept on pages-1.img, with and without the parent swap.
CASE=restore
for how in plain inflight swap; do
	job=r$how
	au mkdir -p "$T/a/sub"
	start_job $job
	as dump job $job -d "$T/a/sub/ck" >/dev/null || die "dump $job"
	hp=$(hold "$T/a/sub/ck/pages-1.img" "$([ $how = inflight ] && echo inflight)")
	track_pid "$hp"
	sleep 1
	if [ $how = swap ]; then
		au mv "$T/a/sub" "$T/a/sub2"
		au ln -s "$T/a/sub2" "$T/a/sub"
	fi
	out=$(as restore job $job 2>&1)
	rc=$?
	echo "# $how: exit $rc: $out"
	check ${how}_refused test $rc -ne 0
	case $how in
	swap) check ${how}_says_moved grep -q "no longer the directory" <<<"$out" ;;
	*) check ${how}_says_in_use grep -q "in use" <<<"$out" ;;
	esac
	real=$T/a/sub/ck
	[ $how = swap ] && real=$T/a/sub2/ck
	check ${how}_dir_still_owners test "$(stat -c %u "$real")" = "$uid"
	check ${how}_no_immutable_left no_marks "$real"
	check ${how}_job_not_running test "$(job_status $job)" != JOB_RUNNING
	kill "$hp" 2>/dev/null
	wait "$hp" 2>/dev/null
	if [ $how != swap ]; then
		# With the writer gone, the same checkpoint restores.
		out=$(as restore job $job 2>&1)
		check ${how}_restores_once_released test $? -eq 0
		echo "# $how after release: $out"
		track_pid "$(job_pid $job)"
		as kill $job >/dev/null 2>&1
	fi
	au rm -rf "$T/a/sub" "$T/a/sub2"
done

# ---- Dump: a planted core-PID.img with a writer on it.
CASE=dump
start_job d
pid=$(job_pid d)
au mkdir "$T/a/dck"
au sh -c "echo planted >'$T/a/dck/core-$pid.img'"
hp=$(hold "$T/a/dck/core-$pid.img")
track_pid "$hp"
sleep 1
out=$(as dump job d -d "$T/a/dck" 2>&1)
check dump_ok test $? -eq 0
sum=$(sha256sum "$T/a/dck/core-$pid.img" | cut -d' ' -f1)
# The holder's fd is on the planted inode, which the dump removed: not the image.
check dump_writer_holds_other_inode test "$(stat -L -c %i /proc/$hp/fd/3 2>/dev/null)" != "$(stat -c %i "$T/a/dck/core-$pid.img")"
check dump_image_is_criu_s sh -c "! grep -q planted '$T/a/dck/core-$pid.img'"
kill "$hp" 2>/dev/null
out=$(as restore job d 2>&1)
check dump_restores test $? -eq 0
track_pid "$(job_pid d)"
n=$(last_count d)
check dump_counts_on wait_for 10 counted_past d "$n"
check dump_image_unchanged test "$sum" = "$(sha256sum "$T/a/dck/core-$pid.img" | cut -d' ' -f1)"
finish
