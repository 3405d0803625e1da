#!/usr/bin/env bash
# Migration failures (tests/netns-hosts.sh): whatever goes wrong, the job
# keeps running on the source (resumed if it was frozen), the error says what
# failed, the target holds no half checkpoint and no job, and both daemons
# keep serving. Cases: wrong token, unknown job, unreachable target, a peer
# that sends garbage, the target daemon killed mid-transfer, the link cut
# mid-transfer, the target's disk full, the target's restore failing (PID
# taken there), and a workload file missing on the target.
. "$(dirname "$0")/../lib.sh"
. "$TESTS_DIR/netns-hosts.sh"

# Short network timeouts, so a cut link is noticed in seconds.
export STASIS_NET_TIMEOUT_MS=3000
# b's state dir is a 200 MiB tmpfs: the 512 MiB job cannot fit.
migration_pair 200m
# A link of 400 Mbit/s: transfers take seconds however fast the machine, so
# the mid-transfer cases below always find one in progress.
host_exec a tc qdisc add dev a-b root tbf rate 400mbit burst 256kb latency 100ms ||
	die "cannot shape the link"

# b's /var/lib/stasis is a tmpfs inside b: look at it from there.
RX=/var/lib/stasis/received
rx_ls() { host_exec b ls -A "$RX"; }
ticks() { grep -c '^tick ' "$T/hosts/a/lib/logs/$1.log"; }
# running_on_a ID: alive, not stopped, and making progress.
running_on_a() {
	local pid n
	pid=$(job_pid a "$1")
	[ "$(job_status a "$1")" = JOB_RUNNING ] || return 1
	host_exec a sh -c "! grep -q '^State:.*T' /proc/$pid/status" || return 1
	n=$(ticks "$1")
	wait_for 10 sh -c "[ \$(grep -c '^tick ' '$T/hosts/a/lib/logs/$1.log') -gt $n ]"
}
# b answers, has no job ID, and holds nothing under received/ (not even a
# dot-prefixed leftover).
nothing_on_b() {
	host_stasis b ps >/dev/null && host_exec b test -d "$RX" &&
		[ -z "$(job_status b "$1")" ] && [ -z "$(rx_ls)" ]
}
# mid_transfer: wait until b has received some MiB of the checkpoint.
incoming_bytes() { host_exec b du -sb "$RX" 2>/dev/null | awk '{ print $1 }'; }
mid_transfer() { [ "$(incoming_bytes)" -gt $((8 << 20)) ] 2>/dev/null; }
migrate_bg() {
	host_stasis a migrate job "$1" --to "$TARGET" --token-file "$T/token" >"$T/$2.out" 2>&1 &
	mpid=$!
}

host_stasis a exec --id small -w "$T/work" -- "exec $HELPERS/memhog --size 16M" >/dev/null
host_stasis a exec --id big -w "$T/work" -- "exec $HELPERS/memhog --size 512M --mix random" \
	>/dev/null
ready() { grep -q '^tick ' "$T/hosts/a/lib/logs/$1.log" 2>/dev/null; }
wait_for 60 ready small && wait_for 120 ready big || die "jobs did not start"

# ---- wrong token: refused in the handshake, before anything is dumped
CASE=wrong_token
head -c 32 /dev/urandom | base64 >"$T/bad-token"
chmod 600 "$T/bad-token"
if host_stasis a migrate job small --to "$TARGET" --token-file "$T/bad-token" >"$T/wt.out" 2>&1; then
	fail "$CASE: succeeded"
else
	cat "$T/wt.out"
	check wrong_token_says_token grep -q token "$T/wt.out"
	check wrong_token_job_untouched running_on_a small
	check wrong_token_nothing_on_target nothing_on_b small
	check wrong_token_target_logs_refusal grep -q "refused connection" "$T/hosts/b/daemon.log"
fi

# ---- a token file others may read is refused by the CLI
chmod 644 "$T/bad-token"
check token_file_mode_checked sh -c "nsenter -t $(host_init a) -n -p -m \
	'$STASIS_BUILD/stasis' migrate job small --to $TARGET --token-file '$T/bad-token' 2>&1 |
	grep -q 'chmod 600'"

