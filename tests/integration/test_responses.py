# SPDX-License-Identifier: MIT
"""POST /v1/responses (issue 15): stateless requests translated to Chat
Completions and run through the whole pipeline (cache, router, cascade,
validation), on models that speak Chat Completions and on models with
"api": "responses"; stateful requests passed through to one Responses
model and never retried elsewhere; what cannot be translated refused with
a 400 naming it. Every test asserts on what the mock upstream received."""
import json
import socket
import time

from harness import World, base_config, check, eq, test, wait_for

RESP_MODELS = {"rmini": "gpt-r-cheap", "rlarge": "gpt-r-large"}


class ResponsesWorld(World):
    """Chat models as usual, plus two that speak only Responses: rmini as a
    cheap fallback, rlarge as an expensive one."""

    def config(self, **over):
        cfg = base_config(self.mock.port, self.redis.port, **over)
        for mid, upstream in RESP_MODELS.items():
            m = dict(cfg["models"]["mini"])
            m.update(upstream_model=upstream, api="responses")
            cfg["models"][mid] = m
        cfg["tiers"] = {"cheap": ["mini", "rmini"], "medium": ["mid"],
                        "expensive": ["large", "rlarge"]}
        cfg["breaker"] = {"failure_threshold": 0, "failure_ratio": 0}
        return cfg


WORLD = ResponsesWorld

_n = [0]


def uniq(text="hello"):
    """A prompt no earlier request used (the cache never answers for it)."""
    _n[0] += 1
    return "%s #%d" % (text, _n[0])


def respond(w, body, headers=None, timeout=30):
    return w.gw.req("POST", "/v1/responses", body, headers, timeout)


def events(r):
    """(event name, data) of each SSE event in a response body."""
    out = []
    for block in r.body.decode().replace("\r\n", "\n").split("\n\n"):
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        if data:
            out.append((name, json.loads("\n".join(data))))
    return out


def check_stream_shape(evs):
    """What the official SDKs rely on: created first, sequence numbers
    counting from 0, an event's name equal to its type, deltas only for
    items and parts that were added, completed (or failed) last."""
    check(evs, "no events")
    eq(evs[0][1]["type"], "response.created", "first event")
    for i, (name, d) in enumerate(evs):
        eq(d["sequence_number"], i, "sequence_number of event %d" % i)
        eq(name, d["type"], "event: line matches type")
    items, parts = set(), set()
    for _, d in evs:
        if d["type"] == "response.output_item.added":
            items.add(d["output_index"])
        elif d["type"] == "response.content_part.added":
            check(d["output_index"] in items, "part of an added item")
            parts.add((d["output_index"], d["content_index"]))
        elif d["type"] == "response.output_text.delta":
            check((d["output_index"], d["content_index"]) in parts, "delta of an added part")
        elif d["type"] == "response.function_call_arguments.delta":
            check(d["output_index"] in items, "arguments of an added item")
    check(evs[-1][1]["type"] in ("response.completed", "response.incomplete", "response.failed"),
          "last event: %s" % evs[-1][1]["type"])


def text_of(resp):
    out = ""
    for item in resp["output"]:
        if item["type"] == "message":
            out += "".join(p.get("text", "") for p in item["content"] if p["type"] == "output_text")
    return out


def last(w, n=1):
    rs = w.mock.requests()
    check(len(rs) >= n, "mock saw %d requests, wanted %d" % (len(rs), n))
    return rs[-n:] if n > 1 else rs[-1]


# --- stateless, both kinds of upstream ----------------------------------------------

