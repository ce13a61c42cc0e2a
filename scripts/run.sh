#!/usr/bin/env bash
# make run: start tiergate with config/tiergate.json (or $TIERGATE_CONFIG).
# If the configured Redis does not answer and it is on this machine, a
# private redis-server is started for the session and stopped on exit.
# Provider keys come from the environment (OPENAI_API_KEY for the default
# config); without them the gateway still starts and says what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build/release}
CONFIG=${TIERGATE_CONFIG:-config/tiergate.json}
BIN="$BUILD/tiergate"

"$BIN" --check-config -c "$CONFIG"

redis_url=${TIERGATE_REDIS_URL:-$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("redis",{}).get("url","redis://127.0.0.1:6379/0"))' "$CONFIG")}
hostport=$(python3 - "$redis_url" <<'PY'
import sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
print("%s %d" % (u.hostname or "127.0.0.1", u.port or 6379) if u.scheme == "redis" else "")
PY
)
redis_pid=""
cleanup() { [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null || true; }
trap cleanup EXIT
if [ -n "$hostport" ]; then
    set -- $hostport
    if ! redis-cli -h "$1" -p "$2" ping >/dev/null 2>&1; then
        case "$1" in
        127.0.0.1|localhost|::1)
            # Absolute paths: redis-server changes into --dir before opening --logfile.
            rundir="$PWD/build/run"
            mkdir -p "$rundir"
            echo "run: no Redis at $1:$2; starting a private redis-server there (stopped on exit)"
            redis-server --bind 127.0.0.1 --port "$2" --save '' --appendonly no --dir "$rundir" \
                --logfile "$rundir/redis.log" &
            redis_pid=$!
            for _ in $(seq 50); do redis-cli -p "$2" ping >/dev/null 2>&1 && break; sleep 0.1; done
            if ! redis-cli -p "$2" ping >/dev/null 2>&1; then
                echo "run: redis-server did not start (see $rundir/redis.log); serving without cache" >&2
            fi
            ;;
        *) echo "run: Redis at $1:$2 does not answer; tiergate serves without cache until it does" ;;
        esac
    fi
fi
echo "run: tiergate -c $CONFIG (Ctrl-C to stop)"
"$BIN" -c "$CONFIG" &
tg=$!
trap 'kill -TERM $tg 2>/dev/null; wait $tg; cleanup' INT TERM
wait $tg
