# SPDX-License-Identifier: MIT
"""The cascade (issue 4): validate every answer, escalate cheap -> medium ->
expensive, same-tier fallback, the per-model circuit breaker, streams that
are validated before they are sent, and the headers, decision line and
metrics that say what happened. Every test asserts on what the mock upstream
actually received, in order.

The shared world runs with the breaker rules switched off, so that tests
which make a model fail cannot trip its breaker for the tests after them;
the breaker tests restart the gateway with their own breaker settings (and
restore the shared config at the end)."""
import functools
import json
import socket
import threading
import time

from harness import World, check, eq, test, wait_for, chat_body

ADMIN = "cascade-admin-key-0123456789"
NO_TRIP = {"failure_threshold": 0, "failure_ratio": 0}
HEDGE_TEXT = "I'm not sure"


class CascadeWorld(World):
    """The standard world, always started with an admin key."""

    def start(self, env=None, **over):
        e = {"TIERGATE_ADMIN_KEY": ADMIN}
        e.update(env or {})
        return super().start(env=e, **over)


WORLD = lambda: CascadeWorld(breaker=NO_TRIP)  # noqa: E731


# --- helpers -----------------------------------------------------------------

def restores(fn):
    """For a test that restarts the gateway with its own config: the shared
    config is back afterwards, whether the test passed or not."""
    @functools.wraps(fn)
    def run(w):
        try:
            fn(w)
        finally:
            w.start()
    return run


_counter = [0]


def uniq(text="hello"):
    """A prompt no earlier request used, so the cache never answers for the ladder."""
    _counter[0] += 1
    return "%s (#%d)" % (text, _counter[0])


def ask(w, body=None, headers=None, **fields):
    b = dict(body) if body else chat_body(uniq())
    b.update(fields)
    return w.gw.req("POST", "/v1/chat/completions", b, headers)


def seen(w):
    """Upstream model names the mock received, oldest first."""
    return [r["model"] for r in w.mock.requests()]


def sent_bodies(w):
    return [json.loads(r["body"]) for r in w.mock.requests()]


def decision(w, r):
    return w.gw.decision(r)


def attempts(d):
    return [(a["model"], a["outcome"], a["reason"]) for a in d["attempts"]]


def esc(m, frm, to, reason):
    return m.get('tiergate_escalations_total{from="%s",to="%s",reason="%s"}' % (frm, to, reason), 0.0)


def fallback(m, tier, reason):
    return m.get('tiergate_fallbacks_total{tier="%s",reason="%s"}' % (tier, reason), 0.0)


def upstream(m, model, outcome):
    return m.get('tiergate_upstream_requests_total{model="%s",outcome="%s"}' % (model, outcome), 0.0)


def all_escalations(m):
    return sum(v for k, v in m.items() if k.startswith("tiergate_escalations_total{"))


def all_fallbacks(m):
    return sum(v for k, v in m.items() if k.startswith("tiergate_fallbacks_total{"))


def expect_answer(r, model, tier, escalations):
    eq(r.status, 200, "status (%r)" % r)
    eq(r.meta("x-tiergate-model"), model, "x-tiergate-model")
    eq(r.meta("x-tiergate-tier"), tier, "x-tiergate-tier")
    eq(r.meta("x-tiergate-escalations"), str(escalations), "x-tiergate-escalations")


def admin(w, path="/admin/breakers"):
    r = w.gw.req("GET", path, headers={"authorization": "Bearer " + ADMIN})
    eq(r.status, 200, "admin %s: %r" % (path, r))
    return r.json()


def breaker(w, model):
    for b in admin(w)["breakers"]:
        if b["model"] == model:
            return b
    raise AssertionError("no breaker for " + model)


def model_cfg(w, name, **over):
    return dict(w.config()["models"][name], **over)


def retry_after(r):
    v = r.header("retry-after")
    check(v is not None and v.isdigit(), "Retry-After is a number of seconds: %r" % v)
    return int(v)


def escalate_one(w, reason, outcome, action, body=None, answer=None, mid_action=None):
    """cheap misbehaves once with `action`; medium answers. Checks the
    ladder, the headers, the decision line and the metrics; returns the
    client's response."""
    before = w.gw.metrics()
    if mid_action:
        w.mock.script(mid_action, model="gpt-mid")
    w.mock.script(action, model="gpt-cheap")
    r = ask(w, body or chat_body(uniq("what is six times seven")))
    expect_answer(r, "mid", "medium", 1)
    eq(seen(w), ["gpt-cheap", "gpt-mid"], "upstream calls in order")
    d = decision(w, r)
    eq(attempts(d), [("mini", outcome, reason), ("mid", "ok", None)], "attempts")
    eq(d["escalations"], 1, "decision escalations")
    eq(d["final_model"], "mid")
    after = w.gw.metrics()
    eq(esc(after, "cheap", "medium", reason) - esc(before, "cheap", "medium", reason), 1.0,
       "escalation metric cheap->medium " + reason)
    eq(all_escalations(after) - all_escalations(before), 1.0, "exactly one escalation counted")
    eq(all_fallbacks(after) - all_fallbacks(before), 0.0, "no same-tier fallback counted")
    eq(upstream(after, "mini", outcome) - upstream(before, "mini", outcome), 1.0, "mini " + outcome)
    eq(upstream(after, "mid", "ok") - upstream(before, "mid", "ok"), 1.0, "mid ok")
    if answer is not None:
        eq(r.json()["choices"][0]["message"].get("content"), answer, "the medium answer")
    return r


# --- each escalation reason on its own ----------------------------------------

