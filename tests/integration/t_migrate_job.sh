#!/usr/bin/env bash
# Migration between two hosts (tests/netns-hosts.sh): a counting job and a
# ~1 GiB job move from a to b and keep running there with their PID, their
# memory and their log; the source shows them as migrated. Also push of an
# existing checkpoint, restored later on the target.
. "$(dirname "$0")/../lib.sh"
. "$TESTS_DIR/netns-hosts.sh"

# Who may migrate (docs/migration.md): root, and stasis-mig (user_job below),
# whose jobs land as the same uid.
printf 'send stasis-mig to *\nreceive 0 as root\nreceive * as same\n' >"$T/migrate.conf"
export STASIS_MIGRATE_CONF=$T/migrate.conf
migration_pair

last_count() { host_stasis "$1" logs "$2" 2>/dev/null | grep -E '^[0-9]+$' | tail -1; }
count_grows() { local n; n=$(last_count "$1" "$2"); [ -n "$n" ] && [ "$n" -gt "$3" ]; }
no_leftovers() {
	[ -z "$(ls -A "$T/hosts/a/lib/migrate")" ] &&
		[ -z "$(ls -A "$T/hosts/b/lib/received" | grep '^\.incoming-')" ]
}

# ---- a counting job
CASE=migrate_counter
host_stasis a exec --id cnt -w "$T/work" -- $PY -c '
import time
n = 0
while True:
    n += 1
    print(n, flush=True)
    time.sleep(0.05)' >/dev/null || die "exec"
wait_for 10 count_grows a cnt 5 || die "counter did not start"
pid=$(job_pid a cnt)
if host_stasis a migrate job cnt --to "$TARGET" --stream 3 --token-file "$T/token" \
	>"$T/m1.out" 2>&1; then
	cat "$T/m1.out"
	before=$(grep -E '^[0-9]+$' "$T/hosts/b/lib/logs/cnt.log" | tail -1)
	check migrate_counter_running_on_target test "$(job_status b cnt)" = JOB_RUNNING
	check migrate_counter_keeps_pid test "$(job_pid b cnt)" = "$pid"
	check migrate_counter_counts_on wait_for 10 count_grows b cnt "$before"
	check migrate_counter_migrated_on_source test "$(job_status a cnt)" = JOB_MIGRATED
	check migrate_counter_gone_from_source host_exec a sh -c "! kill -0 $pid 2>/dev/null"
	# The log travelled: the target's copy starts with the source's first lines.
	check migrate_counter_log_travelled sh -c "head -1 '$T/hosts/b/lib/logs/cnt.log' | grep -qx 1"
	check migrate_counter_no_leftovers no_leftovers
	# And back. Without a PID namespace of its own the job needs its PID on
	# a again, which any process of a may hold meanwhile: while one does, the
	# way back is refused, clearly, and the job runs on at b.
	took=
	host_take_pid a "$pid" && took=1
	[ -n "$took" ] || host_pid_holder a "$pid" | grep -q . || die "cannot take pid $pid on a"
	n=$(last_count b cnt)
	if host_stasis b migrate job cnt --to "$SOURCE" --token-file "$T/token" >"$T/mb.out" 2>&1
	then
		fail "migrate_back_pid_taken (migrated: $(cat "$T/mb.out"))"
	else
		check migrate_back_pid_taken grep -q "PID $pid is taken" "$T/mb.out"
		check migrate_back_refused_runs_on_b wait_for 10 count_grows b cnt "$n"
	fi
	# Once it is free there, back it goes with that PID: the record it left on
	# a is replaced by the returning job.
	[ -n "$took" ] && host_exec a kill -KILL "$pid"
	if ! wait_for 20 host_pid_free a "$pid"; then
		fail "migrate_back (PID $pid stays held on a: $(host_pid_holder a "$pid"))"
	elif n=$(last_count b cnt) && host_stasis b migrate job cnt --to "$SOURCE" \
		--token-file "$T/token" >"$T/mb.out" 2>&1; then
		check migrate_back_running_on_a test "$(job_status a cnt)" = JOB_RUNNING
		check migrate_back_keeps_pid test "$(job_pid a cnt)" = "$pid"
		check migrate_back_counts_on wait_for 10 count_grows a cnt "$n"
		check migrate_back_migrated_on_b test "$(job_status b cnt)" = JOB_MIGRATED
	else
		cat "$T/mb.out"
		fail migrate_back
	fi