# ---- the daemon refuses a listener without a token, or with a loose token file
check listen_needs_token sh -c "nsenter -t $(host_init a) -n -p -m '$STASIS_BUILD/stasisd' \
	--state-dir '$T/x-state' --socket '$T/x.sock' --listen 10.77.0.1:7071 2>&1 |
	grep -q 'needs --token-file'"
check listen_refuses_loose_token sh -c "nsenter -t $(host_init a) -n -p -m '$STASIS_BUILD/stasisd' \
	--state-dir '$T/x-state' --socket '$T/x.sock' --listen 10.77.0.1:7071 \
	--token-file '$T/bad-token' 2>&1 | grep -q 'chmod 600'"

# ---- unknown job, unreachable target
check unknown_job sh -c "nsenter -t $(host_init a) -n -p -m '$STASIS_BUILD/stasis' migrate job \
	nope --to $TARGET --token-file '$T/token' 2>&1 | grep -q 'no such job'"
CASE=unreachable
if host_stasis a migrate job small --to 10.77.0.9:7070 --token-file "$T/token" >"$T/ur.out" 2>&1; then
	fail "$CASE: succeeded"
else
	cat "$T/ur.out"
	check unreachable_says_connect grep -q "connect" "$T/ur.out"
	check unreachable_job_untouched running_on_a small
fi

# ---- a peer that sends garbage: dropped, the target keeps serving
CASE=garbage_peer
host_exec a $PY -c '
import socket
s = socket.create_connection(("10.77.0.2", 7070), timeout=5)
s.sendall(b"\x16\x03\x01\x00\x05hello" + b"\xff" * 4096)
try:
    s.recv(100)
except Exception:
    pass'
check garbage_peer_refused wait_for 5 grep -q "refused connection.*10.77.0.1" "$T/hosts/b/daemon.log"
check garbage_peer_target_serves host_stasis b ps

# ---- an authenticated peer that breaks the protocol: refused, nothing kept
CASE=bad_frames
if host_exec a "$HELPERS/mg_peer" "$TARGET" "$T/token" bad-frames evil >"$T/bf.out" 2>&1; then
	cat "$T/bf.out"
	ok bad_frames_refused
	check bad_frames_nothing_on_target wait_for 15 nothing_on_b evil
else
	cat "$T/bf.out"
	fail $CASE
fi

# ---- the target's restore fails: the PID is taken there
CASE=restore_fails_on_target
pid=$(job_pid a small)
host_exec b sh -c "echo $((pid - 1)) >/proc/sys/kernel/ns_last_pid"
host_bg b "$T/squatter.out" sleep 1000
squatting() { [ "$(host_exec b cat /proc/$pid/comm 2>/dev/null)" = sleep ]; }
if ! wait_for 20 squatting; then
	fail "$CASE: could not take PID $pid on b"
elif host_stasis a migrate job small --to "$TARGET" --token-file "$T/token" >"$T/rf.out" 2>&1; then
	fail "$CASE: succeeded"
else
	cat "$T/rf.out"
	check restore_fails_says_why grep -q "restore failed on the target.*PID $pid is taken" "$T/rf.out"
	check restore_fails_job_resumed running_on_a small
	check restore_fails_nothing_on_target nothing_on_b small
fi
host_exec b kill -9 "$pid"

# ---- a workload file that only the source has
CASE=missing_file
mkdir -p "$T/priv"
host_exec a mount -t tmpfs priv "$T/priv"
host_exec a sh -c "echo data >'$T/priv/input'"
host_stasis a exec --id reader -w "$T/work" -- "exec 3<'$T/priv/input'; exec $HELPERS/memhog --size 4M" \
	>/dev/null
wait_for 30 ready reader || die "reader did not start"
if host_stasis a migrate job reader --to "$TARGET" --token-file "$T/token" >"$T/mf.out" 2>&1; then
	fail "$CASE: succeeded"
else
	cat "$T/mf.out"
	check missing_file_named grep -q "missing here: $T/priv/input" "$T/mf.out"
	check missing_file_job_untouched running_on_a reader
	check missing_file_nothing_on_target nothing_on_b reader
fi

