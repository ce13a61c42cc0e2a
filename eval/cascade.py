#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""make eval-cascade: what each validator catches, measured through a real
gateway (issue 20).

Replays ../shared/eval/cascade_dev.jsonl (650 GSM8K problems with a small
open model's recorded answer and a frontier model's, each graded) through
tiergate against the mock upstream, offline and deterministic:

  - the mock answers each row's prompt with the row's recorded `cheap_answer`
    on the cheap model and `strong_answer` on the strong one (rules matched
    on a snippet of the prompt that no other row contains);
  - with TG_EVAL_VERIFIER_SCORES=path (JSONL {"id", "score"|"verifier_score"})
    the mock answers the verifier's call for a row with {"score": N} from that
    file, and the verifier is run at every min_score 1..10;
  - token usage is the mock's default (request and answer bytes / 4), the
    same in every run, priced like the example config (cheap 0.15/0.60,
    strong 2.50/10.00, verifier = the cheap model's prices: self-evaluation).

Per validator it prints the recall on wrong cheap answers (escalated / wrong),
the false-escalation rate on right ones (escalated / right), the accuracy of
what was served (a served strong answer counts as its own grade), and the
cost against always-cheap and always-strong, summed from x-tiergate-cost-usd.
Validators the data cannot drive are named and skipped: logprobs (the rows
carry none) and self-consistency (one recorded answer per row, no samples).
A last pass shadows every cheap answer with the strong model (shadow.rate 1,
compare "auto", log.labels) and reads the labels back: the live quality score
against the graded accuracy.

usage: eval/cascade.py BUILD_DIR [--json OUT] [--limit N] [--self-check]
  --self-check  replaces the scores file by an oracle (9 for a right cheap
                answer, 3 for a wrong one) and checks the harness end to end:
                min_score 7 must catch every wrong answer and no right one.
"""
import argparse
import concurrent.futures
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
DATA = os.environ.get("TG_EVAL_CASCADE", os.path.join(TOP, "..", "shared", "eval", "cascade_dev.jsonl"))
PRICES = {"cheapm": (0.15, 0.60), "strong": (2.50, 10.00), "verifier": (0.15, 0.60)}
SAFE = re.compile(r"^[A-Za-z0-9 ,.;:?!()$%+*=<>'/&#@_-]+$")


class Proc:
    def __init__(self, argv, ready, env=None):
        self.log = tempfile.TemporaryFile()
        self.p = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        rx = re.compile(ready)
        end = time.time() + 15
        while time.time() < end:
            self.log.seek(0)
            m = rx.search(self.log.read().decode("utf-8", "replace"))
            if m:
                self.match = m
                return
            if self.p.poll() is not None:
                break
            time.sleep(0.05)
        self.log.seek(0)
        raise SystemExit("eval-cascade: %s did not start:\n%s" % (argv[0], self.log.read().decode()[-2000:]))

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            self.p.wait(15)


def post(port, path, body, headers=None, timeout=60):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        h = {"content-type": "application/json"}
        h.update(headers or {})
        c.request("POST", path, json.dumps(body), h)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def snippets(rows):
    """A piece of each prompt no other prompt contains, that reads the same
    in the client's JSON body and in the verifier's rubric (plain ASCII, no
    quote or backslash)."""
    prompts = [r["prompt"] for r in rows]
    out = []
    for i, p in enumerate(prompts):
        found = None
        for width in (60, 90, 140):
            for start in range(0, max(1, len(p) - width + 1), 7):
                s = p[start:start + width]
                if len(s) < min(width, len(p)) or not SAFE.match(s):
                    continue
                if not any(s in q for j, q in enumerate(prompts) if j != i):
                    found = s
                    break
            if found:
                break
        if not found:
            raise SystemExit("eval-cascade: no unique plain snippet for row %s" % rows[i]["id"])
        out.append(found)
    return out


def script_mock(port, rows, snips, scores):
    rules = []
    for r, s in zip(rows, snips):
        rules.append({"model": "gpt-cheap", "body_contains": s, "times": -1,
                      "action": {"content": r["cheap_answer"]}})
        rules.append({"model": "gpt-strong", "body_contains": s, "times": -1,
                      "action": {"content": r["strong_answer"]}})
        if r["id"] in scores:
            rules.append({"model": "gpt-verifier", "body_contains": s, "times": -1,
                          "action": {"content": json.dumps({"score": scores[r["id"]], "reason": "recorded"})}})
    for i in range(0, len(rules), 500):
        st, _, body = post(port, "/_mock/script", rules[i:i + 500])
        if st != 200:
            raise SystemExit("eval-cascade: mock refused the rules: %s" % body[:300])


def config(mock_port, validation, log_path, extra=None):
    def model(up, name):
        inp, out = PRICES[name]
        return {"base_url": "http://127.0.0.1:%d/v1" % mock_port, "upstream_model": up,
                "api_key_env": "EVAL_KEY", "input_per_mtok": inp, "output_per_mtok": out}
    extra = dict(extra or {})
    return {"listen": "127.0.0.1:0", "shards": 2, "cache": {"enabled": False},
            "redis": {"url": "redis://127.0.0.1:1/0"},
            "log": dict({"decisions": log_path}, **extra.pop("log", {})),
            "models": {"cheapm": model("gpt-cheap", "cheapm"), "strong": model("gpt-strong", "strong"),
                       "verifier": model("gpt-verifier", "verifier")},
            "tiers": {"cheap": ["cheapm"], "medium": ["strong"], "expensive": ["strong"]},
            "breaker": {"failure_threshold": 0, "failure_ratio": 0},
            "validation": validation, **(extra or {})}


def run(build, mock_port, rows, validation, model="cheap", max_tier=None, extra=None, labels=None):
    """One pass over the rows; per row: the tier that answered, the cost, the
    verifier score seen (decision line)."""
    tmp = tempfile.mkdtemp(prefix="tg-eval-")
    log_path = os.path.join(tmp, "decisions.jsonl")
    cfg_path = os.path.join(tmp, "tg.json")
    with open(cfg_path, "w") as f:
        json.dump(config(mock_port, validation, log_path, extra), f)
    env = dict(os.environ, EVAL_KEY="sk-eval")
    gw = Proc([os.path.join(build, "tiergate"), "-c", cfg_path], r"listening on [^ ]*:(\d+)", env)
    port = int(gw.match.group(1))
    headers = {"x-tiergate-max-tier": max_tier} if max_tier else {}
    out = [None] * len(rows)

    def one(i):
        r = rows[i]
        body = {"model": model, "messages": [{"role": "user", "content": r["prompt"]}]}
        headers_i = dict(headers, **{"x-request-id": "eval-%d" % i})
        st, h, b = post(port, "/v1/chat/completions", body, headers_i)
        if st != 200:
            raise SystemExit("eval-cascade: row %s: HTTP %d %s" % (r["id"], st, b[:300]))
        content = json.loads(b)["choices"][0]["message"]["content"]
        tier = h["x-tiergate-tier"]
        want = r["cheap_answer"] if tier == "cheap" else r["strong_answer"]
        if content != want:
            raise SystemExit("eval-cascade: row %s got the wrong recorded answer (snippet clash?)" % r["id"])
        out[i] = {"tier": tier, "cost": float(h["x-tiergate-cost-usd"]),
                  "confidence": h.get("x-tiergate-confidence")}

    try:
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            list(ex.map(one, range(len(rows))))
        if labels:  # the shadow jobs run after the answers: wait for every one
            end = time.time() + 120
            while time.time() < end and sum(1 for l in open(log_path) if '"type":"shadow"' in l) < len(rows):
                time.sleep(0.1)
    finally:
        gw.stop()
    scores = {}
    with open(log_path) as f:
        for line in f:
            d = json.loads(line)
            for op in d.get("opinions", []):
                if "verifier" in op:
                    scores[d["request_id"]] = op["verifier"]["score"]
    for i, o in enumerate(out):
        o["score"] = scores.get("eval-%d" % i)
    return out


def summarize(name, rows, res, cheap_cost, strong_cost):
    wrong = [i for i, r in enumerate(rows) if not r["cheap_correct"]]
    right = [i for i, r in enumerate(rows) if r["cheap_correct"]]
    esc = [res[i]["tier"] != "cheap" for i in range(len(rows))]
    served_ok = sum(1 for i, r in enumerate(rows) if (r["strong_correct"] if esc[i] else r["cheap_correct"]))
    cost = sum(x["cost"] for x in res)
    return {"validator": name, "escalated": sum(esc),
            "caught_wrong": sum(esc[i] for i in wrong), "wrong": len(wrong),
            "escalated_right": sum(esc[i] for i in right), "right": len(right),
            "recall_wrong": sum(esc[i] for i in wrong) / max(1, len(wrong)),
            "false_escalation": sum(esc[i] for i in right) / max(1, len(right)),
            "served_accuracy": served_ok / len(rows),
            "cost_usd": cost,
            "x_cheap": cost / cheap_cost if cheap_cost else None,
            "x_strong": cost / strong_cost if strong_cost else None}


def shadow_pass(build, mport, rows):
    """The live quality score on this data: every cheap answer (the cheap tier
    pinned, no escalation) shadowed by the strong model with compare "auto";
    how often they agree, and how well agreement tracks the cheap answer's grade."""
    tmp = tempfile.mkdtemp(prefix="tg-eval-labels-")
    labels = os.path.join(tmp, "labels.jsonl")
    extra = {"shadow": {"rate": 1.0, "model": "strong", "max_usd_per_day": 1e6, "queue": 1000},
             "log": {"labels": labels}}
    run(build, mport, rows, {"hedging": False, "logprobs": False}, "cheap", "cheap", extra, labels)
    got = {}
    with open(labels) as f:
        for line in f:
            d = json.loads(line)
            got[int(d["id"].split("-")[1])] = d
    t = {"compared": len(got), "agree": 0, "agree_right": 0, "agree_wrong": 0, "disagree_right": 0,
         "disagree_wrong": 0, "rules": {}}
    for i, d in got.items():
        right = rows[i]["cheap_correct"]
        ok = d["label"] == 1
        t["agree"] += ok
        t[("agree_" if ok else "disagree_") + ("right" if right else "wrong")] += 1
        t["rules"][d["rule"]] = t["rules"].get(d["rule"], 0) + 1
        if "features" not in d or "messages" in d:
            raise SystemExit("eval-cascade: a label line carries prompt text without log.prompts")
    t["agreement"] = t["agree"] / max(1, t["compared"])
    t["cheap_accuracy"] = sum(r["cheap_correct"] for r in rows) / len(rows)
    return t


def load_scores(path, rows, self_check):
    if self_check:
        return {r["id"]: 9 if r["cheap_correct"] else 3 for r in rows}
    if not path:
        return {}
    scores = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            d = json.loads(line)
            s = d.get("score", d.get("verifier_score"))
            if not isinstance(s, int) or not 1 <= s <= 10:
                raise SystemExit("eval-cascade: %s:%d: score must be an integer 1..10" % (path, n))
            scores[d["id"]] = s
    return scores


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--json")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--self-check", action="store_true")
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    with open(DATA) as f:
        rows = [json.loads(l) for l in f if l.strip()]
    if a.limit:
        rows = rows[:a.limit]
    scores = load_scores(os.environ.get("TG_EVAL_VERIFIER_SCORES"), rows, a.self_check)
    missing = [r["id"] for r in rows if scores and r["id"] not in scores]
    t0 = time.time()
    snips = snippets(rows)
    mock = Proc([os.path.join(build, "mock_upstream"), "--port", "0", "--no-record", "--threads", "2"],
                r"listening on 127\.0\.0\.1:(\d+)")
    mport = int(mock.match.group(1))
    report = {"data": DATA, "rows": len(rows), "wrong": sum(not r["cheap_correct"] for r in rows),
              "verifier_scores": os.environ.get("TG_EVAL_VERIFIER_SCORES") or ("oracle" if a.self_check else None),
              "results": []}
    try:
        script_mock(mport, rows, snips, scores)
        off = {"hedging": False, "logprobs": False}
        cheap = run(build, mport, rows, off, "cheap", "cheap")
        strong = run(build, mport, rows, off, "expensive")
        cc, sc = sum(x["cost"] for x in cheap), sum(x["cost"] for x in strong)
        res = report["results"]
        res.append(summarize("always cheap", rows, cheap, cc, sc))
        res.append(summarize("always strong", rows, strong, cc, sc))
        res.append(summarize("structural only", rows, run(build, mport, rows, off), cc, sc))
        res.append(summarize("hedging (default)", rows, run(build, mport, rows, {"logprobs": False}), cc, sc))
        if scores:
            for k in range(1, 11):
                v = dict(off, verifier={"model": "verifier", "min_score": k})
                out = run(build, mport, rows, v)
                seen = {i: o["score"] for i, o in enumerate(out)}
                bad = [rows[i]["id"] for i in seen if rows[i]["id"] in scores and seen[i] != scores[rows[i]["id"]]]
                if bad:
                    raise SystemExit("eval-cascade: verifier scores not as recorded for %s" % bad[:5])
                res.append(summarize("verifier min_score %d" % k, rows, out, cc, sc))
        report["shadow"] = shadow_pass(build, mport, rows)
    finally:
        mock.stop()
    report["seconds"] = round(time.time() - t0, 1)
    report["skipped"] = {"logprobs": "the rows carry no token logprobs",
                         "consistency": "one recorded answer per row: no samples to compare"}
    if not scores:
        report["skipped"]["verifier"] = "no scores: set TG_EVAL_VERIFIER_SCORES=path (JSONL {id, score})"
    elif missing:
        report["verifier_rows_without_score"] = len(missing)
    print("eval-cascade: %d rows of %s, %d wrong cheap answers; %.0f s" %
          (len(rows), os.path.relpath(DATA, TOP), report["wrong"], report["seconds"]))
    print("  %-22s %9s %17s %17s %9s %10s %8s %8s" % ("validator", "escalated", "recall on wrong",
          "false escalation", "served ok", "cost", "x cheap", "x strong"))
    for r in report["results"]:
        print("  %-22s %9d %9.1f%% %3d/%-3d %9.1f%% %3d/%-3d %8.1f%% %10.5f %7.2fx %7.2fx" % (
            r["validator"], r["escalated"], 100 * r["recall_wrong"], r["caught_wrong"], r["wrong"],
            100 * r["false_escalation"], r["escalated_right"], r["right"], 100 * r["served_accuracy"],
            r["cost_usd"], r["x_cheap"], r["x_strong"]))
    for k, why in report["skipped"].items():
        print("  %-22s not measured: %s" % (k, why))
    t = report["shadow"]
    print("live quality score (shadow: every cheap answer compared with the strong model's, compare auto):")
    print("  %d compared: agreement %.1f%% vs the cheap answers' graded accuracy %.1f%%; rules %s" % (
        t["compared"], 100 * t["agreement"], 100 * t["cheap_accuracy"],
        ", ".join("%s %d" % kv for kv in sorted(t["rules"].items()))))
    print("  agree: %d right, %d wrong; disagree: %d right, %d wrong (labels file: label 1 = agree)" % (
        t["agree_right"], t["agree_wrong"], t["disagree_right"], t["disagree_wrong"]))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)
    if a.self_check:
        v7 = [r for r in report["results"] if r["validator"] == "verifier min_score 7"][0]
        ok = v7["recall_wrong"] == 1.0 and v7["false_escalation"] == 0.0
        print("self-check: %s (oracle scores at min_score 7: recall %.3f, false escalation %.3f)" %
              ("ok" if ok else "FAILED", v7["recall_wrong"], v7["false_escalation"]))
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
