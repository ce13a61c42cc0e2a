#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# make bench: tiergate side by side with what a user would otherwise run, all
# on this machine against the same mock upstream (bench/RESULTS.md explains
# every section; bench/report.py turns the raw runs into tables and plots):
#   1. peers: the mock direct, nginx proxy_pass, tiergate pass-through,
#      tiergate cache hits and Portkey's OSS gateway, at 1, 10 and 64
#      connections, BENCH_ROUNDS interleaved rounds (ratios paired per round)
#   2. HTTPS upstream: the mock serving TLS (a CA made here), direct, through
#      nginx (verify on, session reuse, keep-alive), tiergate and Portkey
#   3. streams: time to first token and chunks/s through each gateway while
#      the mock drips tokens; tiergate's buffered cheap tier vs its live last
#      tier, per x-tiergate-stream-mode value in BENCH_STREAM_MODES
#   4. the gateway's own time (x-tiergate-overhead-ms): pinned, first tier
#      accepted, one escalation, pinned over TLS
#   5. BENCH_STREAMS concurrent streams held 2 s each: errors, peak RSS, threads
#   6. the router alone; 7. instructions per pass-through request (callgrind),
#      and with a gateway key's limits checked locally or shared in Redis
#   8. the semantic cache: its index alone (bench/semantic.sh: lookup latency
#      at 10k and 100k entries, RSS per 100k), then a gateway with it on
#      (bench/semantic_gateway.py: own time of exact hits, semantic hits and
#      semantic misses with BENCH_SEM_ENTRIES stored answers)
#   9. batches (bench/batch_bench.py, its own processes): lines/s through a
#      batch, live-request latency alone and while a batch runs
# Raw runs: bench/out/results.jsonl + meta.json; report: bench/out/results.json,
# bench/out/summary.md, plots in bench/plots/.
#
# Knobs (defaults; BENCH_QUICK=1 gives a ~3 minute smoke run):
#   BENCH_SECONDS 10 (2)   per wrk run in section 1 (half at 1 connection); section 2 uses half
#   BENCH_ROUNDS 3 (1)     interleaved rounds of sections 1 and 2
#   BENCH_STREAMS 5000 (500), BENCH_SHARDS 2, BENCH_PEERS "portkey" ("" = none)
#   BENCH_STREAM_MODES "default" (no header) or e.g. "buffer prefix live"
#   BENCH_DRIP_MS 20, BENCH_STREAM_TOKENS 64, BENCH_STREAM_REQUESTS 40 (10),
#   BENCH_STREAM_CONNS 10, BENCH_COST 1 (0 skips section 7), BENCH_SEM_ENTRIES 10000 (1000)
#   BENCH_BATCH_LINES 10000 (2000), BENCH_BATCH_LIVE_SECONDS 8 (3), BENCH_BATCH_LIVE_CONNS 8
#   BENCH_SECTIONS "peers tls streams own held router cost semantic batch": a subset reruns just
#     those (e.g. BENCH_SECTIONS=streams BENCH_STREAM_MODES='prefix live').
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build/release}
QUICK=${BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then q() { echo "$1"; }; else q() { echo "$2"; }; fi
SECS=${BENCH_SECONDS:-$(q 2 10)}
ROUNDS=${BENCH_ROUNDS:-$(q 1 3)}
STREAMS=${BENCH_STREAMS:-$(q 500 5000)}
SHARDS=${BENCH_SHARDS:-2}
PEERS=${BENCH_PEERS-portkey}
MODES=${BENCH_STREAM_MODES:-default}
DRIP=${BENCH_DRIP_MS:-20}
TOKENS=${BENCH_STREAM_TOKENS:-64}
STREAM_N=${BENCH_STREAM_REQUESTS:-$(q 10 40)}
STREAM_C=${BENCH_STREAM_CONNS:-10}
OWN_N=$(q 50 400)
COST=${BENCH_COST:-1}
COST_N=$(q 200 500)
SEM_N=${BENCH_SEM_ENTRIES:-$(q 1000 10000)}
SEM_M=$(q 100 400)
SECTIONS=" ${BENCH_SECTIONS:-peers tls streams own held router cost semantic batch} "
want() { [[ $SECTIONS == *" $1 "* ]]; }
TLS_SECS=$(( SECS / 2 > 2 ? SECS / 2 : 2 ))
C1_SECS=$TLS_SECS   # one connection: latency, thousands of samples in half the time
HELD_SECS=$(( SECS > 6 ? SECS : 6 ))   # a held stream lasts 2 s: give each connection a few
PORTKEY_DIR=build/bench-peers/portkey
out=bench/out
mkdir -p "$out" bench/plots
rm -f "$out"/{results.jsonl,meta.json,own_time.json,process.json,router.txt,cost.txt,semantic.txt,semantic_gateway.json,batch.json,limits_*.txt}
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT INT TERM
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
for c in wrk nginx redis-server openssl python3; do
    command -v "$c" >/dev/null || { echo "bench: $c is required (make bench installs it: scripts/deps.sh with TG_DEPS_BENCH=1)"; exit 1; }
done
for b in tiergate mock_upstream bench/stream_client; do
    [ -x "$BUILD/$b" ] || { echo "bench: $BUILD/$b missing (make all $BUILD/bench/stream_client)"; exit 1; }
done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_line() { for _ in $(seq 200); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done; cat "$1"; return 1; }
mock_port() { sed -n 's/.*:\([0-9]*\)$/\1/p' "$1"; }

# --- the upstreams: the mock over HTTP and over HTTPS, recording off ----------
tests/mock/gen_certs.sh "$tmp/pki"
"$BUILD/mock_upstream" --port 0 --no-record --threads 1 >"$tmp/mock.log" 2>&1 & pids+=($!)
"$BUILD/mock_upstream" --port 0 --no-record --threads 1 --tls-cert "$tmp/pki/server.pem" \
    --tls-key "$tmp/pki/server.key" >"$tmp/mock-tls.log" 2>&1 & pids+=($!)
wait_line "$tmp/mock.log" listening
wait_line "$tmp/mock-tls.log" listening
mport=$(mock_port "$tmp/mock.log")
sport=$(mock_port "$tmp/mock-tls.log")
rport=$(free_port)
redis-server --bind 127.0.0.1 --port "$rport" --save '' --appendonly no --dir "$tmp" >"$tmp/redis.log" 2>&1 & pids+=($!)

# --- nginx proxy_pass, keep-alive upstreams, same worker count as our shards --
nport=$(free_port)
nsport=$(free_port)
cat >"$tmp/nginx.conf" <<NGX
worker_processes $SHARDS;
daemon off;
pid $tmp/nginx.pid;
error_log $tmp/nginx-error.log warn;
worker_rlimit_nofile 65536;
events { worker_connections 20000; }
http {
    access_log off;
    client_body_temp_path $tmp/nginx-body;
    proxy_temp_path $tmp/nginx-proxy;
    upstream mock { server 127.0.0.1:$mport; keepalive 512; }
    upstream mock_tls { server 127.0.0.1:$sport; keepalive 512; }
    server {
        listen 127.0.0.1:$nport reuseport;
        location / {
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
    server {
        listen 127.0.0.1:$nsport reuseport;
        location / {
            proxy_pass https://mock_tls;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate $tmp/pki/ca.pem;
            proxy_ssl_name localhost;
            proxy_ssl_session_reuse on;
        }
    }
}
NGX
nginx -c "$tmp/nginx.conf" -p "$tmp" >"$tmp/nginx.log" 2>&1 & pids+=($!)

# --- tiergate: one config without cache (pass-through), one with -------------
gen_config() { # $1 port, $2 cache enabled
    python3 - "$mport" "$sport" "$rport" "$1" "$2" "$SHARDS" "$tmp/pki/ca.pem" <<'PY'
import json, sys
mport, sport, rport, port, cache, shards, ca = sys.argv[1:8]
def model(name, i, o, base="http://127.0.0.1:%s/v1" % mport):
    return {"base_url": base, "upstream_model": name,
            "api_key_env": "BENCH_KEY", "input_per_mtok": i, "output_per_mtok": o}
tls = dict(model("gpt-large", 2.5, 10, "https://127.0.0.1:%s/v1" % sport), ca_file=ca)
print(json.dumps({
    "listen": "127.0.0.1:%s" % port, "shards": int(shards),
    "redis": {"url": "redis://127.0.0.1:%s/0" % rport},
    "log": {"decisions": "off", "level": "info"},
    "limits": {"max_connections": 30000},
    "cache": {"enabled": cache == "1"},
    "models": {"mini": model("gpt-cheap", 0.15, 0.6), "mid": model("gpt-mid", 0.4, 1.6),
               "large": model("gpt-large", 2.5, 10), "large-tls": tls},
    # large-tls last in its tier: asking for it by id is a pure pass-through.
    "tiers": {"cheap": ["mini"], "medium": ["mid"], "expensive": ["large", "large-tls"]}}))
PY
}
tport=$(free_port)
cport=$(free_port)
gen_config "$tport" 0 >"$tmp/tg.json"
gen_config "$cport" 1 >"$tmp/tg-cache.json"
BENCH_KEY=sk-bench "$BUILD/tiergate" -c "$tmp/tg.json" >"$tmp/tg.log" 2>&1 & tg_pid=$!; pids+=($tg_pid)
BENCH_KEY=sk-bench "$BUILD/tiergate" -c "$tmp/tg-cache.json" >"$tmp/tgc.log" 2>&1 & tgc_pid=$!; pids+=($tgc_pid)
wait_line "$tmp/tg.log" listening
wait_line "$tmp/tgc.log" listening
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$nport/" && break; sleep 0.1; done
for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done

# --- peers --------------------------------------------------------------------
# Portkey's OSS gateway routes to any OpenAI-compatible host named per request:
#   x-portkey-provider: openai, x-portkey-custom-host: <base URL up to /v1>
# (loopback hosts are in its default TRUSTED_CUSTOM_HOSTS). One Node process,
# as `npx @portkey-ai/gateway` runs it; NODE_EXTRA_CA_CERTS trusts our CA.
portkey_ok=0
portkey_version=""
portkey_note="not requested (BENCH_PEERS)"
pk_hdrs() { printf 'x-portkey-provider: openai\nx-portkey-custom-host: %s\n' "$1"; }
if [[ " $PEERS " == *" portkey "* ]]; then
    pk_main=$PORTKEY_DIR/node_modules/@portkey-ai/gateway/build/start-server.js
    if [ -f "$pk_main" ] && command -v node >/dev/null; then
        portkey_version=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' \
            "$PORTKEY_DIR/node_modules/@portkey-ai/gateway/package.json")
        pport=$(free_port)
        (cd "$PORTKEY_DIR" && NODE_ENV=production NODE_EXTRA_CA_CERTS="$tmp/pki/ca.pem" \
            exec node "node_modules/@portkey-ai/gateway/build/start-server.js" --port="$pport" --headless) \
            >"$tmp/portkey.log" 2>&1 & pk_pid=$!; pids+=($pk_pid)
        for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$pport/" && break; sleep 0.1; done
        # Verify the route before measuring: the mock must answer through it, over HTTP and HTTPS.
        before=$(curl -s "http://127.0.0.1:$mport/_mock/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])')
        v1=$(curl -s "http://127.0.0.1:$pport/v1/chat/completions" -H 'content-type: application/json' \
            -H 'authorization: Bearer sk-bench-client' -H 'x-portkey-provider: openai' \
            -H "x-portkey-custom-host: http://127.0.0.1:$mport/v1" \
            -d '{"model":"gpt-large","messages":[{"role":"user","content":"hi"}]}' || true)
        v2=$(curl -s "http://127.0.0.1:$pport/v1/chat/completions" -H 'content-type: application/json' \
            -H 'authorization: Bearer sk-bench-client' -H 'x-portkey-provider: openai' \
            -H "x-portkey-custom-host: https://127.0.0.1:$sport/v1" \
            -d '{"model":"gpt-large","messages":[{"role":"user","content":"hi"}]}' || true)
        after=$(curl -s "http://127.0.0.1:$mport/_mock/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])')
        if [[ $v1 == *'"Hello from gpt-large"'* && $v2 == *'"Hello from gpt-large"'* && $after -gt $before ]]; then
            portkey_ok=1
            portkey_note="measured: @portkey-ai/gateway $portkey_version, one Node $(node -v) process"
        else
            portkey_note="started but its route to the mock failed: ${v1:0:200} ${v2:0:200}"
            tail -5 "$tmp/portkey.log"
        fi
    else
        portkey_note="not installed ($PORTKEY_DIR; scripts/deps.sh with TG_DEPS_BENCH=1 runs npm ci)"
    fi
    echo "== peers: Portkey $portkey_note"
fi

body() { # $1 model, $2 stream(0/1), $3 temperature
    python3 -c 'import json,sys; print(json.dumps({"model": sys.argv[1], "temperature": float(sys.argv[3]),
        "stream": sys.argv[2] == "1", "messages": [{"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is the capital of France?"}]}))' "$@"
}
results="$out/results.jsonl"
: >"$results"
# wrk_run SECTION NAME URL CONNS SECONDS BODY ROUND [HEADERS]
wrk_run() {
    local section=$1 name=$2 url=$3 c=$4 d=$5 round=$7
    BENCH_BODY=$6 BENCH_HEADERS=${8:-} wrk -t1 -c"$c" -d"${d}s" --timeout 10s --latency \
        -s bench/wrk_json.lua "$url" >"$tmp/wrk.out" 2>&1 || true
    local j
    j=$(sed -n 's/^WRKJSON //p' "$tmp/wrk.out")
    [ -n "$j" ] || { echo "bench: wrk failed for $name:"; cat "$tmp/wrk.out"; exit 1; }
    echo "{\"section\":\"$section\",\"name\":\"$name\",\"conns\":$c,\"round\":$round,\"wrk\":$j}" >>"$results"
    python3 - "$name" "$c" "$j" <<'PY'
import json, sys
j = json.loads(sys.argv[3]); rps = j["requests"] / (j["duration_us"] / 1e6)
errs = j["connect"] + j["read"] + j["write"] + j["status"] + j["timeout"]
print("  %-24s c=%-4s %9.0f req/s  p50 %7.3f ms  p99 %7.3f ms  errors %d" % (
    sys.argv[1], sys.argv[2], rps, j["p50"] / 1000, j["p99"] / 1000, errs))
PY
}
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
threads() { awk '/Threads/ {print $2}' "/proc/$1/status"; }

pass=$(body large 0 0.2)   # pinned last tier: a single candidate, pure pass-through
pass_tls=$(body large-tls 0 0.2)
upbody=$(body gpt-large 0 0.2)
hitbody=$(body large 0 0)
chat=/v1/chat/completions
direct="http://127.0.0.1:$mport$chat"
direct_tls="https://127.0.0.1:$sport$chat"
nginx_url="http://127.0.0.1:$nport$chat"
nginx_tls="http://127.0.0.1:$nsport$chat"
tg_url="http://127.0.0.1:$tport$chat"
tgc_url="http://127.0.0.1:$cport$chat"
pk_url="http://127.0.0.1:${pport:-0}$chat"

python3 - "$out/meta.json" "$QUICK" "$SECS" "$TLS_SECS" "$ROUNDS" "$STREAMS" "$SHARDS" "$DRIP" "$TOKENS" \
    "$STREAM_N" "$STREAM_C" "$MODES" "$portkey_ok" "$portkey_version" "$portkey_note" "$BUILD" <<'PY'
import json, os, platform, subprocess, sys, time
(dest, quick, secs, tls_secs, rounds, streams, shards, drip, tokens, sn, sc, modes, pk_ok, pk_ver,
 pk_note, build) = sys.argv[1:17]
def cmd(*a):
    try:
        p = subprocess.run(a, capture_output=True, text=True, timeout=10)
        return (p.stdout or p.stderr).strip().split("\n")[0]
    except Exception as e:
        return "unavailable (%s)" % e
cpu = "unknown"
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip(); break
git = cmd("git", "rev-parse", "--short", "HEAD")
dirty = cmd("git", "status", "--porcelain", "--untracked-files=no")
json.dump({
    "started_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": git + ("+dirty" if dirty else ""),
    "quick": quick == "1", "cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
    "loadavg_start": open("/proc/loadavg").read().split()[:3],
    "versions": {"tiergate": cmd(build + "/tiergate", "--version"), "nginx": cmd("nginx", "-v"),
                 "wrk": cmd("wrk", "-v"), "redis": cmd("redis-server", "--version"),
                 "node": cmd("node", "-v"), "openssl": cmd("openssl", "version"),
                 "portkey": pk_ver or None},
    "knobs": {"seconds": int(secs), "c1_seconds": int(tls_secs), "tls_seconds": int(tls_secs), "rounds": int(rounds),
              "streams": int(streams), "shards": int(shards), "drip_ms": int(drip),
              "stream_tokens": int(tokens), "stream_requests": int(sn), "stream_conns": int(sc),
              "stream_modes": modes.split()},
    "portkey": {"measured": pk_ok == "1", "note": pk_note},
}, open(dest, "w"), indent=1)
PY

# Fill the cache entry the hit runs ask for, and check that it hits.
curl -s -o /dev/null "$tgc_url" -H 'content-type: application/json' -d "$hitbody"
sleep 0.3
[[ $(curl -s -D - -o /dev/null "$tgc_url" -H 'content-type: application/json' -d "$hitbody") == *[Xx]-[Tt]iergate-[Cc]ache:\ hit* ]] \
    || { echo "bench: the cache-hit body did not hit"; exit 1; }
[[ $(curl -s "$tg_url" -H 'content-type: application/json' -d "$pass_tls") == *'"Hello from gpt-large"'* ]] \
    || { echo "bench: tiergate cannot reach the TLS mock"; tail -5 "$tmp/tg.log"; exit 1; }
[[ $(curl -s "$nginx_tls" -H 'content-type: application/json' -d "$upbody") == *'"Hello from gpt-large"'* ]] \
    || { echo "bench: nginx cannot reach the TLS mock"; cat "$tmp/nginx-error.log"; exit 1; }

echo "== warm-up"
wrk_run warmup tiergate "$tg_url" 16 2 "$pass" 0 >/dev/null
wrk_run warmup nginx "$nginx_url" 16 2 "$upbody" 0 >/dev/null
wrk_run warmup nginx-tls "$nginx_tls" 16 1 "$upbody" 0 >/dev/null
wrk_run warmup tiergate-tls "$tg_url" 16 1 "$pass_tls" 0 >/dev/null
if [ "$portkey_ok" = 1 ]; then
    wrk_run warmup portkey "$pk_url" 16 2 "$upbody" 0 "$(pk_hdrs "http://127.0.0.1:$mport/v1")" >/dev/null
    wrk_run warmup portkey-tls "$pk_url" 16 1 "$upbody" 0 "$(pk_hdrs "https://127.0.0.1:$sport/v1")" >/dev/null
fi
: >"$results"

pk_rss=0
stream_hwm=0 stream_threads=0 before_threads=0
if want peers; then
echo "== 1. peers: ${SECS}s per run (${C1_SECS}s at 1 connection), $ROUNDS interleaved rounds"
for round in $(seq "$ROUNDS"); do
    for c in 1 10 64; do
        d=$SECS
        if [ "$c" = 1 ]; then d=$C1_SECS; fi
        wrk_run peers direct "$direct" "$c" "$d" "$upbody" "$round"
        wrk_run peers nginx "$nginx_url" "$c" "$d" "$upbody" "$round"
        wrk_run peers tiergate "$tg_url" "$c" "$d" "$pass" "$round"
        wrk_run peers tiergate-hit "$tgc_url" "$c" "$d" "$hitbody" "$round"
        if [ "$portkey_ok" = 1 ]; then
            wrk_run peers portkey "$pk_url" "$c" "$d" "$upbody" "$round" "$(pk_hdrs "http://127.0.0.1:$mport/v1")"
        fi
    done
done
if [ "$portkey_ok" = 1 ]; then pk_rss=$(rss_kb "$pk_pid"); fi
fi
pass_rss=$(rss_kb "$tg_pid")

if want tls; then

echo "== 2. HTTPS upstream: ${TLS_SECS}s per run, $ROUNDS interleaved rounds"
for round in $(seq "$ROUNDS"); do
    for c in 10 64; do
        wrk_run tls direct "$direct_tls" "$c" "$TLS_SECS" "$upbody" "$round"
        wrk_run tls nginx "$nginx_tls" "$c" "$TLS_SECS" "$upbody" "$round"
        wrk_run tls tiergate "$tg_url" "$c" "$TLS_SECS" "$pass_tls" "$round"
        if [ "$portkey_ok" = 1 ]; then
            wrk_run tls portkey "$pk_url" "$c" "$TLS_SECS" "$upbody" "$round" "$(pk_hdrs "https://127.0.0.1:$sport/v1")"
        fi
    done
done

fi

if want streams; then
echo "== 3. streams: the mock drips $TOKENS chunks, one every ${DRIP} ms; $STREAM_N streams, $STREAM_C at once"
content=$(python3 -c 'import sys; print(" ".join("t%02d" % (i % 100) for i in range(int(sys.argv[1]))))' "$TOKENS")
curl -s "http://127.0.0.1:$mport/_mock/script" -d "{\"times\":-1,\"action\":{\"content\":\"$content \",\"chunk_chars\":4,\"drip_ms\":$DRIP}}" >/dev/null
# stream_run NAME MODE URL BODY [HEADER...]
stream_run() {
    local name=$1 mode=$2 url=$3 b=$4
    shift 4
    local hargs=()
    for h in "$@"; do hargs+=(-H "$h"); done
    "$BUILD/bench/stream_client" "$url" -c "$STREAM_C" -n "$STREAM_N" -b "$b" "${hargs[@]}" >"$tmp/sc.out" 2>&1 || true
    local j
    j=$(sed -n 's/^STREAMJSON //p' "$tmp/sc.out")
    [ -n "$j" ] || { echo "bench: stream_client failed for $name:"; cat "$tmp/sc.out"; exit 1; }
    echo "{\"section\":\"streams\",\"name\":\"$name\",\"mode\":\"$mode\",\"stream\":$j}" >>"$results"
    python3 - "$name" "$mode" "$j" <<'PY'
import json, sys
j = json.loads(sys.argv[3])
print("  %-24s %-8s TTFT p50 %8.2f ms  p99 %8.2f ms  stream %8.1f ms  %6.0f chunks/s  failed %d%s" % (
    sys.argv[1], sys.argv[2], j["ttft_ms"]["p50"], j["ttft_ms"]["p99"], j["total_ms"]["p50"],
    j["chunks_per_s"], j["errors"], " (%s)" % j["first_error"] if j["errors"] else ""))
PY
}
sbody_up=$(body gpt-large 1 0.2)
stream_run direct - "$direct" "$sbody_up"
stream_run nginx - "$nginx_url" "$sbody_up"
for mode in $MODES; do
    mh=()
    if [ "$mode" != default ]; then mh=("x-tiergate-stream-mode: $mode"); fi
    stream_run tiergate-live-last-tier "$mode" "$tg_url" "$(body large 1 0.2)" "${mh[@]}"
    stream_run tiergate-buffered-cheap "$mode" "$tg_url" "$(body cheap 1 0.2)" "${mh[@]}"
done
shit=$(body large 1 0)
curl -s -o /dev/null "$tgc_url" -H 'content-type: application/json' -d "$shit"
sleep 0.3
stream_run tiergate-cache-hit - "$tgc_url" "$shit"
if [ "$portkey_ok" = 1 ]; then
    stream_run portkey - "$pk_url" "$sbody_up" "x-portkey-provider: openai" "x-portkey-custom-host: http://127.0.0.1:$mport/v1"
fi
curl -s -X DELETE "http://127.0.0.1:$mport/_mock/script" >/dev/null
fi

if want own; then
echo "== 4. the gateway's own time (x-tiergate-overhead-ms, $OWN_N sequential requests each)"
python3 - "$tport" "$mport" "$out/own_time.json" "$OWN_N" <<'PY'
import http.client, json, sys, statistics
port, mport, dest, n = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
gw = http.client.HTTPConnection("127.0.0.1", port)
mock = http.client.HTTPConnection("127.0.0.1", mport)
def post(c, path, body):
    c.request("POST", path, json.dumps(body), {"content-type": "application/json"})
    r = c.getresponse(); r.read()
    assert r.status == 200, (path, r.status)
    return r
def own(model, hedge=False):
    vals = []
    for i in range(n):
        if hedge:
            post(mock, "/_mock/script", {"model": "gpt-cheap", "action": {"hedge": True}})
        r = post(gw, "/v1/chat/completions", {"model": model, "temperature": 0.2,
                 "messages": [{"role": "user", "content": "q%d" % i}]})
        vals.append(float(r.getheader("x-tiergate-overhead-ms")))
        if hedge:
            assert r.getheader("x-tiergate-escalations") == "1"
    vals.sort()
    return {"p50_ms": statistics.median(vals), "p90_ms": vals[int(len(vals) * 0.9)], "n": n}
res = {"pinned": own("large"), "pinned_tls": own("large-tls"), "first_tier_ok": own("cheap"),
       "one_escalation": own("cheap", True)}
json.dump(res, open(dest, "w"))
for k, v in res.items():
    print("  %-16s p50 %.3f ms  p90 %.3f ms" % (k, v["p50_ms"], v["p90_ms"]))
PY
fi

if want held; then

echo "== 5. $STREAMS concurrent streams held 2 s each by the mock (${HELD_SECS}s)"
curl -s "http://127.0.0.1:$mport/_mock/script" -d '{"times":-1,"action":{"hold_ms":2000,"chunk_chars":16}}' >/dev/null
before_threads=$(threads "$tg_pid")
wrk_run held tiergate "$tg_url" "$STREAMS" "$HELD_SECS" "$(body large 1 0.2)" 1
stream_hwm=$(hwm_kb "$tg_pid"); stream_threads=$(threads "$tg_pid")
wrk_run held nginx "$nginx_url" "$STREAMS" "$HELD_SECS" "$(body gpt-large 1 0.2)" 1
curl -s -X DELETE "http://127.0.0.1:$mport/_mock/script" >/dev/null
echo "  tiergate: peak RSS $((stream_hwm / 1024)) MB, threads $stream_threads (before: $before_threads)"
fi
python3 -c 'import json,sys; json.dump({"pass_rss_kb": int(sys.argv[1]), "portkey_rss_kb": int(sys.argv[2]),
    "held_hwm_kb": int(sys.argv[3]), "held_threads": int(sys.argv[4]), "threads_before": int(sys.argv[5]),
    "loadavg_end": open("/proc/loadavg").read().split()[:3]}, open(sys.argv[6], "w"))' \
    "$pass_rss" "$pk_rss" "$stream_hwm" "$stream_threads" "$before_threads" "$out/process.json"

