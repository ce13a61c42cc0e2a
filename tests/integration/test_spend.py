# SPDX-License-Identifier: MIT
"""Spend limits that hold under concurrency, and streams that are billed when
they are cut short (issue 21 F3, F4; docs/hardening.md "Spend limits").

F3: a key's daily cap was checked at admission and charged at the end, so 20
concurrent requests under a $0.01 cap were all answered ($5.00). Now each
request holds an estimate of the most it can cost before it goes upstream and
settles with what it cost. F4: a client that read most of a stream and hung
up was logged at 0 tokens and $0; now what was generated is estimated,
charged to the key and the metrics, and marked "estimated" in the decision
line."""
import functools
import hashlib
import json
import socket
import threading
import time

from harness import chat_body, check, eq, test, wait_for

KEY = "tg-spend-key-4242"
LARGE_IN, LARGE_OUT = 2.50, 10.00  # harness prices of "large", $ per 1M tokens


def sha(k):
    return "sha256:" + hashlib.sha256(k.encode()).hexdigest()


def auth():
    return {"authorization": "Bearer " + KEY}


def start(w, usd, **over):
    w.start(auth={"keys": [{"name": "spender", "sha256": sha(KEY), "usd_per_day": usd}]}, **over)


def restores(fn):
    """The test starts its own gateway; the shared one is back afterwards,
    passed or not."""
    @functools.wraps(fn)
    def run(w):
        try:
            fn(w)
        finally:
            w.start()
    return run


def usd(prompt, completion):
    return (prompt * LARGE_IN + completion * LARGE_OUT) / 1e6


def post_bytes(body):
    b = json.dumps(body).encode()
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Length: %d\r\n\r\n%s" % (len(b), b))


def metric(w, name):
    return w.gw.metrics().get(name, 0.0)


@test
@restores
def concurrent_requests_cannot_overshoot_the_day(w):
    """The reviewer's case: 20 concurrent large requests under a $0.01 cap."""
    cap = 0.01
    start(w, cap)
    # Each answer bills 300 prompt + 200 completion tokens at the large
    # model's prices: $0.00275. The answers take 600 ms, so all 20 requests
    # are in flight together.
    per_request = usd(300, 200)
    w.mock.script({"delay_ms": 600, "usage": {"prompt_tokens": 300, "completion_tokens": 200}},
                  model="gpt-large", times=-1)
    results = [None] * 20

    def one(i):
        body = chat_body("request %d: " % i + "x" * 1000, model="large", max_tokens=200)
        results[i] = w.gw.chat(body, headers=auth())

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    statuses = [r.status for r in results]
    ok = [r for r in results if r.status == 200]
    refused = [r for r in results if r.status == 429]
    eq(len(ok) + len(refused), 20, "every request is answered or refused: %r" % statuses)
    check(ok, "what fits is answered: %r" % statuses)
    check(refused, "what does not fit is refused: %r" % statuses)
    for r in refused:
        e = r.json()["error"]
        eq(e["code"], "spend_limit_exceeded")
        eq(e["type"], "rate_limit_error")
        check("may cost up to" in e["message"], e["message"])
        check(int(r.header("retry-after")) >= 1, "Retry-After on a refusal")
    eq(len(w.mock.requests()), len(ok), "a refused request never reaches the provider")
    charged = sum(float(r.header("x-tiergate-cost-usd")) for r in ok)
    check(abs(charged - len(ok) * per_request) < 1e-6, "each answer billed %r" % charged)
    # The bound: the cap plus what one request's estimate can miss by.
    check(charged <= cap + per_request, "charged $%.5f under a $%.2f cap" % (charged, cap))
    m = w.gw.metrics()
    check(abs(m['tiergate_cost_usd_total{model="large"}'] - charged) < 1e-6, "metrics agree")
    # Everything settled: the day is spent as far as another such request
    # goes, and the refusal now says to come back tomorrow.
    r = w.gw.chat(chat_body("one more", model="large", max_tokens=200), headers=auth())
    eq(r.status, 429)
    check(int(r.header("retry-after")) > 2, "to the day's end, not a short wait")
    # A request small enough for what is left still fits.
    left = cap - charged
    small = max(1, int((left * 1e6 - 300 * LARGE_IN) / LARGE_OUT) - 20)
    if left > usd(300, 30):
        eq(w.gw.chat(chat_body("small", model="large", max_tokens=small), headers=auth()).status, 200)


@test
@restores
def hang_up_releases_the_reservation(w):
    # Room for one request in flight at a time (~$0.0026 each).
    start(w, 0.004)
    w.mock.script({"delay_ms": 5000}, model="gpt-large", body_contains="slow-one")
    s = socket.create_connection(("127.0.0.1", w.gw.port))
    s.sendall(post_bytes(chat_body("slow-one " + "x" * 1000, model="large", max_tokens=200)))
    wait_for(lambda: w.mock.stats()["active"] >= 1, 5, msg="the slow request upstream")
    r = w.gw.chat(chat_body("second " + "x" * 1000, model="large", max_tokens=200), headers=auth())
    eq(r.status, 429, "the first request holds the room")
    eq(r.json()["error"]["code"], "spend_limit_exceeded")
    check(int(r.header("retry-after")) <= 2, "a short wait: the room frees when it settles")
    s.close()
    wait_for(lambda: w.mock.stats()["aborted"] >= 1, 5, msg="the slow call cancelled")
    # Nothing of an answer arrived: nothing billed, the reservation released.
    r = wait_for(lambda: (lambda x: x if x.status == 200 else None)(
        w.gw.chat(chat_body("third " + "x" * 1000, model="large", max_tokens=200), headers=auth())),
        5, msg="room again after the hang-up")
    d = [x for x in w.gw.decisions() if x["status"] == 499]
    eq(len(d), 1, "the abandoned request is logged")
    eq(d[0]["cost_usd"], 0.0)


