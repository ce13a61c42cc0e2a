# SPDX-License-Identifier: MIT
"""The exact-match response cache in Redis (issue 3): miss then hit, what is
stored (key shape, TTL, entry), TTL headers, stream/non-stream sharing,
tenant isolation, Cache-Control, what is never stored, fail-open with Redis
killed / frozen / erroring / absent at start, the scoped admin flush, and
single-flight. Key stability and sensitivity are unit tests
(tests/unit/test_cachekey.c); SDK stream replay is in tests/e2e."""
import hashlib
import json
import re
import signal
import socket
import threading
import time

from harness import Redis, check, chat_body, eq, free_port, test, wait_for, World

CACHE = {"ttl_s": 600, "max_ttl_s": 3600, "max_entry_bytes": 65536, "single_flight_wait_ms": 5000}
# Fast reconnects keep the outage tests short; lookup deadline as shipped.
REDIS_OPTS = {"lookup_timeout_ms": 100, "connect_timeout_ms": 300, "reconnect_min_ms": 50,
              "reconnect_max_ms": 300}


# Breakers are not under test here: keep deliberate upstream failures from tripping them.
BREAKER = {"failure_threshold": 1000, "failure_ratio": 0}


def WORLD():
    return World(cache=CACHE, redis=REDIS_OPTS, breaker=BREAKER)


KEY_RX = re.compile(r"^tiergate:v1:([a-z0-9]+):([0-9a-f]{64})$")
EXCLUDED = ("stream", "stream_options", "user", "safety_identifier", "prompt_cache_key", "metadata", "store")


# --- helpers ------------------------------------------------------------------

def ns_of(token):
    """The namespace of a bearer token: 16 hex of SHA-256("tiergate-ns:" + token)."""
    return hashlib.sha256(("tiergate-ns:" + token).encode()).hexdigest()[:16]


def key_for(body, ns="anon"):
    """The key the gateway must use for a body of strings, integers and
    objects (Python and the gateway agree on those canonical forms)."""
    canon = {k: v for k, v in body.items() if k not in EXCLUDED}
    text = json.dumps(canon, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "tiergate:v1:%s:%s" % (ns, hashlib.sha256(text.encode()).hexdigest())


def tkeys(w, pattern="tiergate:v1:*", redis=None):
    """Cache keys: not the single-flight locks (<key>:lock, held while the
    answer is on its way, docs/replicas.md) nor keys' limits."""
    return sorted(k for k in (redis or w.redis).cmd("KEYS", pattern) or []
                  if not k.endswith(":lock") and not k.startswith("tiergate:v1:lim:"))


def wait_key(w, key, redis=None, timeout=5.0):
    r = redis or w.redis
    wait_for(lambda: r.cmd("EXISTS", key) == 1, timeout, msg="cache key %s" % key)
    return json.loads(r.cmd("GET", key))


def calls(w):
    return len(w.mock.requests())


def text_of(r):
    return r.json()["choices"][0]["message"]["content"]


def bearer(token):
    return {"authorization": "Bearer " + token}


def counters(w, name, labels):
    m = w.gw.metrics()
    return {l: m.get('%s{result="%s"}' % (name, l), 0.0) for l in labels}


def lookups(w):
    return counters(w, "tiergate_cache_lookups_total", ("hit", "miss", "bypass", "off", "error"))


def stores(w):
    return counters(w, "tiergate_cache_stores_total", ("ok", "error"))


def delta(after, before):
    return {k: after[k] - before[k] for k in after}


def sse_check(r, content, usage=None, finish="stop"):
    """A well-formed chat.completion.chunk stream carrying `content`, with a
    usage chunk only when `usage` is given."""
    eq(r.status, 200, "stream status")
    check(r.header("content-type").startswith("text/event-stream"), "content type %s" % r.header("content-type"))
    ev = r.events()
    eq(ev[-1], "[DONE]", "stream ends with [DONE]")
    check("[DONE]" not in ev[:-1], "one [DONE]")
    chunks = ev[:-1]
    check(chunks, "chunks before [DONE]")
    eq({c["object"] for c in chunks}, {"chat.completion.chunk"}, "chunk object")
    eq(len({c["id"] for c in chunks}), 1, "one id for every chunk")
    first = chunks[0]["choices"][0]["delta"]
    eq(first.get("role"), "assistant", "role chunk first")
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    eq(text, content, "streamed content")
    fins = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0].get("finish_reason")]
    eq(fins, [finish], "one finish chunk")
    with_usage = [c for c in chunks if c.get("usage")]
    if usage is None:
        eq(with_usage, [], "no usage chunk unless asked")
        check(all(c["choices"] for c in chunks), "no choices-less chunk unless asked")
    else:
        eq(len(with_usage), 1, "one usage chunk")
        check(chunks[-1] is with_usage[0] and chunks[-1]["choices"] == [], "usage chunk last, no choices")
        eq(chunks[-1]["usage"], usage, "usage replayed")
    return chunks


def not_stored(w, *bodies, ns="anon"):
    """None of `bodies` is in Redis. A barrier first: a fresh request whose
    store is seen proves the gateway had its chance to store the others."""
    barrier = chat_body("barrier %f" % time.time())
    r = w.gw.chat(barrier)
    eq(r.status, 200, "barrier request")
    wait_key(w, key_for(barrier))
    for b in bodies:
        eq(w.redis.cmd("EXISTS", key_for(b, ns)), 0, "stored but must not be: %r" % b)
    eq(tkeys(w), [key_for(barrier)], "only the barrier is cached")


def resumed_lines(gw):
    return gw.output().count("caching resumes")


# --- the basics -----------------------------------------------------------------

