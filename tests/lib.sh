# lib.sh: shared helpers for integration tests (source it from tests/integration/t_*.sh).
#
# Every test runs the real binaries from $STASIS_BUILD (default build/), the
# provisioned CRIU ($STASIS_CRIU), real processes and real files. Scratch space
# lives under one directory per test ($T) that is removed on exit, along with
# every process the test registered with `track_pid`.
set -u
TESTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$TESTS_DIR/.." && pwd)
STASIS_BUILD=${STASIS_BUILD:-$REPO/build}
STASIS_CRIU=${STASIS_CRIU:-/usr/local/libexec/stasis/criu}
export STASIS_CRIU
. "$TESTS_DIR/breakpoints.sh"
PATH=$STASIS_BUILD:$PATH
HELPERS=$STASIS_BUILD/tests/bin
PY=/usr/bin/python3
T=$(mktemp -d /tmp/stasis-t.XXXXXX)
chmod 0755 "$T"
_pids=()
_failed=0
_cleanups=()

track_pid() { _pids+=("$@"); }
at_exit() { _cleanups+=("$*"); }

_cleanup() {
	local c p
	for c in "${_cleanups[@]}"; do eval "$c" >/dev/null 2>&1 || true; done
	for p in "${_pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	[ -n "${KEEP_T:-}" ] || rm -rf "$T"
}
trap _cleanup EXIT

ok() { echo "ok $*"; }
fail() { echo "FAIL $*"; _failed=1; }
# check NAME CMD...: one case, passes when CMD exits 0.
check() {
	local name=$1
	shift
	if "$@"; then ok "$name"; else fail "$name"; fi
}
# refused_with PATTERN CMD...: CMD fails, and its output matches PATTERN (else it
# says on stderr what happened).
refused_with() {
	local pat=$1 out
	shift
	out=$("$@" 2>&1) && { echo "succeeded: $out" >&2; return 1; }
	grep -Eq "$pat" <<<"$out" || { echo "said: $out" >&2; return 1; }
}
# refused NAME PATTERN CMD...: one case: CMD fails with an error matching PATTERN.
refused() {
	local name=$1 pat=$2
	shift 2
	check "$name" refused_with "$pat" "$@"
}
# finish: last line of every test script.
finish() { exit $_failed; }

die() { echo "error: $*" >&2; fail "${CASE:-setup}: $*"; exit 1; }

# wait_for SECONDS CMD...: poll CMD every 0.1 s until it succeeds.
wait_for() {
	local deadline=$(( $(date +%s) + $1 ))
	shift
	until "$@"; do
		[ "$(date +%s)" -ge "$deadline" ] && return 1
		sleep 0.1
	done
}

alive() { [ -d "/proc/$1" ] && ! grep -q '^State:.*[ZX]' "/proc/$1/status" 2>/dev/null; }
dead() { ! alive "$1"; }

# A throwaway unprivileged user for multi-user tests; removed on exit.
make_user() {
	local name=$1
	id "$name" >/dev/null 2>&1 || useradd -M -d /nonexistent -s /usr/sbin/nologin "$name"
}
