# SPDX-License-Identifier: MIT
"""Core pass-through (issue 2): what is forwarded, model resolution, every
bad input, upstream errors and timeouts, streams, disconnects, ids."""
import json
import socket
import time

from harness import MOCK_KEY, check, eq, test, wait_for, chat_body

PINNED = "large"  # a model on the last tier: one candidate, no cascade


@test
def forwards_body_verbatim_with_model_and_key_substituted(w):
    raw = ('{"model":"large","messages":[{"role":"user","content":"hi"}],'
           '"temperature":0.7,"top_p":1e-1,"x_custom":{"nested":[1,2.50,-0.0]},"seed":12345678901234}')
    r = w.gw.req("POST", "/v1/chat/completions", raw, {"authorization": "Bearer client-key"})
    eq(r.status, 200, "status")
    got = w.mock.requests()
    eq(len(got), 1, "upstream calls")
    body = got[0]["body"]
    check('"model":"gpt-large"' in body, "model substituted: " + body)
    for frag in ('"temperature":0.7', '"top_p":1e-1', '"x_custom":{"nested":[1,2.50,-0.0]}',
                 '"seed":12345678901234'):
        check(frag in body, "forwarded byte for byte: %s in %s" % (frag, body))
    eq(got[0]["headers"].get("authorization"), "Bearer " + MOCK_KEY, "provider key sent")
    check("client-key" not in json.dumps(got[0]), "client key never forwarded")
    eq(r.header("x-tiergate-model"), "large")
    eq(r.header("x-tiergate-tier"), "expensive")
    eq(r.json()["choices"][0]["message"]["content"], "Hello from gpt-large")


@test
def model_resolution(w):
    cases = [("cheap", "gpt-cheap", "mini"), ("medium", "gpt-mid", "mid"),
             ("expensive", "gpt-large", "large"), ("mid", "gpt-mid", "mid")]
    for requested, upstream, model in cases:
        w.mock.reset()
        r = w.gw.chat(model=requested, temperature=1.5)
        eq(r.status, 200, requested)
        eq(w.mock.requests()[0]["model"], upstream, requested)
        eq(r.header("x-tiergate-model"), model, requested)
    w.mock.reset()
    r = w.gw.chat(model="auto")
    eq(r.status, 200, "auto")
    check(r.header("x-tiergate-route"), "auto carries x-tiergate-route")
    r = w.gw.chat(model="gpt-5-ultra")
    eq(r.status, 404, "unknown model")
    err = r.json()["error"]
    eq(err["code"], "model_not_found")
    eq(err["param"], "model")
    eq(set(err), {"message", "type", "param", "code"}, "OpenAI error shape")


@test
def route_endpoint_is_a_dry_run(w):
    w.mock.reset()
    body = chat_body("Prove that there are infinitely many primes, step by step.", model="auto")
    r = w.gw.req("POST", "/v1/route", body, {"x-request-id": "route-dry-1"})
    eq(r.status, 200, "route")
    j = r.json()
    check(j["tier"] in ("cheap", "medium", "expensive"), "tier: %r" % j)
    check(isinstance(j["score"], float) and isinstance(j["features"], dict), "shape: %r" % j)
    check((r.header("x-tiergate-route") or "").startswith(j["tier"] + ";score="),
          "x-tiergate-route %r" % r.header("x-tiergate-route"))
    eq(w.mock.requests(), [], "a dry run calls no upstream")
    # One decision line per request, with the status the client got (not 499).
    d = w.gw.decision(r)
    eq(d["status"], 200, "decision status")
    eq(d["route"]["tier"], j["tier"], "decision route")
    eq(d["attempts"], [], "no attempts")
    r = w.gw.req("POST", "/v1/route", "{not json", {"x-request-id": "route-dry-2"})
    eq(r.status, 400, "bad body")
    eq(set(r.json()["error"]), {"message", "type", "param", "code"}, "OpenAI error shape")
    eq(w.gw.decision(r)["status"], 400, "decision status of a bad body")
    r = w.gw.req("POST", "/v1/route", '{"messages":"hi"}')
    eq(r.status, 400, "messages must be an array")
    eq(r.json()["error"]["param"], "messages")


def expect_400(w, body, param=None, ctype="application/json"):
    r = w.gw.req("POST", "/v1/chat/completions", body, {"content-type": ctype})
    eq(r.status, 400, "status for %r" % (body[:80] if isinstance(body, str) else body))
    e = r.json()["error"]
    eq(e["type"], "invalid_request_error")
    eq(set(e), {"message", "type", "param", "code"})
    if param:
        eq(e["param"], param, "param")
    return e


