#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# make soak: SOAK_SECONDS (default 600) of mixed load with injected faults and
# a Redis restart against the release build; samples tiergate's RSS and open
# fds every 5 s, prints a summary and appends it to bench/RESULTS.md ("## Soak").
# Not part of CI. Knobs: SOAK_SECONDS, SOAK_CONCURRENCY (8).
#   scripts/soak.sh [BUILD]      (default build/release)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build/release}
[ -x "$BUILD/tiergate" ] && [ -x "$BUILD/mock_upstream" ] || { echo "soak: build $BUILD first (make all)" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "soak: redis-server missing: run make deps" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
export TG_BUILD="$PWD/$BUILD"
exec python3 scripts/soak.py
