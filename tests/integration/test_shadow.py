# SPDX-License-Identifier: MIT
"""Shadow evaluation (issue 13): with shadow.rate 1 every eligible request
(an answered non-stream or completed stream request that was not a cache
hit, not pinned to the shadow model and not answered by it) gets exactly one
shadow call, made only after the client's response is complete; the two
answers are compared (rules or a judge), counted per tier, written as a
second decision line and a labels line; the budget stops the calls for the
day; a failing shadow model never affects a client; shutdown drops what is
pending and cancels what runs, leak-clean."""
import functools
import json
import os
import socket
import subprocess
import tempfile
import time

from harness import TIERGATE, World, check, eq, test, wait_for

NO_TRIP = {"failure_threshold": 0, "failure_ratio": 0}
USAGE = {"prompt_tokens": 1000, "completion_tokens": 500}
MINI = 1000 * 0.15e-6 + 500 * 0.60e-6
SHADOW = {"rate": 1.0, "model": "shadowm"}


class ShadowWorld(World):
    """A shadow model "shadowm" (in no tier) and a judge on the same mock."""

    def config(self, **over):
        cfg = super().config(**over)
        for name, up, inp, out in (("shadowm", "gpt-shadow", 2.0, 8.0), ("judge", "gpt-judge", 1.0, 2.0)):
            cfg["models"][name] = {"base_url": "http://127.0.0.1:%d/v1" % self.mock.port,
                                   "upstream_model": up, "api_key_env": "MOCK_KEY",
                                   "input_per_mtok": inp, "output_per_mtok": out,
                                   "first_byte_timeout_ms": 5000, "total_timeout_ms": 10000}
        return cfg


WORLD = lambda: ShadowWorld(breaker=NO_TRIP, shadow=SHADOW)  # noqa: E731


def restores(fn):
    @functools.wraps(fn)
    def run(w):
        try:
            fn(w)
        finally:
            w.start()
    return run


_n = [0]


def uniq(text="How many apples?"):
    _n[0] += 1
    return "%s (#%d)" % (text, _n[0])


def ask(w, content=None, headers=None, **fields):
    body = {"model": "cheap", "messages": [{"role": "user", "content": content or uniq()}]}
    body.update(fields)
    return w.gw.req("POST", "/v1/chat/completions", body, headers)


def shadow_calls(w, model="gpt-shadow"):
    return [r for r in w.mock.requests() if r["model"] == model]


def wait_shadow(w, n, model="gpt-shadow"):
    return wait_for(lambda: shadow_calls(w, model) if len(shadow_calls(w, model)) >= n else None,
                    10, msg="%d shadow calls" % n)


def shadow_lines(w, rid=None):
    return [d for d in w.gw.decisions() if d.get("type") == "shadow" and (rid is None or d["request_id"] == rid)]


def shadow_line(w, r):
    rid = r.header("x-request-id")
    return wait_for(lambda: (shadow_lines(w, rid) or [None])[0], 10, msg="shadow line of " + rid)


def comparisons(w, tier, result):
    return w.gw.metrics().get('tiergate_shadow_comparisons_total{tier="%s",result="%s"}' % (tier, result), 0)


def settle(w, seconds=0.4):
    """Gives a (wrongly) queued shadow call the time to show up at the mock."""
    time.sleep(seconds)