@test
@restores
def cache_hits_need_no_reservation(w):
    start(w, 0.006)
    w.mock.script({"usage": {"prompt_tokens": 300, "completion_tokens": 200}},
                  model="gpt-large", times=-1, body_contains="cached-q")
    body = chat_body("cached-q " + "x" * 1000, model="large", max_tokens=200, temperature=0)
    eq(w.gw.chat(body, headers=auth()).status, 200)  # $0.00275 spent, stored
    time.sleep(0.2)  # the store is fire and forget
    w.mock.script({"delay_ms": 5000}, model="gpt-large", body_contains="slow-two")
    s = socket.create_connection(("127.0.0.1", w.gw.port))
    s.sendall(post_bytes(chat_body("slow-two " + "x" * 1000, model="large", max_tokens=200)))
    wait_for(lambda: w.mock.stats()["active"] >= 1, 5, msg="the slow request upstream")
    r = w.gw.chat(chat_body("other " + "x" * 1000, model="large", max_tokens=200), headers=auth())
    eq(r.status, 429, "no room for another upstream call")
    r = w.gw.chat(body, headers=auth())
    eq(r.status, 200, "a cache hit costs nothing and is served: %r" % r)
    eq(r.header("x-tiergate-cache"), "hit")
    s.close()


def read_stream(s, want_chars):
    """Reads a chat stream until want_chars content characters arrived;
    returns them."""
    buf, content = b"", ""
    s.settimeout(10)
    while len(content) < want_chars:
        d = s.recv(65536)
        check(d, "stream ended early after %d characters" % len(content))
        buf += d
        while b"\n\n" in buf:
            ev, buf = buf.split(b"\n\n", 1)
            for line in ev.split(b"\n"):
                line = line.strip(b"\r")
                i = line.find(b"data: {")
                if i >= 0:
                    j = json.loads(line[i + 6:])
                    for c in j.get("choices", []):
                        content += c.get("delta", {}).get("content") or ""
    return content


@test
@restores
def abandoned_stream_is_billed_as_estimated(w):
    start(w, 0.02)
    # 4,000 characters in 40 chunks, 40 ms apart, on the last tier (live).
    w.mock.script({"content": "abcd" * 1000, "chunk_chars": 100, "drip_ms": 40},
                  model="gpt-large", body_contains="long-story")
    before = w.gw.metrics()
    s = socket.create_connection(("127.0.0.1", w.gw.port))
    s.sendall(post_bytes(chat_body("long-story please", model="large", stream=True, max_tokens=1000)))
    got = read_stream(s, 3000)
    s.close()
    d = wait_for(lambda: [x for x in w.gw.decisions() if x["status"] == 499], 5,
                 msg="the abandoned stream's decision line")[0]
    a = d["attempts"][0]
    eq(a["outcome"], "cancelled")
    eq(a.get("estimated"), True, "the attempt's tokens are an estimate: %r" % a)
    eq(d.get("estimated"), True, "and so is the request's cost")
    # What reached the client was generated; the gateway may have read a
    # few chunks more than the client did, never more than the answer.
    check((len(got) + 3) // 4 <= a["completion_tokens"] <= 1000, "completion tokens %r for %d characters" %
          (a["completion_tokens"], len(got)))
    check(a["prompt_tokens"] > 0, "the prompt was billed too")
    cost = usd(a["prompt_tokens"], a["completion_tokens"])
    check(abs(a["cost_usd"] - cost) < 1e-7 and abs(d["cost_usd"] - cost) < 1e-7, "priced: %r" % d)
    after = w.gw.metrics()
    key = '{model="large"}'
    check(abs(after["tiergate_cost_usd_total" + key] - before.get("tiergate_cost_usd_total" + key, 0)
              - cost) < 1e-7, "in the cost metric")
    ck = 'tiergate_tokens_total{model="large",kind="completion"}'
    eq(after[ck] - before.get(ck, 0), a["completion_tokens"], "in the token metric")
    # Charged to the key: ~$0.0075 or more is spent, so a request that
    # may cost $0.013 no longer fits the $0.02 day (it would have before).
    r = w.gw.chat(chat_body("after", model="large", max_tokens=1300), headers=auth())
    eq(r.status, 429, "the estimate was charged to the key: %r" % r)


@test
def stream_cut_below_the_last_tier_is_billed(w):
    # A stream held on the cheap tier breaks after 5 chunks: the ladder moves
    # up, and the broken attempt is billed for what it generated.
    w.mock.script({"content": "y" * 400, "chunk_chars": 40, "reset": "mid_stream", "after_chunks": 5},
                  model="gpt-cheap")
    # (Stream mode buffer: prefix mode would have gone live after 20 tokens.)
    r = w.gw.chat(chat_body("cut-below", model="cheap", stream=True),
                  headers={"x-tiergate-stream-mode": "buffer"})
    eq(r.status, 200)
    eq(r.events()[-1], "[DONE]")
    d = w.gw.decision(r)
    first = d["attempts"][0]
    eq(first["model"], "mini")
    eq(first["outcome"], "transport")
    eq(first.get("estimated"), True, "%r" % first)
    check(first["completion_tokens"] > 0, "what arrived of five 40-character chunks: %r" % first)
    check(first["cost_usd"] > 0)
    eq(d["attempts"][-1].get("estimated"), None, "the answer that completed carries usage")
    eq(d.get("estimated"), True)
