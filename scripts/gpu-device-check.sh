#!/usr/bin/env bash
# gpu-device-check.sh: the real-GPU check of GPU jobs, in two steps.
#
#   scripts/gpu-device-check.sh prepare [BUNDLE]   # here, on a build machine (no GPU needed)
#   scripts/gpu-device-check.sh run [BUNDLE]       # once, on a machine with an NVIDIA GPU
#
# BUNDLE defaults to build/gpu-bundle (an ignored path: hand it to the device tool's
# `carry`). `prepare` builds stasis, compiles tests/gpu/gpu_counter.cu with the CUDA
# toolkit at $CUDA_HOME (default /usr/local/cuda; sm_90 code + PTX), and copies the three
# stasis programs, CRIU and every shared library they need (from ldd, glibc apart in
# glibc/) into BUNDLE, because the GPU machine has no package registry. It needs no GPU.
#
# `run` uses only BUNDLE and the GPU machine's NVIDIA driver (libcuda.so.1). It:
#   1. prints the GPU and driver, starts a private stasisd (state in a temp dir),
#      and prints `stasis check`;
#   2. exec --gpu-enabled gpu_counter (a $MIB MiB device buffer filled from a seeded
#      hash, a device counter bumped every tick), verifies the buffer (SIGUSR1);
#   3. dump --stream 4, checks the job is gone from the GPU;
#   4. restore --stream 4, checks the counter goes on from where it stopped and the
#      buffer verifies with the same checksum;
#   5. prints the figures (stats lines, sizes, wall times) and "RESULT PASS" or
#      "RESULT FAIL: why". Everything is also written to $OUT (or BUNDLE/out).
# Exit status 0 only on PASS. Environment: MIB (default 2048), STASIS_RUN_TIMEOUT.
set -uo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
mode=${1:-}
bundle=${2:-$here/build/gpu-bundle}
MIB=${MIB:-2048}

usage() {
	sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
}

# ---------------------------------------------------------------- prepare (build host)

copy_libs() { # copy_libs BIN: its shared libraries into lib/ (glibc's own into glibc/)
	ldd "$1" | awk '/=>/ && $3 ~ /^\// {print $3} /^\t\/.*ld-linux/ {print $1}' |
		while read -r lib; do
			case $(basename "$lib") in
			libc.so.* | libm.so.* | libpthread.so.* | libdl.so.* | librt.so.* | \
				ld-linux*.so.* | libresolv.so.*)
				cp -L -n "$lib" "$bundle/glibc/" ;;
			*) cp -L -n "$lib" "$bundle/lib/" ;;
			esac
		done
}

