# SPDX-License-Identifier: MIT
"""The semantic cache (issue 14), the parts in place before the lookup is
wired into the request path: the mock upstream's POST /v1/embeddings (the
shape the openai SDK expects, base64, faults, and the cosines the semantic
tests rely on), and DELETE /admin/cache removing vectors
(tiergate:v1:<ns>:sem:<hex>) with their entries and, on a full flush, the
sync log. Guards, index and Redis format are unit tests
(tests/unit/test_semguard.c, test_semindex.c, test_semstore.c)."""
import base64
import json
import struct

from harness import check, eq, request, test, World

ADMIN = "admin-secret-for-semantic-tests"
CONTEXT = ("I am writing the user guide for our home automation hub, which controls lamps, "
           "heating, blinds and door locks in every room through a small web dashboard and a "
           "phone app. Please explain in plain words what the hub does when it receives the "
           "request below.")


def WORLD():
    return World(cache={"ttl_s": 600})


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
        eq(w.redis.cmd("XLEN", "tiergate:v1:_semlog"), 6, "a namespace flush keeps the log")
        r = w.gw.req("DELETE", "/admin/cache", headers=bearer(ADMIN))
        eq(r.json(), {"deleted": 7}, "3 entries, 3 vectors, the log")
        eq(tkeys(w), [])
        eq(w.redis.cmd("GET", "user:1"), "keep")
    finally:
        w.start()
