#!/usr/bin/env bash
# t_slurm.sh: the Slurm integration (docs/slurm.md) on a real Slurm cluster on
# one machine: munged, slurmctld in host "ctl", two slurmd nodes n1 and n2 in
# hosts a and b (tests/netns-hosts.sh), each with its own stasisd, all on one
# bridge; the checkpoint directory is shared (the same file system).
#
#   drain_requeue  a counter job (sbatch --stasis) is requeued while its node is
#                  drained; it resumes on the other node and counts on, its
#                  memory verified
#   preempt        a job of a low partition is preempted by a high one
#                  (PreemptMode=REQUEUE); it resumes on the other node the same way
#   no_option      a job without --stasis runs as Slurm's own child, untouched
#
# STASIS_SLURM_BENCH=1 adds the measurement of docs/slurm.md: a 1 GiB job,
# from Slurm's signal to running again on the other node.
. "$(dirname "$0")/../lib.sh"
. "$TESTS_DIR/netns-hosts.sh"

need() {
	command -v "$1" >/dev/null ||
		die "$1 is missing: scripts/setup.sh installs slurm-wlm, slurmctld, slurmd, munge"
}
for c in munged slurmctld slurmd sbatch scontrol squeue sinfo runuser; do need "$c"; done
SPANK=$STASIS_BUILD/spank_stasis.so
[ -f "$SPANK" ] || die "no $SPANK: libslurm-dev (slurm/spank.h) was missing when it was built"

TU=stasisslurm
make_user $TU
at_exit "userdel $TU"
TUID=$(id -u $TU)

# --- munge: a private daemon with its own key and socket ---
M=$T/munge
mkdir -p "$M"
head -c 1024 /dev/urandom >"$M/munge.key"
chown -R munge:munge "$M"
chmod 0755 "$M"
chmod 0400 "$M/munge.key"
runuser -u munge -- munged --force --socket="$M/munge.sock" --key-file="$M/munge.key" \
	--pid-file="$M/munged.pid" --log-file="$M/munged.log" --seed-file="$M/munged.seed" ||
	die "munged did not start: $(tail -3 "$M/munged.log" 2>/dev/null)"
wait_for 10 test -s "$M/munged.pid" || die "munged wrote no pid file"
at_exit "kill \$(cat '$M/munged.pid')"

# --- the hosts: ctl (10.77.0.10) for slurmctld, a and b for the nodes ---
host_up ctl 10.77.0.10
host_up a 10.77.0.1
host_up b 10.77.0.2
hosts_bridge ctl a b

# SlurmdSpoolDir is one path, private to each node, like a local disk: a batch
# script open in a job (bash reads it from there) exists again at that path when
# the job is restarted on the other node.
SPOOL=$T/spool
mkdir -p "$SPOOL" "$T/hosts/a/spool" "$T/hosts/b/spool"
host_mount a "$T/hosts/a/spool" "$SPOOL"
host_mount b "$T/hosts/b/spool" "$SPOOL"

host_daemon a
host_daemon b
# Private PID numbering per host: jobs on a get PIDs above 10000, on b above
# 30000, so a job moved to the other host finds its PIDs free there.
host_pid_base a 10000
host_pid_base b 30000

# --- Slurm ---
S=$T/slurm
CK=$T/ckpt
W=$T/work
mkdir -p "$S/ctld" "$CK" "$W"
chmod 1777 "$CK"
chmod 0777 "$W"
head -c 32 /dev/urandom | base64 >"$S/stasis.key"
chmod 0600 "$S/stasis.key"
HOST=$(hostname)
CONF=$S/slurm.conf
cat >"$CONF" <<EOF
ClusterName=stasistest
SlurmctldHost=$HOST(10.77.0.10)
SlurmUser=root
SlurmctldPort=6817
AuthType=auth/munge
CredType=cred/munge
# A requeued job waits cred_expire+1 s before it may start again (default 120 s).
AuthInfo=socket=$M/munge.sock,cred_expire=5
StateSaveLocation=$S/ctld
SlurmctldPidFile=$S/slurmctld.pid
SlurmctldLogFile=$S/slurmctld.log
SlurmdSpoolDir=$SPOOL
SlurmdPidFile=$SPOOL/slurmd.pid
SlurmdLogFile=$SPOOL/slurmd.log
SlurmdDebug=verbose
SlurmctldDebug=verbose
PlugStackConfig=$S/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
KillWait=60
MinJobAge=600
JobRequeue=1
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
NodeName=n1 NodeHostname=$HOST NodeAddr=10.77.0.1 Port=6818 CPUs=1 RealMemory=4000 State=UNKNOWN
NodeName=n2 NodeHostname=$HOST NodeAddr=10.77.0.2 Port=6818 CPUs=1 RealMemory=4000 State=UNKNOWN
PartitionName=low Nodes=n1,n2 Default=YES PriorityTier=1 GraceTime=5 MaxTime=INFINITE State=UP
PartitionName=high Nodes=n1,n2 PriorityTier=2 PreemptMode=OFF MaxTime=INFINITE State=UP
EOF
cat >"$S/plugstack.conf" <<EOF
required $SPANK dir=$CK stasis=$STASIS_BUILD/stasis key=$S/stasis.key stream=2
EOF
export SLURM_CONF=$CONF