@test
def every_eligible_request_once_after_its_answer(w):
    w.mock.script({"content": "#### 12", "usage": USAGE}, model="gpt-cheap", times=-1)
    w.mock.script({"content": "3 * 4 = 12", "usage": USAGE}, model="gpt-mid", times=-1)
    w.mock.script({"content": "The answer: 12", "usage": USAGE}, model="gpt-shadow", times=-1)
    before = comparisons(w, "cheap", "agree")
    rs = [ask(w), ask(w, stream=True), ask(w, stream=True, headers={"x-tiergate-max-tier": "cheap"}),
          ask(w, model="medium")]
    eq([r.status for r in rs], [200] * 4)
    calls = wait_shadow(w, 4)
    settle(w)
    calls = shadow_calls(w)
    eq(len(calls), 4, "one shadow call per request")
    ids = sorted(c["headers"]["x-request-id"] for c in calls)
    eq(ids, sorted(r.header("x-request-id") for r in rs))
    main = {r["headers"]["x-request-id"]: r for r in w.mock.requests() if r["model"] != "gpt-shadow"}
    for c in calls:
        body = json.loads(c["body"])
        eq((body["model"], body["stream"]), ("gpt-shadow", False))
        check("stream_options" not in body, body)
        eq(body["messages"], json.loads(main[c["headers"]["x-request-id"]]["body"])["messages"])
        check(c["t"] > main[c["headers"]["x-request-id"]]["t"], "shadow after the answer's own call")
    for r in rs:
        d = shadow_line(w, r)
        eq((d["tier"], d["shadow_model"], d["rule"]), (r.meta("x-tiergate-tier"), "shadowm", "number"))
        eq(d["result"], "agree")
        check(d["shadow_cost_usd"] > 0 and d["latency_ms"] >= 0, d)
        check("detail" not in d, "rule details (answer pieces) only with log.prompts")
        # Never billed to the client.
        if r.meta("x-tiergate-tier") == "cheap" and r.meta("x-tiergate-cost-usd"):
            check(abs(float(r.meta("x-tiergate-cost-usd")) - MINI) < 2e-8, r.headers)
    eq(comparisons(w, "cheap", "agree") - before, 3)
    m = w.gw.metrics()
    check(m["tiergate_shadow_cost_usd_total"] > 0, m)
    check(m.get('tiergate_cost_usd_total{model="shadowm"}', 0) == 0, "shadow spend is not client spend")


@test
def shadow_starts_only_when_the_client_has_read_everything(w):
    """A client that does not read: the 8 MB answer cannot be complete until
    it does, and the shadow call must not come before."""
    w.mock.script({"body_size": 8_000_000, "usage": USAGE}, model="gpt-cheap")
    body = json.dumps({"model": "cheap", "messages": [{"role": "user", "content": uniq()}]}).encode()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    s.connect(("127.0.0.1", w.gw.port))
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"x-request-id: slow-reader\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
              % (len(body), body))
    time.sleep(1.5)
    eq([(c["headers"]["x-request-id"], c["t"]) for c in shadow_calls(w)], [],
       "no shadow call while the client has not read its answer")
    t_read = time.time()
    got = 0
    while True:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        got += len(chunk)
    s.close()
    check(got > 8_000_000, got)
    calls = wait_shadow(w, 1)
    check(calls[0]["t"] >= t_read, "shadow call at %.3f, client began reading at %.3f" % (calls[0]["t"], t_read))


@test
def cache_hits_and_cut_streams_are_not_shadowed(w):
    # (The first matching rule answers: the slow stream's rule goes first.)
    w.mock.script({"content": "one two three four five six", "chunk_chars": 3, "hold_ms": 1500},
                  model="gpt-cheap", body_contains="cut-me")
    w.mock.script({"content": "#### 12", "usage": USAGE}, model="gpt-cheap", times=-1)
    q = uniq()
    eq(ask(w, q).meta("x-tiergate-cache"), "miss")
    wait_shadow(w, 1)
    wait_for(lambda: w.redis.cmd("DBSIZE") >= 1, 5, msg="the answer stored")
    eq(ask(w, q).meta("x-tiergate-cache"), "hit")
    # A live stream the client leaves mid-way.
    s = socket.create_connection(("127.0.0.1", w.gw.port))
    body = json.dumps({"model": "cheap", "stream": True,
                       "messages": [{"role": "user", "content": "cut-me " + uniq()}]}).encode()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"x-tiergate-max-tier: cheap\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    wait_for(lambda: b"data:" in s.recv(65536), 5, msg="the first event")
    s.close()
    settle(w, 2.0)
    eq(len(shadow_calls(w)), 1, "only the first (miss) request was shadowed")


@test
def the_shadow_model_itself_is_never_shadowed(w):
    w.mock.script({"content": "#### 12", "usage": USAGE}, model="gpt-shadow", times=-1)
    r = ask(w, model="shadowm")
    eq((r.status, r.meta("x-tiergate-model")), (200, "shadowm"))
    settle(w)
    eq(len(shadow_calls(w)), 1, "only the request's own call")


