#!/usr/bin/env bash
# user-restore.sh - a user's job restored as users type it, against plain CRIU
# in the same run: the job (a memhog tree) is an unprivileged user's, dumped
# once with `stasis dump job ID -d DIR --stream 2`; each round then restores
# it three ways, interleaved with plain CRIU restoring a root tree of the same
# size (`criu restore -D DIR -d` of a `criu dump` of it):
#   plain    criu restore -d                       (wall)
#   criu     stasis restore job ID --stream 2 --fill criu   (CRIU's own copy)
#   auto     stasis restore job ID --stream 2               (the default)
#   lazy     stasis restore job ID --stream 2 --lazy        (to running; to every page in)
#
#   bench/user-restore.sh [RUNS] [SIZE] [PROCS]      (default 3 2G 8)
#
# Needs root, the provisioned CRIU and the release build (make). A private
# stasisd (as the tests run it), CRIU in the same breakpoint mode on both
# sides (tests/breakpoints.sh), each plain CRIU run bounded (900 s). The
# page cache is dropped before each restore; every restored tree verifies its
# memory. Prints one line per restore, then medians (min-max) and ratios to
# plain. Not part of the tests.
set -u
. "$(dirname "$0")/subreaper.sh"
runs=${1:-3} size=${2:-2G} procs=${3:-8}
. "$(dirname "$0")/../tests/lib.sh"
. "$REPO/tests/helpers/daemon_lib.sh"
. "$REPO/tests/integration/fault_lib.sh"
daemon_up
LOG=$STASIS_STATE_DIR/stasisd.log
U=stasis_bench_u
make_user $U
as() { runuser -u $U -- env STASIS_SOCKET="$STASIS_SOCKET" "$STASIS_BUILD/stasis" "$@"; }
mkdir -p "$T/u" "$T/p" && chown $U "$T/u"
hog="$HELPERS/memhog --size $size --mix mixed --procs $procs"

# The user's job, dumped once (streamed, as users do).
as exec -i ub -w "$T/u" "exec $hog" >/dev/null || exit 1
wait_for 600 sh -c "'$STASIS_BUILD/stasis' logs ub | grep -q '^ready '" || exit 1
upid=$(job_pid ub)
track_pid "$upid"
as dump job ub -d "$T/u/ck" --stream 2 >/dev/null || { echo "user dump failed"; exit 1; }

# Plain CRIU's tree: root's, the same program and size, dumped once.
# memhog makes its own session; no fd of ours may go with it (CRIU restores
# open files, and one of ours may have changed by then).
$PY -c 'import os, sys; os.closerange(3, 65536); os.execv(sys.argv[1], sys.argv[1:])' \
	$hog --log "$T/p/memhog.log" </dev/null >/dev/null 2>&1 &
ppid=$!
wait_for 600 grep -q '^ready ' "$T/p/memhog.log" || exit 1
track_pid "$ppid"
ptree=$(pgrep -s "$ppid" | tr '\n' ' ')
timeout 900 "$STASIS_CRIU" dump -t "$ppid" -D "$T/p" -o dump.log || { echo "plain dump failed"; exit 1; }
echo "# $size mixed memhog, $procs processes; $(nproc) CPUs; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# CRIU breakpoints: ${CRIU_FAULT:+off (CRIU_FAULT=$CRIU_FAULT)}${CRIU_FAULT:-on}"
echo "# user's shards: $(du -sm "$T/u/ck" | cut -f1) MiB; plain images: $(du -sm "$T/p" | cut -f1) MiB"

fresh() {
	local p
	for p in "$@"; do
		wait_for 60 test ! -d "/proc/$p" || { echo "pid $p not freed"; exit 1; }
	done
	sync
	echo 3 >/proc/sys/vm/drop_caches
}

plain_one() {
	local t0 t1 n
	fresh $ptree
	t0=$(date +%s.%N)
	timeout 900 "$STASIS_CRIU" restore -D "$T/p" -d -o restore.log ||
		{ echo "plain restore failed: $(tail -3 "$T/p/restore.log")"; exit 1; }
	t1=$(date +%s.%N)
	n=$(grep -c '^verify ' "$T/p/memhog.log")
	kill -USR1 "$ppid"
	wait_for 60 sh -c "[ \$(grep -c '^verify ' '$T/p/memhog.log') -gt $n ]" &&
		grep '^verify ' "$T/p/memhog.log" | tail -1 | grep -q ' ok$' ||
		{ echo "# plain: memory did NOT verify"; exit 1; }
	echo "plain $(awk "BEGIN { printf \"%.3f\", $t1 - $t0 }") -"
	kill -9 -- "-$ppid" 2>/dev/null
}

# stasis_one KIND ARGS...: restore the user's job; "KIND to_running every_page_in".
stasis_one() {
	local kind=$1
	shift
	fresh "$upid"
	$PY - "$LOG" "$STASIS_SOCKET" "$STASIS_BUILD/stasis" $U "$kind" "$@" <<'PYEOF' || exit 1
import json, subprocess, sys, time
log, sock, stasis, user, kind = sys.argv[1:6]
argv = sys.argv[6:]
def done():
    return open(log, "rb").read().count(b"job ub: lazy restore complete")
before = done()
t0 = time.monotonic()
p = subprocess.run(["runuser", "-u", user, "--", "env", "STASIS_SOCKET=" + sock, stasis,
                    "restore", "job", "ub", "--stream", "2", "--json"] + argv,
                   capture_output=True, text=True)
t1 = time.monotonic()
if p.returncode:
    sys.exit("restore failed: " + p.stdout + p.stderr)
r = json.loads(p.stdout[p.stdout.index("{"):])
t2 = t1
if "lazy" in r and r["lazy"].get("pending"):
    while done() == before:
        if time.monotonic() - t0 > 300:
            sys.exit("no 'lazy restore complete' in 300 s")
        time.sleep(0.005)
    t2 = time.monotonic()
st = r.get("stats") or {}
print("%s %.3f %.3f fill=%s prepare=%.3f criu=%.3f" % (
    kind, t1 - t0, t2 - t0, "lazy" if "lazy" in r else st.get("Fill", "criu"),
    st.get("PrepareDuration", 0) / 1000, st.get("CRIUDuration", 0) / 1000))
PYEOF
	verified ub || { echo "# $kind: memory did NOT verify"; exit 1; }
	sd kill ub >/dev/null
}

for i in $(seq 1 "$runs"); do
	plain_one
	stasis_one criu --fill criu
	stasis_one auto
	stasis_one lazy --lazy
done | tee "$T/out"
$PY - "$T/out" <<'PYEOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) >= 3 and f[0] in ("plain", "criu", "auto", "lazy"):
        rows.setdefault(f[0], []).append((float(f[1]), float(f[2]) if f[2] != "-" else float(f[1])))
base = statistics.median(x[0] for x in rows.get("plain", [(1, 1)]))
for k in ("plain", "criu", "auto", "lazy"):
    v = rows.get(k)
    if not v:
        continue
    a, b = [x[0] for x in v], [x[1] for x in v]
    ma, mb = statistics.median(a), statistics.median(b)
    print("# %-5s to running %.3f s (%.3f-%.3f) %.2fx plain; every page in %.2f s (%.2f-%.2f) "
          "%.2fx plain; %d runs" % (k, ma, min(a), max(a), ma / base, mb, min(b), max(b),
                                    mb / base, len(v)))
PYEOF
