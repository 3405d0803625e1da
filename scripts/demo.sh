#!/usr/bin/env bash
# demo.sh: the main job end to end on this machine. Sets up (packages, CRIU),
# builds and installs stasis, starts the daemon, runs a real workload as a
# managed job, checkpoints it with --stream 8, restores it, and shows that it
# goes on from where it stopped. Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "demo.sh: run as root" >&2; exit 1; }
MIB=${DEMO_MIB:-512}
CKPT=${DEMO_CKPT:-/var/tmp/stasis-demo-ckpt}
WORK=${DEMO_WORK:-/var/tmp/stasis-demo-work}
JOB=${DEMO_JOB:-ced}

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { say "$*"; "$@"; }

bash scripts/setup.sh
make -j"$(nproc)" all >/dev/null
make install >/dev/null
# A daemon left from an earlier run may be an older build: restart it (jobs keep
# running across a daemon restart and are re-adopted).
stasis daemon stop >/dev/null 2>&1 || true
run stasis daemon start
# How CRIU runs on this host (probed: some hosts never deliver ptrace breakpoint traps).
say "stasis check | grep breakpoints"; stasis check | grep breakpoints || true
stasis rm --force "$JOB" >/dev/null 2>&1 || true
rm -rf "$CKPT" && mkdir -p "$WORK"
cp examples/train.py "$WORK/"

run stasis exec -i "$JOB" -w "$WORK" "python3 train.py $MIB"
# Until it trains: filling its memory takes from a second to half a minute,
# depending on how fast this host hands out fresh pages.
last_step() { stasis logs "$JOB" | grep '^step ' | tail -1; }
for _ in $(seq 240); do [ -n "$(last_step)" ] && break; sleep 0.5; done
[ -n "$(last_step)" ] || { echo "demo: FAILED: the job never started training" >&2; exit 1; }
run stasis ps
say "stasis logs $JOB | tail -2"; stasis logs "$JOB" | tail -2
run stasis dump job "$JOB" -d "$CKPT" --stream 8
run stasis ps
run ls -l "$CKPT"
before=$(last_step)
sleep 2
run stasis restore job "$JOB" --stream 8
# Until it has taken a few more steps (every 0.5 s).
step_of() { local x=${1#step }; echo "${x%% *}"; }
b=$(step_of "$before")
for _ in $(seq 60); do
	a=$(step_of "$(last_step)")
	[ "${a:-0}" -ge $((b + 3)) ] && break
	sleep 0.5
done
run stasis ps
say "stasis logs $JOB | tail -4"
stasis logs "$JOB" | tail -4
after=$(last_step)
echo
echo "last line before the dump: $before"
echo "last line after restore:   $after"
b=${before#step }; b=${b%% *}; a=${after#step }; a=${a%% *}
if [ "$a" -gt "$b" ] && [ "${before#* state }" = "${after#* state }" ]; then
	echo "demo: the job went on from step $b to step $a with the same state checksum"
else
	echo "demo: FAILED: the restored job did not continue" >&2
	exit 1
fi
run stasis kill "$JOB"
