#!/usr/bin/env python3
"""lazy_hold.py WORKDIR PROCS_FILE [TIMEOUT_S]: slow down a lazy restore's page source.

Waits for CRIU's lazy-pages daemon that works in WORKDIR (`criu lazy-pages
... -W WORKDIR`, started by stasisd for `stasis restore --lazy`) and writes
its pid into PROCS_FILE, the cgroup.procs of a cgroup whose CPU quota the
test sets: the daemon then fills the job's memory as slowly as the test
wants. (Not SIGSTOP: CRIU's lazy-pages daemon fails when a stop and SIGCONT
interrupt the epoll_wait in which it waits for the restore to finish.)
Prints the daemon's pid; exits 1 if none was seen within TIMEOUT_S
(default 60).
"""
import os
import sys
import time


def find_daemon(work):
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            argv = open("/proc/%s/cmdline" % p, "rb").read().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv]
        if "lazy-pages" in args and "-W" in args:
            i = args.index("-W")
            if i + 1 < len(args) and args[i + 1] == work:
                return int(p)
    return None


def main():
    work = os.path.abspath(sys.argv[1])
    deadline = time.time() + (float(sys.argv[3]) if len(sys.argv) > 3 else 60)
    while time.time() < deadline:
        pid = find_daemon(work)
        if pid is not None:
            with open(sys.argv[2], "w") as f:
                f.write("%d\n" % pid)
            print(pid)
            return 0
        time.sleep(0.002)
    sys.stderr.write("lazy_hold: no lazy-pages daemon in %s\n" % work)
    return 1


if __name__ == "__main__":
    sys.exit(main())
