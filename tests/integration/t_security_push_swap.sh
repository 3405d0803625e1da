#!/usr/bin/env bash
# Finding 5 (docs/security.md): push verified a checkpoint through a directory
# fd but sent its files by path, so a user who swapped a parent of the
# directory for a symlink after the check had the daemon ship other files,
# which the target fingerprinted as genuine. As an unprivileged user: one
# checkpoint in a/ck, a copy of another checkpoint of theirs at forged/ck; while
# they swap `a` for a symlink to `forged` and back in a loop, they push a/ck
# again and again. Every push that goes through delivers a/ck's own files.
. "$(dirname "$0")/../lib.sh"
. "$TESTS_DIR/netns-hosts.sh"

U=stasis-p5
user_migration_pair $U
install -d -o $U -m 0755 "$T/u" "$T/u/a" "$T/u/b" "$T/u/forged"
as_user() {
	host_exec a setpriv --reuid=$uid --regid=$gid --clear-groups \
		env STASIS_SOCKET=/run/stasis/stasisd.sock "$STASIS_BUILD/stasis" "$@"
}
ticking() { grep -q '^tick ' "$T/hosts/a/lib/logs/$1.log" 2>/dev/null; }
as_user exec --id pa -w "$T/work" -- "exec $HELPERS/memhog --size 8M" >/dev/null &&
	as_user exec --id pb -w "$T/work" -- "exec $HELPERS/memhog --size 12M" >/dev/null ||
	die "user exec"
wait_for 30 ticking pa && wait_for 30 ticking pb || die "user jobs did not start"
as_user dump job pa -d "$T/u/a/ck" --stream 2 >/dev/null &&
	as_user dump job pb -d "$T/u/b/ck" --stream 2 >/dev/null || die "dumps"
# The forgery: the other checkpoint's files, copied by the user.
setpriv --reuid=$uid --regid=$gid --clear-groups sh -c "mkdir '$T/u/forged/ck' &&
	cp -p '$T/u/b/ck/'* '$T/u/forged/ck/'" || die "copy"
sum() { sha256sum "$1/manifest.json" | cut -d' ' -f1; }
genuine=$(sum "$T/u/a/ck")
forged=$(sum "$T/u/forged/ck")
[ "$genuine" != "$forged" ] || die "the two checkpoints have the same manifest"

# The swapper: `a` is genuine for 20-70 ms (long enough for a push to be
# checked), then a symlink to `forged` for 10-40 ms (while the push sends).
# Random lengths: a fixed period can lock in step with the pushes on a busy
# host, so that every push is resolved while `a` is the symlink.
setpriv --reuid=$uid --regid=$gid --clear-groups bash -c "cd '$T/u' && while :; do
	mv a a.real && ln -s forged a && sleep 0.0\$((RANDOM % 4 + 1))
	rm -f a && mv a.real a && sleep 0.0\$((RANDOM % 6 + 2))
done" &
swapper=$!
track_pid $swapper

CASE=push_swap
sent=0
bad=0
for i in $(seq 1 60); do
	[ $sent -ge 3 ] && break
	if out=$(as_user push "$T/u/a/ck" --to "$TARGET" 2>&1); then
		dir=$(sed -n 's/.*checkpoint=\([^ ]*\).*/\1/p' <<<"$out")
		got=$(sum "$T/hosts/b/lib${dir#/var/lib/stasis}")
		if [ "$got" = "$genuine" ]; then
			sent=$((sent + 1))
		else
			bad=$((bad + 1))
			echo "# push $i delivered other files: $out"
		fi
		host_stasis b rm pa >/dev/null
	else
		echo "# push $i refused: $(tail -1 <<<"$out")"
	fi
done
kill $swapper
wait $swapper 2>/dev/null
echo "# pushes that went through with a/ck's own files: $sent"
check push_swap_never_forged test "$bad" = 0
check push_swap_some_went_through test "$sent" -ge 1
finish
