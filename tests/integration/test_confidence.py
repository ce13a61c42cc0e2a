# SPDX-License-Identifier: MIT
"""Confidence beyond form (issue 20): the verifier and self-consistency at
the accept seam. A low verifier score escalates (reason low_confidence), a
high one does not and says so in x-tiergate-confidence; a verifier that
fails or answers garbage never breaks a request (fail-open, counted); the
verifier's cost is part of the request's cost; disagreeing samples escalate
(reason inconsistent) and the extra choices the gateway asked for never
reach the client. Every test checks what the mock actually received."""
import functools
import json

from harness import World, check, eq, test, wait_for

NO_TRIP = {"failure_threshold": 0, "failure_ratio": 0}
USAGE = {"prompt_tokens": 1000, "completion_tokens": 500}
V_USAGE = {"prompt_tokens": 2000, "completion_tokens": 20}
# Prices per 1M tokens: mini 0.15/0.60, mid 0.40/1.60, large 2.50/10.00, judge 1.00/2.00.
COST = {"mini": 1000 * 0.15e-6 + 500 * 0.60e-6, "mid": 1000 * 0.40e-6 + 500 * 1.60e-6,
        "judge": 2000 * 1.00e-6 + 20 * 2.00e-6}
VERIFIER = {"model": "judge", "min_score": 7, "tiers": ["cheap"]}


class ConfWorld(World):
    """The standard world plus a verifier model "judge" on the same mock."""
    judge_key_env = "MOCK_KEY"

    def config(self, **over):
        cfg = super().config(**over)
        cfg["models"]["judge"] = {"base_url": "http://127.0.0.1:%d/v1" % self.mock.port,
                                  "upstream_model": "gpt-judge", "api_key_env": self.judge_key_env,
                                  "input_per_mtok": 1.0, "output_per_mtok": 2.0,
                                  "first_byte_timeout_ms": 3000, "total_timeout_ms": 5000}
        return cfg


WORLD = lambda: ConfWorld(breaker=NO_TRIP, validation={"verifier": VERIFIER})  # noqa: E731


def restores(fn):
    @functools.wraps(fn)
    def run(w):
        try:
            fn(w)
        finally:
            w.start()
    return run


_n = [0]


def uniq(text="What is 3 * 4?"):
    _n[0] += 1
    return "%s (#%d)" % (text, _n[0])


def ask(w, headers=None, **fields):
    body = {"model": "cheap", "messages": [{"role": "user", "content": uniq()}]}
    body.update(fields)
    return w.gw.req("POST", "/v1/chat/completions", body, headers)


def score(w, reply, times=1):
    """The verifier's next reply(ies): a string content or an action."""
    action = reply if isinstance(reply, dict) else {"content": reply, "usage": V_USAGE}
    w.mock.script(action, model="gpt-judge", times=times)


def models_seen(w):
    return [r["model"] for r in w.mock.requests()]


def cost(r):
    return float(r.meta("x-tiergate-cost-usd"))


def metric(w, name):
    return w.gw.metrics().get(name, 0)


@test
def verifier_low_score_escalates(w):
    w.mock.script({"content": "#### 12", "usage": USAGE}, model="gpt-cheap")
    w.mock.script({"content": "#### 13", "usage": USAGE}, model="gpt-mid")
    score(w, '{"score": 3, "reason": "the arithmetic is wrong"}')
    before = metric(w, 'tiergate_verifier_total{result="fail"}')
    r = ask(w)
    eq(r.status, 200, r)
    eq((r.meta("x-tiergate-tier"), r.meta("x-tiergate-escalations")), ("medium", "1"))
    eq(r.json()["choices"][0]["message"]["content"], "#### 13")
    check(r.meta("x-tiergate-confidence") is None, "medium was not verified: no confidence")
    eq(models_seen(w), ["gpt-cheap", "gpt-judge", "gpt-mid"])
    # What the verifier was asked: the fixed rubric, non-stream, the question and the answer.
    v = json.loads(w.mock.requests()[1]["body"])
    eq((v["model"], v.get("stream", False), v["temperature"], v["max_tokens"]), ("gpt-judge", False, 0, 256))
    check("strict grader" in v["messages"][0]["content"], v)
    check("What is 3 * 4?" in v["messages"][1]["content"] and "#### 12" in v["messages"][1]["content"], v)
    # Cost: the rejected cheap answer, the verifier call, the medium answer.
    check(abs(cost(r) - (COST["mini"] + COST["judge"] + COST["mid"])) < 2e-8, r.headers)
    d = w.gw.decision(r)
    eq([(a["model"], a["outcome"], a["reason"]) for a in d["attempts"]],
       [("mini", "invalid", "low_confidence"), ("mid", "ok", None)])
    op = d["opinions"]
    eq(len(op), 1)
    eq((op[0]["attempt"], op[0]["opinion"]), (0, "low_confidence"))
    eq((op[0]["verifier"]["model"], op[0]["verifier"]["result"], op[0]["verifier"]["score"]),
       ("judge", "fail", 3))
    check(abs(op[0]["verifier"]["cost_usd"] - COST["judge"]) < 1e-9, op)
    check(abs(d["cost_usd"] - (COST["mini"] + COST["judge"] + COST["mid"])) < 1e-8, d)
    check("arithmetic" not in json.dumps(d), "the verifier's reason is not logged without log.prompts")
    m = w.gw.metrics()
    eq(m['tiergate_verifier_total{result="fail"}'] - before, 1)
    check(m['tiergate_escalations_total{from="cheap",to="medium",reason="low_confidence"}'] >= 1, m)
    check(m['tiergate_cost_usd_total{model="judge"}'] >= COST["judge"] - 1e-9, m)