@test
def miss_then_hit_one_upstream_call(w):
    before = lookups(w)
    st0 = stores(w)
    body = chat_body("What is the capital of France?")
    r1 = w.gw.chat(body)
    eq(r1.status, 200)
    eq(r1.header("x-tiergate-cache"), "miss")
    check(float(r1.header("x-tiergate-cost-usd")) > 0, "a miss costs something")
    wait_key(w, key_for(body))
    r2 = w.gw.chat(body)
    eq(r2.status, 200)
    eq(r2.header("x-tiergate-cache"), "hit")
    eq(float(r2.header("x-tiergate-cost-usd")), 0.0, "a hit costs nothing")
    eq(r2.header("x-tiergate-model"), "mini", "model that answered, from the entry")
    eq(r2.header("x-tiergate-tier"), "cheap")
    eq(r2.header("x-tiergate-escalations"), "0")
    eq(r2.json(), r1.json(), "the hit is the same completion")
    eq(calls(w), 1, "upstream saw exactly one call")
    d = delta(lookups(w), before)
    eq(d, {"hit": 1, "miss": 1, "bypass": 0, "off": 0, "error": 0}, "lookup metrics")
    wait_for(lambda: stores(w)["ok"] - st0["ok"] == 1, 3, msg="one store counted")
    dec = wait_for(lambda: [x for x in w.gw.decisions() if x["request_id"] == r2.header("x-request-id")], 3,
                   msg="decision line of the hit")[0]
    eq(dec["cache"], "hit")
    eq(dec["attempts"], [], "a hit makes no attempt")
    eq(dec["cost_usd"], 0)
    check(dec["saved_usd"] > 0, "a hit saves the baseline cost")


@test
def stored_entry_key_ttl_and_shape(w):
    body = chat_body("Name three primes.")
    t0 = time.time()
    r = w.gw.chat(body, headers=bearer("tenant-alpha"))
    eq(r.status, 200)
    ks = wait_for(lambda: tkeys(w), 3, msg="a key")
    eq(len(ks), 1, "one key")
    m = KEY_RX.match(ks[0])
    check(m, "key shape tiergate:v1:<ns>:<64 hex>: %s" % ks[0])
    eq(m.group(1), ns_of("tenant-alpha"), "namespace = 16 hex of SHA-256(tiergate-ns: + token)")
    eq(ks[0], key_for(body, ns_of("tenant-alpha")), "digest = SHA-256 of the canonical request")
    ttl = w.redis.cmd("TTL", ks[0])
    check(CACHE["ttl_s"] - 10 <= ttl <= CACHE["ttl_s"], "TTL from cache.ttl_s: %s" % ttl)
    entry = json.loads(w.redis.cmd("GET", ks[0]))
    eq(entry["v"], 1)
    eq(entry["model"], "mini")
    eq(entry["tier"], "cheap")
    check(t0 - 5 <= entry["created"] <= time.time() + 5, "created is wall time: %r" % entry["created"])
    check(abs(entry["cost_usd"] - float(r.header("x-tiergate-cost-usd"))) < 1e-7,
          "cost_usd is what the answer cost: %r vs %s" % (entry["cost_usd"], r.header("x-tiergate-cost-usd")))
    eq(entry["completion"], r.json(), "completion stored as answered")
    check("tenant-alpha" not in json.dumps(entry) + ks[0], "the gateway key never reaches Redis")
    # The single-flight lock taken for the miss is released once stored.
    wait_for(lambda: not w.redis.cmd("KEYS", "tiergate:v1:*:lock"), 3, msg="the lock released")


@test
def ttl_header_honoured_capped_and_checked(w):
    b1, b2 = chat_body("ttl one"), chat_body("ttl two")
    eq(w.gw.chat(b1, headers={"x-tiergate-cache-ttl": "120"}).status, 200)
    eq(w.gw.chat(b2, headers={"x-tiergate-cache-ttl": "999999"}).status, 200)
    wait_key(w, key_for(b1))
    wait_key(w, key_for(b2))
    t1, t2 = w.redis.cmd("TTL", key_for(b1)), w.redis.cmd("TTL", key_for(b2))
    check(110 <= t1 <= 120, "x-tiergate-cache-ttl honoured: %s" % t1)
    check(CACHE["max_ttl_s"] - 10 <= t2 <= CACHE["max_ttl_s"], "capped by cache.max_ttl_s: %s" % t2)
    n = calls(w)
    for bad in ("abc", "0", "-5", "12x", "1.5", "+7", "0x10", "5 s"):
        r = w.gw.chat(chat_body("ttl bad"), headers={"x-tiergate-cache-ttl": bad})
        eq(r.status, 400, "x-tiergate-cache-ttl %r" % bad)
        eq(r.json()["error"]["type"], "invalid_request_error")
    eq(calls(w), n, "a bad TTL header never reaches upstream")
    eq(w.redis.cmd("EXISTS", key_for(chat_body("ttl bad"))), 0)
    b3 = chat_body("ttl huge")
    eq(w.gw.chat(b3, headers={"x-tiergate-cache-ttl": "99999999999999999999999"}).status, 200)
    wait_key(w, key_for(b3))
    check(w.redis.cmd("TTL", key_for(b3)) <= CACHE["max_ttl_s"], "out-of-range TTL capped too")


@test
def ttl_expiry(w):
    body = chat_body("short lived")
    r = w.gw.chat(body, headers={"x-tiergate-cache-ttl": "1"})
    eq(r.header("x-tiergate-cache"), "miss")
    wait_key(w, key_for(body))
    eq(w.gw.chat(body).header("x-tiergate-cache"), "hit", "fresh entry hits")
    wait_for(lambda: w.redis.cmd("EXISTS", key_for(body)) == 0, 5, msg="entry to expire")
    r = w.gw.chat(body)
    eq(r.header("x-tiergate-cache"), "miss", "expired entry is a miss")
    eq(calls(w), 2, "upstream asked again after expiry")


# --- streams ---------------------------------------------------------------------