@test
@restores
def shadow_model_down_never_touches_clients(w):
    w.start(shadow={"rate": 1.0, "model": "shadowm"})
    w.mock.script({"content": "#### 12", "usage": USAGE}, model="gpt-cheap", times=-1)
    w.mock.script({"status": 503}, model="gpt-shadow", times=-1)
    before = comparisons(w, "cheap", "error")
    rs = [ask(w) for _ in range(3)]
    eq([(r.status, r.meta("x-tiergate-tier")) for r in rs], [(200, "cheap")] * 3)
    for r in rs:
        d = shadow_line(w, r)
        eq((d["result"], d["rule"]), ("error", "none"))
        check("503" in d["error"], d)
    eq(comparisons(w, "cheap", "error") - before, 3)
    # A dead shadow model (connection refused) as well.
    dead = w.config(shadow={"rate": 1.0, "model": "shadowm"})
    dead["models"]["shadowm"]["base_url"] = "http://127.0.0.1:1/v1"
    w.gw.stop_clean()
    from harness import Gateway
    w.gw = Gateway(dead, env=w.env)
    r = ask(w)
    eq(r.status, 200)
    eq(shadow_line(w, r)["result"], "error")


@test
@restores
def budget_stops_the_day(w):
    # One shadow call is estimated at 1000 * 2.0e-6 + 500 * 8.0e-6 = $0.006.
    w.start(shadow={"rate": 1.0, "model": "shadowm", "max_usd_per_day": 0.01})
    w.mock.script({"content": "#### 12", "usage": USAGE}, model="gpt-cheap", times=-1)
    w.mock.script({"content": "#### 12", "usage": USAGE}, model="gpt-shadow", times=-1)
    r = ask(w)
    shadow_line(w, r)
    for _ in range(3):
        eq(ask(w).status, 200)
    m = wait_for(lambda: (lambda m: m if m.get('tiergate_shadow_dropped_total{reason="budget"}', 0) >= 3 else None)(
        w.gw.metrics()), 5, msg="3 drops for the budget")
    settle(w)
    eq(len(shadow_calls(w)), 1, "no shadow call once the day's budget is spent")
    check(abs(m["tiergate_shadow_cost_usd_total"] - 0.006) < 1e-9, m)


@test
@restores
def judge_compare(w):
    w.start(shadow={"rate": 1.0, "model": "shadowm", "compare": "judge", "judge_model": "judge"})
    w.mock.script({"content": "#### 12", "usage": USAGE}, model="gpt-cheap", times=-1)
    w.mock.script({"content": "Twelve.", "usage": USAGE}, model="gpt-shadow", times=-1)
    for reply, result in (("Yes.", "agree"), ("no", "disagree"), ("Yes, because both say 12", "error")):
        w.mock.script({"content": reply, "usage": {"prompt_tokens": 300, "completion_tokens": 1}},
                      model="gpt-judge")
        r = ask(w)
        d = shadow_line(w, r)
        eq((d["result"], d["rule"], d["judge_model"]), (result, "judge", "judge"), reply)
        cost = 1000 * 2.0e-6 + 500 * 8.0e-6 + 300 * 1.0e-6 + 1 * 2.0e-6
        check(abs(d["shadow_cost_usd"] - cost) < 1e-9, d)
    judge = json.loads(shadow_calls(w, "gpt-judge")[0]["body"])
    check("<answer_a>" in judge["messages"][1]["content"] and "Twelve." in judge["messages"][1]["content"], judge)


def read_lines(path):
    with open(path) as f:
        return [json.loads(x) for x in f.read().splitlines() if x]


