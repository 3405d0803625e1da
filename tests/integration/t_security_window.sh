#!/usr/bin/env bash
# Finding 6 (docs/security.md): a migration handed its capture window back to
# the job's owner after the dump and then sent the rest of it, so the owner
# could change what the target restores. As that unprivileged user: while their
# job migrates, they find the window (its parent lets anyone reach an entry by
# name) and try, over and over, to open its files for writing. They never get
# one, and the job arrives with its memory intact.
. "$(dirname "$0")/../lib.sh"
. "$TESTS_DIR/netns-hosts.sh"

U=stasis-w6
user_migration_pair $U
as_user() {
	host_exec a setpriv --reuid=$uid --regid=$gid --clear-groups \
		env STASIS_SOCKET=/run/stasis/stasisd.sock "$STASIS_BUILD/stasis" "$@"
}
as_user exec --id wj -w "$T/work" -- "exec $HELPERS/memhog --size 96M" >/dev/null || die "exec"
ready() { grep -q '^ready ' "$T/hosts/a/lib/logs/wj.log" 2>/dev/null; }
wait_for 60 ready || die "the job did not get ready"
sum=$(awk '/^ready / { print $2; exit }' "$T/hosts/a/lib/logs/wj.log")

CASE=window
since=$(($(date +%s%3N) - 50))
setpriv --reuid=$uid --regid=$gid --clear-groups $PY "$REPO/tests/helpers/window_prober.py" \
	"$T/hosts/a/lib/migrate" wj "$since" 60 >"$T/prober.out" 2>&1 &
prober=$!
track_pid $prober
if as_user migrate job wj --to "$TARGET" --stream 2 >"$T/m.out" 2>&1; then
	check window_migrated test "$(job_status b wj)" = JOB_RUNNING
	host_stasis b kill wj --signal USR1 >/dev/null
	verified() { grep -q "^verify $sum ok" "$T/hosts/b/lib/logs/wj.log"; }
	check window_memory_intact wait_for 30 verified
else
	cat "$T/m.out"
	fail window_migrate
fi
wait_for 70 dead $prober
sed 's/^/# prober: /' "$T/prober.out"
check window_found_by_user grep -qE '^found [1-9]' "$T/prober.out"
check window_never_writable grep -qx 'writable 0' "$T/prober.out"
finish