@test
def plain_answer_from_a_chat_model(w):
    r = respond(w, {"model": "expensive", "input": uniq("Capital of France?"),
                    "instructions": "Be brief.", "temperature": 0.7, "max_output_tokens": 50})
    eq(r.status, 200, repr(r))
    j = r.json()
    eq(j["object"], "response")
    check(j["id"].startswith("resp_tg"), j["id"])
    eq(j["status"], "completed")
    eq(text_of(j), "Hello from gpt-large")
    eq(j["output"][0]["role"], "assistant")
    eq(j["instructions"], "Be brief.")
    eq(j["temperature"], 0.7)
    check(j["usage"]["input_tokens"] > 0 and j["usage"]["output_tokens"] > 0, j["usage"])
    eq(j["usage"]["total_tokens"], j["usage"]["input_tokens"] + j["usage"]["output_tokens"])
    eq(r.header("x-tiergate-model"), "large")
    eq(r.header("x-tiergate-cache"), "miss")
    check(r.header("x-tiergate-cost-usd"), "cost header")
    rec = last(w)
    check(rec["path"].endswith("/chat/completions"), rec["path"])
    sent = json.loads(rec["body"])
    eq(sent["messages"][0], {"role": "system", "content": "Be brief."})
    eq(sent["messages"][1]["role"], "user")
    eq(sent["max_completion_tokens"], 50)
    check('"temperature":0.7' in rec["body"], "0.7 stays 0.7: " + rec["body"])
    d = w.gw.decision(r)
    eq(d["api"], "responses")
    eq(d["final_model"], "large")
    eq(d["request_id"], r.header("x-request-id"))


@test
def plain_answer_from_a_responses_model(w):
    r = respond(w, {"model": "rlarge", "input": [{"role": "developer", "content": "Terse."},
                                                 {"role": "user", "content": uniq("hi")}]})
    eq(r.status, 200, repr(r))
    j = r.json()
    eq(text_of(j), "Hello from gpt-r-large")
    eq(j["model"], "gpt-r-large")
    eq(r.header("x-tiergate-model"), "rlarge")
    rec = last(w)
    check(rec["path"].endswith("/v1/responses"), rec["path"])
    sent = json.loads(rec["body"])
    eq(sent["model"], "gpt-r-large")
    eq(sent["store"], False)
    eq(sent["input"][0], {"role": "system", "content": "Terse."})
    check("messages" not in sent, "a Responses body: " + rec["body"])


@test
def streams_from_both_kinds_of_model(w):
    for model, upstream in (("expensive", "gpt-large"), ("rlarge", "gpt-r-large")):
        w.mock.script({"content": "streamed through the gateway", "chunk_chars": 5},
                      model=upstream)
        r = respond(w, {"model": model, "input": uniq("stream"), "stream": True})
        eq(r.status, 200, repr(r))
        check(r.header("content-type").startswith("text/event-stream"), r.header("content-type"))
        evs = events(r)
        check_stream_shape(evs)
        deltas = [d["delta"] for _, d in evs if d["type"] == "response.output_text.delta"]
        check(len(deltas) > 3, "several deltas: %r" % deltas)
        eq("".join(deltas), "streamed through the gateway")
        done = evs[-1][1]
        eq(done["type"], "response.completed")
        eq(text_of(done["response"]), "streamed through the gateway")
        check(done["response"]["usage"]["output_tokens"] > 0, "usage in response.completed")
        types = [d["type"] for _, d in evs]
        eq(types[:4], ["response.created", "response.in_progress", "response.output_item.added",
                       "response.content_part.added"])
        eq(types[-4:], ["response.output_text.done", "response.content_part.done",
                        "response.output_item.done", "response.completed"])