@test
def hedging_escalates(w):
    r = escalate_one(w, "hedging", "invalid", {"hedge": True}, answer="Hello from gpt-mid")
    check(HEDGE_TEXT not in r.body.decode(), "nothing of the cheap answer reaches the client")


@test
def empty_content_escalates(w):
    escalate_one(w, "empty", "invalid", {"empty": True}, answer="Hello from gpt-mid")


@test
def json_object_with_prose_escalates(w):
    body = chat_body(uniq("give me a JSON object"), response_format={"type": "json_object"})
    r = escalate_one(w, "json_object", "invalid", {"content": "Sure! Here it is: {\"a\": 1}"},
                     body=body, mid_action={"content_json": {"a": 1}})
    eq(json.loads(r.json()["choices"][0]["message"]["content"]), {"a": 1})


SCHEMA_RF = {"type": "json_schema", "json_schema": {"name": "answer", "strict": True, "schema": {
    "type": "object", "properties": {"answer": {"type": "integer"}},
    "required": ["answer"], "additionalProperties": False}}}


@test
def json_schema_mismatch_escalates(w):
    body = chat_body(uniq("answer as JSON"), response_format=SCHEMA_RF)
    r = escalate_one(w, "json_schema", "invalid", {"content_json": {"answer": "forty-two"}},
                     body=body, mid_action={"content_json": {"answer": 42}})
    eq(json.loads(r.json()["choices"][0]["message"]["content"]), {"answer": 42})


TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {
    "type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}]


@test
def unparseable_tool_arguments_escalate(w):
    body = chat_body(uniq("look it up"), tools=TOOLS)
    r = escalate_one(w, "tool_args", "invalid", {"tool_calls": [{"name": "lookup", "arguments": "{not json"}]},
                     body=body, mid_action={"tool_calls": [{"name": "lookup", "arguments": "{\"q\":\"x\"}"}]})
    tc = r.json()["choices"][0]["message"]["tool_calls"]
    eq(tc[0]["function"]["arguments"], "{\"q\":\"x\"}", "the medium tool call")


@test
def malformed_body_escalates(w):
    escalate_one(w, "malformed", "invalid", {"body": "{\"choices\": [oops"}, answer="Hello from gpt-mid")


@test
def http_5xx_moves_up(w):
    escalate_one(w, "http_5xx", "http_5xx", {"status": 500, "error": {"message": "boom"}},
                 answer="Hello from gpt-mid")


@test
def http_429_moves_up(w):
    r = escalate_one(w, "http_429", "http_429", {"status": 429, "headers": {"retry-after": "1"}},
                     answer="Hello from gpt-mid")
    eq(r.header("retry-after"), None, "a served answer carries no Retry-After")


@test
@restores
def timeout_moves_up(w):
    w.start(models={"mini": model_cfg(w, "mini", first_byte_timeout_ms=400)})
    t0 = time.time()
    escalate_one(w, "timeout", "timeout", {"stall": "before_headers"}, answer="Hello from gpt-mid")
    check(time.time() - t0 < 4, "answered soon after the cheap timeout")
    wait_for(lambda: w.mock.stats()["aborted"] >= 1, 3, msg="the stalled call closed")


@test
def transport_reset_moves_up(w):
    escalate_one(w, "transport", "transport", {"reset": "before_headers"}, answer="Hello from gpt-mid")
    w.mock.reset()
    escalate_one(w, "transport", "transport", {"reset": "mid_body"}, answer="Hello from gpt-mid")


CONTEXT_ERR = {"status": 400, "error": {
    "message": "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.",
    "type": "invalid_request_error", "code": "context_length_exceeded"}}


@test
def context_length_moves_up(w):
    escalate_one(w, "context_length", "context_length", CONTEXT_ERR, answer="Hello from gpt-mid")
    # On the last tier nothing bigger is left: the 400 goes back as it came.
    w.mock.reset()
    w.mock.script(CONTEXT_ERR, model="gpt-large")
    r = ask(w, model="large")
    eq(r.status, 400)
    eq(r.json()["error"]["code"], "context_length_exceeded")
    eq(seen(w), ["gpt-large"])


@test
def other_400_is_returned_as_is(w):
    before = w.gw.metrics()
    err = {"status": 400, "error": {"message": "bad param foo", "type": "invalid_request_error",
                                     "code": "invalid_value", "param": "foo"}}
    w.mock.script(err, model="gpt-cheap")
    r = ask(w, model="cheap")
    eq(r.status, 400)
    e = r.json()["error"]
    eq((e["message"], e["code"], e["param"]), ("bad param foo", "invalid_value", "foo"), "provider's body")
    eq(seen(w), ["gpt-cheap"], "no other model tried")
    eq(r.header("x-tiergate-escalations"), "0")
    eq(attempts(decision(w, r)), [("mini", "http_4xx", None)])
    after = w.gw.metrics()
    eq(all_escalations(after) - all_escalations(before), 0.0, "no escalation counted")
    eq(upstream(after, "mini", "http_4xx") - upstream(before, "mini", "http_4xx"), 1.0)


# --- logprob confidence --------------------------------------------------------

@test
@restores
def logprobs_requested_checked_and_stripped(w):
    w.start(validation={"logprobs": {"request": True, "min_mean_prob": 0.5}})
    # Low mean probability at cheap -> medium.
    w.mock.script({"content": "Paris is the capital", "logprobs": [-4.0, -5.5, -6.0, -3.2]}, model="gpt-cheap")
    r = ask(w, model="cheap")
    expect_answer(r, "mid", "medium", 1)
    eq(seen(w), ["gpt-cheap", "gpt-mid"])
    b = sent_bodies(w)
    eq(b[0].get("logprobs"), True, "the gateway asked cheap for logprobs")
    eq(b[1].get("logprobs"), True, "and medium (not final either)")
    eq(attempts(decision(w, r)), [("mini", "invalid", "low_confidence"), ("mid", "ok", None)])
    eq(r.json()["choices"][0]["logprobs"], None, "client did not ask: no logprobs")
    # A confident cheap answer is accepted, and its logprobs are stripped.
    w.mock.reset()
    w.mock.script({"content": "Paris", "logprobs": [-0.01, -0.02, -0.05]}, model="gpt-cheap")
    r = ask(w, chat_body(uniq("capital of France, confident")))
    expect_answer(r, "mini", "cheap", 0)
    eq(r.json()["choices"][0]["logprobs"], None, "stripped from the answer")
    raw = w.mock.requests()[0]["body"]
    check('"logprobs":true' in raw, "added to the upstream body: " + raw)
    def cached_mini():
        for k in w.redis.cmd("KEYS", "tiergate:v1:*"):
            if k.endswith(":lock"):
                continue  # the single-flight lock, until the answer is stored
            e = json.loads(w.redis.cmd("GET", k))
            if e["model"] == "mini":
                return e
        return None
    entry = wait_for(cached_mini, 3, msg="the cheap answer cached")
    eq(entry["completion"]["choices"][0]["message"]["content"], "Paris")
    eq(entry["completion"]["choices"][0]["logprobs"], None, "the cache holds no logprobs")
    # Streams too: judged on the rebuilt answer, sent without the logprobs.
    w.mock.reset()
    w.mock.script({"content": "Lyon maybe", "chunk_chars": 5, "logprobs": [-4.0, -3.0, -5.0]}, model="gpt-cheap")
    w.mock.script({"content": "Paris, certainly", "chunk_chars": 5, "logprobs": [-0.01, -0.02, -0.01]},
                  model="gpt-mid")
    r = ask(w, model="cheap", stream=True)
    expect_answer(r, "mid", "medium", 1)
    ev = r.events()
    eq(stream_text(ev), "Paris, certainly")
    eq(ev[-1], "[DONE]")
    check(all(e["choices"][0].get("logprobs") is None for e in ev[:-1] if e["choices"]), "no logprobs in the stream")
    check(b"Lyon" not in r.body)
    eq([b.get("logprobs") for b in sent_bodies(w)], [True, True])
    # The last tier is never asked.
    w.mock.reset()
    eq(ask(w, chat_body(uniq("pinned"), model="large")).status, 200)
    check("logprobs" not in sent_bodies(w)[0], "final tier: no logprobs added")
    # A client that asked itself keeps them.
    w.mock.reset()
    w.mock.script({"content": "Paris", "logprobs": [-0.01, -0.02]}, model="gpt-cheap")
    r = ask(w, chat_body(uniq("client asks for logprobs"), logprobs=True))
    expect_answer(r, "mini", "cheap", 0)
    lp = r.json()["choices"][0]["logprobs"]["content"]
    eq([t["logprob"] for t in lp], [-0.01, -0.02], "client's logprobs kept")


@test
def client_logprobs_judged_without_request_flag(w):
    # Default config (request: false): only answers that carry logprobs are judged.
    w.mock.script({"content": "maybe", "logprobs": [-3.0, -4.0]}, model="gpt-cheap")
    r = ask(w, chat_body(uniq("unsure?"), logprobs=True))
    expect_answer(r, "mid", "medium", 1)
    eq(sent_bodies(w)[0].get("logprobs"), True, "client's own flag forwarded")
    eq(attempts(decision(w, r))[0], ("mini", "invalid", "low_confidence"))
    w.mock.reset()
    w.mock.script({"content": "maybe"}, model="gpt-cheap")
    r = ask(w, chat_body(uniq("not asking")))
    expect_answer(r, "mini", "cheap", 0)
    check("logprobs" not in sent_bodies(w)[0], "default config adds nothing")


# --- same-tier fallback, never downgrade, the caps ---------------------------

@test
@restores
def same_tier_fallback_on_another_provider(w):
    cfg = w.config()
    p2 = dict(cfg["models"]["mini"], base_url="http://127.0.0.1:%d/p2/v1" % w.mock.port)
    w.start(models={"mini2": p2}, tiers={"cheap": ["mini", "mini2"], "medium": ["mid"], "expensive": ["large"]})
    before = w.gw.metrics()
    w.mock.script({"status": 500}, model="gpt-cheap", path_prefix="/v1/")
    r = ask(w, model="cheap")
    expect_answer(r, "mini2", "cheap", 0)
    eq([(x["path"], x["model"]) for x in w.mock.requests()],
       [("/v1/chat/completions", "gpt-cheap"), ("/p2/v1/chat/completions", "gpt-cheap")], "same tier first")
    d = decision(w, r)
    eq(attempts(d), [("mini", "http_5xx", "http_5xx"), ("mini2", "ok", None)])
    eq(d["escalations"], 0)
    after = w.gw.metrics()
    eq(fallback(after, "cheap", "http_5xx") - fallback(before, "cheap", "http_5xx"), 1.0, "fallback metric")
    eq(all_escalations(after) - all_escalations(before), 0.0, "a fallback is not an escalation")
    # A bad answer is not retried on the same tier: straight up to medium.
    w.mock.reset()
    w.mock.script({"hedge": True}, model="gpt-cheap")
    r = ask(w, model="cheap")
    expect_answer(r, "mid", "medium", 1)
    eq([x["path"] for x in w.mock.requests()], ["/v1/chat/completions", "/v1/chat/completions"])
    eq(seen(w), ["gpt-cheap", "gpt-mid"], "mini2 skipped after a bad answer")


@test
def never_downgrades(w):
    for start in ("medium", "mid"):
        w.mock.reset()
        w.mock.script({"status": 503}, model="gpt-mid")
        r = ask(w, model=start)
        expect_answer(r, "large", "expensive", 1)
        eq(seen(w), ["gpt-mid", "gpt-large"], start)
    w.mock.reset()
    w.mock.script({"hedge": True}, model="gpt-mid")
    w.mock.script({"status": 500}, model="gpt-large")
    r = ask(w, model="medium")
    eq(r.status, 502, "medium and expensive failed: %r" % r)
    eq(seen(w), ["gpt-mid", "gpt-large"], "cheap is never tried")
    eq(attempts(decision(w, r)), [("mid", "invalid", "hedging"), ("large", "http_5xx", "http_5xx")])
    eq(set(r.json()["error"]), {"message", "type", "param", "code"})


@test
def model_id_starts_the_ladder_at_that_model(w):
    # A configured model id is a starting point, not a pin: it escalates like
    # its tier. Only a model on the last tier (here "large") has no ladder.
    w.mock.script({"hedge": True}, model="gpt-cheap")
    r = ask(w, model="mini")
    expect_answer(r, "mid", "medium", 1)
    eq(seen(w), ["gpt-cheap", "gpt-mid"])
    w.mock.reset()
    w.mock.script({"status": 500}, model="gpt-large")
    r = ask(w, model="large")
    eq(r.status, 502)
    eq(seen(w), ["gpt-large"], "the last tier has nowhere to go")


@test
@restores
def max_escalations_limits_the_ladder(w):
    w.start(cascade={"max_escalations": 1})
    w.mock.script({"hedge": True}, model="gpt-cheap")
    w.mock.script({"hedge": True}, model="gpt-mid")
    r = ask(w, model="cheap")
    expect_answer(r, "mid", "medium", 1)
    check(HEDGE_TEXT in r.json()["choices"][0]["message"]["content"], "medium is final: its answer stands")
    eq(seen(w), ["gpt-cheap", "gpt-mid"], "expensive out of reach")
    eq(attempts(decision(w, r)), [("mini", "invalid", "hedging"), ("mid", "ok", None)])
    # A structurally bad answer on the final tier is sent (nothing left) but never cached.
    w.mock.reset()
    w.mock.script({"status": 500}, model="gpt-cheap")
    w.mock.script({"empty": True}, model="gpt-mid")
    empty = chat_body(uniq("empty at the top"))
    r = ask(w, empty)
    expect_answer(r, "mid", "medium", 1)
    eq(r.json()["choices"][0]["message"]["content"], "", "the final tier's answer, as it came")
    eq(attempts(decision(w, r)), [("mini", "http_5xx", "http_5xx"), ("mid", "invalid", None)])
    w.mock.reset()
    r = ask(w, empty)
    eq(r.header("x-tiergate-cache"), "miss", "an invalid answer is not cached")
    expect_answer(r, "mini", "cheap", 0)
    w.mock.reset()
    w.mock.script({"status": 500}, model="gpt-cheap")
    w.mock.script({"status": 500}, model="gpt-mid")
    eq(ask(w, chat_body(uniq("all fail"))).status, 502)
    eq(seen(w), ["gpt-cheap", "gpt-mid"])
    w.start(cascade={"max_escalations": 0})
    w.mock.reset()
    w.mock.script({"hedge": True}, model="gpt-cheap")
    r = ask(w, model="cheap")
    expect_answer(r, "mini", "cheap", 0)
    eq(seen(w), ["gpt-cheap"], "no escalation at all")


@test
def max_tier_header_caps_the_ladder(w):
    w.mock.script({"hedge": True}, model="gpt-cheap")
    w.mock.script({"hedge": True}, model="gpt-mid")
    r = ask(w, model="cheap", headers={"x-tiergate-max-tier": "medium"})
    expect_answer(r, "mid", "medium", 1)
    eq(seen(w), ["gpt-cheap", "gpt-mid"], "expensive never called")
    w.mock.reset()
    w.mock.script({"status": 500}, model="gpt-cheap")
    r = ask(w, chat_body(uniq("cap at cheap")), headers={"x-tiergate-max-tier": "cheap"})
    eq(r.status, 502)
    eq(seen(w), ["gpt-cheap"])
    w.mock.reset()
    r = ask(w, model="auto", headers={"x-tiergate-max-tier": "cheap"})
    expect_answer(r, "mini", "cheap", 0)
    eq(seen(w), ["gpt-cheap"], "auto never starts above the cap")
    w.mock.reset()
    for model, cap in (("cheap", "gold"), ("cheap", ""), ("large", "medium"), ("expensive", "cheap"),
                       ("mid", "cheap")):
        r = ask(w, model=model, headers={"x-tiergate-max-tier": cap})
        eq(r.status, 400, "model %s under cap %r" % (model, cap))
        e = r.json()["error"]
        eq(e["type"], "invalid_request_error")
    eq(seen(w), [], "nothing reached upstream")


@test
@restores
def retry_note_tells_the_next_model_what_was_wrong(w):
    body = chat_body(uniq("give me a JSON object"), response_format={"type": "json_object"})
    original = body["messages"]
    w.mock.script({"content": "SECRET-PROSE-42 not json"}, model="gpt-cheap")
    w.mock.script({"content_json": {"ok": True}}, model="gpt-mid")
    r = ask(w, body)
    expect_answer(r, "mid", "medium", 1)
    b = sent_bodies(w)
    eq(b[0]["messages"], original, "the first attempt is untouched")
    eq(b[1]["messages"][:-1], original, "the conversation is kept")
    note = b[1]["messages"][-1]
    eq(note["role"], "system")
    check("json_object" in note["content"], "names the failed check: " + note["content"])
    check("SECRET-PROSE-42" not in note["content"], "never quotes the rejected answer")
    eq(b[1]["response_format"], {"type": "json_object"}, "the rest of the body is forwarded")
    # Transport failures say nothing about the answer: no note.
    w.mock.reset()
    w.mock.script({"status": 500}, model="gpt-cheap")
    plain = chat_body(uniq("no note after a 500"))
    ask(w, plain)
    eq(sent_bodies(w)[1]["messages"], plain["messages"])
    w.start(cascade={"retry_with_context": False})
    w.mock.reset()
    body = chat_body(uniq("JSON again"), response_format={"type": "json_object"})
    w.mock.script({"content": "not json"}, model="gpt-cheap")
    w.mock.script({"content_json": {"ok": True}}, model="gpt-mid")
    r = ask(w, body)
    expect_answer(r, "mid", "medium", 1)
    eq(sent_bodies(w)[1]["messages"], body["messages"], "retry_with_context off: no note")


@test
def escalation_sequence_metrics_cost_and_decision(w):
    before = w.gw.metrics()
    w.mock.script({"status": 502}, model="gpt-cheap")
    w.mock.script({"hedge": True}, model="gpt-mid")
    r = ask(w, model="cheap")
    expect_answer(r, "large", "expensive", 2)
    eq(seen(w), ["gpt-cheap", "gpt-mid", "gpt-large"])
    d = decision(w, r)
    eq(attempts(d), [("mini", "http_5xx", "http_5xx"), ("mid", "invalid", "hedging"), ("large", "ok", None)])
    eq([a["tier"] for a in d["attempts"]], ["cheap", "medium", "expensive"])
    eq([a["status"] for a in d["attempts"]], [502, 200, 200])
    for a in d["attempts"]:
        check(a["latency_ms"] > 0, "latency recorded: %r" % a)
    check(d["attempts"][1]["completion_tokens"] > 0 and d["attempts"][1]["cost_usd"] > 0,
          "the rejected answer's usage and cost are recorded")
    total = sum(a["cost_usd"] for a in d["attempts"])
    check(abs(d["cost_usd"] - total) < 1e-7, "request cost = sum of attempts")
    check(abs(float(r.header("x-tiergate-cost-usd")) - total) < 1e-7, "x-tiergate-cost-usd includes failed attempts")
    after = w.gw.metrics()
    eq(esc(after, "cheap", "medium", "http_5xx") - esc(before, "cheap", "medium", "http_5xx"), 1.0)
    eq(esc(after, "medium", "expensive", "hedging") - esc(before, "medium", "expensive", "hedging"), 1.0)
    eq(all_escalations(after) - all_escalations(before), 2.0)
    for model, outcome in (("mini", "http_5xx"), ("mid", "invalid"), ("large", "ok")):
        eq(upstream(after, model, outcome) - upstream(before, model, outcome), 1.0, model + " " + outcome)
    # The last tier accepts a hedged answer: nothing dearer is left.
    w.mock.reset()
    w.mock.script({"hedge": True}, model="gpt-large")
    r = ask(w, model="large")
    expect_answer(r, "large", "expensive", 0)
    check(HEDGE_TEXT in r.json()["choices"][0]["message"]["content"])


# --- streams -------------------------------------------------------------------

def stream_text(events):
    return "".join((e["choices"][0]["delta"].get("content") or "")
                   for e in events if e != "[DONE]" and e.get("choices"))


@test
def stream_validated_then_streamed(w):
    w.mock.script({"hedge": True, "chunk_chars": 6}, model="gpt-cheap")
    w.mock.script({"content": "Forty-two, and here is why.", "chunk_chars": 5}, model="gpt-mid")
    r = ask(w, model="cheap", stream=True)
    expect_answer(r, "mid", "medium", 1)
    check(r.header("content-type").startswith("text/event-stream"))
    check(b"not sure" not in r.body and b"certain" not in r.body, "no cheap content leaked")
    ev = r.events()
    eq(ev[-1], "[DONE]", "ends with [DONE]")
    eq(stream_text(ev), "Forty-two, and here is why.")
    for e in ev[:-1]:
        eq(e["object"], "chat.completion.chunk")
        eq(e["model"], "gpt-mid", "every chunk from the medium answer")
    check(all("usage" not in e or e["usage"] is None for e in ev[:-1]), "no usage chunk the client did not ask for")
    eq(seen(w), ["gpt-cheap", "gpt-mid"])
    check(all(x["stream"] for x in w.mock.requests()), "upstream asked to stream")
    d = decision(w, r)
    eq(attempts(d), [("mini", "invalid", "hedging"), ("mid", "ok", None)])
    check(abs(float(r.meta("x-tiergate-cost-usd")) - d["cost_usd"]) < 1e-7,
          "a validated stream knows its cost (the rejected cheap answer included)")
    # A cheap stream that breaks half way is buffered, so the client never sees it.
    w.mock.reset()
    w.mock.script({"content": "partial cheap words here", "chunk_chars": 4, "reset": "mid_stream",
                   "after_chunks": 2}, model="gpt-cheap")
    r = ask(w, chat_body(uniq("break the cheap stream")), stream=True)
    expect_answer(r, "mid", "medium", 1)
    ev = r.events()
    eq(ev[-1], "[DONE]")
    eq(stream_text(ev), "Hello from gpt-mid")
    check(b"partial" not in r.body and b"error" not in r.body, "nothing of the broken stream")
    eq(attempts(decision(w, r))[0], ("mini", "transport", "transport"))
    # Up the ladder to the last tier, which streams live and breaks: headers
    # name the last tier, and nothing of the lower tiers is in the stream.
    w.mock.reset()
    w.mock.script({"hedge": True}, model="gpt-cheap")
    w.mock.script({"status": 500}, model="gpt-mid")
    w.mock.script({"content": "large words streaming", "chunk_chars": 6, "error_after": 2}, model="gpt-large")
    r = ask(w, model="cheap", stream=True)
    expect_answer(r, "large", "expensive", 2)
    ev = r.events()
    eq(stream_text(ev), "large words ")
    check("error" in ev[-1] and "[DONE]" not in ev, "error event last, no [DONE]")
    check(b"not sure" not in r.body, "no cheap content")
    eq(attempts(decision(w, r)), [("mini", "invalid", "hedging"), ("mid", "http_5xx", "http_5xx"),
                                  ("large", "http_5xx", None)])


def timed_stream(w, body):
    """Sends a stream request on a raw socket; returns (t_first_content, t_end, raw)."""
    data = json.dumps(body).encode()
    s = socket.create_connection(("127.0.0.1", w.gw.port), timeout=15)
    t0 = time.time()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
              b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(data), data))
    raw = b""
    first = None
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        raw += chunk
        if first is None and b'"content":"' in raw.split(b"\r\n\r\n", 1)[-1].replace(b'"content":""', b""):
            first = time.time() - t0
    s.close()
    return first, time.time() - t0, raw


