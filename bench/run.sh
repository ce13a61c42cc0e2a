#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# make bench: measures tiergate side by side with nginx proxy_pass and the
# upstream (the mock) hit directly, all in one run on this machine:
#   1. pass-through throughput at 64 connections and latency at 1 and 64
#   2. cache hits against the same nginx baseline
#   3. an answer accepted on the first (non-final) tier vs a pinned last-tier
#      pass-through, and the gateway's own time on a one-escalation request
#   4. 5,000 concurrent streams the mock holds 2 s each: errors, peak RSS, threads
#   5. the router alone on 1 KB and 32 KB prompts
# Results: bench/out/results.json and a Markdown table on stdout (paste into
# bench/RESULTS.md). Knobs: BENCH_SECONDS (10), BENCH_STREAMS (5000), BENCH_SHARDS (2),
# BENCH_ROUNDS (3): section 1 runs the three side by side that many times,
# interleaved, and the summary takes the median of each figure (one run on a
# shared 2-core machine swings by 10-20%).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build/release}
SECS=${BENCH_SECONDS:-10}
STREAMS=${BENCH_STREAMS:-5000}
SHARDS=${BENCH_SHARDS:-2}
ROUNDS=${BENCH_ROUNDS:-3}
out=bench/out
mkdir -p "$out"
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT INT TERM
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
command -v wrk >/dev/null && command -v nginx >/dev/null || { echo "bench: wrk and nginx are required (make deps with TG_DEPS_BENCH=1)"; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_line() { for _ in $(seq 200); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done; cat "$1"; return 1; }

# --- the upstream: the mock, recording off -----------------------------------
"$BUILD/mock_upstream" --port 0 --no-record --threads 1 >"$tmp/mock.log" 2>&1 & pids+=($!)
wait_line "$tmp/mock.log" listening
mport=$(sed -n 's/.*:\([0-9]*\)$/\1/p' "$tmp/mock.log")
rport=$(free_port)
redis-server --bind 127.0.0.1 --port "$rport" --save '' --appendonly no --dir "$tmp" >"$tmp/redis.log" 2>&1 & pids+=($!)

# --- nginx proxy_pass, keep-alive upstream, same worker count as our shards --
nport=$(free_port)
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
    server {
        listen 127.0.0.1:$nport reuseport;
        location / {
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
}
NGX
nginx -c "$tmp/nginx.conf" -p "$tmp" >"$tmp/nginx.log" 2>&1 & pids+=($!)

# --- tiergate: one config without cache (pass-through), one with -------------
gen_config() { # $1 port, $2 cache enabled
    python3 - "$mport" "$rport" "$1" "$2" "$SHARDS" <<'PY'
import json, sys
mport, rport, port, cache, shards = sys.argv[1:6]
def model(name, i, o):
    return {"base_url": "http://127.0.0.1:%s/v1" % mport, "upstream_model": name,
            "api_key_env": "BENCH_KEY", "input_per_mtok": i, "output_per_mtok": o}
print(json.dumps({
    "listen": "127.0.0.1:%s" % port, "shards": int(shards),
    "redis": {"url": "redis://127.0.0.1:%s/0" % rport},
    "log": {"decisions": "off", "level": "info"},
    "limits": {"max_connections": 30000},
    "cache": {"enabled": cache == "1"},
    "models": {"mini": model("gpt-cheap", 0.15, 0.6), "mid": model("gpt-mid", 0.4, 1.6),
               "large": model("gpt-large", 2.5, 10)},
    "tiers": {"cheap": ["mini"], "medium": ["mid"], "expensive": ["large"]}}))
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

body() { # $1 model, $2 stream(0/1), $3 temperature
    python3 -c 'import json,sys; print(json.dumps({"model": sys.argv[1], "temperature": float(sys.argv[3]),
        "stream": sys.argv[2] == "1", "messages": [{"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is the capital of France?"}]}))' "$@"
}
results="$out/results.jsonl"
: >"$results"
# wrk_run NAME URL CONNS THREADS SECONDS BODY
wrk_run() {
    local name=$1 url=$2 c=$3 t=$4 d=$5
    BENCH_BODY=$6 wrk -t"$t" -c"$c" -d"${d}s" --timeout 10s --latency -s bench/wrk_json.lua "$url" >"$tmp/wrk.out" 2>&1 || true
    local j
    j=$(sed -n 's/^WRKJSON //p' "$tmp/wrk.out")
    [ -n "$j" ] || { echo "bench: wrk failed for $name:"; cat "$tmp/wrk.out"; exit 1; }
    echo "{\"name\":\"$name\",\"conns\":$c,\"wrk\":$j}" >>"$results"
    python3 - "$name" "$c" "$j" <<'PY'
import json, sys
j = json.loads(sys.argv[3]); rps = j["requests"] / (j["duration_us"] / 1e6)
errs = j["connect"] + j["read"] + j["write"] + j["status"] + j["timeout"]
print("  %-26s c=%-4s %9.0f req/s  p50 %7.3f ms  p99 %7.3f ms  errors %d" % (
    sys.argv[1], sys.argv[2], rps, j["p50"] / 1000, j["p99"] / 1000, errs))
PY
}
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
threads() { awk '/Threads/ {print $2}' "/proc/$1/status"; }