@test
def verifier_high_score_accepts_with_confidence(w):
    w.mock.script({"content": "#### 12", "usage": USAGE}, model="gpt-cheap")
    score(w, '```json\n{"score": 9, "reason": "correct"}\n```')
    before = metric(w, 'tiergate_verifier_total{result="pass"}')
    r = ask(w)
    eq((r.status, r.meta("x-tiergate-tier"), r.meta("x-tiergate-confidence")), (200, "cheap", "9"))
    eq(r.json()["choices"][0]["message"]["content"], "#### 12")
    eq(models_seen(w), ["gpt-cheap", "gpt-judge"])
    check(abs(cost(r) - (COST["mini"] + COST["judge"])) < 2e-8, r.headers)
    d = w.gw.decision(r)
    eq((d["opinions"][0]["opinion"], d["opinions"][0]["verifier"]["score"]), ("agree", 9))
    eq(metric(w, 'tiergate_verifier_total{result="pass"}') - before, 1)


@test
def verifier_on_a_held_stream(w):
    # A non-final stream attempt is held whole: the verifier runs before a byte is sent.
    w.mock.script({"content": "#### 12", "usage": USAGE}, model="gpt-cheap")
    score(w, '{"score": 8}')
    r = ask(w, stream=True)
    eq((r.status, r.meta("x-tiergate-tier"), r.meta("x-tiergate-confidence")), (200, "cheap", "8"))
    ev = r.events()
    eq(ev[-1], "[DONE]")
    eq("".join(e["choices"][0]["delta"].get("content") or "" for e in ev[:-1] if e["choices"]), "#### 12")
    w.mock.reset()
    w.mock.script({"content": "#### 12", "usage": USAGE}, model="gpt-cheap")
    w.mock.script({"content": "#### 13", "usage": USAGE}, model="gpt-mid")
    score(w, '{"score": 2}')
    r = ask(w, stream=True)
    eq((r.status, r.meta("x-tiergate-tier")), (200, "medium"))
    eq("".join(e["choices"][0]["delta"].get("content") or "" for e in r.events()[:-1] if e["choices"]),
       "#### 13")
    eq([(x["model"], x["stream"]) for x in w.mock.requests()],
       [("gpt-cheap", True), ("gpt-judge", False), ("gpt-mid", True)])


@test
def verifier_failures_pass_the_answer(w):
    """500, garbage, a timeout: the answer is served, the error counted."""
    before = metric(w, 'tiergate_verifier_total{result="error"}')
    cases = [({"status": 500}, "HTTP 500"),
             ("Sure! I'd give it {\"score\": 8}", "unparseable reply"),
             ('{"score": 7.5}', "unparseable reply"),
             ({"delay_ms": 4000, "content": '{"score": 1}'}, "")]
    for reply, why in cases:
        w.mock.script({"content": "#### 12", "usage": USAGE}, model="gpt-cheap")
        score(w, reply)
        r = ask(w)
        eq((r.status, r.meta("x-tiergate-tier")), (200, "cheap"), reply)
        eq(r.json()["choices"][0]["message"]["content"], "#### 12")
        check(r.meta("x-tiergate-confidence") is None, r.headers)
        v = w.gw.decision(r)["opinions"][0]
        eq((v["opinion"], v["verifier"]["result"], v["verifier"]["score"]), ("unavailable", "error", 0))
        check(why in v["verifier"]["detail"], v)
    eq(metric(w, 'tiergate_verifier_total{result="error"}') - before, len(cases))


@test
@restores
def verifier_without_a_key_fails_open(w):
    w.judge_key_env = "UNSET_JUDGE_KEY"
    try:
        w.start()
    finally:
        w.judge_key_env = "MOCK_KEY"
    w.mock.script({"content": "#### 12", "usage": USAGE}, model="gpt-cheap")
    r = ask(w)
    eq((r.status, r.meta("x-tiergate-tier")), (200, "cheap"))
    eq(models_seen(w), ["gpt-cheap"])
    v = w.gw.decision(r)["opinions"][0]["verifier"]
    eq(v["result"], "error")
    check("UNSET_JUDGE_KEY is not set" in v["detail"], v)