@test
@restores
def labels_file(w):
    d = tempfile.mkdtemp(prefix="tg-labels-")
    path = os.path.join(d, "labels.jsonl")
    w.start(shadow=SHADOW, log={"labels": path, "decisions": "stderr"})
    w.mock.script({"content": "#### 12", "usage": USAGE}, model="gpt-cheap", times=-1)
    w.mock.script({"content": "#### 12", "usage": USAGE}, model="gpt-shadow", body_contains="agree-")
    w.mock.script({"content": "#### 13", "usage": USAGE}, model="gpt-shadow", body_contains="disagree-")
    w.mock.script({"status": 500}, model="gpt-shadow", body_contains="fails-")
    ra, rd, rf = ask(w, "agree-" + uniq()), ask(w, "disagree-" + uniq()), ask(w, "fails-" + uniq())
    for r in (ra, rd, rf):
        shadow_line(w, r)
    lines = wait_for(lambda: read_lines(path) if len(read_lines(path)) >= 2 else None, 5, msg="2 labels")
    eq(len(lines), 2, "a failed comparison is no label")
    by = {x["id"]: x for x in lines}
    la, ld = by[ra.header("x-request-id")], by[rd.header("x-request-id")]
    eq((la["label"], ld["label"]), (1, 0))
    for x in (la, ld):
        eq((x["tier"], x["model"], x["shadow_model"], x["rule"]), ("cheap", "mini", "shadowm", "number"))
        check("messages" not in x and "prompt" not in x, "no prompt text without log.prompts")
        # The router's one-way vector (tg_router_features_json), not the prompt.
        check(isinstance(x["features"], dict) and "dense" in x["features"] and "h" in x["features"], x)
    # SIGHUP reopens the file (log rotation): lines go to the new file; log.prompts adds the messages.
    os.rename(path, path + ".1")
    cfg = w.config(shadow=SHADOW, log={"labels": path, "decisions": "stderr", "prompts": True})
    w.gw.reload(cfg)
    wait_for(lambda: os.path.exists(path), 5, msg="labels file reopened")
    time.sleep(0.3)
    r = ask(w, "agree-" + uniq())
    new = wait_for(lambda: read_lines(path) or None, 5, msg="a label in the new file")
    eq(new[0]["id"], r.header("x-request-id"))
    eq(new[0]["messages"][0]["role"], "user")
    check(new[0]["messages"][0]["content"].startswith("agree-"), new)
    eq(len(read_lines(path + ".1")), 2)
    # `tiergate train` reads these lines (features-only ones included).
    out = subprocess.run([TIERGATE, "train", "--min-df", "1"], stdin=open(path + ".1"),
                         capture_output=True, timeout=120)
    eq(out.returncode, 0, out.stderr.decode())
    model = json.loads(out.stdout)
    eq(model["training"]["rows"], 2, "both label lines trained on")


@test
@restores
def sighup_keeps_running_jobs_and_shutdown_drops_the_rest(w):
    w.start(shards=1, shadow={"rate": 1.0, "model": "shadowm", "concurrency": 1, "queue": 2})
    w.mock.script({"content": "#### 12", "usage": USAGE}, model="gpt-cheap", times=-1)
    w.mock.script({"content": "#### 12", "usage": USAGE, "delay_ms": 1500}, model="gpt-shadow", times=-1)
    first = ask(w)
    wait_shadow(w, 1)
    # Reload with shadow off: the job under way finishes under its own snapshot.
    w.gw.reload(w.config(shards=1, shadow={"rate": 0.0, "model": "shadowm"}))
    time.sleep(0.3)
    eq(shadow_line(w, first)["result"], "agree")
    # Queue full: concurrency 1, queue 2; then stop with one running and two queued.
    w.gw.reload(w.config(shards=1, shadow={"rate": 1.0, "model": "shadowm", "concurrency": 1, "queue": 2}))
    time.sleep(0.3)
    for _ in range(4):
        eq(ask(w).status, 200)
    m = wait_for(lambda: (lambda m: m if m.get('tiergate_shadow_dropped_total{reason="queue_full"}', 0) >= 1
                          else None)(w.gw.metrics()), 5, msg="a queue_full drop")
    eq(m['tiergate_shadow_dropped_total{reason="queue_full"}'], 1)
    t0 = time.time()
    w.gw.stop_clean()  # leak-clean under ASan, exit 0
    check(time.time() - t0 < 5, "shutdown does not wait for shadow calls")
    w.gw = None