pass=$(body large 0 0.2)   # pinned last tier: a single candidate, pure pass-through
direct="http://127.0.0.1:$mport/v1/chat/completions"
nginx_url="http://127.0.0.1:$nport/v1/chat/completions"
tg_url="http://127.0.0.1:$tport/v1/chat/completions"
tgc_url="http://127.0.0.1:$cport/v1/chat/completions"
upbody=$(body gpt-large 0 0.2)

echo "== warm-up"
wrk_run warmup-tiergate "$tg_url" 16 1 2 "$pass" >/dev/null
wrk_run warmup-nginx "$nginx_url" 16 1 2 "$upbody" >/dev/null
: >"$results"
echo "== 1. pass-through (${SECS}s each, the three side by side, $ROUNDS rounds)"
for round in $(seq "$ROUNDS"); do
    for c in 1 64; do
        wrk_run "direct" "$direct" "$c" 1 "$SECS" "$upbody"
        wrk_run "nginx" "$nginx_url" "$c" 1 "$SECS" "$upbody"
        wrk_run "tiergate" "$tg_url" "$c" 1 "$SECS" "$pass"
    done
done
pass_rss=$(rss_kb "$tg_pid")

echo "== 2. cache hits (tiergate with Redis; the body is cached once, then every request hits)"
hitbody=$(body large 0 0)
curl -s -o /dev/null "$tgc_url" -H 'content-type: application/json' -H 'authorization: Bearer sk-bench-client' -d "$hitbody"
sleep 0.3
curl -s -D - -o /dev/null "$tgc_url" -H 'content-type: application/json' -H 'authorization: Bearer sk-bench-client' -d "$hitbody" | grep -qi 'x-tiergate-cache: hit' \
    || { echo "bench: the cache-hit body did not hit"; exit 1; }
for c in 1 64; do
    wrk_run "nginx-for-hits" "$nginx_url" "$c" 1 "$SECS" "$upbody"
    wrk_run "tiergate-cache-hit" "$tgc_url" "$c" 1 "$SECS" "$hitbody"
done

echo "== 3. cascade: first tier accepted vs pinned pass-through; own time on one escalation"
wrk_run "tiergate-pinned-last-tier" "$tg_url" 1 1 "$SECS" "$pass"
wrk_run "tiergate-cheap-accepted" "$tg_url" 1 1 "$SECS" "$(body cheap 0 0.2)"
python3 - "$tg_url" "$mport" "$out/escalation.json" <<'PY'
import json, sys, urllib.request, statistics
url, mport, dest = sys.argv[1], sys.argv[2], sys.argv[3]
def post(u, body, headers=None):
    req = urllib.request.Request(u, data=json.dumps(body).encode(), headers=dict({"content-type": "application/json"}, **(headers or {})))
    with urllib.request.urlopen(req) as r:
        return r.headers, r.read()
