#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The batch section of make bench (BENCH_SECTIONS=batch; bench/run.sh calls
`python3 bench/batch_bench.py BUILD`). Standalone: its own redis-server,
mock upstream (answering at once, recording off) and tiergate (2 shards,
cache on), driven from this one process (no curl/python per poll: on a
2-core box those would compete with what is measured). It measures

  1. lines per second through a batch in gateway mode, from POST
     /v1/batches to "completed" (validation and finalization included), at
     batch.max_concurrency 4 (the default) and 32;
  2. live-request latency (wrk, BENCH_BATCH_LIVE_CONNS connections,
     Cache-Control: no-store so every request goes upstream) alone, then
     while a BENCH_BATCH_LINES-line batch runs, with the default
     batch.yield_inflight 1 (no line starts while any live request is in
     flight) and with 64 (one line at a time per shard beside live traffic).

Every batch has prompts of its own (a rerun of the same lines would be all
cache hits). The mock answers in microseconds, so the batch is as
CPU-hungry as it can be: the worst case for live requests sharing the
shards with it. Writes bench/out/batch.json and prints a table."""
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build/release"))
QUICK = os.environ.get("BENCH_QUICK") == "1"
LINES = int(os.environ.get("BENCH_BATCH_LINES", 2000 if QUICK else 10000))
LIVE_SECS = int(os.environ.get("BENCH_BATCH_LIVE_SECONDS", 3 if QUICK else 8))
LIVE_C = int(os.environ.get("BENCH_BATCH_LIVE_CONNS", 8))
procs = []


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start(argv, ready, log, env=None):
    f = open(log, "w+")
    p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, env=env)
    procs.append(p)
    for _ in range(400):
        f.seek(0)
        if ready in f.read():
            return p
        if p.poll() is not None:
            break
        time.sleep(0.025)
    f.seek(0)
    raise SystemExit("bench batch: %s did not start:\n%s" % (argv[0], f.read()[-2000:]))


def req(port, method, path, body=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


class Gateway:
    def __init__(self, tmp, mport, rport, conc, yld):
        self.port = free_port()
        model = lambda name: {"base_url": "http://127.0.0.1:%d/v1" % mport, "upstream_model": name,  # noqa: E731
                              "api_key_env": "BENCH_KEY", "input_per_mtok": 0.15, "output_per_mtok": 0.6}
        cfg = {"listen": "127.0.0.1:%d" % self.port, "shards": 2, "log": {"decisions": "off"},
               "redis": {"url": "redis://127.0.0.1:%d/0" % rport},
               "models": {"mini": model("gpt-cheap"), "large": model("gpt-large")},
               "tiers": {"cheap": ["mini"], "medium": ["mini"], "expensive": ["large"]},
               "batch": {"max_concurrency": conc, "yield_inflight": yld}}
        path = os.path.join(tmp, "tg.json")
        json.dump(cfg, open(path, "w"))
        self.p = start([os.path.join(BUILD, "tiergate"), "-c", path], "listening",
                       os.path.join(tmp, "tg.log"), dict(os.environ, BENCH_KEY="sk-bench"))
        ok = 0  # every shard's Redis connections up: the API answers on both
        for _ in range(200):
            ok = ok + 1 if req(self.port, "GET", "/v1/batches")[0] == 200 else 0
            if ok >= 8:
                break
            time.sleep(0.02)

    def stop(self):
        self.p.terminate()
        self.p.wait(30)

    def create(self, salt):
        lines = "".join(json.dumps({"custom_id": "r%d" % i, "method": "POST",
                                    "url": "/v1/chat/completions",
                                    "body": {"model": "cheap", "messages": [
                                        {"role": "user", "content": "line %d of run %s" % (i, salt)}]}})
                        + "\n" for i in range(LINES))
        b = "bench-boundary-42"
        form = ("--%s\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
                "--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n\r\n"
                "%s\r\n--%s--\r\n" % (b, b, lines, b)).encode()
        st, body = req(self.port, "POST", "/v1/files", form,
                       {"content-type": "multipart/form-data; boundary=" + b})
        assert st == 200, body
        fid = json.loads(body)["id"]
        t0 = time.time()
        st, body = req(self.port, "POST", "/v1/batches", json.dumps(
            {"input_file_id": fid, "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
            {"content-type": "application/json"})
        assert st == 200, body
        return json.loads(body)["id"], t0

    def batch(self, bid):
        st, body = req(self.port, "GET", "/v1/batches/" + bid)
        assert st == 200, body
        return json.loads(body)


def wait(gw, bid, statuses, step=0.05):
    while True:
        b = gw.batch(bid)
        if b["status"] in statuses:
            return b
        if b["status"] in ("failed", "expired", "cancelled"):
            raise SystemExit("bench batch: the batch is %s: %r" % (b["status"], b))
        time.sleep(step)


def wrk(gw):
    env = dict(os.environ, BENCH_BODY=json.dumps({"model": "expensive", "messages": [
        {"role": "user", "content": "live"}]}), BENCH_HEADERS="cache-control: no-store")
    out = subprocess.run(["wrk", "-t1", "-c%d" % LIVE_C, "-d%ds" % LIVE_SECS, "--latency", "-s",
                          os.path.join(ROOT, "bench/wrk_json.lua"),
                          "http://127.0.0.1:%d/v1/chat/completions" % gw.port],
                         capture_output=True, text=True, env=env).stdout
    j = json.loads([l for l in out.split("\n") if l.startswith("WRKJSON ")][0][8:])
    return {"rps": round(j["requests"] / (j["duration_us"] / 1e6)), "p50_ms": j["p50"] / 1000,
            "p99_ms": j["p99"] / 1000,
            "errors": j["connect"] + j["read"] + j["write"] + j["status"] + j["timeout"]}


def main():
    tmp = tempfile.mkdtemp(prefix="tg-bench-batch-")
    mock = start([os.path.join(BUILD, "mock_upstream"), "--port", "0", "--no-record", "--threads", "1"],
                 "listening", os.path.join(tmp, "mock.log"))
    mport = int(open(os.path.join(tmp, "mock.log")).read().strip().rsplit(":", 1)[1])
    rport = free_port()
    start(["redis-server", "--bind", "127.0.0.1", "--port", str(rport), "--save", "", "--appendonly",
           "no", "--dir", tmp], "Ready to accept", os.path.join(tmp, "redis.log"))
    res = {"lines": LINES, "live_conns": LIVE_C, "live_seconds": LIVE_SECS}
    print("== batch: lines/s through a %d-line batch (gateway mode, mock answering at once)" % LINES)
    for conc in (4, 32):
        gw = Gateway(tmp, mport, rport, conc, 64)
        bid, t0 = gw.create("t%d" % conc)
        b = wait(gw, bid, ("completed",), 0.02)
        wall = time.time() - t0
        assert b["request_counts"]["completed"] == LINES, b["request_counts"]
        res["throughput_c%d" % conc] = {"max_concurrency": conc, "wall_s": round(wall, 2),
                                        "lines_per_s": round(LINES / wall, 1)}
        print("  max_concurrency %-3d %6d lines in %6.2f s: %7.1f lines/s (create to completed)" % (
            conc, LINES, wall, LINES / wall))
        gw.stop()
    print("== batch: live latency, wrk -c%d %ds, no-store (every request upstream)" % (LIVE_C, LIVE_SECS))
    gw = Gateway(tmp, mport, rport, 4, 64)
    res["live_alone"] = wrk(gw)
    gw.stop()
    for yld in (64, 1):
        gw = Gateway(tmp, mport, rport, 4, yld)
        bid, _ = gw.create("y%d" % yld)
        before = wait(gw, bid, ("in_progress",), 0.01)["request_counts"]["completed"]
        live = wrk(gw)
        after = gw.batch(bid)
        live["batch_lines_meanwhile"] = after["request_counts"]["completed"] - before
        live["batch_status_after"] = after["status"]
        res["live_with_batch_yield%d" % yld] = live
        gw.stop()
    for k in ("live_alone", "live_with_batch_yield64", "live_with_batch_yield1"):
        v = res[k]
        print("  %-26s %7d req/s  p50 %7.3f ms  p99 %7.3f ms  errors %d  batch lines meanwhile %s" % (
            k, v["rps"], v["p50_ms"], v["p99_ms"], v["errors"],
            "%d (%s after)" % (v["batch_lines_meanwhile"], v["batch_status_after"])
            if "batch_lines_meanwhile" in v else "-"))
    alone = res["live_alone"]["p99_ms"]
    res["p99_ratio_yield64"] = round(res["live_with_batch_yield64"]["p99_ms"] / alone, 2)
    res["p99_ratio_yield1"] = round(res["live_with_batch_yield1"]["p99_ms"] / alone, 2)
    res["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    print("  live p99 with a batch running / alone: %.2fx (yield_inflight 64), %.2fx (yield_inflight 1)"
          % (res["p99_ratio_yield64"], res["p99_ratio_yield1"]))
    os.makedirs(os.path.join(ROOT, "bench/out"), exist_ok=True)
    json.dump(res, open(os.path.join(ROOT, "bench/out/batch.json"), "w"), indent=1)


if __name__ == "__main__":
    try:
        main()
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
