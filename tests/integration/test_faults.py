# SPDX-License-Identifier: MIT
"""Hardening (issue 7, items 1, 3 and 4): upstream faults the other suites do
not cover (connection refused, oversized and mistyped answers, drips, 5xx
variants), clients that misbehave (leaving after the answer, not reading a
big stream, pipelining, slowloris, thousands of idle sockets, too many
connections, huge heads), request framing that could smuggle a second
request past a front proxy, hop-by-hop headers, and hostile JSON.

Every test ends by checking that the gateway still answers a normal
request; the harness fails the file on any sanitizer report at shutdown.
Redis faults are in test_cache.py; resets, stalls, timeouts and 5xx/429 on
the ladder in test_core.py and test_cascade.py."""
import json
import os
import resource
import socket
import struct
import threading
import time

from harness import World, Response, check, eq, free_port, test, wait_for, chat_body

PINNED = "large"  # the last tier: one candidate, no cascade
NO_TRIP = {"failure_threshold": 0, "failure_ratio": 0}
WORLD = lambda: World(breaker=NO_TRIP)  # noqa: E731


# --- helpers -------------------------------------------------------------------

_n = [0]


def uniq(text="hello"):
    """A prompt no earlier request used: the cache never answers for it."""
    _n[0] += 1
    return "%s (#%d)" % (text, _n[0])


def ask(w, model=PINNED, stream=False, headers=None, **fields):
    b = chat_body(uniq(), model=model, **fields)
    if stream:
        b["stream"] = True
    return w.gw.req("POST", "/v1/chat/completions", b, headers)


def serves(w):
    """The gateway still answers a plain request from upstream."""
    r = ask(w)
    eq(r.status, 200, "a normal request afterwards (%r)" % r)
    eq(r.json()["choices"][0]["message"]["content"], "Hello from gpt-large")


def model_cfg(w, name, **over):
    return dict(w.config()["models"][name], **over)


def decision(w, r):
    return w.gw.decision(r)


def attempts(d):
    return [(a["model"], a["outcome"]) for a in d["attempts"]]


def tkeys(w):
    """Cache entries: not single-flight locks (released just after a store)."""
    return [k for k in w.redis.cmd("KEYS", "tiergate:v1:*") or [] if not k.endswith(":lock")]


def no_keys_after_barrier(w):
    """Nothing was cached: a fresh answer's store lands first, then only its key exists."""
    r = ask(w)
    eq(r.status, 200)
    wait_for(lambda: len(tkeys(w)) >= 1, 3, msg="the barrier's cache store")
    eq(len(tkeys(w)), 1, "only the barrier request was cached: %r" % tkeys(w))


def stream_text(ev):
    return "".join((e["choices"][0]["delta"].get("content") or "")
                   for e in ev if isinstance(e, dict) and e.get("choices"))


