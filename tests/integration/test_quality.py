# SPDX-License-Identifier: MIT
"""Quality tools (issues 13 and 20, phase 1): `tiergate replay` against the
mock through a real gateway (per-tier counts, costs from the headers,
agreement and the ids that disagreed, failures counted, cache bypassed,
bodies as sent upstream), and the main.c dispatch of `tiergate compare` and
`tiergate calibrate --verifier`."""
import json
import os
import subprocess
import tempfile

from harness import TIERGATE, World, check, eq, test, wait_for

BREAKER = {"failure_threshold": 1000, "min_requests": 1000}
USAGE = {"prompt_tokens": 1000, "completion_tokens": 500}
# Prices per 1M tokens (harness): mini 0.15/0.60, mid 0.40/1.60, large 2.50/10.00.
COST = {"mini": 1000 * 0.15 / 1e6 + 500 * 0.60 / 1e6,
        "mid": 1000 * 0.40 / 1e6 + 500 * 1.60 / 1e6,
        "large": 1000 * 2.50 / 1e6 + 500 * 10.00 / 1e6}


def WORLD():
    return World(breaker=BREAKER)


def run(args, stdin, env=None):
    e = dict(os.environ)
    e.pop("TIERGATE_KEY", None)
    e.update(env or {})
    p = subprocess.run([TIERGATE] + args, input=stdin.encode(), capture_output=True, timeout=120, env=e)
    out, err = p.stdout.decode(), p.stderr.decode()
    for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
        check(marker not in err, "sanitizer report:\n" + err[-4000:])
    return p.returncode, out, err


def line(id_, content, model=None, **extra):
    b = {"id": id_, "messages": [{"role": "user", "content": content}]}
    if model:
        b["model"] = model
    b.update(extra)
    return json.dumps(b)


def script_suite(mock):
    """Answers per prompt marker and model: q1 agrees on a number, q2
    disagrees on one, q3 agrees on a letter, q4 disagrees on JSON, q5's
    routed run fails (a 400 is passed back), q6 is the same model twice."""
    s = mock.script
    s({"content": "3 x 180 = <<3*180=540>>540\n#### 540", "usage": USAGE}, model="gpt-cheap", body_contains="q1-marker")
    s({"content": "He runs 540 meters a week.", "usage": USAGE}, model="gpt-large", body_contains="q1-marker")
    s({"content": "#### 12", "usage": USAGE}, model="gpt-cheap", body_contains="q2-marker")
    s({"content": "#### 13", "usage": USAGE}, model="gpt-large", body_contains="q2-marker")
    s({"content": "B", "usage": USAGE}, model="gpt-mid", body_contains="q3-marker")
    s({"content": "The answer is (B).", "usage": USAGE}, model="gpt-large", body_contains="q3-marker")
    s({"content": "{\"a\": 1}", "usage": USAGE}, model="gpt-mid", body_contains="q4-marker")
    s({"content": "{\"a\": 2}", "usage": USAGE}, model="gpt-large", body_contains="q4-marker")
    s({"status": 400, "error": {"message": "bad request for q5", "type": "invalid_request_error"}},
      model="gpt-cheap", body_contains="q5-marker")
    s({"content": "same", "usage": USAGE}, model="gpt-large", body_contains="q5-marker")
    s({"content": "Paris.", "usage": USAGE}, model="gpt-large", body_contains="q6-marker", times=2)


SUITE = "\n".join([
    line("q1", "q1-marker: how far does James run?", "cheap"),
    line("q2", "q2-marker: how many apples?", "cheap", stream=True, stream_options={"include_usage": True}),
    line("q3", "q3-marker: which option?", "medium"),
    "",
    line("q4", "q4-marker: JSON please", "medium", temperature=0.7),
    "this line is not JSON",
    line("q5", "q5-marker: this one fails", "cheap"),
    line("q6", "q6-marker: capital of France?", "expensive"),
]) + "\n"