def own(model, hedge, n=400):
    vals = []
    for i in range(n):
        if hedge:
            post("http://127.0.0.1:%s/_mock/script" % mport, {"model": "gpt-cheap", "action": {"hedge": True}})
        h, _ = post(url, {"model": model, "temperature": 0.2, "messages": [{"role": "user", "content": "q%d" % i}]})
        vals.append(float(h["x-tiergate-overhead-ms"]))
        if hedge:
            assert h["x-tiergate-escalations"] == "1", h["x-tiergate-escalations"]
    vals.sort()
    return {"p50_ms": statistics.median(vals), "p90_ms": vals[int(len(vals) * 0.9)], "n": n}
res = {"pinned": own("large", False), "first_tier_ok": own("cheap", False), "one_escalation": own("cheap", True)}
json.dump(res, open(dest, "w"))
for k, v in res.items():
    print("  gateway own time %-16s p50 %.3f ms  p90 %.3f ms  (x-tiergate-overhead-ms, n=%d)" % (k, v["p50_ms"], v["p90_ms"], v["n"]))
PY

echo "== 4. $STREAMS concurrent streams held 2 s each by the mock (${SECS}s)"
curl -s "http://127.0.0.1:$mport/_mock/script" -d '{"times":-1,"action":{"hold_ms":2000,"chunk_chars":16}}' >/dev/null
before_threads=$(threads "$tg_pid")
wrk_run "tiergate-streams" "$tg_url" "$STREAMS" 2 "$SECS" "$(body large 1 0.2)"
stream_hwm=$(hwm_kb "$tg_pid"); stream_rss=$(rss_kb "$tg_pid"); stream_threads=$(threads "$tg_pid")
wrk_run "nginx-streams" "$nginx_url" "$STREAMS" 2 "$SECS" "$(body gpt-large 1 0.2)"
curl -s -X DELETE "http://127.0.0.1:$mport/_mock/script" >/dev/null
echo "  tiergate: peak RSS $((stream_hwm / 1024)) MB, RSS after $((stream_rss / 1024)) MB, threads $stream_threads (before: $before_threads)"

echo "== 5. router"
if [ -x "$BUILD/bench/router_bench" ]; then "$BUILD/bench/router_bench" | tee "$out/router.txt"; fi

