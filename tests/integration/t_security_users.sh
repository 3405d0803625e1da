#!/usr/bin/env bash
# Security between local users, against one root daemon, through the CLI and
# through raw HTTP on the socket: callers are who SO_PEERCRED says (headers
# and body fields claiming another uid change nothing); user B can neither see
# nor act on user A's job through any endpoint; A cannot make the daemon write
# or read where A could not (.., symlinks anywhere in -d, a -d that is a
# symlink to /etc, files planted in the target dir); A cannot restore images
# the daemon did not make or that changed since; files are the owner's, 0600;
# the socket and state have the documented modes.
. "$(dirname "$0")/../lib.sh"
. "$REPO/tests/helpers/daemon_lib.sh"
. "$(dirname "$0")/fault_lib.sh"

UA=stasis_sa
UB=stasis_sb
make_user $UA
make_user $UB
ub=$(id -u $UB)
as() { local u=$1; shift; runuser -u "$u" -- env STASIS_SOCKET="$STASIS_SOCKET" "$STASIS_BUILD/stasis" "$@"; }
# api USER METHOD PATH [BODY [HEADER...]]: raw HTTP on the socket as USER;
# prints "STATUS BODY".
api() {
	local u=$1
	shift
	runuser -u "$u" -- $PY - "$STASIS_SOCKET" "$@" <<'PYEOF'
import socket, sys
path, method, url = sys.argv[1:4]
body = sys.argv[4] if len(sys.argv) > 4 else ''
hdrs = ''.join(h + '\r\n' for h in sys.argv[5:])
s = socket.socket(socket.AF_UNIX)
s.connect(path)
req = '%s %s HTTP/1.1\r\nHost: stasis\r\nConnection: close\r\n%sContent-Length: %d\r\n' \
      'Content-Type: application/json\r\n\r\n%s' % (method, url, hdrs, len(body.encode()), body)
s.sendall(req.encode())
data = b''
while True:
    b = s.recv(65536)
    if not b:
        break
    data += b
head, _, payload = data.partition(b'\r\n\r\n')
print(head.split()[1].decode(), payload.decode(errors='replace').replace('\n', ' '))
PYEOF
}
status_is() { [ "$(cut -d' ' -f1 <<<"$1")" = "$2" ]; }
status_ge() { [ "$(cut -d' ' -f1 <<<"$1")" -ge "$2" ]; }
lacks() { ! grep -q -- "$1" <<<"$2"; }

mkdir -p "$T/a" "$T/b"
chown $UA: "$T/a"
chown $UB: "$T/b"
chmod 0700 "$T/a" "$T/b"
printf 'SECRET\n' >"$T/rootsecret"
chmod 0600 "$T/rootsecret"
daemon_up

as $UA exec -i aj -w "$T/a" "exec $PY $WORKLOADS/daemon_counter.py" >/dev/null || die "exec aj"
apid=$(job_pid aj)
track_pid "$apid"
wait_for 10 counted_past aj 5 || die "aj not counting"
as $UA dump job aj -d "$T/a/ck" --leave-running >/dev/null || die "A dumps aj"

# ---- SO_PEERCRED: identity comes from the kernel, never from the request.
CASE=peercred
out=$(api $UB GET /v1/version)
check peercred_caller_uid grep -q "\"caller_uid\": *${ub}[,}]" <<<"$out"
out=$(api $UB GET /v1/jobs '' 'X-Stasis-Uid: 0' 'X-Remote-User: root' "X-Forwarded-For: 127.0.0.1")
check peercred_headers_ignored lacks '"aj"' "$out"
out=$(api $UB POST /v1/jobs "{\"id\":\"bj\",\"cmd\":\"exec sleep 300\",\"workdir\":\"$T/b\",\"uid\":0,\"gid\":0,\"user\":\"root\"}")
check peercred_exec_created status_is "$out" 201
bpid=$(job_pid bj)
track_pid "$bpid"
check peercred_body_uid_ignored grep -Eq "^Uid:\s+$ub\s+$ub\s+$ub\s+$ub$" /proc/$bpid/status
check peercred_body_gid_ignored sh -c "! grep -Eq '^Gid:\s+0\s' /proc/$bpid/status"

