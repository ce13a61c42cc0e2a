#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# eval/run.sh BUILD_DIR - routes every prompt of the routing eval set with
# `tiergate classify` and scores the decisions with score_router.py: APGR,
# CPT50, CPT80 next to the random and prompt-length baselines, for the whole
# set and for its two halves (split by CRC32 of the id; the default weights
# were chosen on half A, so half B is the held-out figure).
#
#   TG_EVAL_SET=path     labels (default: ../shared/eval/routing_dev.jsonl from the repo top)
#   TG_CLASSIFY_CMD=cmd  command that reads JSONL on stdin and writes decisions
#                        (default: "BUILD_DIR/tiergate classify")
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:?usage: eval/run.sh BUILD_DIR (e.g. build/release)}
case $build in /*) ;; *) build=$top/$build ;; esac
set_path=${TG_EVAL_SET:-$top/../shared/eval/routing_dev.jsonl}
scorer=$(dirname "$set_path")/score_router.py
[ -f "$scorer" ] || scorer=$top/../shared/eval/score_router.py
cmd=${TG_CLASSIFY_CMD:-"$build/tiergate classify"}

for f in "$set_path" "$scorer"; do
    [ -f "$f" ] || { echo "eval: missing $f" >&2; exit 1; }
done
command -v python3 >/dev/null || { echo "eval: python3 is required" >&2; exit 1; }

out=$build/eval
mkdir -p "$out"
decisions=$out/decisions.jsonl

echo "== routing $(wc -l <"$set_path") prompts: $cmd < $set_path"
start=$(date +%s.%N)
$cmd <"$set_path" >"$decisions"
end=$(date +%s.%N)
python3 - "$decisions" "$start" "$end" <<'PY'
import json, sys, collections
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
bad = [r for r in rows if "error" in r]
tiers = collections.Counter(r.get("tier") for r in rows if "tier" in r)
n = len(rows) - len(bad)
print("decisions %d (errors %d) in %.2f s; tiers: %s" % (
    n, len(bad), float(sys.argv[3]) - float(sys.argv[2]),
    ", ".join("%s %.1f%%" % (t, 100.0 * tiers[t] / max(n, 1)) for t in ("cheap", "medium", "expensive"))))
PY

echo
echo "== whole set"
python3 "$scorer" "$set_path" "$decisions"

# Halves by CRC32 of the id, the same split the weights were chosen on.
python3 - "$set_path" "$out" <<'PY'
import json, sys, zlib
src, out = sys.argv[1], sys.argv[2]
halves = [open("%s/labels_half_%s.jsonl" % (out, h), "w") for h in "AB"]
for line in open(src):
    if line.strip():
        halves[zlib.crc32(json.loads(line)["id"].encode()) & 1].write(line)
for f in halves:
    f.close()
PY
for h in A B; do
    echo
    if [ $h = A ]; then echo "== half A (weights chosen here)"; else echo "== half B (held out)"; fi
    python3 "$scorer" "$out/labels_half_$h.jsonl" "$decisions" 2>/dev/null
done
