# shellcheck shell=bash
# fault_lib.sh: helpers for the t_fault_*.sh fault-injection tests (source
# after tests/lib.sh and tests/helpers/daemon_lib.sh).
#
# Faults are injected at a known point, not by timing: the streamer serving a
# dump or restore is stopped (SIGSTOP) once the operation is provably under
# way, so CRIU blocks on its pipe; then the process under test is SIGKILLed
# and the streamer continued.

# hog ID SIZE: a memhog job holding SIZE of random memory; waits until ready.
hog() {
	sd exec -i "$1" -w "$T" "exec $HELPERS/memhog --size $2 --mix random" >/dev/null ||
		die "exec $1"
	wait_for 30 sh -c "'$STASIS_BUILD/stasis' logs $1 | grep -q '^ready '" || die "$1 not ready"
	track_pid "$(job_pid "$1")" # restores bring it back under the same PID
}

# verified ID: the job's process re-checksums its memory and finds it intact.
verified() {
	local pid n
	pid=$(job_pid "$1")
	n=$(sd logs "$1" | grep -c '^verify ' || true)
	kill -USR1 "$pid" 2>/dev/null || return 1
	wait_for 30 sh -c "[ \$('$STASIS_BUILD/stasis' logs $1 | grep -c '^verify ') -gt $n ]" ||
		return 1
	sd logs "$1" | grep '^verify ' | tail -1 | grep -q ' ok$'
}

# find_proc PROG DIR WORD...: pids of the processes whose argv[0] ends in PROG,
# whose -D argument is DIR (the daemon passes /proc/self/fd/N: it is resolved)
# and whose arguments include every WORD.
find_proc() {
	$PY - "$@" <<'PYEOF'
import os, sys
prog, d, want = sys.argv[1], os.path.realpath(sys.argv[2]), sys.argv[3:]
found = []
def resolve(pid, a):
    a = a.replace('/proc/self/', '/proc/%s/' % pid)
    return os.path.realpath(os.readlink(a) if a.startswith('/proc/') else a)
for p in os.listdir('/proc'):
    if not p.isdigit():
        continue
    try:
        args = open('/proc/%s/cmdline' % p, 'rb').read().split(b'\0')
        args = [a.decode(errors='replace') for a in args]
        i = args.index('-D')
        if not args[0].endswith(prog) or not all(w in args for w in want):
            continue
        if resolve(p, args[i + 1]) == d:
            found.append(p)
    except (OSError, ValueError, IndexError):
        continue
# Tasks CRIU forks carry its argv until they become the restored job: keep the
# one whose parent is not itself a match.
def ppid(p):
    try:
        return open('/proc/%s/stat' % p).read().rsplit(')', 1)[1].split()[1]
    except (OSError, IndexError):
        return None
for p in found:
    if ppid(p) not in found:
        print(p)
PYEOF
}

# stop_streamer DIR MODE COND: wait (20 s at most) for the streamer of DIR in
# MODE (capture|serve|page-server), then until COND holds, then SIGSTOP it and
# print its pid. COND: "bytes:N" (its shards in DIR hold N bytes or more),
# "pid:P" (process P exists: CRIU has forked the restored task), "criu" (a
# criu restore runs), "log:FILE:REGEX" (FILE holds a match of the Python
# regular expression REGEX: a log line), or "now". With pid:, criu and log:
# the streamer runs in 2 ms steps until then.
stop_streamer() {
	$PY - "$1" "$2" "$3" <<'PYEOF'
import glob, os, re, signal, sys, time
d, mode, cond = sys.argv[1:]
end = time.time() + 20
rd = os.path.realpath(d)
def streamer():
    for p in os.listdir('/proc'):
        if not p.isdigit():
            continue
        try:
            args = open('/proc/%s/cmdline' % p, 'rb').read().decode(errors='replace').split('\0')
            if not args[0].endswith('stasis-streamer') or mode not in args:
                continue
            a = args[args.index('-D') + 1].replace('/proc/self/', '/proc/%s/' % p)
            if os.path.realpath(os.readlink(a) if a.startswith('/proc/') else a) == rd:
                return int(p)
        except (OSError, ValueError, IndexError):
            continue
def criu_running():
    for p in os.listdir('/proc'):
        try:
            args = open('/proc/%s/cmdline' % p, 'rb').read().split(b'\0')
            if args[0].endswith(b'criu') and b'restore' in args:
                return True
        except OSError:
            continue
    return False
def ready():
    if cond == 'now':
        return True
    if cond == 'criu':
        return criu_running()
    if cond.startswith('log:'):
        path, regex = cond[4:].split(':', 1)
        try:
            return re.search(regex.encode(), open(path, 'rb').read()) is not None
        except OSError:
            return False
    kind, val = cond.split(':')
    if kind == 'bytes':
        return sum(os.path.getsize(f) for f in glob.glob(d + '/img-*')) >= int(val)
    return os.path.exists('/proc/' + val)
pid = None
while time.time() < end and not pid:
    pid = streamer()
    time.sleep(0.001)
if not pid:
    sys.exit(1)
if cond.startswith('pid:') or cond.startswith('log:') or cond == 'criu':
    # Hold the streamer at once and let it run in 2 ms steps until CRIU has
    # forked the task: the window is found even on a loaded machine.
    os.kill(pid, signal.SIGSTOP)
    while time.time() < end and not ready():
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.002)
        os.kill(pid, signal.SIGSTOP)
        time.sleep(0.01)
