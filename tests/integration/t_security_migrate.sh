#!/usr/bin/env bash
# Finding 8 (docs/security.md): migration is authorized per user. An
# unprivileged user on host a tries to push and migrate their job to host b
# with the daemon's own token and with a token of their own, to a target no
# rule names, to a target that has no rule for them, as root or as another
# user there; a forged job record claims root or groups the user lacks. Every
# try is refused before anything is dumped or written, and the job runs on.
# Only what the policies of both hosts allow goes through, and a target's
# bound on jobs per user holds for jobs that land there too.
. "$(dirname "$0")/../lib.sh"
. "$TESTS_DIR/netns-hosts.sh"

make_user stasis-m8a
make_user stasis-m8b
at_exit userdel stasis-m8a
at_exit userdel stasis-m8b
uid=$(id -u stasis-m8a)
gid=$(id -g stasis-m8a)

head -c 32 /dev/urandom | base64 >"$T/token"
chmod 600 "$T/token"
install -m 600 -o "$uid" "$T/token" "$T/utoken"
# policy A POLICY_TEXT: host A's migration policy (read again at every request).
policy() { printf '%s\n' "# test policy" "$2" >"$T/$1.conf"; chmod 644 "$T/$1.conf"; }
policy a ""
policy b ""
host_up a 10.77.0.1
host_up b 10.77.0.2
hosts_link a b
host_daemon a --listen "$SOURCE" --token-file "$T/token" --migrate-conf "$T/a.conf"
host_daemon b --listen "$TARGET" --token-file "$T/token" --migrate-conf "$T/b.conf" \
	--max-jobs-per-user 1
host_pid_base a 5000
mkdir -p "$T/work" "$T/uck"
chmod 0777 "$T/work"
chown "$uid" "$T/uck"

as_user() {
	local h=$1
	shift
	host_exec "$h" setpriv --reuid="$uid" --regid="$gid" --clear-groups \
		env STASIS_SOCKET=/run/stasis/stasisd.sock "$STASIS_BUILD/stasis" "$@"
}
uready() { grep -q '^tick ' "$T/hosts/a/lib/logs/$1.log" 2>/dev/null; }
as_user a exec --id uj -w "$T/work" -- "exec $HELPERS/memhog --size 8M" >/dev/null &&
	as_user a exec --id up -w "$T/work" -- "exec $HELPERS/memhog --size 8M" >/dev/null ||
	die "user exec"
wait_for 30 uready uj && wait_for 30 uready up || die "user jobs did not start"
upid=$(job_pid a uj)
# The job runs on at a, not frozen, and b knows nothing of it.
untouched() {
	[ "$(job_status a "$1")" = JOB_RUNNING ] && [ -z "$(job_status b "$1")" ] &&
		! host_exec a grep -q '^State:.*T' "/proc/$(job_pid a "$1")/status" &&
		[ -z "$(ls -A "$T/hosts/b/lib/received" 2>/dev/null)" ]
}
# ---- source side: no send rule, so no non-root user may send anywhere
refused deny_default "may not push or migrate" as_user a migrate job uj --to "$TARGET"
refused deny_own_token "may not push or migrate" \
	as_user a migrate job uj --to "$TARGET" --token-file "$T/utoken"
as_user a dump job up -d "$T/uck" --stream 2 --leave-running >/dev/null || die "dump up"
refused deny_push "may not push or migrate" as_user a push "$T/uck" --to "$TARGET"
policy a "send stasis-m8a to 10.77.0.9:7070"
refused deny_other_target "may not push or migrate" as_user a migrate job uj --to "$TARGET"
check deny_source_untouched untouched uj

# ---- target side: a may send, b decides who lands as whom
policy a "send stasis-m8a to 10.77.0.2"
refused target_no_rule "may not land here" as_user a migrate job uj --to "$TARGET"
refused target_push_no_rule "may not land here" as_user a push "$T/uck" --to "$TARGET"
policy b "receive $uid as root"
refused target_not_as_root "to root: refused" as_user a migrate job uj --to "$TARGET"
policy b "receive * as stasis-m8b"
refused target_not_as_other "only land as its own uid" as_user a migrate job uj --to "$TARGET"
policy b "receive $uid as same from 10.77.0.9"
refused target_other_peer "may not land here" as_user a migrate job uj --to "$TARGET"
policy b "receive $uid as same"
chmod 666 "$T/b.conf"
refused target_open_policy "not writable by group or others" \
	as_user a migrate job uj --to "$TARGET"
chmod 644 "$T/b.conf"
check target_refusals_untouched untouched uj

# ---- a peer with the token forges what a user asked for
CASE=forged
printf '{"id":"forge","uid":0,"gid":0,"cmd":"true","workdir":"/","pid":1,"state":"running","log":"/var/lib/stasis/logs/forge.log"}\n' \
	>"$T/root-job.json"
printf '{"id":"forge","uid":%s,"gid":%s,"groups":[0],"cmd":"true","workdir":"/","pid":1,"state":"running","log":"/var/lib/stasis/logs/forge.log"}\n' \
	"$uid" "$gid" >"$T/groups-job.json"
policy b "$(printf 'receive 0 as root\nreceive %s as same' "$uid")"
# forge JSON: fails (as refused expects) when the target refused the job.
forge() { ! host_exec a env MG_PEER_SENDER="$uid" "$HELPERS/mg_peer" "$TARGET" "$T/token" \
	job-only "$1"; }
refused forged_root_job_by_user "only root or the job's owner" forge "$T/root-job.json"
refused forged_root_group "not a group of uid" forge "$T/groups-job.json"
check forged_nothing_recorded test -z "$(job_status b forge)"

# ---- root's own job lands only where a rule names uid 0
host_stasis a exec --id rj -w "$T/work" -- "exec $HELPERS/memhog --size 8M" >/dev/null
wait_for 30 uready rj || die "root job did not start"
policy b "receive * as same"
refused root_job_needs_rule "may not land here" \
	host_stasis a migrate job rj --to "$TARGET" --token-file "$T/token"

# ---- what both policies allow goes through, as the job's owner
policy a "send stasis-m8a to $TARGET"
policy b "receive $uid as same from 10.77.0.1"
if as_user a migrate job uj --to "$TARGET" >"$T/ok.out" 2>&1; then
	check allowed_running_on_target test "$(job_status b uj)" = JOB_RUNNING
	check allowed_as_owner host_exec b sh -c "[ \$(stat -c %u /proc/$(job_pid b uj)) = $uid ]"
	check allowed_migrated_on_source test "$(job_status a uj)" = JOB_MIGRATED
else
	cat "$T/ok.out"
	fail allowed_migrate
fi
check allowed_pid_kept test "$(job_pid b uj)" = "$upid"
# b lets a user have one job record (--max-jobs-per-user 1): a second one is refused.
refused target_jobs_per_user "the most this host allows per user" \
	as_user a migrate job up --to "$TARGET"
up_untouched() { [ "$(job_status a up)" = JOB_RUNNING ] && [ -z "$(job_status b up)" ]; }
check target_jobs_per_user_untouched up_untouched
finish
