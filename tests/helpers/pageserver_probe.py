#!/usr/bin/env python3
"""pageserver_probe.py - drive `stasis-streamer page-server` as CRIU's
lazy-pages daemon would (CRIU's page-server protocol, docs/lazy.md), and damage
a streamed checkpoint's pages chunk for the lazy restore tests.

  pageserver_probe.py check STREAMER CKDIR PLAINDIR
      PLAINDIR is a full `extract` of CKDIR. For every process pagemap, asks
      for pages (first, middle, last of entries, a request larger than a
      chunk) and compares each reply with PLAINDIR's pages file; then checks
      that a request it cannot answer ends the server (exit 1, a message),
      and that PS_IOV_CLOSE is answered with status 0 (exit 0).
  pageserver_probe.py corrupt CKDIR
      Flips a byte in the data of the chunk in the middle of the largest
      pages file (a lazy page of a memhog's heap); prints "SHARD chunk SEQ".
Exit 0 when every check passed; messages on stderr otherwise.
"""
import json
import os
import socket
import struct
import subprocess
import sys

PS_IOV_ADD_F, PS_IOV_GET, PS_IOV_CLOSE = 6, 7, 0x1023
PE_PARENT, PE_LAZY, PE_PRESENT = 1, 2, 4
PAGE = 4096


def varint(b, i):
    r = s = 0
    while True:
        c = b[i]
        i += 1
        r |= (c & 0x7F) << s
        s += 7
        if not c & 0x80:
            return r, i


def fields(msg):
    out, i = {}, 0
    while i < len(msg):
        key, i = varint(msg, i)
        assert key & 7 == 0, "only varint fields expected"
        out[key >> 3], i = varint(msg, i)
    return out


def pagemap(path):
    """(pages_id, [(vaddr, nr_pages, flags, offset)])"""
    b = open(path, "rb").read()
    i = 8  # IMG_COMMON_MAGIC, PAGEMAP_MAGIC
    recs = []
    while i < len(b):
        (n,) = struct.unpack_from("<I", b, i)
        recs.append(fields(b[i + 4:i + 4 + n]))
        i += 4 + n
    off, ents = 0, []
    for r in recs[1:]:
        flags = r.get(4, PE_PRESENT)
        ents.append((r[1], r[2], flags, off))
        if flags & PE_PRESENT:
            off += r[2] * PAGE
    return recs[0][1], ents


def start(streamer, ckdir):
    a, b = socket.socketpair()
    p = subprocess.Popen([streamer, "-D", ckdir, "--fd", str(b.fileno()), "page-server"],
                         pass_fds=[b.fileno()], stderr=subprocess.PIPE)
    b.close()
    return a, p


def recv_all(s, n):
    buf = bytearray()
    while len(buf) < n:
        c = s.recv(n - len(buf))
        if not c:
            raise EOFError("short reply: %d of %d bytes" % (len(buf), n))
        buf += c
    return bytes(buf)


def get(s, pid, vaddr, nr):
    s.sendall(struct.pack("=IIQQ", PS_IOV_GET, nr, vaddr, pid))
    cmd, got, va, dst = struct.unpack("=IIQQ", recv_all(s, 24))
    assert cmd == (PE_PRESENT << 16) | PS_IOV_ADD_F, "reply cmd 0x%x" % cmd
    assert va == vaddr and dst == pid, "reply names 0x%x/%d" % (va, dst)
    assert 0 < got <= nr, "%d pages for %d asked" % (got, nr)
    return recv_all(s, got * PAGE)


def check(streamer, ckdir, plain):
    procs = {}
    for name in os.listdir(plain):
        if name.startswith("pagemap-") and not name.startswith("pagemap-shmem-"):
            procs[int(name[8:-4])] = pagemap(os.path.join(plain, name))
    assert procs, "no pagemap in " + plain
    s, p = start(streamer, ckdir)
    asked = 0
    for pid, (pages_id, ents) in sorted(procs.items()):
        data = open(os.path.join(plain, "pages-%d.img" % pages_id), "rb").read()
        for va, nr, flags, off in ents:
            if not flags & PE_PRESENT:
                continue
            tries = {(0, 1), (nr // 2, 1), (nr - 1, 1), (0, min(nr, 1024))}
            for first, n in sorted(tries):
                pos, left = first, n
                while left:  # the server may send fewer pages than asked
                    got = get(s, pid, va + pos * PAGE, left)
                    want = data[off + pos * PAGE:off + pos * PAGE + len(got)]
                    assert got == want, "pid %d 0x%x: bytes differ" % (pid, va + pos * PAGE)
                    pos += len(got) // PAGE
                    left -= len(got) // PAGE
                    asked += 1
    s.sendall(struct.pack("=IIQQ", PS_IOV_CLOSE, 0, 0, 0))
    (status,) = struct.unpack("=i", recv_all(s, 4))
    rc = p.wait(20)
    assert status == 0 and rc == 0, "close: status %d, exit %d" % (status, rc)
    print("# %d requests answered, %d processes" % (asked, len(procs)))
    # A request it cannot answer exactly ends it: no process 999999999.
    s, p = start(streamer, ckdir)
    s.sendall(struct.pack("=IIQQ", PS_IOV_GET, 1, 0x1000, 999999999))
    rest = s.recv(100)
    rc = p.wait(20)
    err = p.stderr.read().decode()
    assert rest == b"" and rc == 1 and "999999999" in err, "unknown process: %r %d %s" % (rest, rc, err)
    # An address no entry covers.
    pid, (_, ents) = sorted(procs.items())[0]
    s, p = start(streamer, ckdir)
    s.sendall(struct.pack("=IIQQ", PS_IOV_GET, 1, 0x1000, pid))
    rc = p.wait(20)
    err = p.stderr.read().decode()
    assert rc == 1 and "no pagemap entry covers it" in err, "unknown address: %d %s" % (rc, err)
    # A command of the dump side.
    s, p = start(streamer, ckdir)
    s.sendall(struct.pack("=IIQQ", 3, 0, 0, 0))
    rc = p.wait(20)
    assert rc == 1, "OPEN: exit %d" % rc
    return 0


def corrupt(ckdir):
    m = json.load(open(os.path.join(ckdir, "manifest.json")))
    pages = max((f for f in m["files"] if f["name"].startswith("pages-")), key=lambda f: f["size"])
    chunks = []  # (offset, shard, pos of data, stored_len, seq)
    for sh in m["shards"]:
        path = os.path.join(ckdir, sh["name"])
        b = open(path, "rb").read()
        i = 40
        while i < len(b):
            _, _, _, _, fid, raw, stored, seq, off = struct.unpack_from("<IBBHIIIIQ", b, i)
            if fid == pages["id"]:
                chunks.append((off, path, i + 48, stored, seq))
            i += 48 + stored
    chunks.sort()
    off, path, pos, stored, seq = chunks[len(chunks) // 2]
    with open(path, "r+b") as fh:
        fh.seek(pos + stored // 2)
        c = fh.read(1)
        fh.seek(pos + stored // 2)
        fh.write(bytes([c[0] ^ 0x5A]))
    print("%s chunk %d" % (path, seq))
    return 0


if __name__ == "__main__":
    try:
        if sys.argv[1] == "check":
            sys.exit(check(*sys.argv[2:5]))
        sys.exit(corrupt(sys.argv[2]))
    except (AssertionError, EOFError, OSError, subprocess.TimeoutExpired) as e:
        print("pageserver_probe: %s" % e, file=sys.stderr)
        sys.exit(1)