else
	cat "$T/m1.out"
	fail $CASE
fi

# ---- a ~1 GiB job: memory verified after the move; timings reported
CASE=migrate_1g
# exec: memhog itself is the job's process, so USR1 reaches it.
host_stasis a exec --id big -w "$T/work" -- "exec $HELPERS/memhog --size 1G --mix mixed" \
	>/dev/null || die "exec big"
big_ready() { host_stasis a logs big 2>/dev/null | grep -q '^ready '; }
wait_for 120 big_ready || die "1 GiB job did not get ready"
sum=$(host_stasis a logs big | awk '/^ready / { print $2; exit }')
pid=$(job_pid a big)
# The shards in the source's capture window, sampled during the migration:
# they must never hold the whole checkpoint (sent bytes are punched out, the
# capture is paused while 64 MiB wait to be sent). The whole checkpoint is
# ~570 MiB; the bound leaves room for disk writeback lag on a loaded machine.
(while :; do du -ck "$T"/hosts/a/lib/migrate/*/img-* 2>/dev/null | tail -1 | awk '{ print $1 }'
	sleep 0.05; done) >"$T/window.kib" &
sampler=$!
track_pid $sampler
if host_stasis a migrate job big --to "$TARGET" --stream 2 --token-file "$T/token" --json \
	>"$T/m2.json" 2>&1; then
	kill $sampler
	window=$(sort -n "$T/window.kib" | tail -1)
	echo "# 1 GiB migration: $(tr -d '\n ' <"$T/m2.json")"
	echo "# most shard bytes held on the source's disk at once: $((window / 1024)) MiB"
	check migrate_1g_window_bounded test "$window" -lt $((320 * 1024))
	check migrate_1g_running_on_target test "$(job_status b big)" = JOB_RUNNING
	check migrate_1g_keeps_pid test "$(job_pid b big)" = "$pid"
	host_stasis b kill big --signal USR1 >/dev/null
	verified() { grep -q "^verify $sum ok" "$T/hosts/b/lib/logs/big.log"; }
	check migrate_1g_memory_verified wait_for 30 verified
	check migrate_1g_migrated_on_source test "$(job_status a big)" = JOB_MIGRATED
	check migrate_1g_no_leftovers no_leftovers
else
	cat "$T/m2.json"
	fail $CASE
fi
host_stasis b kill big --signal KILL >/dev/null 2>&1

# ---- a process tree: every process keeps its PID and its memory
CASE=migrate_tree
host_stasis a exec --id tree -w "$T/work" -- "exec $HELPERS/memhog --size 96M --procs 3" \
	>/dev/null || die "exec tree"
tree_ready() { grep -q '^ready ' "$T/hosts/a/lib/logs/tree.log" 2>/dev/null; }
wait_for 60 tree_ready || die "tree did not get ready"
tsum=$(awk '/^ready / { print $2; exit }' "$T/hosts/a/lib/logs/tree.log")
tpid=$(job_pid a tree)
# Child PIDs, sorted: the order of a children list is not part of a process.
children() { host_exec "$1" cat /proc/$tpid/task/$tpid/children | tr ' ' '\n' | sort -n | xargs; }
kids=$(children a)
if host_stasis a migrate job tree --to "$TARGET" --token-file "$T/token" >"$T/mt.out" 2>&1; then
	check migrate_tree_running_on_target test "$(job_status b tree)" = JOB_RUNNING
	echo "# tree: children $kids on a, $(children b) on b"
	check migrate_tree_children_kept_pids test "$(children b)" = "$kids"
	host_stasis b kill tree --signal USR1 >/dev/null
	tree_verified() { grep -q "^verify $tsum ok" "$T/hosts/b/lib/logs/tree.log"; }
	check migrate_tree_memory_verified wait_for 30 tree_verified
	check migrate_tree_gone_from_source host_exec a sh -c "! kill -0 $tpid 2>/dev/null"
else
	cat "$T/mt.out"
	fail $CASE
fi
host_stasis b kill tree --signal KILL >/dev/null 2>&1

# ---- push an existing checkpoint; restore it on the target later
CASE=push_then_restore
host_stasis a exec --id pushed -w "$T/work" -- $PY -c '
import time
n = 0
while True:
    n += 1
    print(n, flush=True)
    time.sleep(0.05)' >/dev/null || die "exec pushed"
wait_for 10 count_grows a pushed 5 || die "pushed job did not start"
mkdir -p "$T/ck"
if host_stasis a dump job pushed -d "$T/ck" --stream 2 >/dev/null &&
	host_stasis a push "$T/ck" --to "$TARGET" --token-file "$T/token" >"$T/p.out" 2>&1; then
	cat "$T/p.out"
	check push_recorded_killed test "$(job_status b pushed)" = JOB_KILLED
	n=$(grep -E '^[0-9]+$' "$T/hosts/b/lib/logs/pushed.log" | tail -1)
	if host_stasis b restore job pushed >/dev/null; then
		check push_restored_running test "$(job_status b pushed)" = JOB_RUNNING
		check push_restored_counts wait_for 10 count_grows b pushed "$n"
	else
		fail push_restore
	fi
else
	cat "$T/p.out"
	fail $CASE
fi

# ---- a job of an unprivileged user: migrated, and pushed then restored by
# its owner (the target fingerprints the files it hands to the owner)
CASE=user_job
make_user stasis-mig
uid=$(id -u stasis-mig)
gid=$(id -g stasis-mig)
at_exit userdel stasis-mig
install -m 600 -o "$uid" "$T/token" "$T/utoken"
as_user() {
	local h=$1
	shift
	host_exec "$h" setpriv --reuid="$uid" --regid="$gid" --clear-groups \
		env STASIS_SOCKET=/run/stasis/stasisd.sock "$STASIS_BUILD/stasis" "$@"
}
as_user a exec --id ujob -w "$T/work" -- "exec $HELPERS/memhog --size 32M" >/dev/null &&
	as_user a exec --id upush -w "$T/work" -- "exec $HELPERS/memhog --size 32M" >/dev/null ||
	die "user exec"
uready() { grep -q '^tick ' "$T/hosts/a/lib/logs/$1.log" 2>/dev/null; }
wait_for 30 uready ujob && wait_for 30 uready upush || die "user jobs did not start"
if as_user a migrate job ujob --to "$TARGET" --token-file "$T/utoken" >"$T/u1.out" 2>&1; then
	check user_job_running_on_target test "$(job_status b ujob)" = JOB_RUNNING
	check user_job_owned_by_user host_exec b sh -c \
		"[ \$(stat -c %u /proc/$(job_pid b ujob)) = $uid ]"
else
	cat "$T/u1.out"
	fail user_job_migrate
fi
mkdir -p "$T/uck"
chown "$uid" "$T/uck"
if as_user a dump job upush -d "$T/uck" --stream 2 >/dev/null &&
	as_user a push "$T/uck" --to "$TARGET" --token-file "$T/utoken" >"$T/u2.out" 2>&1 &&
	as_user b restore job upush >"$T/u3.out" 2>&1; then
	check user_push_restored_by_owner test "$(job_status b upush)" = JOB_RUNNING
else
	cat "$T/u2.out" "$T/u3.out" 2>/dev/null
	fail user_push_restore
fi
finish
