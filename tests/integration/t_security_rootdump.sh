#!/usr/bin/env bash
# Finding 10 of the security review (docs/security.md): root dumping its own
# job into a user's directory scanned it, then chowned it without a second
# scan; a dump.log symlink planted in between was followed by root's CRIU.
# Now every dump first takes the directory (root's, 0700), then empties it of
# anything a checkpoint may hold, then checks it: a name planted at any moment
# is gone before CRIU writes. The user plants symlinks in a tight loop while
# root dumps into the directory, repeatedly.
. "$(dirname "$0")/../lib.sh"
. "$REPO/tests/helpers/daemon_lib.sh"

U=stasis_rd
make_user $U
mkdir -p "$T/a"
chown $U: "$T/a"
chmod 0755 "$T/a"
printf 'SECRET\n' >"$T/rootsecret"
chmod 0600 "$T/rootsecret"
daemon_up
sd exec -i rj -w / "exec $PY $WORKLOADS/daemon_counter.py" >/dev/null || die "exec rj"
track_pid "$(job_pid rj)"
wait_for 10 counted_past rj 3 || die "rj not counting"
runuser -u $U -- mkdir "$T/a/rd"

# The planter: as the user, over and over, dump.log (and stats-dump, the
# streamer's log) as symlinks to root's secret, all removed again at once
# so that some dumps pass the first scan with a link planted right after it.
setpriv --reuid=$U --regid=$U --init-groups bash -c "
while :; do
	for f in dump.log stats-dump streamer-capture.log; do
		ln -sfn '$T/rootsecret' '$T/a/rd/'\$f 2>/dev/null
	done
	rm -f '$T/a/rd/dump.log' '$T/a/rd/stats-dump' '$T/a/rd/streamer-capture.log' 2>/dev/null
done" &
planter=$!
track_pid $planter
done=0
for i in $(seq 1 40); do
	args=(--leave-running --force)
	[ $((i % 2)) = 0 ] && args+=(--stream 2)
	out=$(sd dump job rj -d "$T/a/rd" "${args[@]}" 2>&1) && done=$((done + 1))
	echo "# dump $i: $out"
	[ $done -ge 1 ] && [ "$(stat -c %u "$T/a/rd")" = 0 ] && break
done
kill $planter
wait $planter 2>/dev/null
check secret_unchanged test "$(cat "$T/rootsecret")" = SECRET
check secret_still_root_0600 test "$(stat -c %u:%a "$T/rootsecret")" = 0:600
check no_symlink_in_checkpoint sh -c "! find '$T/a/rd' -type l | grep -q ."
check a_dump_got_through test $done -ge 1
check dir_root_s_now test "$(stat -c %u:%a "$T/a/rd")" = 0:700
check job_still_running test "$(job_status rj)" = JOB_RUNNING
finish