def proc_status(w, field):
    with open("/proc/%d/status" % w.gw.p.pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s in /proc status" % field)


def open_fds(w):
    return len(os.listdir("/proc/%d/fd" % w.gw.p.pid))


def inflight(w):
    """In-flight requests, not counting the /metrics request asking."""
    return w.gw.metrics()["tiergate_inflight_requests"] - 1


def settled(w):
    wait_for(lambda: inflight(w) == 0, 5, msg="no request left in flight")


def connect(w, rcvbuf=None):
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect(("127.0.0.1", w.gw.port))
    return s


def post_bytes(body, extra=b"", path=b"/v1/chat/completions"):
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    return (b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%s"
            b"Content-Length: %d\r\n\r\n%s" % (path, extra, len(body), body))


def rst_close(s):
    """Close with a TCP RST (SO_LINGER 0): the abrupt way clients vanish."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def until_close(s, limit=5.0):
    """Everything the server sends until it closes; fails if it never does."""
    s.settimeout(limit)
    out = b""
    end = time.time() + limit
    while time.time() < end:
        try:
            d = s.recv(65536)
        except ConnectionResetError:
            return out
        except socket.timeout:
            break
        if not d:
            return out
        out += d
    raise AssertionError("connection neither answered and closed nor closed within %.0fs: %r"
                         % (limit, out[:200]))


class Reader:
    """Reads HTTP/1.1 responses one after another from one socket."""

    def __init__(self, s):
        self.s = s
        self.buf = b""

    def _fill(self):
        d = self.s.recv(65536)
        if not d:
            raise EOFError("connection closed")
        self.buf += d

    def line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exact(self, n):
        while len(self.buf) < n:
            self._fill()
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def response(self):
        status = int(self.line().split()[1])
        headers = []
        while True:
            line = self.line()
            if not line:
                break
            k, v = line.split(b":", 1)
            headers.append((k.strip().decode(), v.strip().decode()))
        h = {k.lower(): v for k, v in headers}
        if "content-length" in h:
            body = self.exact(int(h["content-length"]))
        elif h.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                n = int(self.line().split(b";")[0], 16)
                if n == 0:
                    while self.line():
                        pass
                    break
                body += self.exact(n)
                self.exact(2)
        else:
            body = self.buf
            while True:
                d = self.s.recv(65536)
                if not d:
                    break
                body += d
            self.buf = b""
        return Response(status, headers, body)


# --- upstream faults ------------------------------------------------------------

@test
def upstream_connection_refused(w):
    dead = "http://127.0.0.1:%d/v1" % free_port()  # nothing listens there
    cheap2 = model_cfg(w, "mini", upstream_model="gpt-cheap2")
    w.start(models={"mini": model_cfg(w, "mini", base_url=dead), "mini2": cheap2,
                    "large": model_cfg(w, "large", base_url=dead)},
            tiers={"cheap": ["mini", "mini2"], "medium": ["mid"], "expensive": ["large"]})
    try:
        # The last tier refuses: 502 at once, in OpenAI's shape.
        t0 = time.time()
        r = ask(w)
        eq(r.status, 502, "refused on the last tier")
        check(time.time() - t0 < 3, "answered promptly (%.2fs)" % (time.time() - t0))
        e = r.json()["error"]
        eq(set(e), {"message", "type", "param", "code"})
        eq(e["type"], "upstream_error")
        eq(attempts(decision(w, r)), [("large", "transport")])
        # A cheap model refuses: its same-tier fallback answers.
        r = ask(w, model="mini")
        eq(r.status, 200, "fallback answered")
        eq(r.header("x-tiergate-model"), "mini2")
        eq(r.header("x-tiergate-escalations"), "0")
        eq(attempts(decision(w, r)), [("mini", "transport"), ("mini2", "ok")])
        # Both cheap models fail (refused, then a 503): the medium tier answers.
        w.mock.reset()
        w.mock.script({"status": 503}, model="gpt-cheap2")
        r = ask(w, model="cheap")
        eq(r.status, 200, "escalated")
        eq(r.header("x-tiergate-model"), "mid")
        eq(r.header("x-tiergate-escalations"), "1")
        eq([x["model"] for x in w.mock.requests()], ["gpt-cheap2", "gpt-mid"], "upstream calls")
        # Streams too: the last tier refusing before any answer byte is an
        # error event (the head left at once).
        r = ask(w, stream=True)
        eq(r.status, 200)
        eq(r.events()[-1]["error"]["code"], "upstream_failed", "stream refused on the last tier")
    finally:
        w.start()
    serves(w)


@test
def upstream_5xx_variants(w):
    # 500 and 503 are in test_core/test_cascade; the rest of the family here.
    for st in (502, 504, 520, 599):
        w.mock.script({"status": st}, model="gpt-large")
        r = ask(w)
        eq(r.status, 502, "upstream %d on the last tier" % st)
        eq(r.json()["error"]["type"], "upstream_error")
    # A status that is neither 2xx, 4xx nor 5xx (3xx is not followed) moves up too.
    w.mock.script({"status": 302, "headers": {"location": "http://example.com/"}}, model="gpt-cheap")
    r = ask(w, model="cheap")
    eq(r.status, 200, "302 from cheap escalates")
    eq(r.header("x-tiergate-model"), "mid")
    wait_for(lambda: len(tkeys(w)) == 1, 3, msg="only the good answer is cached")
    serves(w)


@test
def oversized_upstream_answer(w):
    cap = 65536
    w.start(limits={"max_upstream_response_bytes": cap})
    try:
        # Last tier: the answer crosses the cap -> 502, nothing cached.
        w.mock.script({"body_size": 4 * cap}, model="gpt-large")
        r = ask(w)
        eq(r.status, 502, "answer over limits.max_upstream_response_bytes")
        eq(r.json()["error"]["type"], "upstream_error")
        eq(attempts(decision(w, r)), [("large", "transport")])
        # A cheap answer over the cap is a failed attempt: the ladder moves up.
        w.mock.script({"body_size": 4 * cap}, model="gpt-cheap")
        r = ask(w, model="cheap")
        eq(r.status, 200)
        eq(r.header("x-tiergate-model"), "mid")
        # A buffered (still escalatable) stream over the cap: the same.
        w.mock.script({"body_size": 4 * cap, "chunk_chars": 4096}, model="gpt-cheap")
        r = ask(w, model="cheap", stream=True, headers={"x-tiergate-stream-mode": "buffer"})
        eq(r.status, 200)
        check(b"x" * 100 not in r.body, "no byte of the oversized cheap stream reached the client")
        eq(r.events()[-1], "[DONE]")
        eq(r.meta("x-tiergate-model"), "mid")
        # A live stream on the last tier: cut where the answer crosses the cap,
        # with an error event, and never cached.
        w.flush_cache()
        w.mock.script({"body_size": 4 * cap, "chunk_chars": 4096, "drip_ms": 50}, model="gpt-large")
        t0 = time.time()
        r = ask(w, stream=True)
        eq(r.status, 200)
        check(time.time() - t0 < 2.5, "cut at the cap, not after the whole 3.2 s answer")
        ev = r.events()
        check(ev[-1] != "[DONE]" and "error" in ev[-1], "error event last: %r" % ev[-1:])
        eq(ev[-1]["error"]["type"], "upstream_error")
        n = len(stream_text(ev))
        check(0 < n <= cap, "streamed up to the cap, no further (%d bytes)" % n)
        wait_for(lambda: w.mock.stats()["aborted"] >= 1, 3, msg="the upstream call cut at the cap")
        no_keys_after_barrier(w)
        serves(w)
    finally:
        w.start()


@test
def wrong_content_types(w):
    html = "<html><body><h1>502 Bad Gateway</h1></body></html>"
    # An HTML page with a 200 (a captive portal, a misrouted proxy).
    w.mock.script({"body": html, "content_type": "text/html"}, model="gpt-large")
    r = ask(w)
    eq(r.status, 502, "HTML on the last tier")
    check("invalid" in r.json()["error"]["message"], r.json()["error"]["message"])
    w.mock.script({"body": html, "content_type": "text/html"}, model="gpt-cheap")
    r = ask(w, model="cheap")
    eq(r.header("x-tiergate-model"), "mid", "HTML from cheap escalates")
    w.mock.script({"body": html, "content_type": "text/html"}, model="gpt-large")
    r = ask(w, stream=True)
    eq(r.status, 200, "HTML to a stream request: the head left before it")
    eq(r.events(), [r.events()[0]])
    eq(r.events()[0]["error"]["code"], "invalid_upstream_response")
    # A JSON completion labelled text/event-stream to a non-stream request:
    # judged by its bytes, it is a good answer.
    w.mock.script({"content": "labelled oddly", "content_type": "text/event-stream"}, model="gpt-large")
    r = ask(w)
    eq(r.status, 200, "JSON body under an SSE label")
    eq(r.json()["choices"][0]["message"]["content"], "labelled oddly")
    # An actual event stream to a non-stream request is not a completion.
    sse = ('data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":'
           '[{"index":0,"delta":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}\n\n'
           'data: [DONE]\n\n')
    w.mock.script({"body": sse, "content_type": "text/event-stream"}, model="gpt-large")
    eq(ask(w).status, 502, "SSE to a non-stream request on the last tier")
    # A JSON completion to a stream request: the client still gets a valid stream.
    done = {"id": "chatcmpl-json", "object": "chat.completion", "created": 1, "model": "gpt-large",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "json to a stream"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}
    w.mock.script({"body": json.dumps(done)}, model="gpt-large")
    r = ask(w, stream=True)
    eq(r.status, 200)
    check(r.header("content-type").startswith("text/event-stream"), r.header("content-type"))
    ev = r.events()
    eq(ev[-1], "[DONE]")
    eq(stream_text(ev), "json to a stream")
    eq({e["object"] for e in ev[:-1]}, {"chat.completion.chunk"})
    eq(ev[0]["choices"][0]["delta"].get("role"), "assistant")
    eq([e["choices"][0]["finish_reason"] for e in ev[:-1] if e["choices"][0].get("finish_reason")], ["stop"])
    serves(w)


@test
def slow_drip_within_and_beyond_the_idle_timeout(w):
    w.start(models={"large": model_cfg(w, "large", idle_timeout_ms=1000)})
    try:
        # 8 chunks 250 ms apart: 2 s in all, every gap well inside the 1 s idle timeout.
        w.mock.script({"content": "d" * 32, "chunk_chars": 4, "drip_ms": 250}, model="gpt-large")
        t0 = time.time()
        r = ask(w, stream=True)
        ev = r.events()
        eq(ev[-1], "[DONE]", "the slow stream completed")
        eq(stream_text(ev), "d" * 32)
        check(time.time() - t0 > 1.5, "it really dripped")
        # A drip slower than the idle timeout: cut with the gateway's error event.
        w.flush_cache()
        w.mock.script({"content": "e" * 16, "chunk_chars": 4, "drip_ms": 2500}, model="gpt-large")
        t0 = time.time()
        r = ask(w, stream=True)
        eq(r.status, 200)
        ev = r.events()
        check(ev[-1] != "[DONE]" and "error" in ev[-1], "error event last: %r" % ev[-2:])
        eq(ev[-1]["error"]["code"], "upstream_timeout")
        check(time.time() - t0 < 4, "cut at the idle timeout, not at the end of the drip")
        wait_for(lambda: w.mock.stats()["aborted"] >= 1, 3, msg="the dripping call closed")
        no_keys_after_barrier(w)
        serves(w)
    finally:
        w.start()


# --- clients that misbehave ----------------------------------------------------

@test
def client_leaves_before_during_and_after(w):
    # A non-stream answer of 8 MB: the upstream call is over, the gateway is
    # writing; the client reads a little and vanishes with a RST.
    w.mock.script({"body_size": 8 << 20}, model="gpt-large")
    s = connect(w, rcvbuf=16384)
    s.sendall(post_bytes(chat_body(uniq(), model=PINNED), b"X-Request-Id: leaver-1\r\n"))
    head = s.recv(4096)
    check(head.startswith(b"HTTP/1.1 200"), "answer started: %r" % head[:80])
    rst_close(s)
    settled(w)
    eq(w.mock.stats()["aborted"], 0, "the upstream call had completed")
    d = wait_for(lambda: [x for x in w.gw.decisions() if x["request_id"] == "leaver-1"], 3,
                 msg="decision line")
    eq(d[0]["status"], 200)
    # A validated (buffered) stream being replayed when the client leaves.
    w.mock.script({"body_size": 4 << 20, "chunk_chars": 65536}, model="gpt-cheap")
    s = connect(w, rcvbuf=16384)
    s.sendall(post_bytes(chat_body(uniq(), model="cheap", stream=True)))
    wait_for(lambda: b"data:" in s.recv(4096), 10, msg="replay started")
    rst_close(s)
    settled(w)
    # Before its request is complete: half a body, then gone.
    half = post_bytes(chat_body(uniq(), model=PINNED))
    s = connect(w)
    s.sendall(half[:len(half) - 20])
    time.sleep(0.2)
    rst_close(s)
    settled(w)
    eq(w.mock.stats()["requests"], 2, "the half-sent request never went upstream")
    # And right after the request went upstream, before any answer byte.
    w.mock.script({"delay_ms": 300}, model="gpt-large")
    s = connect(w)
    s.sendall(post_bytes(chat_body(uniq(), model=PINNED)))
    wait_for(lambda: w.mock.stats()["active"] >= 1, 3, msg="upstream call")
    rst_close(s)
    settled(w)
    serves(w)


@test
def unread_big_stream_pauses_upstream(w):
    # 20 MB of content on the last tier (passed through live) to a client
    # that reads the start and then nothing for a while.
    size = 20 << 20
    w.mock.script({"body_size": size, "chunk_chars": 65536}, model="gpt-large")
    s = connect(w, rcvbuf=32768)
    s.sendall(post_bytes(chat_body(uniq(), model=PINNED, stream=True)))
    got = b""
    while len(got) < 256 * 1024:
        got += s.recv(65536)
    time.sleep(1.0)  # let every buffer between mock, gateway and client fill
    rss0 = proc_status(w, "VmRSS")
    time.sleep(3.0)  # the client holds the stream unread
    rss1 = proc_status(w, "VmRSS")
    check(rss1 - rss0 < 8 * 1024, "RSS grew %d kB while the stream was held" % (rss1 - rss0))
    print("        RSS while a 20 MB stream was held unread: %d kB -> %d kB" % (rss0, rss1))
    eq(w.mock.stats()["active"], 1, "the upstream is paused, not drained into the gateway")
    # Reading resumes: the whole stream arrives and ends properly.
    s.settimeout(30)
    chunks = [got]
    while True:
        d = s.recv(1 << 20)
        if not d:
            break
        chunks.append(d)
        if d.endswith(b"0\r\n\r\n") and b"[DONE]" in b"".join(chunks[-2:]):
            break
    s.close()
    raw = b"".join(chunks)
    body = raw.split(b"\r\n\r\n", 1)[1]
    body = b"\n".join(l for l in body.split(b"\n") if not l.startswith(b": x-tiergate-"))
    # The padding is all 'x'; the only other 'x' is the one in each event's "index".
    eq(body.count(b"x") - body.count(b'"index"'), size, "every content byte arrived")
    check(b"data: [DONE]" in body[-200:], "ended with [DONE]")
    settled(w)
    serves(w)


@test
def pipelined_requests_answered_in_order(w):
    w.mock.script({"delay_ms": 300, "content": "slow first"}, model="gpt-large")
    s = connect(w)
    s.sendall(post_bytes(chat_body(uniq(), model=PINNED)) +
              b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" +
              post_bytes(chat_body(uniq(), model=PINNED, stream=True)) +
              b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
    rd = Reader(s)
    r1, r2, r3, r4 = rd.response(), rd.response(), rd.response(), rd.response()
    s.close()
    eq(r1.status, 200)
    eq(r1.json()["choices"][0]["message"]["content"], "slow first", "first answer first")
    eq(r2.status, 200)
    eq(r2.json(), {"status": "ok"}, "then the health check")
    eq(r3.status, 200)
    eq(r3.events()[-1], "[DONE]", "then the stream")
    eq(r4.json()["object"], "list", "then the model list")
    eq(len(w.mock.requests()), 2, "two upstream calls")
    serves(w)


@test
def slowloris_is_cut_and_others_are_served(w):
    w.start(limits={"connection_timeout_s": 2})
    try:
        slow = []
        for i in range(40):
            s = connect(w)
            if i % 2:
                s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # head trickles
            else:
                s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                          b"\r\nContent-Length: 100000\r\n\r\n{")  # body trickles
            slow.append(s)
        closed = {}
        t0 = time.time()
        served = 0
        while len(closed) < len(slow) and time.time() - t0 < 10:
            for i, s in enumerate(slow):
                if i in closed:
                    continue
                try:
                    s.sendall(b"a")
                except OSError:
                    closed[i] = time.time() - t0
            # Meanwhile normal clients are served.
            t1 = time.time()
            eq(w.gw.req("GET", "/healthz", timeout=5).status, 200)
            check(time.time() - t1 < 2, "served promptly during the attack")
            served += 1
            time.sleep(0.5)
        eq(len(closed), len(slow), "every trickling connection was closed")
        check(max(closed.values()) < 6, "closed by connection_timeout_s (%.1fs)" % max(closed.values()))
        check(served >= 3, "served others meanwhile")
        for s in slow:
            s.close()
        eq(len(w.mock.requests()), 0, "no trickled request went upstream")
        serves(w)
    finally:
        w.start()


@test
def thousands_of_idle_connections(w):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    base = open_fds(w)
    idle = []
    try:
        for _ in range(2000):
            idle.append(socket.create_connection(("127.0.0.1", w.gw.port), timeout=10))
        wait_for(lambda: open_fds(w) >= base + 2000, 15, msg="2,000 connections accepted")
        t0 = time.time()
        serves(w)
        r = ask(w, stream=True)
        eq(r.events()[-1], "[DONE]")
        eq(w.gw.req("GET", "/healthz").status, 200)
        check(time.time() - t0 < 10, "served beside 2,000 idle sockets")
    finally:
        for s in idle:
            s.close()
    wait_for(lambda: open_fds(w) <= base + 8, 15, msg="every fd released (base %d, now %d)"
             % (base, open_fds(w)))
    serves(w)


@test
def connection_limit_holds_then_serves_again(w):
    w.start(shards=1, limits={"max_connections": 3})
    try:
        held = [connect(w) for _ in range(3)]
        wait_for(lambda: open_fds(w) >= 3, 3)
        out = {}

        def late():
            try:
                out["r"] = w.gw.req("GET", "/healthz", timeout=15)
            except Exception as e:  # noqa: BLE001
                out["e"] = e
        t = threading.Thread(target=late)
        t.start()
        t.join(1.0)
        check(t.is_alive() and not out, "no fourth connection is served while 3 are open: %r" % out)
        for s in held:
            s.close()
        t.join(10)
        check("r" in out, "the waiting client is served once a slot frees: %r" % out)
        eq(out["r"].status, 200)
        # Reaching the limit again and again does not wedge the listener.
        for _ in range(3):
            held = [connect(w) for _ in range(3)]
            for s in held:
                s.close()
            eq(w.gw.req("GET", "/healthz", timeout=10).status, 200)
        serves(w)
    finally:
        w.start()


@test
def oversized_heads(w):
    # Default pools (limits.conn_memory_kb 16): a 40 KB header does not fit,
    # and MHD answers 431 itself (an HTML body) and closes.
    s = connect(w)
    s.sendall(post_bytes(chat_body(uniq(), model=PINNED), b"X-Big: " + b"a" * 40000 + b"\r\n"))
    out = until_close(s)
    s.close()
    check(out.startswith(b"HTTP/1.1 431"), "40 KB header: %r" % out[:100])
    # limits.max_header_bytes below what the pool holds: our own 431, OpenAI-shaped.
    w.start(limits={"conn_memory_kb": 128, "max_header_bytes": 8192})
    try:
        s = connect(w)
        s.sendall(post_bytes(chat_body(uniq(), model=PINNED), b"X-Big: " + b"a" * 12000 + b"\r\n"))
        out = until_close(s)
        s.close()
        check(out.startswith(b"HTTP/1.1 431"), "12 KB header over an 8 KB limit: %r" % out[:100])
        e = json.loads(out.split(b"\r\n\r\n", 1)[1])["error"]
        eq(e["code"], "headers_too_large")
        eq(set(e), {"message", "type", "param", "code"})
        r = ask(w, headers={"x-big": "a" * 6000})
        eq(r.status, 200, "a 6 KB header is under the limit")
        eq(len(w.mock.requests()), 1, "only the accepted request went upstream")
    finally:
        w.start()
    serves(w)


# --- framing ---------------------------------------------------------------------

BODY = json.dumps(chat_body("framing", model=PINNED)).encode()
HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
SMUGGLED = post_bytes(chat_body("smuggled", model=PINNED))


def chunked(b):
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(b), b)


FRAMING = [
    ("Content-Length and Transfer-Encoding",
     HEAD + b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % len(BODY) + chunked(BODY) + SMUGGLED),
    ("Transfer-Encoding and Content-Length",
     HEAD + b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n" + chunked(BODY) + SMUGGLED),
    ("two Content-Lengths that disagree",
     HEAD + b"Content-Length: %d\r\nContent-Length: %d\r\n\r\n" % (len(BODY), len(BODY) + len(SMUGGLED))
     + BODY + SMUGGLED),
    ("Content-Length list", HEAD + b"Content-Length: %d, %d\r\n\r\n" % (len(BODY), len(BODY)) + BODY),
    ("negative Content-Length", HEAD + b"Content-Length: -1\r\n\r\n" + BODY),
    ("Transfer-Encoding gzip", HEAD + b"Transfer-Encoding: gzip\r\n\r\n" + BODY),
    ("Transfer-Encoding gzip, chunked", HEAD + b"Transfer-Encoding: gzip, chunked\r\n\r\n" + chunked(BODY)),
    ("Transfer-Encoding identity",
     HEAD + b"Transfer-Encoding: identity\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY),
    ("Transfer-Encoding xchunked", HEAD + b"Transfer-Encoding: xchunked\r\n\r\n" + chunked(BODY)),
    ("Transfer-Encoding twice",
     HEAD + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(BODY)),
    ("chunk size not hex", HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n" + BODY + b"\r\n0\r\n\r\n"),
    ("negative chunk size", HEAD + b"Transfer-Encoding: chunked\r\n\r\n-5\r\nabc\r\n0\r\n\r\n"),
    ("chunk longer than its size",
     HEAD + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%sXYZ\r\n0\r\n\r\n" % (len(BODY) - 3, BODY)),
    ("obs-fold on Transfer-Encoding",
     HEAD + b"Transfer-Encoding:\r\n chunked\r\n\r\n" + chunked(BODY) + SMUGGLED),
    ("obs-fold with spaces", HEAD + b"X-Folded: a\r\n b c\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY),
    ("space before the colon",
     HEAD + b"Content-Length : %d\r\n\r\n" % len(BODY) + BODY),
    ("bare CR in a value", HEAD + b"X-A: a\rb\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY),
    ("HTTP/1.1 without Host", b"POST /v1/chat/completions HTTP/1.1\r\nContent-Type: application/json\r\n"
     b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY),
    ("two Hosts", HEAD + b"Host: y\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY),
    ("HTTP/0.9 request line", b"GET /healthz\r\n\r\n"),
    ("junk request line", b"HELLO THERE\r\n\r\n"),
    ("binary junk", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64) + b"\r\n\r\n"),
    ("unknown version", b"GET /healthz HTTP/3.7\r\nHost: x\r\n\r\n"),
]


@test
def framing_smuggling_shapes_refused(w):
    results = []
    for name, data in FRAMING:
        s = connect(w)
        try:
            s.sendall(data)
        except OSError:
            pass
        out = until_close(s)
        s.close()
        status = int(out.split(b" ", 2)[1]) if out.startswith(b"HTTP/1.1 ") else None
        results.append((name, status))
        check(out == b"" or status in (400, 413, 505), "%s: %r" % (name, out[:120]))
        # (MHD 0.9.75 writes its own 400 head twice for a bad Content-Length:
        # still one 400, then close.)
        check(b"HTTP/1.1 200" not in out, "%s: nothing answered after the refusal" % name)
        if b"application/json" in out.split(b"\r\n\r\n")[0]:
            e = json.loads(out.split(b"\r\n\r\n", 1)[1])["error"]
            eq(set(e), {"message", "type", "param", "code"}, name)
            eq(e["code"], "invalid_http_framing", name)
    eq(w.mock.requests(), [], "nothing refused was forwarded, nothing smuggled")
    print("        framing answers other than 400: " +
          ", ".join("%s=%s" % r for r in results if r[1] != 400))
    # The legal neighbours of those shapes are served.
    ok = [HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(BODY),
          HEAD + b"Transfer-Encoding: Chunked\r\n\r\n" + chunked(BODY),
          HEAD + b"Content-Length: %d\r\nContent-Length: %d\r\n\r\n" % (len(BODY), len(BODY)) + BODY,
          b"POST /v1/chat/completions HTTP/1.0\r\nContent-Type: application/json\r\n"
          b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY]
    for data in ok:
        s = connect(w)
        s.sendall(data)
        r = Reader(s).response()
        s.close()
        eq(r.status, 200, "legal framing %r" % data[:120])
    serves(w)


@test
def hop_by_hop_headers_not_forwarded(w):
    s = connect(w)
    s.sendall(HEAD + b"Connection: keep-alive, close, x-foo\r\nKeep-Alive: timeout=5, max=100\r\n"
              b"TE: trailers, deflate\r\nUpgrade: websocket\r\nProxy-Authorization: Basic c2VjcmV0\r\n"
              b"Proxy-Connection: keep-alive\r\nTrailer: x-trail\r\nX-Foo: listed-in-connection\r\n"
              b"X-Forwarded-For: 10.0.0.1\r\nCookie: session=abc\r\nAuthorization: Bearer client-secret\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n" + chunked(BODY))
    r = Reader(s).response()
    s.close()
    eq(r.status, 200)
    got = w.mock.requests()
    eq(len(got), 1)
    names = set(got[0]["headers"])
    allowed = {"host", "accept", "content-type", "content-length", "authorization", "user-agent",
               "x-request-id"}
    check(names <= allowed, "only the gateway's own headers upstream: extra %r" % (names - allowed))
    eq(got[0]["headers"]["authorization"].startswith("Bearer sk-mock"), True, "the provider key")
    check("client-secret" not in json.dumps(got[0]["headers"]), "the client's key stays here")
    check("transfer-encoding" not in names and "content-length" in names, "sent with a length")
    eq(json.loads(got[0]["body"])["messages"], json.loads(BODY)["messages"])
    serves(w)


# --- hostile JSON ----------------------------------------------------------------

def post_raw(w, body):
    return w.gw.req("POST", "/v1/chat/completions", body, {"content-type": "application/json"})


MSG = '"messages":[{"role":"user","content":"hi"}]'


@test
def malformed_json_variants(w):
    refused = [
        ("truncated", '{"model":"large",' + MSG[:-3]),
        ("NaN", '{"model":"large",' + MSG + ',"temperature":NaN}'),
        ("Infinity", '{"model":"large",' + MSG + ',"temperature":Infinity}'),
        ("-Infinity", '{"model":"large",' + MSG + ',"top_p":-Infinity}'),
        ("integer 2^63", '{"model":"large",' + MSG + ',"seed":9223372036854775808}'),
        ("integer -2^63-1", '{"model":"large",' + MSG + ',"seed":-9223372036854775809}'),
        ("real overflow", '{"model":"large",' + MSG + ',"x":1e400}'),
        ("lone high surrogate", '{"model":"large","messages":[{"role":"user","content":"\\ud800"}]}'),
        ("lone low surrogate", '{"model":"large","messages":[{"role":"user","content":"\\udc00x"}]}'),
        ("reversed surrogates", '{"model":"large","messages":[{"role":"user","content":"\\ude00\\ud83d"}]}'),
        ("overlong UTF-8", b'{"model":"large","messages":[{"role":"user","content":"\xc0\xaf"}]}'),
        ("UTF-8 surrogate", b'{"model":"large","messages":[{"role":"user","content":"\xed\xa0\x80"}]}'),
        ("truncated UTF-8", b'{"model":"large","messages":[{"role":"user","content":"\xe2\x82"}]}'),
        ("UTF-8 BOM", b'\xef\xbb\xbf{"model":"large",' + MSG.encode() + b'}'),
        ("trailing garbage", '{"model":"large",' + MSG + '} {"x":1}'),
        ("single quotes", "{'model':'large'}"),
        ("comment", '{"model":"large",/* hi */' + MSG + '}'),
        ("trailing comma", '{"model":"large",' + MSG + ',}'),
        ("control char in string", '{"model":"large","messages":[{"role":"user","content":"a\x01b"}]}'),
        ("NUL escape", '{"model":"large","messages":[{"role":"user","content":"a\\u0000b"}]}'),
        ("too many messages", '{"model":"large","messages":[' + ",".join(['{"role":"user","content":"x"}'] * 4097) + ']}'),
    ]
    for name, body in refused:
        r = post_raw(w, body)
        eq(r.status, 400, name)
        e = r.json()["error"]
        eq(set(e), {"message", "type", "param", "code"}, name)
        eq(e["type"], "invalid_request_error", name)
    eq(w.mock.requests(), [], "nothing refused went upstream")
    accepted = [
        ("surrogate pair", '{"model":"large","messages":[{"role":"user","content":"\\ud83d\\ude00"}]}'),
        ("largest int64", '{"model":"large",' + MSG + ',"seed":9223372036854775807}'),
        ("exponent forms", '{"model":"large",' + MSG + ',"x_num":[1E5,-0,0.1e-5,1e308]}'),
        ("10,000-element array", '{"model":"large",' + MSG + ',"x_big":[' + ",".join(["0"] * 10000) + ']}'),
        ("4,096 messages", '{"model":"large","messages":[' + ",".join(['{"role":"user","content":"x"}'] * 4096) + ']}'),
        ("1 MB string", '{"model":"large","messages":[{"role":"user","content":"' + "y" * (1 << 20) + '"}]}'),
        ("every escape", '{"model":"large","messages":[{"role":"user","content":"\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9"}]}'),
        ("whitespace everywhere", ' \n\t{ "model" : "large" ,\r\n "messages" : [ { "role" : "user" , "content" : "x" } ] } \n'),
    ]
    for name, body in accepted:
        w.mock.reset()
        r = post_raw(w, body)
        eq(r.status, 200, name)
        got = w.mock.requests()
        eq(len(got), 1, name)
        sent = got[0]["body"]
        if name in ("largest int64", "exponent forms", "10,000-element array"):
            tail = body[body.index(MSG) + len(MSG):-1]
            check(tail in sent, "%s forwarded byte for byte" % name)
        if name == "1 MB string":
            check(("y" * (1 << 20)) in sent, "the long string arrived whole")
    serves(w)


@test
def unknown_huge_fields_forwarded_verbatim(w):
    # 1.5 MB of unknown members with odd but valid JSON: the gateway only
    # splices "model" and passes every other byte through.
    blob = '{"a":[' + ",".join('{"k%d":"v\\u00e9\\n","n":%d.250,"t":true,"z":null}' % (i, i)
                               for i in range(20000)) + '],"deep":' + "[" * 50 + "]" * 50 + '}'
    raw = '{"x_blob":' + blob + ',"model":"large",' + MSG + ',"x_str":"' + "q" * 500000 + '"}'
    r = post_raw(w, raw)
    eq(r.status, 200)
    sent = w.mock.requests()[0]["body"]
    check('"x_blob":' + blob in sent, "the unknown object byte for byte")
    check('"x_str":"' + "q" * 500000 + '"' in sent, "the long unknown string whole")
    check('"model":"gpt-large"' in sent, "model substituted")
    serves(w)