@test
def stream_and_non_stream_share_one_entry(w):
    text = "The quick brown fox jumps over the lazy dog, twice over and then some more."
    w.mock.script({"content": text}, model="gpt-cheap")
    body = chat_body("Tell me about foxes.")
    r1 = w.gw.chat(body)
    eq(r1.header("x-tiergate-cache"), "miss")
    eq(text_of(r1), text)
    wait_key(w, key_for(body))
    r2 = w.gw.chat(chat_body("Tell me about foxes.", stream=True))
    eq(r2.header("x-tiergate-cache"), "hit", "stream is not part of the key")
    eq(r2.header("x-tiergate-model"), "mini")
    eq(float(r2.header("x-tiergate-cost-usd")), 0.0, "a stream hit costs nothing and says so")
    chunks = sse_check(r2, text)
    check(len(chunks) >= 4, "content arrives in several chunks: %d" % len(chunks))
    eq(chunks[0]["id"], r1.json()["id"], "chunks carry the cached completion's id")
    r3 = w.gw.chat(chat_body("Tell me about foxes.", stream=True, stream_options={"include_usage": True},
                             user="someone-else", safety_identifier="u-42", prompt_cache_key="faq"))
    eq(r3.header("x-tiergate-cache"), "hit",
       "stream_options, user, safety_identifier and prompt_cache_key are not part of the key")
    sse_check(r3, text, usage=r1.json()["usage"])
    eq(calls(w), 1, "one upstream call for all three")


@test
def stored_stream_answer_serves_non_stream(w):
    # Cheap tier: buffered and validated before it is replayed; large: live.
    for model, upstream in (("cheap", "gpt-cheap"), ("large", "gpt-large")):
        text = "Streaming answer from %s, cached for later." % model
        w.mock.script({"content": text, "chunk_chars": 5}, model=upstream)
        sbody = chat_body("stream first " + model, model=model, stream=True)
        r1 = w.gw.chat(sbody)
        eq(r1.header("x-tiergate-cache"), "miss", model)
        sse_check(r1, text)
        entry = wait_key(w, key_for(sbody))
        eq(entry["completion"]["object"], "chat.completion", "a reassembled completion is stored")
        eq(entry["completion"]["choices"][0]["message"]["content"], text)
        n = calls(w)
        r2 = w.gw.chat(chat_body("stream first " + model, model=model))
        eq(r2.status, 200)
        eq(r2.header("x-tiergate-cache"), "hit", model)
        eq(r2.header("content-type"), "application/json")
        c = r2.json()
        eq(c["object"], "chat.completion")
        eq(c["choices"][0]["message"]["content"], text)
        eq(c["choices"][0]["finish_reason"], "stop")
        check(c["usage"]["total_tokens"] > 0, "usage kept (the gateway asked upstream for it)")
        eq(calls(w), n, "served without upstream")


# --- tenants -----------------------------------------------------------------------

@test
def tenant_isolation_by_bearer(w):
    w.mock.script({"content": "secret answer for A"}, model="gpt-cheap")
    w.mock.script({"content": "secret answer for B"}, model="gpt-cheap")
    body = chat_body("What is my account balance?")
    ra = w.gw.chat(body, headers=bearer("key-A"))
    eq(text_of(ra), "secret answer for A")
    wait_key(w, key_for(body, ns_of("key-A")))
    rb = w.gw.chat(body, headers=bearer("key-B"))
    eq(rb.header("x-tiergate-cache"), "miss", "B never sees A's entry")
    eq(text_of(rb), "secret answer for B")
    wait_key(w, key_for(body, ns_of("key-B")))
    eq(text_of(w.gw.chat(body, headers=bearer("key-A"))), "secret answer for A")
    eq(text_of(w.gw.chat(body, headers=bearer("key-B"))), "secret answer for B")
    rn = w.gw.chat(body)
    eq(rn.header("x-tiergate-cache"), "miss", "no bearer: the anon namespace")
    eq(calls(w), 3)
    wait_key(w, key_for(body, "anon"))  # the store is fire and forget
    ks = tkeys(w)
    eq(len(ks), 3)
    eq({KEY_RX.match(k).group(1) for k in ks}, {ns_of("key-A"), ns_of("key-B"), "anon"})
    eq(len({KEY_RX.match(k).group(2) for k in ks}), 1, "same digest, different namespaces")


@test
def shared_scope_shares(w):
    try:
        w.start(cache=dict(CACHE, scope="shared"))
        body = chat_body("Shared question")
        ra = w.gw.chat(body, headers=bearer("key-A"))
        eq(ra.header("x-tiergate-cache"), "miss")
        wait_key(w, key_for(body, "shared"))
        rb = w.gw.chat(body, headers=bearer("key-B"))
        eq(rb.header("x-tiergate-cache"), "hit", "shared scope: B gets A's answer")
        eq(rb.json(), ra.json())
        eq(w.gw.chat(body).header("x-tiergate-cache"), "hit", "and so does anon")
        eq(calls(w), 1)
        eq(tkeys(w), [key_for(body, "shared")])
    finally:
        w.start()


# --- Cache-Control and what is never stored -------------------------------------------

@test
def no_cache_skips_lookup_but_stores(w):
    before = lookups(w)
    body = chat_body("no-cache please")
    w.mock.script({"content": "first answer"}, model="gpt-cheap")
    w.mock.script({"content": "second answer"}, model="gpt-cheap")
    r1 = w.gw.chat(body, headers={"cache-control": "no-cache"})
    eq(r1.header("x-tiergate-cache"), "bypass")
    eq(text_of(r1), "first answer")
    entry = wait_key(w, key_for(body))
    eq(entry["completion"]["choices"][0]["message"]["content"], "first answer", "no-cache still stores")
    r2 = w.gw.chat(body, headers={"cache-control": "max-age=0, no-cache"})
    eq(r2.header("x-tiergate-cache"), "bypass", "an entry exists but the lookup is skipped")
    eq(text_of(r2), "second answer")
    eq(calls(w), 2)
    wait_for(lambda: "second answer" in w.redis.cmd("GET", key_for(body)), 3, msg="entry refreshed")
    r3 = w.gw.chat(body)
    eq(r3.header("x-tiergate-cache"), "hit")
    eq(text_of(r3), "second answer")
    eq(calls(w), 2)
    d = delta(lookups(w), before)
    eq(d, {"hit": 1, "miss": 0, "bypass": 0, "off": 0, "error": 0}, "skipped lookups are not lookups")


