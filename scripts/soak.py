#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""make soak: SOAK_SECONDS (default 600) of mixed load against a release
tiergate with a real redis-server and the mock upstream, reusing the
integration harness to start and stop them (scripts/soak.sh sets TG_BUILD).

Load, from SOAK_CONCURRENCY (default 8) keep-alive client threads:
  hit           a prompt from a small pool (cached after its first miss)
  hit_stream    the same pool, streamed (a cached answer replayed as SSE)
  miss          a fresh prompt, model "auto"
  escalation    a fresh prompt to "hedgy", a cheap model that always hedges
  stream_live   a fresh stream on the last tier (passed through live)
  stream_buf    a fresh stream on the cheap tier (buffered, validated, replayed)
  abandon       a live stream the client drops after its first event
  fault_reset   a model whose upstream resets (before headers / mid body)
  fault_500     a model whose upstream answers 500
  fault_stall   a model whose upstream stalls (first-byte timeout 300 ms)
  fault_stream  a model whose stream resets after two chunks
A fault injector adds a one-shot fault (reset, 500, stall) on the cheap
model every 1.5 s: the request it hits must still be answered (escalated).
Half way through, redis-server is killed and restarted 3 s later.

Expected outcomes are per kind (a fault model may also answer 503 once its
breaker opens); anything else, a client-side error included, is
unexpected. tiergate's RSS and open fds are sampled every 5 s. The summary
and tables go to stdout and, as a dated section under "## Soak", to
bench/RESULTS.md (or $SOAK_RESULTS). Exit status 0 only when nothing was unexpected, RSS and
fds stayed flat, and tiergate exited 0 on SIGTERM."""
import collections
import datetime
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness  # noqa: E402
from harness import Gateway, Mock, Redis, base_config  # noqa: E402

SECONDS = int(os.environ.get("SOAK_SECONDS", "600"))
CONC = int(os.environ.get("SOAK_CONCURRENCY", "8"))
SAMPLE_S = 5
RESULTS = os.environ.get("SOAK_RESULTS") or os.path.join(ROOT, "bench", "RESULTS.md")

WEIGHTS = [("hit", 28), ("hit_stream", 4), ("miss", 18), ("escalation", 10), ("stream_live", 10),
           ("stream_buf", 8), ("abandon", 2), ("fault_reset", 5), ("fault_500", 5),
           ("fault_stall", 3), ("fault_stream", 4)]
# status -> acceptable; streams are checked for [DONE] (or a final error event) separately
EXPECTED = {
    "fault_reset": {502, 503},
    "fault_500": {502, 503},
    "fault_stall": {504, 503},
    "fault_stream": {200, 502, 503},
}
POOL = ["Pool question %d: what is the boiling point of water at sea level?" % i for i in range(40)]


def config(mock_port, redis_port, port):
    cfg = base_config(mock_port, redis_port)
    m = cfg["models"]

    def like(base, upstream, **over):
        d = dict(m[base], upstream_model=upstream)
        d.update(over)
        return d
    m["mini"]["first_byte_timeout_ms"] = 1000  # the injected stalls end quickly
    m["hedgy"] = like("mini", "gpt-hedge")
    for name in ("f_reset", "f_500", "f_stream"):
        m[name] = like("large", "gpt-" + name)
    m["f_stall"] = like("large", "gpt-f_stall", first_byte_timeout_ms=300)
    cfg["tiers"] = {"cheap": ["mini", "hedgy"], "medium": ["mid"], "expensive": ["large"]}
    cfg["listen"] = "127.0.0.1:%d" % port
    cfg["log"] = {"decisions": "off", "level": "info"}
    cfg["limits"] = {"max_connections": 4096}
    # Breakers on, with short cooldowns: the fault models are probed (and
    # really fail) several times a second instead of answering 503 for minutes.
    cfg["breaker"] = {"cooldown_ms": 100, "max_cooldown_ms": 500}
    cfg["redis"]["connect_timeout_ms"] = 300
    cfg["redis"]["reconnect_max_ms"] = 1000
    return cfg


def script_mock(mock):
    rules = [
        {"model": "gpt-hedge", "times": -1, "action": {"hedge": True}},
        {"model": "gpt-f_reset", "times": -1, "action": {"reset": "mid_body"}},
        {"model": "gpt-f_500", "times": -1, "action": {"status": 500}},
        {"model": "gpt-f_stall", "times": -1, "action": {"stall": "before_headers"}},
        {"model": "gpt-f_stream", "times": -1,
         "action": {"content": "s" * 80, "chunk_chars": 8, "reset": "mid_stream", "after_chunks": 2}},
        # live streams and abandoned streams drip a little so they overlap
        {"model": "gpt-large", "times": -1, "action": {"content": "live " * 40, "chunk_chars": 10,
                                                        "drip_ms": 5}},
    ]
    mock.ctl("POST", "/_mock/script", rules)


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.count = collections.Counter()           # kind -> requests
        self.outcome = collections.Counter()         # (kind, outcome) -> n
        self.unexpected = []                         # (t, kind, detail), first 50 kept
        self.n_unexpected = 0
        self.lat = collections.defaultdict(list)     # kind -> seconds
        self.cache = collections.Counter()           # x-tiergate-cache values
        self.escalated = 0

    def add(self, kind, outcome, secs, ok, detail="", cache=None):
        with self.lock:
            self.count[kind] += 1
            self.outcome[(kind, outcome)] += 1
            self.lat[kind].append(secs)
            if cache:
                self.cache[cache] += 1
            if not ok:
                self.n_unexpected += 1
                if len(self.unexpected) < 50:
                    self.unexpected.append((round(time.time() - T0, 1), kind, detail[:300]))

    def total(self):
        with self.lock:
            return sum(self.count.values()), self.n_unexpected


T0 = time.time()


def events(body):
    out = []
    for block in body.decode("utf-8", "replace").replace("\r\n", "\n").split("\n\n"):
        data = [ln[5:].lstrip() for ln in block.split("\n") if ln.startswith("data:")]
        if data:
            d = "\n".join(data)
            out.append(d if d == "[DONE]" else json.loads(d))
    return out


class Worker(threading.Thread):
    def __init__(self, port, stats, stop, seed):
        super().__init__(daemon=True)
        self.port, self.stats, self.stop, self.rng = port, stats, stop, random.Random(seed)
        self.conn = None
        self.seq = 0
        self.kinds = [k for k, w in WEIGHTS for _ in range(w)]

    def body(self, kind):
        self.seq += 1
        fresh = "Soak %s %d-%d: explain the difference between a list and a tuple." % (
            kind, id(self), self.seq)
        if kind in ("hit", "hit_stream"):
            return {"model": "cheap", "messages": [{"role": "user", "content": self.rng.choice(POOL)}],
                    "stream": kind == "hit_stream"}
        model, stream = {"miss": ("auto", False), "escalation": ("hedgy", False),
                         "stream_live": ("large", True), "stream_buf": ("cheap", True),
                         "abandon": ("large", True), "fault_reset": ("f_reset", False),
                         "fault_500": ("f_500", False), "fault_stall": ("f_stall", False),
                         "fault_stream": ("f_stream", True)}[kind]
        return {"model": model, "messages": [{"role": "user", "content": fresh}], "stream": stream}

    def run(self):
        while not self.stop.is_set():
            kind = self.rng.choice(self.kinds)
            t = time.time()
            try:
                if kind == "abandon":
                    self.abandon(t)
                else:
                    self.one(kind, t)
            except Exception as e:  # noqa: BLE001 - any client-side failure is unexpected
                self.stats.add(kind, "client_error", time.time() - t, False, "%s: %r" % (kind, e))
                if self.conn:
                    self.conn.close()
                self.conn = None

    def one(self, kind, t):
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        req = self.body(kind)
        body = json.dumps(req)
        self.conn.request("POST", "/v1/chat/completions", body, {"content-type": "application/json"})
        r = self.conn.getresponse()
        data = r.read()
        secs = time.time() - t
        st = r.status
        cache = r.getheader("x-tiergate-cache")
        if r.getheader("connection", "").lower() == "close":
            self.conn.close()
            self.conn = None
        if kind == "fault_stream" and st == 200:
            ev = events(data)
            ok = bool(ev) and isinstance(ev[-1], dict) and "error" in ev[-1]
            self.stats.add(kind, "200+error_event" if ok else "200 malformed", secs, ok,
                           "no final error event: %r" % data[-200:])
            return
        if kind in EXPECTED:
            ok = st in EXPECTED[kind]
            self.stats.add(kind, str(st), secs, ok, "status %d: %r" % (st, data[:200]))
            return
        if st != 200:
            self.stats.add(kind, str(st), secs, False, "status %d: %r" % (st, data[:200]), cache)
            return
        detail = ""
        if req["stream"]:
            ev = events(data)
            if not ev or ev[-1] != "[DONE]":
                detail = "stream without [DONE]: %r" % data[-200:]
        else:
            try:
                c = json.loads(data)["choices"][0]["message"]["content"]
                if not c:
                    detail = "empty content"
            except Exception as e:  # noqa: BLE001
                detail = "bad completion %r: %r" % (e, data[:200])
        if kind == "escalation" and r.getheader("x-tiergate-escalations") != "1":
            detail = "hedged answer not escalated: %s" % r.getheader("x-tiergate-escalations")
        self.stats.add(kind, "200" if not detail else "200 bad", secs, not detail, detail, cache)

    def abandon(self, t):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        try:
            body = json.dumps(self.body("abandon")).encode()
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: soak\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            got = b""
            while b"data: {" not in got:
                d = s.recv(4096)
                if not d:
                    break
                got += d
        finally:
            s.close()
        ok = got.startswith(b"HTTP/1.1 200") and b"data: {" in got
        self.stats.add("abandon", "dropped after first event" if ok else "bad", time.time() - t, ok,
                       "abandon: %r" % got[:200])


def injector(mock, stop):
    faults = [{"reset": "before_headers"}, {"status": 500}, {"stall": "before_headers"},
              {"reset": "mid_body"}]
    i = 0
    while not stop.wait(1.5):
        try:
            mock.ctl("POST", "/_mock/script", {"model": "gpt-cheap", "times": 1, "action": faults[i % 4]})
        except Exception:  # noqa: BLE001
            pass
        i += 1


def proc_sample(pid):
    rss = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return rss, len(os.listdir("/proc/%d/fd" % pid))


def pct(xs, p):
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100.0 * len(xs)))]


def main():
    global T0
    print("soak: %d s, %d client threads, build %s" % (SECONDS, CONC, harness.BUILD), flush=True)
    redis = Redis()
    mock = Mock(["--no-record"])
    port = harness.free_port()
    gw = Gateway(config(mock.port, redis.port, port))
    script_mock(mock)
    stats = Stats()
    stop = threading.Event()
    samples = []  # (t, rss_kb, fds, requests, unexpected, phase)
    events_log = []
    T0 = time.time()
    workers = [Worker(gw.port, stats, stop, i) for i in range(CONC)]
    for wk in workers:
        wk.start()
    inj = threading.Thread(target=injector, args=(mock, stop), daemon=True)
    inj.start()
    restarted = False
    next_sample = T0
    try:
        while time.time() - T0 < SECONDS:
            now = time.time()
            if now >= next_sample:
                rss, fds = proc_sample(gw.p.pid)
                n, bad = stats.total()
                samples.append((round(now - T0), rss, fds, n, bad, "load"))
                print("  t=%4ds rss=%7d kB fds=%5d requests=%8d unexpected=%d" %
                      (now - T0, rss, fds, n, bad), flush=True)
                next_sample += SAMPLE_S
            if not restarted and now - T0 >= SECONDS / 2:
                restarted = True
                events_log.append("t=%ds redis-server killed (SIGKILL)" % (now - T0))
                print("  " + events_log[-1], flush=True)
                rport = redis.port
                redis.kill()
                time.sleep(3)
                redis = Redis(port=rport)
                events_log.append("t=%ds redis-server restarted on the same port" % (time.time() - T0))
                print("  " + events_log[-1], flush=True)
            if gw.p.poll() is not None:
                events_log.append("tiergate exited during the soak (rc %s)" % gw.p.returncode)
                time.sleep(0.2)
                print(gw.output()[-4000:], flush=True)
                break
            time.sleep(0.2)
    finally:
        stop.set()
        for wk in workers:
            wk.join(35)
            if wk.conn:
                wk.conn.close()
    duration = time.time() - T0
    time.sleep(2)  # idle keep-alive connections close, stores land
    alive = gw.p.poll() is None
    if alive:
        rss, fds = proc_sample(gw.p.pid)
        samples.append((round(time.time() - T0), rss, fds, stats.total()[0], stats.total()[1], "idle"))
    rc = gw.stop(30) if alive else gw.p.returncode
    mock.kill()
    redis.kill()
    return report(stats, samples, events_log, duration, rc)


def flat(samples):
    """(rss_ok, fd_ok, text): RSS and fds of the load samples after a 20 % warm-up."""
    load = [s for s in samples if s[5] == "load"]
    if len(load) < 4:
        return True, True, "too few samples to judge"
    warm = load[max(1, len(load) // 5):]
    half = len(warm) // 2
    first, last = warm[:half] or warm, warm[half:] or warm
    rss_a, rss_b = max(s[1] for s in first), max(s[1] for s in last)
    fd_a, fd_b = max(s[2] for s in first), max(s[2] for s in last)
    rss_ok = rss_b <= rss_a * 1.10 + 8192
    fd_ok = fd_b <= fd_a + 16
    idle = [s for s in samples if s[5] == "idle"]
    if idle:
        fd_ok = fd_ok and idle[0][2] <= max(s[2] for s in load)
    text = ("RSS max %d kB in the first half after warm-up, %d kB in the second (%+.1f %%); "
            "fds max %d then %d%s" % (rss_a, rss_b, 100.0 * (rss_b - rss_a) / max(rss_a, 1), fd_a, fd_b,
                                     "; %d fds once idle" % idle[0][2] if idle else ""))
    return rss_ok, fd_ok, text


def report(stats, samples, events_log, duration, rc):
    n, bad = stats.total()
    rss_ok, fd_ok, flat_text = flat(samples)
    passed = bad == 0 and rss_ok and fd_ok and rc == 0
    lines = []
    lines.append("%d requests in %.0f s (%.0f req/s), %d client threads; %d unexpected; tiergate exit %s"
                 % (n, duration, n / max(duration, 1), CONC, bad, rc))
    lines.append("cache: " + ", ".join("%s %d" % kv for kv in sorted(stats.cache.items())))
    lines.append(flat_text + (" — flat" if rss_ok and fd_ok else " — NOT FLAT"))
    lines.extend(events_log)
    lines.append("verdict: %s" % ("PASS" if passed else "FAIL"))
    table = ["| kind | requests | outcomes | p50 ms | p99 ms |", "|---|---:|---|---:|---:|"]
    for kind, _ in WEIGHTS:
        outs = ", ".join("%s: %d" % (o, c) for (k, o), c in sorted(stats.outcome.items()) if k == kind)
        lat = stats.lat[kind]
        table.append("| %s | %d | %s | %.1f | %.1f |" % (kind, stats.count[kind], outs, pct(lat, 50) * 1000,
                                                          pct(lat, 99) * 1000))
    res = ["| t (s) | RSS (kB) | open fds | requests so far | unexpected |", "|---:|---:|---:|---:|---:|"]
    step = max(1, len(samples) // 24)  # keep the file's table short; every sample is on stdout
    shown = samples[::step]
    if samples and shown[-1] is not samples[-1]:
        shown.append(samples[-1])
    for t, rss, fds, cnt, b, phase in shown:
        res.append("| %d%s | %d | %d | %d | %d |" % (t, " (idle)" if phase == "idle" else "", rss, fds, cnt, b))
    print("\n== soak summary")
    for line in lines:
        print(line)
    print()
    print("\n".join(table))
    print()
    print("\n".join(res))
    if stats.unexpected:
        print("\nfirst unexpected outcomes:")
        for u in stats.unexpected[:20]:
            print("  t=%ss %s: %s" % u)
    append_results(lines, table, res, stats)
    return 0 if passed else 1


def append_results(lines, table, res, stats):
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    host = "%s, %d cores" % (os.uname().release, os.cpu_count() or 0)
    sec = ["### %s — SOAK_SECONDS=%d, SOAK_CONCURRENCY=%d (%s)" % (stamp, SECONDS, CONC, host), "",
           "Command: `SOAK_SECONDS=%d make soak`" % SECONDS, ""]
    sec += ["- " + line for line in lines] + [""] + table + [""] + res + [""]
    if stats.unexpected:
        sec += ["First unexpected outcomes:", ""] + ["- t=%ss %s: `%s`" % u for u in stats.unexpected[:10]] + [""]
    text = open(RESULTS).read() if os.path.exists(RESULTS) else "# Benchmark results\n"
    intro = ("## Soak\n\n`make soak` (scripts/soak.sh): a release tiergate, redis-server and the mock under "
             "mixed load — cache hits and misses, escalations, live and buffered streams, abandoned "
             "streams, upstream resets, 500s, stalls and broken streams, one-shot faults on the cheap "
             "model, and redis-server killed and restarted half way. RSS and open fds are sampled every "
             "5 s. Each run appends a section below.\n\n")
    if "## Soak" not in text:
        text = text.rstrip("\n") + "\n\n" + intro
    # Insert at the end of the Soak section (before the next level-2 heading, if any).
    start = text.index("## Soak")
    nxt = text.find("\n## ", start + 1)
    block = "\n".join(sec) + "\n"
    if nxt < 0:
        text = text.rstrip("\n") + "\n\n" + block
    else:
        text = text[:nxt].rstrip("\n") + "\n\n" + block + text[nxt:]
    with open(RESULTS, "w") as f:
        f.write(text)
    print("\nappended to %s" % os.path.relpath(RESULTS, ROOT))


if __name__ == "__main__":
    signal.signal(signal.SIGINT, lambda *a: (harness._cleanup(), os._exit(130)))
    sys.exit(main())
