# SPDX-License-Identifier: MIT
"""The semantic cache (issue 14) with a real Redis and the mock's
bag-of-words embeddings: a reordered / re-punctuated paraphrase is served
as x-tiergate-cache: semantic and costs only the embedding call; one
changed number, an added negation, on -> off, other tools, another
response_format or temperature are misses with the right reason; TTL
expiry; the admin flush; Redis down (skipped, exact path fails open);
the embedding model's breaker open (skipped) and its failures and
timeouts (a miss, never an error); a second gateway started later
serving an entry stored by the first and following its stores and
flushes; per-request controls. Also the mock's POST /v1/embeddings
itself. Guards, index and Redis format are unit tests
(tests/unit/test_semguard.c, test_semindex.c, test_semstore.c); the
embeddings endpoint is tests/integration/test_embeddings.py."""
import base64
import hashlib
import json
import struct
import time

from harness import Gateway, check, eq, request, test, wait_for, World

ADMIN = "admin-secret-for-semantic-tests"
CONTEXT = ("I am writing the user guide for our home automation hub, which controls lamps, "
           "heating, blinds and door locks in every room through a small web dashboard and a "
           "phone app. Please explain in plain words what the hub does when it receives the "
           "request below.")
EMB_PRICE = 0.5  # $ per 1M input tokens: visible in x-tiergate-cost-usd, below a chat answer
SEMANTIC = {"enabled": True, "model": "emb", "timeout_ms": 1500, "sync_ms": 100}
# Breakers are under test in one place only: keep deliberate failures from tripping them.
NO_TRIP = {"failure_threshold": 1000, "failure_ratio": 0}
REDIS_OPTS = {"lookup_timeout_ms": 200, "connect_timeout_ms": 300, "reconnect_min_ms": 50,
              "reconnect_max_ms": 300}


class SemWorld(World):
    """The gateway keeps its semantic index across tests (FLUSHALL does not
    reach it): each test uses its own tenant, and after the flush the
    follower gets a moment to notice the log is gone."""

    def config(self, **over):
        cfg = World.config(self, **over)
        cfg["models"]["emb"] = {"base_url": "http://127.0.0.1:%d/v1" % self.mock.port,
                                "upstream_model": "mock-embed", "kind": "embedding",
                                "api_key_env": "MOCK_KEY", "input_per_mtok": EMB_PRICE}
        return cfg

    def reset(self):
        World.reset(self)
        time.sleep(0.3)


def WORLD():
    return SemWorld(cache={"ttl_s": 600, "semantic": SEMANTIC}, breaker=NO_TRIP, redis=REDIS_OPTS,
                    aliases={"embedder": "emb"})


def embed(w, body):
    return request(w.mock.port, "POST", "/v1/embeddings", body)


def cos(a, b):
    return sum(x * y for x, y in zip(a, b))


def bearer(tok):
    return {"authorization": "Bearer " + tok}


