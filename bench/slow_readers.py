#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""bench/slow_readers.py - the issue 21 "Also seen" scenario, by hand (not
part of make bench): N clients ask for a held (cheap-tier) stream answer of
SIZE bytes and read nothing, while a cache-hit probe is timed; prints what
each probe got, tiergate's RSS and tiergate_buffered_bytes, and what the
kernel's send queues hold. Uses the integration harness (real redis-server,
the mock, the build in TG_BUILD):

  TG_BUILD=build/release python3 bench/slow_readers.py [N=500] [SIZE=600000] ['{"max_buffered_bytes": 0}']
"""
import json
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
from harness import World, chat_body  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 500
SIZE = int(sys.argv[2]) if len(sys.argv) > 2 else 600000
limits = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
w = World(shards=2, limits=dict({"max_connections": 20000}, **limits))


def rss():
    with open("/proc/%d/status" % w.gw.p.pid) as f:
        for l in f:
            if l.startswith("VmRSS"):
                return int(l.split()[1])


try:
    probe = chat_body("probe question", model="large", temperature=0)
    r = w.gw.chat(probe); assert r.status == 200, r
    time.sleep(0.3)
    r = w.gw.chat(probe); print("probe before:", r.header("x-tiergate-cache"))
    w.mock.script({"body_size": SIZE, "chunk_chars": 4096}, model="gpt-cheap", times=-1)
    socks = []
    body = json.dumps(chat_body("big one", model="cheap", stream=True, temperature=1.5)).encode()
    req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    t0 = time.time()
    for i in range(N):
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", w.gw.port)); s.sendall(req); socks.append(s)
    print("sent %d requests in %.1fs, rss %d kB" % (N, time.time() - t0, rss()))
    t_end = time.time() + 30
    while time.time() < t_end:
        st = w.mock.stats()
        t1 = time.time(); r = w.gw.chat(probe, timeout=60)
        mm = w.gw.metrics()
        print("  during: probe %d %s in %.3fs; mock %r rss %d kB buffered %d" % (r.status, r.header("x-tiergate-cache"), time.time() - t1, st, rss(), mm.get("tiergate_buffered_bytes", -1)))
        if st["requests"] >= N and st["active"] == 0:
            break
        time.sleep(0.05)
    print("mock: %r after %.1fs; rss %d kB" % (w.mock.stats(), time.time() - t0, rss()))
    for i in range(5):
        t1 = time.time(); r = w.gw.chat(probe, timeout=60)
        print("probe %d: %d %s in %.3fs rss %d kB" % (i, r.status, r.header("x-tiergate-cache"), time.time() - t1, rss()))
        time.sleep(0.5)
    out = subprocess.run(["ss", "-tnH", "sport = :%d" % w.gw.port], capture_output=True, text=True).stdout
    sendq = sum(int(l.split()[2]) for l in out.splitlines() if l.strip())
    out2 = subprocess.run(["ss", "-tnH", "dport = :%d" % w.gw.port], capture_output=True, text=True).stdout
    recvq = sum(int(l.split()[1]) for l in out2.splitlines() if l.strip())
    print("kernel: gateway send-q %d kB, clients recv-q %d kB" % (sendq // 1024, recvq // 1024))
    m = w.gw.metrics()
    print({k: v for k, v in m.items() if "buffered" in k or "requests_total{" in k})
    for s in socks: s.close()
finally:
    w.close()
