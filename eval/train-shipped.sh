#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# eval/train-shipped.sh BUILD_DIR - rebuilds config/router-model.json, the
# model config/tiergate.json loads: `tiergate train` on every row of the
# routing dev set, with the same prior (eval/train-config.json) and the same
# options as each fold of `make eval`, so the held-out figures are those of
# this very procedure. Deterministic: the same inputs give the same bytes.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:?usage: eval/train-shipped.sh BUILD_DIR (e.g. build/release)}
case $build in /*) ;; *) build=$top/$build ;; esac
set_path=${TG_EVAL_SET:-$top/../shared/eval/routing_dev.jsonl}
out=$top/config/router-model.json
tmp=$(mktemp)
trap 'rm -f "$tmp" "$tmp.model"' EXIT
# the label lines train reads: id, prompt and the two correctness flags
python3 - "$set_path" "$tmp" <<'PY'
import json, sys
with open(sys.argv[2], "w") as f:
    for line in open(sys.argv[1]):
        if line.strip():
            r = json.loads(line)
            f.write(json.dumps({"id": r["id"], "prompt": r["prompt"],
                                "weak_correct": r["weak_correct"],
                                "strong_correct": r["strong_correct"]}) + "\n")
PY
"$build/tiergate" train -c "$top/eval/train-config.json" <"$tmp" >"$tmp.model"
mv "$tmp.model" "$out"
echo "wrote $out ($(wc -c <"$out") bytes)"
