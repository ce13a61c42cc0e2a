# SPDX-License-Identifier: MIT
"""Streams that feel live (issue 19): the head and ": ok" before any upstream
byte, keep-alive comments, the stream modes (prefix judges a held answer's
opening and goes live, buffer holds it whole, live sends every attempt),
where a stream committed, final-tier answers that break the request's
contract (cascade.final_invalid), the x-should-retry hint, and requests for
unknown paths and methods made visible. Timings here are orderings or
generous bounds set by the mock's own delays, never performance claims."""
import http.client
import json
import os
import subprocess
import time

from harness import TIERGATE, World, check, eq, test, wait_for, chat_body

WORLD = lambda: World(breaker={"failure_threshold": 0, "failure_ratio": 0})  # noqa: E731

_n = [0]


def uniq(text="tell me"):
    _n[0] += 1
    return "%s (#%d)" % (text, _n[0])


def body(model="cheap", stream=True, **fields):
    return chat_body(uniq(), model=model, stream=stream, **fields)


class Timeline:
    """A stream read as it arrives: when the head came, when the first
    content byte came, when it ended; the raw SSE body."""

    def __init__(self, w, b, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", w.gw.port, timeout=30)
        h = {"content-type": "application/json"}
        h.update(headers or {})
        t0 = time.time()
        c.request("POST", "/v1/chat/completions", json.dumps(b).encode(), h)
        r = c.getresponse()
        self.t_head = time.time() - t0
        self.status = r.status
        self.headers = {k.lower(): v for k, v in r.getheaders()}
        self.t_first = None
        raw = b""
        while True:
            d = r.read1(65536)
            if not d:
                break
            raw += d
            if self.t_first is None and b'"content":"' in raw.replace(b'"content":""', b""):
                self.t_first = time.time() - t0
        self.t_end = time.time() - t0
        c.close()
        self.body = raw

    def events(self):
        out = []
        for block in self.body.decode().split("\n\n"):
            data = [l[5:].lstrip() for l in block.split("\n") if l.startswith("data:")]
            if data:
                d = "\n".join(data)
                out.append(d if d == "[DONE]" else json.loads(d))
        return out

    def comments(self):
        return [l[2:] for l in self.body.decode().split("\n") if l.startswith(": ")]

    def meta(self, name):
        found = None
        for c in self.comments():
            if c.startswith(name + ": "):
                found = c[len(name) + 2:]
        return found


def text_of(events):
    return "".join((e["choices"][0]["delta"].get("content") or "")
                   for e in events if e != "[DONE]" and "choices" in e and e["choices"])


def attempts(d):
    return [(a["model"], a["outcome"], a["reason"]) for a in d["attempts"]]


def decision_of(w, rid):
    return wait_for(lambda: next((d for d in w.gw.decisions() if d["request_id"] == rid), None), 3,
                    msg="decision line")


def restarts(fn):
    def run(w):
        try:
            fn(w)
        finally:
            w.start()
    run.__name__ = fn.__name__
    return run


LONG = ("The capital of France is Paris. It sits on the Seine, and it has been the seat of "
        "government for most of the country's history. ") * 4


# --- the done-when of issue 19 ------------------------------------------------

def cached(w):
    """Cache keys, without single-flight locks (a lock's release may still
    be on its way to Redis: docs/replicas.md)."""
    return [k for k in w.redis.cmd("KEYS", "tiergate:*") if not k.endswith(":lock")]


@test
def head_at_once_then_live_from_the_prefix(w):
    # A 3 s stream from cheap, after 1.5 s of silence: the head and ": ok"
    # reach the client while the upstream has not sent a byte, the answer
    # goes live once its first sentence is judged, long before the upstream
    # stream ends, and the decision line says where it committed.
    w.mock.script({"content": LONG, "chunk_chars": 8, "delay_ms": 1500, "hold_ms": 3000},
                  model="gpt-cheap")
    t = Timeline(w, body())
    eq(t.status, 200)
    check(t.t_head < 1.5, "head after %.3f s: before the upstream's first byte" % t.t_head)
    eq(t.headers.get("x-tiergate-stream-mode"), "prefix")
    eq(t.headers.get("x-tiergate-cache"), "miss")
    check(t.body.startswith(b": ok\n\n"), t.body[:40])
    check(t.t_first is not None and t.t_first < t.t_end - 1.0,
          "first content at %.3f s, end at %.3f s: live, not held to the end" % (t.t_first or -1, t.t_end))
    ev = t.events()
    eq(ev[-1], "[DONE]")
    eq(text_of(ev), LONG, "the held prefix was replayed, then the rest went live")
    eq(t.meta("x-tiergate-model"), "mini")
    eq(t.meta("x-tiergate-tier"), "cheap")
    eq(t.meta("x-tiergate-escalations"), "0")
    d = decision_of(w, t.headers["x-request-id"])
    eq(d["stream_mode"], "prefix")
    eq(d["committed"]["attempt"], 0)
    eq(d["committed"]["model"], "mini")
    check(1 <= d["committed"]["tokens_held"] <= 20, "held within the prefix budget: %r" % d["committed"])
    check(abs(float(t.meta("x-tiergate-cost-usd")) - d["cost_usd"]) < 1e-7,
          "the cost comment at the end is the request's cost")
    eq(attempts(d), [("mini", "ok", None)])


@test
def refusal_opening_still_escalates(w):
    w.mock.script({"content": "I'm sorry, but I can't help with that request. " + LONG, "chunk_chars": 6,
                   "drip_ms": 20}, model="gpt-cheap")
    w.mock.script({"content": "Here is a proper answer. " + LONG, "chunk_chars": 16}, model="gpt-mid")
    t = Timeline(w, body())
    ev = t.events()
    eq(text_of(ev), "Here is a proper answer. " + LONG)
    check(b"sorry" not in t.body, "nothing of the refusal reached the client")
    eq(t.meta("x-tiergate-model"), "mid")
    eq(t.meta("x-tiergate-escalations"), "1")
    d = decision_of(w, t.headers["x-request-id"])
    eq(attempts(d), [("mini", "invalid", "refusal"), ("mid", "ok", None)])
    eq(d["committed"]["attempt"], 1)
    check("prefix" in d["attempts"][0]["detail"], d["attempts"][0]["detail"])
    check(d["attempts"][0]["completion_tokens"] < 30, "stopped early: %r" % d["attempts"][0])
    wait_for(lambda: w.mock.stats()["aborted"] >= 1, 3, msg="the cheap call stopped, not read to its end")
    note = json.loads(w.mock.requests()[1]["body"])["messages"][-1]["content"]
    check("refusal" in note, "the next model is told why: %s" % note)


@test
def prefix_checks_hedging_json_and_tool_names(w):
    # A hedging opening.
    w.mock.script({"hedge": True, "chunk_chars": 4}, model="gpt-cheap")
    t = Timeline(w, body())
    eq(attempts(decision_of(w, t.headers["x-request-id"]))[0], ("mini", "invalid", "hedging"))
    check("not sure" not in text_of(t.events()), text_of(t.events()))
    # JSON output that cannot start a JSON object.
    w.mock.script({"content": "Sure! Here is the JSON you asked for: {\"a\": 1}", "chunk_chars": 5},
                  model="gpt-cheap")
    w.mock.script({"content_json": {"a": 1}}, model="gpt-mid")
    t = Timeline(w, body(response_format={"type": "json_object"}))
    eq(attempts(decision_of(w, t.headers["x-request-id"])),
       [("mini", "invalid", "json_object"), ("mid", "ok", None)])
    eq(json.loads(text_of(t.events())), {"a": 1})
    # A tool call to a function the request does not offer.
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    w.mock.script({"tool_calls": [{"name": "get_wether", "arguments": "{\"city\": \"Paris\"}"}]},
                  model="gpt-cheap")
    w.mock.script({"tool_calls": [{"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}]},
                  model="gpt-mid")
    t = Timeline(w, body(tools=tools))
    d = decision_of(w, t.headers["x-request-id"])
    eq(attempts(d), [("mini", "invalid", "tool_args"), ("mid", "ok", None)])
    check(b"get_wether" not in t.body and b"get_weather" in t.body)


# --- the other modes ---------------------------------------------------------

@test
def buffer_mode_holds_the_whole_answer(w):
    w.mock.script({"content": LONG, "chunk_chars": 8, "hold_ms": 1500}, model="gpt-cheap")
    t = Timeline(w, body(), headers={"x-tiergate-stream-mode": "buffer"})
    eq(t.headers.get("x-tiergate-stream-mode"), "buffer")
    eq(text_of(t.events()), LONG)
    d = decision_of(w, t.headers["x-request-id"])
    eq(d["stream_mode"], "buffer")
    eq(d["committed"]["attempt"], 0)
    check(d["committed"]["ms_held"] > 1000, "held until the 1.5 s stream ended: %r" % d["committed"])
    eq(d["committed"]["tokens_held"], d["attempts"][0]["completion_tokens"])


@test
def live_mode_sends_every_attempt_as_it_comes(w):
    w.mock.script({"hedge": True, "chunk_chars": 4}, model="gpt-cheap")
    t = Timeline(w, body(), headers={"x-tiergate-stream-mode": "live"})
    check("not sure" in text_of(t.events()), "no validation-escalation in live mode")
    eq(t.events()[-1], "[DONE]")
    d = decision_of(w, t.headers["x-request-id"])
    eq(attempts(d), [("mini", "invalid", None)])
    eq(d["committed"], {"attempt": 0, "model": "mini", "tokens_held": 0, "ms_held": d["committed"]["ms_held"]})
    # A failure before the first byte still moves on.
    w.mock.script({"status": 500}, model="gpt-cheap")
    t = Timeline(w, body(), headers={"x-tiergate-stream-mode": "live"})
    eq(t.meta("x-tiergate-model"), "mid")
    eq(attempts(decision_of(w, t.headers["x-request-id"])), [("mini", "http_5xx", "http_5xx"), ("mid", "ok", None)])


@test
def bad_stream_mode_header_is_a_400(w):
    for stream in (True, False):
        r = w.gw.req("POST", "/v1/chat/completions", body(stream=stream),
                     {"x-tiergate-stream-mode": "fast"})
        eq(r.status, 400)
        err = r.json()["error"]
        check("x-tiergate-stream-mode" in err["message"], err["message"])
        eq(err["type"], "invalid_request_error")
    eq(w.mock.requests(), [], "nothing went upstream")


@test
@restarts
def keepalive_comments_while_holding(w):
    w.start(cascade={"keepalive_ms": 150})
    w.mock.script({"content": "after a long think", "delay_ms": 1000}, model="gpt-large")
    t = Timeline(w, body(model="expensive"))
    head = t.body.split(b"data:", 1)[0]
    check(head.count(b": keep-alive\n\n") >= 3, "keep-alive comments while waiting: %r" % head)
    eq(text_of(t.events()), "after a long think")


# --- final-tier answers that break the request's contract ------------------

SCHEMA = {"type": "json_schema", "json_schema": {"name": "r", "schema": {
    "type": "object", "properties": {"a": {"type": "integer"}, "note": {"type": "string"}},
    "required": ["a"]}}}


@test
def final_invalid_answer_is_a_502_with_the_text(w):
    text = "Certainly, here is the JSON you want, with some words around it. " * 6
    w.mock.script({"content": text}, model="gpt-large")
    r = w.gw.req("POST", "/v1/chat/completions",
                 body(model="expensive", stream=False, response_format={"type": "json_object"}))
    eq(r.status, 502)
    err = r.json()["error"]
    eq(err["code"], "invalid_upstream_response")
    eq(err["type"], "upstream_error")
    check("json_object" in err["message"], err["message"])
    check(text[:200] in err["message"] and text[:201] not in err["message"] and '..."' in err["message"],
          "the model's text, cut at 200 bytes: %s" % err["message"])
    eq(r.header("x-should-retry"), "false")
    d = w.gw.decision(r)
    eq(attempts(d), [("large", "invalid", "json_object")])
    check(text[:50] not in json.dumps(d), "the model's text stays out of the decision line")
    time.sleep(0.1)
    eq(cached(w), [], "nothing cached")


@test
def committed_stream_whose_answer_breaks_its_schema_ends_with_an_error(w):
    # prefix: cheap's JSON opens right and goes live; the whole answer then
    # fails the schema: an error event instead of [DONE], never cached.
    w.mock.script({"content_json": {"note": "x" * 120, "a": "nope"}, "chunk_chars": 10}, model="gpt-cheap")
    t = Timeline(w, body(response_format=SCHEMA))
    ev = t.events()
    check("[DONE]" not in ev, "no [DONE]")
    eq(ev[-1]["error"]["code"], "invalid_upstream_response")
    check("json_schema" in ev[-1]["error"]["message"], ev[-1]["error"]["message"])
    d = decision_of(w, t.headers["x-request-id"])
    eq(attempts(d), [("mini", "invalid", "json_schema")])
    eq(d["status"], 502)
    # The last tier streams live (every mode but live refuses it the same way).
    w.mock.script({"content_json": {"a": "nope"}}, model="gpt-large")
    t = Timeline(w, body(model="expensive", response_format=SCHEMA), headers={"x-tiergate-stream-mode": "buffer"})
    eq(t.events()[-1]["error"]["code"], "invalid_upstream_response")
    # In live mode nothing is refused.
    w.mock.script({"content_json": {"a": "nope"}}, model="gpt-large")
    t = Timeline(w, body(model="expensive", response_format=SCHEMA), headers={"x-tiergate-stream-mode": "live"})
    eq(t.events()[-1], "[DONE]")
    time.sleep(0.1)
    eq(cached(w), [], "nothing cached")


@test
@restarts
def final_invalid_pass_sends_it_as_it_came(w):
    w.start(cascade={"final_invalid": "pass"}, breaker={"failure_threshold": 0, "failure_ratio": 0})
    w.mock.script({"content": "not JSON"}, model="gpt-large")
    r = w.gw.req("POST", "/v1/chat/completions",
                 body(model="expensive", stream=False, response_format={"type": "json_object"}))
    eq(r.status, 200)
    eq(r.json()["choices"][0]["message"]["content"], "not JSON")
    eq(attempts(w.gw.decision(r)), [("large", "invalid", None)])


# --- retry hints -------------------------------------------------------------

@test
@restarts
def retry_hints(w):
    # The whole ladder failed: 502 with x-should-retry: false.
    w.mock.script({"status": 500}, model="gpt-large")
    r = w.gw.req("POST", "/v1/chat/completions", body(model="expensive", stream=False))
    eq(r.status, 502)
    eq(r.header("x-should-retry"), "false")
    # The last candidate's 429 goes back as it came: worth retrying, so no hint.
    w.mock.script({"status": 429, "headers": {"retry-after": "1"}}, model="gpt-large")
    r = w.gw.req("POST", "/v1/chat/completions", body(model="expensive", stream=False))
    eq(r.status, 429)
    eq(r.header("retry-after"), "1")
    eq(r.header("x-should-retry"), None)
    # Every breaker open: 503 with Retry-After and x-should-retry: false.
    w.start(breaker={"failure_threshold": 1, "cooldown_ms": 60000})
    w.mock.script({"status": 500}, model="gpt-large")
    eq(w.gw.req("POST", "/v1/chat/completions", body(model="expensive", stream=False)).status, 502)
    r = w.gw.req("POST", "/v1/chat/completions", body(model="expensive", stream=False))
    eq(r.status, 503)
    check(int(r.header("retry-after")) >= 1)
    eq(r.header("x-should-retry"), "false")
    eq(r.json()["error"]["code"], "all_breakers_open")


# --- every request visible ---------------------------------------------------

@test
def unknown_paths_and_methods_are_logged_and_counted(w):
    before = w.gw.metrics()
    r = w.gw.req("GET", "/v1/audio/speech?api_key=sk-secret-0123456789")
    eq(r.status, 404)
    eq(set(r.json()["error"]), {"message", "type", "param", "code"})
    d = w.gw.decision(r)
    eq((d["method"], d["path"], d["status"]), ("GET", "/v1/audio/speech", 404))
    eq(d["attempts"], [])
    check("secret" not in json.dumps(d), "no query string in the log")
    r = w.gw.req("POST", "/v1/fine_tuning/jobs/ftjob-abc123def456/cancel", {"x": 1})
    eq(r.status, 404)
    eq(w.gw.decision(r)["path"], "/v1/fine_tuning/jobs/:id/cancel")
    r = w.gw.req("GET", "/v1/chat/completions")
    eq(r.status, 405)
    eq((w.gw.decision(r)["method"], w.gw.decision(r)["status"]), ("GET", 405))
    m = w.gw.metrics()

    def grew(k, n):
        eq(m.get(k, 0) - before.get(k, 0), n, k)
    grew('tiergate_requests_total{status="404",tier="none",cache="off"}', 2)
    grew('tiergate_requests_total{status="405",tier="none",cache="off"}', 1)
    grew('tiergate_unknown_requests_total{status="404",method="GET",path="/v1/audio/speech"}', 1)
    grew('tiergate_unknown_requests_total{status="404",method="POST",path="/v1/fine_tuning/jobs/:id/cancel"}', 1)
    grew('tiergate_unknown_requests_total{status="405",method="GET",path="/v1/chat/completions"}', 1)
    check(not any("secret" in k or "abc123" in k for k in m), "raw paths never become labels")
    out = subprocess.run([TIERGATE, "stats", "http://127.0.0.1:%d" % w.gw.port], capture_output=True,
                         text=True, timeout=20, env=dict(os.environ, ASAN_OPTIONS="detect_leaks=0"))
    eq(out.returncode, 0, out.stderr)
    line = next((l for l in out.stdout.split("\n") if "unknown paths" in l), "")
    check("404 GET /v1/audio/speech" in line and "405 GET /v1/chat/completions" in line, out.stdout)