@test
def bad_json_and_bad_fields(w):
    expect_400(w, "{not json")
    expect_400(w, "[1,2,3]")
    expect_400(w, "")
    expect_400(w, '"just a string"')
    expect_400(w, '{"messages":[{"role":"user","content":"x"}]}', "model")
    expect_400(w, '{"model":42,"messages":[{"role":"user","content":"x"}]}', "model")
    expect_400(w, '{"model":"","messages":[{"role":"user","content":"x"}]}', "model")
    expect_400(w, '{"model":"cheap"}', "messages")
    expect_400(w, '{"model":"cheap","messages":"hi"}', "messages")
    expect_400(w, '{"model":"cheap","messages":[]}', "messages")
    expect_400(w, '{"model":"cheap","messages":[42]}', "messages[0]")
    expect_400(w, '{"model":"cheap","messages":[{"content":"no role"}]}', "messages[0]")
    expect_400(w, '{"model":"cheap","messages":[{"role":"user","content":"x"}],"stream":"yes"}', "stream")
    expect_400(w, '{"model":"cheap","model":"large","messages":[{"role":"user","content":"x"}]}')
    expect_400(w, '{"model":"cheap","messages":[{"role":"user","content":"x"}],"temperature":"hot"}', "temperature")
    deep = '{"model":"cheap","messages":[{"role":"user","content":"x"}],"x":' + "[" * 200 + "]" * 200 + "}"
    e = expect_400(w, deep)
    check("nesting" in e["message"], e["message"])
    expect_400(w, b'{"model":"cheap","messages":[{"role":"user","content":"\xff\xfe"}]}')
    eq(len(w.mock.requests()), 0, "nothing bad reaches upstream")
    eq(w.gw.req("GET", "/healthz").status, 200, "still serving")


@test
def body_too_large_gets_413(w):
    # Content-Length over the cap: answered from the headers, before any body byte.
    s = socket.create_connection(("127.0.0.1", w.gw.port), timeout=10)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % (4 * 1024 * 1024 + 10))
    head = s.recv(65536)
    s.close()
    check(head.startswith(b"HTTP/1.1 413"), "content-length over the cap: %r" % head[:200])
    check(b"request_too_large" in head, "OpenAI error body")
    # Chunked: no length up front; refused once the cap is crossed.
    s = socket.create_connection(("127.0.0.1", w.gw.port), timeout=10)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
              b"Content-Type: application/json\r\n\r\n")
    chunk = b"a" * 65536
    sent = 0
    try:
        while sent < 5 * 1024 * 1024:
            s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
        s.sendall(b"0\r\n\r\n")
        data = s.recv(65536)
    except (BrokenPipeError, ConnectionResetError):
        data = b"HTTP/1.1 413"
    s.close()
    check(data.startswith(b"HTTP/1.1 413") or data == b"", "chunked over the cap: %r" % data[:100])
    eq(len(w.mock.requests()), 0)
    eq(w.gw.req("GET", "/healthz").status, 200, "still serving")


@test
def unknown_path_and_wrong_method(w):
    r = w.gw.req("GET", "/v1/engines")
    eq(r.status, 404)
    eq(r.json()["error"]["type"], "invalid_request_error")
    r = w.gw.req("GET", "/v1/chat/completions")
    eq(r.status, 405)
    eq(r.header("allow"), "POST")
    r = w.gw.req("POST", "/v1/models", {})
    eq(r.status, 405)


@test
def models_health_ready(w):
    r = w.gw.req("GET", "/v1/models")
    eq(r.status, 200)
    ids = [m["id"] for m in r.json()["data"]]
    eq(r.json()["object"], "list")
    for want in ("auto", "cheap", "medium", "expensive", "mini", "mid", "large"):
        check(want in ids, want + " listed")
    eq(w.gw.req("GET", "/v1/models/mini").json()["id"], "mini")
    eq(w.gw.req("GET", "/v1/models/nope").status, 404)
    eq(w.gw.req("GET", "/healthz").status, 200)
    r = w.gw.req("GET", "/readyz")
    eq(r.status, 200, "ready: %r" % r)
    eq(r.json()["redis"]["state"], "up")


@test
def request_id_echoed_or_generated(w):
    r = w.gw.chat(headers={"x-request-id": "abc-123"})
    eq(r.header("x-request-id"), "abc-123")
    eq(w.mock.requests()[0]["headers"].get("x-request-id"), "abc-123", "forwarded upstream")
    r = w.gw.chat(headers={"x-request-id": "bad id\twith spaces"})
    check(r.header("x-request-id").startswith("req_"), "unsafe id replaced")
    r = w.gw.chat()
    check(len(r.header("x-request-id")) > 8, "generated")


