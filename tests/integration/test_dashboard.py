# SPDX-License-Identifier: MIT
"""GET /dashboard (issue 13): the page is the embedded file byte for byte,
public, with its security headers and no external asset; loaded in headless
Chromium (tests/e2e/dashboard.mjs, playwright-core) after real traffic, the
numbers it renders equal those computed here from /metrics, its /metrics
requests carry the token from the URL fragment, and it makes no other
request; with canned /metrics it shows shadow agreement per tier (cumulative
and over a window), "no data" for a tier without comparisons, and a 401."""
import json
import os
import re
import subprocess
import tempfile
import time

from harness import ROOT, World, chat_body, check, eq, test, wait_for

DRIVER = os.path.join(ROOT, "tests", "e2e", "dashboard.mjs")
PAGE = os.path.join(ROOT, "src", "dashboard.html")
CLIENT_KEY = "dashboard-client-key-7788"


def WORLD():
    return World(breaker={"failure_threshold": 1000, "min_requests": 1000})


def load(url, scrapes=2, canned=None, allow=()):
    """Runs the Chromium driver; returns its report (fails on any page error
    but those containing a string of `allow`)."""
    args = ["node", DRIVER, url, str(scrapes)]
    path = None
    if canned is not None:
        fd, path = tempfile.mkstemp(prefix="tg-canned-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(canned, f)
        args.append(path)
    try:
        p = subprocess.run(args, capture_output=True, timeout=120)
    finally:
        if path:
            os.unlink(path)
    check(p.returncode == 0, "driver failed (%d): %s" % (p.returncode, p.stderr.decode()[-3000:]))
    report = json.loads(p.stdout.decode())
    eq([e for e in report["errors"] if not any(a in e for a in allow)], [], "errors in the page")
    eq(report["other_requests"], [], "the page loads nothing but /metrics")
    return report


def labels_of(key):
    return dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', key))


def expected_from(metrics):
    """The dashboard's figures, computed independently from a scrape."""
    e = {"requests": 0.0, "hits": 0.0, "misses": 0.0, "lookup_errors": 0.0, "cost": 0.0, "baseline": 0.0,
         "answered": {"cheap": 0.0, "medium": 0.0, "expensive": 0.0}}
    for key, v in metrics.items():
        name = key.split("{")[0]
        lab = labels_of(key)
        if name == "tiergate_requests_total":
            e["requests"] += v
            if lab["status"].startswith("2") and lab["cache"] != "hit" and lab["tier"] in e["answered"]:
                e["answered"][lab["tier"]] += v
        elif name == "tiergate_cache_lookups_total":
            k = {"hit": "hits", "miss": "misses"}.get(lab["result"], "lookup_errors")
            e[k] += v
        elif name == "tiergate_cost_usd_total":
            e["cost"] += v
        elif name == "tiergate_baseline_cost_usd_total":
            e["baseline"] += v
    return e


def close(a, b):
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


@test
def page_is_static_public_and_self_contained(w):
    w.start(env={"TIERGATE_API_KEYS": CLIENT_KEY})
    try:
        r = w.gw.req("GET", "/dashboard")
        eq(r.status, 200)
        eq(r.header("content-type"), "text/html; charset=utf-8")
        with open(PAGE, "rb") as f:
            page = f.read()
        eq(r.body, page, "served bytes are src/dashboard.html")
        csp = r.header("content-security-policy")
        for part in ("default-src 'none'", "connect-src 'self'", "frame-ancestors 'none'"):
            check(part in csp, csp)
        eq(r.header("x-content-type-options"), "nosniff")
        eq(r.header("referrer-policy"), "no-referrer")
        # No external asset: no <link>, no script/img src, no CSS url() or @import.
        text = page.decode()
        for pat in (r"<link\b", r"<script[^>]+src=", r"<img\b", r"<iframe\b", r"@import"):
            check(not re.search(pat, text, re.I), "external asset pattern %s in the page" % pat)
        check(not re.search(r"\burl\(", text), "a CSS url() in the page")
        check(not re.search(r"(?:src|href)\s*=\s*[\"']?https?:", text, re.I), "absolute asset URL")
        # HEAD works, other methods are 405 in OpenAI's error shape.
        eq(w.gw.req("HEAD", "/dashboard").status, 200)
        r = w.gw.req("POST", "/dashboard", "{}")
        eq(r.status, 405)
        eq(r.header("allow"), "GET, HEAD")
        eq(sorted(r.json()["error"].keys()), ["code", "message", "param", "type"])
        # Public while chat needs a key.
        eq(w.gw.chat(chat_body("needs a key")).status, 401)
        eq(w.gw.req("GET", "/dashboard/").status, 404)
    finally:
        w.start()


@test
def rendered_numbers_match_metrics(w):
    w.start()  # fresh counters
    # Traffic: cheap and medium misses, a cache hit, an escalation, an expensive answer.
    usage = {"prompt_tokens": 1200, "completion_tokens": 300}
    w.mock.script({"usage": usage}, model="gpt-cheap", times=2)
    body = chat_body("dashboard repeat", model="cheap", temperature=0)
    eq(w.gw.chat(body).header("x-tiergate-cache"), "miss")
    wait_for(lambda: w.redis.cmd("DBSIZE") == 1, msg="the answer stored")
    eq(w.gw.chat(body).header("x-tiergate-cache"), "hit")
    eq(w.gw.chat(chat_body("dashboard cheap 2", model="cheap")).status, 200)
    w.mock.script({"hedge": True, "usage": usage}, model="gpt-cheap")
    w.mock.script({"usage": usage}, model="gpt-mid")
    eq(w.gw.chat(chat_body("dashboard escalates", model="cheap")).header("x-tiergate-tier"), "medium")
    eq(w.gw.chat(chat_body("dashboard expensive", model="expensive")).status, 200)
    eq(w.gw.chat(chat_body("dashboard unknown model", model="nope")).status, 404)
    time.sleep(0.1)  # let the last decision's counters land

    report = load("http://127.0.0.1:%d/dashboard#interval=1&token=tok-from-fragment" % w.gw.port, scrapes=2)
    e = expected_from(w.gw.metrics())
    v = {k: (float(x) if x != "" else None) for k, x in report["values"].items()}
    check(report["status"]["scrapes"] >= 2 and not report["status"]["error"], report["status"])
    check(report["status"]["text"].endswith("· %d requests" % e["requests"]), report["status"])
    eq(e["requests"], 6.0)
    # Cost vs baseline.
    check(close(v["cost"], e["cost"]) and e["cost"] > 0, (v["cost"], e["cost"]))
    check(close(v["baseline"], e["baseline"]), (v["baseline"], e["baseline"]))
    check(close(v["saving"], (e["baseline"] - e["cost"]) / e["baseline"]), v["saving"])
    eq(report["texts"]["cost"], "$%.6f" % e["cost"])
    # Cache hit rate: 1 hit of 5 lookups (the 404 never looked up).
    eq((v["hits"], v["lookups"], v["lookup-errors"]), (e["hits"], e["hits"] + e["misses"] + e["lookup_errors"],
                                                      e["lookup_errors"]))
    eq((e["hits"], e["misses"]), (1.0, 4.0))
    check(close(v["hit-rate"], 0.2), v["hit-rate"])
    eq(report["texts"]["hit-rate"], "20.0%")
    # Tier mix over upstream answers (the hit excluded): cheap 2, medium 1, expensive 1.
    eq({t: v["answered-" + t] for t in ("cheap", "medium", "expensive")}, e["answered"])
    eq(e["answered"], {"cheap": 2.0, "medium": 1.0, "expensive": 1.0})
    eq(v["answered"], 4.0)
    for t, share in (("cheap", 0.5), ("medium", 0.25), ("expensive", 0.25)):
        check(close(v["mix-" + t], share), (t, v["mix-" + t]))
    # No shadow evaluation yet: "no data", not 0%.
    for t in ("cheap", "medium", "expensive"):
        eq(v["agree-" + t], None)
        eq(report["texts"]["agree-" + t], "no data")
    check("no data: shadow evaluation is off" in report["charts"]["chart-agree"]["text"], report["charts"])
    # The plots have points; the cost plot's last values are the totals.
    eq(report["charts"]["chart-cost"]["points"], 2 * report["status"]["scrapes"])
    check(close(float(report["charts"]["chart-cost"]["series"]["spend"]), e["cost"]), report["charts"]["chart-cost"])
    check(report["charts"]["chart-mix"]["points"] >= 3, report["charts"]["chart-mix"])
    # The token from the fragment went to /metrics as a bearer header, and nowhere else.
    check(len(report["metrics_requests"]) >= 2, report["metrics_requests"])
    for m in report["metrics_requests"]:
        eq(m["authorization"], "Bearer tok-from-fragment")
        check("tok-from-fragment" not in m["url"], m["url"])
    check("tok-from-fragment" not in w.gw.output(), "the fragment never reaches the server")


def metrics_text(agree_cheap, disagree_cheap, error_cheap=0, medium=(0, 0)):
    lines = [
        '# TYPE tiergate_requests_total counter',
        'tiergate_requests_total{status="200",tier="cheap",cache="miss"} 40',
        'tiergate_cache_lookups_total{result="hit"} 10',
        'tiergate_cache_lookups_total{result="miss"} 30',
        'tiergate_cost_usd_total{model="mini"} 0.01',
        'tiergate_baseline_cost_usd_total 0.04',
        'tiergate_shadow_comparisons_total{tier="cheap",result="agree"} %d' % agree_cheap,
        'tiergate_shadow_comparisons_total{tier="cheap",result="disagree"} %d' % disagree_cheap,
        'tiergate_shadow_comparisons_total{tier="cheap",result="error"} %d' % error_cheap,
        'tiergate_shadow_comparisons_total{tier="medium",result="agree"} %d' % medium[0],
        'tiergate_shadow_comparisons_total{tier="medium",result="disagree"} %d' % medium[1],
        'tiergate_shadow_comparisons_total{tier="expensive",result="agree"} 0',
        'tiergate_shadow_cost_usd_total 0.0042',
        'tiergate_shadow_dropped_total{reason="queue_full"} 2',
        'tiergate_shadow_dropped_total{reason="budget"} 1',
    ]
    return "\n".join(lines) + "\n"


@test
def shadow_agreement_and_errors_with_canned_metrics(w):
    # Two scrapes: cumulative cheap 19 agree / 3 disagree; within the window
    # (after the first scrape) 9 of 10 agreed. Medium 5/5, expensive none.
    canned = [{"body": metrics_text(10, 2, 1, (2, 0))}, {"body": metrics_text(19, 3, 1, (5, 0))}]
    report = load("http://127.0.0.1:%d/dashboard#interval=1&window=600" % w.gw.port, scrapes=2, canned=canned)
    v = report["values"]
    check(close(float(v["agree-cheap"]), 19 / 22), v["agree-cheap"])
    eq(report["texts"]["agree-cheap"], "86.4%")
    eq(report["texts"]["judged-cheap"], "19/22")
    eq(report["texts"]["agree-medium"], "100.0%")
    eq((v["agree-expensive"], report["texts"]["agree-expensive"]), ("", "no data"))
    eq((v["shadow-errors"], v["shadow-dropped"], report["texts"]["shadow-cost"]), ("1", "3", "$0.004200"))
    series = report["charts"]["chart-agree"]["series"]
    check(close(float(series["cheap"]), 0.9), series)
    check(close(float(series["medium"]), 1.0), series)
    eq(series["expensive"], "")
    check(report["metrics_requests"][0]["authorization"] is None, "no token, no header")

    # The gateway restarted between two scrapes (counters went down): the
    # window restarts from the new totals instead of going negative.
    report = load("http://127.0.0.1:%d/dashboard#interval=1&window=600" % w.gw.port, scrapes=2,
                  canned=[{"body": metrics_text(19, 3)}, {"body": metrics_text(1, 1)}])
    series = report["charts"]["chart-agree"]["series"]
    check(close(float(series["cheap"]), 0.5), series)
    eq(report["texts"]["agree-cheap"], "50.0%")

    # /metrics behind a key the page was not given: the page says what to do.
    report = load("http://127.0.0.1:%d/dashboard#interval=1" % w.gw.port, scrapes=1,
                  canned=[{"status": 401, "body": '{"error":{"message":"metrics key required"}}'}],
                  allow=("status of 401",))
    check("HTTP 401" in report["status"]["error"] and "#token=" in report["status"]["error"], report["status"])
    eq(report["values"]["cost"], "")

    # Something that is not tiergate's /metrics.
    report = load("http://127.0.0.1:%d/dashboard#interval=1" % w.gw.port, scrapes=1,
                  canned=[{"body": "go_goroutines 12\n"}])
    check("no tiergate metrics" in report["status"]["error"], report["status"])


@test
def shadow_agreement_from_live_shadow_traffic(w):
    """The agreement panel with real shadow evaluation behind it (issue 13):
    cheap answers agree with the shadow model twice and disagree once."""
    try:
        w.start(shadow={"rate": 1.0, "model": "large"})
        w.mock.script({"content": "#### 12"}, model="gpt-cheap", times=-1)
        w.mock.script({"content": "#### 13"}, model="gpt-large", body_contains="dash-disagree")
        w.mock.script({"content": "So it is 12."}, model="gpt-large", times=-1)
        for q in ("dash-agree-1", "dash-agree-2", "dash-disagree"):
            eq(w.gw.chat(chat_body(q, model="cheap")).status, 200)
        key = 'tiergate_shadow_comparisons_total{tier="cheap",result="%s"}'
        m = wait_for(lambda: (lambda m: m if m.get(key % "agree", 0) + m.get(key % "disagree", 0) >= 3 else None)(
            w.gw.metrics()), 10, msg="three shadow comparisons")
        eq((m[key % "agree"], m[key % "disagree"]), (2.0, 1.0))
        report = load("http://127.0.0.1:%d/dashboard#interval=1" % w.gw.port, scrapes=2)
        eq(report["texts"]["agree-cheap"], "66.7%")
        eq(report["texts"]["judged-cheap"], "2/3")
        eq(report["texts"]["agree-medium"], "no data")
        check(float(report["values"]["shadow-cost"] or 0) > 0 or report["texts"]["shadow-cost"] != "$0.000000",
              report["texts"])
    finally:
        w.start()
