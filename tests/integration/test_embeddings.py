# SPDX-License-Identifier: MIT
"""POST /v1/embeddings through the gateway (issue 14): the provider's
answer byte for byte, the body forwarded with only the model replaced,
the model rules (an embedding model or an alias of one; a chat model, a
tier or auto is a 400, an unknown model a 404, and chat refuses an
embedding model), OpenAI-shaped 400s for bad input, the exact cache
(same key rules as chat, under tiergate:v1:<ns>:emb:<hex>), cost and
metrics per model, the decision line, and upstream failures (5xx, 429,
timeout, breaker open). The official SDK's client.embeddings.create is in
tests/e2e."""
import json
import time

from harness import check, eq, request, test, wait_for, World

PRICE = 0.13  # $ per 1M input tokens
NO_TRIP = {"failure_threshold": 1000, "failure_ratio": 0}


class EmbWorld(World):
    def config(self, **over):
        cfg = World.config(self, **over)
        cfg["models"]["emb"] = {"base_url": "http://127.0.0.1:%d/v1" % self.mock.port,
                                "upstream_model": "text-embedding-3-small", "kind": "embedding",
                                "api_key_env": "MOCK_KEY", "input_per_mtok": PRICE,
                                "first_byte_timeout_ms": 1000}
        return cfg


def WORLD():
    return EmbWorld(cache={"ttl_s": 600}, breaker=NO_TRIP, aliases={"embedder": "emb"})


def post(w, body, headers=None):
    return w.gw.req("POST", "/v1/embeddings", body, headers)


def emb_recs(w):
    return [r for r in w.mock.requests() if r["path"].endswith("/embeddings")]


def err(r, status, param):
    eq(r.status, status, "%r" % r)
    e = r.json()["error"]
    eq(set(e), {"message", "type", "param", "code"})
    eq(e["param"], param, e["message"])
    return e


def ekeys(w):
    return sorted(w.redis.cmd("KEYS", "tiergate:v1:*:emb:*") or [])


@test
def answer_passes_through_byte_for_byte(w):
    body = {"model": "emb", "input": ["turn off the lights", "lights off"], "dimensions": 8,
            "user": "u-1", "encoding_format": "float", "extra_field": {"kept": [1, 2.5]}}
    r = post(w, body)
    eq(r.status, 200, "%r" % r)
    eq(r.header("content-type"), "application/json")
    rec = emb_recs(w)[-1]
    eq(rec["path"], "/v1/embeddings")
    sent = json.loads(rec["body"])
    eq(sent["model"], "text-embedding-3-small", "the provider's name for the model")
    eq({k: v for k, v in sent.items() if k != "model"}, {k: v for k, v in body.items() if k != "model"},
       "every other member forwarded as sent")
    check(rec["body"].index('"input"') < rec["body"].index('"dimensions"') < rec["body"].index('"user"'),
          "in the client's order")
    direct = request(w.mock.port, "POST", "/v1/embeddings", rec["body"])
    eq(r.body, direct.body, "the provider's bytes, untouched")
    j = r.json()
    eq(j["object"], "list")
    eq([len(d["embedding"]) for d in j["data"]], [8, 8])
    eq(r.header("x-tiergate-model"), "emb")
    eq(r.header("x-tiergate-cache"), "miss")
    d = w.gw.decision(r)
    eq(d["api"], "embeddings")
    eq(d["final_model"], "emb")
    eq(d["final_tier"], None)
    eq(len(d["attempts"]), 1)
    eq(d["attempts"][0]["outcome"], "ok")
    tokens = j["usage"]["prompt_tokens"]
    eq(d["attempts"][0]["prompt_tokens"], tokens)
    check(abs(d["cost_usd"] - tokens * PRICE / 1e6) < 1e-12, "input price only: %r" % d)
    eq(r.header("x-tiergate-cost-usd"), "%.8f" % (tokens * PRICE / 1e6))
    # base64 (what the openai npm client asks for by default) the same way
    b = post(w, {"model": "emb", "input": "turn off the lights", "encoding_format": "base64"})
    eq(b.status, 200)
    check(isinstance(b.json()["data"][0]["embedding"], str), "base64 passed through")
    # token ids and arrays of them
    for inp in ([1, 2, 3], [[1, 2], [3]]):
        t = post(w, {"model": "emb", "input": inp})
        eq(t.status, 200, "%r" % t)
        eq(len(t.json()["data"]), 1 if isinstance(inp[0], int) else 2)