@test
def no_store_neither_looks_up_nor_stores(w):
    body = chat_body("keep this private")
    r = w.gw.chat(body, headers={"cache-control": "no-store"})
    eq(r.header("x-tiergate-cache"), "bypass")
    eq(r.status, 200)
    not_stored(w, body)
    # An entry already there is neither served nor overwritten.
    w.mock.script({"content": "cached answer"}, model="gpt-cheap")
    w.mock.script({"content": "fresh answer"}, model="gpt-cheap")
    b2 = chat_body("already cached")
    eq(text_of(w.gw.chat(b2)), "cached answer")
    wait_key(w, key_for(b2))
    r = w.gw.chat(b2, headers={"cache-control": "No-Store"})
    eq(r.header("x-tiergate-cache"), "bypass")
    eq(text_of(r), "fresh answer", "no-store skips the lookup")
    r = w.gw.chat(b2)
    eq(r.header("x-tiergate-cache"), "hit")
    eq(text_of(r), "cached answer", "no-store did not overwrite")


@test
def temperature_above_max_not_cached(w):
    hot = chat_body("be creative", temperature=1.5)
    for _ in range(2):
        r = w.gw.chat(hot)
        eq(r.status, 200)
        eq(r.header("x-tiergate-cache"), "bypass")
    eq(calls(w), 2, "never served from cache")
    not_stored(w, hot)
    edge = chat_body("exactly the max", temperature=1)
    eq(w.gw.chat(edge).header("x-tiergate-cache"), "miss", "temperature == max is cacheable")
    wait_key(w, key_for(edge))
    eq(w.gw.chat(edge).header("x-tiergate-cache"), "hit")


@test
def absent_temperature_counts_as_one(w):
    try:
        w.start(cache=dict(CACHE, max_temperature=0.5))
        plain = chat_body("no temperature given")
        eq(w.gw.chat(plain).header("x-tiergate-cache"), "bypass", "absent = 1.0 > 0.5")
        cool = chat_body("cool", temperature=0)
        eq(w.gw.chat(cool).header("x-tiergate-cache"), "miss")
        wait_key(w, key_for(cool))
        eq(w.gw.chat(cool).header("x-tiergate-cache"), "hit")
        eq(w.redis.cmd("EXISTS", key_for(plain)), 0)
    finally:
        w.start()


@test
def oversized_answer_not_stored(w):
    w.mock.script({"body_size": 100000}, model="gpt-cheap")
    big = chat_body("write me an essay")
    r = w.gw.chat(big)
    eq(r.status, 200, "an answer too big to cache is still served")
    check(len(r.body) > CACHE["max_entry_bytes"], "the answer is big: %d" % len(r.body))
    eq(r.header("x-tiergate-cache"), "miss")
    not_stored(w, big)
    w.mock.script({"body_size": 100000}, model="gpt-cheap")
    eq(w.gw.chat(big).header("x-tiergate-cache"), "miss")
    # Just under the cap is stored.
    w.mock.script({"body_size": CACHE["max_entry_bytes"] // 2}, model="gpt-cheap")
    mid = chat_body("a medium essay")
    eq(w.gw.chat(mid).status, 200)
    wait_key(w, key_for(mid))
    eq(w.gw.chat(mid).header("x-tiergate-cache"), "hit")


TWO_CHOICES_SECOND_CUT = {
    "id": "chatcmpl-n2", "object": "chat.completion", "created": 1, "model": "gpt-large",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "A whole answer."}, "finish_reason": "stop"},
                {"index": 1, "message": {"role": "assistant", "content": "Half an"}, "finish_reason": "length"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}}


@test
def errors_and_truncations_never_stored(w):
    large = lambda s, **f: chat_body(s, model="large", **f)
    cases = [
        ({"status": 500, "error": {"message": "boom"}}, large("e500"), 502),
        ({"status": 400, "error": {"message": "bad", "type": "invalid_request_error"}}, large("e400"), 400),
        ({"status": 429}, large("e429"), 429),
        ({"content": "Half an ans", "finish_reason": "length"}, large("trunc"), 200),
        ({"content": "Half a streamed ans", "finish_reason": "length"}, large("trunc-s", stream=True), 200),
        ({"content": "x" * 200, "chunk_chars": 10, "reset": "mid_stream", "after_chunks": 3},
         large("reset-s", stream=True), 200),
        ({"content": "a b c d e f g h", "chunk_chars": 2, "error_after": 2}, large("errev-s", stream=True), 200),
        ({"body": "{\"choices\": [oops"}, large("garbage"), 502),
        ({"body": json.dumps(TWO_CHOICES_SECOND_CUT)}, large("n2", n=2), 200),
    ]
    for action, body, status in cases:
        w.mock.script(action, model="gpt-large")
        r = w.gw.chat(body)
        eq(r.status, status, "status for %r" % action)
    not_stored(w, *[b for _, b, _ in cases])
    # And each is asked upstream again.
    n = calls(w)
    for _, body, _ in cases:
        eq(w.gw.chat(body).header("x-tiergate-cache"), "miss", body["messages"][0]["content"])
    eq(calls(w), n + len(cases))


