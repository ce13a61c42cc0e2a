#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""eval/compare.py A.json B.json - is B's held-out APGR really different from A's?

A and B are TG_EVAL_JSON files written by eval/cv.py (two runs with different
TG_TRAIN_ARGS). Prints both overall APGRs and the paired difference B - A
with its standard error over 500 resamples of the groups (the same groups for
both in each resample), and the share of resamples where B is ahead.

  TG_EVAL_SET=path   labels (default ../shared/eval/routing_dev.jsonl)
"""
import json
import os
import random
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "eval"))
import cv  # noqa: E402  (group_of, apgr, the scorer's curve)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    labels = os.environ.get("TG_EVAL_SET", os.path.join(TOP, "..", "shared", "eval",
                                                        "routing_dev.jsonl"))
    sys.path.insert(0, os.path.dirname(os.path.abspath(labels)))
    import score_router
    cv.SR = score_router
    a = json.load(open(sys.argv[1]))["scores"]
    b = json.load(open(sys.argv[2]))["scores"]
    rows = [json.loads(l) for l in open(labels) if l.strip()]
    rows = [r for r in rows if r["id"] in a and r["id"] in b]
    by = {}
    for r in rows:
        r["group"] = cv.group_of(r["id"])
        by.setdefault(r["group"], []).append(r)
    names = sorted(by)

    def both(sample):
        fa = cv.apgr(sample, lambda r: a[r["base"]])
        fb = cv.apgr(sample, lambda r: b[r["base"]])
        return fa[0], fb[0]

    whole = both([dict(r, base=r["id"]) for r in rows])
    rnd = random.Random(7)
    diffs = []
    for _ in range(500):
        sample = []
        for k, g in enumerate(rnd.choice(names) for _ in names):
            sample += [dict(r, id="%s#%d" % (r["id"], k), base=r["id"]) for r in by[g]]
        x, y = both(sample)
        diffs.append(y - x)
    m = sum(diffs) / len(diffs)
    se = (sum((d - m) ** 2 for d in diffs) / (len(diffs) - 1)) ** 0.5
    ahead = sum(1 for d in diffs if d > 0) / len(diffs)
    print("A %.4f  B %.4f  B - A %+.4f  (standard error %.4f over 500 group resamples; "
          "B ahead in %.0f%%)" % (whole[0], whole[1], whole[1] - whole[0], se, 100 * ahead))


if __name__ == "__main__":
    main()