# ---- the target daemon is killed mid-transfer
CASE=target_killed
migrate_bg big tk
if wait_for 60 mid_transfer; then
	host_daemon_kill b KILL
	wait "$mpid"
	cat "$T/tk.out"
	check target_killed_error grep -q "failed while" "$T/tk.out"
	check target_killed_job_resumed running_on_a big
	# A dot-prefixed leftover at most, never a directory that looks complete.
	check target_killed_no_complete_dir test -z "$(rx_ls | grep -v '^\.incoming-')"
	host_daemon b --listen "$TARGET" --token-file "$T/token"
	check target_killed_swept_on_restart nothing_on_b big
else
	fail "$CASE: the transfer never started"
	wait "$mpid"
fi

# ---- the link goes down mid-transfer
CASE=link_down
migrate_bg big ld
if wait_for 60 mid_transfer; then
	host_link_down a b
	wait "$mpid"
	cat "$T/ld.out"
	host_link_up a b
	check link_down_error grep -q "failed while" "$T/ld.out"
	check link_down_job_resumed running_on_a big
	check link_down_target_cleaned wait_for 15 nothing_on_b big
else
	fail "$CASE: the transfer never started"
	wait "$mpid"
fi

# ---- the target's disk fills up (200 MiB tmpfs, 512 MiB of random memory)
CASE=disk_full
if host_stasis a migrate job big --to "$TARGET" --token-file "$T/token" >"$T/df.out" 2>&1; then
	fail "$CASE: succeeded"
else
	cat "$T/df.out"
	check disk_full_says_so grep -q "disk full" "$T/df.out"
	check disk_full_job_resumed running_on_a big
	check disk_full_target_cleaned wait_for 10 nothing_on_b big
fi

# ---- the source daemon is killed mid-transfer: restarted, it resumes the job
CASE=source_killed
migrate_bg big sk
if wait_for 60 mid_transfer; then
	host_daemon_kill a KILL
	wait "$mpid"
	host_daemon a --listen "$SOURCE" --token-file "$T/token"
	check source_killed_job_resumed wait_for 30 running_on_a big
	check source_killed_target_cleaned wait_for 15 nothing_on_b big
	check source_killed_window_removed test -z "$(ls "$T/hosts/a/lib/migrate" | grep -v dump.log)"
else
	fail "$CASE: the transfer never started"
	wait "$mpid"
fi

# ---- the source never confirms the target's positive answer (as when the
# answer is lost on the way): the target stops its copy but keeps the job and
# its checkpoint, so a restore there brings it back
CASE=no_done
host_stasis a exec --id nd -w "$T/work" -- "exec $HELPERS/memhog --size 8M" >/dev/null
wait_for 30 ready nd || die "nd did not start"
mkdir -p "$T/nd"
host_stasis a dump job nd -d "$T/nd" --stream 2 >/dev/null || die "dump nd"
host_stasis a ps --json | $PY -c '
import json, sys
print(json.dumps([j for j in json.load(sys.stdin) if j["id"] == "nd"][0]))' >"$T/nd-job.json"
host_stasis a checkpoints --json nd | $PY -c '
import json, sys
d = json.load(sys.stdin)
d = d["checkpoints"] if isinstance(d, dict) else d
print(json.dumps(d[-1]))' >"$T/nd-ck.json"
if host_exec a "$HELPERS/mg_peer" "$TARGET" "$T/token" no-done "$T/nd" "$T/nd-job.json" \
	"$T/nd-ck.json" "$T/hosts/a/lib/logs/nd.log" >"$T/nd.out" 2>&1; then
	cat "$T/nd.out"
	killed_on_b() { [ "$(job_status b nd)" = JOB_KILLED ]; }
	check no_done_target_stops_its_copy wait_for 30 killed_on_b
	check no_done_target_keeps_checkpoint test -n "$(rx_ls | grep '^nd-')"
	host_stasis b restore job nd >/dev/null
	check no_done_restorable_later test "$(job_status b nd)" = JOB_RUNNING
else
	cat "$T/nd.out"
	fail $CASE
fi

# ---- after all that, both daemons still serve and a migration still works
CASE=still_works
if host_stasis a migrate job small --to "$TARGET" --token-file "$T/token" >"$T/ok.out" 2>&1; then
	check still_works_running_on_target test "$(job_status b small)" = JOB_RUNNING
else
	cat "$T/ok.out"
	fail $CASE
fi
finish
