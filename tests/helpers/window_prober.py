#!/usr/bin/env python3
"""window_prober.py DIR JOB SINCE_MS SECONDS: as the owner of a migrating job,
look for its capture window DIR/JOB-MS (MS >= SINCE_MS, found by trying each
name: DIR lets anyone reach an entry but lists nothing), and once found keep
trying to open the files a capture writes for writing. Prints "found N" (how
many times the window was seen) and "writable N" (how many opens for writing
succeeded), then the errors seen."""
import errno
import os
import sys
import time

base, job, since, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
names = ["img-0.lz4", "img-1.lz4", "manifest.json", "stasis-checkpoint.json", "dump.log"]
end = time.time() + secs
window, found, writable, errors, nxt = None, 0, 0, set(), since
while time.time() < end:
    if window is None:
        now = int(time.time() * 1000)
        # The name is taken when the dump starts; look a little back each time.
        for ms in range(max(since, nxt - 300), now + 1):
            if os.path.lexists("%s/%s-%d" % (base, job, ms)):
                window = "%s/%s-%d" % (base, job, ms)
                break
        nxt = now
        continue
    if not os.path.lexists(window):
        break
    found += 1
    for n in names:
        try:
            fd = os.open("%s/%s" % (window, n), os.O_RDWR | os.O_NONBLOCK)
            writable += 1
            os.close(fd)
        except OSError as e:
            errors.add(errno.errorcode.get(e.errno, str(e.errno)))
    time.sleep(0.001)
print("window", window)
print("found", found)
print("writable", writable)
print("errors", " ".join(sorted(errors)))
