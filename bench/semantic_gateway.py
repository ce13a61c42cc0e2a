#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The semantic cache through a running gateway (bench/run.sh section 8):
fills one tenant's index with N stored answers (distinct prompts: words
drawn at random from a synthetic vocabulary, so unrelated prompts score
far below the threshold with the mock's bag-of-words embedding), then
times M requests of each kind, sequentially on one keep-alive connection:

  exact hit      a prompt asked before, byte for byte
  semantic hit   a stored prompt's words shuffled and re-punctuated
                 (cosine 1.0 with the mock; guards and parameters equal)
  semantic miss  a new prompt: embedded, searched, nothing close, upstream

and reports the gateway's own time (x-tiergate-overhead-ms: the request's
total minus its waits on upstream calls, the embedding call included, so
what is left is the gateway's CPU plus its Redis round trips) and the
client's latency, p50 and p90. Timings are wall clock on a shared machine.

    semantic_gateway.py PORT N M OUT.json
"""
import http.client
import json
import random
import statistics
import sys
import time

VOCAB = ["w%04d" % i for i in range(8000)]


def prompt(rng, n=14):
    return " ".join(rng.choice(VOCAB) for _ in range(n))


def paraphrase(text):
    words = text.split()
    words = words[1:] + words[:1]  # another order, other punctuation: the same bag of words
    return (", ".join(words)).capitalize() + "?"


class Client:
    def __init__(self, port):
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def ask(self, text):
        body = json.dumps({"model": "cheap", "temperature": 0,
                           "messages": [{"role": "user", "content": text}]})
        t0 = time.perf_counter()
        self.c.request("POST", "/v1/chat/completions", body, {"content-type": "application/json",
                                                               "authorization": "Bearer bench-tenant"})
        r = self.c.getresponse()
        r.read()
        dt = (time.perf_counter() - t0) * 1000
        if r.status != 200:
            raise SystemExit("semantic bench: HTTP %d" % r.status)
        return r.getheader("x-tiergate-cache"), float(r.getheader("x-tiergate-overhead-ms") or 0), dt


def pct(vals, q):
    vals = sorted(vals)
    return vals[min(len(vals) - 1, int(len(vals) * q))]


def main():
    port, n, m, dest = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    rng = random.Random(14)
    cl = Client(port)
    stored = []
    t0 = time.time()
    for _ in range(n):
        p = prompt(rng)
        cl.ask(p)
        stored.append(p)
    fill_s = time.time() - t0
    time.sleep(1.0)  # stores are fire and forget: let the last land in Redis
    kinds = {"exact_hit": (lambda i: stored[i], "hit"),
             "semantic_hit": (lambda i: paraphrase(stored[i]), "semantic"),
             "semantic_miss": (lambda i: prompt(rng), "miss")}
    res = {"entries": n, "requests_each": m, "fill_seconds": round(fill_s, 1)}
    for kind, (make, want) in kinds.items():
        own, total, wrong = [], [], 0
        for i in range(m):
            got, o, dt = cl.ask(make(rng.randrange(n)) if kind != "semantic_miss" else make(i))
            wrong += got != want
            own.append(o)
            total.append(dt)
        res[kind] = {"own_p50_ms": statistics.median(own), "own_p90_ms": pct(own, 0.9),
                     "total_p50_ms": statistics.median(total), "total_p90_ms": pct(total, 0.9),
                     "unexpected_cache_status": wrong}
        print("  %-14s own time p50 %.3f ms  p90 %.3f ms   client latency p50 %.3f ms  p90 %.3f ms%s" % (
            kind, res[kind]["own_p50_ms"], res[kind]["own_p90_ms"], res[kind]["total_p50_ms"],
            res[kind]["total_p90_ms"], "   (%d not %s)" % (wrong, want) if wrong else ""))
    json.dump(res, open(dest, "w"))


if __name__ == "__main__":
    main()
