#!/usr/bin/env bash
# A job in its own PID namespace (exec --pid-ns) migrates to a host where its
# host PID is taken, and back to its first host where its old PID is taken
# too: it keeps running, its memory verifies, its log goes on. A job without
# its own namespace, to the same busy host, is refused with the PID-taken error
# and runs on at the source.
. "$(dirname "$0")/../lib.sh"
. "$TESTS_DIR/netns-hosts.sh"

migration_pair
field() { host_stasis "$1" ps --json 2>/dev/null | $PY -c 'import json,sys
for j in json.load(sys.stdin):
    if j["id"] == sys.argv[1]: print(j.get(sys.argv[2]))' "$2" "$3"; }
log_of() { cat "$T/hosts/$1/lib/logs/$2.log" 2>/dev/null; }
ticks() { log_of "$1" "$2" | grep -c '^tick '; }
ticking() { local n; n=$(ticks "$1" "$2"); sleep 0.4; [ "$(ticks "$1" "$2")" -gt "$n" ]; }
verified_on() {
	local h=$1 id=$2 n
	n=$(log_of "$h" "$id" | grep -c '^verify ' || true)
	host_exec "$h" kill -USR1 "$(field "$h" "$id" pid)" || return 1
	wait_for 30 sh -c "[ \$(grep -c '^verify ' '$T/hosts/$h/lib/logs/$id.log') -gt $n ]" ||
		return 1
	log_of "$h" "$id" | grep '^verify ' | tail -1 | grep -q ' ok$'
}
migrate() { host_stasis "$1" migrate job "$2" --to "$3" --token-file "$T/token" 2>&1; }
# names_mount HOST ID MP: HOST's latest checkpoint of ID named mount point MP for CRIU.
names_mount() { host_stasis "$1" checkpoints --json "$2" 2>/dev/null | $PY -c 'import json,sys
print("mnt:" + sys.argv[1] in json.load(sys.stdin)[-1]["criu_opts"])' "$3" | grep -qx True; }
# quiet HOST ID: ID's log on HOST no longer grows (the job writes elsewhere now).
quiet() { local n; n=$(ticks "$1" "$2"); sleep 1; [ "$(ticks "$1" "$2")" = "$n" ]; }

host_stasis a exec --id pj -w "$T/work" --pid-ns -- "exec $HELPERS/memhog --size 32M" \
	>/dev/null || die "exec"
wait_for 30 sh -c "grep -q '^ready ' '$T/hosts/a/lib/logs/pj.log' 2>/dev/null" || die "not ready"
apid=$(field a pj pid)
host_take_pid b "$apid" || die "cannot take pid $apid on b"

CASE=pidns_migrate_to_busy_host
if out=$(migrate a pj "$TARGET"); then
	ok $CASE
	bpid=$(field b pj pid)
	check pidns_migrate_running_on_b test "$(field b pj status)" = JOB_RUNNING
	check pidns_migrate_other_host_pid test "$bpid" != "$apid"
	check pidns_migrate_ns_pid_1 test "$(field b pj ns_pid)" = 1
	check pidns_migrate_still_pid_ns test "$(field b pj pid_ns)" = True
	check pidns_migrate_verifies verified_on b pj
	check pidns_migrate_ticks wait_for 10 ticking b pj
	# Each host has its own /var/lib/stasis (a bind of another directory): the
	# job's mount there is named by its mount point, not by where it came from.
	check pidns_migrate_names_mount names_mount b pj /var/lib/stasis
	check pidns_migrate_source_log_quiet quiet a pj
	check pidns_migrate_source_migrated test "$(field a pj status)" = JOB_MIGRATED
	# Back to a, where its old PID is now held by another process.
	host_take_pid a "$apid" || die "cannot take pid $apid on a"
	host_take_pid a "$bpid" 2>/dev/null
	CASE=pidns_migrate_back_busy
	if out=$(migrate b pj "$SOURCE"); then
		ok $CASE
		check pidns_back_running_on_a test "$(field a pj status)" = JOB_RUNNING
		check pidns_back_new_pid test "$(field a pj pid)" != "$apid"
		check pidns_back_verifies verified_on a pj
		check pidns_back_ticks wait_for 10 ticking a pj
		check pidns_back_b_log_quiet quiet b pj
		check pidns_back_migrated_on_b test "$(field b pj status)" = JOB_MIGRATED
	else
		fail "$CASE ($out)"
	fi
else
	fail "$CASE ($out)"
fi
host_stasis a kill pj >/dev/null 2>&1

# A job without its own namespace cannot go where its PID is taken: clear
# error, and it runs on at the source.
CASE=plain_migrate_pid_taken
host_stasis a exec --id plain -w "$T/work" -- "exec $HELPERS/memhog --size 8M" >/dev/null ||
	die "exec plain"
wait_for 30 sh -c "grep -q '^ready ' '$T/hosts/a/lib/logs/plain.log' 2>/dev/null" ||
	die "plain not ready"
ppid=$(field a plain pid)
host_take_pid b "$ppid" || die "cannot take pid $ppid on b"
out=$(migrate a plain "$TARGET") && fail "$CASE (migrated: $out)" ||
	check $CASE grep -q "PID $ppid is taken" <<<"$out"
check plain_migrate_runs_on wait_for 10 ticking a plain
host_stasis a kill plain >/dev/null 2>&1
finish
