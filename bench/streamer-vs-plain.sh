#!/usr/bin/env bash
# streamer-vs-plain.sh: plain 'criu dump -D' to local disk against
# 'criu dump --stream' through stasis-streamer (lz4, 2 shards), and the same
# for restore, on one workload holding ~2 GiB of mixed memory (random bytes,
# text, doubles, sparse pages). Not a pass/fail test: it prints one line per
# run and the medians.
#
#   bench/streamer-vs-plain.sh [RUNS] [MiB]     (defaults: 3 runs, 2730 MiB of
#                                                which ~2 GiB is resident)
# Environment: STASIS_BUILD (default build/), STASIS_CRIU, BENCH_DIR (scratch,
# default /var/tmp/stasis-bench; needs ~4 GB free), SHARDS (2), CODEC (lz4).
set -u
. "$(dirname "$0")/subreaper.sh"
REPO=$(cd "$(dirname "$0")/.." && pwd)
B=${STASIS_BUILD:-$REPO/build}
CRIU=${STASIS_CRIU:-/usr/local/libexec/stasis/criu}
RUNS=${1:-3}
MIB=${2:-2730}
SHARDS=${SHARDS:-2}
CODEC=${CODEC:-lz4}
W=${BENCH_DIR:-/var/tmp/stasis-bench}
TIME=/usr/bin/time
rm -rf "$W"
mkdir -p "$W"
pid=
trap '[ -n "$pid" ] && kill -9 $pid 2>/dev/null; rm -rf "$W"' EXIT

die() { echo "bench: $*" >&2; exit 1; }
now() { date +%s.%N; }
gone() { for _ in $(seq 200); do [ -d /proc/$1 ] || return 0; sleep 0.05; done; return 1; }
report() {
	for _ in $(seq 600); do
		m=$(awk '/^SigCgt/ {print $2}' /proc/$1/status 2>/dev/null)
		[ -n "$m" ] && (( (16#$m >> 9) & 1 )) && break
		sleep 0.1
	done
	rm -f "$W/rep"
	kill -USR1 "$1"
	for _ in $(seq 600); do [ -s "$W/rep" ] && break; sleep 0.1; done
	cat "$W/rep"
}
# streamer DIR MODE: start it, wait for ready; streamer's time -v in $W/st.time
streamer() {
	rm -f "$W/ready"
	mkfifo "$W/ready"
	$TIME -v -o "$W/st.time" "$B/stasis-streamer" -D "$1" --shards "$SHARDS" --codec "$CODEC" \
		--ready-fd 9 "$2" 9>"$W/ready" &
	SPID=$!
	read -r -t 30 line <"$W/ready" && [ "$line" = ready ] || die "streamer not ready"
}
tv() { sed -n "s/^\t$2: //p" "$1"; }
cpu() { echo "$(tv "$1" 'User time (seconds)') + $(tv "$1" 'System time (seconds)')" | bc; }

setsid "$B/tests/bin/wl_counter" "$W/rep" "$MIB" </dev/null >/dev/null 2>&1 &
pid=$!
report $pid >/dev/null
rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
echo "# workload pid $pid, RSS $((rss / 1024)) MiB; criu $("$CRIU" --version | head -1)"
echo "# run plain_dump_s plain_sync_s plain_bytes plain_cpu_s stream_dump_s stream_bytes streamer_cpu_s streamer_rss_mib plain_restore_s stream_restore_s serve_rss_mib"
for r in $(seq "$RUNS"); do
	rm -rf "$W/plain" "$W/stream"
	mkdir "$W/plain" "$W/stream"
	sync
	# plain dump (leave running), then the sync a durable copy needs
	t0=$(now)
	$TIME -v -o "$W/criu.time" "$CRIU" dump -R -D "$W/plain" -t $pid -o dump.log ||
		die "plain dump failed"
	t1=$(now)
	sync
	t2=$(now)
	pd=$(echo "$t1 - $t0" | bc); ps_=$(echo "$t2 - $t1" | bc)
	pb=$(du -sb --exclude=dump.log --exclude=stats-dump "$W/plain" | cut -f1)
	pc=$(cpu "$W/criu.time")
	# streamed dump (the streamer fsyncs its shards before it exits)
	streamer "$W/stream" capture
	t0=$(now)
	"$CRIU" dump -R --stream -D "$W/stream" -t $pid -o dump.log || die "stream dump failed"
	wait $SPID || die "streamer capture failed"
	t1=$(now)
	sd=$(echo "$t1 - $t0" | bc)
	sb=$(sed -n 's/.*"total_size": \([0-9]*\).*/\1/p' "$W/stream/manifest.json")
	sc=$(cpu "$W/st.time")
	srss=$(( $(tv "$W/st.time" 'Maximum resident set size (kbytes)') / 1024 ))
	# restores: kill, restore, check the workload's own memory checksum
	kill -9 $pid; gone $pid || die "workload did not die"
	t0=$(now)
	"$CRIU" restore -d -D "$W/plain" -o restore.log || die "plain restore failed"
	t1=$(now)
	pr=$(echo "$t1 - $t0" | bc)
	report $pid | grep -q ok=1 || die "plain restore: memory check failed"
	kill -9 $pid; gone $pid || die "workload did not die"
	streamer "$W/stream" serve
	t0=$(now)
	"$CRIU" restore -d --stream -D "$W/stream" -o restore.log || die "stream restore failed"
	wait $SPID || die "streamer serve failed"
	t1=$(now)
	sr=$(echo "$t1 - $t0" | bc)
	vrss=$(( $(tv "$W/st.time" 'Maximum resident set size (kbytes)') / 1024 ))
	report $pid | grep -q ok=1 || die "stream restore: memory check failed"
	printf '%s %.2f %.2f %s %.2f %.2f %s %.2f %s %.2f %.2f %s\n' "$r" "$pd" "$ps_" "$pb" "$pc" \
		"$sd" "$sb" "$sc" "$srss" "$pr" "$sr" "$vrss" | tee -a "$W/runs"
done
/usr/bin/python3 - "$W/runs" <<'PYEOF'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1])]
m = [statistics.median(c) for c in zip(*rows)]
_, pd, ps, pb, pc, sd, sb, sc, srss, pr, sr, vrss = m
print("# medians of %d runs" % len(rows))
print("plain dump      %.2f s (+ %.2f s sync), %.0f MB, criu CPU %.2f s" % (pd, ps, pb / 1e6, pc))
print("streamed dump   %.2f s (shards fsync'ed), %.0f MB, streamer CPU %.2f s, peak RSS %.0f MiB" % (sd, sb / 1e6, sc, srss))
print("plain restore   %.2f s" % pr)
print("stream restore  %.2f s, serve peak RSS %.0f MiB" % (sr, vrss))
print("ratios: dump %.2fx (vs plain+sync %.2fx), restore %.2fx, bytes %.2fx" % (sd / pd, sd / (pd + ps), sr / pr, sb / pb))
PYEOF
