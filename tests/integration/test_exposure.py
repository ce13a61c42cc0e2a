# SPDX-License-Identifier: MIT
"""What a request can reach and what it can see (issue 21 F5-F8;
docs/hardening.md "Operator endpoints" and "Request paths"):

F5  an answer produced under x-tiergate-max-tier is not served to the same
    tenant's uncapped request (the cap is part of the cache key when it
    restricts the ladder);
F6  /readyz without the admin key says only ready / not ready when auth is
    configured; /metrics wants the metrics key when one is set, and
    `tiergate stats` sends it;
F7  POST /v1/route counts toward the key's rpm;
F8  endpoints are matched on the raw request path: an escaped name is not
    the endpoint, escaped '/', '\\' and NUL and malformed escapes are 400."""
import functools
import hashlib
import os
import subprocess
import time

from harness import BUILD, chat_body, check, eq, test

KEY = "tg-exposure-client-1"
ADMIN = "tg-exposure-admin-2"
METRICS = "tg-exposure-metrics-3"
TIERGATE = os.path.join(BUILD, "tiergate")


def sha(k):
    return "sha256:" + hashlib.sha256(k.encode()).hexdigest()


def bearer(k):
    return {"authorization": "Bearer " + k}


def restores(fn):
    @functools.wraps(fn)
    def run(w):
        try:
            fn(w)
        finally:
            w.start()
    return run


def start_auth(w, rpm=0, **over):
    w.start(env={"TIERGATE_ADMIN_KEY": ADMIN, "TIERGATE_METRICS_KEY": METRICS},
            auth={"keys": [{"name": "client", "sha256": sha(KEY), "rpm": rpm}]}, **over)


# --- F5 --------------------------------------------------------------------

@test
def capped_answer_is_not_served_uncapped(w):
    # The cheap model always hedges: on a non-final tier that escalates, on
    # the last tier the cap allows it is the answer.
    w.mock.script({"hedge": True}, model="gpt-cheap", times=-1)
    body = chat_body("cap-key question", model="cheap", temperature=0)
    capped = {"x-tiergate-max-tier": "cheap"}
    r = w.gw.chat(body, headers=capped)
    eq(r.status, 200)
    eq(r.header("x-tiergate-model"), "mini", "capped: the hedge is the answer")
    eq(r.header("x-tiergate-cache"), "miss")
    time.sleep(0.2)  # the store is fire and forget
    r = w.gw.chat(body)
    eq(r.header("x-tiergate-cache"), "miss", "the capped answer is not this request's")
    eq(r.header("x-tiergate-model"), "mid", "uncapped, the hedge escalates")
    time.sleep(0.2)
    r = w.gw.chat(body, headers=capped)
    eq((r.header("x-tiergate-cache"), r.header("x-tiergate-model")), ("hit", "mini"),
       "the capped request finds its own answer")
    r = w.gw.chat(body)
    eq((r.header("x-tiergate-cache"), r.header("x-tiergate-model")), ("hit", "mid"))
    # A cap that restricts nothing keeps the uncapped key.
    r = w.gw.chat(body, headers={"x-tiergate-max-tier": "expensive"})
    eq((r.header("x-tiergate-cache"), r.header("x-tiergate-model")), ("hit", "mid"))
    eq(len(w.mock.requests()), 3, "mini (capped); mini then mid (uncapped)")


# --- F6 --------------------------------------------------------------------

@test
@restores
def readyz_detail_is_the_admins(w):
    start_auth(w)
    for h in ({}, bearer(KEY), bearer(METRICS), bearer("nope")):
        r = w.gw.req("GET", "/readyz", headers=h)
        eq(r.status, 200)
        eq(r.json(), {"status": "ready"}, "status only without the admin key")
    r = w.gw.req("GET", "/readyz", headers=bearer(ADMIN))
    eq(r.status, 200)
    j = r.json()
    eq(j["status"], "ready")
    eq(sorted(j["tiers"]), ["cheap", "expensive", "medium"], "the admin sees the detail")
    eq(j["tiers"]["cheap"]["models"][0]["model"], "mini")
    # Not ready (Redis unreachable): still only the status.
    start_auth(w, redis={"url": "redis://127.0.0.1:1/0"})
    r = w.gw.req("GET", "/readyz")
    eq(r.status, 503)
    eq(r.json(), {"status": "not_ready"})
    r = w.gw.req("GET", "/readyz", headers=bearer(ADMIN))
    eq(r.status, 503)
    eq(r.json()["redis"]["state"] != "connected", True)