@test
def upstream_5xx_is_502_and_4xx_passes_through(w):
    w.mock.script({"status": 500, "error": {"message": "boom", "type": "server_error"}}, model="gpt-large")
    r = w.gw.chat(model=PINNED)
    eq(r.status, 502)
    e = r.json()["error"]
    check("boom" in e["message"] or "500" in e["message"], e["message"])
    w.mock.script({"status": 400, "error": {"message": "bad param foo", "type": "invalid_request_error",
                                             "code": "invalid_value"}}, model="gpt-large")
    r = w.gw.chat(model=PINNED)
    eq(r.status, 400)
    eq(r.json()["error"]["message"], "bad param foo", "upstream body passed through")
    w.mock.script({"status": 429, "headers": {"retry-after": "7"},
                   "error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}},
                  model="gpt-large")
    r = w.gw.chat(model=PINNED)
    eq(r.status, 429)
    eq(r.header("retry-after"), "7")
    eq(r.json()["error"]["code"], "rate_limit_exceeded")


@test
def upstream_timeout_is_504_and_reset_is_502(w):
    w.start(models={"large": dict(w.config()["models"]["large"], first_byte_timeout_ms=300)})
    w.mock.script({"stall": "before_headers"}, model="gpt-large")
    t0 = time.time()
    r = w.gw.chat(model=PINNED)
    eq(r.status, 504)
    check(time.time() - t0 < 3, "timed out promptly")
    wait_for(lambda: w.mock.stats()["aborted"] >= 1, 3, msg="upstream connection closed")
    w.mock.script({"reset": "before_headers"}, model="gpt-large")
    eq(w.gw.chat(model=PINNED).status, 502)
    w.mock.script({"reset": "mid_body"}, model="gpt-large")
    eq(w.gw.chat(model=PINNED).status, 502)
    w.mock.script({"body": "this is not json"}, model="gpt-large")
    r = w.gw.chat(model=PINNED)
    eq(r.status, 502, "invalid JSON from the last tier")
    w.start()


@test
def stream_live_with_usage_when_asked(w):
    w.mock.script({"content": "The quick brown fox jumps", "chunk_chars": 4}, model="gpt-large")
    r = w.gw.chat(model=PINNED, stream=True, stream_options={"include_usage": True})
    eq(r.status, 200)
    check(r.header("content-type").startswith("text/event-stream"))
    ev = r.events()
    eq(ev[-1], "[DONE]")
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in ev[:-1] if e.get("choices"))
    eq(text, "The quick brown fox jumps")
    check(ev[-2]["choices"] == [] and ev[-2]["usage"]["total_tokens"] > 0, "usage chunk last")


@test
def stream_usage_added_for_cost_and_stripped(w):
    r = w.gw.chat(model=PINNED, stream=True)
    eq(r.status, 200)
    ev = r.events()
    check(all(e == "[DONE]" or e.get("choices") for e in ev), "no usage-only chunk reached the client")
    sent = json.loads(w.mock.requests()[0]["body"])
    eq(sent["stream_options"], {"include_usage": True}, "gateway asked upstream for usage")
    d = wait_for(lambda: [x for x in w.gw.decisions() if x["stream"]], 3, msg="decision line")
    check(d[-1]["cost_usd"] > 0, "stream cost computed from the usage chunk")


@test
def stream_upstream_error_before_bytes_is_an_error_event(w):
    # The head left before the upstream answered (DESIGN §6): the 502 the
    # non-stream request gets arrives as the stream's only event, with the
    # same OpenAI error object, and no [DONE].
    w.mock.script({"status": 503, "error": {"message": "overloaded"}}, model="gpt-large")
    plain = w.gw.chat(model=PINNED)
    eq(plain.status, 502)
    eq(plain.header("x-should-retry"), "false", "the ladder was walked: SDKs must not walk it again")
    w.mock.script({"status": 503, "error": {"message": "overloaded"}}, model="gpt-large")
    r = w.gw.chat(model=PINNED, stream=True)
    eq(r.status, 200)
    check(r.header("content-type").startswith("text/event-stream"))
    ev = r.events()
    eq(len(ev), 1, "one error event, no [DONE]: %r" % ev)
    eq(set(ev[0]["error"]), {"message", "type", "param", "code"})
    eq(ev[0]["error"]["code"], plain.json()["error"]["code"])
    eq(ev[0]["error"]["type"], plain.json()["error"]["type"])
    check("overloaded" in ev[0]["error"]["message"], ev[0]["error"]["message"])
    eq(w.gw.decision(r)["status"], 502, "the decision line says what the error was")


@test
def mid_stream_failure_ends_with_error_event(w):
    w.mock.script({"content": "a" * 200, "chunk_chars": 10, "reset": "mid_stream", "after_chunks": 3},
                  model="gpt-large")
    r = w.gw.chat(model=PINNED, stream=True)
    eq(r.status, 200)
    ev = r.events()
    check(ev and ev[-1] != "[DONE]", "no [DONE] after a failure")
    check("error" in ev[-1], "last event is an error: %r" % ev[-1])