@test
def verifier_skipped_on_a_final_attempt(w):
    """Nothing dearer is left: no verifier call, the answer is accepted."""
    w.mock.script({"content": "#### 12", "usage": USAGE}, model="gpt-cheap")
    r = ask(w, headers={"x-tiergate-max-tier": "cheap"})
    eq((r.status, r.meta("x-tiergate-tier")), (200, "cheap"))
    eq(models_seen(w), ["gpt-cheap"])
    check("opinions" not in w.gw.decision(r), "no second opinion on a final attempt")
    r = ask(w, model="medium")  # not a verified tier
    eq(models_seen(w), ["gpt-cheap", "gpt-mid"])


@test
@restores
def consistency_n_disagreement_escalates(w):
    w.start(validation={"consistency": {"samples": 2, "tiers": ["cheap"]}})
    w.mock.script({"choices": ["#### 12", "#### 13"], "usage": USAGE}, model="gpt-cheap")
    w.mock.script({"content": "#### 12", "usage": USAGE}, model="gpt-mid")
    r = ask(w)
    eq((r.status, r.meta("x-tiergate-tier"), r.meta("x-tiergate-escalations")), (200, "medium", "1"))
    reqs = w.mock.requests()
    eq([x["model"] for x in reqs], ["gpt-cheap", "gpt-mid"])
    eq(json.loads(reqs[0]["body"])["n"], 2)
    check("n" not in json.loads(reqs[1]["body"]), "the final tier is asked as the client asked")
    d = w.gw.decision(r)
    eq(d["attempts"][0]["reason"], "inconsistent")
    c = d["opinions"][0]["consistency"]
    eq((c["samples"], c["method"], c["result"], c["rule"]), (2, "n", "disagree", "number"))
    m = w.gw.metrics()
    check(m['tiergate_escalations_total{from="cheap",to="medium",reason="inconsistent"}'] >= 1, m)


@test
@restores
def consistency_n_agreement_serves_one_choice(w):
    w.start(validation={"consistency": {"samples": 3, "tiers": ["cheap"]}})
    for stream in (False, True):
        w.mock.script({"choices": ["So the answer is 12.", "#### 12", "3 * 4 = 12"],
                       "usage": {"prompt_tokens": 100, "completion_tokens": 30}}, model="gpt-cheap")
        r = ask(w, stream=stream)
        eq((r.status, r.meta("x-tiergate-tier")), (200, "cheap"), r)
        if stream:
            ev = [e for e in r.events() if e != "[DONE]"]
            eq({c["index"] for e in ev for c in e["choices"]}, {0})
            eq("".join(e["choices"][0]["delta"].get("content") or "" for e in ev if e["choices"]),
               "So the answer is 12.")
        else:
            j = r.json()
            eq(len(j["choices"]), 1)
            eq(j["choices"][0]["message"]["content"], "So the answer is 12.")
            eq(j["usage"], {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110})
        # The gateway pays for every sample.
        check(abs(cost(r) - (100 * 0.15e-6 + 30 * 0.60e-6)) < 2e-8, r.headers)
        c = w.gw.decision(r)["opinions"][0]["consistency"]
        eq((c["samples"], c["result"]), (3, "agree"))
        w.mock.reset()


@test
@restores
def consistency_parallel_samples(w):
    w.start(validation={"consistency": {"samples": 2, "tiers": ["cheap"], "method": "parallel"},
                        "verifier": VERIFIER})
    # Agreeing samples, then the verifier: both pass.
    w.mock.script({"content": "#### 12", "usage": USAGE}, model="gpt-cheap", times=2)
    score(w, '{"score": 9}')
    r = ask(w, stream=True)
    eq((r.status, r.meta("x-tiergate-tier"), r.meta("x-tiergate-confidence")), (200, "cheap", "9"))
    reqs = w.mock.requests()
    eq(sorted((x["model"], x["stream"]) for x in reqs),
       [("gpt-cheap", False), ("gpt-cheap", True), ("gpt-judge", False)])
    check(abs(cost(r) - (2 * COST["mini"] + COST["judge"])) < 2e-8, r.headers)
    w.mock.reset()
    # Disagreeing samples: escalate; the verifier's call is made at the same time (and paid).
    w.mock.script({"content": "#### 12", "usage": USAGE}, model="gpt-cheap")
    w.mock.script({"content": "#### 14", "usage": USAGE}, model="gpt-cheap")
    w.mock.script({"content": "#### 12", "usage": USAGE}, model="gpt-mid")
    score(w, '{"score": 9}')
    r = ask(w)
    eq((r.status, r.meta("x-tiergate-tier")), (200, "medium"))
    d = w.gw.decision(r)
    eq(d["opinions"][0]["opinion"], "inconsistent")
    eq(d["opinions"][0]["consistency"]["method"], "parallel")


