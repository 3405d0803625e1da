#!/usr/bin/env bash
# migrate-1g.sh - time the migration of a ~1 GiB job between the two
# namespace hosts of tests/netns-hosts.sh, split into dump, transfer, verify
# and restore, next to a local streamed dump + restore of the same job.
#
#   bench/migrate-1g.sh [RUNS] [SIZE] [MIX]      (default 3 1G mixed)
#
# Needs root, the provisioned CRIU and the release build (make). Prints one
# line per run and the medians. Not part of the test suite's pass/fail.
set -u
runs=${1:-3} size=${2:-1G} mix=${3:-mixed}
. "$(dirname "$0")/../tests/lib.sh"
. "$TESTS_DIR/netns-hosts.sh"
migration_pair
host_pid_base b 20000

field() { $PY -c "import json,sys; d=json.load(open('$1')); print($2)"; }
start_job() {
	host_stasis a exec --id "$1" -w "$T/work" -- "exec $HELPERS/memhog --size $size --mix $mix" \
		>/dev/null || exit 1
	ready() { grep -q '^ready ' "$T/hosts/a/lib/logs/$1.log" 2>/dev/null; }
	wait_for 300 ready "$1" || { echo "job $1 did not get ready" >&2; exit 1; }
}

echo "# $size $mix memhog, --stream 2, lz4; $(nproc) CPUs; load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-4s %6s %6s %6s %10s %9s %6s %8s %6s %6s | %10s %13s\n' run bytes dump criu \
	xfer_total xfer_tail verify restore r_criu frozen local_dump local_restore
for i in $(seq 1 "$runs"); do
	# Local baseline: streamed dump then restore on host a, same job size.
	start_job "l$i"
	mkdir -p "$T/ck$i"
	host_stasis a dump job "l$i" -d "$T/ck$i" --stream 2 --json >"$T/ld$i.json" || exit 1
	host_stasis a restore job "l$i" --json >"$T/lr$i.json" || exit 1
	host_stasis a kill "l$i" --signal KILL >/dev/null
	ld=$(field "$T/ld$i.json" "d['stats']['CRIUDuration']+d['stats']['CheckpointFileStats']['Duration']+d['stats']['PrepareDuration']")
	lr=$(field "$T/lr$i.json" "d['stats']['CRIUDuration']+d['stats']['PrepareDuration']")
	rm -rf "$T/ck$i"
	# Migration a -> b.
	start_job "m$i"
	host_stasis a migrate job "m$i" --to "$TARGET" --token-file "$T/token" --json \
		>"$T/m$i.json" || exit 1
	t="d['timings']"
	printf '%-4s %5sM %6s %6s %10s %9s %6s %8s %6s %6s | %10s %13s\n' "$i" \
		"$(field "$T/m$i.json" "d['bytes']>>20")" "$(field "$T/m$i.json" "$t['dump_ms']")" \
		"$(field "$T/m$i.json" "$t['criu_ms']")" "$(field "$T/m$i.json" "$t['transfer_ms']")" \
		"$(field "$T/m$i.json" "$t['transfer_after_dump_ms']")" \
		"$(field "$T/m$i.json" "$t['verify_ms']")" "$(field "$T/m$i.json" "$t['restore_ms']")" \
		"$(field "$T/m$i.json" "d['target_restore_stats']['CRIUDuration']")" \
		"$(field "$T/m$i.json" "$t['frozen_ms']")" "$ld" "$lr"
	host_stasis b kill "m$i" --signal KILL >/dev/null
	host_stasis b rm "m$i" >/dev/null 2>&1
done
echo "# milliseconds; frozen = from the start of the dump to the target's answer;"
echo "# r_criu = CRIU's part of the target's restore; local_* = stasis dump/restore on one host"
