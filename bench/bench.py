#!/usr/bin/env python3
"""bench.py - the stasis benchmark suite: plain CRIU against stasis, same run.

Run it through bench/run.sh (see --help). For every workload case it keeps one
memhog process alive and, round after round, dumps and restores it with every
system under test in turn (the order rotates each round so no system always
goes first), checking after each restore that the process still holds exactly
its memory. Systems:

  plain          criu dump -D / criu restore -D on local disk
  plain+lz4      the same, then `tar | lz4 -1` of the image directory (and
                 `lz4 -d | tar x` before the restore): what users do by hand
  stream-C-nN    criu --stream driven directly with stasis-streamer
                 (capture / serve), codec C, N shards
  stasis-C-nN    `stasis dump job ID -d DIR --stream N --codec C` and
                 `stasis restore job ID` through a private stasisd

Results go to bench/results/<UTC timestamp>/: raw.csv (one row per trial),
summary.csv, results.md, plots (PNG, gnuplot) and meta.txt (machine, load).
The method and its caveats are in docs/benchmarks.md.
"""

import argparse
import csv
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

GIB = 1 << 30
MIB = 1 << 20
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(time.strftime("%H:%M:%S ") + msg, flush=True)


# ---------------------------------------------------------------- processes


def cpu_of(rusage):
    return rusage.ru_utime + rusage.ru_stime


def wait_rusage(proc):
    """Reap PROC, returning (exit status, rusage); keeps Popen consistent."""
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, ru


