#!/usr/bin/env bash
# t_leak.sh: tests/leak/leakcheck.sh with a few cycles (LEAK_CYCLES, default
# 10): the sanitized daemon and streamer leak no memory, descriptors, threads
# or processes over repeated dumps and restores of one job. The 50-cycle
# figures are in docs/reliability.md.
. "$(dirname "$0")/../lib.sh"

asan=${STASIS_ASAN_BUILD:-$REPO/build-asan}
if [ ! -x "$asan/stasisd" ] || [ ! -x "$asan/stasis-streamer" ]; then
	make -C "$REPO" -s SAN=1 -j2 build-asan/stasisd build-asan/stasis-streamer >/dev/null ||
		die "cannot build the sanitized daemon (make SAN=1 all)"
fi
out=$("$REPO/tests/leak/leakcheck.sh" "${LEAK_CYCLES:-10}" 2>&1)
rc=$?
echo "$out"
check leak_cycles_all_ok grep -q '^leak cycles: .*, 0 failed' <<<"$out"
check leak_no_fd_growth awk '/^leak daemon fds:/{exit !($6 <= $4)}' <<<"$out"
check leak_no_thread_growth awk '/^leak daemon threads:/{exit !($6 <= $4)}' <<<"$out"
check leak_no_zombies grep -q '^leak zombies: 0; other children left: 0$' <<<"$out"
check leak_no_lsan_reports grep -q '^leak lsan reports: 0 (0 bytes); other sanitizer errors: 0$' <<<"$out"
check leak_script_ok test $rc -eq 0
finish