@test
@restores
def consistency_provider_ignoring_n_fails_open(w):
    """A provider that answers one choice to n=2: nothing to vote with, the answer passes."""
    w.start(validation={"consistency": {"samples": 2, "tiers": ["cheap"]}})
    w.mock.script({"body": json.dumps({"id": "x", "object": "chat.completion", "created": 1, "model": "gpt-cheap",
                                       "choices": [{"index": 0, "message": {"role": "assistant", "content": "12"},
                                                    "finish_reason": "stop"}],
                                       "usage": USAGE})}, model="gpt-cheap")
    r = ask(w)
    eq((r.status, r.meta("x-tiergate-tier")), (200, "cheap"))
    eq(w.gw.decision(r)["opinions"][0]["consistency"]["result"], "error")


@test
def config_errors_name_the_key(w):
    from harness import Gateway
    for over, msg in [({"verifier": {"min_score": 7}}, 'validation.verifier: missing required setting "model"'),
                      ({"verifier": {"model": "nope"}}, 'validation.verifier.model: no model "nope" in models'),
                      ({"verifier": {"model": "judge", "min_score": 11}}, "validation.verifier.min_score"),
                      ({"verifier": {"model": "judge", "tiers": ["cheapest"]}}, "validation.verifier.tiers"),
                      ({"consistency": {"samples": 9}}, "validation.consistency.samples"),
                      ({"consistency": {"method": "vote"}}, 'validation.consistency.method: expected "n" or "parallel"'),
                      ({"hedging": {"min_hits": 0}}, "validation.hedging.min_hits")]:
        g = Gateway(w.config(validation=over), extra_args=["--check-config"], expect_fail=True)
        rc = g.p.wait(10)
        g.stop()
        check(rc != 0 and msg in g.output(), "%s: %s" % (over, g.output()))


@test
def client_leaving_during_the_verifier_call(w):
    """The client gives up while the verifier is thinking: the call is
    cancelled, the request is a 499 and nothing leaks (ASan at shutdown)."""
    import socket
    import time
    w.mock.script({"content": "#### 12", "usage": USAGE}, model="gpt-cheap")
    score(w, {"content": '{"score": 9}', "delay_ms": 2500})
    s = socket.create_connection(("127.0.0.1", w.gw.port))
    body = json.dumps({"model": "cheap", "messages": [{"role": "user", "content": uniq()}]}).encode()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"x-request-id: leaves-early\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    wait_for(lambda: len(w.mock.requests()) == 2, 5, msg="the verifier call")
    s.close()
    d = wait_for(lambda: ([x for x in w.gw.decisions() if x["request_id"] == "leaves-early"] or [None])[0], 5,
                 msg="the decision line")
    eq(d["status"], 499)
    op = d["opinions"][0]
    eq((op["opinion"], op["verifier"]["result"]), ("unavailable", "error"))
    check(op["verifier"]["detail"].startswith("cancelled"), op)
    time.sleep(0.2)
    m = w.gw.metrics()
    check(m['tiergate_upstream_requests_total{model="judge",outcome="cancelled"}'] >= 1, m)
    eq(w.gw.chat().status, 200)  # still serving


@test
@restores
def consistency_samples_never_reach_the_cache(w):
    """The stored answer is the one choice served, with the usage of one."""
    w.start(validation={"consistency": {"samples": 2, "tiers": ["cheap"]}})
    w.mock.script({"choices": ["#### 12", "12"], "usage": {"prompt_tokens": 100, "completion_tokens": 30}},
                  model="gpt-cheap")
    body = {"model": "cheap", "messages": [{"role": "user", "content": uniq()}]}
    r1 = w.gw.req("POST", "/v1/chat/completions", body)
    eq((r1.status, r1.meta("x-tiergate-cache")), (200, "miss"))
    wait_for(lambda: w.redis.cmd("DBSIZE") >= 1, 5, msg="the answer stored")
    for stream in (False, True):
        r = w.gw.req("POST", "/v1/chat/completions", dict(body, stream=stream))
        eq((r.status, r.meta("x-tiergate-cache")), (200, "hit"))
        if stream:
            eq({c["index"] for e in r.events() if e != "[DONE]" for c in e["choices"]}, {0})
        else:
            eq(r.json()["choices"], r1.json()["choices"])
            eq(r.json()["usage"]["completion_tokens"], 15)
    # A hit saves the baseline of one answer (15 completion tokens, not 30).
    d = w.gw.decision(r)
    check(abs(d["baseline_usd"] - (100 * 2.50e-6 + 15 * 10.00e-6)) < 1e-9, d)
    eq(len(w.mock.requests()), 1)