# ---- Isolation: B acts on A's job through every endpoint: 404 as if absent.
CASE=isolation
nosuch=$(api $UB GET /v1/jobs/nosuchjob)
for req in "GET /v1/jobs/aj" "GET /v1/jobs/aj/logs" "GET /v1/jobs/aj/logs?offset=-100" \
	"POST /v1/jobs/aj/kill" "POST /v1/jobs/aj/dump" "POST /v1/jobs/aj/restore" \
	"DELETE /v1/jobs/aj" "DELETE /v1/jobs/aj?force=1" "POST /v1/jobs/aj/migrate" \
	"GET /v1/checkpoints?job=aj"; do
	set -- $req
	body='{}'
	case $2 in
	*/kill) body='{"signal":"KILL"}' ;;
	*/dump) body="{\"dir\":\"$T/b/stolen\",\"leave_running\":true}" ;;
	*/restore) body="{\"dir\":\"$T/a/ck\"}" ;;
	*/migrate) body='{"to":"127.0.0.1:9"}' ;;
	esac
	[ "$1" = GET ] || [ "$1" = DELETE ] && body=
	out=$(api $UB "$1" "$2" "$body")
	name=b_$(tr -c 'a-z' _ <<<"$1_${2#/v1/}" | sed 's/_*$//')
	check "${name}_404" status_is "$out" 404
	check "${name}_no_detail" lacks "$T/a" "$out"
done
check b_404_same_as_absent test "$(sed 's/nosuchjob/aj/' <<<"$nosuch")" = "$(api $UB GET /v1/jobs/aj)"
check b_list_hides_a lacks '"aj"' "$(api $UB GET /v1/jobs)"
check b_checkpoints_hide_a lacks "$T/a" "$(api $UB GET /v1/checkpoints)"
out=$(api $UB POST /v1/push "{\"dir\":\"$T/a/ck\",\"to\":\"127.0.0.1:9\"}")
check b_push_a_checkpoint_refused status_ge "$out" 400
out=$(api $UB POST /v1/shutdown)
check b_shutdown_forbidden status_is "$out" 403
for op in "ps" "logs aj" "kill aj" "rm --force aj" "dump job aj -d $T/b/x" "restore job aj" \
	"checkpoints aj" "inspect $T/a/ck"; do
	name=b_cli_$(cut -d' ' -f1 <<<"$op")
	if [ "$op" = ps ]; then
		check ${name}_hides_a lacks aj "$(as $UB ps 2>&1)"
	else
		out=$(as $UB $op 2>&1)
		check ${name}_refused test $? -ne 0
		check ${name}_no_trace lacks JOB_RUNNING "$out"
	fi
done
check a_job_untouched_by_b test "$(job_status aj)" = JOB_RUNNING -a "$(job_pid aj)" = "$apid"
check b_cannot_read_a_files sh -c "! runuser -u $UB -- cat '$T/a/ck/inventory.img' >/dev/null 2>&1"
check b_cannot_read_a_log sh -c "! runuser -u $UB -- cat '$STASIS_STATE_DIR/logs/aj.log' >/dev/null 2>&1"

# ---- Paths: A cannot make root write or read where A could not.
CASE=paths
ls -la /etc >"$T/etc.before"
ln -s /etc "$T/a/etclink"
chown -h $UA: "$T/a/etclink"
ln -s "$T/b" "$T/a/blink"
chown -h $UA: "$T/a/blink"
for d in "$T/a/../b/dotdot" "$T/a/etclink" "$T/a/etclink/stasis-sec" "$T/a/blink/viaLink" \
	"/etc/stasis-sec" "/root/stasis-sec" "$T/b" "/proc/self/cwd" "/dev/shm/../../etc/stasis-sec2"; do
	name=a_dump_into_$(tr -c 'a-zA-Z0-9' _ <<<"${d#$T/}" | sed 's/_*$//')
	out=$(as $UA dump job aj -d "$d" --leave-running 2>&1)
	check "${name}_refused" test $? -ne 0
	echo "# $name: $out"
