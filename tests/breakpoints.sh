# shellcheck shell=bash
# breakpoints.sh: sourced by lib.sh and run-integration.sh (with REPO set).
#
# A CRIU a test runs itself hangs for ever where ptrace hardware breakpoints
# never fire (docs/reliability.md, "Never hang"): ask the probe the daemon
# uses (`stasis check`, once per run: the answer is exported) and run such
# CRIUs in CRIU's no-breakpoint mode there. Daemons set their own mode and
# ignore this.
if [ -z "${STASIS_TEST_BREAKPOINTS:-}" ]; then
	if "${STASIS_BUILD:-$REPO/build}/stasis" check 2>/dev/null |
		grep -q 'breakpoints: ptrace hardware breakpoints delivered here'; then
		STASIS_TEST_BREAKPOINTS=on
	else
		STASIS_TEST_BREAKPOINTS=off
	fi
	export STASIS_TEST_BREAKPOINTS
fi
if [ "$STASIS_TEST_BREAKPOINTS" = off ]; then
	export CRIU_FAULT=130
fi
