# A job that counts: prints 1, 2, 3, ... one line every 20 ms, forever.
# After a restore it must go on from where it was, so its log stays 1..N.
import sys
import time

n = 0
while True:
    n += 1
    sys.stdout.write("%d\n" % n)
    sys.stdout.flush()
    time.sleep(0.02)