def stat_cpu(pid):
    """utime+stime of PID in seconds (works on a zombie too), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def tree_pids(root):
    """ROOT and all its descendants, from /proc/PID/task/*/children."""
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    todo.extend(int(x) for x in f.read().split())
        except OSError:
            pass
    return out


def zombie_cpu(wl):
    """CPU of the dumped tree, read from its zombies before we reap them."""
    return sum(stat_cpu(p) or 0.0 for p in wl.tree)


def tree_cpu(root):
    return sum(stat_cpu(p) or 0.0 for p in tree_pids(root))


def proc_status(pid, key):
    """A kB field of /proc/PID/status (VmHWM, VmRSS), in kB, or 0."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except OSError:
        return False


def wait_gone(pids, timeout=60):
    deadline = time.monotonic() + timeout
    while any(os.path.exists(f"/proc/{p}") for p in pids):
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {pids} did not go away")
        time.sleep(0.02)


def drop_caches(enabled):
    """sync, then drop clean page cache: every timed phase starts from the same
    state (no dirty data of an earlier trial being written back under it, no
    images of an earlier phase cached). Returns seconds the sync took."""
    t0 = time.monotonic()
    os.sync()
    took = time.monotonic() - t0
    if enabled:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    return took


def dir_bytes(path, skip=re.compile(r"\.(log|sock)$|^stats-|^irmap-cache$")):
    total = 0
    for name in os.listdir(path):
        full = os.path.join(path, name)
        if os.path.isfile(full) and not skip.search(name):
            total += os.path.getsize(full)
    return total


def criu_stats(text):
    """Figures from `criu --display-stats` output, in seconds / pages."""
    out = {}
    for key, name in (("Frozen time", "frozen_s"), ("Memory dump time", "memdump_s"),
                      ("Memory write time", "memwrite_s"), ("Restore time", "criu_restore_s"),
                      ("Freezing time", "freezing_s")):
        m = re.search(key + r": (\d+) us", text)
        if m:
            out[name] = int(m.group(1)) / 1e6
    m = re.search(r"Memory pages written: (\d+)", text)
    if m:
        out["pages_written"] = int(m.group(1))
    return out


def varints(buf):
    """(field, value) pairs of a protobuf message, varint and length fields."""
    i, out = 0, []
    while i < len(buf):
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            val, i = _varint(buf, i)
        elif wire == 2:
            n, i = _varint(buf, i)
            val, i = buf[i:i + n], i + n
        else:
            break
        out.append((field, val))
    return out


def _varint(buf, i):
    val = shift = 0
    while True:
        b = buf[i]
        i += 1
        val |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return val, i


def stats_dump_file(path):
    """Frozen/memdump/memwrite times from CRIU's stats-dump image (two magic
    u32s, a u32 length, then stats_entry{dump=1{freezing=1, frozen=2,
    memdump=3, memwrite=4}}): how the daemon's dumps get the same figures."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        n = int.from_bytes(data[8:12], "little")
        dump = dict(varints(dict(varints(data[12:12 + n]))[1]))
        return {"freezing_s": dump.get(1, 0) / 1e6, "frozen_s": dump.get(2, 0) / 1e6,
                "memdump_s": dump.get(3, 0) / 1e6, "memwrite_s": dump.get(4, 0) / 1e6}
    except (OSError, KeyError, IndexError, TypeError):
        return {}


def streamer_stats(img, row, prefix):
    """The streamer's own account (DIR/streamer-stats.json): fsync time etc."""
    try:
        with open(os.path.join(img, "streamer-stats.json")) as f:
            st = json.loads(f.read().splitlines()[-1])
        for k in ("wait_ms", "transfer_ms", "sync_ms", "duration_ms"):
            if k in st:
                row[f"{prefix}_{k}"] = st[k]
    except (OSError, ValueError, IndexError):
        pass


class Failed(Exception):
    pass


CRIU_BOUND_S = 900


def run_criu(env, args, cwd, logname):
    """Run CRIU with --display-stats; returns (wall s, rusage, stats)."""
    cmd = [env.criu] + args + ["-o", logname, "--display-stats"]
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    bound = threading.Timer(CRIU_BOUND_S, p.kill)  # a benchmark never hangs either
    bound.start()
    out = p.stdout.read()
    rc, ru = wait_rusage(p)
    bound.cancel()
    wall = time.monotonic() - t0
    if rc != 0:
        raise Failed(f"criu {args[0]} exit {rc}: {out.strip()[-300:]}")
    return wall, ru, criu_stats(out)


class Streamer:
    """stasis-streamer capture|serve under our eye: ready fd, rusage, RSS."""

    def __init__(self, env, directory, command, extra=()):
        rfd, wfd = os.pipe()
        self.stderr = open(os.path.join(env.scratch, "streamer.err"), "a")
        self.t0 = time.monotonic()
        cmd = [env.streamer, "-D", directory, "--ready-fd", str(wfd)] + list(extra) + [command]
        self.p = subprocess.Popen(cmd, pass_fds=(wfd,), stdin=subprocess.DEVNULL,
                                  stdout=self.stderr, stderr=self.stderr)
        os.close(wfd)
        with os.fdopen(rfd) as r:
            line = r.readline()
        if line.strip() != "ready":
            self.finish()
            raise Failed(f"streamer {command} never said ready (exit {self.p.returncode})")

    def finish(self):
        rc, ru = wait_rusage(self.p)
        self.end = time.monotonic()
        self.stderr.close()
        if rc != 0:
            raise Failed(f"streamer exit {rc}")
        return ru


# ---------------------------------------------------------------- workloads


class Workload:
    """One memhog process (tree) the systems take turns on."""

    def __init__(self, env, case, tag):
        self.env, self.case = env, case
        self.dir = os.path.join(env.scratch, tag)
        os.makedirs(self.dir, exist_ok=True)
        self.log = os.path.join(self.dir, "memhog.log")
        self.args = [env.memhog, "--size", f"{case.size_mib}M", "--mix", case.mix,
                     "--procs", str(case.procs), "--log", self.log]
        self.popen = None
        self.pid = None
        env.live.append(self)

    def checksum_line(self, word, after):
        try:
            with open(self.log) as f:
                lines = f.read().splitlines()[after:]
        except OSError:
            return None
        for line in lines:
            if line.startswith(word + " "):
                return line
        return None

    def log_lines(self):
        try:
            with open(self.log) as f:
                return len(f.read().splitlines())
        except OSError:
            return 0

    def wait_line(self, word, after, timeout):
        deadline = time.monotonic() + timeout
        while True:
            line = self.checksum_line(word, after)
            if line:
                return line
            if time.monotonic() > deadline:
                raise Failed(f"workload: no '{word}' line in {timeout}s")
            time.sleep(0.02)

    def start(self):
        self.popen = subprocess.Popen(self.args, cwd=self.dir, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.pid = self.popen.pid
        line = self.wait_line("ready", 0, 600)
        self.sum = line.split()[1]

    def note_tree(self):
        """Remember the tree before a dump, to reap it after."""
        self.tree = tree_pids(self.pid)

    def reap(self):
        """After a dump killed the tree: reap it (we are its subreaper, or the
        root's parent) so the PIDs are free for the restore."""
        for pid in getattr(self, "tree", [self.pid]):
            try:
                _, status, _ = os.wait4(pid, 0)
            except ChildProcessError:
                continue
            if self.popen is not None and self.popen.pid == pid:
                self.popen.returncode = os.waitstatus_to_exitcode(status)
        self.popen = None

    def verify(self):
        n = self.log_lines()
        os.kill(self.pid, signal.SIGUSR1)
        line = self.wait_line("verify", n, 120)
        ok = line.split()[1] == self.sum and line.split()[2] == "ok"
        if not ok:
            raise Failed(f"verify failed: {line!r}, expected {self.sum}")
        return ok

    def kill(self):
        if self.pid is None:
            return
        self.note_tree()
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.reap()
        wait_gone(self.tree)
        self.pid = None


class DaemonWorkload(Workload):
    """The same workload run as a stasisd job (`stasis exec`)."""

    def __init__(self, env, case, tag):
        super().__init__(env, case, tag)
        self.job = tag

    def start(self):
        cmd = "exec " + " ".join(self.args)
        self.started = True
        self.env.stasis(["exec", "-i", self.job, "-w", self.dir, cmd])
        line = self.wait_line("ready", 0, 600)
        self.sum = line.split()[1]
        ps = json.loads(self.env.stasis(["ps", "--json"]))
        jobs = ps if isinstance(ps, list) else ps.get("jobs", [])
        for j in jobs:
            if j.get("id") == self.job:
                self.pid = int(j["pid"])
        if not self.pid:
            raise Failed(f"job {self.job} has no pid in `stasis ps --json`")

    def reap(self):
        pass  # the daemon reaps its jobs

    def kill(self):
        if self.pid is None and not getattr(self, "started", False):
            return
        pids = tree_pids(self.pid) if self.pid else []
        self.started = False
        subprocess.run([self.env.stasis_bin, "--socket", self.env.socket, "rm", "-f", self.job],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_gone(pids)
        self.pid = None


# ---------------------------------------------------------------- systems


def blank_row(case, system):
    return {"workload": case.name, "mix": case.mix, "size_gib": case.size_mib / 1024,
            "procs": case.procs, "system": system.name, "codec": system.codec,
            "shards": system.shards, "load1": os.getloadavg()[0]}


class Plain:
    name, codec, shards, daemon = "plain", "", 0, False

    def dump(self, env, wl, img, row):
        wl.note_tree()
        row["victim_cpu_before"] = tree_cpu(wl.pid)
        wall, ru, st = run_criu(env, ["dump", "-t", str(wl.pid), "-D", img], img, "dump.log")
        row["victim_cpu_s"] = zombie_cpu(wl) - row.pop("victim_cpu_before")
        wl.reap()
        row.update(st)
        row["criu_dump_cpu_s"] = cpu_of(ru)
        row["dump_wall_s"] = row["dump_criu_s"] = wall
        row["raw_bytes"] = row["stored_bytes"] = row["written_bytes"] = dir_bytes(img)

    def restore(self, env, wl, img, row):
        wall, ru, st = run_criu(env, ["restore", "-D", img, "-d"], img, "restore.log")
        row["restore_wall_s"] = row["restore_criu_s"] = row["running_s"] = wall
        row["criu_restore_cpu_s"] = cpu_of(ru)
        row["restored_cpu_s"] = tree_cpu(wl.pid)


class PlainLz4(Plain):
    """Plain CRIU, then the image directory compressed by hand with lz4 -1."""
    name, codec = "plain+lz4", "lz4-1"

    def dump(self, env, wl, img, row):
        super().dump(env, wl, img, row)
        t0 = time.monotonic()
        out = img + ".tar.lz4"
        with open(out, "wb") as f:
            tar = subprocess.Popen(["tar", "-C", img, "-cf", "-", "."], stdout=subprocess.PIPE)
            lz4 = subprocess.Popen(["lz4", "-1", "-q", "-c"], stdin=tar.stdout, stdout=f)
            tar.stdout.close()
            rc1, ru1 = wait_rusage(tar)
            rc2, ru2 = wait_rusage(lz4)
        if rc1 or rc2:
            raise Failed(f"tar|lz4 failed ({rc1}, {rc2})")
        shutil.rmtree(img)  # the user keeps only the compressed archive
        row["compress_s"] = time.monotonic() - t0
        row["dump_wall_s"] += row["compress_s"]
        row["lz4_cpu_s"] = cpu_of(ru2)
        row["tar_cpu_s"] = cpu_of(ru1)
        row["stored_bytes"] = os.path.getsize(out)
        row["written_bytes"] += row["stored_bytes"]

    def restore(self, env, wl, img, row):
        t0 = time.monotonic()
        os.makedirs(img)
        src = img + ".tar.lz4"
        lz4 = subprocess.Popen(["lz4", "-d", "-q", "-c", src], stdout=subprocess.PIPE)
        tar = subprocess.Popen(["tar", "-C", img, "-xf", "-"], stdin=lz4.stdout)
        lz4.stdout.close()
        rc1, ru1 = wait_rusage(lz4)
        rc2, ru2 = wait_rusage(tar)
        if rc1 or rc2:
            raise Failed(f"lz4 -d|tar failed ({rc1}, {rc2})")
        row["decompress_s"] = time.monotonic() - t0
        row["decompress_cpu_s"] = cpu_of(ru1) + cpu_of(ru2)
        super().restore(env, wl, img, row)
        row["restore_wall_s"] += row["decompress_s"]
        row["running_s"] = row["restore_wall_s"]


class Stream:
    """criu --stream with stasis-streamer capture/serve, driven directly."""
    daemon = False

    def __init__(self, codec, shards):
        self.codec, self.shards = codec, shards
        self.name = f"stream-{codec.replace(':', '')}-n{shards}"

    def dump(self, env, wl, img, row):
        t0 = time.monotonic()
        st = Streamer(env, img, "capture", ["--shards", str(self.shards), "--codec", self.codec])
        wl.note_tree()
        row["victim_cpu_before"] = tree_cpu(wl.pid)
        try:
            wall, ru, stats = run_criu(env, ["dump", "--stream", "-t", str(wl.pid), "-D", img],
                                       img, "dump.log")
        except Failed:
            st.p.kill()
            st.finish()
            raise
        row["victim_cpu_s"] = zombie_cpu(wl) - row.pop("victim_cpu_before")
        criu_end = time.monotonic()
        sru = st.finish()
        wl.reap()
        row.update(stats)
        row["dump_criu_s"] = wall
        row["dump_wall_s"] = max(st.end, criu_end) - t0
        row["streamer_tail_s"] = max(0.0, st.end - criu_end)
        row["criu_dump_cpu_s"] = cpu_of(ru)
        row["streamer_dump_cpu_s"] = cpu_of(sru)
        row["streamer_dump_rss_kb"] = sru.ru_maxrss
        with open(os.path.join(img, "manifest.json")) as f:
            man = json.load(f)
        row["raw_bytes"] = man.get("total_raw", 0)
        row["stored_bytes"] = row["written_bytes"] = dir_bytes(img)
        streamer_stats(img, row, "streamer")

    def restore(self, env, wl, img, row):
        t0 = time.monotonic()
        st = Streamer(env, img, "serve")
        try:
            wall, ru, stats = run_criu(env, ["restore", "--stream", "-D", img, "-d"], img,
                                       "restore.log")
        except Failed:
            st.p.kill()
            st.finish()
            raise
        sru = st.finish()
        row["restore_criu_s"] = wall
        row["running_s"] = wall + (st.t0 - t0)  # criu restore -d returned: the tree runs
        row["restore_wall_s"] = st.end - t0
        row["criu_restore_cpu_s"] = cpu_of(ru)
        row["restored_cpu_s"] = tree_cpu(wl.pid)
        row["streamer_restore_cpu_s"] = cpu_of(sru)
        row["streamer_restore_rss_kb"] = sru.ru_maxrss


class Daemon(Stream):
    """`stasis dump job` / `stasis restore job` through a private stasisd."""
    daemon = True

    def __init__(self, codec, shards, fill=None):
        super().__init__(codec, shards)
        self.fill = fill  # None: the daemon's default (auto); "criu" or "uffd" (restore --fill)
        self.name = f"stasis-{codec.replace(':', '')}-n{shards}" + (f"-{fill}" if fill else "")

    def _run(self, env, args, row, prefix):
        """Run one CLI command while sampling the daemon and its streamer."""
        dpid = env.daemon_pid
        with open(f"/proc/{dpid}/clear_refs", "w") as f:
            f.write("5\n")  # reset the daemon's peak RSS
        d_cpu0 = stat_cpu(dpid)
        with open(f"/proc/{dpid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        c_cpu0 = (int(fields[13]) + int(fields[14])) / CLK_TCK  # cutime+cstime
        t0 = time.monotonic()
        p = subprocess.Popen([env.stasis_bin, "--socket", env.socket] + args,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        peak = [0]
        done = threading.Event()

        def sample():
            """The streamer child's peak RSS. VmHWM is a high-water mark: a slow
            sample misses only a streamer that lives under 0.25 s. (A 20 ms walk of
            the daemon's tree took CPU from the measured operation on 2 cores.)"""
            while not done.wait(0.25):
                for child in tree_pids(dpid)[1:]:
                    try:
                        with open(f"/proc/{child}/comm") as f:
                            if f.read().strip().startswith("stasis-streame"):
                                peak[0] = max(peak[0], proc_status(child, "VmHWM"))
                    except OSError:
                        pass

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        out = p.stdout.read()  # EOF: the CLI has exited
        p.wait()
        wall = time.monotonic() - t0
        done.set()
        sampler.join()
        peak_streamer = peak[0]
        if p.returncode != 0:
            raise Failed(f"stasis {args[0]} exit {p.returncode}: {out.strip()[-300:]}")
        with open(f"/proc/{dpid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        c_cpu1 = (int(fields[13]) + int(fields[14])) / CLK_TCK
        row[prefix + "_wall_s"] = wall
        row[f"daemon_{prefix}_cpu_s"] = (stat_cpu(dpid) or 0) - (d_cpu0 or 0)
        row[f"children_{prefix}_cpu_s"] = c_cpu1 - c_cpu0  # criu + streamer
        row[f"daemon_{prefix}_rss_kb"] = proc_status(dpid, "VmHWM")
        row[f"streamer_{prefix}_rss_kb"] = peak_streamer
        try:
            row[f"{prefix}_json"] = json.dumps(json.loads(out[out.index("{"):]))
        except ValueError:
            row[f"{prefix}_json"] = out.strip()[-200:]
        return out

    def dump(self, env, wl, img, row):
        row["victim_cpu_before"] = tree_cpu(wl.pid)
        self._run(env, ["dump", "job", wl.job, "-d", img, "--stream", str(self.shards),
                        "--codec", self.codec, "--force", "--json"], row, "dump")
        row["victim_cpu_s"] = 0.0  # the victim is reaped by the daemon: not seen
        victim = row.pop("victim_cpu_before")
        row.update(stats_dump_file(os.path.join(img, "stats-dump")))
        streamer_stats(img, row, "streamer")
        # The daemon reaps the dumped job: its whole life's CPU lands in the
        # daemon's children's; take out what it had used before the dump.
        row["criu_dump_cpu_s"] = max(0.0, row.pop("children_dump_cpu_s") - victim)
        row["streamer_dump_cpu_s"] = 0.0  # included in criu_dump_cpu_s (children of stasisd)
        with open(os.path.join(img, "manifest.json")) as f:
            man = json.load(f)
        row["raw_bytes"] = man.get("total_raw", 0)
        row["stored_bytes"] = row["written_bytes"] = dir_bytes(img)

    def restore(self, env, wl, img, row):
        fill = ["--fill", self.fill] if self.fill else []
        self._run(env, ["restore", "job", wl.job, "-d", img, "--json"] + fill, row, "restore")
        row["running_s"] = row["restore_wall_s"]
        row["criu_restore_cpu_s"] = row.pop("children_restore_cpu_s")
        row["restored_cpu_s"] = tree_cpu(wl.pid)
        row["streamer_restore_cpu_s"] = 0.0


def wait_exit(pid, timeout=600):
    """Wait until PID (not our child) is gone; returns when it is."""
    deadline = time.monotonic() + timeout
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.005)
    if os.path.exists(f"/proc/{pid}"):
        raise Failed(f"lazy-pages daemon {pid} still running after {timeout} s")


class PlainLazy(Plain):
    """Plain CRIU dump; lazy restore by hand: criu lazy-pages + restore --lazy-pages.
    running_s: until restore -d returns (the tree runs); restore wall: until the
    lazy-pages daemon exits with every page in."""
    name = "plain-lazy"

    def restore(self, env, wl, img, row):
        t0 = time.monotonic()
        rfd, wfd = os.pipe()
        lp = subprocess.Popen([env.criu, "lazy-pages", "-D", img, "-W", img, "-o", "lazy.log",
                               "--status-fd", str(wfd)], cwd=img, pass_fds=(wfd,),
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        os.close(wfd)
        with os.fdopen(rfd, "rb") as r:
            if r.read(1) != b"\0":
                lp.kill()
                lp.wait()
                raise Failed("criu lazy-pages never got ready")
        try:
            wall, ru, st = run_criu(env, ["restore", "-D", img, "-d", "--lazy-pages"], img,
                                    "restore.log")
        except Failed:
            lp.kill()
            lp.wait()
            raise
        row["running_s"] = time.monotonic() - t0
        row["restore_criu_s"] = wall
        rc, lru = wait_rusage(lp)
        row["restore_wall_s"] = time.monotonic() - t0
        if rc != 0:
            raise Failed(f"criu lazy-pages exit {rc}")
        row["criu_restore_cpu_s"] = cpu_of(ru) + cpu_of(lru)
        row["restored_cpu_s"] = tree_cpu(wl.pid)


class DaemonLazy(Daemon):
    """`stasis restore job --lazy`: running_s until it returns, restore wall until the
    daemon's lazy-pages daemon has exited (every page in). CODEC "plain": plain dump."""

    def __init__(self, codec, shards):
        super().__init__(codec, shards)
        self.plain = codec == "plain"
        self.name = "stasis-plain-lazy" if self.plain else self.name + "-lazy"

    def dump(self, env, wl, img, row):
        if not self.plain:
            return super().dump(env, wl, img, row)
        row["victim_cpu_before"] = tree_cpu(wl.pid)
        self._run(env, ["dump", "job", wl.job, "-d", img, "--json"], row, "dump")
        victim = row.pop("victim_cpu_before")
        row["victim_cpu_s"] = 0.0
        row.update(stats_dump_file(os.path.join(img, "stats-dump")))
        row["criu_dump_cpu_s"] = max(0.0, row.pop("children_dump_cpu_s") - victim)
        row["raw_bytes"] = row["stored_bytes"] = row["written_bytes"] = dir_bytes(img)

    def restore(self, env, wl, img, row):
        t0 = time.monotonic()
        out = self._run(env, ["restore", "job", wl.job, "-d", img, "--lazy", "--json"], row,
                        "restore")
        row["running_s"] = row["restore_wall_s"]
        lazy = json.loads(out[out.index("{"):]).get("lazy") or {}
        if lazy.get("pending"):
            wait_exit(lazy["pid"])
        row["restore_wall_s"] = time.monotonic() - t0
        row["lazy_resident_kb"] = lazy.get("resident_kb", 0)
        row["criu_restore_cpu_s"] = row.pop("children_restore_cpu_s")
        row["restored_cpu_s"] = tree_cpu(wl.pid)
        row["streamer_restore_cpu_s"] = 0.0


# ---------------------------------------------------------------- the suite


class Case:
    def __init__(self, name, mix, size_mib, procs=1):
        self.name, self.mix, self.size_mib, self.procs = name, mix, size_mib, procs
        self.key = f"{name}-{size_mib}M"


class Env:
    pass


def parse_system(spec):
    if spec == "plain":
        return Plain()
    if spec in ("plain+lz4", "plain-lz4"):
        return PlainLz4()
    if spec in ("plain-lazy", "plain:lazy"):
        return PlainLazy()
    if spec in ("stasis-plain-lazy", "stasis:plain:lazy"):
        return DaemonLazy("plain", 0)
    m = re.fullmatch(r"stasis:([a-z0-9:]+):(\d+):lazy", spec)
    if m:
        return DaemonLazy(m.group(1), int(m.group(2)))
    m = re.fullmatch(r"stasis:([a-z0-9:]+):(\d+):(criu|uffd)", spec)
    if m:
        return Daemon(m.group(1), int(m.group(2)), m.group(3))
    m = re.fullmatch(r"(stream|stasis):([a-z0-9:]+):(\d+)", spec)
    if not m:
        raise SystemExit(f"bad system '{spec}' (plain, plain+lz4, plain:lazy, stream:CODEC:N, "
                         "stasis:CODEC:N, stasis:CODEC:N:criu|uffd, stasis:CODEC:N:lazy, stasis:plain:lazy)")
    cls = Stream if m.group(1) == "stream" else Daemon
    return cls(m.group(2), int(m.group(3)))


def plan(args):
    """(case, [systems]) pairs. The full codec x shards sweep runs on the
    reference case only; every other case gets the headline systems."""
    ref_mib = int(args.ref_size * 1024)
    head = [parse_system(s) for s in args.headline.split(",")]
    if args.sweep:
        sweep = [parse_system("stream:" + x) for x in args.sweep.split(",")]
    else:
        sweep = [parse_system(f"stream:{c}:{n}") for c in args.codecs.split(",")
                 for n in args.shards.split(",")]
    out = []
    sizes = [int(float(s) * 1024) for s in args.sizes.split(",")]
    if ref_mib not in sizes:
        sizes.append(ref_mib)
    by_size = [parse_system(s) for s in args.size_systems.split(",")] if args.size_systems \
        else head
    for mib in sorted(sizes) if not args.no_mixed else []:
        systems = list(head) if mib == ref_mib else list(by_size)
        if mib == ref_mib:
            systems += [s for s in sweep if s.name not in {h.name for h in head}]
        out.append((Case("mixed", "mixed", mib), systems))
    for w in args.workloads.split(","):
        if w in ("", "mixed"):
            continue
        if w == "tree":
            out.append((Case("tree8", "mixed", ref_mib, 8), list(head)))
        elif w in ("zero", "random", "text", "floats"):
            out.append((Case(w, w, ref_mib), list(head)))
        else:
            raise SystemExit(f"unknown workload '{w}'")
    return out


class Perf:
    """perf record -a -g around one phase; the report keeps our processes."""
    def __init__(self, env, tag):
        self.data = os.path.join(env.out, f"perf-{tag}.data")
        self.txt = os.path.join(env.out, f"perf-{tag}.txt")
        self.p = subprocess.Popen(["perf", "record", "-a", "-g", "-F", "499", "-o", self.data],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # let it set up before the phase starts

    def stop(self):
        self.p.send_signal(signal.SIGINT)
        wait_rusage(self.p)
        by_comm = subprocess.run(["perf", "report", "-i", self.data, "--stdio", "--no-children",
                                  "-g", "none", "--sort", "comm"], capture_output=True,
                                 text=True).stdout
        ours = sorted({m.group(1) for m in re.finditer(
            r"^\s+[\d.]+%\s+(\S*(?:criu|stasis|memhog|lz4|tar|kworker|ksoftirqd)\S*)\s*$",
            by_comm, re.M)})
        with open(self.txt, "w") as f:
            f.write("==== every process on the machine (others' load included)\n" + by_comm)
            f.write("\n==== our processes only: " + ",".join(ours) + "\n")
            f.flush()
            for sort, limit in (("comm,dso", "0.5"), ("comm,dso,sym", "0.4")):
                if not ours:
                    break
                f.write(f"\n==== ours, by {sort}, % of our samples\n")
                f.flush()
                subprocess.run(["perf", "report", "-i", self.data, "--stdio", "--no-children",
                                "-g", "none", "--percent-limit", limit, "--percentage",
                                "relative", "--comms", ",".join(ours), "--sort", sort],
                               stdout=f, stderr=subprocess.DEVNULL)
        os.unlink(self.data)  # large; the text report is what we keep


def trial(env, wl, case, system, rnd, rows, profile=False):
    row = blank_row(case, system)
    row["round"] = rnd
    img = os.path.join(env.scratch, f"img-{case.key}-{system.name}")
    for p in (img, img + ".tar.lz4"):
        shutil.rmtree(p, ignore_errors=True) if os.path.isdir(p) else (
            os.path.exists(p) and os.unlink(p))
    os.makedirs(img)
    try:
        row["sync_before_s"] = drop_caches(env.drop)
        perf = Perf(env, f"{case.key}-{system.name}-dump") if profile else None
        system.dump(env, wl, img, row)
        if perf:
            perf.stop()
        if alive(wl.pid) and not system.daemon:
            raise Failed("workload still alive after dump")
        row["sync_after_s"] = drop_caches(env.drop)
        row["durable_s"] = row["dump_wall_s"] + row["sync_after_s"]  # dump, then on disk
        perf = Perf(env, f"{case.key}-{system.name}-restore") if profile else None
        system.restore(env, wl, img, row)
        if perf:
            perf.stop()
        row["verify"] = "ok" if wl.verify() else "BAD"
        cpu = sum(row.get(k, 0) for k in ("criu_dump_cpu_s", "streamer_dump_cpu_s",
                                            "victim_cpu_s", "lz4_cpu_s", "tar_cpu_s",
                                            "daemon_dump_cpu_s"))
        row["dump_cpu_s"] = cpu
        row["restore_cpu_s"] = sum(row.get(k, 0) for k in (
            "criu_restore_cpu_s", "restored_cpu_s", "streamer_restore_cpu_s",
            "decompress_cpu_s", "daemon_restore_cpu_s"))
        log(f"  {system.name:18} dump {row['dump_wall_s']:6.2f}s (frozen "
            f"{row.get('frozen_s', 0):5.2f}) restore {row['restore_wall_s']:6.2f}s "
            f"stored {row['stored_bytes'] / MIB:8.1f} MiB cpu {cpu:5.2f}s ok")
    except (Failed, OSError, RuntimeError, json.JSONDecodeError) as e:
        if os.environ.get("BENCH_DEBUG"):
            import traceback
            traceback.print_exc()
        row["verify"] = "ERROR"
        row["error"] = str(e)[:300]
        log(f"  {system.name:18} ERROR {e}")
        wl.kill()
    finally:
        if not env.keep:
            shutil.rmtree(img, ignore_errors=True)
        if os.path.exists(img + ".tar.lz4"):
            os.unlink(img + ".tar.lz4")
    rows.append(row)
    return row["verify"] == "ok"


def start_daemon(env):
    env.socket = os.path.join(env.scratch, "stasisd.sock")
    state = os.path.join(env.scratch, "state")
    os.makedirs(state, exist_ok=True)
    dlog = open(os.path.join(env.scratch, "stasisd.log"), "a")
    e = dict(os.environ, STASIS_STREAMER=env.streamer, STASIS_CRIU=env.criu)
    env.daemon = subprocess.Popen([env.stasisd, "--socket", env.socket, "--state-dir", state],
                                  stdin=subprocess.DEVNULL, stdout=dlog, stderr=dlog, env=e)
    env.daemon_pid = env.daemon.pid
    deadline = time.monotonic() + 20
    while not os.path.exists(env.socket):
        if env.daemon.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("stasisd did not start; see " + dlog.name)
        time.sleep(0.05)

    def stasis(args):
        r = subprocess.run([env.stasis_bin, "--socket", env.socket] + args, capture_output=True,
                           text=True)
        if r.returncode != 0:
            raise Failed(f"stasis {' '.join(args[:2])}: {r.stdout}{r.stderr}".strip()[-300:])
        return r.stdout
    env.stasis = stasis


def copy_bin(src, dst_dir):
    """Run private copies, so a rebuild during the run changes nothing."""
    if not os.path.exists(src):
        return None
    dst = os.path.join(dst_dir, os.path.basename(src))
    shutil.copy2(src, dst)
    return dst


def setup(args):
    env = Env()
    env.drop = not args.no_drop_caches
    env.live = []  # every workload started, killed on the way out
    env.keep = args.keep
    env.criu = os.environ.get("STASIS_CRIU", "/usr/local/libexec/stasis/criu")
    build = os.environ.get("STASIS_BUILD", os.path.join(REPO, "build"))
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    env.out = args.out or os.path.join(REPO, "bench", "results", stamp + ("-quick" if args.quick else ""))
    os.makedirs(env.out, exist_ok=True)
    env.scratch = os.path.join(args.workdir, stamp)
    os.makedirs(env.scratch, exist_ok=True)
    bindir = os.path.join(env.scratch, "bin")
    os.makedirs(bindir)
    env.memhog = copy_bin(os.path.join(build, "tests", "bin", "memhog"), bindir)
    env.streamer = copy_bin(os.path.join(build, "stasis-streamer"), bindir)
    env.stasisd = copy_bin(os.path.join(build, "stasisd"), bindir)
    env.stasis_bin = copy_bin(os.path.join(build, "stasis"), bindir)
    if not env.memhog:
        raise SystemExit(f"no memhog in {build}/tests/bin: run `make build/tests/bin/memhog`")
    env.breakpoints = criu_breakpoint_mode(env)
    return env


def criu_breakpoint_mode(env):
    """Plain CRIU hangs for ever where ptrace hardware breakpoints never fire
    (docs/reliability.md, "Never hang"). Ask the same probe stasisd uses
    (`stasis check`) and, where they are not delivered, run every CRIU of the
    benchmark (plain ones and the bare streamer's) in its no-breakpoint mode,
    as stasisd does: both sides then run in the same mode. STASIS_CRIU_BREAKPOINTS
    (on/off) forces it."""
    forced = os.environ.get("STASIS_CRIU_BREAKPOINTS", "auto")
    if forced == "auto" and env.stasis_bin:
        out = subprocess.run([env.stasis_bin, "check"], capture_output=True, text=True,
                             timeout=60).stdout
        line = next((l for l in out.splitlines() if "breakpoints:" in l), "")
        forced = "off" if "not delivered" in line or "cannot" in line else "on"
    if forced == "off":
        os.environ["CRIU_FAULT"] = "130"
        return "off (CRIU_FAULT=130 for every CRIU)"
    os.environ.pop("CRIU_FAULT", None)
    return "on"


def profile(env, args, cases):
    """One extra, unrecorded trial per system on the reference case under
    perf record -a (dump and restore separately): where the time goes."""
    ref = [c for c, _ in cases if c.name == "mixed" and c.size_mib == int(args.ref_size * 1024)]
    if not ref or not shutil.which("perf"):
        log("profile: no reference case or no perf")
        return
    case = ref[0]
    wls = {}
    for spec in args.profile.split(","):
        system = parse_system(spec)
        if system.daemon and not getattr(env, "daemon_pid", None):
            start_daemon(env)
        cls = DaemonWorkload if system.daemon else Workload
        wl = wls.get(cls)
        if wl is None or wl.pid is None:
            wl = wls[cls] = cls(env, case, f"{'job' if system.daemon else 'wl'}-{case.key}-prof")
            wl.start()
        elif not args.reuse:
            wl.kill()
            wl = wls[cls] = cls(env, case, f"{'job' if system.daemon else 'wl'}-{case.key}-prof2")
            wl.start()
        log(f"profile {case.key} {system.name}")
        rows = []
        trial(env, wl, case, system, 0, rows, profile=True)
        write_csv(os.path.join(env.out, f"perf-{case.key}-{system.name}.csv"), rows)
    for wl in wls.values():
        wl.kill()


def timed(cmd, stdin=None, stdout=None, shell=False):
    """Run CMD; (wall s, CPU s of it and its children)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdin=stdin, stdout=stdout, shell=shell)
    rc, ru = wait_rusage(p)
    wall = time.monotonic() - t0
    if rc:
        raise Failed(f"{cmd} exit {rc}")
    return wall, cpu_of(ru)


def liblz4_speed(pages, size):
    """liblz4 itself, as the streamer calls it (LZ4_compress_default on 2 MiB
    chunks, one thread), over the whole image and each quarter of it (the
    mixed workload's quarters: random, text, floats, sparse pages)."""
    import ctypes
    try:
        lib = ctypes.CDLL("liblz4.so.1")
    except OSError as e:
        return [f"- liblz4: not measured ({e})"]
    chunk = 2 << 20
    bound = lib.LZ4_compressBound(chunk)
    dst = ctypes.create_string_buffer(bound)
    with open(pages, "rb") as f:
        data = f.read()
    names = ["random", "text", "floats", "sparse"]
    q = size // 4
    parts = [("whole image", 0, size)] + [(f"quarter {i + 1} ({names[i]})", i * q, (i + 1) * q)
                                          for i in range(4)]
    out = ["- liblz4 1 thread, LZ4_compress_default on 2 MiB chunks (what the streamer runs):"]
    for what, a, b in parts:
        stored = 0
        c0 = time.process_time()
        for off in range(a, b, chunk):
            piece = data[off:min(off + chunk, b)]
            n = lib.LZ4_compress_default(piece, dst, len(piece), bound)
            stored += n if 0 < n < len(piece) else len(piece)
        cpu = time.process_time() - c0
        out.append(f"  {what}: {(b - a) / cpu / 1e6:.0f} MB/s per core, "
                   f"{cpu / ((b - a) / GIB):.2f} CPU s/GiB, ratio {(b - a) / stored:.2f}")
    return out


def fresh_memory_cost(env):
    """What a page of memory costs the first time it is touched, against
    rewriting one already in use: dd into a new tmpfs file, then over it."""
    path = os.path.join("/dev/shm", f"stasis-bench-{os.getpid()}")
    count = 1024
    try:
        w1, _ = timed(["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={count}",
                       "status=none"])
        w2, _ = timed(["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={count}",
                       "conv=notrunc", "status=none"])
    except Failed as e:
        return [f"- fresh memory: not measured ({e})"]
    finally:
        if os.path.exists(path):
            os.unlink(path)
    pages = count * 256
    rep = "/sys/module/page_reporting/parameters"
    how = ("; the kernel reports free memory to the host (free page reporting, "
           f"order {sh(f'cat {rep}/page_reporting_order')})" if os.path.isdir(rep) else "")
    return [f"- fresh memory: writing 1 GiB into new pages {count / w1:.0f} MB/s, into pages "
            f"already in use {count / w2:.0f} MB/s: {(w1 - w2) / pages * 1e6:.2f} us per new "
            f"4 KiB page{how}"]


def limits(env, args):
    """The physical limits on this machine, on the bytes of a real image:
    lz4 -1 / zstd -1 per core, pipe and disk bandwidth. Returns text lines."""
    case = Case("mixed", "mixed", int(args.ref_size * 1024))
    wl = Workload(env, case, "wl-limits")
    wl.start()
    img = os.path.join(env.scratch, "img-limits")
    os.makedirs(img)
    wl.note_tree()
    run_criu(env, ["dump", "-t", str(wl.pid), "-D", img], img, "dump.log")
    wl.reap()
    pages = max((os.path.join(img, n) for n in os.listdir(img) if n.startswith("pages-")),
                key=os.path.getsize)
    size = os.path.getsize(pages)
    gib, mb = size / GIB, size / 1e6
    out = [f"Input: {os.path.basename(pages)} of a plain dump of mixed {args.ref_size:g} GiB "
           f"({size / MIB:.0f} MiB), in page cache unless said otherwise; one process each.", ""]
    null = open(os.devnull, "wb")

    def line(what, wall, cpu, n=mb):
        out.append(f"- {what}: {n / wall:.0f} MB/s wall, {cpu / gib:.2f} CPU s/GiB")

    def cached():
        timed(["cat", pages], stdout=null)

    cached()
    with open(pages, "rb") as src:
        w, c = timed(["lz4", "-1", "-q", "-c"], stdin=src, stdout=null)
    line("lz4 -1 compress to /dev/null", w, c)
    z = os.path.join(env.scratch, "limits.lz4")
    with open(pages, "rb") as src, open(z, "wb") as dst:
        w, c = timed(["lz4", "-1", "-q", "-c"], stdin=src, stdout=dst)
    line("lz4 -1 compress to a file (page cache)", w, c)
    out.append(f"  ratio {size / os.path.getsize(z):.2f}")
    with open(z, "rb") as src:
        w, c = timed(["lz4", "-d", "-q", "-c"], stdin=src, stdout=null)
    line("lz4 -d decompress (rate of output bytes)", w, c)
    with open(pages, "rb") as src:
        w, c = timed(["zstd", "-1", "-q", "-c"], stdin=src, stdout=null)
    line("zstd -1 compress to /dev/null", w, c)
    out.extend(liblz4_speed(pages, size))
    w, c = timed(f"dd if={pages} bs=1M status=none | dd of=/dev/null bs=1M status=none",
                 shell=True)
    line("pipe (dd | dd, 1 MiB blocks, two copies)", w, c)
    copy = os.path.join(env.scratch, "limits.copy")
    drop_caches(True)
    cached()
    w, c = timed(["dd", f"if={pages}", f"of={copy}", "bs=1M", "conv=fdatasync", "status=none"])
    line("disk write (dd conv=fdatasync)", w, c)
    drop_caches(True)
    w, c = timed(["dd", f"if={copy}", "of=/dev/null", "bs=1M", "status=none"])
    line("disk read after drop_caches (dd)", w, c)
    os.unlink(copy)
    w, c = timed(["dd", f"if={pages}", f"of={copy}", "bs=4M", "oflag=direct", "conv=fdatasync",
                  "status=none"])
    line("disk write, direct I/O (dd bs=4M oflag=direct conv=fdatasync)", w, c)
    w, c = timed(["dd", f"if={copy}", "of=/dev/null", "bs=4M", "iflag=direct", "status=none"])
    line("disk read, direct I/O (dd bs=4M iflag=direct)", w, c)
    out.extend(fresh_memory_cost(env))
    null.close()
    shutil.rmtree(img, ignore_errors=True)
    for f in (z, copy):
        os.unlink(f)
    with open(os.path.join(env.out, "limits.txt"), "w") as f:
        f.write("\n".join(out) + "\n")
    for l in out:
        log("limits: " + l)
    return out


def report_only(args):
    env = Env()
    env.out = args.report_only
    rows = []
    with open(os.path.join(env.out, "raw.csv")) as f:
        for r in csv.DictReader(f):
            for k, v in r.items():
                try:
                    r[k] = float(v) if v not in ("", None) and k not in ("codec",) else v
                except ValueError:
                    pass
            rows.append(r)
    meta = {}
    with open(os.path.join(env.out, "meta.txt")) as f:
        for line in f:
            k, _, v = line.partition(": ")
            meta[k] = v.strip()
    meta.setdefault("load_end", "?")
    args.ref_size = float(meta.get("ref_size", args.ref_size))
    meta.setdefault("elapsed_s", "?")
    if os.path.exists(os.path.join(env.out, "limits.txt")):
        env.limits = open(os.path.join(env.out, "limits.txt")).read().splitlines()
    summary = summarize(rows)
    write_csv(os.path.join(env.out, "summary.csv"), summary)
    report(env, args, summary, rows, meta)
    return 0


def on_sigterm(sig, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: let the cleanup run
    raise KeyboardInterrupt  # stop as on Ctrl-C: report what was measured


def become_subreaper():
    """Processes restored with -d lose their parent (criu exits): make them
    ours, so we reap them when a later dump kills them and their PIDs are
    free for the next restore (else: "Can't fork for PID: File exists")."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        raise SystemExit("prctl(PR_SET_CHILD_SUBREAPER) failed")


def main():
    ap = argparse.ArgumentParser(
        prog="bench/run.sh", description="stasis vs plain CRIU benchmark suite (docs/benchmarks.md)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 64 MiB cases, 1 round, a few systems")
    ap.add_argument("--sizes", default="1,2,4,8", help="mixed workload sizes, GiB (default 1,2,4,8)")
    ap.add_argument("--ref-size", type=float, default=2,
                    help="size (GiB) of the reference case that gets the full sweep (default 2)")
    ap.add_argument("--workloads", default="zero,random,tree",
                    help="extra cases at the reference size: zero,random,text,floats,tree")
    ap.add_argument("--no-mixed", action="store_true",
                    help="run only the --workloads cases, not the mixed sizes (e.g. the tree alone)")
    ap.add_argument("--headline", default="plain,plain+lz4,stasis:lz4:2",
                    help="systems run on every case (default plain,plain+lz4,stasis:lz4:2)")
    ap.add_argument("--size-systems", default="",
                    help="systems on the mixed sizes other than the reference (default: headline)")
    ap.add_argument("--codecs", default="lz4,zstd:1,none", help="streamer sweep codecs")
    ap.add_argument("--shards", default="1,2,4,8", help="streamer sweep shard counts")
    ap.add_argument("--sweep", default="",
                    help="explicit streamer sweep instead of codecs x shards, e.g. "
                         "lz4:1,lz4:2,zstd:1:2,none:2")
    ap.add_argument("--runs", type=int, default=3, help="rounds (default 3)")
    ap.add_argument("--workdir", default="/var/tmp/stasis-bench",
                    help="scratch for images, on local disk (default /var/tmp/stasis-bench)")
    ap.add_argument("--out", help="results directory (default bench/results/<UTC stamp>)")
    ap.add_argument("--no-drop-caches", action="store_true",
                    help="do not drop the page cache before each timed phase")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("--profile", nargs="?", const="plain,stream:lz4:2,stasis:lz4:2", default="",
                    help="after the rounds, profile these systems on the reference case with "
                         "perf record -a (default plain,stream:lz4:2); perf-*.txt in the results")
    ap.add_argument("--limits", action="store_true",
                    help="also measure lz4/zstd per core, pipe and disk bandwidth (limits.txt)")
    ap.add_argument("--reuse", action="store_true",
                    help="let the next system dump the process the last one restored, instead "
                         "of a freshly started one (faster; not the default)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the per-round order shuffle")
    ap.add_argument("--report-only", metavar="DIR",
                    help="only rebuild results.md, summary.csv and plots from DIR/raw.csv")
    args = ap.parse_args()
    if args.report_only:
        return report_only(args)
    if args.quick:
        args.sizes, args.ref_size, args.runs = "0.0625", 0.0625, 1
        args.workloads = "tree" if args.workloads == "zero,random,tree" else args.workloads
        args.shards = "2" if args.shards == "1,2,4,8" else args.shards
    if os.geteuid() != 0:
        raise SystemExit("bench/run.sh needs root (CRIU, drop_caches)")

    become_subreaper()
    signal.signal(signal.SIGTERM, on_sigterm)
    env = setup(args)
    cases = plan(args)
    need_daemon = any(s.daemon for _, systems in cases for s in systems)
    need_streamer = any(isinstance(s, Stream) for _, systems in cases for s in systems)
    if need_streamer and not env.streamer:
        raise SystemExit("no build/stasis-streamer: build it or use --headline plain,plain+lz4")
    if need_daemon:
        if not (env.stasisd and env.stasis_bin):
            raise SystemExit("no build/stasisd or build/stasis for the stasis:* systems")
        start_daemon(env)

    meta = write_meta(env, args, cases, "start")
    rows = []
    rng = random.Random(args.seed)
    t_start = time.monotonic()
    try:
        for rnd in range(1, args.runs + 1):
            for case, systems in cases:
                log(f"round {rnd}/{args.runs} {case.key} procs={case.procs} "
                    f"load {os.getloadavg()[0]:.2f}")
                order = list(systems)
                rng.shuffle(order)
                plain_wl = dmn_wl = None
                for system in order:
                    cls = DaemonWorkload if system.daemon else Workload
                    wl = dmn_wl if system.daemon else plain_wl
                    if wl is None or wl.pid is None:
                        env.seq = getattr(env, "seq", 0) + 1
                        wl = cls(env, case, f"{'job' if system.daemon else 'wl'}-{case.key}-"
                                 f"r{rnd}-{env.seq}")
                        try:
                            wl.start()
                        except Failed as e:
                            log(f"  workload start failed: {e}")
                            wl.kill()
                            continue
                    if system.daemon:
                        dmn_wl = wl
                    else:
                        plain_wl = wl
                    trial(env, wl, case, system, rnd, rows)
                    if not args.reuse:
                        wl.kill()  # each trial dumps a freshly filled process
                for wl in (plain_wl, dmn_wl):
                    if wl:
                        wl.kill()
                write_csv(os.path.join(env.out, "raw.csv"), rows)
        if args.profile:
            profile(env, args, cases)
        if args.limits:
            env.limits = limits(env, args)
    except KeyboardInterrupt:
        log("interrupted: reporting what was measured")
        meta["interrupted"] = "yes"
    finally:
        for wl in env.live:
            try:
                wl.kill()
            except (OSError, RuntimeError, Failed):
                pass
        if getattr(env, "daemon", None):
            env.daemon.terminate()
            env.daemon.wait()
        if not args.keep:
            shutil.rmtree(env.scratch, ignore_errors=True)
    meta["elapsed_s"] = round(time.monotonic() - t_start, 1)
    write_meta(env, args, cases, "end", meta)
    summary = summarize(rows)
    write_csv(os.path.join(env.out, "summary.csv"), summary)
    report(env, args, summary, rows, meta)
    log(f"results in {env.out}")
    errors = sum(1 for r in rows if r.get("verify") != "ok")
    return 1 if errors else 0


# ---------------------------------------------------------------- results


def write_csv(path, rows):
    keys = []
    for r in rows:
        for k in r:
            if k not in keys:
                keys.append(k)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def write_meta(env, args, cases, when, meta=None):
    meta = meta or {}
    meta[f"load_{when}"] = sh("cat /proc/loadavg")
    meta[f"time_{when}"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    if when == "start":
        meta.update({
            "command": " ".join(["bench/run.sh"] + sys.argv[1:]),
            "git": sh(f"git -C {REPO} rev-parse --short HEAD") +
                   (" (dirty)" if sh(f"git -C {REPO} status --porcelain -- src bench") else ""),
            "cpu": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2") + f" x {os.cpu_count()}",
            "memory": sh("free -g | awk '/Mem:/{print $2\" GiB\"}'"),
            "kernel": sh("uname -r"),
            "disk": sh(f"df -h {args.workdir} | tail -1"),
            "criu": sh(f"{env.criu} --version | head -1"),
            "lz4": sh("lz4 -V 2>&1 | head -1"),
            "page_reporting": sh("cd /sys/module/page_reporting/parameters 2>/dev/null && "
                                 "grep -H . page_reporting_order min_free_ms 2>/dev/null | "
                                 "tr '\\n' ' '") or "none",
            "drop_caches": str(env.drop),
            "criu_breakpoints": env.breakpoints,
            "ref_size": f"{args.ref_size:g}",
            "cases": "; ".join(f"{c.key} x{c.procs}: " + ",".join(s.name for s in ss)
                               for c, ss in cases),
        })
    with open(os.path.join(env.out, "meta.txt"), "w") as f:
        for k, v in meta.items():
            f.write(f"{k}: {v}\n")
    return meta


METRICS = ["dump_wall_s", "frozen_s", "dump_cpu_s", "restore_wall_s", "restore_cpu_s",
           "running_s", "lazy_resident_kb",
           "stored_bytes", "raw_bytes", "streamer_dump_rss_kb", "streamer_restore_rss_kb",
           "daemon_dump_rss_kb", "daemon_restore_rss_kb", "sync_after_s", "lz4_cpu_s",
           "streamer_dump_cpu_s", "criu_dump_cpu_s", "dump_criu_s", "streamer_tail_s",
           "memwrite_s", "durable_s"]


def summarize(rows):
    groups = {}
    for r in rows:
        groups.setdefault((r["workload"], r["size_gib"], r["system"]), []).append(r)
    plain = {}
    out = []
    for (w, size, system), rs in groups.items():
        good = [r for r in rs if r.get("verify") == "ok"]
        s = {"workload": w, "size_gib": size, "system": system, "procs": rs[0]["procs"],
             "codec": rs[0]["codec"], "shards": rs[0]["shards"], "runs": len(rs),
             "ok": len(good)}
        for m in METRICS:
            vals = [float(r[m]) for r in good if r.get(m) not in (None, "")]
            if vals:
                s[m] = statistics.median(vals)
                s[m + "_min"] = min(vals)
                s[m + "_max"] = max(vals)
        out.append(s)
        if system == "plain":
            plain[(w, size)] = s
    for s in out:
        p = plain.get((s["workload"], s["size_gib"]))
        raw = (p or {}).get("raw_bytes") or s.get("raw_bytes")
        if raw:
            gib = raw / GIB
            s["dump_cpu_per_gib"] = s.get("dump_cpu_s", 0) / gib
            s["restore_cpu_per_gib"] = s.get("restore_cpu_s", 0) / gib
            if s.get("stored_bytes"):
                s["ratio"] = raw / s["stored_bytes"]
        if p and p.get("dump_wall_s") and s.get("dump_wall_s"):
            s["dump_x_plain"] = s["dump_wall_s"] / p["dump_wall_s"]
        if p and p.get("restore_wall_s") and s.get("restore_wall_s"):
            s["restore_x_plain"] = s["restore_wall_s"] / p["restore_wall_s"]
        if p and p.get("running_s") and s.get("running_s"):
            s["running_x_plain"] = s["running_s"] / p["running_s"]
    out.sort(key=lambda s: (s["workload"] != "mixed", s["workload"], s["size_gib"],
                            sort_key(s["system"])))
    return out


def sort_key(name):
    order = {"plain": 0, "plain+lz4": 1}
    m = re.match(r"(stream|stasis)-(\w+?)-n(\d+)", name)
    if name in order:
        return (order[name], "", 0)
    if not m:  # plain-lazy, stasis-plain-lazy
        return (1.5 if name.startswith("plain") else 2, name, 0)
    return (2 if m.group(1) == "stasis" else 3, m.group(2), int(m.group(3)))


def fmt_range(s, m, scale=1.0, prec=2):
    if m not in s:
        return "-"
    med, lo, hi = s[m] / scale, s[m + "_min"] / scale, s[m + "_max"] / scale
    if s["ok"] <= 1:
        return f"{med:.{prec}f}"
    return f"{med:.{prec}f} ({lo:.{prec}f}-{hi:.{prec}f})"


def fmt(v, prec=2, suffix=""):
    return "-" if v is None else f"{v:.{prec}f}{suffix}"


def report(env, args, summary, rows, meta):
    lines = [f"# stasis benchmark {meta['time_start']}", ""]
    lines.append(f"`{meta['command']}` at {meta['git']}; {meta['cpu'].strip()}, "
                 f"{meta['memory']}, kernel {meta['kernel']}, {meta['criu']}; "
                 f"page cache dropped before each phase: {meta['drop_caches']}.")
    lines.append(f"Load average at start: {meta['load_start']}; at end: {meta['load_end']}; "
                 f"per-trial 1-min load: {min(r['load1'] for r in rows):.2f}-"
                 f"{max(r['load1'] for r in rows):.2f}. Elapsed {meta['elapsed_s']} s.")
    lines += ["", "Medians of the successful runs, (min-max) when more than one; "
              "x plain = median / plain CRIU's median on the same case in the same run.", ""]
    hdr = ("| workload | GiB | system | ok | dump wall s | x plain | CRIU frozen s | dump CPU s/GiB "
           "| stored MiB | ratio | restore wall s | x plain | to running s | x plain "
           "| restore CPU s/GiB "
           "| streamer RSS MiB dump/restore | daemon RSS MiB |")
    lines += [hdr, "|" + "---|" * (hdr.count("|") - 1)]
    for s in summary:
        srss = "-"
        if s.get("streamer_dump_rss_kb"):
            srss = (f"{s['streamer_dump_rss_kb_max'] / 1024:.0f}/"
                    f"{s.get('streamer_restore_rss_kb_max', 0) / 1024:.0f}")
        drss = "-"
        if s.get("daemon_dump_rss_kb"):
            peak = max(s["daemon_dump_rss_kb_max"], s.get("daemon_restore_rss_kb_max", 0))
            drss = f"{peak / 1024:.0f}"
        w = s["workload"] + (f" ({int(s['procs'])} procs)" if int(s["procs"]) > 1 else "")
        lines.append(
            f"| {w} | {s['size_gib']:g} | {s['system']} | {s['ok']}/{s['runs']} "
            f"| {fmt_range(s, 'dump_wall_s')} | {fmt(s.get('dump_x_plain'))} "
            f"| {fmt_range(s, 'frozen_s')} | {fmt(s.get('dump_cpu_per_gib'))} "
            f"| {fmt(s.get('stored_bytes', 0) / MIB, 0)} | {fmt(s.get('ratio'))} "
            f"| {fmt_range(s, 'restore_wall_s')} | {fmt(s.get('restore_x_plain'))} "
            f"| {fmt_range(s, 'running_s', prec=3)} | {fmt(s.get('running_x_plain'))} "
            f"| {fmt(s.get('restore_cpu_per_gib'))} | {srss} | {drss} |")
    lines += ["", "Columns: dump wall = until the checkpoint is complete (plain: criu exits; "
              "plain+lz4: archive written; stream/stasis: criu and streamer both exited, shards "
              "fsync'ed, manifest written). CRIU frozen = CRIU's own 'Frozen time' (from "
              "freezing the tree until CRIU is done with it; every dump here ends the job, so "
              "the job is out of service for the whole dump wall time and until restored). CPU = criu + streamer (+ daemon) + tar/lz4 + the "
              "parasite's time in the dumped root task, per GiB of raw image. restore wall "
              "= until criu restore -d returns (plain+lz4: after lz4 -d | tar x; stream: and the "
              "streamer exited; lazy: until the lazy-pages daemon exited with every page in). "
              "to running = until the restored tree runs again (criu restore -d or stasis "
              "restore returned). ratio = raw "
              "image bytes / stored bytes. RSS = peak (max over runs).", ""]
    lines += targets(summary, args)
    if getattr(env, "limits", None):
        lines += ["", "## Physical limits on this machine", ""] + env.limits
    errs = [r for r in rows if r.get("verify") != "ok"]
    if errs:
        lines += ["", "## Failed trials", ""]
        for r in errs:
            lines.append(f"- round {r['round']} {r['workload']} {r['size_gib']:g} GiB "
                         f"{r['system']}: {r.get('error', '')}")
    plots = plot(env, summary, args)
    if plots:
        lines += [""] + [f"![{p}]({p})" for p in plots]
    with open(os.path.join(env.out, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def find(summary, w, size, system):
    for s in summary:
        if s["workload"] == w and abs(s["size_gib"] - size) < 1e-9 and s["system"] == system:
            return s
    return None


def targets(summary, args):
    """The issue's targets, checked on the reference case."""
    size = args.ref_size
    out = [f"## Targets (mixed {size:g} GiB, lz4, N=2)", ""]
    lz = find(summary, "mixed", size, "plain+lz4")
    for name in ("stasis-lz4-n2", "stream-lz4-n2"):
        s = find(summary, "mixed", size, name)
        if not s:
            continue
        out.append(f"- {name}: dump {fmt(s.get('dump_x_plain'))}x plain (target <= 0.6), "
                   f"restore {fmt(s.get('restore_x_plain'))}x plain (target <= 0.8), "
                   f"stored {fmt(1 / s['ratio'] if s.get('ratio') else None)}x raw")
        p = find(summary, "mixed", size, "plain")
        if p and p.get("durable_s") and s.get("durable_s"):
            out.append(f"  - until durable on disk (dump + sync): {s['durable_s']:.2f} s vs plain "
                       f"{p['durable_s']:.2f} s: {s['durable_s'] / p['durable_s']:.2f}x")
        if s.get("frozen_s") and p and p.get("frozen_s"):
            out.append(f"  - frozen (CRIU): {s['frozen_s']:.2f} s vs plain {p['frozen_s']:.2f} s: "
                       f"{s['frozen_s'] / p['frozen_s']:.2f}x")
        sc = s.get("streamer_dump_cpu_s")
        if name.startswith("stasis"):
            sc = None
        if lz and lz.get("lz4_cpu_s"):
            if sc:
                out.append(f"  - streamer CPU {sc:.2f} s vs lz4 -1 alone {lz['lz4_cpu_s']:.2f} s "
                           f"on the same images: {sc / lz['lz4_cpu_s']:.2f}x (target <= 1.2)")
    out += lazy_targets(summary)
    rss = [s.get("streamer_dump_rss_kb_max", 0) for s in summary if s.get("streamer_dump_rss_kb")]
    rss += [s.get("streamer_restore_rss_kb_max", 0) for s in summary
            if s.get("streamer_restore_rss_kb")]
    if rss:
        out.append(f"- streamer peak RSS over all cases: {max(rss) / 1024:.0f} MiB "
                   f"(target < 100 MiB with the daemon)")
    d = [max(s.get("daemon_dump_rss_kb_max", 0), s.get("daemon_restore_rss_kb_max", 0))
         for s in summary if s.get("daemon_dump_rss_kb")]
    if d:
        out.append(f"- daemon peak RSS over all cases: {max(d) / 1024:.0f} MiB")
    both = [max(s.get("streamer_dump_rss_kb_max", 0) + s.get("daemon_dump_rss_kb_max", 0),
                s.get("streamer_restore_rss_kb_max", 0) + s.get("daemon_restore_rss_kb_max", 0))
            for s in summary if s.get("daemon_dump_rss_kb")]
    if both:
        out.append(f"- streamer + daemon peak RSS, worst case: {max(both) / 1024:.0f} MiB "
                   f"(target < 100 MiB up to 8 GiB)")
    for system in ("plain", "plain+lz4", "stasis-lz4-n2", "stream-lz4-n2"):
        pts = sorted((s["size_gib"], s["dump_wall_s"]) for s in summary
                     if s["workload"] == "mixed" and s["system"] == system and "dump_wall_s" in s)
        if len(pts) >= 2:
            per = ", ".join(f"{x:g}: {y / x:.2f}" for x, y in pts)
            out.append(f"- {system} dump seconds per GiB by size (linear = flat): {per}")
    return out


def lazy_targets(summary):
    """Lazy restore: back to running within 0.5 s; the tree and the daemon against
    plain CRIU and the bare streamer, in every case measured."""
    out = []
    for s in summary:
        w = f"{s['workload']} {s['size_gib']:g} GiB"
        p = find(summary, s["workload"], s["size_gib"], "plain")
        if s["system"].endswith("lazy") and s.get("running_s") is not None:
            out.append(f"- {w} {s['system']}: running again after {s['running_s']:.3f} s "
                       f"(target <= 0.5 s), every page in after {s['restore_wall_s']:.2f} s; "
                       f"plain CRIU: running after "
                       f"{p['running_s'] if p and p.get('running_s') else float('nan'):.2f} s")
        if s["system"] == "stasis-lz4-n2":
            st = find(summary, s["workload"], s["size_gib"], "stream-lz4-n2")
            if st and st.get("restore_wall_s") and s.get("restore_wall_s"):
                out.append(f"- {w} stasis restore {s['restore_wall_s']:.2f} s vs the bare "
                           f"streamer {st['restore_wall_s']:.2f} s: "
                           f"{s['restore_wall_s'] / st['restore_wall_s']:.2f}x (target <= 1.0)")
            if int(s["procs"]) > 1 and s.get("restore_x_plain"):
                out.append(f"- {w} ({int(s['procs'])} procs) stasis restore "
                           f"{s['restore_x_plain']:.2f}x plain (target <= 1.0)")
    return out


def plot(env, summary, args):
    """Two PNGs: time vs size (linearity), and the reference case's systems."""
    if not shutil.which("gnuplot"):
        return []
    sizes_dat = os.path.join(env.out, "by-size.dat")
    systems = ["plain", "plain+lz4", "stasis-lz4-n2", "stream-lz4-n2"]
    with open(sizes_dat, "w") as f:
        for system in systems:
            pts = [s for s in summary
                   if s["workload"] == "mixed" and s["system"] == system and "dump_wall_s" in s]
            f.write(f"# {system}\n")
            for s in sorted(pts, key=lambda s: s["size_gib"]):
                f.write(f"{s['size_gib']} {s['dump_wall_s']} {s['dump_wall_s_min']} "
                        f"{s['dump_wall_s_max']} {s.get('restore_wall_s', 0)} "
                        f"{s.get('restore_wall_s_min', 0)} {s.get('restore_wall_s_max', 0)}\n")
            f.write("\n\n")
    ref_dat = os.path.join(env.out, "reference.dat")
    with open(ref_dat, "w") as f:
        for s in summary:
            if s["workload"] == "mixed" and abs(s["size_gib"] - args.ref_size) < 1e-9 and \
                    "dump_wall_s" in s:
                f.write(f"\"{s['system']}\" {s['dump_wall_s']} {s.get('frozen_s', 0)} "
                        f"{s.get('restore_wall_s', 0)}\n")
    gp = os.path.join(REPO, "bench", "plot.gp")
    r = subprocess.run(["gnuplot", "-e", f"outdir='{env.out}'; ref='{args.ref_size:g}'; "
                        f"names='{' '.join(systems)}'", gp], capture_output=True, text=True)
    if r.returncode != 0:
        log("gnuplot failed: " + r.stderr.strip()[-300:])
        return []
    return [p for p in ("dump-by-size.png", "reference.png")
            if os.path.exists(os.path.join(env.out, p))]


if __name__ == "__main__":
    sys.exit(main())
