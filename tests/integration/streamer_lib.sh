# streamer_lib.sh: helpers for the t_streamer_*.sh tests (source after lib.sh).

# start_streamer DIR ARGS...: start stasis-streamer -D DIR ARGS in the
# background, wait for its "ready" line; sets SPID. Its stderr goes to
# $T/streamer.err. Returns non-zero if it never became ready.
start_streamer() {
	local dir=$1 line=
	shift
	rm -f "$T/ready.fifo"
	mkfifo "$T/ready.fifo"
	stasis-streamer -D "$dir" --ready-fd 9 "$@" 9>"$T/ready.fifo" 2>"$T/streamer.err" &
	SPID=$!
	track_pid "$SPID"
	read -r -t 20 line <"$T/ready.fifo"
	[ "$line" = ready ]
}

# wait_streamer: wait for $SPID; returns its exit status.
wait_streamer() {
	wait "$SPID"
}

# A byte offset inside the data of chunk 1 of shard FILE (past both headers).
flip_byte() {
	local file=$1 off=$2
	$PY - "$file" "$off" <<'PYEOF'
import sys
f, off = sys.argv[1], int(sys.argv[2])
with open(f, 'r+b') as fh:
    fh.seek(off)
    b = fh.read(1)
    fh.seek(off)
    fh.write(bytes([b[0] ^ 0x5a]))
PYEOF
}

# usr1_ready PID: PID catches SIGUSR1 (its report handler is installed).
usr1_ready() {
	local m
	m=$(awk '/^SigCgt/ {print $2}' "/proc/$1/status" 2>/dev/null) || return 1
	[ -n "$m" ] && (( (16#$m >> 9) & 1 ))
}
