# SPDX-License-Identifier: MIT
"""Bounded-cost schema validation (issue 21, F1 and F2), end to end.

A client's JSON Schema is checked on the shard's event-loop thread. On the
build the review tried, a 16,001-character answer against
(a{1,40}){1,40}$ held the shard for 24.6 s (and /healthz with it); a
200,000-value enum for 18.7 s. Here the same shapes get a bounded answer
while /healthz keeps answering, and schemas the gateway cannot check are
refused with a 400 before anything goes upstream.

The world runs one shard, so /healthz and the chat request share the loop
thread that validates."""
import json
import threading
import time

from harness import World, check, eq, test, chat_body

WORLD = lambda: World(shards=1)  # noqa: E731

HOSTILE = "(a{1,40}){1,40}$"
LONG = "a" * 16000 + "!"


def rf(schema):
    return {"type": "json_schema", "json_schema": {"name": "s", "strict": True, "schema": schema}}


def every_model_answers(w, action):
    for model in ("gpt-cheap", "gpt-mid", "gpt-large"):
        w.mock.script(action, model=model, times=-1)


class HealthPoller:
    """Polls /healthz on its own connection every 20 ms until stopped;
    records each status and latency."""

    def __init__(self, w):
        self.w = w
        self.results = []
        self.done = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.done.is_set():
            t0 = time.time()
            try:
                status = self.w.gw.req("GET", "/healthz", timeout=30).status
            except OSError as e:
                status = repr(e)
            self.results.append((status, time.time() - t0))
            time.sleep(0.02)

    def __enter__(self):
        self.t.start()
        time.sleep(0.1)
        return self

    def __exit__(self, *exc):
        time.sleep(0.1)
        self.done.set()
        self.t.join(35)


@test
def hostile_pattern_answer_is_bounded_and_healthz_answers(w):
    """The reviewer's shape on every tier: each answer's check stops at the
    per-match backtracking limit (a count), so the request ends in
    milliseconds of validation per attempt, and /healthz on the same shard
    never waits for it. The generous 5 s bound is a "not frozen" check:
    on main the three checks took about 74 s."""
    every_model_answers(w, {"content_json": {"code": LONG}})
    body = chat_body("give me the code", response_format=rf(
        {"type": "object", "properties": {"code": {"type": "string", "pattern": HOSTILE}},
         "required": ["code"]}))
    refused = 'tiergate_validation_refused_total{limit="regex_match"}'
    before = w.gw.metrics().get(refused, 0)
    with HealthPoller(w) as hp:
        t0 = time.time()
        r = w.gw.chat(body, timeout=60)
        took = time.time() - t0
    check(took < 5.0, "the request took %.1f s" % took)
    eq(r.status, 200, "the last tier's answer is returned: a check the budget stopped did not "
       "show it invalid (cascade.final_invalid refuses only those) (%r)" % r)
    eq([q["model"] for q in w.mock.requests()], ["gpt-cheap", "gpt-mid", "gpt-large"],
       "each tier was tried once")
    d = w.gw.decision(r)
    outcomes = [(a["model"], a["outcome"], a["reason"]) for a in d["attempts"]]
    eq(outcomes, [("mini", "invalid", "json_schema"), ("mid", "invalid", "json_schema"),
                  ("large", "invalid", None)], "attempts (the last tier cannot escalate)")
    for a in d["attempts"]:
        check("could not be checked (validation limit regex_match)" in a["detail"],
              "the decision detail names the bound: %r" % a["detail"])
        eq(a.get("limit"), "regex_match", "the attempt names the bound (issue 21)")
    m = w.gw.metrics()
    eq(m[refused] - before, 3.0, "each refusal counted by its bound")
    eq(m['tiergate_validation_refused_total{limit="time"}'], 0.0, "the other bounds rendered too")
    statuses = [s for s, _ in hp.results]
    check(len(statuses) >= 3, "healthz was polled during the request: %r" % hp.results)
    eq(set(statuses), {200}, "healthz statuses")
    slowest = max(t for _, t in hp.results)
    check(slowest < 2.0, "slowest /healthz %.2f s (main: 24.5 s)" % slowest)


@test
def legitimate_long_answer_passes(w):
    every_model_answers(w, {"content_json": {"code": LONG}})
    body = chat_body("give me the code", response_format=rf(
        {"type": "object", "properties": {"code": {"type": "string", "pattern": "^a+!$"}}}))
    r = w.gw.chat(body)
    eq(r.status, 200, "status (%r)" % r)
    eq(r.header("x-tiergate-escalations"), "0", "no escalation")
    eq(json.loads(r.json()["choices"][0]["message"]["content"]), {"code": LONG})


@test
def huge_enum_is_refused_before_upstream(w):
    """F2: a 200,000-value enum (about 1.3 MB of request) is over
    validation.max_schema_nodes: a 400 naming the parameter, nothing sent."""
    body = chat_body("pick one", response_format=rf(
        {"type": "object", "properties": {"n": {"enum": list(range(200000))}}}))
    t0 = time.time()
    r = w.gw.chat(body, timeout=60)
    took = time.time() - t0
    eq(r.status, 400, "status (%r)" % r)
    err = r.json()["error"]
    eq(err["type"], "invalid_request_error")
    eq(err["param"], "response_format")
    check("validation.max_schema_nodes" in err["message"], err["message"])
    eq(w.mock.requests(), [], "nothing went upstream")
    check(took < 5.0, "the refusal took %.1f s (main: 18.7 s to validate)" % took)
    eq(w.gw.req("GET", "/healthz").status, 200)


@test
def unusable_patterns_are_refused_before_upstream(w):
    tools = [{"type": "function", "function": {"name": "f", "strict": True, "parameters": {
        "type": "object", "properties": {"x": {"type": "string", "pattern": "(?i)abc"}}}}}]
    r = w.gw.chat(chat_body("call f", tools=tools))
    eq(r.status, 400, "status (%r)" % r)
    err = r.json()["error"]
    eq(err["param"], "tools[0].function.parameters")
    check("is not ECMA-262 syntax" in err["message"], err["message"])
    r = w.gw.chat(chat_body("answer", response_format=rf({"pattern": "(unclosed"})))
    eq(r.status, 400, "status (%r)" % r)
    eq(r.json()["error"]["param"], "response_format")
    check("missing ')'" in r.json()["error"]["message"], r.json()["error"]["message"])
    eq(w.mock.requests(), [], "nothing went upstream")
    # A non-strict tool's schema is never checked against answers: not refused.
    tools[0]["function"]["strict"] = False
    r = w.gw.chat(chat_body("call f", tools=tools))
    eq(r.status, 200, "non-strict tool (%r)" % r)


@test
def schema_limits_are_configurable(w):
    """validation.max_schema_nodes from the config; the route dry run does
    not look at schemas."""
    try:
        w.start(validation={"max_schema_nodes": 20})
        small = rf({"type": "object", "properties": {"a": {"type": "string"}}})
        big = rf({"type": "object", "properties": {"n": {"enum": list(range(25))}}})
        w.mock.script({"content_json": {"a": "x"}}, model="gpt-cheap")
        eq(w.gw.chat(chat_body("q", response_format=small)).status, 200, "small schema")
        r = w.gw.chat(chat_body("q", response_format=big))
        eq(r.status, 400, "big schema (%r)" % r)
        check("more than 20 JSON values" in r.json()["error"]["message"], r.json()["error"]["message"])
        r = w.gw.req("POST", "/v1/route", chat_body("q", response_format=big))
        eq(r.status, 200, "/v1/route (%r)" % r)
    finally:
        w.start()
