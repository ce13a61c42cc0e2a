# SPDX-License-Identifier: MIT
"""Observability (issue 6): exact metric values after a scripted sequence,
cost and baseline arithmetic against hand-computed figures, the decision
line's fields, /readyz detail, and no key or prompt text in logs/metrics."""
import json
import subprocess

from harness import TIERGATE, World, check, eq, test, wait_for, chat_body

ADMIN = "admin-key-for-observability-0987"
CLIENT = "client-key-observability-1234"


def WORLD():
    return World(log={"level": "debug"}, breaker={"failure_threshold": 2, "cooldown_ms": 60000,
                                                  "min_requests": 1000})


def world_env(w):
    w.start(env={"TIERGATE_ADMIN_KEY": ADMIN, "TIERGATE_API_KEYS": CLIENT})


def auth():
    return {"authorization": "Bearer " + CLIENT}


USAGE = {"prompt_tokens": 1000, "completion_tokens": 500}
# Prices (per 1M): mini 0.15/0.60, mid 0.40/1.60, large 2.50/10.00.
MINI_COST = 1000 * 0.15 / 1e6 + 500 * 0.60 / 1e6          # 0.00045
LARGE_COST = 1000 * 2.50 / 1e6 + 500 * 10.00 / 1e6        # 0.0075


def close(a, b, eps=1e-9):
    return abs(a - b) <= eps


@test
def cost_and_baseline_arithmetic(w):
    w.mock.script({"usage": USAGE}, model="gpt-cheap")
    r = w.gw.chat(chat_body("price check", model="cheap", temperature=0), headers={"x-request-id": "price-1"})
    eq(r.status, 200)
    check(close(float(r.header("x-tiergate-cost-usd")), MINI_COST), r.header("x-tiergate-cost-usd"))
    d = wait_for(lambda: [x for x in w.gw.decisions() if x["request_id"] == "price-1"], msg="decision line")[0]
    check(close(d["cost_usd"], MINI_COST), "cost %r" % d["cost_usd"])
    check(close(d["baseline_usd"], LARGE_COST), "baseline %r" % d["baseline_usd"])
    check(close(d["saved_usd"], LARGE_COST - MINI_COST), "saved")
    # An escalation: the failed cheap attempt is paid for too.
    w.mock.script({"hedge": True, "usage": USAGE}, model="gpt-cheap")
    w.mock.script({"usage": {"prompt_tokens": 1000, "completion_tokens": 200}}, model="gpt-mid")
    r = w.gw.chat(chat_body("escalate me", model="cheap", temperature=0), headers={"x-request-id": "esc-1"})
    eq(r.header("x-tiergate-model"), "mid")
    mid_cost = 1000 * 0.40 / 1e6 + 200 * 1.60 / 1e6
    check(close(float(r.header("x-tiergate-cost-usd")), MINI_COST + mid_cost), r.header("x-tiergate-cost-usd"))
    # The line reaches us through a pipe reader thread: wait for this request's own line.
    d = wait_for(lambda: [x for x in w.gw.decisions() if x["request_id"] == "esc-1"], msg="decision line")[0]
    check(close(d["baseline_usd"], 1000 * 2.50 / 1e6 + 200 * 10.00 / 1e6), "baseline prices the answer's tokens")
    eq([a["outcome"] for a in d["attempts"]], ["invalid", "ok"])
    eq(d["attempts"][0]["reason"], "hedging")
    eq(d["attempts"][0]["prompt_tokens"], 1000)