@test
def model_rules(w):
    r = post(w, {"model": "embedder", "input": "x"})
    eq(r.status, 200, "an alias of an embedding model")
    eq(r.header("x-tiergate-model"), "emb")
    eq(json.loads(emb_recs(w)[-1]["body"])["model"], "text-embedding-3-small")
    for model in ("mini", "cheap", "auto"):
        e = err(post(w, {"model": model, "input": "x"}), 400, "model")
        check("not an embedding model" in e["message"], e["message"])
        eq(e["type"], "invalid_request_error")
    e = err(post(w, {"model": "no-such-model", "input": "x"}), 404, "model")
    eq(e["code"], "model_not_found")
    n = len(w.mock.requests())
    # chat refuses an embedding model, by id or alias, the way OpenAI refuses a non-chat model
    for model in ("emb", "embedder"):
        c = w.gw.req("POST", "/v1/chat/completions",
                     {"model": model, "messages": [{"role": "user", "content": "hi"}]})
        e = err(c, 404, "model")
        check("embedding model" in e["message"], e["message"])
    eq(len(w.mock.requests()), n, "nothing reached upstream")
    lst = w.gw.req("GET", "/v1/models").json()
    check("emb" in [m["id"] for m in lst["data"]], "listed in /v1/models")


@test
def bad_input_is_an_openai_400(w):
    cases = [({"input": "x"}, "model"), ({"model": 5, "input": "x"}, "model"),
             ({"model": "emb"}, "input"), ({"model": "emb", "input": ""}, "input"),
             ({"model": "emb", "input": []}, "input"), ({"model": "emb", "input": ["a", ""]}, "input"),
             ({"model": "emb", "input": ["a", [1]]}, "input"), ({"model": "emb", "input": [[]]}, "input"),
             ({"model": "emb", "input": [-1]}, "input"), ({"model": "emb", "input": {"a": 1}}, "input"),
             ({"model": "emb", "input": ["x"] * 2049}, "input"),
             ({"model": "emb", "input": "x", "dimensions": 0}, "dimensions"),
             ({"model": "emb", "input": "x", "dimensions": "8"}, "dimensions"),
             ({"model": "emb", "input": "x", "encoding_format": "hex"}, "encoding_format"),
             ({"model": "emb", "input": "x", "user": 7}, "user")]
    for body, param in cases:
        err(post(w, body), 400, param)
    for raw in ("", "[]", "{", '{"model": "emb", "model": "emb", "input": "x"}', "[" * 100 + "]" * 100):
        err(w.gw.req("POST", "/v1/embeddings", raw), 400, None)
    eq(emb_recs(w), [], "nothing reached upstream")
    eq(w.gw.req("GET", "/v1/embeddings").status, 405)
    r = post(w, {"model": "emb", "input": "x"}, {"x-tiergate-cache-ttl": "soon"})
    eq(r.status, 400)


@test
def exact_cache_like_chat(w):
    body = {"model": "emb", "input": ["alpha", "beta"], "user": "a"}
    a = post(w, body)
    eq(a.header("x-tiergate-cache"), "miss")
    wait_for(lambda: ekeys(w), 5, msg="the entry")
    keys = ekeys(w)
    eq(len(keys), 1)
    check(keys[0].startswith("tiergate:v1:anon:emb:"), keys[0])
    check(590 <= w.redis.cmd("TTL", keys[0]) <= 600, "cache.ttl_s")
    # key order, white space and the user field do not matter
    b = w.gw.req("POST", "/v1/embeddings", '{ "user":"b", "input":["alpha","beta"],\n "model":"emb" }')
    eq(b.status, 200)
    eq(b.header("x-tiergate-cache"), "hit")
    eq(b.body, a.body, "the stored answer byte for byte")
    eq(b.header("x-tiergate-cost-usd"), "0.00000000")
    eq(len(emb_recs(w)), 1, "an identical request is a Redis hit")
    d = w.gw.decision(b)
    eq((d["api"], d["cache"], d["attempts"], d["cost_usd"]), ("embeddings", "hit", [], 0.0))
    check(d["saved_usd"] > 0, "a hit saves what the call cost")
    # anything that changes the answer is another entry
    for other in ({"model": "embedder", "input": ["alpha", "beta"]},
                  {"model": "emb", "input": ["beta", "alpha"]},
                  {"model": "emb", "input": ["alpha", "beta"], "encoding_format": "base64"},
                  {"model": "emb", "input": ["alpha", "beta"], "dimensions": 16}):
        eq(post(w, other).header("x-tiergate-cache"), "miss", json.dumps(other))
    # tenants, Cache-Control and the TTL header as for chat
    eq(post(w, body, {"authorization": "Bearer t-other"}).header("x-tiergate-cache"), "miss")
    eq(post(w, body, {"cache-control": "no-cache"}).header("x-tiergate-cache"), "bypass")
    eq(post(w, body, {"cache-control": "no-store"}).header("x-tiergate-cache"), "bypass")
    n = len(ekeys(w))
    post(w, {"model": "emb", "input": "gamma"}, {"cache-control": "no-store"})
    time.sleep(0.2)
    eq(len(ekeys(w)), n, "no-store stores nothing")
    post(w, {"model": "emb", "input": "delta"}, {"x-tiergate-cache-ttl": "30"})
    wait_for(lambda: len(ekeys(w)) == n + 1, 5, msg="the entry with a TTL")
    check(any(0 < w.redis.cmd("TTL", k) <= 30 for k in ekeys(w)), "x-tiergate-cache-ttl")
    # a chat request and an embeddings request never share an entry
    check(all(":emb:" in k for k in w.redis.cmd("KEYS", "tiergate:v1:*")), "only emb: keys")
    m = w.gw.metrics()
    eq(m['tiergate_embeddings_requests_total{status="200",cache="hit"}'], 1.0)
    check(m['tiergate_tokens_total{model="emb",kind="prompt"}'] > 0, "tokens per model")
    check(m['tiergate_cost_usd_total{model="emb"}'] > 0, "cost per model")
    check(m['tiergate_upstream_requests_total{model="emb",outcome="ok"}'] >= 5, "calls per model")