python3 - "$results" "$out/escalation.json" "$pass_rss" "$stream_hwm" "$stream_threads" "$SECS" "$STREAMS" "$SHARDS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
esc = json.load(open(sys.argv[2]))
pass_rss, hwm, thr, secs, streams, shards = (int(x) for x in sys.argv[3:9])
def get(name, c):
    """The run's figures; over several rounds, the median of each one."""
    m = [r["wrk"] for r in rows if r["name"] == name and r["conns"] == c]
    if len(m) == 1:
        return m[0]
    med = lambda xs: sorted(xs)[len(xs) // 2]
    out = {k: med([w[k] for w in m]) for k in m[0] if k != "duration_us"}
    out["duration_us"] = 1e6  # requests now holds the median rate (req/s)
    out["requests"] = med([w["requests"] / (w["duration_us"] / 1e6) for w in m])
    return out
rps = lambda w: w["requests"] / (w["duration_us"] / 1e6)
errs = lambda w: w["connect"] + w["read"] + w["write"] + w["status"] + w["timeout"]
d1, n1, t1 = get("direct", 1), get("nginx", 1), get("tiergate", 1)
d64, n64, t64 = get("direct", 64), get("nginx", 64), get("tiergate", 64)
nh1, h1 = get("nginx-for-hits", 1), get("tiergate-cache-hit", 1)
nh64, h64 = get("nginx-for-hits", 64), get("tiergate-cache-hit", 64)
st, ns = get("tiergate-streams", streams), get("nginx-streams", streams)
def rounds(name, c):
    return [r["wrk"] for r in rows if r["name"] == name and r["conns"] == c]
# Paired per round (the three ran back to back), then the median round.
med = lambda xs: sorted(xs)[len(xs) // 2]
rps_ratios = [rps(t) / rps(n) for t, n in zip(rounds("tiergate", 64), rounds("nginx", 64))]
lat_ratios = [(t["p50"] - d["p50"]) / max(n["p50"] - d["p50"], 1)
              for d, n, t in zip(rounds("direct", 1), rounds("nginx", 1), rounds("tiergate", 1))]
out = {
    "rounds": len(rps_ratios),
    "passthrough_rps_ratio_rounds": rps_ratios,
    "added_p50_ratio_c1_rounds": lat_ratios,
    "passthrough_rps_ratio_vs_nginx": med(rps_ratios),
    "added_p50_ms_c1": {"tiergate": (t1["p50"] - d1["p50"]) / 1000, "nginx": (n1["p50"] - d1["p50"]) / 1000},
    "added_p99_ms_c1": {"tiergate": (t1["p99"] - d1["p99"]) / 1000, "nginx": (n1["p99"] - d1["p99"]) / 1000},
    "added_p50_ms_c64": {"tiergate": (t64["p50"] - d64["p50"]) / 1000, "nginx": (n64["p50"] - d64["p50"]) / 1000},
    "added_p99_ms_c64": {"tiergate": (t64["p99"] - d64["p99"]) / 1000, "nginx": (n64["p99"] - d64["p99"]) / 1000},
    "cache_hit_rps_ratio_vs_nginx": rps(h64) / rps(nh64),
    "cache_hit_p50_ms_c1": {"tiergate": h1["p50"] / 1000, "nginx": nh1["p50"] / 1000},
    "rss_mb_after_passthrough": pass_rss / 1024,
    "streams": {"n": streams, "tiergate_errors": errs(st), "tiergate_completed": st["requests"],
                "peak_rss_mb": hwm / 1024, "threads": thr, "nginx_errors": errs(ns), "nginx_completed": ns["requests"]},
    "escalation_own_ms": esc,
}
json.dump(out, open("bench/out/summary.json", "w"), indent=1)
a = out
print("\n| figure | tiergate | nginx | target |\n|---|---|---|---|")
print("| pass-through req/s at 64 conns (median of %d rounds) | %.0f | %.0f | ratio %.2f (≥ 0.8); per round %s |" % (
    a["rounds"], rps(t64), rps(n64), a["passthrough_rps_ratio_vs_nginx"], " ".join("%.2f" % x for x in rps_ratios)))
print("| p50 added over direct, 1 conn | %.3f ms | %.3f ms | ratio %.2f (≤ 1.5); per round %s |" % (
    a["added_p50_ms_c1"]["tiergate"], a["added_p50_ms_c1"]["nginx"], med(lat_ratios), " ".join("%.2f" % x for x in lat_ratios)))
print("| p99 added over direct, 1 conn | %.3f ms | %.3f ms | |" % (a["added_p99_ms_c1"]["tiergate"], a["added_p99_ms_c1"]["nginx"]))
print("| p50 added over direct, 64 conns | %.3f ms | %.3f ms | |" % (a["added_p50_ms_c64"]["tiergate"], a["added_p50_ms_c64"]["nginx"]))
print("| p99 added over direct, 64 conns | %.3f ms | %.3f ms | |" % (a["added_p99_ms_c64"]["tiergate"], a["added_p99_ms_c64"]["nginx"]))
print("| cache-hit req/s at 64 conns | %.0f | %.0f (proxy) | ratio %.2f (≥ 1.0) |" % (rps(h64), rps(nh64), a["cache_hit_rps_ratio_vs_nginx"]))
print("| p50 at 1 conn, hit vs nginx proxy | %.3f ms | %.3f ms | ratio %.2f (≤ 1.5) |" % (a["cache_hit_p50_ms_c1"]["tiergate"], a["cache_hit_p50_ms_c1"]["nginx"], a["cache_hit_p50_ms_c1"]["tiergate"] / a["cache_hit_p50_ms_c1"]["nginx"]))
print("| RSS after pass-through runs | %.1f MB | | |" % a["rss_mb_after_passthrough"])
s = a["streams"]
print("| %d streams held 2 s: errors / completed | %d / %d | %d / %d | 0 errors |" % (s["n"], s["tiergate_errors"], s["tiergate_completed"], s["nginx_errors"], s["nginx_completed"]))
print("| %d streams: peak RSS, threads | %.1f MB, %d threads | | < 300 MB |" % (s["n"], s["peak_rss_mb"], s["threads"]))
for k, v in esc.items():
    print("| gateway own time, %s (p50 / p90) | %.3f / %.3f ms | | |" % (k, v["p50_ms"], v["p90_ms"]))
PY