@test
def exact_metrics_after_a_scripted_sequence(w):
    w.start()  # fresh counters
    w.mock.script({"usage": USAGE}, model="gpt-cheap")
    body = chat_body("metrics sequence", model="cheap", temperature=0)
    eq(w.gw.chat(body).header("x-tiergate-cache"), "miss")                       # 1: miss
    wait_for(lambda: w.redis.cmd("DBSIZE") == 1, msg="stored (keys: %r)" % (w.redis.cmd("KEYS", "*"),))
    eq(w.gw.chat(body).header("x-tiergate-cache"), "hit")                        # 2: hit
    w.mock.script({"hedge": True, "usage": USAGE}, model="gpt-cheap")
    w.mock.script({"usage": USAGE}, model="gpt-mid")
    eq(w.gw.chat(chat_body("escalation", model="cheap", temperature=0)).header("x-tiergate-tier"), "medium")  # 3
    w.mock.script({"status": 500}, model="gpt-large", times=2)
    eq(w.gw.chat(chat_body("trip 1", model="large")).status, 502)                # 4
    eq(w.gw.chat(chat_body("trip 2", model="large")).status, 502)                # 5: breaker opens (K=2)
    r = w.gw.chat(chat_body("trip 3", model="large"))                            # 6: refused, no call
    eq(r.status, 503)
    check(int(r.header("retry-after")) > 0)
    eq(len([x for x in w.mock.requests() if x["model"] == "gpt-large"]), 2, "no call while open")
    m = w.gw.metrics()
    def v(k):
        return m.get(k, 0.0)
    eq(v('tiergate_requests_total{status="200",tier="cheap",cache="miss"}'), 1)
    eq(v('tiergate_requests_total{status="200",tier="cheap",cache="hit"}'), 1)
    eq(v('tiergate_requests_total{status="200",tier="medium",cache="miss"}'), 1)
    eq(v('tiergate_requests_total{status="502",tier="none",cache="miss"}'), 2)
    eq(v('tiergate_requests_total{status="503",tier="none",cache="miss"}'), 1)
    eq(v('tiergate_cache_lookups_total{result="hit"}'), 1)
    eq(v('tiergate_cache_lookups_total{result="miss"}'), 5)
    eq(v('tiergate_escalations_total{from="cheap",to="medium",reason="hedging"}'), 1)
    eq(v('tiergate_upstream_requests_total{model="mini",outcome="ok"}'), 1)
    eq(v('tiergate_upstream_requests_total{model="mini",outcome="invalid"}'), 1)
    eq(v('tiergate_upstream_requests_total{model="mid",outcome="ok"}'), 1)
    eq(v('tiergate_upstream_requests_total{model="large",outcome="http_5xx"}'), 2)
    eq(v('tiergate_upstream_requests_total{model="large",outcome="breaker_open"}'), 1)
    eq(v('tiergate_breaker_state{model="large"}'), 2)
    eq(v('tiergate_breaker_state{model="mini"}'), 0)
    eq(v('tiergate_tokens_total{model="mini",kind="prompt"}'), 2000)
    eq(v('tiergate_tokens_total{model="mini",kind="completion"}'), 1000)
    check(close(v('tiergate_cost_usd_total{model="mini"}'), 2 * MINI_COST), "mini cost")
    mid_cost = 1000 * 0.40 / 1e6 + 500 * 1.60 / 1e6
    check(close(v('tiergate_cost_usd_total{model="mid"}'), mid_cost), "mid cost")
    # Baseline: miss + hit (the hit saved the whole baseline) + escalation, all at large prices.
    check(close(v("tiergate_baseline_cost_usd_total"), 3 * LARGE_COST, 1e-8),
          "baseline %r" % v("tiergate_baseline_cost_usd_total"))
    eq(v('tiergate_request_duration_seconds_count'), 6)
    eq(v('tiergate_upstream_duration_seconds_count{model="large"}'), 2)
    eq(v("tiergate_inflight_requests"), 1, "the /metrics request itself")
    # tiergate stats reads the same numbers.
    out = subprocess.run([TIERGATE, "stats", "http://127.0.0.1:%d" % w.gw.port], capture_output=True,
                         text=True, timeout=10)
    eq(out.returncode, 0, out.stderr)
    check("cache hit rate" in out.stdout and "16.7%" in out.stdout, out.stdout)
    check("large=open" in out.stdout, out.stdout)
    w.start()


@test
def decision_line_has_every_field(w):
    r = w.gw.chat(chat_body("route me please", model="auto"), headers={"x-request-id": "dl-1"})
    eq(r.status, 200)
    d = wait_for(lambda: [x for x in w.gw.decisions() if x["request_id"] == "dl-1"], msg="line")[0]
    for k in ("ts", "request_id", "tenant", "model_requested", "stream", "status", "cache", "route",
              "attempts", "final_model", "final_tier", "escalations", "cost_usd", "baseline_usd",
              "saved_usd", "latency_ms", "overhead_ms"):
        check(k in d, "field %s in %s" % (k, d))
    for k in ("tier", "score", "features"):
        check(k in d["route"], "route.%s" % k)
    a = d["attempts"][0]
    for k in ("model", "tier", "outcome", "reason", "status", "latency_ms", "prompt_tokens",
              "completion_tokens", "cost_usd"):
        check(k in a, "attempt.%s" % k)
    check("prompt" not in d, "no prompt text by default")