@test
def an_invalid_answer_is_refused_not_stored(w):
    # cascade.final_invalid "error" (the default) holds for embeddings too:
    # a malformed final answer is a 502, not a 200 the SDK reads as no vectors
    w.mock.ctl("POST", "/_mock/script", {"endpoint": "embeddings", "action": {"body": '{"data": []}'}})
    r = post(w, {"model": "emb", "input": "x"})
    e = err(r, 502, None)
    eq(e["code"], "invalid_upstream_response")
    d = w.gw.decision(r)
    eq(d["attempts"][0]["outcome"], "invalid")
    time.sleep(0.2)
    eq(ekeys(w), [], "never cached")
    w.mock.ctl("POST", "/_mock/script", {"endpoint": "embeddings", "action": {"body": "not json"}})
    r = post(w, {"model": "emb", "input": "y"})
    eq(r.status, 502)


@test
def upstream_failures(w):
    w.mock.ctl("POST", "/_mock/script", {"endpoint": "embeddings", "action": {"status": 500}})
    r = post(w, {"model": "emb", "input": "a"})
    e = err(r, 502, None)
    eq(e["type"], "upstream_error")
    eq(w.gw.decision(r)["attempts"][0]["outcome"], "http_5xx")
    w.mock.ctl("POST", "/_mock/script", {"endpoint": "embeddings",
                                         "action": {"status": 429, "headers": {"retry-after": "7"}}})
    r = post(w, {"model": "emb", "input": "b"})
    eq(r.status, 429, "the provider's 429 passed back")
    eq(r.header("retry-after"), "7")
    w.mock.ctl("POST", "/_mock/script", {"endpoint": "embeddings", "action": {"status": 400,
               "error": {"message": "bad dims", "type": "invalid_request_error"}}})
    r = post(w, {"model": "emb", "input": "c"})
    eq(r.status, 400)
    eq(r.json()["error"]["message"], "bad dims", "a 4xx is the client's: passed back")
    w.mock.ctl("POST", "/_mock/script", {"endpoint": "embeddings", "action": {"delay_ms": 1500}})
    r = post(w, {"model": "emb", "input": "d"})
    eq(r.status, 504, "%r" % r)
    time.sleep(0.2)
    eq(ekeys(w), [], "no failure is cached")
    eq(w.gw.req("GET", "/healthz").status, 200)


@test
def breaker_open_is_503(w):
    try:
        w.start(breaker={"failure_threshold": 2, "failure_ratio": 0, "cooldown_ms": 60000})
        w.mock.ctl("POST", "/_mock/script", {"endpoint": "embeddings", "times": 2, "action": {"status": 503}})
        for i in range(2):
            eq(post(w, {"model": "emb", "input": "q%d" % i}).status, 502)
        n = len(emb_recs(w))
        r = post(w, {"model": "emb", "input": "q9"})
        e = err(r, 503, None)
        check(int(r.header("retry-after")) >= 1, "Retry-After")
        eq(len(emb_recs(w)), n, "no call while open")
        eq(w.gw.decision(r)["attempts"][0]["outcome"], "breaker_open")
        check("breaker" in e["message"], e["message"])
    finally:
        w.start()


@test
def keys_and_limits_apply(w):
    try:
        w.start(env={"TIERGATE_API_KEYS": "k-emb"}, auth={"rpm": 2})
        eq(post(w, {"model": "emb", "input": "x"}).status, 401)
        h = {"authorization": "Bearer k-emb"}
        eq(post(w, {"model": "emb", "input": "x"}, h).status, 200)
        eq(post(w, {"model": "emb", "input": "y"}, h).status, 200)
        r = post(w, {"model": "emb", "input": "z"}, h)
        eq(r.status, 429, "the key's rpm counts embeddings too")
        check(r.header("retry-after"), "Retry-After")
    finally:
        w.start()
