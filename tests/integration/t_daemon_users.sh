#!/usr/bin/env bash
# Two users against one root daemon: jobs run with the caller's uid, gid and
# groups; user B can neither see nor touch user A's job; checkpoint files
# belong to the job's owner with modes 0700/0600; paths are checked as the
# caller.
. "$(dirname "$0")/../lib.sh"
. "$REPO/tests/helpers/daemon_lib.sh"

UA=stasis_ua
UB=stasis_ub
getent group stasis_gx >/dev/null || groupadd stasis_gx
make_user $UA
make_user $UB
usermod -aG stasis_gx $UA
as() { local u=$1; shift; runuser -u "$u" -- env STASIS_SOCKET="$STASIS_SOCKET" "$STASIS_BUILD/stasis" "$@"; }
mkdir -p "$T/a" "$T/b"
chown $UA: "$T/a"
chown $UB: "$T/b"
chmod 0700 "$T/a" "$T/b"
daemon_up

CASE=exec_as_user
as $UA exec -i ajob -w "$T/a" "exec $PY $WORKLOADS/daemon_counter.py" >/dev/null || die "exec as A"
pid=$(job_pid ajob)
wait_for 10 counted_past ajob 5 || die "A's job does not count"
uid_a=$(id -u $UA)
gid_a=$(id -g $UA)
gx=$(getent group stasis_gx | cut -d: -f3)
check job_uid grep -Eq "^Uid:\s+$uid_a\s+$uid_a\s+$uid_a\s+$uid_a$" /proc/$pid/status
check job_gid grep -Eq "^Gid:\s+$gid_a\s+$gid_a\s+$gid_a\s+$gid_a$" /proc/$pid/status
check job_groups grep -Eq "^Groups:.*\b$gx\b" /proc/$pid/status
check job_cwd test "$(readlink /proc/$pid/cwd)" = "$T/a"
check job_session_leader test "$(ps -o sid= -p $pid | tr -d ' ')" = "$pid"
check job_stdin_devnull test "$(readlink /proc/$pid/fd/0)" = /dev/null
log=$STASIS_STATE_DIR/logs/ajob.log
check job_log_owner test "$(stat -c '%U %a' "$log")" = "$UA 600"
flags=$(awk '/^flags:/{print $2}' /proc/$pid/fdinfo/1)
check job_log_append test $((flags & 02000)) -ne 0

# B sees nothing of A's and can do nothing to it.
check b_ps_empty test -z "$(as $UB ps | awk 'NR>1')"
check b_ps_json_empty test "$(as $UB ps --json | tr -d ' \n')" = "[]"
for op in "dump job ajob -d $T/b/ck" "restore job ajob" "kill ajob" "logs ajob" "rm --force ajob" \
	"checkpoints ajob"; do
	name=b_cannot_${op%% *}
	out=$(as $UB $op 2>&1)
	check "$name" test $? -ne 0
	check "${name}_says_no_such_job" grep -q "no such job: ajob" <<<"$out"
done
check a_still_running test "$(job_status ajob)" = JOB_RUNNING
check root_sees_a test "$(sd ps | awk '$1=="ajob"{print $4}')" = JOB_RUNNING

# Paths are checked as the caller.
out=$(as $UA exec -i bad -w /root "true" 2>&1)
check a_exec_unenterable_dir test $? -ne 0
check a_exec_unenterable_says grep -q "cannot enter working directory /root" <<<"$out"
out=$(as $UA exec -i bad -w "$T/nope" "true" 2>&1)
check a_exec_missing_dir test $? -ne 0
check a_exec_nothing_started test -z "$(job_status bad)"
out=$(as $UA dump job ajob -d /etc/stasis-evil 2>&1)
check a_dump_unwritable_refused test $? -ne 0 -a ! -e /etc/stasis-evil
out=$(as $UA dump job ajob -d "$T/b/x" 2>&1)
check a_dump_into_b_refused test $? -ne 0 -a ! -e "$T/b/x"
ln -s /etc "$T/a/link"
chown -h $UA: "$T/a/link"
out=$(as $UA dump job ajob -d "$T/a/link" 2>&1)
check a_dump_symlink_refused grep -q "symbolic link" <<<"$out"
out=$(as $UA dump job ajob -d /tmp 2>&1)
check a_dump_shared_dir_refused grep -q "not to you" <<<"$out"
check a_still_running_after_refusals test "$(job_status ajob)" = JOB_RUNNING

# A dumps and restores its own job: files are A's, private.
for mode in plain stream; do
	dir=$T/a/ck-$mode
	args=()
	[ $mode = stream ] && args=(--stream 4)
	check a_dump_$mode as $UA dump job ajob -d "$dir" "${args[@]}"
	check a_dir_mode_$mode test "$(stat -c '%U %a' "$dir")" = "$UA 700"
	check a_files_owner_mode_$mode test -z "$(find "$dir" -type f ! \( -user $UA -perm 0600 \))"
	check a_restore_$mode as $UA restore job ajob
	check a_running_as_a_$mode grep -Eq "^Uid:\s+$uid_a\s" /proc/$pid/status
done
check a_counts_in_order counts_in_order ajob

# Root dumps A's job into a new directory: it still belongs to A.
check root_dump_a sd dump job ajob -d "$T/rootck"
check root_dump_owner test "$(stat -c '%U %a' "$T/rootck")" = "$UA 700"
check root_dump_files_owner test -z "$(find "$T/rootck" -type f ! -user $UA)"
check root_restore_a sd restore job ajob

# A cannot restore images stasisd did not record.
sd dump job ajob -d "$T/a/ck-copy-src" --leave-running >/dev/null
mkdir "$T/a/forged"
cp -a "$T/a/ck-copy-src/." "$T/a/forged/"
chown -R $UA: "$T/a/forged"
sd kill ajob >/dev/null
wait_for 10 sh -c "! kill -0 $pid 2>/dev/null"
out=$(as $UA restore job ajob -d "$T/a/forged" 2>&1)
check a_unrecorded_restore_refused grep -q "not a checkpoint that stasisd recorded" <<<"$out"
check a_recorded_restore_ok as $UA restore job ajob -d "$T/a/ck-copy-src"

# A edits its recorded checkpoint (root restores images: a forged one would
# hand out root): refused, for A and for root, until the files are as dumped.
check a_dump_for_tamper as $UA dump job ajob -d "$T/a/tamper"
img=$(ls "$T/a/tamper"/core-*.img | head -1)
cp "$img" "$T/core.save"
runuser -u $UA -- $PY -c "
import sys
f = open(sys.argv[1], 'r+b'); f.seek(10); b = f.read(1); f.seek(10); f.write(bytes([b[0] ^ 1]))" "$img"
refused() { local out; out=$("$@" 2>&1) && return 1; grep -q "does not match what was dumped" <<<"$out"; }
check a_tampered_refused refused as $UA restore job ajob
check root_tampered_refused refused sd restore job ajob
check tampered_job_untouched test "$(job_status ajob)" = JOB_KILLED
check tampered_dir_given_back test "$(stat -c %U "$T/a/tamper")" = $UA
cp "$T/core.save" "$img"
runuser -u $UA -- ln "$img" "$T/a/hardlink" 2>/dev/null
out=$(as $UA restore job ajob 2>&1)
check a_hardlinked_refused grep -q "hard link" <<<"$out"
rm -f "$T/a/hardlink"
check a_untampered_restores as $UA restore job ajob
as $UA kill ajob >/dev/null
check a_rm as $UA rm ajob
finish