def wait_aborted(w, n, timeout=3.0):
    wait_for(lambda: w.mock.stats()["aborted"] >= n, timeout, msg="upstream cancelled")


@test
def client_disconnect_cancels_upstream(w):
    w.mock.script({"delay_ms": 5000}, model="gpt-large")
    s = socket.create_connection(("127.0.0.1", w.gw.port))
    body = json.dumps(chat_body(model=PINNED)).encode()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    wait_for(lambda: w.mock.stats()["active"] >= 1, 3, msg="upstream call")
    t0 = time.time()
    s.close()
    wait_aborted(w, 1)
    check(time.time() - t0 < 1.5, "cancelled at once")
    # During a stream:
    w.mock.script({"content": "x" * 400, "chunk_chars": 4, "drip_ms": 50}, model="gpt-large")
    s = socket.create_connection(("127.0.0.1", w.gw.port))
    body = json.dumps(chat_body(model=PINNED, stream=True)).encode()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    check(b"200" in s.recv(4096), "stream started")
    time.sleep(0.2)
    s.close()
    wait_aborted(w, 2)
    eq(w.gw.req("GET", "/healthz").status, 200)
    eq(w.gw.chat(model=PINNED).status, 200, "next request served")


@test
def slow_client_hits_connection_timeout(w):
    w.start(limits={"connection_timeout_s": 1})
    s = socket.create_connection(("127.0.0.1", w.gw.port))
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")  # and then nothing
    s.settimeout(5)
    t0 = time.time()
    try:
        data = s.recv(100)
    except (ConnectionResetError, socket.timeout):
        data = b""
    check(time.time() - t0 < 4, "closed by the server's timeout")
    eq(data, b"", "closed without a response")
    s.close()
    eq(w.gw.chat(model=PINNED).status, 200)
    w.start()


@test
def missing_key_variable_named_in_error(w):
    w.start(env={"MOCK_KEY": ""})
    r = w.gw.chat(model=PINNED)
    eq(r.status, 500)
    check("MOCK_KEY" in r.json()["error"]["message"], r.json()["error"]["message"])
    eq(len(w.mock.requests()), 0)
    w.start()


@test
def sighup_reload_and_bad_config_refused(w):
    cfg = w.config()
    cfg["models"]["extra"] = dict(cfg["models"]["mini"], upstream_model="gpt-extra")
    w.gw.reload(cfg)
    wait_for(lambda: "extra" in w.gw.req("GET", "/v1/models").body.decode(), 3, msg="reload")
    eq(w.gw.chat(model="extra").status, 200)
    w.gw.reload('{"models": {}, "tiers": ')
    wait_for(lambda: "reload refused" in w.gw.output(), 3, msg="refusal logged")
    check("tg-" in w.gw.output().split("reload refused")[1].split("\n")[0], "names the file")
    eq(w.gw.chat(model="extra").status, 200, "old config still serving")
    w.start()


@test
def sigterm_drains_in_flight(w):
    import threading
    w.mock.script({"delay_ms": 800}, model="gpt-large")
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", w.gw.chat(model=PINNED)))
    t.start()
    wait_for(lambda: w.mock.stats()["active"] >= 1, 3, msg="in flight")
    w.gw.signal(15)
    t.join(10)
    eq(out["r"].status, 200, "in-flight request finished during drain")
    w.gw.stop_clean()
    w.start()


@test
def retry_after_ms_wins_in_either_order(w):
    # OpenAI sends both; the millisecond form is the precise one, whatever the header order.
    for headers in ({"retry-after-ms": "3000", "retry-after": "0"}, {"retry-after": "0", "retry-after-ms": "3000"}):
        w.mock.script({"status": 429, "headers": headers,
                       "error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}},
                      model="gpt-large")
        r = w.gw.chat(chat_body("rate %s" % list(headers)[0], model=PINNED))
        eq(r.status, 429)
        eq(r.header("retry-after"), "3", "order %r" % list(headers))


@test
def proxy_environment_is_honoured(w):
    """curl's proxy variables, read once at start (upstream.c) and handed to
    curl: a proxy that refuses fails the call; no_proxy naming the upstream's
    host goes direct."""
    try:
        w.start(env={"http_proxy": "http://127.0.0.1:1", "no_proxy": "", "NO_PROXY": ""})
        r = w.gw.chat(model=PINNED)
        eq(r.status, 502, "through a proxy that refuses")
        eq(len(w.mock.requests()), 0, "nothing reached the upstream around the proxy")
        w.start(env={"all_proxy": "http://127.0.0.1:1", "no_proxy": "", "NO_PROXY": "127.0.0.1"})
        r = w.gw.chat(model=PINNED)
        eq(r.status, 200, "NO_PROXY names the upstream: direct")
        eq(len(w.mock.requests()), 1, "upstream calls")
    finally:
        w.start()
