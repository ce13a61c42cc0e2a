#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""eval/cv.py BUILD_DIR - the router's honest figures on the routing dev set.

Leave-one-group-out cross-validation, where a group is a benchmark or a
subject (GSM8K is one group; each MMLU subject is one, read from the row id
routellm-mmlu-<subject>-NNNN). For every group G:

  1. `tiergate train -c eval/train-config.json` fits a model on every row
     that is not in G; train chooses its own regularisation by an inner
     cross-validation over the groups it was given (G is not among them);
  2. `tiergate classify` scores the rows of G with that model, loaded from
     its file through router.model, exactly as the gateway would.

The scores of all groups are pooled and scored with the scorer beside the
labels (score_router.py's curve): overall APGR, per benchmark, within
subject (each group ranked on its own) and between subjects (each row given
its group's mean score), next to prompt length, random, always-cheap and
always-medium. Nothing reported for a group was tuned on it. The heuristic
router (no model) and the shipped model (config/tiergate.json, trained on
every group: not a held-out figure) are scored on the same rows.

  TG_EVAL_SET=path      labels (default ../shared/eval/routing_dev.jsonl)
  TG_TRAIN_ARGS="..."   extra arguments for tiergate train (ablations)
  TG_EVAL_JOBS=N        trainings run at once (default 2)
  TG_EVAL_ONLY=a,b      score only these groups (quick looks; not a result)
  TG_EVAL_JSON=path     also write every figure as JSON
"""
import concurrent.futures
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# classify needs a loadable config: a placeholder upstream that is never called.
BASE_CONFIG = {
    "models": {"m": {"base_url": "http://127.0.0.1:9/v1", "upstream_model": "m"}},
    "tiers": {"cheap": ["m"], "medium": ["m"], "expensive": ["m"]},
}


def group_of(row_id):
    """The id without its trailing number: the same rule as tiergate train."""
    n = len(row_id)
    while n and row_id[n - 1].isdigit():
        n -= 1
    while n and row_id[n - 1] in "-_:./# ":
        n -= 1
    return row_id[:n]


def benchmark_of(group):
    return "gsm8k" if "gsm8k" in group else "mmlu"


def curve(keys, weak, strong):
    # the scorer's own curve (imported below), ties routed in random order
    return SR.curve(keys, weak, strong)


def area(pts, lo, hi):
    gap = hi - lo
    return sum((x1 - x0) * ((p0 - lo) + (p1 - lo)) / 2 / gap
               for (x0, p0), (x1, p1) in zip(pts, pts[1:]))


def cpt(pts, lo, hi, target):
    pgr = [(x, (p - lo) / (hi - lo)) for x, p in pts]
    for (x0, y0), (x1, y1) in zip(pgr, pgr[1:]):
        if y1 >= target:
            return x0 if y1 == y0 else x0 + (x1 - x0) * (target - y0) / (y1 - y0)
    return 1.0


def apgr(rows, key):
    weak = [r["weak_score"] for r in rows]
    strong = [r["strong_score"] for r in rows]
    lo, hi = sum(weak) / len(rows), sum(strong) / len(rows)
    if hi - lo <= 1e-9:
        return None  # no gap to recover on these rows
    pts = curve([key(r) for r in rows], weak, strong)
    return area(pts, lo, hi), cpt(pts, lo, hi, 0.5), cpt(pts, lo, hi, 0.8)


def within_key(rows, key):
    """Each row's percentile inside its group (ties share the mean rank):
    the pooled curve then sends the same share of every group to the strong
    model, so only the order inside groups counts."""
    by = {}
    for r in rows:
        by.setdefault(r["group"], []).append(r)
    pct = {}
    for g, rs in by.items():
        vals = sorted(key(r) for r in rs)
        first = {}
        last = {}
        for i, v in enumerate(vals):
            first.setdefault(v, i)
            last[v] = i
        for r in rs:
            v = key(r)
            pct[r["id"]] = ((first[v] + last[v]) / 2 + 0.5) / len(rs)
    return lambda r: pct[r["id"]]


def between_key(rows, key):
    """Each row gets its group's mean score: only the order of groups counts."""
    s, n = {}, {}
    for r in rows:
        s[r["group"]] = s.get(r["group"], 0.0) + key(r)
        n[r["group"]] = n.get(r["group"], 0) + 1
    return lambda r: s[r["group"]] / n[r["group"]]


def figures(rows, key):
    out = {}
    for name, sub in (("overall", rows),
                      ("gsm8k", [r for r in rows if r["bench"] == "gsm8k"]),
                      ("mmlu", [r for r in rows if r["bench"] == "mmlu"])):
        if sub:
            a = apgr(sub, key)
            out[name] = a
    out["within"] = apgr(rows, within_key(rows, key))
    out["between"] = apgr(rows, between_key(rows, key))
    out["mmlu_within"] = apgr([r for r in rows if r["bench"] == "mmlu"],
                              within_key([r for r in rows if r["bench"] == "mmlu"], key))
    return out


def group_bootstrap(rows, key, n, seed=12):
    """Standard error of the overall APGR when the groups themselves are
    resampled (with replacement): the figure's sensitivity to which
    subjects happened to be in the set."""
    import random
    rnd = random.Random(seed)
    by = {}
    for r in rows:
        by.setdefault(r["group"], []).append(r)
    names = sorted(by)
    vals = []
    for _ in range(n):
        sample = []
        for k, g in enumerate(rnd.choice(names) for _ in names):
            # a group drawn twice counts twice: give its rows new ids
            sample += [dict(r, id="%s#%d" % (r["id"], k)) for r in by[g]]
        sc = {r["id"]: key(dict(r, id=r["id"].rsplit("#", 1)[0])) for r in sample}
        a = apgr(sample, lambda r: sc[r["id"]])
        if a:
            vals.append(a[0])
    m = sum(vals) / len(vals)
    return (sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5


def run(cmd, stdin_path, stdout_path=None, env=None):
    with open(stdin_path) as fin:
        if stdout_path:
            with open(stdout_path, "w") as fout:
                p = subprocess.run(cmd, stdin=fin, stdout=fout, stderr=subprocess.PIPE, text=True,
                                   env=env)
        else:
            p = subprocess.run(cmd, stdin=fin, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.exit("eval: %s failed (%d): %s" % (" ".join(cmd), p.returncode, p.stderr[-2000:]))
    return p


def classify(exe, rows_path, cfg_path, out_path):
    cmd = [exe, "classify"] + (["-c", cfg_path] if cfg_path else [])
    run(cmd, rows_path, out_path)
    scores, tiers = {}, {}
    for line in open(out_path):
        d = json.loads(line)
        if "error" in d:
            sys.exit("eval: classify error on %s: %s" % (d.get("id"), d["error"]))
        scores[d["id"]] = d["score"]
        tiers[d["id"]] = d["tier"]
    return scores, tiers


def write_rows(path, rows, labels):
    with open(path, "w") as f:
        for r in rows:
            d = {"id": r["id"], "prompt": r["prompt"]}
            if labels:
                d["weak_correct"] = r["weak_correct"]
                d["strong_correct"] = r["strong_correct"]
            f.write(json.dumps(d) + "\n")


def fmt(a):
    return "  n/a " if a is None else "%.3f" % a[0]


def main():
    global SR
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    build = sys.argv[1] if os.path.isabs(sys.argv[1]) else os.path.join(TOP, sys.argv[1])
    labels = os.environ.get("TG_EVAL_SET", os.path.join(TOP, "..", "shared", "eval",
                                                        "routing_dev.jsonl"))
    scorer_dir = os.path.dirname(os.path.abspath(labels))
    if not os.path.exists(os.path.join(scorer_dir, "score_router.py")):
        scorer_dir = os.path.join(TOP, "..", "shared", "eval")
    sys.path.insert(0, scorer_dir)
    import score_router
    SR = score_router
    jobs = int(os.environ.get("TG_EVAL_JOBS", "2"))
    extra = shlex.split(os.environ.get("TG_TRAIN_ARGS", ""))
    only = [g for g in os.environ.get("TG_EVAL_ONLY", "").split(",") if g]

    rows = [json.loads(l) for l in open(labels) if l.strip()]
    for r in rows:
        r["group"] = group_of(r["id"])
        r["bench"] = benchmark_of(r["group"])
    groups = sorted({r["group"] for r in rows})
    if only:
        groups = [g for g in groups if any(o in g for o in only)]
    tmp = tempfile.mkdtemp(prefix="tg-eval-")
    exe = os.path.join(tmp, "tiergate")  # a private copy: a rebuild must not swap it mid-run
    shutil.copy2(os.path.join(build, "tiergate"), exe)
    train_cfg = os.path.join(TOP, "eval", "train-config.json")

    print("== %d rows, %d groups (%s); leave-one-group-out, %d trainings at a time"
          % (len(rows), len(groups), "gsm8k + %d MMLU subjects" % (len(groups) - 1), jobs))
    print("   train: %s train -c eval/train-config.json %s" % (os.path.basename(exe), " ".join(extra)))
    t0 = time.time()

    def fold(g):
        d = os.path.join(tmp, "fold-" + g)
        os.mkdir(d)
        train_rows = [r for r in rows if r["group"] != g]
        held = [r for r in rows if r["group"] == g]
        write_rows(os.path.join(d, "train.jsonl"), train_rows, True)
        write_rows(os.path.join(d, "held.jsonl"), held, False)
        model = os.path.join(d, "model.json")
        p = run([exe, "train", "-c", train_cfg, "-q"] + extra, os.path.join(d, "train.jsonl"),
                model)
        meta = json.load(open(model))["training"]
        cfg = dict(BASE_CONFIG, router={"model": model})
        cfg_path = os.path.join(d, "config.json")
        json.dump(cfg, open(cfg_path, "w"))
        scores, tiers = classify(exe, os.path.join(d, "held.jsonl"), cfg_path,
                                 os.path.join(d, "decisions.jsonl"))
        return g, scores, meta["cv"]["chosen"], p.stderr

    cv_score, chosen = {}, {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as ex:
        for g, scores, ch, err in ex.map(fold, groups):
            cv_score.update(scores)
            chosen[g] = ch
            sys.stdout.write(".")
            sys.stdout.flush()
    print(" %.0f s" % (time.time() - t0))
    rows = [r for r in rows if r["id"] in cv_score]

    # the heuristic (no model) and the shipped config, on the same rows
    allp = os.path.join(tmp, "all.jsonl")
    write_rows(allp, rows, False)
    heur, heur_tiers = classify(exe, allp, None, os.path.join(tmp, "heuristic.jsonl"))
    shipped_cfg = os.path.join(TOP, "config", "tiergate.json")
    shipped, shipped_tiers = classify(exe, allp, shipped_cfg, os.path.join(tmp, "shipped.jsonl"))
    has_model = "model" in json.load(open(shipped_cfg)).get("router", {})

    keys = [
        ("learned, held out (grouped CV)", lambda r: cv_score[r["id"]]),
        ("heuristic (saw every group)", lambda r: heur[r["id"]]),
    ]
    if has_model:
        keys.append(("shipped model (saw every group)", lambda r: shipped[r["id"]]))
    keys += [
        ("prompt length", lambda r: len(r["prompt"])),
    ]
    res = {name: figures(rows, k) for name, k in keys}

    print()
    print("APGR                              overall  gsm8k   mmlu  within  between  "
          "mmlu-within  CPT50  CPT80")
    for name, _ in keys:
        f = res[name]
        print("%-32s   %s  %s  %s   %s   %s        %s  %.3f  %.3f" % (
            name, fmt(f["overall"]), fmt(f["gsm8k"]), fmt(f["mmlu"]), fmt(f["within"]),
            fmt(f["between"]), fmt(f["mmlu_within"]), f["overall"][1], f["overall"][2]))
    W = sum(r["weak_score"] for r in rows) / len(rows)
    S = sum(r["strong_score"] for r in rows) / len(rows)
    print("%-32s   0.500  0.500  0.500   0.500   0.500        0.500  0.500  0.800" % "random")
    print()
    print("Operating points (a non-cheap start counts as a strong call, as score_router.py does):")
    print("  always cheap:  0.0%% strong calls, accuracy %.3f (weak model)" % W)
    print("  always medium: 100.0%% strong calls, accuracy %.3f (strong model)" % S)

    def op(name, tiers):
        n = len(rows)
        share = sum(1 for r in rows if tiers[r["id"]] != "cheap") / n
        acc = sum(r["strong_score"] if tiers[r["id"]] != "cheap" else r["weak_score"]
                  for r in rows) / n
        mix = {t: sum(1 for r in rows if tiers[r["id"]] == t) / n
               for t in ("cheap", "medium", "expensive")}
        print("  %-13s %5.1f%% strong calls, accuracy %.3f, gap recovered %.3f  "
              "(cheap %.1f%%, medium %.1f%%, expensive %.1f%%)" % (
                  name + ":", 100 * share, acc, (acc - W) / (S - W), 100 * mix["cheap"],
                  100 * mix["medium"], 100 * mix["expensive"]))
    op("heuristic", heur_tiers)
    if has_model:
        op("shipped", shipped_tiers)

    print()
    print("Per group (held-out APGR of the learned router vs prompt length; rows, mean gain):")
    by = {}
    for r in rows:
        by.setdefault(r["group"], []).append(r)
    for g in sorted(by, key=lambda g: -len(by[g])):
        rs = by[g]
        gain = sum(r["strong_score"] - r["weak_score"] for r in rs) / len(rs)
        a = apgr(rs, lambda r: cv_score[r["id"]])
        ln = apgr(rs, lambda r: len(r["prompt"]))
        lam = chosen[g]
        print("  %-45s %5d  %+.3f  router %s  length %s  (lambda dense %g, words %s)" % (
            g, len(rs), gain, fmt(a), fmt(ln), lam["lambda_dense"], lam["lambda_words"]))
    # How much of that is the choice of subjects: resample whole groups.
    se = group_bootstrap(rows, lambda r: cv_score[r["id"]], 200)
    print()
    print("Held-out overall APGR %.3f, standard error %.3f over 200 resamples of the %d groups"
          % (res[keys[0][0]]["overall"][0], se, len(by)))
    out = os.environ.get("TG_EVAL_JSON")
    if out:
        json.dump({"figures": {k: {m: v for m, v in f.items()} for k, f in res.items()},
                   "chosen": chosen, "scores": cv_score, "bootstrap_se": se},
                  open(out, "w"), indent=1)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