done
check a_nothing_in_etc diff <(ls -la /etc) "$T/etc.before"
check a_nothing_in_b test -z "$(ls -A "$T/b" | grep -v '^$')" -o "$(ls -A "$T/b")" = ""
check a_no_etc_stasis test ! -e /etc/stasis-sec -a ! -e /etc/stasis-sec2 -a ! -e /root/stasis-sec
# Files planted by A where the daemon and CRIU write: symlinks to a root secret.
for mode in plain stream; do
	d=$T/a/planted-$mode
	runuser -u $UA -- mkdir "$d"
	for f in dump.log restore.log stats-dump streamer-capture.log streamer-serve.log \
		stasis-checkpoint.json .stasis-checkpoint.json.tmp; do
		runuser -u $UA -- ln -s "$T/rootsecret" "$d/$f"
	done
	args=(--leave-running)
	[ $mode = stream ] && args+=(--stream 2)
	out=$(timeout 60 runuser -u $UA -- env STASIS_SOCKET="$STASIS_SOCKET" \
		"$STASIS_BUILD/stasis" dump job aj -d "$d" "${args[@]}" 2>&1)
	echo "# planted_$mode: exit $?: $out"
	check planted_${mode}_secret_unchanged test "$(cat "$T/rootsecret")" = SECRET
	printf 'SECRET\n' >"$T/rootsecret"
	check planted_${mode}_secret_owner test "$(stat -c '%U %a' "$T/rootsecret")" = "root 600"
	check planted_${mode}_daemon_alive sd daemon status
done
check a_job_running_after_paths test "$(job_status aj)" = JOB_RUNNING
# Reading: A restores from a checkpoint dir A cannot read (root's), or via a link.
sd exec -i rj -w "$T" "exec sleep 300" >/dev/null
track_pid "$(job_pid rj)"
sd dump job rj -d "$T/rootck" --leave-running >/dev/null || die "root dump"
# Root dumps its own job into a directory A owns, where A planted a symlink.
runuser -u $UA -- mkdir "$T/a/give"
runuser -u $UA -- ln -s "$T/rootsecret" "$T/a/give/dump.log"
out=$(sd dump job rj -d "$T/a/give" --leave-running 2>&1)
echo "# root_into_planted: $out"
check root_into_planted_secret_unchanged test "$(cat "$T/rootsecret")" = SECRET
printf 'SECRET\n' >"$T/rootsecret"
chmod 0700 "$T/rootck"
out=$(as $UA restore job aj -d "$T/rootck" 2>&1)
check a_restore_root_dir_refused test $? -ne 0
ln -s "$T/rootck" "$T/a/rootlink"
chown -h $UA: "$T/a/rootlink"
out=$(as $UA restore job aj -d "$T/a/rootlink" 2>&1)
check a_restore_via_link_refused test $? -ne 0
out=$(as $UA inspect "$T/rootck" 2>&1)
check a_inspect_root_dir_refused test $? -ne 0

