#!/usr/bin/env bash
# Runs tiergate's tests against a build directory (default build/asan):
#   scripts/test.sh BUILD [unit|integration|e2e|all]
# Unit programs and the integration runner each print "N passed, N failed";
# this script adds them up, prints the total, and exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build/asan}
WHAT=${2:-all}
export TG_BUILD="$PWD/$BUILD"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

passed=0
failed=0
add_counts() { # parses the last "N passed, N failed" line of $1
    local line p f
    line=$(grep -E '[0-9]+ passed, [0-9]+ failed' "$1" | tail -n 1)
    if [ -z "$line" ]; then
        echo "  (no summary line: counted as one failure)"
        failed=$((failed + 1))
        return
    fi
    p=$(sed -E 's/.* ([0-9]+) passed.*/\1/' <<<"$line")
    f=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$line")
    passed=$((passed + p))
    failed=$((failed + f))
}

log=$(mktemp)
trap 'rm -f "$log"' EXIT

if [ "$WHAT" = all ] || [ "$WHAT" = unit ]; then
    echo "== unit tests ($BUILD)"
    for t in "$BUILD"/tests/test_*; do
        [ -x "$t" ] || continue
        if "$t" >"$log" 2>&1; then rc=0; else rc=$?; fi
        grep -E 'passed, [0-9]+ failed|FAIL|ERROR|runtime error' "$log" | sed 's/^/  /'
        add_counts "$log"
        if [ $rc -ne 0 ] && ! grep -qE '[1-9][0-9]* failed' "$log"; then
            echo "  $t exited $rc"; tail -n 20 "$log"; failed=$((failed + 1))
        fi
    done
fi

if [ "$WHAT" = all ] || [ "$WHAT" = integration ] || [ "$WHAT" = e2e ]; then
    command -v redis-server >/dev/null || { echo "redis-server missing: run make deps" >&2; exit 1; }
    echo "== integration tests (real redis-server, mock upstream, $BUILD/tiergate)"
    pattern=""
    [ "$WHAT" = e2e ] && pattern=e2e
    python3 tests/integration/run.py $pattern 2>&1 | tee "$log"
    add_counts "$log"
fi

if [ "$WHAT" = all ]; then
    echo "== docker-compose.yml"
    if docker-compose -f docker-compose.yml config -q >"$log" 2>&1; then
        echo "  docker-compose config -q: valid"
        passed=$((passed + 1))
    else
        cat "$log"; echo "  docker-compose config -q: INVALID"
        failed=$((failed + 1))
    fi
fi

echo "TOTAL: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
