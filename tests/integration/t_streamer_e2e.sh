#!/usr/bin/env bash
# stasis-streamer end to end with the provisioned CRIU: a counter, a
# multi-threaded process and a process tree (pipe + open file) are dumped with
# --stream through the streamer and restored through it; each must go on from
# where it was, its own memory checksum unchanged. Also: a streamed
# checkpoint extracted and restored by plain CRIU, the streamer killed
# mid-dump, and a full disk: CRIU's dump fails and the process keeps running.
# Dumped processes' children and restored (-d) processes are re-parented to
# the nearest child subreaper; PID 1 here does not reap, and a zombie keeps its
# PID (and session id) taken so a restore fails with "File exists". So this
# script runs as a subreaper (the flag survives exec; bash reaps any child).
if [ -z "${STASIS_SUBREAPER:-}" ]; then
	STASIS_SUBREAPER=1 exec /usr/bin/python3 -c 'import ctypes, os, sys
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
os.execvp(sys.argv[1], sys.argv[1:])' bash "$0" "$@"
fi
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/streamer_lib.sh"

# The workloads must not be ASan builds: CRIU 4.1.1's --stream restore reads
# pages of ASan's shadow mappings "from self" and the restored task crashes
# (plain restore of the same images works). Use the release helpers then.
WL=$HELPERS
if grep -q __asan_init "$WL/wl_counter" 2>/dev/null; then
	WL=$REPO/build/tests/bin
	grep -qs __asan_init "$WL/wl_counter" || [ ! -x "$WL/wl_counter" ] &&
		die "release workloads needed in $WL (run make first)"
fi

# report PID FILE: ask the workload for its report, print it.
report() {
	wait_for 20 usr1_ready "$1" || return 1
	rm -f "$2"
	kill -USR1 "$1" 2>/dev/null || return 1
	wait_for 10 test -s "$2" || return 1
	cat "$2"
}
field() { tr ' ' '\n' | sed -n "s/^$1=//p"; }

# stream_dump PID DIR [streamer args]: criu dump --stream through a capture.
stream_dump() {
	local pid=$1 d=$2
	shift 2
	start_streamer "$d" "$@" capture || return 1
	"$STASIS_CRIU" dump --stream -D "$d" -t "$pid" -o dump.log >/dev/null 2>&1 || {
		tail -5 "$d/dump.log"
		return 1
	}
	wait_streamer || return 1
	wait "$pid" 2>/dev/null
	test -s "$d/manifest.json"
}
# stream_restore DIR: criu restore --stream through a serve.
stream_restore() {
	local d=$1
	start_streamer "$d" serve || return 1
	"$STASIS_CRIU" restore --stream -D "$d" -d -o restore.log >/dev/null 2>&1 || {
		tail -5 "$d/restore.log"
		return 1
	}
	wait_streamer
}

# roundtrip_checks NAME PID REPORT before-line: after restore, the report is
# ok, the hash unchanged and the counter moved on.
after_checks() {
	local name=$1 pid=$2 rep=$3 before=$4 after
	after=$(report "$pid" "$rep") || { fail "${name}_report_after_restore"; return; }
	check "${name}_memory_ok" [ "$(echo "$after" | field ok)" = 1 ]
	check "${name}_hash_same" [ "$(echo "$after" | field hash)" = "$(echo "$before" | field hash)" ]
	check "${name}_counter_continues" [ "$(echo "$after" | field counter)" -gt "$(echo "$before" | field counter)" ]
}

# --- counter, lz4 over 2 shards; then the same checkpoint extracted.
CASE=counter
setsid "$WL/wl_counter" "$T/c.rep" 64 </dev/null >/dev/null 2>&1 &
pid=$!
track_pid "$pid"
wait_for 10 test -d "/proc/$pid" || die "counter did not start"
sleep 0.3
before=$(report "$pid" "$T/c.rep") || die "counter does not report"
if check counter_stream_dump stream_dump "$pid" "$T/c" --shards 2 --codec lz4; then
	check counter_dumped_process_gone dead "$pid"
	check counter_stream_restore stream_restore "$T/c"
	after_checks counter "$pid" "$T/c.rep" "$before"
	check counter_inspect_verify sh -c "stasis-streamer -D '$T/c' inspect --verify >/dev/null"
	# The same checkpoint as plain CRIU images.
	kill -9 "$pid"
	wait_for 10 dead "$pid"
	if check counter_extract stasis-streamer -D "$T/c" extract "$T/c.plain"; then
		check counter_plain_restore "$STASIS_CRIU" restore -D "$T/c.plain" -d -o restore.log
		after_checks counter_plain "$pid" "$T/c.rep" "$before"
	fi
	kill -9 "$pid" 2>/dev/null
