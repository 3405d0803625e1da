#!/usr/bin/env bash
# Lazy restore of a streamed checkpoint served from its shards (docs/lazy.md,
# "Serving pages from the shards"): only the images CRIU's restore reads itself
# are extracted; `stasis-streamer page-server` serves the lazy pages to the
# lazy-pages daemon. A memhog job verifies its memory; the reply comes while
# pages are pending; the page server SIGKILLed mid-way kills the job; a
# corrupted pages chunk is named and the job never runs on; a process tree
# comes back; the page server speaks CRIU's protocol (probed directly).
# Behaviour only, never wall-clock time.
# time-bound: 420
. "$(dirname "$0")/../lib.sh"
. "$REPO/tests/helpers/daemon_lib.sh"
. "$(dirname "$0")/fault_lib.sh"

daemon_up
PROBE="$REPO/tests/helpers/pageserver_probe.py"
LOG="$STASIS_STATE_DIR/stasisd.log"
SIZE_MB=256

lazy_field() {
	$PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["lazy"][sys.argv[2]])' "$1" "$2"
}
# The page server stasisd runs (a child of the daemon), if any.
page_server() { pgrep -P "$DAEMON_PID" -f 'stasis-streamer.* page-server' | head -1; }
# mixhog ID ARGS...: a memhog job with mixed memory.
mixhog() {
	local id=$1
	shift
	sd exec -i "$id" -w "$T" "exec $HELPERS/memhog $*" >/dev/null || die "exec $id"
	wait_for 60 sh -c "'$STASIS_BUILD/stasis' logs $id | grep -q '^ready '" || die "$id not ready"
	track_pid "$(job_pid "$id")"
}
# gone ID: the job was killed and no longer runs.
gone() { [ "$(job_status "$1")" != JOB_RUNNING ]; }
verifies() { sd logs "$1" | grep -c '^verify ' || true; }

# 1. A streamed lazy restore: pages served from the shards.
CASE=served
mixhog z1 --size ${SIZE_MB}M --mix mixed
pid=$(job_pid z1)
sd dump job z1 -d "$T/s" --stream 2 >/dev/null || die "streamed dump"
sd restore job z1 --lazy --json >"$T/s.json" || die "lazy restore: $(cat "$T/s.json")"
lp=$(lazy_field "$T/s.json" pid)
kill -STOP "$lp" 2>/dev/null # hold the pages back while we look
check served_running test "$(job_status z1)" = JOB_RUNNING
check served_same_pid test "$(job_pid z1)" = "$pid"
check served_pending test "$(lazy_field "$T/s.json" pending)" = True
rss=$(lazy_field "$T/s.json" resident_kb)
echo "# served: resident at resume: $rss KiB of $((SIZE_MB * 1024))"
check served_pages_still_out test "$rss" -lt $((SIZE_MB * 1024 / 2))
check served_page_server_runs test -n "$(page_server)"
# The extracted pages files are mostly holes: the lazy pages were not written.
img="$STASIS_STATE_DIR/work/z1.restore.images"
alloc=0 size=0
for f in "$img"/pages-*.img; do
	alloc=$((alloc + $(stat -c '%b*%B' "$f")))
	size=$((size + $(stat -c %s "$f")))
done
echo "# served: pages files $size bytes, $alloc on disk"
check served_pages_not_extracted test "$alloc" -lt $((size / 10))
check served_small_images_there test -s "$(ls "$img"/core-*.img | head -1)"
kill -CONT "$lp"
check served_complete wait_for 60 grep -q "job z1: lazy restore complete" "$LOG"
check served_memory_intact verified z1
check served_images_removed test ! -e "$img"
check served_page_server_gone wait_for 10 test -z "$(page_server)"

