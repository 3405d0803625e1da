#!/usr/bin/env bash
# The users' workflow, as typed: exec, ps, dump job ID -d DIR [--stream 8], ps,
# restore job ID [--stream 8], ps -- against a real stasisd, real CRIU and real
# processes: a counter (its log must stay 1, 2, 3, ... across dump and
# restore) and a ~1 GiB Python process (its memory checksum must match after
# restore).
. "$(dirname "$0")/../lib.sh"
. "$REPO/tests/helpers/daemon_lib.sh"

daemon_up
DUMP_RE='^Success Checkpoint=[^ ]+ stats=\{"CRIUDuration":[0-9]+,"CheckpointFileStats":\{"Duration":[0-9]+,"Size":[0-9]+\},"PrepareDuration":[0-9]+\}$'
REST_RE='^Success PID=[0-9]+ stats=\{"CRIUDuration":[0-9]+,"PrepareDuration":[0-9]+\}$'

# ps row of job ID: "ID TYPE PID STATUS CHECKPOINT GPU?"
ps_row() { sd ps | awk -v id="$1" '$1 == id'; }

# counter_case NAME STREAM_ARGS...: the transcript for a counting job.
counter_case() {
	local id=$1 dir=$T/ck-$1 out pid before row
	shift
	CASE=$id
	sd exec -i "$id" -w "$T" "$PY $WORKLOADS/daemon_counter.py" >"$T/$id.exec" ||
		{ fail "${id}_exec"; return; }
	pid=$(job_pid "$id")
	wait_for 10 counted_past "$id" 10 || { fail "${id}_counting"; return; }
	row=$(ps_row "$id")
	check "${id}_ps_running" test -n "$(echo "$row" |
		awk -v p="$pid" '$2=="process" && $3==p && $4=="JOB_RUNNING" && $5=="-" && $6=="false"')"
	out=$(sd dump job "$id" -d "$dir" "$@")
	echo "$out"
	check "${id}_dump_output" grep -Eq "$DUMP_RE" <<<"$out"
	check "${id}_dump_names_dir" grep -q "Checkpoint=$dir " <<<"$out"
	row=$(ps_row "$id")
	check "${id}_ps_killed" test -n "$(echo "$row" |
		awk -v p="$pid" -v d="$dir" '$3==p && $4=="JOB_KILLED" && $5==d && $6=="false"')"
	check "${id}_process_gone" dead "$pid"
	before=$(last_count "$id")
	sleep 0.3
	check "${id}_stopped_counting" test "$(last_count "$id")" = "$before"
	out=$(sd restore job "$id" "$@")
	echo "$out"
	check "${id}_restore_output" grep -Eq "$REST_RE" <<<"$out"
	check "${id}_same_pid" grep -q "PID=$pid " <<<"$out"
	row=$(ps_row "$id")
	check "${id}_ps_running_again" test -n "$(echo "$row" |
		awk -v p="$pid" -v d="$dir" '$3==p && $4=="JOB_RUNNING" && $5==d')"
	check "${id}_counts_on" wait_for 10 counted_past "$id" $((before + 10))
	check "${id}_log_continuous" counts_in_order "$id"
	sd kill "$id" >/dev/null
}

counter_case count-plain
check count_plain_images test -f "$T/ck-count-plain/inventory.img"
counter_case count-stream --stream 8
check count_stream_8_shards test "$(ls "$T/ck-count-stream" | grep -c '^img-[0-7]\.lz4$')" = 8
check count_stream_manifest test -f "$T/ck-count-stream/manifest.json"

# mem_case NAME STREAM_ARGS...: a ~1 GiB process; its memory must come back intact.
mem_case() {
	local id=$1 dir=$T/ck-$1 out pid sum chk
	shift
	CASE=$id
	sd exec -i "$id" -w "$T" "exec $PY $WORKLOADS/daemon_mem.py 1024" >/dev/null ||
		{ fail "${id}_exec"; return; }
	pid=$(job_pid "$id")
	wait_for 120 sh -c "'$STASIS_BUILD/stasis' logs $id | grep -q '^tick'" ||
		{ fail "${id}_filled"; return; }
	sum=$(sd logs "$id" | awk '$1=="sum"{print $2}')
	out=$(sd dump job "$id" -d "$dir" "$@")
	echo "$out"
	check "${id}_dump_output" grep -Eq "$DUMP_RE" <<<"$out"
	check "${id}_killed" test "$(job_status "$id")" = JOB_KILLED
	out=$(sd restore job "$id" "$@")
	echo "$out"
	check "${id}_restore_output" grep -Eq "$REST_RE" <<<"$out"
	check "${id}_same_pid" grep -q "PID=$pid " <<<"$out"
	sd kill --signal USR1 "$id" >/dev/null
	wait_for 60 sh -c "'$STASIS_BUILD/stasis' logs $id | grep -q '^check'"
	chk=$(sd logs "$id" | awk '$1=="check"{print $2}')
	check "${id}_memory_intact" test -n "$sum" -a "$sum" = "$chk"
	check "${id}_ticks_on" test "$(job_status "$id")" = JOB_RUNNING
	sd kill "$id" >/dev/null
}

mem_case big-plain
mem_case big-stream --stream 8
sd ps
finish