@test
def invalid_final_answer_not_stored(w):
    # The last tier's answer fails validation: the client gets it, the cache does not.
    cases = [({"content": "this is not json"}, chat_body("json please", model="large",
                                                             response_format={"type": "json_object"})),
             ({"empty": True}, chat_body("say nothing", model="large")),
             ({"tool_calls": [{"name": "lookup", "arguments": "{not json"}]},
              chat_body("call it", model="large",
                        tools=[{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]))]
    for action, body in cases:
        w.mock.script(action, model="gpt-large")
        r = w.gw.chat(body)
        check(r.status in (200, 502), "final tier invalid answer: %r" % r)
    not_stored(w, *[b for _, b in cases])


@test
def escalated_answer_is_the_one_stored(w):
    # Cheap hedges (a bad 200) -> medium answers: medium's answer is cached.
    w.mock.script({"hedge": True}, model="gpt-cheap")
    body = chat_body("How many moons does Mars have?")
    r1 = w.gw.chat(body)
    eq(r1.status, 200)
    eq(r1.header("x-tiergate-model"), "mid")
    eq(r1.header("x-tiergate-escalations"), "1")
    entry = wait_key(w, key_for(body))
    eq(entry["model"], "mid")
    eq(entry["tier"], "medium")
    eq(entry["completion"]["choices"][0]["message"]["content"], "Hello from gpt-mid")
    check(abs(entry["cost_usd"] - float(r1.header("x-tiergate-cost-usd"))) < 1e-7,
          "entry cost includes the failed attempt")
    r2 = w.gw.chat(body)
    eq(r2.header("x-tiergate-cache"), "hit")
    eq(r2.header("x-tiergate-model"), "mid")
    eq(r2.header("x-tiergate-tier"), "medium")
    eq(r2.header("x-tiergate-escalations"), "0")
    eq(text_of(r2), "Hello from gpt-mid")
    # The same through a 5xx on the cheap tier, as a stream.
    w.mock.script({"status": 503}, model="gpt-cheap")
    sb = chat_body("stream then escalate", stream=True)
    r3 = w.gw.chat(sb)
    sse_check(r3, "Hello from gpt-mid")
    entry = wait_key(w, key_for(sb))
    eq(entry["model"], "mid")
    eq(calls(w), 4)


@test
def unreadable_or_wrong_type_entry(w):
    body = chat_body("corrupt me")
    key = key_for(body)
    w.redis.cmd("SET", key, "this is not an entry")
    before = lookups(w)
    r = w.gw.chat(body)
    eq(r.status, 200)
    eq(r.header("x-tiergate-cache"), "miss", "an unreadable entry is a miss")
    eq(delta(lookups(w), before)["miss"], 1, "and is counted as one")
    eq(delta(lookups(w), before)["hit"], 0)
    wait_for(lambda: (w.redis.cmd("GET", key) or "").startswith("{"), 3, msg="entry overwritten")
    eq(w.gw.chat(body).header("x-tiergate-cache"), "hit")
    # A Redis error on GET (wrong type) fails open as "error" and the store repairs it.
    b2 = chat_body("wrong type")
    k2 = key_for(b2)
    w.redis.cmd("HSET", k2, "f", "v")
    before = lookups(w)
    r = w.gw.chat(b2)
    eq(r.status, 200)
    eq(r.header("x-tiergate-cache"), "error")
    eq(delta(lookups(w), before)["error"], 1)
    wait_for(lambda: w.redis.cmd("TYPE", k2) == "string", 3, msg="SET replaced the hash")
    eq(w.gw.chat(b2).header("x-tiergate-cache"), "hit")


@test
def cache_disabled_is_off(w):
    try:
        w.start(cache=dict(CACHE, enabled=False))
        body = chat_body("cache off")
        for _ in range(2):
            r = w.gw.chat(body)
            eq(r.status, 200)
            eq(r.header("x-tiergate-cache"), "off")
        eq(calls(w), 2)
        eq(tkeys(w), [])
        j = w.gw.req("GET", "/readyz").json()
        eq(j["redis"]["required"], False)
    finally:
        w.start()


# --- fail open ---------------------------------------------------------------------

class Traffic:
    """Requests in a loop from a thread until stopped; records every result."""

    def __init__(self, gw, bodies):
        self.gw, self.bodies = gw, bodies
        self.results = []
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        i = 0
        while not self.stop.is_set():
            b = self.bodies[i % len(self.bodies)]
            i += 1
            try:
                r = self.gw.chat(dict(b), timeout=10)
                self.results.append((r.status, r.header("x-tiergate-cache"), time.time()))
            except Exception as e:  # a failed request is a result too
                self.results.append((repr(e), None, time.time()))

    def end(self):
        self.stop.set()
        self.t.join(15)
        check(not self.t.is_alive(), "traffic thread stuck")
        return self.results


@test
def redis_killed_mid_run_and_restarted(w):
    port = w.redis.port
    resumed0 = resumed_lines(w.gw)
    bodies = [chat_body("traffic %d" % i) for i in range(3)]
    tr = Traffic(w.gw, bodies)
    try:
        wait_for(lambda: sum(1 for s, c, _ in tr.results if c == "hit") >= 5, 5, msg="hits before the kill")
        w.redis.kill()  # SIGKILL
        t_kill = time.time()
        wait_for(lambda: sum(1 for s, c, t in tr.results if t > t_kill + 0.1 and c == "error") >= 10, 5,
                 msg="requests served while Redis is down")
        r = w.gw.req("GET", "/readyz")
        eq(r.status, 503, "not ready without Redis")
        check(r.json()["redis"]["state"] in ("down", "connecting"), r.json()["redis"])
        w.redis = Redis(port=port)
        t_back = time.time()
        wait_for(lambda: resumed_lines(w.gw) >= resumed0 + 2, 5, msg="both shards reconnected")
        wait_for(lambda: sum(1 for s, c, t in tr.results if t > t_back and c == "hit") >= 3, 5,
                 msg="hits after the restart")
    finally:
        results = tr.end()
        if not w.redis.ping():
            w.redis = Redis(port=port)
    failed = [x for x in results if x[0] != 200]
    eq(failed, [], "zero failed requests")
    seen = {c for _, c, _ in results}
    check({"hit", "error", "miss"} <= seen, "hit, error and miss all seen: %s" % seen)
    eq(w.gw.req("GET", "/readyz").status, 200, "ready again")
    body = chat_body("after the restart")
    eq(w.gw.chat(body).header("x-tiergate-cache"), "miss")
    wait_key(w, key_for(body))
    eq(w.gw.chat(body).header("x-tiergate-cache"), "hit", "caching resumed by itself")
    check("redis" in w.gw.output() and "serving without cache" in w.gw.output(), "outage logged")


@test
def redis_frozen_lookups_give_up_within_deadline(w):
    try:
        w.start(shards=1, redis=dict(REDIS_OPTS, lookup_timeout_ms=20))
        warm = chat_body("warm entry")
        w.gw.chat(warm)
        wait_key(w, key_for(warm))
        eq(w.gw.chat(warm).header("x-tiergate-cache"), "hit")
        before = lookups(w)
        n = calls(w)
        w.redis.signal(signal.SIGSTOP)
        slowest = 0.0
        for i in range(8):
            t0 = time.time()
            r = w.gw.chat(warm if i % 2 == 0 else chat_body("frozen %d" % i), timeout=10)
            slowest = max(slowest, time.time() - t0)
            eq(r.status, 200, "answered while Redis is frozen")
            eq(r.header("x-tiergate-cache"), "error")
        check(slowest < 1.0, "each request well under 1 s (lookup deadline 20 ms): %.3f s" % slowest)
        eq(calls(w), n + 8, "served from upstream")
        eq(delta(lookups(w), before)["error"], 8)
        wait_for(lambda: w.gw.req("GET", "/readyz").status == 503, 3, msg="readyz 503 while frozen")
        w.redis.signal(signal.SIGCONT)
        wait_for(lambda: w.gw.req("GET", "/readyz").status == 200, 5, msg="readyz 200 after SIGCONT")
        eq(w.gw.chat(warm).header("x-tiergate-cache"), "hit", "the old entry is served again")
        fresh = chat_body("after the thaw")
        eq(w.gw.chat(fresh).header("x-tiergate-cache"), "miss")
        wait_key(w, key_for(fresh))
        eq(w.gw.chat(fresh).header("x-tiergate-cache"), "hit", "caching resumed")
    finally:
        w.redis.signal(signal.SIGCONT)
        w.start()


@test
def redis_frozen_with_only_stores_and_flushes(w):
    # No lookups to notice the freeze (every request is no-cache): the
    # store deadline must, and an admin flush must not hang.
    try:
        w.start(shards=1, redis=dict(REDIS_OPTS, store_timeout_ms=200),
                env={"TIERGATE_ADMIN_KEY": ADMIN})
        st0 = stores(w)
        w.redis.signal(signal.SIGSTOP)
        for i in range(3):
            r = w.gw.chat(chat_body("store only %d" % i), headers={"cache-control": "no-cache"}, timeout=10)
            eq(r.status, 200)
            eq(r.header("x-tiergate-cache"), "bypass")
        wait_for(lambda: w.gw.req("GET", "/readyz").status == 503, 3, msg="stores timing out noticed")
        wait_for(lambda: stores(w)["error"] - st0["error"] >= 3, 3, msg="timed-out stores counted")
        w.redis.signal(signal.SIGCONT)
        wait_for(lambda: w.gw.req("GET", "/readyz").status == 200, 5, msg="reconnected")
        w.redis.signal(signal.SIGSTOP)
        t0 = time.time()
        r = w.gw.req("DELETE", "/admin/cache", headers=bearer(ADMIN), timeout=10)
        eq(r.status, 503, "a flush against a frozen Redis fails: %r" % r)
        check(time.time() - t0 < 3, "and does not hang")
        eq(r.json()["error"]["code"], "cache_unavailable")
        w.redis.signal(signal.SIGCONT)
        wait_for(lambda: w.gw.req("GET", "/readyz").status == 200, 5, msg="reconnected")
        eq(w.gw.req("DELETE", "/admin/cache", headers=bearer(ADMIN)).status, 200)
    finally:
        w.redis.signal(signal.SIGCONT)
        w.start()


@test
def redis_refusing_writes_fails_open(w):
    body = chat_body("out of memory")
    st0 = stores(w)
    w.redis.cmd("CONFIG", "SET", "maxmemory-policy", "noeviction")
    w.redis.cmd("CONFIG", "SET", "maxmemory", "1")
    try:
        for _ in range(3):
            r = w.gw.chat(body)
            eq(r.status, 200, "a refused store never fails a request")
            eq(r.header("x-tiergate-cache"), "miss", "GET still works")
        wait_for(lambda: stores(w)["error"] - st0["error"] >= 3, 3, msg="store errors counted")
        eq(stores(w)["ok"], st0["ok"])
        eq(tkeys(w), [])
        check("store refused" in w.gw.output() and "OOM" in w.gw.output(), "refusal logged")
    finally:
        w.redis.cmd("CONFIG", "SET", "maxmemory", "0")
    eq(w.gw.chat(body).header("x-tiergate-cache"), "miss")
    wait_key(w, key_for(body))
    eq(w.gw.chat(body).header("x-tiergate-cache"), "hit", "stores work again")
    eq(calls(w), 4)


@test
def redis_down_at_start(w):
    port = free_port()
    late = None
    try:
        w.start(redis=dict(REDIS_OPTS, url="redis://127.0.0.1:%d/0" % port))
        r = w.gw.req("GET", "/readyz")
        eq(r.status, 503)
        check(r.json()["redis"]["state"] in ("down", "connecting"), r.json()["redis"])
        body = chat_body("no redis yet")
        for _ in range(3):
            r = w.gw.chat(body)
            eq(r.status, 200, "served without Redis")
            eq(r.header("x-tiergate-cache"), "error")
        # Single-flight lives in the gateway: it still collapses misses.
        w.mock.script({"delay_ms": 500}, model="gpt-cheap")
        out = concurrent(w, [chat_body("flight without redis")] * 4)
        eq(calls(w), 4, "one upstream call for four")
        eq(sorted(o[0].header("x-tiergate-cache") for o in out), ["error"] + ["hit"] * 3)
        late = Redis(port=port)
        wait_for(lambda: resumed_lines(w.gw) >= 2, 5, msg="both shards connected")
        eq(w.gw.req("GET", "/readyz").status, 200)
        eq(w.gw.chat(body).header("x-tiergate-cache"), "miss")
        wait_key(w, key_for(body), redis=late)
        eq(w.gw.chat(body).header("x-tiergate-cache"), "hit")
        eq(calls(w), 5)
    finally:
        w.start()
        if late:
            late.kill()


def clients(redis):
    """Connections to `redis` other than the one asking."""
    return len([l for l in redis.cmd("CLIENT", "LIST").split("\n") if l.strip()]) - 1


@test
def reload_moves_the_cache_to_another_redis(w):
    other = Redis()
    try:
        # Two per shard (the cache's, and the one for files and batches:
        # rconn.c) and the process's pub/sub subscriber (single-flight
        # across replicas, docs/replicas.md).
        eq(clients(w.redis), 5, "two connections per shard, one subscriber")
        cfg = w.config(redis=dict(REDIS_OPTS, url="redis://127.0.0.1:%d/0" % other.port))
        w.gw.reload(cfg)
        wait_for(lambda: clients(other) == 5 and clients(w.redis) == 0, 5, msg="all five moved")
        body = chat_body("after the move")
        eq(w.gw.chat(body).header("x-tiergate-cache"), "miss")
        wait_key(w, key_for(body), redis=other)
        eq(w.gw.chat(body).header("x-tiergate-cache"), "hit")
        eq(tkeys(w), [], "nothing written to the old Redis")
    finally:
        w.start()
        other.kill()


# --- admin flush ---------------------------------------------------------------------

ADMIN = "adm-0123456789"
FOREIGN = {"user:1": "alice", "tiergate:v2:x": "old", "tiergatex": "y", "tiergate:v1": "no colon",
           "xtiergate:v1:anon:1": "prefix inside", "session:tiergate:v1:anon:2": "z"}


def seed_foreign(w):
    for k, v in FOREIGN.items():
        w.redis.cmd("SET", k, v)
    w.redis.cmd("HSET", "tiergate:v1-hash", "f", "v")


def foreign_intact(w):
    for k, v in FOREIGN.items():
        eq(w.redis.cmd("GET", k), v, "foreign key %s untouched" % k)
    eq(w.redis.cmd("HGET", "tiergate:v1-hash", "f"), "v")


@test
def admin_flush_needs_admin_key(w):
    r = w.gw.req("DELETE", "/admin/cache", headers=bearer(ADMIN))
    eq(r.status, 403, "no admin key configured")
    eq(r.json()["error"]["code"], "admin_disabled")
    try:
        w.start(env={"TIERGATE_ADMIN_KEY": ADMIN})
        w.redis.cmd("SET", "tiergate:v1:anon:" + "0" * 64, "{}")
        eq(w.gw.req("DELETE", "/admin/cache").status, 401, "no key")
        eq(w.gw.req("DELETE", "/admin/cache", headers=bearer("wrong")).status, 401, "wrong key")
        eq(w.gw.req("DELETE", "/admin/cache", headers={"authorization": ADMIN}).status, 401, "not a bearer")
        eq(w.redis.cmd("EXISTS", "tiergate:v1:anon:" + "0" * 64), 1, "nothing flushed")
        eq(w.gw.req("GET", "/admin/cache", headers=bearer(ADMIN)).status, 405)
    finally:
        w.start()


@test
def admin_flush_by_prefix_and_namespace(w):
    try:
        w.start(env={"TIERGATE_ADMIN_KEY": ADMIN, "TIERGATE_API_KEYS": "tenant-a,tenant-b"})
        eq(w.gw.chat(chat_body("x"), headers=bearer("tenant-c")).status, 401, "auth is on")
        bodies = [chat_body("flush %d" % i) for i in range(3)]
        for b in bodies:
            for tok in ("tenant-a", "tenant-b"):
                eq(w.gw.chat(b, headers=bearer(tok)).status, 200)
        for b in bodies:
            for tok in ("tenant-a", "tenant-b"):
                wait_key(w, key_for(b, ns_of(tok)))
        # Enough keys to need several SCAN pages (COUNT 1000).
        w.redis.cmd("EVAL", "for i=1,2500 do redis.call('SET','tiergate:v1:bulk:'..i,'x') end", 0)
        seed_foreign(w)
        na, nb = ns_of("tenant-a"), ns_of("tenant-b")
        r = w.gw.req("DELETE", "/admin/cache?namespace=" + na, headers=bearer(ADMIN))
        eq(r.status, 200, "flush one namespace: %r" % r)
        eq(r.json(), {"deleted": 3})
        eq(tkeys(w, "tiergate:v1:%s:*" % na), [])
        eq(len(tkeys(w, "tiergate:v1:%s:*" % nb)), 3, "the other tenant's keys stay")
        eq(w.gw.chat(bodies[0], headers=bearer("tenant-a")).header("x-tiergate-cache"), "miss")
        eq(w.gw.chat(bodies[0], headers=bearer("tenant-b")).header("x-tiergate-cache"), "hit")
        wait_key(w, key_for(bodies[0], na))
        foreign_intact(w)
        for bad in ("ABC", "a:b", "a*", "x" * 40, ""):
            r = w.gw.req("DELETE", "/admin/cache?namespace=" + bad, headers=bearer(ADMIN))
            eq(r.status, 400, "namespace %r" % bad)
        eq(len(tkeys(w)), 2500 + 4, "bad requests deleted nothing")
        r = w.gw.req("DELETE", "/admin/cache", headers=bearer(ADMIN))
        eq(r.status, 200)
        eq(r.json(), {"deleted": 2500 + 4})
        eq(tkeys(w), [])
        foreign_intact(w)
        eq(w.redis.cmd("DBSIZE"), len(FOREIGN) + 1, "only tiergate:v1:* keys went")
        r = w.gw.req("DELETE", "/admin/cache", headers=bearer(ADMIN))
        eq(r.json(), {"deleted": 0}, "flushing an empty cache")
    finally:
        w.start()


# --- single-flight -----------------------------------------------------------------

def concurrent(w, bodies, headers=None):
    """Sends every body at once from its own thread; returns responses in order."""
    out = [None] * len(bodies)
    go = threading.Barrier(len(bodies))

    def one(i):
        go.wait()
        t0 = time.time()
        try:
            r = w.gw.chat(dict(bodies[i]), headers=headers, timeout=20)
            out[i] = (r, t0, time.time())
        except Exception as e:
            out[i] = (e, t0, time.time())

    ts = [threading.Thread(target=one, args=(i,)) for i in range(len(bodies))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    check(all(o is not None for o in out), "a request hung")
    for o in out:
        check(not isinstance(o[0], Exception), "request failed: %r" % (o[0],))
    return out


@test
def single_flight_one_upstream_call(w):
    w.mock.script({"delay_ms": 500, "content": "the one true answer"}, model="gpt-large", times=-1)
    before = lookups(w)
    out = concurrent(w, [chat_body("popular question", model="large")] * 8)
    rs = [o[0] for o in out]
    eq([r.status for r in rs], [200] * 8)
    eq(calls(w), 1, "one upstream call for 8 identical misses")
    eq({text_of(r) for r in rs}, {"the one true answer"})
    eq(sorted(r.header("x-tiergate-cache") for r in rs), ["hit"] * 7 + ["miss"], "followers are hits")
    for r in rs:
        if r.header("x-tiergate-cache") == "hit":
            eq(float(r.header("x-tiergate-cost-usd")), 0.0)
            eq(r.header("x-tiergate-model"), "large")
    d = delta(lookups(w), before)
    eq(d["miss"], 8, "every request looked up and missed")
    eq(d["hit"], 0)


@test
def single_flight_streams_and_non_streams_together(w):
    w.mock.script({"delay_ms": 500, "content": "shared by streams and non-streams"}, model="gpt-large", times=-1)
    plain = chat_body("mixed flight", model="large")
    streamed = chat_body("mixed flight", model="large", stream=True)
    out = concurrent(w, [plain, streamed] * 4)
    eq(calls(w), 1, "stream is not part of the key, so one flight")
    for i, (r, _, _) in enumerate(out):
        if i % 2:
            sse_check(r, "shared by streams and non-streams")
        else:
            eq(text_of(r), "shared by streams and non-streams")
    eq(sorted(o[0].meta("x-tiergate-cache") for o in out), ["hit"] * 7 + ["miss"])


@test
def single_flight_leader_failure_releases_followers(w):
    w.mock.script({"delay_ms": 500, "status": 500, "error": {"message": "leader fails"}}, model="gpt-large")
    out = concurrent(w, [chat_body("doomed leader", model="large")] * 8)
    rs = [o[0] for o in out]
    eq(sorted(r.status for r in rs), [200] * 7 + [502], "followers went upstream themselves")
    eq(calls(w), 8)
    for r in rs:
        if r.status == 200:
            eq(r.header("x-tiergate-cache"), "miss")
            eq(text_of(r), "Hello from gpt-large")
    body = chat_body("doomed leader", model="large")
    wait_key(w, key_for(body))
    eq(w.gw.chat(body).header("x-tiergate-cache"), "hit")


@test
def single_flight_is_per_tenant(w):
    w.mock.script({"delay_ms": 500, "content": "answer one"}, model="gpt-large")
    w.mock.script({"delay_ms": 500, "content": "answer two"}, model="gpt-large")
    body = chat_body("same words, two tenants", model="large")
    out = {}

    def tenant(tok):
        out[tok] = concurrent(w, [body] * 4, headers=bearer(tok))

    ts = [threading.Thread(target=tenant, args=(t,)) for t in ("key-A", "key-B")]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    eq(calls(w), 2, "one flight per tenant")
    texts = {tok: {text_of(o[0]) for o in out[tok]} for tok in out}
    eq(len(texts["key-A"]), 1, "one answer within tenant A")
    eq(len(texts["key-B"]), 1, "one answer within tenant B")
    check(texts["key-A"] != texts["key-B"], "tenants never share a flight: %s" % texts)


@test
def single_flight_leader_disconnect_releases_followers(w):
    w.mock.script({"delay_ms": 3000}, model="gpt-large")
    body = chat_body("leader walks away", model="large")
    raw = json.dumps(body).encode()
    before = lookups(w)
    s = socket.create_connection(("127.0.0.1", w.gw.port))
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(raw), raw))
    wait_for(lambda: w.mock.stats()["active"] >= 1, 3, msg="leader upstream")
    res = {}
    fs = [threading.Thread(target=lambda i=i: res.setdefault(i, w.gw.chat(dict(body), timeout=10)))
          for i in range(3)]
    for f in fs:
        f.start()
    # A follower joins the flight in the same step as its lookup misses.
    wait_for(lambda: delta(lookups(w), before)["miss"] >= 4, 3, msg="followers waiting")
    eq(calls(w), 1, "followers wait, they do not call")
    t0 = time.time()
    s.close()
    for f in fs:
        f.join(10)
    eq(sorted(r.status for r in res.values()), [200] * 3, "followers answered")
    check(time.time() - t0 < 2.5, "released when the leader left, not after its 3 s call")
    wait_for(lambda: w.mock.stats()["aborted"] >= 1, 3, msg="leader's upstream call cancelled")


