#!/usr/bin/env bash
# lazy-shards.sh - a lazy restore of the same job from a plain checkpoint and
# from a streamed one (pages served from the shards), interleaved, in one run:
# time to running (`stasis restore job ID --lazy` from its start to its reply)
# and to every page in (to the `lazy restore complete` line in stasisd.log).
#
#   bench/lazy-shards.sh [RUNS] [SIZE] [MIX]      (default 3 2G mixed)
#
# Needs root, the provisioned CRIU and the release build (make). A private
# stasisd (as the tests run it). The page cache is dropped before each
# restore. Every restore's memory is verified by the job. Prints one line per
# restore, then the medians (and ranges). Not part of the test suite.
set -u
runs=${1:-3} size=${2:-2G} mix=${3:-mixed}
. "$(dirname "$0")/../tests/lib.sh"
. "$REPO/tests/helpers/daemon_lib.sh"
. "$REPO/tests/integration/fault_lib.sh"
daemon_up
LOG=$STASIS_STATE_DIR/stasisd.log

sd exec -i b1 -w "$T" "exec $HELPERS/memhog --size $size --mix $mix" >/dev/null || exit 1
wait_for 300 sh -c "'$STASIS_BUILD/stasis' logs b1 | grep -q '^ready '" || exit 1
pid=$(job_pid b1)
track_pid "$pid"
sd dump job b1 -d "$T/plain" --leave-running >/dev/null || { echo "plain dump failed"; exit 1; }
sd dump job b1 -d "$T/streamed" --stream 2 >/dev/null || { echo "streamed dump failed"; exit 1; }
echo "# $size $mix memhog; $(nproc) CPUs; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# shards: $(du -sm "$T/streamed" | cut -f1) MiB; plain images: $(du -sm "$T/plain" | cut -f1) MiB"

# one KIND DIR: restore b1 lazily from DIR; prints "KIND to_running_s every_page_s".
one() {
	local kind=$1 dir=$2
	wait_for 30 test ! -d "/proc/$pid" || { echo "pid $pid not freed"; exit 1; }
	sync
	echo 3 >/proc/sys/vm/drop_caches
	$PY - "$STASIS_BUILD/stasis" "$dir" "$LOG" "$kind" <<'PYEOF' || exit 1
import json, subprocess, sys, time
stasis, d, log, kind = sys.argv[1:]
def done():
    return open(log, "rb").read().count(b"job b1: lazy restore complete")
before = done()
t0 = time.monotonic()
p = subprocess.run([stasis, "restore", "job", "b1", "-d", d, "--lazy", "--json"],
                   capture_output=True, text=True)
t1 = time.monotonic()
if p.returncode:
    sys.exit("restore failed: " + p.stdout + p.stderr)
r = json.loads(p.stdout[p.stdout.index("{"):])
while done() == before:
    if time.monotonic() - t0 > 120:
        sys.exit("no 'lazy restore complete' in 120 s")
    time.sleep(0.005)
t2 = time.monotonic()
st = r.get("stats") or {}
print("%-9s %6.3f %6.2f  resident %d MiB  stats %s" % (kind, t1 - t0, t2 - t0,
      r["lazy"]["resident_kb"] >> 10,
      {k: v for k, v in st.items() if "Duration" in k or k.endswith("_ms")}))
PYEOF
	verified b1 || { echo "# $kind: memory did NOT verify"; exit 1; }
	sd kill b1 >/dev/null
}

for i in $(seq 1 "$runs"); do
	one plain "$T/plain"
	one streamed "$T/streamed"
done | tee "$T/out"
$PY - "$T/out" <<'PYEOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) >= 3 and f[0] in ("plain", "streamed"):
        rows.setdefault(f[0], []).append((float(f[1]), float(f[2])))
for k, v in rows.items():
    a, b = [x[0] for x in v], [x[1] for x in v]
    print("# %-9s to running %.3f s (%.3f-%.3f), every page in %.2f s (%.2f-%.2f), %d runs" %
          (k, statistics.median(a), min(a), max(a), statistics.median(b), min(b), max(b), len(v)))
PYEOF