else:
    while time.time() < end and not ready():
        time.sleep(0.0005)
    os.kill(pid, signal.SIGSTOP)
if not ready():
    os.kill(pid, signal.SIGCONT)
    sys.exit(1)
print(pid)
PYEOF
}

# stop_criu DIR PATTERN: once the dump CRIU of DIR runs, hold it and let it run
# in 2 ms steps until its DIR/dump.log holds PATTERN; then leave it stopped
# (SIGSTOP) and print its pid. Found even on a loaded machine. 20 s at most.
stop_criu() {
	$PY - "$1" "$2" <<'PYEOF'
import os, signal, sys, time
d, pat = os.path.realpath(sys.argv[1]), sys.argv[2].encode()
end = time.time() + 20
def criu():
    for p in os.listdir('/proc'):
        if not p.isdigit():
            continue
        try:
            args = open('/proc/%s/cmdline' % p, 'rb').read().decode(errors='replace').split('\0')
            if not args[0].endswith('criu') or 'dump' not in args:
                continue
            a = args[args.index('-D') + 1].replace('/proc/self/', '/proc/%s/' % p)
            if os.path.realpath(os.readlink(a) if a.startswith('/proc/') else a) == d:
                return int(p)
        except (OSError, ValueError, IndexError):
            continue
def logged():
    try:
        return pat in open(d + '/dump.log', 'rb').read()
    except OSError:
        return False
pid = None
while time.time() < end and not pid:
    pid = criu()
    time.sleep(0.001)
if not pid:
    sys.exit(1)
os.kill(pid, signal.SIGSTOP)
while time.time() < end and not logged():
    os.kill(pid, signal.SIGCONT)
    time.sleep(0.002)
    os.kill(pid, signal.SIGSTOP)
    time.sleep(0.005)
if not logged():
    os.kill(pid, signal.SIGCONT)
    sys.exit(1)
print(pid)
PYEOF
}

# criu_of DIR OP [TASK]: pid of the CRIU process running OP (dump|restore) on
# DIR. TASK: the restored task's pid, which carries CRIU's argv for a while
# and is a sibling of CRIU (--restore-sibling), not its child.
criu_of() { find_proc criu "$1" "$2" | grep -vx "${3:-0}" | head -1; }


# take_pid PID: start a process that holds PID (sleeps); prints nothing, fails
# if PID could not be had (another process got it first, every time).
take_pid() {
	local got
	got=$($PY - "$1" <<'PYEOF'
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
            fd = os.open('/dev/null', os.O_RDWR)
            for i in (0, 1, 2):
                os.dup2(fd, i)
            os.execv('/bin/sleep', ['sleep', '1000'])
        os._exit(0)
    if pid == target:
        print(pid)
        sys.exit(0)
    os.waitpid(pid, 0)
sys.exit(1)
PYEOF
) || return 1
	track_pid "$got"
}
