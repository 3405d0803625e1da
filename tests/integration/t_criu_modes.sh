#!/usr/bin/env bash
# CRIU adapts to the host: the daemon's breakpoint probe agrees with what a
# plain CRIU does here; `stasis check` names the finding; forced off, every
# CRIU run (dump, restore, plain and streamed) gets CRIU_FAULT=130 and works;
# forced on, it works where breakpoints fire and is cut off by the watchdog
# (never hangs) where they do not; auto follows the probe.
. "$(dirname "$0")/../lib.sh"
. "$REPO/tests/helpers/daemon_lib.sh"
. "$(dirname "$0")/fault_lib.sh"

# This script sets the mode of each daemon it starts itself: none from outside.
unset STASIS_CRIU_BREAKPOINTS
# ... and its plain CRIU runs as a user's would, without lib.sh's mode.
unset CRIU_FAULT
REAL_CRIU=$STASIS_CRIU
# A CRIU that notes its mode, then is the real one.
cat >"$T/criu-wrap" <<EOS
#!/bin/sh
echo "\$1 \${CRIU_FAULT:-none}" >>"$T/criu-env.log"
exec "$REAL_CRIU" "\$@"
EOS
chmod 0755 "$T/criu-wrap"
: >"$T/criu-env.log"
chmod 0666 "$T/criu-env.log"

# 1. Plain CRIU, no switch set: does its dump of a sleeping process finish?
setsid sleep 1000 </dev/null >/dev/null 2>&1 &
spid=$!
track_pid "$spid"
mkdir -p "$T/plain"
timeout -k 5 30 "$REAL_CRIU" dump -t "$spid" -D "$T/plain" -o dump.log -v4 >/dev/null 2>&1
rc=$?
kill -9 "$spid" 2>/dev/null
if [ $rc -eq 0 ]; then host=delivered; elif [ $rc -ge 124 ]; then host=silent; else host=error; fi
echo "# plain CRIU dump here: exit $rc ($host); last log line: $(tail -1 "$T/plain/dump.log")"
check plain_criu_conclusive test "$host" != error

daemon_up
breakpoints_line() { sd check | grep '^ok       breakpoints: '; }
line=$(breakpoints_line)
echo "# stasis check: $line"
check check_names_finding test -n "$line"
if [ "$host" = delivered ]; then
	check probe_agrees_with_criu grep -q "breakpoints delivered here" <<<"$line"
	check auto_uses_breakpoints grep -q "CRIU runs with breakpoints" <<<"$line"
else
	check probe_agrees_with_criu grep -q "breakpoints not delivered here" <<<"$line"
	check auto_avoids_breakpoints grep -q "no-breakpoint mode (CRIU_FAULT=130)" <<<"$line"
fi

# restart_with MODE: the daemon again, with the wrapper and STASIS_CRIU_BREAKPOINTS=MODE.
restart_with() {
	daemon_down
	STASIS_CRIU=$T/criu-wrap STASIS_CRIU_BREAKPOINTS=$1 daemon_up
	: >"$T/criu-env.log"
}
# runs_all OP FAULT: every CRIU OP run logged by the wrapper had CRIU_FAULT=FAULT.
runs_all() {
	grep -q "^$1 " "$T/criu-env.log" && ! grep "^$1 " "$T/criu-env.log" | grep -vq " $2\$"
}
round_trip() {
	local name=$1 id=$2
	shift 2
	check ${name}_dump sd dump job "$id" -d "$T/$name" "$@" --timeout 20
	check ${name}_restore sd restore job "$id" --timeout 20
	check ${name}_memory_intact verified "$id"
}

# 2. Forced off: the no-breakpoint mode for dumps and restores, plain and streamed.
restart_with off
line=$(breakpoints_line)
check off_check_says_forced grep -q "no-breakpoint mode (CRIU_FAULT=130) (forced: --criu-breakpoints=off)" <<<"$line"
hog m1 64M
round_trip off_plain m1
round_trip off_streamed m1 --stream 2
check off_every_dump_without_breakpoints runs_all dump 130
check off_every_restore_without_breakpoints runs_all restore 130
sd kill m1 >/dev/null

# 3. Forced on: works where they fire; where they do not, the watchdog ends it.
restart_with on
check on_check_says_forced grep -q "with breakpoints (forced: --criu-breakpoints=on)" <<<"$(breakpoints_line)"
hog m2 64M
if [ "$host" = delivered ]; then
	round_trip on_plain m2
	check on_every_dump_with_breakpoints runs_all dump none
	check on_every_restore_with_breakpoints runs_all restore none
else
	pid=$(job_pid m2)
	out=$(sd dump job m2 -d "$T/on" --timeout 5 2>&1)
	check on_silent_host_dump_fails test $? -ne 0
	echo "# forced on, silent host: $out"
	check on_silent_host_stall_named grep -q "stalled: no progress for 5 s" <<<"$out"
	check on_silent_host_job_runs alive "$pid"
	check on_silent_host_memory_intact verified m2
fi
sd kill m2 >/dev/null

# 4. Auto follows the probe.
restart_with auto
hog m3 64M
round_trip auto m3
if [ "$host" = delivered ]; then
	check auto_dump_mode runs_all dump none
else
	check auto_dump_mode runs_all dump 130
fi
sd kill m3 >/dev/null

# 5. A mode that is not one is refused at start.
out=$("$STASIS_BUILD/stasisd" --criu-breakpoints=maybe --socket "$T/x.sock" --state-dir "$T/x" 2>&1)
check bad_mode_exit_2 test $? -eq 2
check bad_mode_says_why grep -q "auto, on or off" <<<"$out"
finish