@test
def readyz_detail_without_auth(w):
    r = w.gw.req("GET", "/readyz")
    eq(r.status, 200)
    check("tiers" in r.json() and r.json()["status"] == "ready", "no auth configured: the detail")


@test
@restores
def metrics_key(w):
    start_auth(w)
    for h in ({}, bearer(KEY), bearer("nope")):
        r = w.gw.req("GET", "/metrics", headers=h)
        eq(r.status, 401)
        eq(set(r.json()["error"]), {"message", "type", "param", "code"})
        eq(r.header("www-authenticate"), "Bearer")
    for k in (METRICS, ADMIN):
        r = w.gw.req("GET", "/metrics", headers=bearer(k))
        eq(r.status, 200)
        check(b"tiergate_requests_total" in r.body)
    eq(w.gw.req("GET", "/dashboard").status, 200, "the page itself holds no data")
    url = "http://127.0.0.1:%d" % w.gw.port
    env = {k: v for k, v in os.environ.items() if k != "TIERGATE_METRICS_KEY"}
    p = subprocess.run([TIERGATE, "stats", url], capture_output=True, timeout=20, env=env)
    eq(p.returncode, 1, "no key: refused")
    check(b"401" in p.stderr and b"TIERGATE_METRICS_KEY" in p.stderr, p.stderr)
    p = subprocess.run([TIERGATE, "stats", "--key", METRICS, url], capture_output=True, timeout=20,
                       env=env)
    eq(p.returncode, 0, p.stderr)
    check(b"requests" in p.stdout, p.stdout)
    env["TIERGATE_METRICS_KEY"] = METRICS
    p = subprocess.run([TIERGATE, "stats", url], capture_output=True, timeout=20, env=env)
    eq(p.returncode, 0, p.stderr)


# --- F7 --------------------------------------------------------------------

@test
@restores
def route_counts_toward_rpm(w):
    start_auth(w, rpm=3)
    body = chat_body("route me")
    codes = [w.gw.req("POST", "/v1/route", body, bearer(KEY)).status for _ in range(3)]
    eq(codes, [200, 200, 200])
    r = w.gw.req("POST", "/v1/route", body, bearer(KEY))
    eq(r.status, 429)
    eq(r.json()["error"]["code"], "rate_limit_exceeded")
    check(int(r.header("retry-after")) >= 1)
    r = w.gw.chat(body, headers=bearer(KEY))
    eq(r.status, 429, "one bucket for the key")
    eq(len(w.mock.requests()), 0)


# --- F8 --------------------------------------------------------------------

@test
@restores
def routes_match_the_raw_path(w):
    start_auth(w)
    adm = bearer(ADMIN)
    eq(w.gw.req("GET", "/admin/breakers", headers=adm).status, 200)
    r = w.gw.req("GET", "/%61dmin/breakers", headers=adm)
    eq(r.status, 404, "an escaped name is not the endpoint")
    eq(r.json()["error"]["code"], "unknown_url")
    r = w.gw.req("POST", "/v1/chat/%63ompletions", chat_body("enc"), bearer(KEY))
    eq(r.status, 404, "not chat")
    for path in ("/v1/chat%2Fcompletions", "/v1/chat%2fcompletions", "/admin%5Cbreakers",
                 "/v1/models/mini%00", "/v1/models/%zz", "/v1/models/%4", "/readyz%"):
        r = w.gw.req("GET", path, headers=adm)
        eq(r.status, 400, path)
        e = r.json()["error"]
        eq(e["code"], "invalid_request_path", path)
        eq(e["type"], "invalid_request_error")
    # Escapes elsewhere in a path are fine: a model id, a query argument.
    r = w.gw.req("GET", "/v1/models/%6Dini", headers=bearer(KEY))
    eq(r.status, 200)
    eq(r.json()["id"], "mini")
    eq(w.gw.req("DELETE", "/admin/cache?namespace=%61bc", headers=adm).status, 200)
    eq(len(w.mock.requests()), 0, "nothing reached the provider")
    eq(w.gw.chat(chat_body("still fine"), headers=bearer(KEY)).status, 200)