@test
def function_tool_round_trip(w):
    tools = [{"type": "function", "name": "get_weather", "description": "Weather in a city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                             "required": ["city"]}}]
    for model, upstream in (("expensive", "gpt-large"), ("rlarge", "gpt-r-large")):
        w.mock.script({"tool_calls": [{"id": "call_w1", "name": "get_weather",
                                       "arguments": '{"city":"Paris"}'}]}, model=upstream)
        q = uniq("Weather in Paris?")
        r = respond(w, {"model": model, "input": q, "tools": tools, "tool_choice": "auto"})
        eq(r.status, 200, repr(r))
        call = r.json()["output"][-1]
        eq(call["type"], "function_call")
        eq(call["name"], "get_weather")
        eq(call["call_id"], "call_w1")
        eq(json.loads(call["arguments"]), {"city": "Paris"})
        sent = json.loads(last(w)["body"])
        if upstream == "gpt-large":
            eq(sent["tools"][0]["function"]["name"], "get_weather")
        else:
            eq(sent["tools"][0]["name"], "get_weather")
            eq(sent["tools"][0]["strict"], False)  # what a chat-style tool meant
        # The second turn: the call and its output go back as input items.
        w.mock.script({"content": "It is sunny in Paris."}, model=upstream)
        r = respond(w, {"model": model, "tools": tools, "input": [
            {"role": "user", "content": q},
            {"type": "function_call", "call_id": "call_w1", "name": "get_weather",
             "arguments": '{"city":"Paris"}'},
            {"type": "function_call_output", "call_id": "call_w1", "output": '{"sky":"clear"}'}]})
        eq(r.status, 200, repr(r))
        eq(text_of(r.json()), "It is sunny in Paris.")
        sent = json.loads(last(w)["body"])
        if upstream == "gpt-large":
            eq(sent["messages"][1]["tool_calls"][0]["id"], "call_w1")
            eq(sent["messages"][2], {"role": "tool", "tool_call_id": "call_w1",
                                     "content": '{"sky":"clear"}'})
        else:
            eq(sent["input"][1]["type"], "function_call")
            eq(sent["input"][2], {"type": "function_call_output", "call_id": "call_w1",
                                  "output": '{"sky":"clear"}'})


@test
def streamed_tool_call(w):
    w.mock.script({"tool_calls": [{"name": "lookup", "arguments": '{"q":"tiergate"}'}],
                   "chunk_chars": 4}, model="gpt-r-large")
    r = respond(w, {"model": "rlarge", "input": uniq("look it up"), "stream": True,
                    "tools": [{"type": "function", "name": "lookup",
                               "parameters": {"type": "object"}}]})
    eq(r.status, 200, repr(r))
    evs = events(r)
    check_stream_shape(evs)
    args = "".join(d["delta"] for _, d in evs
                   if d["type"] == "response.function_call_arguments.delta")
    eq(args, '{"q":"tiergate"}')
    done = [d for _, d in evs if d["type"] == "response.function_call_arguments.done"][0]
    eq(done["name"], "lookup")
    eq(evs[-1][1]["response"]["output"][-1]["type"], "function_call")


# --- validation and the cascade ---------------------------------------------------------

SCHEMA = {"type": "object", "properties": {"answer": {"type": "integer"}},
          "required": ["answer"], "additionalProperties": False}


@test
def json_schema_answer_is_validated_and_escalates(w):
    w.mock.script({"content": "not json at all"}, model="gpt-cheap")
    w.mock.script({"content_json": {"answer": 42}}, model="gpt-mid")
    r = respond(w, {"model": "cheap", "input": uniq("6 x 7?"),
                    "text": {"format": {"type": "json_schema", "name": "answer",
                                        "schema": SCHEMA, "strict": True}}})
    eq(r.status, 200, repr(r))
    eq(json.loads(text_of(r.json())), {"answer": 42})
    eq(r.header("x-tiergate-model"), "mid")
    eq(r.header("x-tiergate-escalations"), "1")
    eq(r.json()["text"]["format"]["name"], "answer")
    sent = [json.loads(x["body"]) for x in last(w, 2)]
    eq(sent[0]["response_format"]["type"], "json_schema")
    eq(sent[0]["response_format"]["json_schema"]["schema"], SCHEMA)
    d = w.gw.decision(r)
    eq([a["outcome"] for a in d["attempts"]], ["invalid", "ok"])
    eq(d["attempts"][0]["reason"], "json_schema")


@test
def bad_answer_escalates_like_chat(w):
    w.mock.script({"empty": True}, model="gpt-cheap")
    w.mock.script({"content": "a real answer"}, model="gpt-mid")
    r = respond(w, {"model": "cheap", "input": uniq("say something")})
    eq(r.status, 200, repr(r))
    eq(text_of(r.json()), "a real answer")
    eq(r.header("x-tiergate-escalations"), "1")
    eq([x["model"] for x in last(w, 2)], ["gpt-cheap", "gpt-mid"])


@test
def a_responses_model_that_fails_falls_back(w):
    # rlarge is tried first (named), fails, and its tier's chat model answers.
    w.mock.script({"status": 503}, model="gpt-r-large")
    r = respond(w, {"model": "rlarge", "input": uniq("x")})
    eq(r.status, 200, repr(r))
    eq(r.header("x-tiergate-model"), "large")
    eq([x["model"] for x in last(w, 2)], ["gpt-r-large", "gpt-large"])


@test
def untranslatable_chat_fields_skip_a_responses_model(w):
    # A chat client's "stop" cannot be said to a Responses model: the
    # cascade skips it (no call) and the chat model of its tier answers.
    r = w.gw.chat({"model": "rlarge", "stop": ["\n"],
                   "messages": [{"role": "user", "content": uniq("x")}]})
    eq(r.status, 200, repr(r))
    eq(r.header("x-tiergate-model"), "large")
    eq(last(w)["model"], "gpt-large")
    d = w.gw.decision(r)
    check("stop" in d["attempts"][0]["detail"], d["attempts"][0])


@test
def chat_clients_use_responses_models_too(w):
    w.mock.script({"content": "from the Responses side", "chunk_chars": 4}, model="gpt-r-large")
    r = w.gw.chat({"model": "rlarge", "stream": True, "stream_options": {"include_usage": True},
                   "messages": [{"role": "user", "content": uniq("x")}]})
    eq(r.status, 200, repr(r))
    evs = r.events()
    eq(evs[-1], "[DONE]")
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in evs[:-1]
                   if e.get("choices"))
    eq(text, "from the Responses side")
    check(any(e.get("usage") for e in evs[:-1]), "usage chunk")
    eq(evs[0]["object"], "chat.completion.chunk")


# --- the cache -----------------------------------------------------------------------------

@test
def cache_hit_replays_as_a_stream(w):
    body = {"model": "expensive", "input": uniq("cache me"), "temperature": 0}
    w.mock.script({"content": "an answer worth keeping"}, model="gpt-large")
    first = respond(w, body)
    eq(first.status, 200, repr(first))
    eq(first.header("x-tiergate-cache"), "miss")
    time.sleep(0.1)
    again = respond(w, dict(body, stream=True))
    eq(again.header("x-tiergate-cache"), "hit")
    evs = events(again)
    check_stream_shape(evs)
    eq(text_of(evs[-1][1]["response"]), "an answer worth keeping")
    eq(len(w.mock.requests()), 1)
    # A stream the gateway cached replays whole, and as a stream again.
    third = respond(w, body)
    eq(third.header("x-tiergate-cache"), "hit")
    eq(text_of(third.json()), "an answer worth keeping")
    check(third.json()["id"] != first.json()["id"], "every response has its own id")


@test
def cache_control_is_carried_over(w):
    body = {"model": "expensive", "input": uniq("no store"), "temperature": 0}
    r = respond(w, body, headers={"cache-control": "no-store"})
    eq(r.header("x-tiergate-cache"), "bypass")
    r = respond(w, body)
    eq(r.header("x-tiergate-cache"), "miss")


# --- refused up front -----------------------------------------------------------------------

@test
def untranslatable_requests_are_refused_by_name(w):
    cases = [
        ({"tools": [{"type": "web_search"}]}, "tools[0].type", "web_search"),
        ({"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}, "tools[0].type",
         "file_search"),
        ({"input": [{"type": "reasoning", "id": "rs_1", "summary": []}]}, "input[0].type",
         "reasoning"),
        ({"input": [{"type": "computer_call_output", "call_id": "c", "output": {}}]},
         "input[0].type", "computer_call_output"),
        ({"background": True}, "background", "background"),
        ({"truncation": "auto"}, "truncation", "truncation"),
        ({"text": {"format": {"type": "json_schema", "schema": {}}}}, "text.format.name",
         "name"),
        ({"tool_choice": {"type": "web_search_preview"}}, "tool_choice", "built-in"),
        ({"frobnicate": 1}, "frobnicate", "frobnicate"),
        ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f1"}]}]},
         "input[0].content[0]", "file_id"),
    ]
    for extra, param, word in cases:
        body = {"model": "auto", "input": "hi"}
        body.update(extra)
        r = respond(w, body)
        eq(r.status, 400, "%r -> %r" % (extra, r))
        e = r.json()["error"]
        eq(e["param"], param, repr(extra))
        eq(e["type"], "invalid_request_error")
        check(word in e["message"], "%r: %s" % (extra, e["message"]))
        check(set(e) == {"message", "type", "param", "code"}, e)
    eq(len(w.mock.requests()), 0)
    check(w.gw.decision(r)["api"] == "responses", "refusals have decision lines")


@test
def malformed_bodies_get_openai_errors(w):
    for raw, status in (("{", 400), ("[]", 400), ('{"model":"auto"}', 400),
                        ('{"model":"nope","input":"x"}', 404), ('{"model":"auto","input":"x",'
                                                                '"stream":"yes"}', 400)):
        r = respond(w, raw)
        eq(r.status, status, "%s -> %r" % (raw, r))
        check(set(r.json()["error"]) == {"message", "type", "param", "code"}, r.json())
    eq(respond(w, '{"model":"nope","input":"x"}').json()["error"]["code"], "model_not_found")
    r = w.gw.req("GET", "/v1/responses")
    eq(r.status, 405)
    eq(r.header("allow"), "POST")


@test
def chat_errors_speak_responses_names(w):
    # A schema the validator cannot check is refused by the chat pipeline:
    # the client hears about text.format, not response_format.
    r = respond(w, {"model": "expensive", "input": "x", "text": {"format": {
        "type": "json_schema", "name": "x",
        "schema": {"type": "string", "pattern": "a++"}}}})
    eq(r.status, 400, repr(r))
    e = r.json()["error"]
    eq(e["param"], "text.format")
    check("response_format" not in e["message"], e["message"])


# --- stateful: passed through, pinned ---------------------------------------------------------

@test
def stored_conversation_is_passed_through_and_followed(w):
    body = {"model": "rlarge", "input": uniq("remember 42"), "store": True, "temperature": 0.7}
    r = respond(w, body)
    eq(r.status, 200, repr(r))
    first = r.json()
    check(first["id"].startswith("resp_mock_"), first["id"])
    eq(r.header("x-tiergate-cache"), "bypass")
    eq(r.header("x-tiergate-model"), "rlarge")
    rec = last(w)
    check(rec["path"].endswith("/v1/responses"), rec["path"])
    eq(json.loads(rec["body"]), dict(body, model="gpt-r-large"))
    check('"temperature": 0.7' in rec["body"], "the client's bytes: " + rec["body"])
    ns_keys = mapped(w, first["id"])
    eq(len(ns_keys), 1, "the id is mapped")
    eq(w.redis.cmd("GET", ns_keys[0]), "rlarge")
    check(w.redis.cmd("TTL", ns_keys[0]) > 29 * 86400, "kept for 30 days")
    # The follow-up says auto: it reaches the model that holds the state.
    r = respond(w, {"model": "auto", "previous_response_id": first["id"], "input": "and now?"})
    eq(r.status, 200, repr(r))
    eq(text_of(r.json()), "Hello from gpt-r-large (after %s)" % first["id"])
    eq(r.json()["previous_response_id"], first["id"])
    eq(last(w)["model"], "gpt-r-large")
    d = w.gw.decision(r)
    eq(d["api"], "responses")
    eq(d["cache"], "bypass")
    eq(len(d["attempts"]), 1)
    check(d["cost_usd"] > 0, "cost from Responses usage names")
    # A cost cap below the model that holds it: refused, not sent elsewhere.
    r = respond(w, {"model": "auto", "previous_response_id": first["id"], "input": "x"},
                headers={"x-tiergate-max-tier": "medium"})
    eq(r.status, 400, repr(r))
    check("x-tiergate-max-tier" in r.json()["error"]["message"], r.json())
    eq(len(w.mock.requests()), 2)


@test
def stateful_without_a_mapping_takes_the_tiers_responses_model(w):
    r = respond(w, {"model": "cheap", "store": True, "input": uniq("x")})
    eq(r.status, 200, repr(r))
    eq(r.header("x-tiergate-model"), "rmini")  # mini speaks chat: skipped
    eq(last(w)["model"], "gpt-r-cheap")


@test
def stateful_is_never_retried_on_another_model(w):
    w.mock.script({"status": 500, "error": {"message": "boom"}}, model="gpt-r-large")
    r = respond(w, {"model": "rlarge", "store": True, "input": uniq("x")})
    eq(r.status, 502, repr(r))
    eq(len(w.mock.requests()), 1)
    check("boom" in r.json()["error"]["message"], r.json())
    # A provider's 4xx comes back as it was said.
    r = respond(w, {"model": "rlarge", "previous_response_id": "resp_mock_999999",
                    "input": "x"})
    eq(r.status, 400, repr(r))
    eq(r.json()["error"]["code"], "previous_response_not_found")
    eq(len(w.mock.requests()), 2)


def mapped(w, rid):
    """The Redis key mapping a response (or conversation) id to its model,
    once its fire-and-forget SET landed."""
    wait_for(lambda: w.redis.cmd("KEYS", "tiergate:v1:*:resp:" + rid), 5, msg="the id mapped")
    return w.redis.cmd("KEYS", "tiergate:v1:*:resp:" + rid)


@test
def stateful_stream_is_passed_through(w):
    w.mock.script({"content": "stored and streamed", "chunk_chars": 6}, model="gpt-r-large")
    r = respond(w, {"model": "rlarge", "store": True, "stream": True, "input": uniq("x")})
    eq(r.status, 200, repr(r))
    evs = events(r)
    check_stream_shape(evs)
    rid = evs[-1][1]["response"]["id"]
    check(rid.startswith("resp_mock_"), rid)
    eq(w.redis.cmd("GET", mapped(w, rid)[0]), "rlarge")
    d = w.gw.decision(r)
    check(d["cost_usd"] > 0, d)


@test
def a_stored_stream_that_fails_is_an_upstream_failure(w):
    w.mock.script({"content": "y" * 60, "chunk_chars": 10, "error_after": 2}, model="gpt-r-large")
    r = respond(w, {"model": "rlarge", "store": True, "stream": True, "input": uniq("x")})
    eq(r.status, 200, repr(r))
    evs = events(r)
    check_stream_shape(evs)
    eq([d["type"] for _, d in evs[-2:]], ["error", "response.failed"])  # the provider's, once
    d = w.gw.decision(r)
    eq(d["attempts"][0]["outcome"], "http_5xx")
    eq(len(w.redis.cmd("KEYS", "tiergate:v1:*:resp:*")), 0, "a failed response is not mapped")


@test
def a_conversation_follows_its_model(w):
    conv = "conv_%d" % int(time.time() * 1000)
    r = respond(w, {"model": "rlarge", "conversation": conv, "input": uniq("x")})
    eq(r.status, 200, repr(r))
    eq(w.redis.cmd("GET", mapped(w, conv)[0]), "rlarge")
    r = respond(w, {"model": "auto", "conversation": {"id": conv}, "input": "more"})
    eq(r.status, 200, repr(r))
    eq(r.header("x-tiergate-model"), "rlarge")
    eq([x["model"] for x in w.mock.requests()], ["gpt-r-large", "gpt-r-large"])
    check('"conversation": {"id": "%s"}' % conv in w.mock.requests()[-1]["body"], "passed through")


@test
def stateful_refusals(w):
    r = respond(w, {"model": "large", "store": True, "input": "x"})
    eq(r.status, 400, repr(r))
    check("responses" in r.json()["error"]["message"], r.json())
    eq(r.json()["error"]["param"], "model")
    r = respond(w, {"model": "medium", "previous_response_id": "resp_mock_1", "input": "x"})
    eq(r.status, 400, repr(r))
    check("medium" in r.json()["error"]["message"], r.json())
    r = respond(w, {"model": "auto", "previous_response_id": "resp_tg0123456789abcdef",
                    "input": "x"})
    eq(r.status, 400, repr(r))
    eq(r.json()["error"]["param"], "previous_response_id")
    check("statelessly" in r.json()["error"]["message"], r.json())
    r = respond(w, {"model": "nope", "store": True, "input": "x"})
    eq(r.status, 404)
    eq(r.json()["error"]["code"], "model_not_found")
    eq(len(w.mock.requests()), 0)


# --- streams that break, clients that leave ---------------------------------------------------

@test
def a_failure_mid_stream_ends_with_response_failed(w):
    w.mock.script({"content": "x" * 80, "chunk_chars": 10, "error_after": 3},
                  model="gpt-large")
    r = respond(w, {"model": "expensive", "input": uniq("x"), "stream": True})
    eq(r.status, 200, repr(r))
    evs = events(r)
    check_stream_shape(evs)
    eq([d["type"] for _, d in evs[-2:]], ["error", "response.failed"])
    eq(evs[-1][1]["response"]["status"], "failed")
    check(evs[-1][1]["response"]["error"]["message"], evs[-1])


@test
def a_client_that_leaves_cancels_the_pipeline(w):
    w.mock.script({"content": "slow " * 40, "chunk_chars": 5, "drip_ms": 100},
                  model="gpt-large")
    s = socket.create_connection(("127.0.0.1", w.gw.port))
    body = json.dumps({"model": "expensive", "input": uniq("x"), "stream": True}).encode()
    s.sendall(b"POST /v1/responses HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    got = s.recv(4096)
    check(b"200" in got.split(b"\r\n")[0], got[:200])
    s.close()
    wait_for(lambda: w.mock.stats()["aborted"] >= 1, 5, msg="the upstream call to be cut")
    wait_for(lambda: any(d.get("api") == "responses" and d["status"] == 499
                         for d in w.gw.decisions()), 5, msg="a 499 decision line")


@test
def a_client_that_pauses_gets_the_whole_stream(w):
    # The client stops reading for a while: the gateway holds the pipeline
    # (tests/unit/test_req.c shows the hold itself) and nothing is lost.
    w.mock.script({"body_size": 1000000, "chunk_chars": 2000}, model="gpt-large")
    s = socket.create_connection(("127.0.0.1", w.gw.port))
    body = json.dumps({"model": "expensive", "input": uniq("x"), "stream": True}).encode()
    s.sendall(b"POST /v1/responses HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    time.sleep(1.0)
    got = b""
    while True:
        b = s.recv(1 << 20)
        if not b:
            break
        got += b
    s.close()
    head, _, chunked = got.partition(b"\r\n\r\n")
    check(b" 200 " in head.split(b"\r\n")[0], head[:100])
    stream = b""
    while chunked:
        size, _, rest = chunked.partition(b"\r\n")
        n = int(size, 16)
        stream += rest[:n]
        chunked = rest[n + 2:]
        if n == 0:
            break
    text, deltas = "", 0
    for line in stream.split(b"\n"):
        if line.startswith(b"data: {") and b'"response.output_text.delta"' in line:
            text += json.loads(line[6:])["delta"]
            deltas += 1
    eq(deltas, 500)
    eq(text, "x" * 1000000)
    check(b'"type":"response.completed"' in stream[-1200000:], "the stream completed")
