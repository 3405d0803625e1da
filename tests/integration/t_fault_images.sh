#!/usr/bin/env bash
# Damaged checkpoints: a shard truncated, a byte flipped, a shard missing, the
# manifest missing or garbage, and the same for plain CRIU images. Each
# restore is refused with an error naming the damaged file, starts nothing,
# and once the files are put back the same checkpoint restores and the job's
# memory verifies. Recorded checkpoints (the daemon's fingerprint) and
# unrecorded copies restored by root (the streamer's own checks) both.
. "$(dirname "$0")/../lib.sh"
. "$REPO/tests/helpers/daemon_lib.sh"
. "$(dirname "$0")/fault_lib.sh"

flip() {
	$PY - "$1" <<'PYEOF'
import os, sys
f = sys.argv[1]
off = os.path.getsize(f) // 2
with open(f, 'r+b') as fh:
    fh.seek(off)
    b = fh.read(1)
    fh.seek(off)
    fh.write(bytes([b[0] ^ 0x40]))
PYEOF
}
# damage KIND DIR: prints the name of the file the error must mention.
damage() {
	local kind=$1 d=$2 s
	case $kind in
	truncated) s=$(ls "$d" | grep '^img-1\.' | head -1); truncate -s -1000 "$d/$s"; echo "$s" ;;
	flipped) s=$(ls "$d" | grep '^img-2\.' | head -1); flip "$d/$s"; echo "$s" ;;
	shard_missing) s=$(ls "$d" | grep '^img-0\.' | head -1); rm "$d/$s"; echo "$s" ;;
	manifest_missing) rm "$d/manifest.json"; echo manifest ;;
	manifest_garbage) echo '{"format": "stasis-shards", garbage' >"$d/manifest.json"; echo manifest ;;
	pages_truncated) s=$(ls "$d" | grep '^pages-' | head -1); truncate -s -4096 "$d/$s"; echo "$s" ;;
	pages_flipped) s=$(ls "$d" | grep '^pages-' | head -1); flip "$d/$s"; echo "$s" ;;
	inventory_missing) rm "$d/inventory.img"; echo inventory.img ;;
	esac
}
# refused_restore NAME FILE CMD...: refused, the error names FILE, nothing ran.
refused_restore() {
	local name=$1 file=$2 out
	shift 2
	if out=$("$@" 2>&1); then
		case $name in
		copy_pages_*)
			# Plain CRIU images carry no checksums and an unrecorded copy has no
			# fingerprint: root restoring one is trusted (docs/reliability.md).
			echo "# $name: LIMITATION: unrecorded plain images restored unchecked: $out" ;;
		*) fail "${name}_refused"
			echo "# $name: restored from damaged images: $out" ;;
		esac
		if verified "$id"; then
			echo "# $name: the restored memory verifies"
		else
			echo "# $name: the restored memory is corrupt"
			[[ $name == copy_pages_* ]] || fail "${name}_restored_memory_corrupt"
		fi
		sd kill "$id" >/dev/null
		wait_for 10 test ! -d "/proc/$pid"
		return
	fi
	ok "${name}_refused"
	echo "# $name: $out"
	check ${name}_error_names_file grep -qF "$file" <<<"$out"
	check ${name}_job_not_started test "$(job_status "$id")" != JOB_RUNNING
	check ${name}_pid_free test ! -d "/proc/$pid"
}

daemon_up
hog i1 64M
hog i2 64M
sd dump job i1 -d "$T/i1" --stream 3 >/dev/null || die "dump i1"
sd dump job i2 -d "$T/i2" >/dev/null || die "dump i2"
cp -a "$T/i1" "$T/i1.orig"
cp -a "$T/i2" "$T/i2.orig"

for kind in truncated flipped shard_missing manifest_missing manifest_garbage \
	pages_truncated pages_flipped inventory_missing; do
	CASE=$kind
	id=i1 dir=$T/i1
	case $kind in pages_* | inventory_*) id=i2 dir=$T/i2 ;; esac
	pid=$(job_pid $id)
	wait_for 10 test ! -d "/proc/$pid"
	# The recorded checkpoint, damaged in place.
	f=$(damage $kind "$dir")
	refused_restore recorded_$kind "$f" sd restore job $id
	# Repaired in place: a checkpoint is known by its directory's inode, and a
	# directory put in its place is refused as another one (docs/security.md).
	find "$dir" -mindepth 1 -delete
	cp -a "$dir.orig/." "$dir/"
	# An unrecorded copy, damaged, restored by root with -d.
	rm -rf "$T/copy"
	cp -a "$dir.orig" "$T/copy"
	f=$(damage $kind "$T/copy")
	refused_restore copy_$kind "$f" sd restore job $id -d "$T/copy"
done

# Put back, both checkpoints restore and the memory is intact.
for id in i1 i2; do
	check ${id}_restores_after_repair sd restore job $id
	check ${id}_memory_intact verified $id
	sd kill $id >/dev/null
done
finish