prepare() {
	local cuda=${CUDA_HOME:-/usr/local/cuda}
	local criu=${STASIS_CRIU:-/usr/local/libexec/stasis/criu}
	set -e
	rm -rf "$bundle"
	mkdir -p "$bundle/bin" "$bundle/lib" "$bundle/glibc"
	make -C "$here" -j2 build/stasisd build/stasis build/stasis-streamer >/dev/null
	"$cuda/bin/nvcc" -O2 -gencode arch=compute_90,code=sm_90 \
		-gencode arch=compute_90,code=compute_90 \
		"$here/tests/gpu/gpu_counter.cu" -o "$bundle/bin/gpu_counter"
	cp "$here/build/stasisd" "$here/build/stasis" "$here/build/stasis-streamer" "$bundle/bin/"
	cp "$criu" "$bundle/bin/criu"
	for b in "$bundle"/bin/*; do copy_libs "$b"; done
	(cd "$here" && git rev-parse HEAD) >"$bundle/COMMIT" 2>/dev/null || true
	"$bundle/bin/criu" --version >"$bundle/CRIU_VERSION"
	(cd "$bundle" && find . -type f ! -name SHA256SUMS -print0 | sort -z |
		xargs -0 sha256sum >SHA256SUMS)
	echo "bundle: $bundle ($(du -sh "$bundle" | cut -f1)); carry it and run:"
	echo "  bash scripts/gpu-device-check.sh run ${bundle#$here/}"
}

# ---------------------------------------------------------------- run (GPU host)

out=${OUT:-}
log() { printf '%s\n' "$*" | tee -a "$out/check.log"; }
result_fail() {
	log "RESULT FAIL: $*"
	exit 1
}

# Programs run with the GPU host's glibc if it can (LD_LIBRARY_PATH=lib), else through
# the bundled loader. Either way each is reached through a wrapper in wrap/.
make_wrappers() {
	local w=$bundle/wrap p direct=1
	mkdir -p "$w"
	for p in criu stasisd stasis stasis-streamer gpu_counter; do
		LD_LIBRARY_PATH=$bundle/lib "$bundle/bin/$p" --help >/dev/null 2>"$out/ldtest-$p.err"
		grep -q -e 'GLIBC_' -e 'error while loading' "$out/ldtest-$p.err" && direct=0
	done
	for p in criu stasisd stasis stasis-streamer gpu_counter; do
		if [ $direct = 1 ]; then
			printf '#!/bin/sh\nLD_LIBRARY_PATH=%s/lib exec %s/bin/%s "$@"\n' \
				"$bundle" "$bundle" "$p" >"$w/$p"
		else
			printf '#!/bin/sh\nexec %s/glibc/ld-linux-x86-64.so.2 --library-path %s/glibc:%s/lib %s/bin/%s "$@"\n' \
				"$bundle" "$bundle" "$bundle" "$bundle" "$p" >"$w/$p"
		fi
		chmod +x "$w/$p"
	done
	log "libraries: $([ $direct = 1 ] && echo "host glibc + bundled libs" || echo "bundled glibc and loader")"
}

ms() { date +%s%3N; }
last_counter() { grep -a '^tick ' "$joblog" | tail -1 | awk '{print $4}'; }
# verify_now: SIGUSR1 the workload, wait for a new verify line, print it.
verify_now() {
	local before
	before=$(grep -ac '^verify ' "$joblog")
	kill -USR1 "$1" || return 1
	for _ in $(seq 1 600); do
		[ "$(grep -ac '^verify ' "$joblog")" -gt "$before" ] && break
		sleep 0.1
	done
	grep -a '^verify ' "$joblog" | tail -1
}
job_pid() { "$W/stasis" ps 2>/dev/null | awk -v id="$1" '$1 == id {print $3}'; }

run() {
	[ -d "$bundle/bin" ] || { echo "no bundle at $bundle: run 'prepare' first" >&2; exit 2; }
	bundle=$(cd "$bundle" && pwd)
	[ -n "$out" ] || out=$bundle/out
	mkdir -p "$out"
	: >"$out/check.log"
	(cd "$bundle" && sha256sum -c --quiet SHA256SUMS) || result_fail "bundle damaged in transit"
	log "== host: $(uname -r), $(nproc) cpus, $(awk '/MemTotal/ {print $2/1048576 " GiB"}' /proc/meminfo)"
	log "== driver: $(head -1 /proc/driver/nvidia/version 2>/dev/null || echo 'no /proc/driver/nvidia')"
	nvidia-smi -L 2>&1 | tee -a "$out/check.log"
	make_wrappers
	W=$bundle/wrap
	export STASIS_CRIU=$W/criu STASIS_STREAMER=$W/stasis-streamer
	local tmp
	tmp=$(mktemp -d /tmp/stasis-gpu.XXXXXX)
	export STASIS_SOCKET=$tmp/stasisd.sock STASIS_STATE_DIR=$tmp/state
	unset CUDA_VISIBLE_DEVICES # the GPU calls must see every GPU
	"$W/criu" check >"$out/criu-check.log" 2>&1
	log "criu check: $(tail -1 "$out/criu-check.log")"
	"$W/stasisd" --socket "$STASIS_SOCKET" --state-dir "$STASIS_STATE_DIR" \
		--log-file "$out/stasisd.log" >"$out/stasisd.out" 2>&1 &
	local dpid=$!
	trap 'kill $dpid 2>/dev/null; "$W/stasis" kill gpujob >/dev/null 2>&1' EXIT
	for _ in $(seq 1 100); do [ -S "$STASIS_SOCKET" ] && break; sleep 0.1; done
	[ -S "$STASIS_SOCKET" ] || result_fail "stasisd did not start (see $out/stasisd.out)"
	"$W/stasis" check 2>&1 | tee "$out/stasis-check.log" | tee -a "$out/check.log"

	# 2. The workload.
	mkdir -p "$tmp/work" "$tmp/ckpt"
	local t0 t1 pid ready
	t0=$(ms)
	"$W/stasis" exec -i gpujob -w "$tmp/work" --gpu-enabled \
		"$W/gpu_counter --mib $MIB --seed 4242 --tick-ms 50" 2>&1 | tee -a "$out/check.log" ||
		result_fail "exec --gpu-enabled refused"
	joblog=$STASIS_STATE_DIR/logs/gpujob.log
	for _ in $(seq 1 1200); do grep -aq '^tick 20 ' "$joblog" 2>/dev/null && break; sleep 0.1; done
	cp "$joblog" "$out/job-before.log" 2>/dev/null
	grep -aq '^ready ' "$joblog" || result_fail "workload did not start: $(tail -3 "$joblog")"
	ready=$(( $(ms) - t0 ))
	pid=$(job_pid gpujob)
	log "workload: pid $pid, $MIB MiB on the GPU, ready+20 ticks in ${ready} ms"
	"$W/stasis" ps 2>&1 | tee -a "$out/check.log"
	nvidia-smi --query-compute-apps=pid,used_memory --format=csv 2>&1 | tee -a "$out/check.log"
	local v1
	v1=$(verify_now "$pid")
	log "before dump: $v1"
	case $v1 in "verify ok "*) ;; *) result_fail "buffer did not verify before the dump" ;; esac
	local sum1=${v1##*checksum=}
	sum1=${sum1%% *}

	# 3. Dump.
	t0=$(ms)
	"$W/stasis" dump job gpujob -d "$tmp/ckpt" --stream 4 2>&1 | tee "$out/dump.out" | tee -a "$out/check.log"
	local drc=${PIPESTATUS[0]}
	t1=$(ms)
	[ "$drc" = 0 ] || result_fail "dump failed (exit $drc)"
	local c_before
	c_before=$(last_counter)
	log "dump: wall $((t1 - t0)) ms; checkpoint $(du -sb "$tmp/ckpt" | cut -f1) bytes; last counter $c_before"
	ls -l "$tmp/ckpt" | tee -a "$out/check.log"
	cp "$tmp/ckpt/gpu.json" "$out/" 2>/dev/null
	sleep 1
	[ -d "/proc/$pid" ] && result_fail "job still alive after dump"
	nvidia-smi --query-compute-apps=pid,used_memory --format=csv 2>&1 | tee -a "$out/check.log"

	# 4. Restore.
	t0=$(ms)
	"$W/stasis" restore job gpujob --stream 4 2>&1 | tee "$out/restore.out" | tee -a "$out/check.log"
	local rrc=${PIPESTATUS[0]}
	t1=$(ms)
	[ "$rrc" = 0 ] || result_fail "restore failed (exit $rrc)"
	log "restore: wall $((t1 - t0)) ms"
	for _ in $(seq 1 300); do
		[ "$(last_counter)" -gt "$((c_before + 10))" ] 2>/dev/null && break
		sleep 0.1
	done
	local first_after
	first_after=$(grep -a '^tick ' "$joblog" | awk -v c="$c_before" '$4 > c {print $4; exit}')
	log "counter: last before dump $c_before, first after restore ${first_after:-none}, now $(last_counter)"
	[ -n "$first_after" ] || result_fail "counter did not go on after restore"
	[ "$first_after" = "$((c_before + 1))" ] ||
		result_fail "counter jumped from $c_before to $first_after"
	grep -a '^tick ' "$joblog" | awk -v c="$c_before" 'f && $4 == 1 {bad=1} $4 == c {f=1} END {exit bad}' ||
		result_fail "counter restarted from 1 after restore"
	pid=$(job_pid gpujob)
	nvidia-smi --query-compute-apps=pid,used_memory --format=csv 2>&1 | tee -a "$out/check.log"
	local v2 sum2
	v2=$(verify_now "$pid")
	log "after restore: $v2"
	sum2=${v2##*checksum=}
	sum2=${sum2%% *}
	case $v2 in "verify ok "*) ;; *) result_fail "buffer did not verify after restore" ;; esac
	[ "$sum1" = "$sum2" ] || result_fail "checksum changed: $sum1 -> $sum2"
	cp "$joblog" "$out/job.log"
	log "figures: dump $(grep -a -o 'stats=.*' "$out/dump.out")"
	log "figures: restore $(grep -a -o 'stats=.*' "$out/restore.out")"
	log "RESULT PASS: counter went on ($c_before -> $first_after), $MIB MiB buffer verified (checksum $sum2)"
}

case $mode in
prepare) prepare ;;
run) run ;;
*) usage ;;
esac