host_bg ctl "$S/slurmctld.out" env SLURM_CONF="$CONF" slurmctld -D -c ||
	die "slurmctld did not start"
track_pid "$host_bg_pid"
for h in a b; do
	n=n1
	[ $h = b ] && n=n2
	host_bg $h "$T/hosts/$h/slurmd.out" env SLURM_CONF="$CONF" slurmd -D -N $n ||
		die "slurmd $n did not start"
	track_pid "$host_bg_pid"
done
# Clients talk to slurmctld over the bridge: run them in host ctl.
sl() { host_exec ctl env SLURM_CONF="$CONF" "$@"; }
as_user() { host_exec ctl env SLURM_CONF="$CONF" runuser -u $TU -- "$@"; }
nodes_idle() { [ "$(sl sinfo -h -N -p low -o '%N %t' 2>/dev/null | grep -c ' idle$')" = 2 ]; }
wait_for 60 nodes_idle ||
	die "the nodes did not come up: $(sl sinfo -N 2>&1 | tail -3); $(tail -5 "$S/slurmctld.log")"
ok cluster_up

show_logs() {
	[ "$_failed" = 1 ] || return 0
	for f in "$S/slurmctld.log" "$T/hosts/a/spool/slurmd.log" "$T/hosts/b/spool/slurmd.log"; do
		tail -15 "$f" 2>/dev/null | sed "s|^|# $(basename "$(dirname "$f")")/$(basename "$f"): |"
	done >&"$DAEMON_OUT"
}
exec {DAEMON_OUT}>&1
_cleanups=("show_logs" "${_cleanups[@]}")

# The workload: holds MB of memory of known content, counts, and verifies the
# memory every 40 counts. Its output must read: ready once, counts 1..N with
# no gap, only "verify ok" lines.
cat >"$W/counter.py" <<'EOF'
import hashlib, random, sys, time
mb = int(sys.argv[1])
mem = bytearray()
for i in range(0, mb, 16):
    mem += random.Random(i).randbytes(min(16, mb - i) << 20)
want = hashlib.sha256(mem).hexdigest()[:16]
print("ready", want, flush=True)
n = 0
while True:
    n += 1
    print("count", n, flush=True)
    if n % 40 == 0:
        have = hashlib.sha256(mem).hexdigest()[:16]
        print("verify", "ok" if have == want else "BAD", have, flush=True)
    time.sleep(0.05)
EOF
# A batch script that is not exec'ed away: bash stays, holding its script open.
cat >"$W/counter.sh" <<EOF
#!/bin/bash
python3 $W/counter.py \${1:-64}
echo "counter ended"
EOF
chmod 0755 "$W/counter.sh" "$W/counter.py"

submit() { as_user sbatch --parsable -D "$W" -o "$W/job-%j.out" --open-mode=append "$@"; }
job_state() { sl squeue -h -j "$1" -o '%T' 2>/dev/null; }
job_node() { sl squeue -h -j "$1" -o '%N' 2>/dev/null; }
host_of() { [ "$1" = n1 ] && echo a || echo b; }
last_count() { grep '^count ' "$W/job-$1.out" 2>/dev/null | tail -1 | cut -d' ' -f2; }
counted_past() { [ "$(last_count "$1")" -gt "$2" ] 2>/dev/null; }
running_on() { [ "$(job_state "$1")" = RUNNING ] && [ "$(job_node "$1")" = "$2" ]; }
restored() { grep -q "stasis: task 0 restored from" "$W/job-$1.out" 2>/dev/null; }

# The output of job $1 tells one uninterrupted run: one "ready", counts 1..N in
# order, every verify ok, at least one of them after the restore.
continuous() {
	$PY - "$W/job-$1.out" <<'EOF'
import sys
lines = open(sys.argv[1]).read().splitlines()
counts = [int(l.split()[1]) for l in lines if l.startswith("count ")]
ready = [l for l in lines if l.startswith("ready ")]
verify = [i for i, l in enumerate(lines) if l.startswith("verify ")]
rest = [i for i, l in enumerate(lines) if "stasis: task 0 restored from" in l]
bad = [l for l in lines if l.startswith("verify ") and " ok " not in l]
errs = []
if len(ready) != 1: errs.append("ready %d times" % len(ready))
if counts != list(range(1, len(counts) + 1)): errs.append("counts not 1..N in order")
if bad: errs.append("memory: %s" % bad[0])
if not rest or not any(i > rest[-1] for i in verify): errs.append("no verify after the restore")
if errs:
    print("# " + "; ".join(errs))
sys.exit(1 if errs else 0)
EOF
}

