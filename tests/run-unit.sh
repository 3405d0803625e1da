#!/usr/bin/env bash
# run-unit.sh PROG...: run unit test programs; each prints "ok NAME"/"FAIL NAME"
# lines. A program that crashes (a sanitizer report) counts as a failure.
set -u
rc=0
for t in "$@"; do
	[ -x "$t" ] || continue
	name=$(basename "$t")
	out=$("$t" 2>&1)
	code=$?
	printf '%s\n' "$out" | sed -n "s/^ok   /ok $name./p; s/^FAIL /FAIL $name./p"
	if [ $code -ne 0 ]; then
		printf '%s\n' "$out" | grep -v '^ok ' | tail -40 | sed 's/^/    /' >&2
		printf '%s\n' "$out" | grep -q '^FAIL ' || echo "FAIL $name (exit $code)"
		rc=1
	fi
done
exit $rc
