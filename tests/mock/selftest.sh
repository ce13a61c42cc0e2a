#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# selftest.sh - quick check of the mock upstream itself: starts it on a free
# port, drives the chat endpoint and the /_mock control API with curl, checks
# JSON with python3, stops it on every exit path, prints "N passed, N failed".
# Usage: tests/mock/selftest.sh [path/to/mock_upstream]   (or MOCK=... env)
set -u

MOCK=${1:-${MOCK:-build/release/mock_upstream}}
if [[ ! -x $MOCK ]]; then
    echo "selftest: mock binary not found: $MOCK" >&2
    exit 2
fi

TMP=$(mktemp -d)
PID=
TPID=
cleanup() {
    for p in $PID $TPID; do
        kill -TERM "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$MOCK" --port 0 >"$TMP/out" 2>"$TMP/err" &
PID=$!
PORT=
for _ in $(seq 1 100); do
    PORT=$(sed -n 's/^mock_upstream listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$TMP/out")
    [[ -n $PORT ]] && break
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.05
done
if [[ -z $PORT ]]; then
    echo "selftest: mock did not print its ready line" >&2
    cat "$TMP/err" >&2
    exit 1
fi
BASE=http://127.0.0.1:$PORT

PASS=0
FAIL=0
ok() { PASS=$((PASS + 1)); echo "ok   $1"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL $1${2:+: $2}"; }

# jcheck NAME PYTHON-EXPR FILE: evaluates the expression with j = parsed JSON of FILE.
jcheck() {
    if python3 - "$2" "$3" <<'EOF' 2>"$TMP/pyerr"; then ok "$1"; else bad "$1" "$(tail -c 400 "$3")"; fi
import json, sys
j = json.load(open(sys.argv[2], encoding="utf-8"))
sys.exit(0 if eval(sys.argv[1]) else 1)
EOF
}

# sse FILE: prints a JSON summary of an SSE body: events, content, tool calls, usage, done.
sse() {
    python3 - "$1" <<'EOF'
import json, sys
events, content, tools, usage, done, finish = [], "", {}, None, False, None
for line in open(sys.argv[1], encoding="utf-8").read().split("\n"):
    if not line.startswith("data: "):
        continue
    data = line[6:]
    if data == "[DONE]":
        done = True
        continue
    ev = json.loads(data)
    events.append(ev)
    if ev.get("usage"):
        usage = ev["usage"]
    for ch in ev.get("choices", []):
        d = ch.get("delta", {})
        content += d.get("content") or ""
        for tc in d.get("tool_calls") or []:
            t = tools.setdefault(tc["index"], {"id": None, "name": "", "arguments": ""})
            t["id"] = tc.get("id", t["id"])
            fn = tc.get("function", {})
            t["name"] += fn.get("name", "")
            t["arguments"] += fn.get("arguments", "")
        finish = ch.get("finish_reason") or finish
print(json.dumps({"n": len(events), "content": content, "tools": [tools[k] for k in sorted(tools)],
                  "usage": usage, "done": done, "finish": finish,
                  "last_choices": events[-1]["choices"] if events else None,
                  "all_usage_key": all("usage" in e for e in events)}))
EOF
}

chat() { # chat PATH MODEL [extra JSON fields] -> response body on stdout
    curl -sS -H 'Content-Type: application/json' -H 'Authorization: Bearer sk-selftest' \
        -d "{\"model\":\"$2\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]${3:-}}" "$BASE$1"
}
script() { curl -sS -d "$1" "$BASE/_mock/script" >"$TMP/script.json" && grep -q '"ok":true' "$TMP/script.json"; }
content_of() { python3 -c 'import json,sys; print(json.load(sys.stdin)["choices"][0]["message"]["content"])'; }

# 1. default completion
chat /v1/chat/completions gpt-4o-mini >"$TMP/c1.json"
jcheck "default completion" 'j["object"] == "chat.completion" and j["choices"][0]["message"]["content"] == "Hello from gpt-4o-mini" and j["choices"][0]["finish_reason"] == "stop" and j["usage"]["total_tokens"] == j["usage"]["prompt_tokens"] + j["usage"]["completion_tokens"]' "$TMP/c1.json"

# 2. scripted rule by model and times
if script '{"model":"m-a","times":2,"action":{"content":"scripted"}}'; then ok "script accepted"; else bad "script accepted" "$(cat "$TMP/script.json")"; fi
# (one command substitution per assignment: bash 5.2 mis-runs a signal trap that
# fires inside "$(a)|$(b)", and the INT/TERM traps must work)
got=
for model in m-b m-a m-a m-a; do
    c=$(chat /v1/chat/completions $model | content_of)
    got+="$c|"
done
[[ $got == "Hello from m-b|scripted|scripted|Hello from m-a|" ]] && ok "rule by model, times 2" || bad "rule by model, times 2" "$got"

# 3. path_prefix
script '{"path_prefix":"/p2","times":-1,"action":{"content":"from p2"}}'
got=
for path in /v1 /p2/v1 /p2/v1; do
    c=$(chat $path/chat/completions m | content_of)
    got+="$c|"
done
[[ $got == "Hello from m|from p2|from p2|" ]] && ok "rule by path_prefix" || bad "rule by path_prefix" "$got"
curl -sS -X DELETE "$BASE/_mock/script" >/dev/null

# 3b. body_contains (a marker anywhere in the raw body)
script '{"body_contains":"marker-7","times":-1,"action":{"content":"by body"}}'
got=
for extra in ',"user":"marker-7"' ',"user":"marker-8"' ',"user":"xmarker-7x"'; do
    c=$(chat /v1/chat/completions m "$extra" | content_of)
    got+="$c|"
done
[[ $got == "by body|Hello from m|by body|" ]] && ok "rule by body_contains" || bad "rule by body_contains" "$got"
curl -sS -X DELETE "$BASE/_mock/script" >/dev/null

# 4. 429 with retry-after
script '{"action":{"status":429,"headers":{"retry-after":"2"}}}'
code=$(curl -sS -o "$TMP/c4.json" -D "$TMP/h4" -w '%{http_code}' -d '{"model":"m","messages":[]}' "$BASE/v1/chat/completions")
if [[ $code == 429 ]] && grep -qi '^retry-after: 2' "$TMP/h4"; then ok "429 with retry-after"; else bad "429 with retry-after" "$code"; fi
jcheck "429 error shape" 'set(j["error"]) == {"message", "type", "param", "code"}' "$TMP/c4.json"

# 5. invalid body
script '{"action":{"body":"{\"choices\": [oops"}}'
chat /v1/chat/completions m >"$TMP/c5.txt"
[[ $(cat "$TMP/c5.txt") == '{"choices": [oops' ]] && ok "invalid JSON body verbatim" || bad "invalid JSON body verbatim" "$(cat "$TMP/c5.txt")"

# 6. stream with usage
script '{"action":{"content":"The quick brown fox jumps over the lazy dog","chunk_chars":5}}'
chat /v1/chat/completions m ',"stream":true,"stream_options":{"include_usage":true}' >"$TMP/s6.txt"
sse "$TMP/s6.txt" >"$TMP/s6.json"
jcheck "stream content + [DONE]" 'j["content"] == "The quick brown fox jumps over the lazy dog" and j["done"] and j["finish"] == "stop" and j["n"] == 1 + 9 + 1 + 1' "$TMP/s6.json"
jcheck "stream usage chunk" 'j["last_choices"] == [] and j["usage"]["completion_tokens"] == 11 and j["all_usage_key"]' "$TMP/s6.json"

# 7. tool_calls stream
script '{"action":{"tool_calls":[{"id":"call_w","name":"get_weather","arguments":"{\"city\":\"Paris\",\"unit\":\"c\"}"}]}}'
chat /v1/chat/completions m ',"stream":true' >"$TMP/s7.txt"
sse "$TMP/s7.txt" >"$TMP/s7.json"
jcheck "tool_calls stream" 'j["tools"] == [{"id": "call_w", "name": "get_weather", "arguments": "{\"city\":\"Paris\",\"unit\":\"c\"}"}] and j["finish"] == "tool_calls" and j["done"]' "$TMP/s7.json"

# 8. reset before headers: curl must report a transport error
script '{"action":{"reset":"before_headers"}}'
curl -sS -o /dev/null -d '{"model":"m","messages":[]}' "$BASE/v1/chat/completions" 2>"$TMP/c8.err"
rc=$?
[[ $rc -ne 0 ]] && ok "reset before headers (curl exit $rc)" || bad "reset before headers" "curl exit 0"

# 9. records: what the client actually sent
curl -sS -X DELETE "$BASE/_mock/requests" >/dev/null
chat /v1/chat/completions rec-model ',"temperature":0.7' >/dev/null
curl -sS "$BASE/_mock/requests" >"$TMP/r9.json"
jcheck "record: authorization header" 'len(j) == 1 and j[0]["headers"]["authorization"] == "Bearer sk-selftest" and j[0]["method"] == "POST" and j[0]["path"] == "/v1/chat/completions"' "$TMP/r9.json"
jcheck "record: raw body" 'j[0]["body"] == "{\"model\":\"rec-model\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"temperature\":0.7}" and j[0]["model"] == "rec-model" and j[0]["stream"] is False' "$TMP/r9.json"

# 9b. the Responses API: an object, a follow-up naming it, an unknown id, a stream
curl -sS -d '{"model":"m","input":"hi","store":true}' "$BASE/v1/responses" >"$TMP/r1.json"
jcheck "responses: object" 'j["object"] == "response" and j["status"] == "completed" and j["output"][0]["content"][0]["text"] == "Hello from m" and j["usage"]["total_tokens"] == j["usage"]["input_tokens"] + j["usage"]["output_tokens"] and j["store"] is True' "$TMP/r1.json"
RID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$TMP/r1.json")
curl -sS -d "{\"model\":\"m\",\"input\":\"more\",\"previous_response_id\":\"$RID\"}" "$BASE/v1/responses" >"$TMP/r2.json"
jcheck "responses: follow-up echoes the stored id" "j[\"output\"][0][\"content\"][0][\"text\"] == \"Hello from m (after $RID)\" and j[\"previous_response_id\"] == \"$RID\"" "$TMP/r2.json"
curl -sS -d '{"model":"m","input":"x","previous_response_id":"resp_nope"}' "$BASE/v1/responses" >"$TMP/r3.json"
jcheck "responses: unknown previous id" 'j["error"]["code"] == "previous_response_not_found" and j["error"]["param"] == "previous_response_id"' "$TMP/r3.json"
script '{"action":{"content":"abc def","chunk_chars":3}}'
curl -sS -N -d '{"model":"m","input":"x","stream":true}' "$BASE/v1/responses" >"$TMP/r4.txt"
python3 - "$TMP/r4.txt" >"$TMP/r4.json" <<'EOF2'
import json, sys
evs = [json.loads(l[6:]) for l in open(sys.argv[1]).read().split("\n") if l.startswith("data: ")]
print(json.dumps({"types": [e["type"] for e in evs], "seq": [e["sequence_number"] for e in evs],
                  "text": "".join(e.get("delta", "") for e in evs if e["type"] == "response.output_text.delta")}))
EOF2
jcheck "responses: stream" 'j["types"][0] == "response.created" and j["types"][-1] == "response.completed" and j["text"] == "abc def" and j["seq"] == list(range(len(j["seq"])))' "$TMP/r4.json"

# 10. stats (21 chat and Responses requests so far)
curl -sS "$BASE/_mock/stats" >"$TMP/st.json"
jcheck "stats" 'j["requests"] == 21 and j["active"] == 0 and j["peak_active"] >= 1 and j["aborted"] == 0 and j["connections"] >= 1' "$TMP/st.json"
curl -sS -X POST "$BASE/_mock/reset" >/dev/null
curl -sS "$BASE/_mock/requests" >"$TMP/r10.json"
jcheck "reset clears records" 'j == []' "$TMP/r10.json"

# 12. embeddings: OpenAI's shape, dimensions, usage
emb() { curl -sS -w '\n%{http_code}' -H 'Content-Type: application/json' -d "$1" "$BASE/v1/embeddings"; }
emb '{"model":"mock-embed","input":["the quick brown fox","lazy dog"],"dimensions":64}' | head -n 1 >"$TMP/e12"
jcheck "embeddings shape" 'j["object"] == "list" and [d["index"] for d in j["data"]] == [0, 1] and all(d["object"] == "embedding" and len(d["embedding"]) == 64 for d in j["data"]) and j["model"] == "mock-embed" and j["usage"] == {"prompt_tokens": 6, "total_tokens": 6} and abs(sum(x * x for x in j["data"][0]["embedding"]) - 1) < 1e-6' "$TMP/e12"
emb '{"model":"text-embedding-3-small","input":"hi"}' | head -n 1 >"$TMP/e12b"
jcheck "embeddings default dims by model" 'len(j["data"][0]["embedding"]) == 1536' "$TMP/e12b"

# 13. base64 is the same float32 vector, little-endian (the openai npm client's default)
emb '{"model":"m","input":"turn off the lights","dimensions":32,"encoding_format":"base64"}' | head -n 1 >"$TMP/e13a"
emb '{"model":"m","input":"turn off the lights","dimensions":32}' | head -n 1 >"$TMP/e13b"
if python3 - "$TMP/e13a" "$TMP/e13b" <<'PY'; then ok "base64 = float32 vector"; else bad "base64 = float32 vector"; fi
import base64, json, struct, sys
a = json.load(open(sys.argv[1]))["data"][0]["embedding"]
b = json.load(open(sys.argv[2]))["data"][0]["embedding"]
v = struct.unpack("<32f", base64.b64decode(a))
sys.exit(0 if all(x == struct.unpack("<f", struct.pack("<f", y))[0] for x, y in zip(v, b)) else 1)
PY

# 14. token-id input, and the 400s OpenAI gives for bad input
emb '{"model":"m","input":[[1,2,3],[4]],"dimensions":8}' | head -n 1 >"$TMP/e14"
jcheck "token-id input" 'len(j["data"]) == 2 and j["usage"]["prompt_tokens"] == 4' "$TMP/e14"
got=
for body in '{"model":"m","input":""}' '{"model":"m","input":[]}' '{"model":"m","input":[1,"a"]}' \
    '{"model":"m"}' '{"input":"x"}' '{"model":"m","input":"x","dimensions":0}' \
    '{"model":"m","input":"x","encoding_format":"int8"}'; do
    r=$(emb "$body")
    param=$(head -n 1 <<<"$r" | python3 -c 'import json,sys; print(json.load(sys.stdin)["error"]["param"])')
    code=$(tail -n 1 <<<"$r")
    got+="$code:$param|"
done
[[ $got == "400:input|400:input|400:input|400:input|400:model|400:dimensions|400:encoding_format|" ]] && ok "embeddings bad input: 400 naming the field" || bad "embeddings bad input" "$got"

# 15. scripted faults apply to embeddings; an endpoint filter keeps chat apart
script '{"endpoint":"embeddings","times":2,"action":{"status":503,"delay_ms":50}}'
e1=$(emb '{"model":"m","input":"x"}' | tail -n 1)
c1=$(curl -sS -o /dev/null -w '%{http_code}' -d '{"model":"m","messages":[]}' "$BASE/v1/chat/completions")
e2=$(emb '{"model":"m","input":"x"}' | tail -n 1)
e3=$(emb '{"model":"m","input":"x"}' | tail -n 1)
[[ "$e1 $c1 $e2 $e3" == "503 200 503 200" ]] && ok "endpoint rule: 503 for embeddings only" || bad "endpoint rule" "$e1 $c1 $e2 $e3"
curl -sS "$BASE/_mock/stats" >"$TMP/st15.json"
jcheck "stats count embeddings apart" 'j["embeddings"] >= 14 and j["requests"] == 1' "$TMP/st15.json"
curl -sS "$BASE/_mock/requests" >"$TMP/r15.json"
jcheck "embeddings recorded" 'j[-1]["path"] == "/v1/embeddings" and json.loads(j[-1]["body"])["input"] == "x"' "$TMP/r15.json"

# 16. what the semantic cache's tests rely on: one changed number or one added
#     "not" in a long prompt stays above 0.97; a reordered, re-punctuated
#     paraphrase scores 1 (bag of words)
ctx="I am writing the user guide for our home automation hub, which controls lamps, heating, blinds and door locks in every room through a small web dashboard and a phone app. Please explain in plain words what the hub does when it receives the request below."
python3 - "$ctx" >"$TMP/e16.json" <<'PY'
import json, sys
c = sys.argv[1]
print(json.dumps({"model": "m", "input": [
    c + " Set the thermostat to 21 degrees.", c + " Set the thermostat to 24 degrees.",
    c + " Should the hub lock the door?", c + " Should the hub not lock the door?",
    "Request - in the kitchen: " + c.lower() + " turn off the lights!",
    c + " Request: turn off the lights in the kitchen."]}))
PY
curl -sS -d @"$TMP/e16.json" "$BASE/v1/embeddings" >"$TMP/e16"
jcheck "long prompt: changed number, added not > 0.97; paraphrase 1" '(lambda e, cos: 0.97 < cos(e[0], e[1]) < 0.9999 and 0.97 < cos(e[2], e[3]) < 0.9999 and cos(e[4], e[5]) > 0.9999)([d["embedding"] for d in j["data"]], lambda a, b: sum(x * y for x, y in zip(a, b)))' "$TMP/e16"

# 17. the official openai npm client, when tests/e2e has it installed (make deps)
SDK=$PWD/tests/e2e/node_modules/openai/index.mjs
if command -v node >/dev/null && [[ -f $SDK ]]; then
    {
        echo "import OpenAI from '$SDK';"
        echo "const c = new OpenAI({ apiKey: 'sk-selftest', baseURL: '$BASE/v1' });"
        cat <<'JS'
const a = await c.embeddings.create({ model: 'm', input: ['turn off the lights', 'lights: turn off the'] });
const f = await c.embeddings.create({ model: 'm', input: 'turn off the lights', encoding_format: 'float' });
const same = a.data[0].embedding.every((v, i) => v === Math.fround(f.data[0].embedding[i]));
const cos = a.data[0].embedding.reduce((s, v, i) => s + v * a.data[1].embedding[i], 0);
process.exit(a.data[0].embedding.length === 256 && same && Math.abs(cos - 1) < 1e-6 ? 0 : 1);
JS
    } >"$TMP/sdk.mjs"
    if node "$TMP/sdk.mjs" 2>"$TMP/sdk.err"; then ok "openai npm client: embeddings.create (base64 default)"; else bad "openai npm client" "$(tail -c 300 "$TMP/sdk.err")"; fi
else
    echo "skip openai npm client (no tests/e2e/node_modules: make deps)"
fi
# 10b. Files + Batches (provider-mode tests): upload, create, three polls, results
printf '%s\n%s\n' '{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[]}}' \
    '{"custom_id":"b","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[{"role":"user","content":"bfail"}]}}' >"$TMP/in.jsonl"
curl -sS "$BASE/_mock/script" -d '{"body_contains":"bfail","action":{"status":500}}' >/dev/null
curl -sS "$BASE/v1/files" -F purpose=batch -F "file=@$TMP/in.jsonl" >"$TMP/f1.json"
FID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$TMP/f1.json" 2>/dev/null)
curl -sS "$BASE/v1/batches" -d "{\"input_file_id\":\"$FID\",\"endpoint\":\"/v1/chat/completions\",\"completion_window\":\"24h\"}" >"$TMP/b1.json"
BID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$TMP/b1.json" 2>/dev/null)
for _ in 1 2 3; do curl -sS "$BASE/v1/batches/$BID" >"$TMP/b2.json"; done
jcheck "batches: completes on the third poll" 'j["status"] == "completed" and j["request_counts"] == {"total": 2, "completed": 1, "failed": 1}' "$TMP/b2.json"
OID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["output_file_id"])' "$TMP/b2.json" 2>/dev/null)
curl -sS "$BASE/v1/files/$OID/content" >"$TMP/o.jsonl"
python3 -c 'import json,sys; print(json.dumps([json.loads(l) for l in open(sys.argv[1])]))' "$TMP/o.jsonl" >"$TMP/o.json" 2>/dev/null
jcheck "batches: output file lines" 'len(j) == 1 and j[0]["custom_id"] == "a" and j[0]["response"]["status_code"] == 200' "$TMP/o.json"
curl -sS -X POST "$BASE/_mock/reset" >/dev/null

# 11. SIGTERM exits 0
kill -TERM "$PID"
wait "$PID"
rc=$?
PID=
[[ $rc -eq 0 ]] && ok "SIGTERM exits 0" || bad "SIGTERM exits 0" "exit $rc"

# 12. TLS mode: a CA of our own, HTTPS with keep-alive, a stream and a large body
#     through partial TLS writes, an untrusting client refused, SIGTERM exits 0
if "$(dirname "$0")/gen_certs.sh" "$TMP/pki" 2>"$TMP/pki.err"; then
    "$MOCK" --port 0 --tls-cert "$TMP/pki/server.pem" --tls-key "$TMP/pki/server.key" >"$TMP/tout" 2>"$TMP/terr" &
    TPID=$!
    TPORT=
    for _ in $(seq 1 100); do
        TPORT=$(sed -n 's/^mock_upstream listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$TMP/tout")
        [[ -n $TPORT ]] && break
        kill -0 "$TPID" 2>/dev/null || break
        sleep 0.05
    done
    TB=https://127.0.0.1:$TPORT
    tchat() { curl -sS --cacert "$TMP/pki/ca.pem" -d "{\"model\":\"$1\",\"messages\":[]${2:-}}" "$TB/v1/chat/completions"; }
    curl -sS --cacert "$TMP/pki/ca.pem" -d '{"model":"t1","messages":[]}' "$TB/v1/chat/completions" \
        --next --cacert "$TMP/pki/ca.pem" -d '{"model":"t2","messages":[]}' "$TB/v1/chat/completions" \
        >"$TMP/t1.txt" 2>"$TMP/t1.err"
    curl -sS --cacert "$TMP/pki/ca.pem" "$TB/_mock/stats" >"$TMP/t1s.json"
    jcheck "tls: two requests on one kept-alive connection" 'j["requests"] == 2 and j["connections"] == 1' "$TMP/t1s.json"
    grep -q '"content":"Hello from t1"' "$TMP/t1.txt" && ok "tls: completion" || bad "tls: completion" "$(cat "$TMP/t1.txt" "$TMP/t1.err")"
    curl -sS --cacert "$TMP/pki/ca.pem" -d '{"times":-1,"action":{"content":"The quick brown fox jumps over the lazy dog","chunk_chars":5,"drip_ms":5}}' "$TB/_mock/script" >/dev/null
    tchat t3 ',"stream":true' >"$TMP/t3.txt"
    sse "$TMP/t3.txt" >"$TMP/t3.json"
    jcheck "tls: dripped stream" 'j["content"] == "The quick brown fox jumps over the lazy dog" and j["done"] and j["n"] == 1 + 9 + 1' "$TMP/t3.json"
    curl -sS --cacert "$TMP/pki/ca.pem" -X DELETE "$TB/_mock/script" >/dev/null
    curl -sS --cacert "$TMP/pki/ca.pem" -d '{"action":{"body_size":3000000}}' "$TB/_mock/script" >/dev/null
    tchat t4 >"$TMP/t4.json"
    jcheck "tls: 3 MB answer" 'len(j["choices"][0]["message"]["content"]) > 2900000' "$TMP/t4.json"
    curl -sS -o /dev/null -d '{}' "$TB/v1/chat/completions" 2>/dev/null
    rc=$?
    [[ $rc -eq 60 ]] && ok "tls: client without the CA refuses (curl exit 60)" || bad "tls: untrusted" "curl exit $rc"
    kill -TERM "$TPID"
    wait "$TPID"
    rc=$?
    TPID=
    [[ $rc -eq 0 ]] && ok "tls: SIGTERM exits 0" || bad "tls: SIGTERM exits 0" "exit $rc"
else
    bad "tls: gen_certs.sh" "$(cat "$TMP/pki.err")"
fi

echo "$PASS passed, $FAIL failed"
[[ $FAIL -eq 0 ]]