# 2. The page server speaks CRIU's page-server protocol: every reply checked
# against a full extraction; what it cannot answer ends it (exit 1).
CASE=protocol
"$STASIS_BUILD/stasis-streamer" -D "$T/s" extract "$T/plain" 2>"$T/x.err" || die "extract: $(cat "$T/x.err")"
check protocol_replies $PY "$PROBE" check "$STASIS_BUILD/stasis-streamer" "$T/s" "$T/plain"

# 3. The page server SIGKILLed mid-way: the job is killed, never runs on.
CASE=ps_killed
sd kill z1 >/dev/null
wait_for 20 gone z1 || die "z1 still running"
wait_for 20 test ! -d "/proc/$pid" || die "pid $pid not freed"
sd restore job z1 -d "$T/s" --lazy --json >"$T/k.json" || die "lazy restore: $(cat "$T/k.json")"
lp=$(lazy_field "$T/k.json" pid)
kill -STOP "$lp" 2>/dev/null # pages left for sure
ps=$(page_server)
check ps_killed_page_server_was_running test -n "$ps"
n=$(verifies z1)
kill -USR1 "$pid" # the job faults on a missing page and waits
sleep 0.5         # not a timing check: the job's chance to read a missing page
kill -9 "$ps"
kill -CONT "$lp"
check ps_killed_job_killed wait_for 20 dead "$pid"
check ps_killed_status wait_for 20 gone z1
check ps_killed_logged wait_for 10 grep -q "job z1: its lazy-pages daemon ended before every page was in.*page server ended (killed by signal 9" "$LOG"
check ps_killed_no_verify test "$(verifies z1)" -eq "$n"
check ps_killed_never_bad sh -c "! '$STASIS_BUILD/stasis' logs z1 | grep -q BAD"
check ps_killed_page_server_reaped wait_for 10 test -z "$(page_server)"

# 4. A corrupted chunk of lazy pages: named, and the job is killed (or never runs).
CASE=bad_chunk
wait_for 20 test ! -d "/proc/$pid" || die "pid $pid not freed"
cp -a "$T/s" "$T/bad"
where=$($PY "$PROBE" corrupt "$T/bad") || die "corrupt"
chunk=${where##* } # "SHARD chunk SEQ": the chunk's number
shard=$(basename "${where%% *}")
echo "# bad_chunk: $where"
n=$(verifies z1)
out=$(sd restore job z1 -d "$T/bad" --lazy --json 2>&1)
[ -d "/proc/$pid" ] && kill -USR1 "$pid" 2>/dev/null # read it all: reaches the bad chunk
check bad_chunk_job_killed wait_for 30 dead "$pid"
check bad_chunk_status wait_for 20 gone z1
msg=$(printf '%s\n' "$out"; grep "job z1: its lazy-pages daemon ended" "$LOG" | tail -1)
check bad_chunk_named grep -q "$shard chunk $chunk (file pages-.*): corrupt data" <<<"$msg"
check bad_chunk_no_verify test "$(verifies z1)" -eq "$n"
check bad_chunk_page_server_reaped wait_for 10 test -z "$(page_server)"
check bad_chunk_images_removed wait_for 10 test ! -e "$img"
sd kill z1 >/dev/null 2>&1

# 5. A process tree (memhog --procs 4) restores lazily from its shards.
CASE=tree
mixhog z2 --size ${SIZE_MB}M --mix mixed --procs 4
tpid=$(job_pid z2)
sd dump job z2 -d "$T/t" --stream 2 >/dev/null || die "tree streamed dump"
sd restore job z2 --lazy --json >"$T/t.json" || die "tree lazy restore: $(cat "$T/t.json")"
check tree_running test "$(job_pid z2)" = "$tpid"
check tree_procs test "$(pgrep -c -P "$tpid")" -eq 3
check tree_memory_intact verified z2
check tree_complete wait_for 60 grep -q "job z2: lazy restore complete" "$LOG"
check tree_page_server_gone wait_for 10 test -z "$(page_server)"
sd kill z2 >/dev/null
finish
