#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""eval/fit.py BUILD_DIR [A|B] - re-runs the search that chose the router's fitted
weights (eval/RESULTS.md, "What was fitted"), so the defaults can be checked.

Only the weights in FREE move; every other weight, every cue list and the
bias stay at the compiled defaults. The search is a bounded coordinate ascent
on APGR of half A of the eval set (CRC32 of the id, as in eval/run.sh): at
each step size it tries every free weight one step up and one step down,
takes the best move if it gains more than MIN_GAIN, and goes to the next
step size when none does. Half B is only scored at the end. (Passing B
fits on half B and scores half A at the end: the same search the other way
round, to see how much of the gain is the half it was fitted on.) Each trial runs
`BUILD_DIR/tiergate classify -c <tmp config>` on half A, so the score is the
shipped C code's, not a re-implementation. Takes about a minute.

  TG_EVAL_SET=path  labels (default: ../shared/eval/routing_dev.jsonl from the repo top)
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zlib

# Start: the defaults before this fit (the new recall weight at 0).
START = {"math": 3.0, "numbers": 1.2, "reasoning": 2.4, "scenario": 2.4, "jargon": -1.5,
         "recall": 0.0}
FREE = list(START)
# Bounds. All within [-4, 4] so that no one cue family can swamp the rest on
# real traffic; three tighter ones come from production, not from this set:
# math at most 3.0 (a lone "how many" must not reach the expensive tier),
# numbers at least 0.8 (quantities in a question are a computation to do),
# recall no stronger than the simple-task weight (-2.4): recall phrasing is a
# kind of simple task and must not outweigh a specialist-domain cue.
BOUNDS = {k: (-4.0, 4.0) for k in FREE}
BOUNDS["math"] = (0.0, 3.0)
BOUNDS["numbers"] = (0.8, 4.0)
BOUNDS["recall"] = (-2.4, 0.0)
STEPS = (0.5, 0.25, 0.1, 0.05)
MIN_GAIN = 1e-4
# classify needs a loadable config: a placeholder upstream that is never called.
BASE_CONFIG = {
    "models": {"m": {"base_url": "http://127.0.0.1:9/v1", "upstream_model": "m"}},
    "tiers": {"cheap": ["m"], "medium": ["m"], "expensive": ["m"]},
}


def main():
    if len(sys.argv) not in (2, 3) or (len(sys.argv) == 3 and sys.argv[2] not in ("A", "B")):
        sys.exit(__doc__)
    fit = sys.argv[2] if len(sys.argv) == 3 else "A"
    held = "B" if fit == "A" else "A"
    top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    build = os.path.join(top, sys.argv[1])
    labels = os.environ.get("TG_EVAL_SET", os.path.join(top, "..", "shared", "eval",
                                                        "routing_dev.jsonl"))
    sys.path.insert(0, os.path.dirname(labels))
    import score_router as sr  # the scorer beside the labels

    rows = [json.loads(l) for l in open(labels) if l.strip()]
    halves = {"A": [], "B": []}
    for r in rows:
        halves["AB"[zlib.crc32(r["id"].encode()) & 1]].append(r)
    tmp = tempfile.mkdtemp(prefix="tg-fit-")
    inputs = {}
    for h, rs in halves.items():
        inputs[h] = os.path.join(tmp, "half_%s.jsonl" % h)
        with open(inputs[h], "w") as f:
            for r in rs:
                f.write(json.dumps({"id": r["id"], "prompt": r["prompt"]}) + "\n")
    cfg_path = os.path.join(tmp, "config.json")
    # a private copy: a rebuild during the search must not swap the binary
    exe = os.path.join(tmp, "tiergate")
    shutil.copy2(os.path.join(build, "tiergate"), exe)

    def apgr(weights, h):
        cfg = dict(BASE_CONFIG, router={"weights": weights})
        with open(cfg_path, "w") as f:
            json.dump(cfg, f)
        with open(inputs[h]) as fin:
            out = subprocess.run([exe, "classify", "-c", cfg_path],
                                 stdin=fin, capture_output=True, text=True, check=True).stdout
        score = {}
        for line in out.splitlines():
            d = json.loads(line)
            score[d["id"]] = d["score"]
        rs = halves[h]
        weak = [r["weak_score"] for r in rs]
        strong = [r["strong_score"] for r in rs]
        lo, hi = sum(weak) / len(rs), sum(strong) / len(rs)
        pts = sr.curve([score[r["id"]] for r in rs], weak, strong)
        # summarize()'s area, unrounded: the search needs finer steps than 1e-4
        return sum((x1 - x0) * ((p0 - lo) + (p1 - lo)) / 2 / (hi - lo)
                   for (x0, p0), (x1, p1) in zip(pts, pts[1:]))

    w = dict(START)
    best = apgr(w, fit)
    print("start %s  APGR %s %.4f" % (w, fit, best))
    for step in STEPS:
        while True:
            cand = None
            for k in FREE:
                for d in (step, -step):
                    t = dict(w)
                    t[k] = round(w[k] + d, 4)
                    lo, hi = BOUNDS[k]
                    if not lo <= t[k] <= hi:
                        continue
                    v = apgr(t, fit)
                    if v > best + MIN_GAIN and (cand is None or v > cand[0]):
                        cand = (v, t, k)
            if cand is None:
                break
            best, w = cand[0], cand[1]
            print("step %.2f  %-9s -> %+.2f  APGR %s %.4f" % (step, cand[2], w[cand[2]], fit, best))
    print("fitted %s" % json.dumps(w))
    print("APGR half %s %.4f, half %s (held out) %.4f; start: %s %.4f, %s %.4f"
          % (fit, best, held, apgr(w, held), fit, apgr(START, fit), held, apgr(START, held)))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
