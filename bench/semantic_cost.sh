#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/semantic_cost.sh BUILD [N] [FILL] - instructions per request (callgrind,
# user space) of an exact hit, a semantic hit and a semantic miss, with
# FILL stored answers (default 1000) in one tenant's semantic index: 1 shard,
# a real redis-server, the mock's 256-dimension embeddings, N sequential
# requests of each kind (default 200) on one keep-alive connection. Counts,
# not latencies: repeatable on a busy machine (bench/RESULTS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build/release}
N=${2:-200}
FILL=${3:-1000}
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$tmp"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
"$BUILD/mock_upstream" --port 0 --no-record >"$tmp/mock.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do grep -q listening "$tmp/mock.log" && break; sleep 0.05; done
mport=$(sed -n 's/.*:\([0-9]*\)$/\1/p' "$tmp/mock.log")
rport=$(free_port)
redis-server --bind 127.0.0.1 --port "$rport" --save '' --appendonly no --dir "$tmp" >"$tmp/redis.log" 2>&1 & pids+=($!)
for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
m() { echo "\"base_url\":\"http://127.0.0.1:$mport/v1\",\"api_key_env\":\"K\",\"upstream_model\":\"$1\""; }
cat >"$tmp/tg.json" <<JSON
{"listen":"127.0.0.1:0","shards":1,"log":{"decisions":"off"},
 "redis":{"url":"redis://127.0.0.1:$rport/0","lookup_timeout_ms":2000,"store_timeout_ms":5000},
 "cache":{"semantic":{"enabled":true,"model":"emb","timeout_ms":10000}},
 "models":{"mini":{$(m gpt-cheap)},"large":{$(m gpt-large)},"emb":{$(m mock-embed),"kind":"embedding"}},
 "tiers":{"cheap":["mini"],"medium":["large"],"expensive":["large"]}}
JSON
K=x valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" --instr-atstart=no \
    "$BUILD/tiergate" -c "$tmp/tg.json" >"$tmp/tg.log" 2>&1 & tg=$!; pids+=($tg)
for _ in $(seq 400); do grep -q listening "$tmp/tg.log" && break; sleep 0.05; done
port=$(grep -o 'listening on [^ ]*' "$tmp/tg.log" | sed 's/.*://')
sleep 1
python3 - "$port" "$tg" "$N" "$FILL" <<'PY'
import http.client, json, random, subprocess, sys, time
port, tg, n, fill = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
vocab = ["w%04d" % i for i in range(8000)]
rng = random.Random(1)
def prompt():
    return " ".join(rng.choice(vocab) for _ in range(14))
def para(t):
    w = t.split()
    return ", ".join(w[1:] + w[:1]).capitalize() + "?"
def ask(t):
    c.request("POST", "/v1/chat/completions", json.dumps({"model": "cheap", "temperature": 0,
              "messages": [{"role": "user", "content": t}]}), {"content-type": "application/json"})
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
    return r.getheader("x-tiergate-cache")
stored = [prompt() for _ in range(fill)]
for s in stored:
    ask(s)
time.sleep(1)
for name, make, want in (("exact hit", lambda i: stored[i % fill], "hit"),
                         ("semantic hit", lambda i: para(stored[i % fill]), "semantic"),
                         ("semantic miss", lambda i: prompt(), "miss")):
    for i in range(20):
        ask(make(n + i))  # warm
    subprocess.run(["callgrind_control", "-z", tg], capture_output=True)
    subprocess.run(["callgrind_control", "-i", "on", tg], capture_output=True)
    wrong = sum(ask(make(i)) != want for i in range(n))
    subprocess.run(["callgrind_control", "-i", "off", tg], capture_output=True)
    subprocess.run(["callgrind_control", "-d", tg], capture_output=True)
    time.sleep(1)
    if wrong:
        print("  (%d of %d %s requests were not %s)" % (wrong, n, name, want))
PY
sleep 1
kinds=("exact hit" "semantic hit" "semantic miss")
for i in 1 2 3; do # one dump per kind, in the order above
    ir=$(callgrind_annotate "$tmp/cg.out.$i" 2>&1 | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1; exit}' || true)
    printf '%-14s %7d instructions per request (callgrind, %d requests, %d stored answers)\n' \
        "${kinds[$((i - 1))]}" $((ir / N)) "$N" "$FILL"
done