@test
def replay_json_report(w):
    script_suite(w.mock)
    rc, out, err = run(["replay", "--url", "http://127.0.0.1:%d" % w.gw.port, "--baseline", "large",
                        "--concurrency", "3", "--json"], SUITE)
    eq(rc, 0, "exit status (stderr: %s)" % err)
    check("line 6: invalid JSON (skipped)" in err, err)
    check("replay: 12/12 requests done, 1 failed" in err, "progress line: " + err)
    r = json.loads(out)
    eq(r["prompts"], 6)
    eq(r["bad_lines"], 1)
    eq(r["baseline_model"], "large")
    t = r["tiers"]
    eq(sorted(t), ["cheap", "expensive", "medium"])
    cheap, medium, exp_ = t["cheap"], t["medium"], t["expensive"]
    # q5's routed run failed on the cheap tier (a 400 passed back): counted, not fatal.
    eq((cheap["prompts"], cheap["pairs"], cheap["errors"], cheap["agree"], cheap["disagree"]), (3, 2, 1, 1, 1))
    eq(cheap["disagreed"], ["q2"])
    eq(cheap["agreement"], 0.5)
    check(abs(cheap["cost_routed_usd"] - 2 * COST["mini"]) < 1e-9, cheap)
    check(abs(cheap["cost_baseline_usd"] - 2 * COST["large"]) < 1e-9, cheap)
    eq((medium["prompts"], medium["agree"], medium["disagree"], medium["disagreed"]), (2, 1, 1, ["q4"]))
    check(abs(medium["cost_routed_usd"] - 2 * COST["mid"]) < 1e-9, medium)
    eq((exp_["prompts"], exp_["agree"], exp_["disagree"], exp_["agreement"]), (1, 1, 0, 1.0))
    tot = r["total"]
    eq((tot["prompts"], tot["pairs"], tot["errors"], tot["agree"], tot["disagree"]), (6, 5, 1, 3, 2))
    eq(sorted(tot["disagreed"]), ["q2", "q4"])
    by_id = {x["id"]: x for x in r["results"]}
    eq((by_id["q1"]["rule"], by_id["q1"]["result"], by_id["q1"]["detail"]), ("number", "agree", "540 vs 540"))
    eq((by_id["q3"]["rule"], by_id["q3"]["detail"]), ("choice", "B vs B"))
    eq(by_id["q4"]["rule"], "json")
    eq((by_id["q1"]["model"], by_id["q1"]["baseline_model"]), ("mini", "large"))
    eq(by_id["q5"]["status"], 400)
    check("bad request for q5" in by_id["q5"]["error"], by_id["q5"])
    eq(by_id["q5"]["baseline_status"], 200)
    eq(by_id["q5"]["result"], None)

    # What reached the upstream: no "id", stream off, the baseline pinned.
    reqs = w.mock.requests()
    eq(len(reqs), 12)
    for rq in reqs:
        body = json.loads(rq["body"])
        check("id" not in body and not body.get("stream") and "stream_options" not in body, body)
    q2 = [json.loads(x["body"]) for x in reqs if "q2-marker" in x["body"]]
    eq(sorted(x["model"] for x in q2), ["gpt-cheap", "gpt-large"])
    q4 = [json.loads(x["body"]) for x in reqs if "q4-marker" in x["body"]]
    eq([x["temperature"] for x in q4], [0.7, 0.7])
    # Both runs bypassed the cache (Cache-Control: no-store) and carry the replay's request ids.
    decisions = wait_for(lambda: [d for d in w.gw.decisions() if d["request_id"].startswith("replay-")]
                         if len([d for d in w.gw.decisions() if d["request_id"].startswith("replay-")]) == 12
                         else None, msg="12 decision lines")
    eq({d["cache"] for d in decisions}, {"bypass"})
    eq(sorted({d["request_id"].rsplit("-", 1)[1] for d in decisions}), ["baseline", "routed"])
    eq(w.redis.cmd("DBSIZE"), 0)


@test
def replay_text_table(w):
    script_suite(w.mock)
    rc, out, err = run(["replay", "-c", w.gw.config_path, "--url", "http://127.0.0.1:%d/v1/" % w.gw.port], SUITE)
    eq(rc, 0, "exit status (stderr: %s)" % err)
    lines = out.split("\n")
    check(lines[0].startswith("tiergate replay: 6 prompts against http://127.0.0.1:%d/v1/, routed vs pinned to "
                              "large, 4 at a time (1 bad line skipped)" % w.gw.port), lines[0])
    table = lines[2:lines.index("disagreed (id: rule, detail):")]
    rows = {l.split()[0]: l for l in table}
    eq(sorted(rows), ["cheap", "expensive", "medium", "total"])
    check(rows["cheap"].split()[1:4] == ["3", "2", "1"], rows["cheap"])
    check("50.0% (1/2)" in rows["cheap"], rows["cheap"])
    check("$0.000900" in rows["cheap"] and "$0.015000" in rows["cheap"], rows["cheap"])
    check("94.0%" in rows["cheap"], "saving 1 - 0.0009/0.015: " + rows["cheap"])
    check("60.0% (3/5)" in rows["total"], rows["total"])
    check("disagreed (id: rule, detail):" in out, out)
    check('  cheap     "q2": number, 12 vs 13' in out, out)
    check('  medium    "q4": json, JSON values differ' in out, out)
    check('  "q5": routed, HTTP 400: bad request for q5' in out, out)


