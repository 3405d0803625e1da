#!/usr/bin/env bash
# stasis-streamer against a client that speaks CRIU's side of the --stream
# protocol (criu_client): round trips for every codec and shard count,
# interleaved pipes, missing files, re-reads, concurrent readers, 100k tiny
# files, zero-length messages, a reader closing early, damaged shards, and the
# refusals (existing checkpoint, incomplete checkpoint, live socket).
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/streamer_lib.sh"
CC=$HELPERS/criu_client

# Source images: inventory.img (the streamer requires it, as CRIU writes it
# last), small files of assorted sizes including empty ones, one large file of
# mixed content that spans many chunks.
src=$T/src
mkdir -p "$src"
$PY - "$src" <<'PYEOF'
import os, random, sys
d = sys.argv[1]
r = random.Random(7)
open(os.path.join(d, 'inventory.img'), 'wb').write(b'inventory' * 10)
for i in range(40):
    n = r.choice([0, 1, 12, 100, 4095, 4096, 4097, 70000, 300000])
    open(os.path.join(d, 'small-%02d.img' % i), 'wb').write(bytes(r.getrandbits(8) for _ in range(min(n, 5000))) * (n // 5000 + 1))
    os.truncate(os.path.join(d, 'small-%02d.img' % i), n)
with open(os.path.join(d, 'pages-1.img'), 'wb') as f:
    f.write(os.urandom(6 << 20))
    f.write((b'the quick brown fox jumps over the lazy dog %d\n' * 50000) * 3)
    f.write(bytes(5 << 20))
    f.write(os.urandom(3 << 20) + b'tail')
PYEOF
names=$(cd "$src" && ls)

# roundtrip N CODEC: capture, then serve everything (plus missing names and a
# re-read) to 4 concurrent readers.
roundtrip() {
	local n=$1 codec=$2 d=$T/rt-$1-${2/:/_}
	mkdir -p "$d"
	start_streamer "$d" --shards "$n" --codec "$codec" capture || return 1
	$CC "$d" dump --interleave 4 "$src" || return 1
	wait_streamer || return 1
	[ "$(ls "$d"/img-* | wc -l)" = "$n" ] || return 1
	start_streamer "$d" serve || return 1
	# shellcheck disable=SC2086
	$CC "$d" restore --threads 4 "$src" $names no-such.img pages-1.img inventory.img \
		pidns-1.img >"$T/client.out" || return 1
	wait_streamer || return 1
	[ "$(grep -c '^missing' "$T/client.out")" = 2 ] || return 1
	[ ! -e "$d/streamer-serve.sock" ] && [ ! -e "$d/streamer-capture.sock" ]
}
for codec in lz4 zstd none zstd:5; do
	for n in 1 2 8; do
		[ "$codec" = zstd:5 ] && [ "$n" != 2 ] && continue
		check "roundtrip_${codec}_n$n" roundtrip "$n" "$codec"
	done
done
d=$T/rt-2-lz4

CASE=files_modes
check files_mode_0600 sh -c "[ \"\$(stat -c %a '$d'/img-0.lz4 '$d'/manifest.json '$d'/streamer-stats.json | sort -u)\" = 600 ]"
mkdir_mode() { stasis-streamer -D "$T/newdir" capture 9>&- & local p=$!; sleep 0.3; [ "$(stat -c %a "$T/newdir")" = 700 ]; local r=$?; kill $p; wait $p; return $r; }
check dir_mode_0700 mkdir_mode

check stats_json sh -c "$PY -c 'import json,sys; s=json.load(open(\"$d/streamer-stats.json\")); assert s[\"size\"] == sum(x[\"bytes_out\"] for x in s[\"shards\"]) > 0; assert s[\"bytes_in\"] > 20<<20' "

check inspect_verify stasis-streamer -D "$d" inspect --verify
check inspect_json sh -c "stasis-streamer -D '$d' inspect --json | $PY -c 'import json,sys; j=json.load(sys.stdin); assert j[\"complete\"] and len(j[\"files\"]) == 42'"
check extract_matches sh -c "stasis-streamer -D '$d' extract '$T/ex' && diff -r '$src' '$T/ex'"
check extract_no_overwrite sh -c "! stasis-streamer -D '$d' extract '$T/ex' 2>/dev/null"

# A reader that closes one pipe early costs that file only.
epipe() {
	start_streamer "$d" serve || return 1
	$CC "$d" restore --close-early pages-1.img "$src" pages-1.img small-05.img inventory.img || return 1
	wait_streamer
}
check epipe_one_file epipe

# Zero-length request: a valid message (empty name), answered exists=false.
zero_serve() {
	start_streamer "$d" serve || return 1
	$CC "$d" restore --zero "$src" inventory.img pages-1.img || return 1
	wait_streamer
}
check zero_length_serve zero_serve
zero_capture() {
	start_streamer "$T/zc" capture || return 1
	$CC "$T/zc" dump --zero "$src" 2>/dev/null
	! wait_streamer && grep -q "invalid image name" "$T/streamer.err" && [ ! -e "$T/zc/manifest.json" ]
}
check zero_length_capture_refused zero_capture

# A name sent twice: the copy whose request came last is the one kept.
# criu_client sends one directory per connection, so the duplicate case is
# covered with a python client speaking the same framing.
dup_py() {
	local dd=$T/dup
	start_streamer "$dd" capture || return 1
	$PY - "$dd/streamer-capture.sock" <<'PYEOF' || return 1
import os, socket, struct, sys, array
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
def send(name, data):
    b = name.encode()
    msg = b'\x0a' + bytes([len(b)]) + b
    s.sendall(struct.pack('=I', len(msg)) + msg)
    r, w = os.pipe()
    s.sendmsg([b'\0'], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', [r]))])
    os.close(r)
    os.write(w, data)
    os.close(w)
send('a.img', b'first')
send('inventory.img', b'inv')
send('a.img', b'second-copy')
s.close()
PYEOF
	wait_streamer || return 1
	stasis-streamer -D "$dd" extract "$T/dupx" && [ "$(cat "$T/dupx/a.img")" = second-copy ]
}
check duplicate_name_last_wins dup_py

# CRIU dying mid-dump looks like a normal end of stream to the streamer, but
# inventory.img (which CRIU sends last) is missing: no checkpoint, exit 1.
no_inventory() {
	mkdir -p "$T/noinv.src" && cp "$src/pages-1.img" "$src/small-01.img" "$T/noinv.src/"
	start_streamer "$T/noinv" capture || return 1
	$CC "$T/noinv" dump "$T/noinv.src" || return 1
	! wait_streamer && grep -q "without sending inventory.img" "$T/streamer.err" &&
		[ ! -e "$T/noinv/manifest.json" ] && ! ls "$T/noinv"/img-* 2>/dev/null
}
check no_inventory_no_checkpoint no_inventory

# 100k tiny files through one connection and back.
tiny() {
	local dd=$T/tiny
	start_streamer "$dd" --shards 2 capture || return 1
	$CC "$dd" dump --gen 100000:40 "$T/invonly" || return 1
	wait_streamer || return 1
	start_streamer "$dd" serve || return 1
	$CC "$dd" restore --threads 8 --gen 100000:40 "$T/invonly" inventory.img || return 1
	wait_streamer
}
mkdir -p "$T/invonly" && echo inv >"$T/invonly/inventory.img"
check tiny_files_100k tiny

# Refusals.
check refuse_existing_checkpoint sh -c "! stasis-streamer -D '$d' capture 2>'$T/e' && grep -q -- --force '$T/e' && [ -e '$d/manifest.json' ]"
force() {
	exec 7>"$T/progress"
	start_streamer "$d" --force --shards 3 --progress-fd 7 capture || return 1
	exec 7>&-
	[ ! -e "$d/manifest.json" ] || return 1
	$CC "$d" dump "$src" || return 1
	wait_streamer && [ "$(ls "$d"/img-* | wc -l)" = 3 ] && stasis-streamer -D "$d" inspect --verify >/dev/null
}
check force_replaces force
check progress_fd_final_stats $PY -c "
import json
lines = [json.loads(l) for l in open('$T/progress')]
assert lines[-1]['event'] == 'done' and lines[-1] == dict(json.load(open('$d/streamer-stats.json')))
assert len(lines[-1]['shards']) == 3 and lines[-1]['size'] > 0"
mkdir -p "$T/empty"
for cmd in serve inspect "extract $T/x"; do
	# shellcheck disable=SC2086
	check "incomplete_refused_${cmd%% *}" sh -c "! stasis-streamer -D '$T/empty' $cmd 2>'$T/e' && grep -q 'incomplete checkpoint' '$T/e'"
done
live() {
	start_streamer "$T/live" capture || return 1
	! stasis-streamer -D "$T/live" --force capture 2>"$T/e" || return 1
	grep -q "another streamer is listening" "$T/e" || return 1
	kill "$SPID" && ! wait "$SPID"
	[ ! -e "$T/live/streamer-capture.sock" ]
}
check live_socket_refused_and_unlinked_on_term live
stale() {
	$PY -c "import socket; s=socket.socket(socket.AF_UNIX); s.bind('$T/stale/streamer-serve.sock')" || return 1
	start_streamer "$T/stale" serve || return 1
	$CC "$T/stale" restore "$src" inventory.img || return 1
	wait_streamer
}
mkdir -p "$T/stale" && cp "$T/rt-1-lz4"/* "$T/stale/"
check stale_socket_replaced stale
check usage_exit_2 sh -c "stasis-streamer -D x bogus 2>/dev/null; [ \$? = 2 ]"
check help sh -c "stasis-streamer --help | grep -q capture"

# Damaged shards: the error names the shard file and the chunk.
dmg=$T/dmg
corrupt_data() {
	rm -rf "$dmg"; cp -r "$T/rt-1-lz4" "$dmg"
	# chunk 0 starts at 40, its data at 88: flip a byte well inside chunk 0's data
	# (the shard holds files in arrival order; inventory.img comes first).
	local off
	off=$($PY - "$dmg/img-0.lz4" <<'PYEOF'
import struct, sys
d = open(sys.argv[1], 'rb').read()
pos = 40
while pos < len(d):
    raw, stored = struct.unpack_from('<II', d, pos + 12)
    if raw > 1000000:
        print(pos + 48 + stored // 2); break
    pos += 48 + stored
PYEOF
)
	flip_byte "$dmg/img-0.lz4" "$off"
	start_streamer "$dmg" serve || return 1
	! $CC "$dmg" restore "$src" inventory.img pages-1.img 2>/dev/null || return 1
	! wait_streamer || return 1
	grep -q "img-0.lz4 chunk [0-9]* (file pages-1.img" "$T/streamer.err" &&
		! stasis-streamer -D "$dmg" inspect --verify 2>/dev/null
}
check corrupt_data_names_shard_chunk corrupt_data
corrupt_header() {
	rm -rf "$dmg"; cp -r "$T/rt-1-lz4" "$dmg"
	flip_byte "$dmg/img-0.lz4" 60
	! start_streamer "$dmg" serve || return 1
	grep -q "img-0.lz4 chunk 0 at byte 40: corrupt header" "$T/streamer.err"
}
check corrupt_header_names_shard_chunk corrupt_header
truncated() {
	rm -rf "$dmg"; cp -r "$T/rt-1-lz4" "$dmg"
	truncate -s -1000 "$dmg/img-0.lz4"
	! start_streamer "$dmg" serve || return 1
	grep -q "img-0.lz4 chunk [0-9]*: truncated" "$T/streamer.err" || return 1
	! stasis-streamer -D "$dmg" extract "$T/tx" 2>/dev/null
}
check truncated_shard_names_shard_chunk truncated
missing_shard() {
	rm -rf "$dmg"; cp -r "$T/rt-2-zstd" "$dmg"
	rm "$dmg/img-1.zst"
	! stasis-streamer -D "$dmg" inspect 2>"$T/e" && grep -q "img-1.zst" "$T/e"
}
check missing_shard_named missing_shard
finish
