#!/usr/bin/env bash
# migrate-lazy.sh - how long a job is frozen by an eager migration (stasis
# migrate) and by a post-copy one (stasis migrate --lazy) of the same job
# size, in the same run, between the two namespace hosts of tests/netns-hosts.sh.
#
#   bench/migrate-lazy.sh [RUNS] [SIZE] [MIX]      (default 1 1G mixed)
#
# Needs root, the provisioned CRIU and the release build (make). Raises
# fs.pipe-max-size to 4 MiB for the run where stasisd lacks CAP_SYS_RESOURCE
# (docs/migration.md). Each lazy run's memory is verified on the target. Not
# part of the test suite's pass/fail.
set -u
runs=${1:-1} size=${2:-1G} mix=${3:-mixed}
. "$(dirname "$0")/../tests/lib.sh"
. "$TESTS_DIR/netns-hosts.sh"
pipe_max=$(cat /proc/sys/fs/pipe-max-size)
if [ "$pipe_max" -lt 4194304 ]; then
	echo 4194304 >/proc/sys/fs/pipe-max-size || exit 1
	at_exit "echo $pipe_max >/proc/sys/fs/pipe-max-size"
fi
migration_pair
host_pid_base b 20000

field() { $PY -c "import json,sys; d=json.load(open('$1')); print($2)"; }
start_job() {
	host_stasis a exec --id "$1" -w "$T/work" -- "exec $HELPERS/memhog --size $size --mix $mix" \
		>/dev/null || exit 1
	ready() { grep -q '^ready ' "$T/hosts/a/lib/logs/$1.log" 2>/dev/null; }
	wait_for 300 ready "$1" || { echo "job $1 did not get ready" >&2; exit 1; }
}

echo "# $size $mix memhog; $(nproc) CPUs; load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-4s %-6s %9s %9s %11s %15s %9s %s\n' run mode frozen to_run restore pages_complete \
	total sent
for i in $(seq 1 "$runs"); do
	start_job "e$i"
	host_stasis a migrate job "e$i" --to "$TARGET" --token-file "$T/token" --json \
		>"$T/e$i.json" || { cat "$T/e$i.json"; exit 1; }
	t="d['timings']"
	printf '%-4s %-6s %9s %9s %11s %15s %9s %s\n' "$i" eager \
		"$(field "$T/e$i.json" "$t['frozen_ms']")" "$(field "$T/e$i.json" "$t['total_ms']")" \
		"$(field "$T/e$i.json" "$t['restore_ms']")" "$(field "$T/e$i.json" "$t['total_ms']")" \
		"$(field "$T/e$i.json" "$t['total_ms']")" \
		"$(field "$T/e$i.json" "str(d['bytes']>>20)+'M shards'")"
	host_stasis b kill "e$i" --signal KILL >/dev/null
	start_job "z$i"
	sum=$(awk '/^ready / { print $2; exit }' "$T/hosts/a/lib/logs/z$i.log")
	host_stasis a migrate job "z$i" --to "$TARGET" --lazy --token-file "$T/token" --json \
		>"$T/z$i.json" || { cat "$T/z$i.json"; exit 1; }
	printf '%-4s %-6s %9s %9s %11s %15s %9s %s\n' "$i" lazy \
		"$(field "$T/z$i.json" "$t['frozen_ms']")" "$(field "$T/z$i.json" "$t['to_running_ms']")" \
		"$(field "$T/z$i.json" "$t['restore_ms']")" \
		"$(field "$T/z$i.json" "$t['pages_complete_ms']")" \
		"$(field "$T/z$i.json" "$t['total_ms']")" \
		"$(field "$T/z$i.json" "str(d['bytes']>>10)+'K images, '+str(d['lazy_bytes']>>20)+'M pages'")"
	host_stasis b kill "z$i" --signal USR1 >/dev/null
	ok() { grep -q "^verify $sum ok" "$T/hosts/b/lib/logs/z$i.log"; }
	wait_for 60 ok || echo "# run $i: the lazily migrated job's memory did NOT verify"
	host_stasis b kill "z$i" --signal KILL >/dev/null
done
echo "# milliseconds; frozen = from the start of the dump until the job runs on the target;"
echo "# to_run = request start until it runs there; pages_complete = until every page is there"
echo "# (eager: everything is there when it runs)"
