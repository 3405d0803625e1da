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
#   6. if the GPU host has PyTorch with CUDA, the same cycle with tests/gpu/torch_counter.py.
# Exit status 0 only on PASS. Environment: MIB (default 2048); BUNDLED_LOADER=1 runs
# everything under the bundled glibc and loader even where the host's would do.
#
# With the device tool (the working tree travels; the bundle is an ignored path):
#   here:    bash scripts/gpu-device-check.sh prepare
#   device:  run command="OUT=$OUT bash scripts/gpu-device-check.sh run build/gpu-bundle"
#            carry=["build/gpu-bundle"] timeout_s=480
# (about 2 minutes for MIB=2048 once the machine is up; logs come back under $OUT).
#
# DRYRUN=1 with `run` rehearses the whole flow on a machine without a GPU: the
# stand-in driver library (tests/stubs) replaces libcuda.so.1 and a CPU stand-in
# for gpu_counter prints the same lines. It checks this script and the bundle,
# nothing about GPUs.
set -uo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
mode=${1:-}
bundle=${2:-$here/build/gpu-bundle}
MIB=${MIB:-2048}

usage() {
	sed -n '2,40p' "$0" | sed -n '/^#/p' | sed 's/^# \{0,1\}//'
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
	mkdir -p "$bundle/test"
	make -C "$here" build/tests/lib/cuda_stub.so >/dev/null
	cp "$here/build/tests/lib/cuda_stub.so" "$bundle/test/"
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
		# What ldd does: the loader lists the libraries and runs nothing.
		LD_TRACE_LOADED_OBJECTS=1 LD_LIBRARY_PATH=$bundle/lib "$bundle/bin/$p" \
			>"$out/ldtest-$p.txt" 2>&1 </dev/null
		grep -q -e 'not found' -e 'error while loading' "$out/ldtest-$p.txt" && direct=0
	done
	[ -n "${BUNDLED_LOADER:-}" ] && direct=0 # force it (to rehearse that path)
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
	if [ -n "${DRYRUN:-}" ]; then # a CPU stand-in that prints what gpu_counter prints
		cat >"$w/gpu_counter" <<-'PYEOF'
		#!/usr/bin/python3 -u
		import os, signal, sys, time, zlib
		mib = int(sys.argv[sys.argv.index("--mib") + 1]); want = []
		buf = bytes(range(256)) * (4096 * min(mib, 64))
		signal.signal(signal.SIGUSR1, lambda *a: want.append(1))
		print("ready pid=%d mib=%d seed=0 (CPU stand-in)" % (os.getpid(), mib))
		c = 0
		while True:
		    c += 1
		    print("tick %d counter %d" % (c, c))
		    if want:
		        want.clear()
		        print("verify ok words=%d mismatches=0 checksum=%x ms=0" % (len(buf) // 4, zlib.crc32(buf)))
		    time.sleep(0.05)
		PYEOF
		chmod +x "$w/gpu_counter"
	fi
}

ms() { date +%s%3N; }
last_counter() { grep -a '^tick ' "$joblog" | tail -1 | awk '{print $4}'; }
# verify_now PID: SIGUSR1 the workload, wait for a new verify line, print it.
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
checksum_of() { local c=${1##*checksum=}; echo "${c%% *}"; }
smi_apps() { nvidia-smi --query-compute-apps=pid,used_memory --format=csv 2>&1 | tee -a "$out/check.log"; }

# cycle NAME COMMAND: exec --gpu-enabled, verify, dump --stream 4, restore, verify.
# Prints "CYCLE NAME PASS ..." or "CYCLE NAME FAIL: why"; returns 0 on PASS.
cycle() {
	local name=$1 cmd=$2 t0 t1 pid rc c_before first_after v1 v2 ck=$tmp/ckpt-$1
	cfail() { log "CYCLE $name FAIL: $*"; "$W/stasis" kill "$name" >/dev/null 2>&1; return 1; }
	log "== cycle $name: $cmd"
	mkdir -p "$ck"
	t0=$(ms)
	"$W/stasis" exec -i "$name" -w "$tmp/work" --gpu-enabled "$cmd" 2>&1 | tee -a "$out/check.log"
	[ "${PIPESTATUS[0]}" = 0 ] || { cfail "exec --gpu-enabled refused"; return 1; }
	joblog=$STASIS_STATE_DIR/logs/$name.log
	for _ in $(seq 1 1800); do grep -aq '^tick 20 ' "$joblog" 2>/dev/null && break; sleep 0.1; done
	grep -aq '^tick 20 ' "$joblog" || { cfail "workload did not start: $(tail -3 "$joblog")"; return 1; }
	# The job's root may be the shell that runs it: signal the workload itself.
	pid=$(sed -n 's/^ready pid=\([0-9]*\).*/\1/p' "$joblog" | tail -1)
	log "$name: workload pid $pid (job pid $(job_pid "$name")), ready+20 ticks in $(( $(ms) - t0 )) ms"
	"$W/stasis" ps 2>&1 | tee -a "$out/check.log"
	smi_apps
	v1=$(verify_now "$pid")
	log "$name: before dump: $v1"
	case $v1 in "verify ok "*) ;; *) cfail "state did not verify before the dump"; return 1 ;; esac

	t0=$(ms)
	"$W/stasis" dump job "$name" -d "$ck" --stream 4 2>&1 | tee "$out/$name-dump.out" | tee -a "$out/check.log"
	rc=${PIPESTATUS[0]}
	t1=$(ms)
	cp "$ck/dump.log" "$out/$name-criu-dump.log" 2>/dev/null
	[ "$rc" = 0 ] || { cfail "dump failed (exit $rc)"; return 1; }
	c_before=$(last_counter)
	log "$name: dump wall $((t1 - t0)) ms; checkpoint $(du -sb "$ck" | cut -f1) bytes; last counter $c_before"
	ls -l "$ck" | tee -a "$out/check.log"
	cp "$ck/gpu.json" "$out/$name-gpu.json" 2>/dev/null
	sleep 1
	[ -d "/proc/$pid" ] && { cfail "workload still alive after the dump"; return 1; }
	smi_apps

	t0=$(ms)
	"$W/stasis" restore job "$name" --stream 4 2>&1 | tee "$out/$name-restore.out" | tee -a "$out/check.log"
	rc=${PIPESTATUS[0]}
	t1=$(ms)
	cp "$ck/restore.log" "$out/$name-criu-restore.log" 2>/dev/null
	[ "$rc" = 0 ] || { cfail "restore failed (exit $rc)"; return 1; }
	log "$name: restore wall $((t1 - t0)) ms"
	for _ in $(seq 1 300); do
		[ "$(last_counter)" -gt "$((c_before + 10))" ] 2>/dev/null && break
		sleep 0.1
	done
	first_after=$(grep -a '^tick ' "$joblog" | awk -v c="$c_before" '$4 > c {print $4; exit}')
	log "$name: counter last before dump $c_before, first after restore ${first_after:-none}, now $(last_counter)"
	[ -n "$first_after" ] || { cfail "counter did not go on after restore"; return 1; }
	[ "$first_after" = "$((c_before + 1))" ] ||
		{ cfail "counter jumped from $c_before to $first_after"; return 1; }
	smi_apps
	v2=$(verify_now "$pid")
	log "$name: after restore: $v2"
	case $v2 in "verify ok "*) ;; *) cfail "state did not verify after restore"; return 1 ;; esac
	[ "$(checksum_of "$v1")" = "$(checksum_of "$v2")" ] ||
		{ cfail "checksum changed: $(checksum_of "$v1") -> $(checksum_of "$v2")"; return 1; }
	cp "$joblog" "$out/$name-job.log"
	"$W/stasis" kill "$name" >/dev/null 2>&1
	log "$name: figures: dump $(grep -a -o 'stats=.*' "$out/$name-dump.out")"
	log "$name: figures: restore $(grep -a -o 'stats=.*' "$out/$name-restore.out")"
	log "CYCLE $name PASS: counter went on ($c_before -> $first_after), state verified (checksum $(checksum_of "$v2"))"
}

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
	tmp=$(mktemp -d /tmp/stasis-gpu.XXXXXX)
	if [ -n "${DRYRUN:-}" ]; then
		log "== DRYRUN: stand-in driver library and CPU workload: NOT a GPU check"
		export STASIS_CUDA_LIB=$bundle/test/cuda_stub.so STASIS_CUDA_STUB_DIR=$tmp/stub
		mkdir -p "$tmp/stub"
	fi
	# The daemon re-executes itself for GPU calls: through its wrapper, which
	# also works when it runs under the bundled loader.
	export STASIS_CRIU=$W/criu STASIS_STREAMER=$W/stasis-streamer STASIS_GPU_HELPER=$W/stasisd
	export STASIS_SOCKET=$tmp/stasisd.sock STASIS_STATE_DIR=$tmp/state
	unset CUDA_VISIBLE_DEVICES # the GPU calls must see every GPU
	"$W/criu" check >"$out/criu-check.log" 2>&1
	log "criu check: $(tail -1 "$out/criu-check.log")"
	"$W/stasisd" --socket "$STASIS_SOCKET" --state-dir "$STASIS_STATE_DIR" \
		--log-file "$out/stasisd.log" >"$out/stasisd.out" 2>&1 &
	dpid=$!
	trap 'kill $dpid 2>/dev/null; sleep 0.5; rm -rf "$tmp"' EXIT
	for _ in $(seq 1 100); do [ -S "$STASIS_SOCKET" ] && break; sleep 0.1; done
	[ -S "$STASIS_SOCKET" ] || result_fail "stasisd did not start (see $out/stasisd.out)"
	"$W/stasis" check 2>&1 | tee "$out/stasis-check.log" | tee -a "$out/check.log"
	mkdir -p "$tmp/work"

	cycle cuda "$W/gpu_counter --mib $MIB --seed 4242 --tick-ms 50" ||
		result_fail "the CUDA workload cycle failed (see above)"
	# The same with a PyTorch model, where the GPU host has PyTorch with CUDA.
	if [ -z "${DRYRUN:-}" ] && python3 -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' \
		>/dev/null 2>&1; then
		cycle torch "python3 -u $here/tests/gpu/torch_counter.py" ||
			result_fail "the PyTorch cycle failed (see above)"
		log "RESULT PASS: CUDA workload ($MIB MiB) and PyTorch model both went on after restore"
	else
		log "torch: no PyTorch with CUDA on this host: the PyTorch cycle was NOT run"
		log "RESULT PASS: CUDA workload ($MIB MiB) went on after restore and verified"
	fi
}

case $mode in
prepare) prepare ;;
run) run ;;
*) usage ;;
esac
