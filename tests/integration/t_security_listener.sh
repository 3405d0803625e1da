#!/usr/bin/env bash
# Finding 9 (docs/security.md): peers without the token must not be able to
# hold the migration listener. An unprivileged user on the source host itself
# (same address as the real source) and a peer on the target's own address
# keep 40 connections each open to the target's listener, sending nothing,
# and the latter 20 more that send a few bytes of a handshake and stall, all
# reconnecting whenever one is closed; a silent
# connection is cut within its bound, a stalled handshake within its deadline,
# and meanwhile a real migration and a push go through and the daemon's
# threads stay bounded.
. "$(dirname "$0")/../lib.sh"
. "$TESTS_DIR/netns-hosts.sh"

migration_pair
make_user stasis-l9
at_exit userdel stasis-l9
luid=$(id -u stasis-l9)
PEERS=$REPO/tests/helpers/idle_peers.py

# closed_within HOST SECONDS [PREFIX]: one connection from HOST to the target,
# silent (or sending PREFIX bytes), is closed by the target within SECONDS.
closed_within() {
	host_exec "$1" setpriv --reuid="$luid" --regid="$luid" --clear-groups $PY -c '
import socket, sys, time
s = socket.create_connection(("10.77.0.2", 7070))
s.send(b"\x16\x03\x01\x02\x00"[: int(sys.argv[2])])
s.settimeout(float(sys.argv[1]) + 5)
t = time.time()
try:
    d = s.recv(100)
except OSError:
    d = b""
took = time.time() - t
print("closed after %.1f s" % took)
sys.exit(0 if took <= float(sys.argv[1]) else 1)' "$2" "${3:-0}"
}
check silent_peer_cut closed_within a 6
check stalled_handshake_cut closed_within a 7 3

# ---- the flood: from a (the source's own address) and from b's own address
CASE=flood
host_bg a "$T/flood-a.out" setpriv --reuid="$luid" --regid="$luid" --clear-groups \
	$PY "$PEERS" 10.77.0.2 7070 40 40 || die "flood from a"
track_pid "$host_bg_pid"
fa=$host_bg_pid
host_bg b "$T/flood-b.out" setpriv --reuid="$luid" --regid="$luid" --clear-groups \
	$PY "$PEERS" 10.77.0.2 7070 40 40 || die "flood from b"
track_pid "$host_bg_pid"
fb=$host_bg_pid
host_bg b "$T/flood-b3.out" setpriv --reuid="$luid" --regid="$luid" --clear-groups \
	$PY "$PEERS" 10.77.0.2 7070 20 40 3 || die "stalled handshakes from b"
track_pid "$host_bg_pid"
fc=$host_bg_pid
sleep 3

last_count() { host_stasis "$1" logs "$2" 2>/dev/null | grep -E '^[0-9]+$' | tail -1; }
count_grows() { local n; n=$(last_count "$1" "$2"); [ -n "$n" ] && [ "$n" -gt "$3" ]; }
host_stasis a exec --id cnt -w "$T/work" -- $PY -c '
import time
n = 0
while True:
    n += 1
    print(n, flush=True)
    time.sleep(0.05)' >/dev/null || die "exec"
wait_for 10 count_grows a cnt 5 || die "counter did not start"
if host_stasis a migrate job cnt --to "$TARGET" --token-file "$T/token" >"$T/m.out" 2>&1; then
	check flood_migrate_running_on_target test "$(job_status b cnt)" = JOB_RUNNING
else
	cat "$T/m.out"
	fail flood_migrate
fi
host_stasis a exec --id pj -w "$T/work" -- "exec $HELPERS/memhog --size 8M" >/dev/null
pready() { grep -q '^tick ' "$T/hosts/a/lib/logs/pj.log" 2>/dev/null; }
wait_for 30 pready || die "pj did not start"
mkdir -p "$T/ck"
host_stasis a dump job pj -d "$T/ck" --stream 2 >/dev/null || die "dump pj"
if host_stasis a push "$T/ck" --to "$TARGET" --token-file "$T/token" >"$T/p.out" 2>&1; then
	check flood_push_recorded test "$(job_status b pj)" = JOB_KILLED
else
	cat "$T/p.out"
	fail flood_push
fi
threads() { awk '/^Threads:/ { print $2 }' "/proc/$(cat "$T/hosts/b/daemon.pid")/status"; }
nthreads=$(threads)
echo "# target daemon threads during the flood: $nthreads"
# 64 unauthenticated slots at most, plus the daemon's own threads.
check flood_threads_bounded test "$nthreads" -lt 100
check flood_target_serves host_stasis b ps
kill "$fa" "$fb" "$fc" 2>/dev/null
wait_for 10 dead "$fa"
echo "# flood from a: $(cat "$T/flood-a.out"); from b: $(cat "$T/flood-b.out");" \
	"stalled from b: $(cat "$T/flood-b3.out")"
finish
