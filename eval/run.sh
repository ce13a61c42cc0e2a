#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# eval/run.sh BUILD_DIR - `make eval`: the router's figures on the routing dev
# set, by leave-one-group-out cross-validation (a group is GSM8K or one MMLU
# subject; eval/cv.py says how). Prints per-benchmark, within-subject and
# between-subject APGR for the learned router (held out), the heuristic, the
# shipped model (trained on every group: not a held-out figure) and prompt
# length, next to random / always-cheap / always-medium. eval/RESULTS.md
# explains the figures.
#
#   TG_EVAL_SET=path      labels (default: ../shared/eval/routing_dev.jsonl from the repo top)
#   TG_TRAIN_ARGS="..."   extra tiergate train options (ablations; not what ships)
#   TG_EVAL_JOBS=N        trainings at once (default 2)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:?usage: eval/run.sh BUILD_DIR (e.g. build/release)}
case $build in /*) ;; *) build=$top/$build ;; esac
set_path=${TG_EVAL_SET:-$top/../shared/eval/routing_dev.jsonl}
[ -f "$set_path" ] || { echo "eval: missing $set_path" >&2; exit 1; }
command -v python3 >/dev/null || { echo "eval: python3 is required" >&2; exit 1; }
TG_EVAL_SET=$set_path exec python3 "$top/eval/cv.py" "$build"