def tkeys(w, pattern="tiergate:v1:*"):
    out, cursor = [], "0"
    while True:
        cursor, keys = w.redis.cmd("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
        out += keys
        if cursor == "0":
            return sorted(out)


def blob(dims, params, expires_ms):
    """A vector as semstore.c writes it (semstore.h: the v1 layout)."""
    guard = bytes([1]) + bytes(36)  # semguard wire form, version 1, no items
    head = b"TGSV" + bytes([1, 1]) + struct.pack("<HQQQ", dims, 0x1234, expires_ms, params)
    head += guard + bytes(3)
    check(len(head) == 72, "header is 72 bytes")
    return head + bytes(range(1, dims + 1))


# --- helpers for the semantic tests -------------------------------------------

def ask(gw, text, tenant, headers=None, **fields):
    body = {"model": "cheap", "temperature": 0, "messages": [{"role": "user", "content": text}]}
    body.update(fields)
    h = bearer(tenant)
    h.update(headers or {})
    return gw.req("POST", "/v1/chat/completions", body, h)


def ns_of(token):
    return hashlib.sha256(("tiergate-ns:" + token).encode()).hexdigest()[:16]


def vectors(w, tenant):
    return tkeys(w, "tiergate:v1:%s:sem:*" % ns_of(tenant))


def sem_counts(gw):
    m = gw.metrics()
    return {k[len('tiergate_semantic_lookups_total{result="'):-2]: v for k, v in m.items()
            if k.startswith("tiergate_semantic_lookups_total")}


def delta(before, after):
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


def chat_calls(w):
    return [r for r in w.mock.requests() if r["path"].endswith("/chat/completions")]


def embed_calls(w):
    return [r for r in w.mock.requests() if r["path"].endswith("/embeddings")]


def answer(r):
    return r.json()["choices"][0]["message"]["content"]


def first(w, tenant, text, gw=None, **fields):
    """A first request: a miss that stores its answer and, once the
    vector is in Redis (stores are fire and forget), returns."""
    before = len(vectors(w, tenant))
    r = ask(gw or w.gw, text, tenant, **fields)
    eq(r.status, 200, "%r" % r)
    eq(r.header("x-tiergate-cache"), "miss")
    wait_for(lambda: len(vectors(w, tenant)) > before, 5, msg="the vector in Redis")
    return r


def restart(w, **over):
    """A gateway of its own, once every shard's Redis connection answers
    (/readyz lands on one shard at a time)."""
    w.start(**over)
    wait_for(lambda: all(w.gw.req("GET", "/readyz").status == 200 for _ in range(6)), 5,
             msg="every shard ready")


def emb_cost(d):
    """The embedding call's cost as the decision line reports it."""
    return d["semantic"]["embedding"]["prompt_tokens"] * EMB_PRICE / 1e6


@test
def mock_embeddings_openai_shape(w):
    r = embed(w, {"model": "mock-embed", "input": ["turn off the lights", "lights, turn off the!"]})
    eq(r.status, 200, "%r" % r)
    j = r.json()
    eq(j["object"], "list")
    eq([d["index"] for d in j["data"]], [0, 1])
    eq({d["object"] for d in j["data"]}, {"embedding"})
    eq(len(j["data"][0]["embedding"]), 256, "default dimensions")
    eq(j["usage"], {"prompt_tokens": 8, "total_tokens": 8})
    check(abs(cos(j["data"][0]["embedding"], j["data"][0]["embedding"]) - 1) < 1e-6, "unit length")
    check(cos(j["data"][0]["embedding"], j["data"][1]["embedding"]) > 0.9999, "order and punctuation do not matter")
    # base64 (the openai npm client's default) is the float32 vector, little-endian
    b = embed(w, {"model": "m", "input": "turn off the lights", "dimensions": 16,
                  "encoding_format": "base64"}).json()["data"][0]["embedding"]
    f = embed(w, {"model": "m", "input": "turn off the lights", "dimensions": 16}).json()["data"][0]["embedding"]
    eq(list(struct.unpack("<16f", base64.b64decode(b))),
       [struct.unpack("<f", struct.pack("<f", x))[0] for x in f], "base64 = float")
    for body, param in (({"model": "m", "input": ""}, "input"), ({"model": "m", "input": [1, "a"]}, "input"),
                        ({"input": "x"}, "model"), ({"model": "m", "input": "x", "dimensions": 0}, "dimensions"),
                        ({"model": "m", "input": "x", "encoding_format": "hex"}, "encoding_format")):
        r = embed(w, body)
        eq(r.status, 400, json.dumps(body))
        eq(r.json()["error"]["param"], param)
        eq(set(r.json()["error"]), {"message", "type", "param", "code"})
    recs = w.mock.requests()
    eq(recs[-1]["path"], "/v1/embeddings")
    eq(w.mock.stats()["requests"], 0, "embeddings are not counted as chat requests")


@test
def mock_embeddings_faults_and_endpoint_rules(w):
    w.mock.ctl("POST", "/_mock/script", {"endpoint": "embeddings", "times": 1,
                                         "action": {"status": 503, "delay_ms": 100}})
    chat = request(w.mock.port, "POST", "/v1/chat/completions", {"model": "m", "messages": []})
    eq(chat.status, 200, "a rule for embeddings is not used by chat")
    eq(embed(w, {"model": "m", "input": "x"}).status, 503)
    eq(embed(w, {"model": "m", "input": "x"}).status, 200, "times 1")
    w.mock.script({"reset": "before_headers"})
    try:
        embed(w, {"model": "m", "input": "x"})
        check(False, "expected a reset")
    except OSError:
        pass
    eq(w.mock.stats()["embeddings"], 3)


@test
def mock_embeddings_pairs_the_guards_must_catch(w):
    inputs = [CONTEXT + " Set the thermostat to 21 degrees.", CONTEXT + " Set the thermostat to 24 degrees.",
              CONTEXT + " Should the hub lock the door?", CONTEXT + " Should the hub not lock the door?",
              CONTEXT + " Turn on the lights.", CONTEXT + " Turn off the lights.",
              "The lights - turn on! " + CONTEXT.lower(), CONTEXT + " Turn on the lights."]
    e = [d["embedding"] for d in embed(w, {"model": "m", "input": inputs}).json()["data"]]
    for i, what in ((0, "changed number"), (2, "added not"), (4, "on -> off")):
        c = cos(e[i], e[i + 1])
        check(0.97 < c < 0.9999, "%s: cosine %.4f, want in (0.97, 1)" % (what, c))
    check(cos(e[6], e[7]) > 0.9999, "reordered, re-punctuated paraphrase")


@test
def admin_flush_removes_vectors_and_the_log(w):
    try:
        w.start(env={"TIERGATE_ADMIN_KEY": ADMIN})
        digests = ["%064x" % (i * 7919) for i in range(3)]
        for ns in ("aaaa1111bbbb2222", "cccc3333dddd4444"):
            for i, d in enumerate(digests):
                w.redis.cmd("SET", "tiergate:v1:%s:%s" % (ns, d), "{}", "EX", 600)
                w.redis.cmd("SET", "tiergate:v1:%s:sem:%s" % (ns, d), blob(8, i, 1 << 50), "EX", 600)
                w.redis.cmd("XADD", "tiergate:v1:_semlog", "MAXLEN", "~", 1000, "*",
                            "op", "add", "ns", ns, "key", d)
        w.redis.cmd("SET", "user:1", "keep")
        eq(w.redis.cmd("STRLEN", "tiergate:v1:aaaa1111bbbb2222:sem:" + digests[0]), 72 + 8)
        r = w.gw.req("DELETE", "/admin/cache?namespace=aaaa1111bbbb2222", headers=bearer(ADMIN))
        eq(r.status, 200, "%r" % r)
        eq(r.json(), {"deleted": 6}, "3 entries and their 3 vectors")
        eq(tkeys(w, "tiergate:v1:aaaa1111bbbb2222:*"), [])
        eq(len(tkeys(w, "tiergate:v1:cccc3333dddd4444:sem:*")), 3, "the other tenant's vectors stay")
        # ... and appends a flush event (fire and forget), so other replicas drop it from memory
        wait_for(lambda: w.redis.cmd("XLEN", "tiergate:v1:_semlog") == 7, 5, msg="the flush event")
        last = w.redis.cmd("XREVRANGE", "tiergate:v1:_semlog", "+", "-", "COUNT", 1)[0][1]
        eq(last, ["op", "flush", "ns", "aaaa1111bbbb2222"])
        r = w.gw.req("DELETE", "/admin/cache", headers=bearer(ADMIN))
        eq(r.json(), {"deleted": 7}, "3 entries, 3 vectors, the log")
        wait_for(lambda: tkeys(w) == ["tiergate:v1:_semlog"], 5, msg="only the new log")
        eq([e[1] for e in w.redis.cmd("XRANGE", "tiergate:v1:_semlog", "-", "+")],
           [["op", "flush", "ns", "*"]])
        eq(w.redis.cmd("GET", "user:1"), "keep")
    finally:
        w.start()


# --- the semantic cache in the request path -----------------------------------

@test
def paraphrase_is_a_semantic_hit_costing_only_the_embedding(w):
    t = "t-paraphrase"
    a = first(w, t, CONTEXT + " Set the thermostat to 21 degrees.")
    before = sem_counts(w.gw)
    b = ask(w.gw, "Request - to 21 degrees, set the thermostat! " + CONTEXT.upper(), t)
    eq(b.status, 200, "%r" % b)
    eq(b.header("x-tiergate-cache"), "semantic")
    check(float(b.header("x-tiergate-similarity")) >= 0.97, b.header("x-tiergate-similarity"))
    eq(b.body, a.body, "the stored answer, byte for byte")
    eq(b.header("x-tiergate-model"), "mini")
    eq(b.header("x-tiergate-escalations"), "0")
    eq(b.header("x-tiergate-route"), None, "a hit is not routed")
    eq(len(chat_calls(w)), 1, "no second chat call")
    eq(len(embed_calls(w)), 2, "one embedding call per lookup")
    d = w.gw.decision(b)
    eq(d["cache"], "semantic")
    eq(d["attempts"], [])
    sem = d["semantic"]
    eq((sem["result"], sem["guard"]), ("hit", "pass"))
    eq(sem["key"], w.gw.decision(a)["request_id"] and sem["key"])
    check(len(sem["key"]) == 64 and w.redis.cmd("EXISTS", "tiergate:v1:%s:%s" % (ns_of(t), sem["key"])),
          "the matched entry's exact key")
    eq(sem["embedding"]["model"], "emb")
    eq(sem["embedding"]["outcome"], "ok")
    check(abs(d["cost_usd"] - emb_cost(d)) < 1e-9, "the answer is free, the embedding is not: %r" % d)
    eq(b.header("x-tiergate-cost-usd"), "%.8f" % emb_cost(d))
    check(d["saved_usd"] > 0, "a hit saves the baseline's cost")
    eq(delta(before, sem_counts(w.gw)), {"hit": 1})
    m = w.gw.metrics()
    check(m.get('tiergate_requests_total{status="200",tier="cheap",cache="semantic"}', 0) >= 1, "by cache label")
    check(m.get('tiergate_tokens_total{model="emb",kind="prompt"}', 0) > 0, "embedding tokens per model")
    # the same as a stream: synthesized from the stored completion
    s = ask(w.gw, "the thermostat: set to 21 degrees. " + CONTEXT, t, stream=True)
    eq(s.header("x-tiergate-cache"), "semantic")
    ev = s.events()
    eq(ev[-1], "[DONE]")
    eq("".join(e["choices"][0]["delta"].get("content") or "" for e in ev[:-1] if e["choices"]), answer(a))


@test
def first_miss_stores_vector_with_the_entry(w):
    t = "t-store"
    a = first(w, t, CONTEXT + " Close the blinds in the kitchen.")
    d = w.gw.decision(a)
    eq(d["semantic"]["result"], "miss")
    eq(d["semantic"]["similarity"], None)
    check(abs(d["cost_usd"] - (d["attempts"][0]["cost_usd"] + emb_cost(d))) < 1e-9,
          "a miss costs the call and the embedding: %r" % d)
    keys = vectors(w, t)
    eq(len(keys), 1)
    entry = keys[0].replace(":sem:", ":")
    check(w.redis.cmd("EXISTS", entry) == 1, "the vector points at the entry")
    ttl_e, ttl_v = w.redis.cmd("TTL", entry), w.redis.cmd("TTL", keys[0])
    check(590 <= ttl_v <= ttl_e <= 600, "TTL as the entry's: %s %s" % (ttl_e, ttl_v))
    ev = w.redis.cmd("XREVRANGE", "tiergate:v1:_semlog", "+", "-", "COUNT", 1)[0][1]
    eq(ev, ["op", "add", "ns", ns_of(t), "key", entry.rsplit(":", 1)[1]])
    # what was embedded: the user text, to the configured model, nothing else
    rec = embed_calls(w)[-1]
    body = json.loads(rec["body"])
    eq(body, {"model": "mock-embed", "input": CONTEXT + " Close the blinds in the kitchen."})


@test
def guards_reject_what_the_threshold_cannot(w):
    t = "t-guards"
    first(w, t, CONTEXT + " Set the thermostat to 21 degrees.")
    first(w, t, CONTEXT + " Should the hub lock the door?")
    first(w, t, CONTEXT + " Turn on the lights.")
    cases = [(CONTEXT + " Set the thermostat to 24 degrees.", "guard_number", "number"),
             (CONTEXT + " Should the hub not lock the door?", "guard_negation", "negation"),
             (CONTEXT + " Turn off the lights.", "guard_polarity", "polarity")]
    for text, result, guard in cases:
        before = sem_counts(w.gw)
        r = ask(w.gw, text, t)
        eq(r.status, 200)
        eq(r.header("x-tiergate-cache"), "miss", text[-40:])
        eq(r.header("x-tiergate-similarity"), None)
        sem = w.gw.decision(r)["semantic"]
        eq((sem["result"], sem["guard"]), (result, guard), text[-40:])
        check(0.97 <= sem["similarity"] < 1.0, "similar enough to be served without the guard: %r" % sem)
        eq(delta(before, sem_counts(w.gw)), {result: 1})
    eq(len(chat_calls(w)), 6, "every guarded request went upstream")


@test
def other_parameters_are_misses(w):
    t = "t-params"
    tools = [{"type": "function", "function": {"name": "lights", "parameters": {"type": "object"}}}]
    q = CONTEXT + " What happens at sunset?"
    para = "At sunset, what happens? " + CONTEXT
    first(w, t, q, tools=tools)
    variants = [{"tools": [{"type": "function", "function": {"name": "blinds",
                                                             "parameters": {"type": "object"}}}]},
                {},  # no tools at all
                {"tools": tools, "response_format": {"type": "json_object"}},
                {"tools": tools, "temperature": 0.5},
                {"tools": tools, "model": "medium"},
                {"tools": tools, "max_tokens": 50}]
    for v in variants:
        before = sem_counts(w.gw)
        fields = dict(v)
        body_model = fields.pop("model", "cheap")
        r = ask(w.gw, para, t, model=body_model, **fields)
        eq(r.header("x-tiergate-cache"), "miss", json.dumps(v))
        sem = w.gw.decision(r)["semantic"]
        eq(sem["result"], "params", json.dumps(v))
        eq(sem["guard"], None)
        eq(delta(before, sem_counts(w.gw)), {"params": 1}, json.dumps(v))
    # an answer-changing header is a parameter too
    r = ask(w.gw, para, t, headers={"x-tiergate-max-tier": "medium"}, tools=tools)
    eq(w.gw.decision(r)["semantic"]["result"], "params")
    # the same parameters (the user field does not count): served
    r = ask(w.gw, "What happens at sunset?! " + CONTEXT, t, tools=tools, user="someone-else")
    eq(r.header("x-tiergate-cache"), "semantic")


@test
def assistant_turns_must_match_verbatim(w):
    t = "t-turns"
    msgs = lambda u: [{"role": "system", "content": "You are terse."},  # noqa: E731
                      {"role": "user", "content": "Hi"},
                      {"role": "assistant", "content": "Hello, how can I help?"},
                      {"role": "user", "content": u}]
    q = CONTEXT + " Dim the bedroom lamps."
    r = w.gw.req("POST", "/v1/chat/completions", {"model": "cheap", "temperature": 0, "messages": msgs(q)},
                 bearer(t))
    eq(r.header("x-tiergate-cache"), "miss")
    wait_for(lambda: len(vectors(w, t)) == 1, 5, msg="vector")
    para = "Dim the bedroom lamps! " + CONTEXT
    r = w.gw.req("POST", "/v1/chat/completions", {"model": "cheap", "temperature": 0, "messages": msgs(para)},
                 bearer(t))
    eq(r.header("x-tiergate-cache"), "semantic")
    other = msgs(para)
    other[2]["content"] = "Hi! What do you need?"
    r = w.gw.req("POST", "/v1/chat/completions", {"model": "cheap", "temperature": 0, "messages": other},
                 bearer(t))
    eq(w.gw.decision(r)["semantic"]["result"], "params")


@test
def tenants_never_share_vectors(w):
    first(w, "t-tenant-a", CONTEXT + " Open the garage door.")
    r = ask(w.gw, "Open the garage door! " + CONTEXT, "t-tenant-b")
    eq(r.header("x-tiergate-cache"), "miss")
    eq(w.gw.decision(r)["semantic"]["result"], "miss")
    r = ask(w.gw, "Open the garage door! " + CONTEXT, "t-tenant-a")
    eq(r.header("x-tiergate-cache"), "semantic")


@test
def controls_bypass_it(w):
    t = "t-controls"
    first(w, t, CONTEXT + " Lower the heating in the hall.")
    para = "Lower the heating in the hall, please. " + CONTEXT
    n = len(embed_calls(w))
    before = sem_counts(w.gw)
    # (each its own paraphrase: a request that went upstream stored an exact entry)
    for i, h in enumerate(({"x-tiergate-semantic": "off"}, {"x-tiergate-semantic": "OFF"},
                           {"cache-control": "no-cache"}, {"cache-control": "no-store"})):
        r = ask(w.gw, "!" * (i + 1) + para, t, headers=h)
        eq(r.status, 200)
        check(r.header("x-tiergate-cache") in ("miss", "bypass"), "%r: %s" % (h, r.header("x-tiergate-cache")))
        check("semantic" not in w.gw.decision(r), "no semantic step: %r" % h)
    r = ask(w.gw, CONTEXT + " Lower the heating in the hall.", t, temperature=1.5)
    eq(r.header("x-tiergate-cache"), "bypass", "too hot for any cache")
    eq(len(embed_calls(w)), n, "no embedding call for any of them")
    eq(delta(before, sem_counts(w.gw)), {}, "and nothing counted")
    r = ask(w.gw, para, t, headers={"x-tiergate-semantic": "on"})
    eq(r.header("x-tiergate-cache"), "semantic")
    r = ask(w.gw, para, t, headers={"x-tiergate-semantic": "maybe"})
    eq(r.status, 400)
    eq(set(r.json()["error"]), {"message", "type", "param", "code"})
    check("x-tiergate-semantic" in r.json()["error"]["message"], "%r" % r)
    # no compared text (a tool result after an assistant turn only): no step
    body = {"model": "cheap", "temperature": 0, "messages": [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"}]}
    r = w.gw.req("POST", "/v1/chat/completions", body, bearer(t))
    eq(r.status, 200)
    check("semantic" not in w.gw.decision(r), "nothing to compare")


@test
def ttl_expiry_makes_it_a_miss(w):
    t = "t-ttl"
    r = ask(w.gw, CONTEXT + " Water the plants.", t, headers={"x-tiergate-cache-ttl": "1"})
    eq(r.header("x-tiergate-cache"), "miss")
    wait_for(lambda: len(vectors(w, t)) == 1, 5, msg="vector")
    check(w.redis.cmd("TTL", vectors(w, t)[0]) <= 1, "the vector's TTL is the entry's")
    time.sleep(2.2)
    r = ask(w.gw, "Water the plants! " + CONTEXT, t)
    eq(r.header("x-tiergate-cache"), "miss")
    eq(w.gw.decision(r)["semantic"]["result"], "miss", "expired in the index too")


@test
def entry_gone_from_redis_is_a_miss(w):
    t = "t-gone"
    first(w, t, CONTEXT + " Unlock the back door at noon.")
    key = vectors(w, t)[0].replace(":sem:", ":")
    w.redis.cmd("DEL", key)  # evicted by Redis, say: the index still points at it
    para = "At noon, unlock the back door. " + CONTEXT
    r = ask(w.gw, para, t)
    eq(r.header("x-tiergate-cache"), "miss")
    sem = w.gw.decision(r)["semantic"]
    eq(sem["result"], "miss")
    eq(sem["key"], key.rsplit(":", 1)[1], "the candidate that was gone")


@test
def admin_flush_clears_vectors_and_index(w):
    t = "t-flush"
    try:
        restart(w, env={"TIERGATE_ADMIN_KEY": ADMIN})
        first(w, t, CONTEXT + " Switch the porch light timer.")
        r = w.gw.req("DELETE", "/admin/cache?namespace=" + ns_of(t), headers=bearer(ADMIN))
        eq(r.status, 200)
        eq(r.json(), {"deleted": 2}, "the entry and its vector")
        eq(vectors(w, t), [])
        r = ask(w.gw, "The porch light timer: switch it. " + CONTEXT, t)
        eq(r.header("x-tiergate-cache"), "miss")
        sem = w.gw.decision(r)["semantic"]
        eq((sem["result"], sem["key"]), ("miss", None), "gone from the index, not merely from Redis")
    finally:
        w.start()


@test
def redis_down_exact_fails_open_semantic_skipped(w):
    t = "t-redis-down"
    first(w, t, CONTEXT + " Start the robot vacuum.")
    port = w.redis.port
    n = len(embed_calls(w))
    before = sem_counts(w.gw)
    w.redis.kill()
    try:
        r = ask(w.gw, "Start the robot vacuum! " + CONTEXT, t)
        eq(r.status, 200, "%r" % r)
        eq(r.header("x-tiergate-cache"), "error")
        eq(w.gw.decision(r)["semantic"]["result"], "skipped")
        eq(len(embed_calls(w)), n, "no embedding call when the entry could not be read")
        eq(delta(before, sem_counts(w.gw)), {"skipped": 1})
    finally:
        from harness import Redis
        w.redis = Redis(port=port)
        w.wait_redis_clients(w.config())


@test
def embedding_failures_are_misses_never_errors(w):
    t = "t-emb-fail"
    first(w, t, CONTEXT + " Play music in the living room.")
    para = "In the living room, play music. " + CONTEXT
    before = sem_counts(w.gw)
    for i, action in enumerate(({"status": 500}, {"status": 400}, {"body": "{\"data\": []}"},
                                {"reset": "mid_body"}, {"delay_ms": 2500})):
        w.mock.ctl("POST", "/_mock/script", {"endpoint": "embeddings", "action": action})
        r = ask(w.gw, "?" * (i + 1) + para, t)
        eq(r.status, 200, "%r: %r" % (action, r))
        eq(r.header("x-tiergate-cache"), "miss", json.dumps(action))
        sem = w.gw.decision(r)["semantic"]
        eq(sem["result"], "error", json.dumps(action))
        eq(sem["embedding"]["outcome"],
           {500: "http_5xx", 400: "http_4xx"}.get(action.get("status"),
                                                 "timeout" if "delay_ms" in action else
                                                 "transport" if "reset" in action else "invalid"))
    eq(delta(before, sem_counts(w.gw)), {"error": 5})
    m = w.gw.metrics()
    check(m.get('tiergate_upstream_requests_total{model="emb",outcome="timeout"}', 0) >= 1, "counted per model")


@test
def embedding_breaker_open_skips(w):
    t = "t-breaker"
    try:
        restart(w, breaker={"failure_threshold": 2, "failure_ratio": 0, "cooldown_ms": 60000})
        first(w, t, CONTEXT + " Turn the fan to level two.")
        para = "The fan: turn it to level two. " + CONTEXT
        w.mock.ctl("POST", "/_mock/script", {"endpoint": "embeddings", "times": 2, "action": {"status": 503}})
        for i in range(2):
            eq(w.gw.decision(ask(w.gw, "?" * (i + 1) + para, t))["semantic"]["result"], "error")
        n = len(embed_calls(w))
        before = sem_counts(w.gw)
        r = ask(w.gw, "!" + para, t)
        eq(r.status, 200)
        eq(r.header("x-tiergate-cache"), "miss")
        sem = w.gw.decision(r)["semantic"]
        eq(sem["result"], "skipped")
        eq((sem["embedding"]["model"], sem["embedding"]["outcome"]), ("emb", "breaker_open"))
        eq(len(embed_calls(w)), n, "no call while the breaker is open")
        eq(delta(before, sem_counts(w.gw)), {"skipped": 1})
        b = w.gw.req("GET", "/admin/breakers", headers=bearer(ADMIN))
        check(b.status in (401, 403), "admin endpoints need the key")  # state is in /metrics:
        eq(w.gw.metrics()['tiergate_breaker_state{model="emb"}'], 2.0)
    finally:
        w.start()


def entries(gw):
    return gw.metrics()["tiergate_semantic_entries"]


@test
def a_replica_started_later_serves_and_follows(w):
    t = "t-replica"
    first(w, t, CONTEXT + " Feed the cat in the evening.")
    have = wait_for(lambda: entries(w.gw), 5, msg="the first replica's gauge")
    second = Gateway(w.config(), env={"TIERGATE_ADMIN_KEY": ADMIN})
    try:
        w.wait_redis_clients(w.config())
        # loaded at start (SCAN + MGET): everything the first replica holds
        wait_for(lambda: entries(second) >= have, 5, msg="the replica's load")
        r = ask(second, "In the evening, feed the cat. " + CONTEXT, t)
        eq(r.header("x-tiergate-cache"), "semantic", json.dumps(second.decision(r)))
        eq(second.decision(r)["semantic"]["result"], "hit")
        eq(r.body, ask(w.gw, CONTEXT + " Feed the cat in the evening.", t).body,
           "the first replica's answer")
        # followed: a store on the first shows up on the second (the log)
        n = entries(second)
        first(w, t, CONTEXT + " Close every window at night.")
        wait_for(lambda: entries(second) > n, 5, msg="the replica's tail")
        r = ask(second, "At night, close every window. " + CONTEXT, t)
        eq(r.header("x-tiergate-cache"), "semantic")
        # a flush on the second reaches the first's index through the log
        n = entries(w.gw)
        eq(second.req("DELETE", "/admin/cache?namespace=" + ns_of(t), headers=bearer(ADMIN)).status, 200)
        wait_for(lambda: entries(w.gw) <= n - 2, 5, msg="the first replica dropping the namespace")
        r = ask(w.gw, "Feed the cat, in the evening! " + CONTEXT, t)
        eq((r.header("x-tiergate-cache"), w.gw.decision(r)["semantic"]["key"]), ("miss", None))
    finally:
        second.stop_clean()


@test
def replica_with_redis_flushed_behind_its_back_recovers(w):
    t = "t-gap"
    first(w, t, CONTEXT + " Check the smoke alarm battery.")
    w.redis.cmd("FLUSHALL")  # the log vanishes: a gap, the index is dropped and reloaded
    time.sleep(0.4)
    first(w, t, CONTEXT + " Test the smoke alarm siren.")
    r = ask(w.gw, "The smoke alarm siren: test it. " + CONTEXT, t)
    eq(r.header("x-tiergate-cache"), "semantic")
    # the gauge is refreshed by semsync's next sweep (every cache.semantic.sync_ms)
    wait_for(lambda: w.gw.metrics()["tiergate_semantic_entries"] >= 1, 5,
             msg="the entries gauge to count the reloaded index")


@test
def reload_changes_the_space(w):
    t = "t-reload"
    try:
        first(w, t, CONTEXT + " Turn the hallway lamp to warm white.")
        eq(ask(w.gw, "The hallway lamp: warm white. Turn " + CONTEXT, t).header("x-tiergate-cache"), "semantic")
        # other dimensions: another vector space; the stored 256-dimension vectors are not compared
        cfg = w.config()
        cfg["cache"] = dict(cfg["cache"], semantic=dict(SEMANTIC, dimensions=64))
        w.gw.reload(cfg)
        wait_for(lambda: "config reloaded" in w.gw.output(), 5, msg="the reload")

        def embeds_64():
            r = ask(w.gw, "Turn the hallway lamp to warm white!? %f " % time.time() + CONTEXT, t)
            return json.loads(embed_calls(w)[-1]["body"]).get("dimensions") == 64 and r
        r = wait_for(embeds_64, 5, step=0.2, msg="lookups at 64 dimensions")
        eq(w.gw.decision(r)["semantic"]["result"], "miss", "the 256-dimension vectors are not compared")
        wait_for(lambda: entries(w.gw) == 1, 5, msg="a fresh index: the one new vector")
        # off: no lookups, and the index is freed
        cfg["cache"] = dict(cfg["cache"], semantic=dict(SEMANTIC, enabled=False))
        w.gw.reload(cfg)
        wait_for(lambda: "semantic" not in w.gw.decision(ask(w.gw, "Lamp %f " % time.time() + CONTEXT, t)),
                 5, step=0.2, msg="the semantic cache off")
        wait_for(lambda: entries(w.gw) == 0, 5, msg="the index freed")
    finally:
        w.start()


@test
def single_flight_followers_of_a_semantic_leader(w):
    """Identical paraphrases at once: one leads (its embedding call is slow
    here), the others wait on it; the leader is served semantically, which
    releases them, and each finds the same entry with its own lookup."""
    import threading
    t = "t-flight"
    first(w, t, CONTEXT + " Arm the alarm when everyone leaves.")
    w.mock.ctl("POST", "/_mock/script", {"endpoint": "embeddings", "action": {"delay_ms": 400}})
    para = "When everyone leaves, arm the alarm. " + CONTEXT
    out = [None] * 4

    def go(i):
        out[i] = ask(w.gw, para, t)
    threads = [threading.Thread(target=go, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
        time.sleep(0.05)
    for th in threads:
        th.join()
    eq([r.header("x-tiergate-cache") for r in out], ["semantic"] * 4)
    eq(len({r.body for r in out}), 1, "the same stored answer")
    eq(len(chat_calls(w)), 1, "no chat call but the first request's")
    eq(len(embed_calls(w)), 1 + 4, "one embedding per lookup")
    # the followers waited for the leader's slow embedding, not for one of their own
    lat = [w.gw.decision(r)["latency_ms"] for r in out]
    check(all(x >= 200 for x in lat[1:]), "followers waited on the leader: %r" % lat)