stasis_job_running() { [ "$(job_status "$1" "slurm-$2.batch.0")" = JOB_RUNNING ]; }
ls_has_latest() { "$STASIS_BUILD/stasis" slurm ls --dir "$CK" "$1" | grep -q ' latest '; }
no_stasis_job() { ! host_stasis a ps 2>/dev/null | grep -q "slurm-$1" && ! host_stasis b ps 2>/dev/null | grep -q "slurm-$1"; }
is_running() { [ "$(job_state "$1")" = RUNNING ]; }

# move JOB HOW: the job is running and counting; HOW (a function) makes Slurm
# take it off its node; it must come back on the other node and count on.
move() {
	local jid=$1 how=$2 node other oh n0 n1 t0 t1
	wait_for 60 counted_past "$jid" 20 || { fail "$CASE: job $jid does not count"; return 1; }
	node=$(job_node "$jid")
	other=n1
	[ "$node" = n1 ] && other=n2
	oh=$(host_of $other)
	n0=$(last_count "$jid")
	t0=$(date +%s%N)
	$how "$jid" "$node" "$other"
	if ! wait_for 120 restored "$jid"; then
		fail "$CASE: not restored: $(grep stasis: "$W/job-$jid.out" | tail -3)"
		return 1
	fi
	t1=$(date +%s%N)
	n1=$(last_count "$jid")
	echo "# $CASE: off $node at count $n0, running again on $other after $(((t1 - t0) / 1000000)) ms (count $n1)"
	check "$CASE: running_on_$other" wait_for 30 running_on "$jid" $other
	# Past the next memory check after the restore.
	check "$CASE: counts_on" wait_for 30 counted_past "$jid" $((n1 + 90))
	check "$CASE: same_job_one_run" continuous "$jid"
	check "$CASE: stasis_job_on_$oh" stasis_job_running "$oh" "$jid"
	check "$CASE: slurm_ls_latest" ls_has_latest "$jid"
}

drain_requeue() {
	sl scontrol update nodename="$2" state=drain reason=stasis-test
	sl scontrol requeue "$1"
}
preempt_it() {
	HIGH=$(submit -p high -w "$2" --wrap "sleep 600")
}

CASE=drain_requeue
J1=$(submit --stasis "$W/counter.sh") || die "sbatch failed"
move "$J1" drain_requeue
sl scancel "$J1"
sl scontrol update nodename=n1,n2 state=resume >/dev/null 2>&1
wait_for 60 nodes_idle

CASE=preempt
J2=$(submit -p low --stasis "$W/counter.sh") || die "sbatch failed"
move "$J2" preempt_it
check "$CASE: preemptor_runs" wait_for 30 is_running "$HIGH"
sl scancel "$J2" "$HIGH"
wait_for 60 nodes_idle

CASE=no_option
J3=$(submit "$W/counter.sh") || die "sbatch failed"
if wait_for 60 counted_past "$J3" 10; then
	n=$(job_node "$J3")
	h=$(host_of "$n")
	# Slurm's own child: the counter's parent chain reaches slurmstepd, and no
	# daemon has a job for it.
	pid=$(pgrep -u $TU -f "counter.py" | head -1)
	check "$CASE: child_of_slurmstepd" sh -c "pstree -s $pid | grep -q slurmstepd"
	check "$CASE: no_stasis_job" no_stasis_job "$J3"
	sl scancel "$J3"
	check "$CASE: ends_on_cancel" wait_for 90 sh -c "! pgrep -u $TU -f counter.py >/dev/null"
	check "$CASE: no_checkpoint" test ! -e "$CK/$J3"
else
	fail "$CASE: job $J3 does not count"
fi

if [ -n "${STASIS_SLURM_BENCH:-}" ]; then
	CASE=bench_1g
	wait_for 60 nodes_idle
	J4=$(submit --stasis "$W/counter.sh" 1024) || die "sbatch failed"
	wait_for 180 counted_past "$J4" 20 || fail "$CASE: the 1 GiB job does not count"
	move "$J4" drain_requeue
	grep "stasis:" "$W/job-$J4.out" | sed 's/^/# /'
	sl scancel "$J4"
fi
finish