@test
def replay_counts_failures_and_sends_the_key(w):
    key = "replay-client-key-5551"
    w.start(env={"TIERGATE_API_KEYS": key})
    try:
        suite = line("k1", "hello", "cheap") + "\n" + line("k2", "hello again", "medium") + "\n"
        rc, out, err = run(["replay", "--url", "http://127.0.0.1:%d" % w.gw.port, "--baseline", "large", "--json"],
                           suite)
        eq(rc, 1, "nothing compared: exit 1")
        r = json.loads(out)
        eq((r["total"]["prompts"], r["total"]["errors"], r["total"]["pairs"]), (2, 2, 0))
        check(all(x["status"] == 401 and x["baseline_status"] == 401 for x in r["results"]), r["results"])
        # The key from the environment (a flag would show in ps).
        rc, out, err = run(["replay", "--url", "http://127.0.0.1:%d" % w.gw.port, "--baseline", "large", "--json"],
                           suite, env={"TIERGATE_KEY": key})
        eq(rc, 0, err)
        r = json.loads(out)
        eq((r["total"]["pairs"], r["total"]["errors"]), (2, 0))
        check(key not in out and key not in err, "the key is never printed")
        # Gateway down: every request fails, the report still prints.
        rc, out, err = run(["replay", "--url", "http://127.0.0.1:1", "--baseline", "large", "--json",
                            "--timeout", "5"], suite)
        eq(rc, 1)
        r = json.loads(out)
        eq(r["total"]["errors"], 2)
        eq(list(r["tiers"]), ["none"])
        eq(r["tiers"]["none"]["agreement"], None)
        check(r["results"][0]["error"].startswith("transport:"), r["results"][0])
    finally:
        w.start()


@test
def replay_usage_errors(w):
    rc, out, err = run(["replay"], "")
    eq(rc, 2)
    check("--url is required" in err, err)
    rc, out, err = run(["replay", "--url", "http://x", "--concurrency", "0"], "")
    eq(rc, 2)
    rc, out, err = run(["replay", "--url", "http://127.0.0.1:%d" % w.gw.port, "-c", "/nonexistent.json"], "")
    eq(rc, 2)
    check("give --baseline ID or -c FILE" in err, err)
    rc, out, err = run(["replay", "--url", "http://127.0.0.1:%d" % w.gw.port, "--baseline", "large"], "\n\n")
    eq(rc, 1)
    check("no usable line" in err, err)
    rc, out, err = run(["replay", "--help"], "")
    eq(rc, 0)
    check("usage: tiergate replay" in out, out)


@test
def compare_and_calibrate_subcommands(w):
    pairs = "\n".join(json.dumps(x) for x in [
        {"id": "p1", "a": "#### 540", "b": "540 meters", "ok": True},
        {"id": "p2", "a": "B", "b": "The answer is C.", "ok": False},
    ]) + "\n"
    rc, out, err = run(["compare", "--label", "ok", "--summary"], pairs)
    eq(rc, 0, err)
    check("2 pairs compared, 0 bad lines" in out, out)
    check("precision 1.000 (agree -> true)" in out, out)
    labels = "".join(json.dumps({"verifier_score": s, "label": g}) + "\n"
                     for s, g in [(10, 1), (9, 1), (9, 0), (8, 1), (8, 1), (7, 0), (6, 1), (5, 0), (3, 0), (2, 1)])
    rc, out, err = run(["calibrate", "--verifier", "--precision", "0.75"], labels)
    eq(rc, 0, err)
    check("min_score 8: precision 0.800 (target 0.750) on 5 accepted answers; escalation rate 50.0%" in out, out)
    # The router's calibrate still answers --shares.
    rc, out, err = run(["calibrate", "--shares", "0.5,0.3,0.2"],
                       "".join(json.dumps({"prompt": "question %d" % i}) + "\n" for i in range(20)))
    eq(rc, 0, err)
    check('"thresholds"' in out, out)
