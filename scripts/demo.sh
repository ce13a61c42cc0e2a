#!/usr/bin/env bash
# make demo: the whole gateway offline. Starts the mock OpenAI upstream, a
# private redis-server and tiergate on free ports, sends a few requests that
# show routing, caching and escalation, prints `tiergate stats`, then keeps
# serving until Ctrl-C (or exits at once when not on a terminal, e.g. in CI).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build/release}
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_line() { for _ in $(seq 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done; cat "$1"; return 1; }

"$BUILD/mock_upstream" --port 0 >"$dir/mock.log" 2>&1 & pids+=($!)
wait_line "$dir/mock.log" listening
mock_port=$(sed -n 's/.*:\([0-9]*\)$/\1/p' "$dir/mock.log")
redis_port=$(free_port)
redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no --dir "$dir" >"$dir/redis.log" 2>&1 & pids+=($!)
port=${DEMO_PORT:-$(free_port)}
sed -e "s/@MOCK_PORT@/$mock_port/g" -e "s/@REDIS_PORT@/$redis_port/g" -e "s/@PORT@/$port/g" \
    config/demo.json.in >"$dir/demo.json"
for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
MOCK_KEY=sk-demo-not-a-real-key "$BUILD/tiergate" -c "$dir/demo.json" >"$dir/tiergate.log" 2>&1 & pids+=($!)
wait_line "$dir/tiergate.log" listening
url="http://127.0.0.1:$port"
say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
ask() { # model, prompt -> prints the tiergate headers and the answer
    curl -sS -D "$dir/h" "$url/v1/chat/completions" -H 'content-type: application/json' \
        -d "{\"model\":\"$1\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"$2\"}]}" -o "$dir/b"
    grep -i '^x-tiergate-\(route\|tier\|model\|cache\|escalations\|cost\)' "$dir/h" | tr -d '\r' | sed 's/^/  /'
    python3 -c 'import json,sys; print("  answer:", json.load(open(sys.argv[1]))["choices"][0]["message"]["content"][:80])' "$dir/b"
}
say "tiergate demo on $url (mock upstream :$mock_port, redis :$redis_port)"
say "1. a simple question, model=auto: the router picks the cheap tier"
ask auto "Is this message spam? Reply yes or no: WIN A FREE CRUISE NOW"
say "2. the same question again: answered from the Redis cache, cost 0"
ask auto "Is this message spam? Reply yes or no: WIN A FREE CRUISE NOW"
say "3. a hard design question, model=auto: the router starts higher"
ask auto "Design a multi-region active-active database architecture for a payments system, analyze the consistency trade-offs step by step and compare at least three approaches."
say "4. the cheap model hedges: the answer fails validation and escalates"
curl -sS "http://127.0.0.1:$mock_port/_mock/script" -d '{"model":"gpt-4o-mini","action":{"hedge":true}}' >/dev/null
ask cheap "What year did the Berlin Wall fall?"
say "5. tiergate stats"
"$BUILD/tiergate" stats "$url"
if [ -t 0 ]; then
    say "The gateway keeps running at $url (Ctrl-C to stop). Try:"
    echo "  curl -s $url/v1/chat/completions -H 'content-type: application/json' -d '{\"model\":\"auto\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}'"
    echo "  curl -s $url/metrics | grep tiergate_"
    wait "${pids[2]}"
fi
