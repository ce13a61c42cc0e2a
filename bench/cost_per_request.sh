#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/cost_per_request.sh BUILD [N] - what tiergate itself spends per
# pass-through request (1 shard, one keep-alive client, N sequential
# requests): CPU time (user+system, from /proc, summed over the run) and
# syscalls (strace -c on a second run). With CALLGRIND=1, instructions per
# request and the top functions instead (callgrind counts each iteration of a
# rep-prefixed instruction, so memset/memcpy look bigger there than on a CPU).
# These are costs, not latencies: steadier than wrk on a busy machine, and
# what comparing two builds of the hot path needs. SHADOW_RATE=0.05 samples that
# share for shadow evaluation (the shadow model is "large": MODEL=large requests are
# never eligible, MODEL=mini ones are, and their shadow calls count in the figures).
# ENDPOINT=responses sends the same conversation to /v1/responses (STORE=1:
# with store: true, the stateful pass-through); API=responses makes the
# models speak the Responses API upstream (docs/responses.md). STREAM=1
# asks for streams; MOCK_ACTION='{"content":"...","chunk_chars":4}' scripts
# every upstream answer (tests/mock/README.md).
# LIMITS=local|shared: the client sends a gateway key with rpm and usd_per_day
# (both far above what the run uses), checked in process (local) or with one
# Lua script per request on a redis-server started here (shared, issue 17,
# docs/replicas.md); the difference is the shared check's cost in tiergate
# (Redis's own CPU is not counted).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build/release}
N=${2:-20000}
MODEL=${MODEL:-large}
ENDPOINT=${ENDPOINT:-chat}
API=${API:-chat}
STORE=${STORE:-0}
STREAM=${STREAM:-0}
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$tmp"; }
trap cleanup EXIT
"$BUILD/mock_upstream" --port 0 --no-record >"$tmp/mock.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do grep -q listening "$tmp/mock.log" && break; sleep 0.05; done
mport=$(sed -n 's/.*:\([0-9]*\)$/\1/p' "$tmp/mock.log")
shadow=""
[ -z "${SHADOW_RATE:-}" ] || shadow=",\"shadow\":{\"rate\":$SHADOW_RATE,\"max_usd_per_day\":1000000}"
[ -z "${MOCK_ACTION:-}" ] || curl -s "http://127.0.0.1:$mport/_mock/script" \
    -d "{\"times\":-1,\"action\":$MOCK_ACTION}" >/dev/null
redis_url="redis://127.0.0.1:1/0"
limits=""
GW_KEY=""
if [ -n "${LIMITS:-}" ]; then
    GW_KEY=tg-bench-limits-key-0123456789
    sha=$(printf %s "$GW_KEY" | sha256sum | cut -d' ' -f1)
    shared=false
    if [ "$LIMITS" = shared ]; then
        shared=true
        rport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
        redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" \
            --loglevel warning >"$tmp/redis.log" 2>&1 & pids+=($!)
        for _ in $(seq 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.05; done
        redis_url="redis://127.0.0.1:$rport/0"
    fi
    limits=",\"auth\":{\"keys\":[{\"name\":\"bench\",\"sha256\":\"sha256:$sha\",\"rpm\":10000000,\"usd_per_day\":1000000}]},
 \"cluster\":{\"shared_limits\":$shared}"
fi
cat >"$tmp/tg.json" <<JSON
{"listen":"127.0.0.1:0","shards":1,"log":{"decisions":"off"},"cache":{"enabled":false},
 "redis":{"url":"$redis_url"}$limits,
 "models":{"mini":{"base_url":"http://127.0.0.1:$mport/v1","upstream_model":"gpt-cheap","api_key_env":"K","api":"$API"},
           "large":{"base_url":"http://127.0.0.1:$mport/v1","upstream_model":"gpt-large","api_key_env":"K","api":"$API"}},
 "tiers":{"cheap":["mini"],"medium":["large"],"expensive":["large"]}$shadow}
JSON
wrap=()
[ -n "${CALLGRIND:-}" ] && wrap=(valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" --instr-atstart=no)
K=x LD_PRELOAD=${PRELOAD:-} "${wrap[@]}" "$BUILD/tiergate" -c "$tmp/tg.json" >"$tmp/tg.log" 2>&1 & tg=$!; pids+=($tg)
for _ in $(seq 200); do grep -q listening "$tmp/tg.log" && break; sleep 0.05; done
port=$(grep -o 'listening on [^ ]*' "$tmp/tg.log" | sed 's/.*://')
client() {
GW_KEY=$GW_KEY python3 - "$port" "$1" "$MODEL" "$ENDPOINT" "$STORE" "$STREAM" <<'PY'
import http.client, json, os, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
path = "/v1/chat/completions"
r = {"model": sys.argv[3], "temperature": 0.2, "messages": [
    {"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is the capital of France?"}]}
if sys.argv[4] == "responses":
    path = "/v1/responses"
    r = {"model": sys.argv[3], "temperature": 0.2, "instructions": "You are terse.",
         "input": "What is the capital of France?"}
    if sys.argv[5] == "1":
        r["store"] = True
if sys.argv[6] == "1":
    r["stream"] = True
body = json.dumps(r)
headers = {"content-type": "application/json"}
if os.environ.get("GW_KEY"):
    headers["authorization"] = "Bearer " + os.environ["GW_KEY"]
for _ in range(int(sys.argv[2])):
    c.request("POST", path, body, headers)
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
PY
}
# With LIMITS=shared: how many checks Redis ran (admit, reserve, settle
# scripts), so a run that fell back to local limits does not pass for one.
redis_note() {
    [ "${LIMITS:-}" = shared ] || return 0
    echo "redis: $(redis-cli -p "$rport" info commandstats | grep -E '^cmdstat_(evalsha|eval):' | tr -d '\r' | cut -d, -f1 | tr '\n' ' ')"
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
client 200 # warm up: connections, pools, caches
if [ -n "${CALLGRIND:-}" ]; then
    callgrind_control -i on "$tg" >/dev/null 2>&1
    client "$N"
    callgrind_control -i off "$tg" >/dev/null 2>&1
    callgrind_control -d "$tg" >/dev/null 2>&1; sleep 0.5
    ir=$(callgrind_annotate "$tmp/cg.out.1" 2>&1 | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1; exit}' || true)
    echo "per request: $(python3 -c "print(round($ir/$N))") instructions (callgrind, user space)"
    callgrind_annotate ${INCLUSIVE:+--inclusive=yes} "$tmp/cg.out.1" 2>/dev/null | grep -E '^ *[0-9,]+ \(' | head -${TOP:-25} || true  # head closing the pipe early is not a failure
    redis_note
    exit 0
fi
t0=$(cpu_ticks "$tg"); s0=$(date +%s.%N)
client "$N"
t1=$(cpu_ticks "$tg"); s1=$(date +%s.%N)
strace -f -c -p "$tg" -o "$tmp/strace.txt" 2>/dev/null & spid=$!
sleep 0.5
client 1000
kill -INT $spid; wait $spid 2>/dev/null || true
calls=$(awk '$NF=="total" {print $(NF-2)}' "$tmp/strace.txt")
python3 - "$t0" "$t1" "$N" "$calls" "$s0" "$s1" <<'PY'
import os, sys
t0, t1, n, calls, s0, s1 = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
hz = os.sysconf("SC_CLK_TCK")
print("per request: %.1f us of tiergate CPU, %.1f syscalls; %.0f us wall per round trip (client included)" % (
    (t1 - t0) / hz / n * 1e6, calls / 1000, (s1 - s0) / n * 1e6))
PY
redis_note
