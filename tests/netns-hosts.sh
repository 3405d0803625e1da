# netns-hosts.sh: two (or more) "hosts" on one machine for the migration tests.
# Source it after tests/lib.sh.
#
# A host is a tree of processes in its own network, PID and mount namespace,
# created by the test (unshare), whose PID 1 is tests/helpers/nsinit. Inside,
# /var/lib/stasis and /run/stasis are private mounts (a directory under $T, or
# a size-limited tmpfs for the disk-full case), so two daemons use the usual
# paths without sharing files, and each host numbers its PIDs from 1, so a job
# restored on the other host can keep its PID. Everything else of the file
# system (the workload's files, /tmp) is shared, like shared storage.
# Hosts are joined by a veth pair whose ends exist only inside the two
# namespaces: the machine's own network is never touched.
#
#   host_up NAME IP [LIB_TMPFS_SIZE]   create a host; IP is its veth address (10.77.0.x)
#   hosts_link A B                     veth pair between A and B (call once, after both);
#                                      host_link_down/host_link_up A B cut and mend it
#   host_exec NAME CMD...              run CMD inside NAME (no stray fds inherited)
#   host_bg NAME OUTFILE CMD...        same, in the background, output appended to
#                                      OUTFILE; sets $host_bg_pid to CMD's PID as the
#                                      test's own namespace sees it
#   host_daemon NAME [ARGS...]         start stasisd inside NAME, wait for its socket
#   host_daemon_kill NAME [SIG]        signal NAME's daemon (default KILL) and reap it
#   host_stasis NAME ARGS...           the CLI inside NAME
#   host_pid_base NAME N               next PIDs in NAME start above N
#   host_ip NAME / host_init NAME      its address / its PID 1 as seen from outside
#   hosts_bridge HUB HOST...           a bridge in HUB joining HUB and every HOST (a
#                                      small network of several hosts, like a switch)
#   host_mount NAME SRC DST            bind SRC over DST in NAME's mount namespace only
#   host_take_pid NAME PID             a process of NAME holds PID (NAME's numbering; it
#                                      is its own session: `host_exec NAME kill PID` frees it)
#   host_pid_holder NAME PID           a process of NAME whose PID, group or session is
#                                      PID (nothing if PID is free for a restore)
#   hosts_down                         kill every host (registered with at_exit)
#   migration_pair, job_pid, job_status  the setup and queries of t_migrate_*.sh
# Everything about a host lives in $T/hosts/NAME (daemon.log, lib/, ...).

NS_PREFIX=10.77.0
_hosts=()