# ---- Images the daemon did not make (or that changed) are not restored for A.
CASE=images
as $UA kill aj >/dev/null
wait_for 10 test ! -d "/proc/$apid"
runuser -u $UA -- cp -a "$T/a/ck" "$T/a/forged"
out=$(as $UA restore job aj -d "$T/a/forged" 2>&1)
check a_unrecorded_refused grep -q "not a checkpoint that stasisd recorded" <<<"$out"
# Root's images copied into A's dir (A made readable copies of a dump of root's job).
cp -a "$T/rootck" "$T/a/rootcopy"
chown -R $UA: "$T/a/rootcopy"
out=$(as $UA restore job aj -d "$T/a/rootcopy" 2>&1)
check a_root_images_refused test $? -ne 0
img=$(ls "$T/a/ck"/core-*.img | head -1)
cp "$img" "$T/core.save"
runuser -u $UA -- $PY -c "
import sys
f = open(sys.argv[1], 'r+b'); f.seek(12); b = f.read(1); f.seek(12); f.write(bytes([b[0] ^ 1]))" "$img"
out=$(as $UA restore job aj -d "$T/a/ck" 2>&1)
check a_tampered_refused test $? -ne 0
echo "# a_tampered: $out"
check a_tampered_nothing_started test ! -d "/proc/$apid"
cp "$T/core.save" "$img"
chown $UA: "$img"
runuser -u $UA -- sh -c "rm '$img' && ln -s '$T/rootck/$(basename "$img")' '$img'" 2>/dev/null
out=$(as $UA restore job aj -d "$T/a/ck" 2>&1)
check a_symlinked_image_refused test $? -ne 0
runuser -u $UA -- rm -f "$img"
cp "$T/core.save" "$img"
chown $UA: "$img"
chmod 0600 "$img"
check a_repaired_restores as $UA restore job aj -d "$T/a/ck"
track_pid "$(job_pid aj)"

# ---- Files and modes.
CASE=modes
for mode in plain stream; do
	d=$T/a/m-$mode
	args=(--leave-running)
	[ $mode = stream ] && args+=(--stream 3)
	as $UA dump job aj -d "$d" "${args[@]}" >/dev/null || fail "a_dump_$mode"
	check files_${mode}_dir_0700 test "$(stat -c '%U %a' "$d")" = "$UA 700"
	check files_${mode}_all_owner_0600 test -z "$(find "$d" -mindepth 1 ! \( -type f -user $UA -perm 0600 \))"
done
check files_root_job_0600 test -z "$(find "$T/rootck" -mindepth 1 ! \( -type f -user root -perm 0600 \))"
check socket_is_socket test -S "$STASIS_SOCKET"
check socket_mode_0666_root test "$(stat -c '%U %a' "$STASIS_SOCKET")" = "root 666"
check state_dir_0755_root test "$(stat -c '%U %a' "$STASIS_STATE_DIR")" = "root 755"
check db_0600_root test "$(stat -c '%U %a' "$STASIS_STATE_DIR/stasis.db")" = "root 600"
check logs_dir_0711 test "$(stat -c '%U %a' "$STASIS_STATE_DIR/logs")" = "root 711"
check job_log_owner_0600 test "$(stat -c '%U %a' "$STASIS_STATE_DIR/logs/aj.log")" = "$UA 600"
check no_world_writable_state test -z "$(find "$STASIS_STATE_DIR" -perm -o+w ! -type s ! -type l)"

# ---- A FIFO planted where CRIU writes must not hang the daemon's dump forever.
CASE=fifo
as $UA exec -i fj -w "$T/a" "exec sleep 300" >/dev/null || die "exec fj"
track_pid "$(job_pid fj)"
runuser -u $UA -- mkdir "$T/a/fifo"
for f in irmap-cache dump.log stats-dump; do runuser -u $UA -- mkfifo "$T/a/fifo/$f"; done
out=$(timeout 60 runuser -u $UA -- env STASIS_SOCKET="$STASIS_SOCKET" \
	"$STASIS_BUILD/stasis" dump job fj -d "$T/a/fifo" --leave-running 2>&1)
rc=$?
echo "# fifo: exit $rc: $out"
check fifo_dump_does_not_hang test $rc -ne 124
# Unblock whatever still waits on the FIFOs, so nothing outlives the test.
for f in irmap-cache dump.log stats-dump; do timeout 5 cat "$T/a/fifo/$f" >/dev/null 2>&1; done
wait_for 20 sh -c "! '$STASIS_BUILD/stasis' ps | grep -q 'fj.*busy'"
check fifo_job_not_stuck_busy lacks busy "$(as $UA kill fj 2>&1)"
finish