fi

# --- multi-threaded, zstd over 8 shards.
setsid "$WL/wl_threads" "$T/t.rep" 6 8 </dev/null >/dev/null 2>&1 &
pid=$!
track_pid "$pid"
sleep 0.5
before=$(report "$pid" "$T/t.rep") || die "threads workload does not report"
if check threads_stream_dump stream_dump "$pid" "$T/t" --shards 8 --codec zstd; then
	check threads_stream_restore stream_restore "$T/t"
	after_checks threads "$pid" "$T/t.rep" "$before"
	kill -9 "$pid" 2>/dev/null
fi

# --- process tree with a pipe and an open file, no compression, 1 shard.
setsid "$WL/wl_tree" "$T/r.rep" "$T/tree.data" 8 </dev/null >/dev/null 2>&1 &
pid=$!
track_pid "$pid"
sleep 0.5
before=$(report "$pid" "$T/r.rep") || die "tree workload does not report"
kids=$(pgrep -P "$pid" | tr '\n' ' ')
if check tree_stream_dump stream_dump "$pid" "$T/r" --shards 1 --codec none; then
	check tree_all_gone wait_for 10 sh -c "for k in $kids; do [ ! -d /proc/\$k ] || exit 1; done"
	check tree_stream_restore stream_restore "$T/r"
	after_checks tree "$pid" "$T/r.rep" "$before"
	after=$(cat "$T/r.rep")
	check tree_pipe_no_gap [ "$(echo "$after" | field pipe_ok)" = 1 ]
	check tree_open_file_ok [ "$(echo "$after" | field file_ok)" = 1 ]
	check tree_children_ok sh -c "grep -q 'ok=1' '$T/r.rep.a' && grep -q 'ok=1' '$T/r.rep.b'"
	check tree_children_back [ "$(pgrep -P "$pid" | wc -l)" = 2 ]
	kill -9 "$pid" $(pgrep -P "$pid") 2>/dev/null
fi

# --- the streamer dies mid-dump: CRIU fails, the process runs on.
setsid "$WL/wl_counter" "$T/k.rep" 64 </dev/null >/dev/null 2>&1 &
pid=$!
track_pid "$pid"
sleep 0.3
before=$(report "$pid" "$T/k.rep")
killed() {
	start_streamer "$T/k" capture || return 1
	kill -STOP "$SPID"
	"$STASIS_CRIU" dump --stream -D "$T/k" -t "$pid" -o dump.log >/dev/null 2>&1 &
	local cpid=$!
	sleep 1
	kill -9 "$SPID"
	! wait "$cpid"
}
check killed_streamer_fails_dump killed
check killed_process_still_running alive "$pid"
check killed_no_manifest test ! -e "$T/k/manifest.json"
after_checks killed "$pid" "$T/k.rep" "$before"
kill -9 "$pid"

# --- the disk fills up: clear error, non-zero, CRIU fails, process runs on.
mkdir -p "$T/small"
if mount -t tmpfs -o size=4m,mode=0700 tmpfs "$T/small"; then
	at_exit umount "$T/small"
	setsid "$WL/wl_counter" "$T/f.rep" 48 </dev/null >/dev/null 2>&1 &
	pid=$!
	track_pid "$pid"
	sleep 0.3
	before=$(report "$pid" "$T/f.rep")
	full() {
		start_streamer "$T/small/ck" capture || return 1
		! "$STASIS_CRIU" dump --stream -D "$T/small/ck" -t "$pid" -o dump.log >/dev/null 2>&1 || return 1
		! wait_streamer || return 1
		grep -q "img-[01].lz4: write failed: No space left on device" "$T/streamer.err"
	}
	check disk_full_fails_clearly full
	check disk_full_no_manifest test ! -e "$T/small/ck/manifest.json"
	check disk_full_shards_removed sh -c "! ls '$T/small/ck'/img-* 2>/dev/null"
	check disk_full_process_runs alive "$pid"
	after_checks disk_full "$pid" "$T/f.rep" "$before"
	kill -9 "$pid"
else
	fail "disk_full: cannot mount a tmpfs"
fi
finish