# Run "$@" with only fds 0-2: an fd inherited from the test runner points into
# the runner's mount namespace, and CRIU refuses to dump a job holding one.
_nofds() {
	local fd
	for fd in $(ls /proc/$BASHPID/fd); do
		[ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null
	done
	exec "$@"
}

# nsenter ($1, once the subshell exec'ed it) has forked its child: the
# subshell's own short-lived children ($(ls) in _nofds) must not count.
_has_children() {
	[ "$(cat "/proc/$1/comm" 2>/dev/null)" = nsenter ] && [ -n "$(_children "$1")" ]
}
_children() { local c; c=$(cat "/proc/$1/task/$1/children" 2>/dev/null); echo $c; }

host_up() {
	local name=$1 ip=$2 size=${3:-} d=$T/hosts/$1 u init libmount
	mkdir -p "$d/lib" /var/lib/stasis /run/stasis
	chmod 0755 "$d"
	if [ -n "$size" ]; then
		libmount="mount -t tmpfs -o size=$size,mode=0755 stasis-lib /var/lib/stasis"
	else
		libmount="mount --bind $d/lib /var/lib/stasis"
	fi
	(_nofds unshare --net --pid --mount --fork --mount-proc --propagation private \
		bash -c "$libmount && mount -t tmpfs -o mode=0755 stasis-run /run/stasis &&
			 ip link set lo up && exec '$HELPERS/nsinit' '$d/ready'" \
		</dev/null >"$d/init.log" 2>&1) &
	u=$!
	wait_for 10 test -s "$d/ready" || { cat "$d/init.log" >&2; die "host $name did not start"; }
	init=$(_children "$u")
	[ -n "$init" ] || die "host $name: no init process under unshare $u"
	echo "$init" >"$d/init.pid"
	echo "$ip" >"$d/ip"
	echo "$u" >"$d/unshare.pid"
	_hosts+=("$name")
	[ ${#_hosts[@]} -eq 1 ] && at_exit hosts_down
	return 0
}

# Make NAME's next PIDs start above N. On two real hosts a job's PID may be
# taken on the target too (the restore then fails with "File exists"); the
# tests start jobs high on the source so that the target's own low PIDs
# (daemon, CRIU, streamer) never collide with them.
host_pid_base() {
	host_exec "$1" sh -c "echo $2 >/proc/sys/kernel/ns_last_pid"
}

# host_take_pid HOST PID: set the next PID just below PID and fork until the
# child gets it; that child (a sleep, a session of its own) holds it.
host_take_pid() {
	[ -f "$T/take.py" ] || cat >"$T/take.py" <<'PY'
import os, sys
target = int(sys.argv[1])
for _ in range(300):
    if os.path.exists('/proc/%d' % target):
        sys.exit(1)
    with open('/proc/sys/kernel/ns_last_pid', 'w') as f:
        f.write(str(target - 1))
    pid = os.fork()
    if pid == 0:
        if os.getpid() == target:
            os.setsid()
            os.execv('/bin/sleep', ['sleep', '1000'])
        os._exit(0)
    os.waitpid(pid, 0)
    if pid == target:
        sys.exit(0)
sys.exit(1)
PY
	host_bg "$1" "$T/take.out" $PY "$T/take.py" "$2" || return 1
	track_pid "$host_bg_pid"
	wait_for 10 host_exec "$1" sh -c "test \"\$(cat /proc/$2/comm 2>/dev/null)\" = sleep"
}

# host_pid_holder HOST PID: what keeps a restore from giving PID back on HOST.
host_pid_holder() {
	host_exec "$1" $PY -c 'import os, sys
for d in filter(str.isdigit, os.listdir("/proc")):
    try:
        st = open("/proc/%s/stat" % d).read()
    except OSError:
        continue
    pgrp, sid = st[st.rindex(")") + 2:].split()[2:4]
    if sys.argv[1] in (d, pgrp, sid):
        print(d)
        break' "$2"
}
host_pid_free() { [ -z "$(host_pid_holder "$1" "$2")" ]; }

host_init() { cat "$T/hosts/$1/init.pid"; }
host_ip() { cat "$T/hosts/$1/ip"; }

host_exec() {
	local name=$1
	shift
	(_nofds nsenter -t "$(host_init "$name")" -n -p -m -- "$@")
}

host_bg() {
	local name=$1 out=$2 n
	shift 2
	# Redirect inside the host: a /dev/null opened out here belongs to another
	# mount namespace, and CRIU cannot dump a job holding it.
	(_nofds nsenter -t "$(host_init "$name")" -n -p -m -- \
		sh -c 'out=$1; shift; exec "$@" </dev/null >>"$out" 2>&1' sh "$out" "$@") &
	n=$!
	# nsenter forks the command into the PID namespace: wait for that child.
	host_bg_pid=
	wait_for 20 _has_children $n || return 1
	host_bg_pid=$(_children $n)
}

hosts_link() {
	local a=$1 b=$2
	nsenter -t "$(host_init "$a")" -n ip link add "$a-$b" type veth peer name "$b-$a" \
		netns "$(host_init "$b")" || die "veth between $a and $b"
	host_exec "$a" ip addr add "$(host_ip "$a")/24" dev "$a-$b"
	host_exec "$b" ip addr add "$(host_ip "$b")/24" dev "$b-$a"
	host_link_up "$a" "$b"
}

# hosts_bridge HUB HOST...: one network for all of them. HUB holds a bridge
# (its own address on it); each HOST gets a veth pair whose HUB end is a port
# of the bridge, so every host reaches every other one, as on a switch.
hosts_bridge() {
	local hub=$1 h
	shift
	host_exec "$hub" ip link add br0 type bridge || die "bridge in $hub"
	host_exec "$hub" ip addr add "$(host_ip "$hub")/24" dev br0
	host_exec "$hub" ip link set br0 up
	for h in "$@"; do
		nsenter -t "$(host_init "$hub")" -n ip link add "$hub-$h" type veth peer name \
			"$h-$hub" netns "$(host_init "$h")" || die "veth between $hub and $h"
		host_exec "$hub" ip link set "$hub-$h" master br0
		host_exec "$h" ip addr add "$(host_ip "$h")/24" dev "$h-$hub"
		host_link_up "$hub" "$h"
	done
}

# host_mount NAME SRC DST: DST shows SRC inside NAME only (e.g. a node's own spool).
host_mount() { host_exec "$1" mount --bind "$2" "$3"; }

# host_link_up A B / host_link_down A B: A's end of the A-B link (interface "A-B").
host_link_up() { host_exec "$1" ip link set "$1-$2" up && host_exec "$2" ip link set "$2-$1" up; }
host_link_down() { host_exec "$1" ip link set "$1-$2" down; }

# migration_pair [B_LIB_TMPFS_SIZE]: the usual setup of the migration tests.
# Hosts a (10.77.0.1) and b (10.77.0.2), linked; a shared token in $T/token;
# stasisd on both, listening on 10.77.0.2:7070 ($TARGET, b) and 10.77.0.1:7070
# ($SOURCE, a); a's next PIDs above 5000; $T/work, a directory every job may
# use (shared by both hosts).
TARGET=10.77.0.2:7070
SOURCE=10.77.0.1:7070
migration_pair() {
	head -c 32 /dev/urandom | base64 >"$T/token"
	chmod 600 "$T/token"
	host_up a 10.77.0.1
	host_up b 10.77.0.2 "${1:-}"
	hosts_link a b
	host_daemon a --listen "$SOURCE" --token-file "$T/token"
	host_daemon b --listen "$TARGET" --token-file "$T/token"
	host_pid_base a 5000
	mkdir -p "$T/work"
	chmod 0777 "$T/work"
}

# user_migration_pair USER: migration_pair for a test acting as USER (a throwaway
# user made here, removed on exit; $uid and $gid set), whom the migration policy
# of both daemons lets send anywhere and land as themselves.
user_migration_pair() {
	make_user "$1"
	at_exit userdel "$1"
	uid=$(id -u "$1")
	gid=$(id -g "$1")
	printf 'send %s to *\nreceive * as same\n' "$1" >"$T/migrate.conf"
	export STASIS_MIGRATE_CONF=$T/migrate.conf
	migration_pair
}

# job_pid HOST ID: the job's PID as HOST's daemon reports it.
job_pid() { host_stasis "$1" ps --json 2>/dev/null | $PY -c "
import json, sys
for j in json.load(sys.stdin):
    if j['id'] == '$2': print(j['pid'])"; }
# job_status HOST ID: JOB_RUNNING, JOB_MIGRATED, ... or nothing.
job_status() { host_stasis "$1" ps --json 2>/dev/null | $PY -c "
import json, sys
for j in json.load(sys.stdin):
    if j['id'] == '$2': print(j['status'])"; }

host_stasis() {
	local name=$1
	shift
	host_exec "$name" env STASIS_SOCKET=/run/stasis/stasisd.sock "$STASIS_BUILD/stasis" "$@"
}

host_daemon() {
	local name=$1 d=$T/hosts/$1
	shift
	host_bg "$name" "$d/daemon.log" "$STASIS_BUILD/stasisd" "$@" ||
		die "host $name: stasisd did not start"
	echo "$host_bg_pid" >"$d/daemon.pid"
	track_pid "$host_bg_pid"
	# Until it answers: a socket left by a killed daemon is no sign of life.
	wait_for 10 host_stasis "$name" ps >/dev/null 2>&1 ||
		{ cat "$d/daemon.log" >&2; die "host $name: the daemon does not answer"; }
}

host_daemon_kill() {
	local name=$1 sig=${2:-KILL} pid
	pid=$(cat "$T/hosts/$name/daemon.pid")
	kill -"$sig" "$pid" 2>/dev/null
	wait_for 10 dead "$pid"
}

hosts_down() {
	local h u
	for h in "${_hosts[@]}"; do
		u=$(cat "$T/hosts/$h/unshare.pid" 2>/dev/null)
		# Killing PID 1 of a namespace kills every process in it.
		kill -9 "$(host_init "$h")" 2>/dev/null
		[ -n "$u" ] && wait_for 5 dead "$u"
	done
	_hosts=()
}
