#!/usr/bin/env bash
# make-seeds.sh OUTDIR: write seed corpora for the fuzz targets into
# OUTDIR/<target>/, built from real checkpoints that stasis-streamer captures
# from the protocol client (tests/helpers/criu_client), so the fuzzers start
# from valid shards, manifests, protocol sessions and API requests.
# Needs the release build (make all). Seeds are generated, never committed.
set -eu
out=$1
repo=$(cd "$(dirname "$0")/../.." && pwd)
build=${STASIS_BUILD:-$repo/build}
tmp=$(mktemp -d /tmp/stasis-seeds.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"/{fuzz_manifest,fuzz_shard,fuzz_ckpt,fuzz_criu_stream,fuzz_api}

# Small image files: text, random bytes, zeros; several chunks each.
mkdir "$tmp/src"
printf 'inventory\n' >"$tmp/src/inventory.img"
seq 1 2000 >"$tmp/src/pagemap-1.img"
head -c 9000 /dev/urandom >"$tmp/src/pages-1.img"
head -c 5000 /dev/zero >"$tmp/src/core-1.img"
: >"$tmp/src/empty.img"

# capture NAME SHARDS CODEC: a checkpoint in $tmp/NAME.
capture() {
	local d=$tmp/$1 line
	mkdir "$d"
	rm -f "$tmp/ready"
	mkfifo "$tmp/ready"
	"$build/stasis-streamer" -D "$d" -n "$2" -c "$3" --chunk-size 4096 --ready-fd 9 \
		capture 9>"$tmp/ready" 2>"$tmp/$1.err" &
	read -r -t 20 line <"$tmp/ready"
	"$build/tests/bin/criu_client" "$d" dump --interleave 3 "$tmp/src" >/dev/null
	wait $!
}

n=0
for codec in none lz4 zstd; do
	for shards in 1 2 3; do
		name=$codec-$shards
		capture "$name" "$shards" "$codec"
		d=$tmp/$name
		cp "$d/manifest.json" "$out/fuzz_manifest/$name.json"
		ext=$(ls "$d" | sed -n 's/^img-0\.//p')
		# fuzz_shard: mode byte (bit 0 fix checksums, bits 1-2 shards-1), shards.
		for fix in 0 1; do
			f=$out/fuzz_shard/$name-$fix
			printf "\\x$(printf %02x $(( (shards - 1) << 1 | fix )))" >"$f"
			for k in $(seq 0 $((shards - 1))); do
				[ "$k" -gt 0 ] && printf -- '--SHARD--' >>"$f"
				cat "$d/img-$k.$ext" >>"$f"
			done
			# fuzz_ckpt: mode byte, manifest, shards.
			f=$out/fuzz_ckpt/$name-$fix
			printf "\\x0$fix" >"$f"
			cat "$d/manifest.json" >>"$f"
			for k in $(seq 0 $((shards - 1))); do
				printf -- '--FILE--' >>"$f"
				cat "$d/img-$k.$ext" >>"$f"
			done
		done
		n=$((n + 1))
	done
done

# fuzz_criu_stream: scripts of operations (see fuzz_criu_stream.c).
python3 - "$out/fuzz_criu_stream" <<'PYEOF'
import struct, sys, os
out = sys.argv[1]
def req(name):
    b = name.encode()
    body = b'\x0a' + bytes([len(b)]) + b
    return b'M' + struct.pack('<H', len(body) + 4) + struct.pack('=I', len(body)) + body
def fd(): return b'F'
def byte(): return b'B'
def reply(ex): return b'M' + struct.pack('<H', 6) + struct.pack('=I', 2) + bytes([8, ex])
seeds = {
    'dump': b'D' + b''.join(req(n) + fd() for n in ['inventory.img', 'pages-1.img', 'core-1.img']),
    'dump-zero': b'D' + b'M\x04\x00' + b'\x00\x00\x00\x00' + req('pstree.img') + fd(),
    'restore': b'R' + b''.join(req(n) for n in ['inventory.img', 'pstree.img']),
    'replies': b'P' + reply(1) + reply(0) + b'M\x04\x00\x00\x00\x00\x00',
    'nofd': b'D' + req('x.img') + byte(),
    'bad-len': b'D' + b'M\x04\x00' + struct.pack('=I', 100000),
}
for k, v in seeds.items():
    open(os.path.join(out, k), 'wb').write(v)
PYEOF

# fuzz_api: caller byte, "METHOD PATH[?QUERY]" line, body.
api() { printf "$1" >"$out/fuzz_api/$2"; }
api '\x01GET /v1/version\n' version
api '\x01GET /v1/jobs\n' list
api '\x02GET /v1/jobs\n' list-other
api '\x00GET /v1/jobs\n' list-root
api '\x01GET /v1/jobs/alpha\n' get
api '\x02GET /v1/jobs/alpha\n' get-other
api '\x01GET /v1/jobs/alpha/logs?offset=-10\n' logs
api '\x01POST /v1/jobs/alpha/kill\n{"signal":"TERM"}' kill
api '\x01POST /v1/jobs/alpha/kill\n{"signal":9}' kill-num
api '\x01POST /v1/jobs/alpha/dump\n{"dir":"/nonexistent/x","stream":4,"codec":"zstd:3","leave_running":true}' dump
api '\x01POST /v1/jobs/alpha/dump\n{"dir":"/nonexistent/x","external":["tty[1:2]"],"tcp_close":true}' dump-ext
api '\x01POST /v1/jobs/alpha/restore\n{"stream":2}' restore
api '\x01POST /v1/jobs/alpha/restore\n{"dir":"/nonexistent/y"}' restore-dir
api '\x01DELETE /v1/jobs/alpha?force=1\n' rm
api '\x01POST /v1/jobs\n{"id":"alpha","cmd":"sleep 1","workdir":"/tmp","env":["A=B"]}' exec
api '\x01GET /v1/checkpoints?job=alpha\n' checkpoints
api '\x01POST /v1/shutdown\n' shutdown
api '\x01GET /v1/jobs/../../etc/passwd\n' traversal
echo "seeds: $n checkpoints -> $out"
