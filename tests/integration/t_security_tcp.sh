#!/usr/bin/env bash
# The migration listener (stasisd --listen, TLS-PSK) on loopback: it refuses
# to start without a private token, binds only the address it is given,
# refuses peers without the token (plain TCP, garbage, a wrong token) and
# keeps serving after them, is not blocked by a peer that connects and stays
# silent, and takes no checkpoint that changed since the source recorded it.
. "$(dirname "$0")/../lib.sh"
. "$REPO/tests/helpers/daemon_lib.sh"

UA=stasis_sa
make_user $UA
as() { local u=$1; shift; runuser -u "$u" -- env STASIS_SOCKET="$STASIS_SOCKET" "$STASIS_BUILD/stasis" "$@"; }
lacks() { ! grep -q -- "$1" <<<"$2"; }
port=$(( 20000 + RANDOM % 20000 ))
while ss -ltn | grep -q ":$port "; do port=$((port + 1)); done
head -c 32 /dev/urandom | base64 >"$T/token"
chmod 600 "$T/token"
head -c 32 /dev/urandom | base64 >"$T/bad"
chmod 600 "$T/bad"
mkdir -p "$T/tgt"

CASE=listener_setup
out=$(timeout 10 "$STASIS_BUILD/stasisd" --socket "$T/x.sock" --state-dir "$T/x" \
	--listen 127.0.0.1:$port 2>&1)
check listen_without_token_refused test $? -ne 0 -a $? -ne 124
cp "$T/token" "$T/loose"
chmod 644 "$T/loose"
out=$(timeout 10 "$STASIS_BUILD/stasisd" --socket "$T/x.sock" --state-dir "$T/x" \
	--listen 127.0.0.1:$port --token-file "$T/loose" 2>&1)
check listen_loose_token_refused test $? -ne 0 -a $? -ne 124

# The target needs the same --state-dir path as the source: give it its own
# directory at that path in a private mount namespace.
mkdir -p "$STASIS_STATE_DIR"
unshare -m --propagation private sh -c 'mount --bind "$1" "$2" && exec "$3" --socket "$4" \
	--state-dir "$2" --listen "127.0.0.1:$5" --token-file "$6"' sh "$T/tgt" "$STASIS_STATE_DIR" \
	"$STASIS_BUILD/stasisd" "$T/tgt.sock" "$port" "$T/token" >"$T/tgt.log" 2>&1 &
TPID=$!
track_pid $TPID
tgt() { STASIS_SOCKET=$T/tgt.sock "$STASIS_BUILD/stasis" "$@"; }
wait_for 20 sh -c "ss -ltn | grep -q '127.0.0.1:$port '" || die "listener not up: $(tail -3 "$T/tgt.log")"
check binds_only_loopback test -z "$(ss -ltn | grep ":$port " | grep -v "127.0.0.1:$port ")"

daemon_up
sd exec -i pj -w "$T" "exec sleep 300" >/dev/null || die "exec"
track_pid "$(job_pid pj)"
sd dump job pj -d "$T/ck" --leave-running --stream 2 >/dev/null || die "dump"

# Peers without the token.
CASE=bad_peers
$PY - "$port" <<'PYEOF' >"$T/garbage.out" 2>&1
import os, socket, sys
port = int(sys.argv[1])
for i, payload in enumerate([b'GET / HTTP/1.0\r\n\r\n', b'\x16\x03\x01\x00\x05hello',
                             b'\x00' * 4096] + [os.urandom(n) for n in (1, 17, 300, 5000)] * 6):
    s = socket.create_connection(('127.0.0.1', port), timeout=10)
    try:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(10)
        while s.recv(4096):
            pass
    except OSError:
        pass
    s.close()
print('done')
PYEOF
check garbage_peers_closed grep -q '^done' "$T/garbage.out"
check listener_alive_after_garbage alive $TPID
out=$(sd push "$T/ck" --to 127.0.0.1:$port --token-file "$T/bad" 2>&1)
check wrong_token_refused test $? -ne 0
echo "# wrong_token: $out"
check wrong_token_says_so grep -qi "token\|handshake\|auth" <<<"$out"
check wrong_token_nothing_received test -z "$(tgt checkpoints 2>/dev/null | awk 'NR>1')"
check target_logs_refusal grep -qi "refus\|handshake\|token" "$T/tgt.log"

# A silent peer holds a connection open: others are still served.
CASE=silent_peer
$PY - "$port" <<'PYEOF' &
import socket, sys, time
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
time.sleep(120)
PYEOF
SILENT=$!
track_pid $SILENT
sleep 0.5
out=$(timeout 90 "$STASIS_BUILD/stasis" push "$T/ck" --to 127.0.0.1:$port --token-file "$T/token" 2>&1)
rc=$?
echo "# good push with a silent peer: exit $rc: $out"
check good_push_with_silent_peer test $rc -eq 0
check good_push_recorded test -n "$(tgt checkpoints 2>/dev/null | awk 'NR>1')"
kill $SILENT 2>/dev/null

# A user's checkpoint that changed since the dump is not sent.
CASE=tampered_push
mkdir -p "$T/a"
chown $UA: "$T/a"
as $UA exec -i uj -w "$T/a" "exec sleep 300" >/dev/null || die "exec uj"
track_pid "$(job_pid uj)"
as $UA dump job uj -d "$T/a/ck" --leave-running --stream 2 >/dev/null || die "dump uj"
img=$(ls "$T/a/ck"/img-0.* | head -1)
runuser -u $UA -- $PY -c "
import sys
f = open(sys.argv[1], 'r+b'); f.seek(12); b = f.read(1); f.seek(12); f.write(bytes([b[0] ^ 1]))" "$img"
n=$(tgt checkpoints 2>/dev/null | awk 'NR>1' | wc -l)
out=$(as $UA push "$T/a/ck" --to 127.0.0.1:$port 2>&1)
check tampered_push_refused test $? -ne 0
echo "# tampered_push: $out"
check tampered_push_nothing_received test "$(tgt checkpoints 2>/dev/null | awk 'NR>1' | wc -l)" = "$n"
check listener_alive_at_end alive $TPID
finish