@test
def readyz_reports_redis_and_breakers(w):
    r = w.gw.req("GET", "/readyz")
    eq(r.status, 200)
    j = r.json()
    eq(j["ready"], True)
    eq(j["redis"]["state"], "up")
    eq(j["tiers"]["cheap"]["models"][0]["state"], "closed")
    w.redis.cmd("SHUTDOWN", "NOSAVE") if False else w.redis.kill()
    r = wait_for(lambda: (lambda x: x if x.status == 503 else None)(w.gw.req("GET", "/readyz")), 5,
                 msg="not ready without redis")
    eq(r.json()["redis"]["state"] in ("down", "connecting"), True)
    eq(w.gw.chat().status, 200, "still serving without redis")
    from harness import Redis
    w.redis = Redis(port=w.redis.port)
    wait_for(lambda: w.gw.req("GET", "/readyz").status == 200, 10, msg="ready again")


MARKER = "zebra-quokka-7731-secret-prompt"


@test
def no_keys_or_prompt_text_in_logs_or_metrics(w):
    world_env(w)
    for stream in (False, True):
        r = w.gw.chat(chat_body(MARKER + " tell me", model="cheap", stream=stream), headers=auth())
        eq(r.status, 200)
    w.mock.script({"status": 500, "error": {"message": "upstream echo " + MARKER}}, model="gpt-large")
    w.gw.chat(chat_body(MARKER, model="large"), headers=auth())
    w.gw.chat(chat_body(MARKER, model="cheap"), headers={"authorization": "Bearer wrong-" + CLIENT})
    w.gw.req("GET", "/admin/breakers", headers={"authorization": "Bearer " + ADMIN})
    w.gw.req("POST", "/v1/chat/completions", '{"model":"cheap","messages":[{"role":"user","content":"' + MARKER,
             auth())
    metrics = w.gw.req("GET", "/metrics").body.decode()
    w.gw.stop_clean()
    logs = w.gw.output()
    check(len(logs) > 200, "debug logging produced output")
    for secret in ("sk-mock-upstream-key", CLIENT, ADMIN, MARKER):
        check(secret not in logs, "%s leaked into logs" % secret)
        check(secret not in metrics, "%s leaked into metrics" % secret)
    w.start()


@test
def prompt_logging_when_turned_on_is_truncated(w):
    w.start(log={"prompts": True, "prompt_chars": 12})
    w.gw.chat(chat_body("0123456789abcdefghij", model="cheap"), headers={"x-request-id": "pl-1"})
    d = wait_for(lambda: [x for x in w.gw.decisions() if x["request_id"] == "pl-1"], msg="line")[0]
    eq(d["prompt"], "0123456789ab")
    w.start()


@test
def decision_log_to_a_file(w):
    import os
    import tempfile
    path = os.path.join(tempfile.mkdtemp(), "decisions.jsonl")
    w.start(log={"decisions": path})
    w.gw.chat(chat_body("to a file"), headers={"x-request-id": "file-1"})
    wait_for(lambda: os.path.exists(path) and "file-1" in open(path).read(), msg="line in file")
    line = [json.loads(l) for l in open(path) if "file-1" in l][0]
    eq(line["status"], 200)
    os.rename(path, path + ".1")  # logrotate, then SIGHUP reopens
    w.gw.reload(w.config(log={"decisions": path}))
    wait_for(lambda: "config reloaded" in w.gw.output(), msg="reload")
    w.gw.chat(chat_body("after rotate"), headers={"x-request-id": "file-2"})
    wait_for(lambda: os.path.exists(path) and "file-2" in open(path).read(), msg="line in new file")
    w.start()


@test
def grafana_dashboard_queries_real_metrics(w):
    import os
    import re
    from harness import ROOT
    dash = json.load(open(os.path.join(ROOT, "config", "grafana-tiergate.json")))
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    check(len(exprs) >= 15, "dashboard has its panels")
    text = w.gw.req("GET", "/metrics").body.decode()
    declared = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    used = set()
    for e in exprs:
        for name in re.findall(r"\btiergate_[a-z_]+", e):
            used.add(re.sub(r"_(bucket|sum|count)$", "", name))
    missing = sorted(used - declared)
    eq(missing, [], "dashboard metrics missing from /metrics")
    for needed in ("tiergate_cost_usd_total", "tiergate_baseline_cost_usd_total", "tiergate_breaker_state",
                   "tiergate_escalations_total", "tiergate_cache_lookups_total", "tiergate_request_duration_seconds",
                   "tiergate_shadow_comparisons_total", "tiergate_verifier_total", "tiergate_shadow_cost_usd_total"):
        check(needed in used, needed + " charted")