if want router && [ -x "$BUILD/bench/router_bench" ]; then
    echo "== 6. router"
    "$BUILD/bench/router_bench" | tee "$out/router.txt"
fi

if want cost && [ "$COST" = 1 ] && command -v valgrind >/dev/null; then
    echo "== 7. instructions per pass-through request (callgrind, $COST_N requests)"
    CALLGRIND=1 TOP=400 bench/cost_per_request.sh "$BUILD" "$COST_N" >"$out/cost.txt"
    echo "  (callgrind, $COST_N requests)" >>"$out/cost.txt"
    head -1 "$out/cost.txt"
    if command -v redis-server >/dev/null; then
        # Issue 17: a gateway key with rpm and usd_per_day, checked in process
        # or shared through Redis (two scripts per request here: admit, reserve).
        for m in local shared; do
            printf '  limits %-6s ' "$m:"
            LIMITS=$m CALLGRIND=1 TOP=0 bench/cost_per_request.sh "$BUILD" "$COST_N" |
                tee "$out/limits_$m.txt" | sed -n 1p  # (head would SIGPIPE tee: pipefail)
        done
    fi
fi

if want semantic; then
    echo "== 8. the semantic cache"
    if [ -x "$BUILD/bench/sem_bench" ]; then
        echo "  the index alone (bench/semantic.sh$([ "$QUICK" = 1 ] && echo " --quick"): bench/semantic.md explains the columns)"
        bench/semantic.sh "$BUILD" $([ "$QUICK" = 1 ] && echo --quick) | sed 's/^/  /'
    else
        echo "  $BUILD/bench/sem_bench missing: index rows skipped (make bench builds it)"
    fi
    emport=$(free_port)
    gen_config "$emport" 1 | python3 -c '
