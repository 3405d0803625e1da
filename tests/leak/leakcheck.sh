#!/usr/bin/env bash
# leakcheck.sh [CYCLES]: dump and restore one job CYCLES times (default 50),
# alternating plain and streamed dumps, against a stasisd built with
# ASan+UBSan+LSan (make SAN=1 all: build-asan/), then count what leaked:
#   - descriptors: entries of /proc/PID/fd of the daemon, before and after
#   - threads and RSS of the daemon, before and after
#   - zombies: children of the daemon in state Z; and any child left at all
#   - memory: LeakSanitizer reports of the daemon (at its exit) and of every
#     sanitized streamer it ran (at each exit), from ASAN_OPTIONS log_path
# Prints one "leak NAME: VALUE" line per figure and exits non-zero when a
# descriptor, thread, zombie or leak report is found.
set -u
cycles=${1:-50}
repo=$(cd "$(dirname "$0")/../.." && pwd)
asan=${STASIS_ASAN_BUILD:-$repo/build-asan}
rel=${STASIS_BUILD:-$repo/build}
criu=${STASIS_CRIU:-/usr/local/libexec/stasis/criu}
T=$(mktemp -d /tmp/stasis-leak.XXXXXX)
chmod 755 "$T"
dpid=
cleanup() {
	[ -n "$jpid" ] && kill -9 "$jpid" 2>/dev/null
	[ -n "$dpid" ] && kill -9 "$dpid" 2>/dev/null
	[ -n "${KEEP_T:-}" ] || rm -rf "$T"
}
jpid=
trap cleanup EXIT
[ -x "$asan/stasisd" ] && [ -x "$asan/stasis-streamer" ] ||
	{ echo "leak: build the sanitized programs first: make SAN=1 all" >&2; exit 2; }

export STASIS_SOCKET=$T/sock STASIS_STATE_DIR=$T/state STASIS_CRIU=$criu
# A small quarantine, so that RSS reflects what the daemon holds, not ASan.
export ASAN_OPTIONS=detect_leaks=1:log_path=$T/asan:abort_on_error=0:quarantine_size_mb=4
export UBSAN_OPTIONS=print_stacktrace=1:log_path=$T/ubsan
cli() { ASAN_OPTIONS= "$rel/stasis" "$@"; }

"$asan/stasisd" >"$T/daemon.out" 2>&1 &
dpid=$!
for _ in $(seq 100); do cli daemon status >/dev/null 2>&1 && break; sleep 0.1; done
cli daemon status >/dev/null 2>&1 || { echo "leak: daemon did not start" >&2; cat "$T/daemon.out" >&2; exit 1; }

nfd() { ls "/proc/$dpid/fd" | wc -l; }
nthreads() { awk '/^Threads:/{print $2}' "/proc/$dpid/status"; }
rss_kb() { awk '/^VmRSS:/{print $2}' "/proc/$dpid/status"; }
children() { ps -o pid=,stat= --ppid "$dpid" | awk -v j="$jpid" '$1 != j'; }
zombies() { ps -o stat= --ppid "$dpid" | grep -c '^Z'; }

cli exec -i leak -w "$T" "exec $rel/tests/bin/memhog --size 16M --mix mixed" >/dev/null ||
	{ echo "leak: exec failed" >&2; exit 1; }
for _ in $(seq 100); do cli logs leak | grep -q '^ready ' && break; sleep 0.1; done
jpid=$(cli ps --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["pid"])')

# cycle N: one dump (streamed on odd N) into the same dir, then a restore.
cycle() {
	local args=(--force)
	[ $(($1 % 2)) = 1 ] && args+=(--stream 2)
	cli dump job leak -d "$T/ck" "${args[@]}" >/dev/null &&
		cli restore job leak >/dev/null
}
# Two warm-up cycles: the daemon's first operations allocate lasting state.
cycle 1 && cycle 2 || { echo "leak: warm-up cycles failed" >&2; exit 1; }
sleep 1
fd0=$(nfd) th0=$(nthreads) rss0=$(rss_kb)
failed=0
for i in $(seq 1 "$cycles"); do
	cycle "$i" || { failed=$((failed + 1)); echo "leak: cycle $i failed" >&2; }
done
sleep 2 # watch threads of the last restore settle
fd1=$(nfd) th1=$(nthreads) rss1=$(rss_kb) z=$(zombies)
left=$(children | wc -l)
cli kill leak >/dev/null
ls -l "/proc/$dpid/fd" >"$T/fds.after" 2>/dev/null
kill -TERM "$dpid"
wait "$dpid"
drc=$?
dpid=
verify_ok=$(grep -c ' ok$' "$T/state/logs/leak.log" 2>/dev/null || true)
reports=$(cat "$T"/asan.* 2>/dev/null | grep -c 'ERROR: LeakSanitizer' || true)
leaked=$(cat "$T"/asan.* 2>/dev/null | sed -n 's/^SUMMARY: AddressSanitizer: \([0-9]*\) byte(s) leaked.*/\1/p' |
	awk '{s += $1} END {print s + 0}')
other=$(cat "$T"/asan.* "$T"/ubsan.* 2>/dev/null | grep -c 'ERROR: AddressSanitizer\|runtime error' || true)

echo "leak cycles: $cycles dump+restore (half streamed), $failed failed"
echo "leak daemon fds: $fd0 before, $fd1 after"
echo "leak daemon threads: $th0 before, $th1 after"
echo "leak daemon rss_kb: $rss0 before, $rss1 after"
echo "leak zombies: $z; other children left: $((left - z))"
echo "leak lsan reports: $reports ($leaked bytes); other sanitizer errors: $other"
echo "leak daemon exit: $drc"
if [ "$reports" -gt 0 ] || [ "$other" -gt 0 ]; then
	cat "$T"/asan.* "$T"/ubsan.* 2>/dev/null | grep -A12 'ERROR\|runtime error' | head -80 >&2
fi
[ "$failed" -eq 0 ] && [ "$fd1" -le "$fd0" ] && [ "$th1" -le "$th0" ] && [ "$z" -eq 0 ] &&
	[ "$left" -eq 0 ] && [ "$reports" -eq 0 ] && [ "$other" -eq 0 ]
