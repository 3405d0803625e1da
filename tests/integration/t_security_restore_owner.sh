#!/usr/bin/env bash
# Finding 4 of the security review (docs/security.md): a restore reopens the
# job's files, mappings and sockets by path. Run as root, CRIU would follow a
# symlink the job's owner put there since the dump: a job holding ~/app.log
# open for append would come back with /etc/passwd open for writing. Restores
# of a user's job now run CRIU as that user (docs/security.md), so every path
# is opened with the owner's rights: the attacks below must fail, root's files
# stay as they were, and a plain restore still works and gives back a process
# with the owner's ids and no capability.
. "$(dirname "$0")/../lib.sh"
. "$REPO/tests/helpers/daemon_lib.sh"

U=stasis_ro
make_user $U
uid=$(id -u $U)
as() { runuser -u $U -- env STASIS_SOCKET="$STASIS_SOCKET" "$STASIS_BUILD/stasis" "$@"; }
au() { runuser -u $U -- "$@"; }

mkdir -p "$T/a" "$T/rootdir"
chown $U: "$T/a"
chmod 0700 "$T/a"
printf 'root:x:0:0:root:/root:/bin/bash\n' >"$T/rootfile"
printf 'ROOT MAPPED FILE\n' >"$T/rootmap"
printf 'ROOT FILE IN DIR\n' >"$T/rootdir/s.sock"
chmod 0644 "$T/rootfile" "$T/rootmap" "$T/rootdir/s.sock"
sum_root() { sha256sum "$T/rootfile" "$T/rootmap" "$T/rootdir/s.sock" | awk '{print $1}' | tr -d '\n'; }
before=$(sum_root)

# The workload: appends to app.log, maps shared.dat shared and writable, has a
# UNIX socket bound in sockdir/, counts on stdout.
cat >"$T/work.py" <<'PYEOF'
import mmap, os, socket, sys, time
d = sys.argv[1]
log = open(os.path.join(d, "app.log"), "a")
f = open(os.path.join(d, "shared.dat"), "r+b")
m = mmap.mmap(f.fileno(), 4096, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
s = None
if len(sys.argv) > 2:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(os.path.join(d, "sockdir", "s.sock"))
i = 0
while True:
    i += 1
    print(i, flush=True)
    log.write("tick %d\n" % i)
    log.flush()
    m[0:8] = b"%08d" % (i % 10**8)
    time.sleep(0.1)
PYEOF
chmod 0644 "$T/work.py"

setup_files() {
	au rm -rf "$T/a/app.log" "$T/a/shared.dat" "$T/a/sockdir" "$T/a/sockdir2" "$T/a/ck"
	au sh -c "head -c 4096 /dev/zero >'$T/a/shared.dat'; : >'$T/a/app.log'; mkdir '$T/a/sockdir'"
}
daemon_up

# ---- A plain restore as the owner works, and gives back the owner's plain ids.
CASE=plain
setup_files
as exec -i ok -w "$T/a" "exec $PY $T/work.py $T/a" >/dev/null || die "exec ok"
track_pid "$(job_pid ok)"
wait_for 10 counted_past ok 3 || die "ok not counting"
out=$(as dump job ok -d "$T/a/ck" 2>&1)
check plain_dump test $? -eq 0
out=$(as restore job ok 2>&1)
check plain_restore test $? -eq 0
echo "# $out"
pid=$(job_pid ok)
track_pid "$pid"
n=$(last_count ok)
check plain_counts_on wait_for 10 counted_past ok "$n"
check plain_owner_ids grep -Eq "^Uid:\s+$uid\s+$uid\s+$uid\s+$uid$" /proc/$pid/status
check plain_no_caps grep -Eq '^CapEff:\s+0+$' /proc/$pid/status
check plain_no_perm_caps grep -Eq '^CapPrm:\s+0+$' /proc/$pid/status
check plain_no_amb_caps grep -Eq '^CapAmb:\s+0+$' /proc/$pid/status
check plain_dir_back_to_owner test "$(stat -c %u "$T/a/ck")" = "$uid"
check plain_no_immutable_left sh -c "! lsattr '$T/a/ck' 2>/dev/null | grep -q -- '----i'"
as kill ok >/dev/null 2>&1
sleep 0.5

# ---- The attacks: swap what the job had open for root's files, then restore.
attack() { # NAME SETUP-COMMAND
	local name=$1 cmd=$2 pid
	setup_files
	as exec -i "$name" -w "$T/a" "exec $PY $T/work.py $T/a sock" >/dev/null || die "exec $name"
	track_pid "$(job_pid "$name")"
	wait_for 10 counted_past "$name" 3 || die "$name not counting"
	as dump job "$name" -d "$T/a/ck" >/dev/null 2>&1 || die "dump $name"
	au sh -c "$cmd"
	out=$(as restore job "$name" 2>&1)
	rc=$?
	echo "# $name: exit $rc: $out"
	pid=$(job_pid "$name")
	[ "$rc" = 0 ] && track_pid "$pid"
	check ${name}_root_files_untouched test "$(sum_root)" = "$before"
	if [ "$rc" = 0 ] && alive "$pid"; then
		check ${name}_no_root_file_open sh -c "! ls -l /proc/$pid/fd /proc/$pid/map_files 2>/dev/null | grep -q '$T/root'"
	else
		check ${name}_refused test "$rc" -ne 0
	fi
	check ${name}_no_root_owned_dir test "$(stat -c %u "$T/a/ck")" = "$uid"
	as kill "$name" >/dev/null 2>&1
	sleep 0.3
}
CASE=attacks
attack applog "ln -sf '$T/rootfile' '$T/a/app.log'"
attack mapping "ln -sf '$T/rootmap' '$T/a/shared.dat'"
attack socket "mv '$T/a/sockdir' '$T/a/sockdir2'; ln -s '$T/rootdir' '$T/a/sockdir'"
check root_file_still_root test "$(stat -c %u:%a "$T/rootfile")" = "0:644"
check root_dir_still_root test "$(stat -c %u "$T/rootdir")" = 0
finish