@test
def stream_live_on_last_tier_buffered_below(w):
    # 10 content chunks, 11 gaps of 200 ms: the upstream stream lasts about 2.2 s.
    drip = {"content": "a" * 40, "chunk_chars": 4, "drip_ms": 200}
    w.mock.script(drip, model="gpt-large")
    first, end, raw = timed_stream(w, chat_body(uniq("live"), model="large", stream=True))
    check(first is not None and raw.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n"), "stream complete: %r" % raw[-200:])
    check(end > 1.8, "the stream took as long as upstream (%.2fs)" % end)
    check(first < end - 1.0, "first token long before the end (first %.2fs, end %.2fs)" % (first, end))
    check(b"x-tiergate-cost-usd" not in raw.split(b"\r\n\r\n", 1)[0].lower(), "live: cost not known yet")
    # Below the last tier the same stream is held until it is validated.
    w.mock.script(drip, model="gpt-cheap")
    first, end, raw = timed_stream(w, chat_body(uniq("buffered"), model="cheap", stream=True))
    check(first is not None and b"[DONE]" in raw, "stream complete")
    check(first > 1.8, "no content before the whole cheap answer was in (first %.2fs)" % first)
    check(b"x-tiergate-model: mini" in raw.lower(), "answered by cheap")


@test
@restores
def mid_stream_failure_on_last_tier_is_an_error_event(w):
    w.mock.script({"content": "one two three four five", "chunk_chars": 4, "error_after": 2}, model="gpt-large")
    r = ask(w, model="large", stream=True)
    eq(r.status, 200)
    ev = r.events()
    check(ev and ev[-1] != "[DONE]", "no [DONE] after a failure")
    errors = [e for e in ev if isinstance(e, dict) and "error" in e]
    eq(len(errors), 1, "exactly one error event (upstream's own, not doubled)")
    check(ev[-1] is errors[0], "the error is the last event")
    eq(stream_text(ev), "one two ", "what was streamed before the failure")
    d = decision(w, r)
    eq(attempts(d), [("large", "http_5xx", None)])
    eq([k for k in w.redis.cmd("KEYS", "tiergate:v1:*") if not k.endswith(":lock")], [],
       "an interrupted stream is not cached")
    # A stall mid-stream on the last tier: the idle timeout ends it with our own error event.
    w.start(models={"large": model_cfg(w, "large", idle_timeout_ms=400)})
    w.mock.script({"content": "x" * 40, "chunk_chars": 4, "stall": "mid_stream", "after_chunks": 2},
                  model="gpt-large")
    r = ask(w, model="large", stream=True)
    eq(r.status, 200)
    ev = r.events()
    check(ev[-1] != "[DONE]" and "error" in ev[-1], "error event last: %r" % ev[-3:])
    eq(ev[-1]["error"]["code"], "upstream_timeout", "the gateway's own error event")
    eq(set(ev[-1]["error"]), {"message", "type", "param", "code"})
    eq(attempts(decision(w, r)), [("large", "timeout", None)])


# --- the circuit breaker ----------------------------------------------------------

BRK = {"failure_threshold": 3, "failure_ratio": 0, "cooldown_ms": 800, "max_cooldown_ms": 60000}


def trip(w, model, upstream_model, n=3, action=None, headers=None):
    """n failures from the model's upstream, each on the last candidate."""
    w.mock.script(action or {"status": 500}, model=upstream_model, times=n)
    for _ in range(n):
        r = ask(w, model=model, headers=headers)
        check(r.status in (429, 502), "failing call: %r" % r)
    eq(len(w.mock.requests()), n, "all %d failures reached upstream" % n)


@test
@restores
def breaker_opens_after_k_failures_then_probe_closes(w):
    w.start(breaker=BRK)
    before = w.gw.metrics()
    trip(w, "large", "gpt-large")
    b = breaker(w, "large")
    eq((b["state"], b["trips"]), ("open", 1), "open after 3 failures")
    check(0 < b["retry_in_ms"] <= 800, "cooldown: %r" % b)
    # Shared by the shards: whichever shard a connection lands on, no call goes out.
    for _ in range(6):
        r = ask(w, model="large")
        eq(r.status, 503, "breaker open: %r" % r)
        check(retry_after(r) >= 1)
        eq(set(r.json()["error"]), {"message", "type", "param", "code"})
    eq(len(w.mock.requests()), 3, "the mock saw no call while open")
    eq(attempts(decision(w, r)), [("large", "breaker_open", "breaker_open")])
    # With an admin key configured, the per-model detail is the admin's (issue 21 F6).
    ready = w.gw.req("GET", "/readyz", headers={"authorization": "Bearer " + ADMIN})
    eq(ready.status, 503, "not ready: the expensive tier has no usable model")
    eq(ready.json()["tiers"]["expensive"]["available"], False)
    eq(ready.json()["tiers"]["cheap"]["available"], True)
    m = w.gw.metrics()
    eq(m['tiergate_breaker_state{model="large"}'], 2.0)
    eq(m['tiergate_breaker_state{model="mini"}'], 0.0)
    eq(upstream(m, "large", "breaker_open") - upstream(before, "large", "breaker_open"), 6.0)
    eq(w.gw.req("GET", "/admin/breakers").status, 401, "admin key required")
    # After the cooldown: half-open (readiness does not wait for traffic), one probe closes it.
    wait_for(lambda: breaker(w, "large")["state"] == "half_open", 5, msg="half-open after the cooldown")
    eq(w.gw.req("GET", "/readyz").status, 200, "half-open counts as available")
    eq(w.gw.metrics()['tiergate_breaker_state{model="large"}'], 1.0)
    r = ask(w, model="large")
    expect_answer(r, "large", "expensive", 0)
    eq(len(w.mock.requests()), 4, "the probe went out")
    b = breaker(w, "large")
    eq((b["state"], b["trips"], b["consecutive_failures"]), ("closed", 0, 0), "probe success closes")
    eq(w.gw.metrics()['tiergate_breaker_state{model="large"}'], 0.0)
    eq(ask(w, model="large").status, 200)


@test
@restores
def half_open_admits_one_probe_and_failure_doubles_cooldown(w):
    w.start(breaker=BRK)
    trip(w, "large", "gpt-large")
    wait_for(lambda: breaker(w, "large")["state"] == "half_open", 5, msg="half-open")
    w.mock.script({"status": 500, "delay_ms": 1500}, model="gpt-large")
    out = {}
    probe = threading.Thread(target=lambda: out.setdefault("r", ask(w, model="large")))
    probe.start()
    wait_for(lambda: w.mock.stats()["active"] >= 1, 3, msg="probe in flight")
    res = []
    others = [threading.Thread(target=lambda: res.append(ask(w, model="large"))) for _ in range(4)]
    for t in others:
        t.start()
    for t in others:
        t.join(10)
    eq(sorted(r.status for r in res), [503] * 4, "refused while the probe is out")
    for r in res:
        check(retry_after(r) >= 1)
    eq(len(w.mock.requests()), 4, "only the probe reached the mock")
    probe.join(10)
    eq(out["r"].status, 502, "the probe failed")
    b = breaker(w, "large")
    eq((b["state"], b["trips"]), ("open", 2), "probe failure reopens")
    check(b["retry_in_ms"] > 800, "second cooldown doubled past 800 ms: %r" % b)
    check(b["retry_in_ms"] <= 1600, "and no longer than 1600 ms: %r" % b)
    eq(ask(w, model="large").status, 503)
    eq(len(w.mock.requests()), 4)
    wait_for(lambda: breaker(w, "large")["state"] == "half_open", 5, msg="half-open again")
    eq(ask(w, model="large").status, 200, "second probe succeeds")
    eq(breaker(w, "large")["state"], "closed")


@test
@restores
def rate_limit_retry_after_is_honoured(w):
    w.start(breaker=dict(BRK, cooldown_ms=200))
    trip(w, "large", "gpt-large", action={"status": 429, "headers": {"retry-after": "4"}})
    b = breaker(w, "large")
    eq(b["state"], "open")
    check(b["retry_in_ms"] > 2500, "open at least as long as Retry-After (4 s), not 200 ms: %r" % b)
    time.sleep(0.3)  # past the configured cooldown: still open because of Retry-After
    r = ask(w, model="large")
    eq(r.status, 503)
    check(retry_after(r) >= 3, "Retry-After passed on: %r" % r.header("retry-after"))
    eq(len(w.mock.requests()), 3)
    # RFC 9110 10.2.3: a 503 with Retry-After says how long the service expects to be down.
    w.mock.reset()
    trip(w, "mid", "gpt-mid", action={"status": 503, "headers": {"retry-after": "4"}},
         headers={"x-tiergate-max-tier": "medium"})
    b = breaker(w, "mid")
    eq(b["state"], "open")
    check(b["retry_in_ms"] > 2500, "a 503's Retry-After is honoured too: %r" % b)


@test
@restores
def open_cheap_breaker_is_skipped(w):
    w.start(breaker=BRK)
    w.mock.script({"status": 500}, model="gpt-cheap", times=3)
    for _ in range(3):
        expect_answer(ask(w, model="cheap"), "mid", "medium", 1)
    eq(breaker(w, "mini")["state"], "open")
    before = w.gw.metrics()
    w.mock.reset()
    r = ask(w, model="cheap")
    expect_answer(r, "mid", "medium", 1)
    eq(seen(w), ["gpt-mid"], "cheap skipped, never called")
    d = decision(w, r)
    eq(attempts(d), [("mini", "breaker_open", "breaker_open"), ("mid", "ok", None)])
    eq(d["escalations"], 1)
    after = w.gw.metrics()
    eq(upstream(after, "mini", "breaker_open") - upstream(before, "mini", "breaker_open"), 1.0)
    eq(esc(after, "cheap", "medium", "breaker_open") - esc(before, "cheap", "medium", "breaker_open"), 1.0,
       "the skip is counted as an escalation")
    r = w.gw.req("GET", "/readyz", headers={"authorization": "Bearer " + ADMIN})
    eq(r.status, 503)
    eq(r.json()["tiers"]["cheap"]["available"], False)
    # Cheap skipped, the others fail: a breaker is part of why, so 503 + Retry-After.
    w.mock.reset()
    w.mock.script({"status": 500}, model="gpt-mid")
    w.mock.script({"status": 500}, model="gpt-large")
    r = ask(w, model="cheap")
    eq(r.status, 503, "skipped or failed, breakers involved: %r" % r)
    check(retry_after(r) >= 1)
    eq(seen(w), ["gpt-mid", "gpt-large"])


@test
@restores
def all_candidates_open_is_503_with_retry_after(w):
    w.start(breaker=BRK)
    for up in ("gpt-cheap", "gpt-mid", "gpt-large"):
        w.mock.script({"status": 500}, model=up, times=3)
    for _ in range(3):
        r = ask(w, model="cheap")
        eq(r.status, 502, "every candidate failed, no breaker open yet: %r" % r)
        eq(r.json()["error"]["code"], "upstream_failed")
        eq(r.header("retry-after"), None)
    eq(len(w.mock.requests()), 9)
    for m in ("mini", "mid", "large"):
        eq(breaker(w, m)["state"], "open", m)
    r = ask(w, model="cheap")
    eq(r.status, 503)
    eq(retry_after(r), 1, "Retry-After from the shortest remaining cooldown (under 800 ms)")
    eq(set(r.json()["error"]), {"message", "type", "param", "code"})
    eq(r.json()["error"]["code"], "all_breakers_open")
    eq(len(w.mock.requests()), 9, "no call went out")
    eq(attempts(decision(w, r)), [(m, "breaker_open", "breaker_open") for m in ("mini", "mid", "large")])
    eq(w.gw.req("GET", "/readyz").status, 503)


@test
@restores
def weak_answers_do_not_trip_the_breaker_garbage_does(w):
    w.start(breaker=BRK)
    w.mock.script({"hedge": True}, model="gpt-cheap", times=4)
    for _ in range(4):
        expect_answer(ask(w, model="cheap"), "mid", "medium", 1)
    b = breaker(w, "mini")
    eq((b["state"], b["consecutive_failures"]), ("closed", 0), "a hedged answer is not the provider's fault")
    w.mock.script({"body": "<html>502 Bad Gateway</html>"}, model="gpt-cheap", times=3)
    for _ in range(3):
        expect_answer(ask(w, model="cheap"), "mid", "medium", 1)
    eq(breaker(w, "mini")["state"], "open", "three garbled 200s open it")
    w.mock.reset()
    expect_answer(ask(w, model="cheap"), "mid", "medium", 1)
    eq(seen(w), ["gpt-mid"])


@test
@restores
def failure_ratio_over_the_window_opens(w):
    w.start(breaker={"failure_threshold": 0, "failure_ratio": 0.5, "min_requests": 6, "window_ms": 30000,
                     "cooldown_ms": 5000})
    for i in range(6):  # ok, fail, ok, fail, ok, fail: judged when a failure comes in
        if i % 2 == 1:
            w.mock.script({"status": 500}, model="gpt-large")
        eq(ask(w, model="large").status, 502 if i % 2 else 200)
        if i < 5:
            eq(breaker(w, "large")["state"], "closed", "below min_requests after %d" % (i + 1))
    b = breaker(w, "large")
    eq((b["state"], b["window_requests"], b["window_failures"]), ("open", 6, 3),
       "3 of 6 failed, never two in a row: %r" % b)
    eq(ask(w, model="large").status, 503)
    eq(len(w.mock.requests()), 6)


@test
@restores
def lost_probe_frees_the_half_open_slot(w):
    w.start(breaker=BRK)
    trip(w, "large", "gpt-large")
    wait_for(lambda: breaker(w, "large")["state"] == "half_open", 5, msg="half-open")
    w.mock.script({"delay_ms": 5000}, model="gpt-large")
    s = socket.create_connection(("127.0.0.1", w.gw.port))
    body = json.dumps(chat_body(uniq("probe that goes away"), model="large")).encode()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    wait_for(lambda: w.mock.stats()["active"] >= 1, 3, msg="probe in flight")
    s.close()
    wait_for(lambda: w.mock.stats()["aborted"] >= 1, 3, msg="probe cancelled upstream")
    r = ask(w, model="large")
    expect_answer(r, "large", "expensive", 0)
    eq(len(w.mock.requests()), 5, "a new probe was admitted at once")
    eq(breaker(w, "large")["state"], "closed")


@test
@restores
def breaker_state_survives_a_reload(w):
    w.start(breaker=BRK)
    trip(w, "large", "gpt-large")
    eq(breaker(w, "large")["state"], "open")
    cfg = w.config(breaker=dict(BRK, cooldown_ms=60000, max_cooldown_ms=120000))
    cfg["models"]["extra"] = dict(cfg["models"]["mini"], upstream_model="gpt-extra")
    w.gw.reload(cfg)
    wait_for(lambda: w.gw.req("GET", "/v1/models/extra").status == 200, 3, msg="reload")
    eq(breaker(w, "large")["state"], "open", "a reload does not reset the breakers")
    eq(ask(w, model="large").status, 503)
    eq(len(w.mock.requests()), 3)