import json, sys
c = json.load(sys.stdin)
c["models"]["emb"] = dict(c["models"]["mini"], upstream_model="mock-embed", kind="embedding",
                          input_per_mtok=0.02, output_per_mtok=0)
c["cache"] = {"enabled": True, "ttl_s": 3600,
              "semantic": {"enabled": True, "model": "emb", "max_entries": 200000}}
print(json.dumps(c))' >"$tmp/tg-sem.json"
    BENCH_KEY=sk-bench "$BUILD/tiergate" -c "$tmp/tg-sem.json" >"$tmp/tgs.log" 2>&1 & tgs_pid=$!; pids+=($tgs_pid)
    wait_line "$tmp/tgs.log" listening
    sleep 0.5
    echo "  through the gateway: $SEM_N stored answers in one tenant, then $SEM_M requests of each kind"
    rss0=$(rss_kb "$tgs_pid")
    python3 bench/semantic_gateway.py "$emport" "$SEM_N" "$SEM_M" "$out/semantic_gateway.json"
    echo "  gateway RSS $((rss0 / 1024)) MB before the fill, $(($(rss_kb "$tgs_pid") / 1024)) MB after"
    kill "$tgs_pid" 2>/dev/null || true
fi

# Stop the daemons before the report so its plots do not share the CPU with them.
cleanup
trap - EXIT INT TERM
if want batch; then
    python3 bench/batch_bench.py "$BUILD"
fi
python3 bench/report.py "$out"
