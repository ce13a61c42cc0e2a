#!/usr/bin/env bash
# Runs tiergate's tests against a build directory (default build/asan):
#   scripts/test.sh BUILD [unit|integration|e2e|fuzz|all]
# Unit programs and the integration runner each print "N passed, N failed";
# the fuzz section counts one pass per libFuzzer harness that replays its
# seed corpus cleanly. This script adds them up, prints the total, and exits
# non-zero on any failure.
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

# The release build differs from the sanitizer build in one way that matters:
# it gives jansson a per-thread block cache (src/alloc.c), which ASan builds
# leave out. Run the core and SDK suites against it too, so a misuse of that
# allocator (memory from json_dumps handed to free, say) fails here, not in
# production.
if [ "$WHAT" = all ] && [ -x build/release/tiergate ]; then
    echo "== release build smoke (build/release: core and openai SDK suites)"
    TG_BUILD="$PWD/build/release" python3 tests/integration/run.py core 2>&1 | tee "$log"
    add_counts "$log"
    TG_BUILD="$PWD/build/release" python3 tests/integration/run.py e2e 2>&1 | tee "$log"
    add_counts "$log"
fi

if [ "$WHAT" = all ] || [ "$WHAT" = fuzz ]; then
    # Each harness runs once over its seed corpus (-runs=0 replays and exits):
    # every crash ever found stays a regression test.
    echo "== fuzz corpus replay (tests/fuzz/corpus/, clang libFuzzer + ASan + UBSan)"
    if ! command -v "${FUZZ_CC:-clang}" >/dev/null; then
        echo "  ${FUZZ_CC:-clang} not found: cannot build the fuzz harnesses (make deps installs clang and libclang-rt-14-dev)"
        failed=$((failed + 1))
    elif ! make --no-print-directory fuzz-bins >"$log" 2>&1; then
        tail -n 30 "$log" | sed 's/^/  /'
        echo "  building the fuzz harnesses failed"
        failed=$((failed + 1))
    else
        for src in tests/fuzz/fuzz_*.c; do
            name=$(basename "$src" .c)
            corpus=tests/fuzz/corpus/$name
            n=$(find "$corpus" -type f 2>/dev/null | wc -l)
            if [ "$n" -eq 0 ]; then
                echo "  $name: no seed corpus in $corpus: FAILED"
                failed=$((failed + 1))
            elif "build/fuzz/$name" -runs=0 -artifact_prefix="build/fuzz/replay-$name-" "$corpus" \
                >"$log" 2>&1; then
                echo "  $name: $n inputs replayed, passed"
                passed=$((passed + 1))
            else
                tail -n 30 "$log" | sed 's/^/    /'
                echo "  $name: replay FAILED"
                failed=$((failed + 1))
            fi
        done
    fi
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