@test
def single_flight_wait_is_bounded_and_can_be_off(w):
    try:
        w.start(cache=dict(CACHE, single_flight_wait_ms=300))
        w.mock.script({"delay_ms": 2000}, model="gpt-large")
        body = chat_body("slow leader", model="large")
        lead = {}
        t = threading.Thread(target=lambda: lead.update(r=w.gw.chat(dict(body), timeout=20), end=time.time()))
        t.start()
        wait_for(lambda: w.mock.stats()["active"] >= 1, 3, msg="leader upstream")
        out = concurrent(w, [body] * 3)
        t.join(20)
        eq(lead["r"].status, 200)
        for r, t0, t1 in out:
            eq(r.status, 200)
            eq(r.header("x-tiergate-cache"), "miss")
            check(t1 < lead["end"], "a follower gave up waiting before the leader finished")
        eq(calls(w), 4, "followers past the wait bound call upstream")

        w.start(cache=dict(CACHE, single_flight=False))
        w.mock.reset()
        w.mock.script({"delay_ms": 300}, model="gpt-large", times=-1)
        out = concurrent(w, [chat_body("no flight", model="large")] * 4)
        eq(calls(w), 4, "single_flight off: every miss goes upstream")
        eq({o[0].header("x-tiergate-cache") for o in out}, {"miss"})
    finally:
        w.start()


@test
def cache_metrics_follow_the_sequence(w):
    before = lookups(w)
    b = chat_body("metrics sequence")
    w.gw.chat(b)                                          # miss
    wait_key(w, key_for(b))
    w.gw.chat(b)                                          # hit
    w.gw.chat(b)                                          # hit
    w.gw.chat(b, headers={"cache-control": "no-cache"})   # bypass: no lookup
    w.gw.chat(chat_body("hot", temperature=2))            # bypass: no lookup
    eq(delta(lookups(w), before), {"hit": 2, "miss": 1, "bypass": 0, "off": 0, "error": 0})
    m = w.gw.metrics()
    hits = sum(v for k, v in m.items() if k.startswith("tiergate_requests_total{") and 'cache="hit"' in k)
    check(hits >= 2, "requests_total counts hits by cache label")
