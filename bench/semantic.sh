#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The semantic cache's index under load (bench/sem_bench.c): lookup latency
# at 10k and 100k entries (256 and 1536 dims), dense data, searches during
# inserts, bytes and RSS per entry, int8 vs float32. Prints a Markdown table
# and keeps it in bench/out/semantic.txt. No network, no Redis: separate
# from bench/run.sh's wrk sections, which may call this script.
#   bench/semantic.sh [BUILD] [--quick] [--1m]     (BUILD: build/release)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build/release}
shift || true
[ -x "$BUILD/bench/sem_bench" ] || { echo "semantic bench: $BUILD/bench/sem_bench missing (make bench-semantic builds it)"; exit 1; }
mkdir -p bench/out
{
    echo "# $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), $BUILD"
    "$BUILD/bench/sem_bench" "$@"
} | tee bench/out/semantic.txt
