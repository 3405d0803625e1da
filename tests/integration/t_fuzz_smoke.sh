#!/usr/bin/env bash
# t_fuzz_smoke.sh: a short run of every libFuzzer target (tests/fuzz/run.sh):
# shard reader, manifest parser, checkpoint opening, CRIU stream protocol
# reader and the daemon's API request handling, under ASan+UBSan. Each target
# runs FUZZ_SECONDS (default 20), two at a time; any crash, leak, hang or
# sanitizer report fails its case.
. "$(dirname "$0")/../lib.sh"

command -v clang >/dev/null || die "clang is needed for the fuzz targets (scripts/setup.sh)"
out=$(FUZZ_JOBS=${FUZZ_JOBS:-2} "$REPO/tests/fuzz/run.sh" "${FUZZ_SECONDS:-20}" 2>&1)
echo "$out"
for t in fuzz_api fuzz_ckpt fuzz_criu_stream fuzz_manifest fuzz_shard; do
	check "$t" grep -q "^fuzz $t: [0-9]* runs in .*no finding" <<<"$out"
done
finish
