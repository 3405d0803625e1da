#!/usr/bin/env bash
# bench/pidns.sh [RUNS] [SIZE]: dump and restore times of a job in its own PID
# namespace (exec --pid-ns) against the same job without one, in the same run
# (alternating, so both see the same machine load). A private stasisd; a
# memhog job of SIZE (default 256M, --mix mixed); plain CRIU images. Prints
# each run's CRIUDuration (ms) and the medians. Needs root, the build, CRIU.
set -eu
RUNS=${1:-5}
SIZE=${2:-256M}
REPO=$(cd "$(dirname "$0")/.." && pwd)
S=$REPO/build/stasis
T=$(mktemp -d /tmp/stasis-bench-pidns.XXXXXX)
export STASIS_SOCKET=$T/sock STASIS_STATE_DIR=$T/state
trap '"$S" daemon stop >/dev/null 2>&1; rm -rf "$T"' EXIT
"$S" daemon start >/dev/null
stat_of() { python3 -c 'import json,sys; print(json.loads(sys.stdin.read().split("stats=",1)[1])["CRIUDuration"])'; }
ready() { "$S" logs "$1" | grep -q '^ready '; }
declare -A dump rest
for i in $(seq "$RUNS"); do
	for kind in plain pidns; do
		id=$kind$i
		flag=; [ $kind = pidns ] && flag=--pid-ns
		"$S" exec -i "$id" -w "$T" $flag -- "exec $REPO/build/tests/bin/memhog --size $SIZE" >/dev/null
		for _ in $(seq 600); do ready "$id" && break; sleep 0.1; done
		d=$("$S" dump job "$id" -d "$T/ck-$id" | stat_of)
		r=$("$S" restore job "$id" | stat_of)
		"$S" rm -f "$id" >/dev/null 2>&1 || "$S" rm "$id" --force >/dev/null
		rm -rf "$T/ck-$id"
		dump[$kind]="${dump[$kind]:-} $d"
		rest[$kind]="${rest[$kind]:-} $r"
		echo "run $i $kind: dump ${d} ms, restore ${r} ms"
	done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
for kind in plain pidns; do
	echo "median $kind ($RUNS runs, $SIZE): dump $(echo "${dump[$kind]}" | median) ms," \
		"restore $(echo "${rest[$kind]}" | median) ms"
done
