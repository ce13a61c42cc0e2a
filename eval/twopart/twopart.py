#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""eval/twopart/twopart.py BUILD_DIR [--fold GROUP] [--only a,b] [--outer]

The experiments behind "Round 2" in eval/RESULTS.md: a two-part router
(a part learned only from variation *inside* groups, plus a part that places
a group on the difficulty scale) and the other ideas tried with it. Offline
and exploratory: it re-implements `tiergate train`'s fit in numpy/scipy (the
same features, loss, prior, anchoring and grouped fold assignment; its
"pooled" procedure reproduces make eval's held-out figures to the third
decimal) so that variants can be tried without changing the C trainer.
Nothing here ships; needs `apt-get install python3-numpy python3-scipy`.

Default: INNER figures only. For one outer fold (--fold, default the GSM8K
group) it cross-validates every variant on that fold's *training* rows, by
the same 5 grouped folds train uses, and prints pooled AUC, pooled APGR and
within-group APGR of the held-out inner scores. The outer group's labels
are never read.

--outer runs the nested leave-one-group-out for the three fixed-effects
procedures (pooled = what ships, fixed effects, CV chooses) and prints the
held-out figures: that is a look at outer figures, count it.

Experiments (--only): univariate fe words brief interact centroid knn heads
"""
import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import scipy.sparse as sp
    from scipy.optimize import minimize
except ImportError:
    sys.exit("twopart: needs numpy and scipy (apt-get install python3-numpy python3-scipy)")

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "eval"))
import cv  # noqa: E402  (group_of, benchmark_of, curve/area helpers)

NAMES = ("length context output code math numbers analysis simple domain reasoning questions "
         "subparts tools structured turns system jargon scenario recall").split()
# eval/train-config.json: the heuristic's hand-set weights, the six fitted ones at 0
PRIOR = np.array([dict(length=1.0, context=0.4, output=1.2, code=1.2, analysis=2.0, simple=-2.4,
                       domain=2.0, questions=0.3, subparts=0.8, tools=0.8, structured=0.3,
                       turns=0.5, system=0.3).get(n, 0.0) for n in NAMES])
K = 5


# ---- data ---------------------------------------------------------------------

def prepare(build, labels, tmp):
    """Rows, dense terms X (n x 19), hashed matrix H (count/sqrt(n)), the
    classify features of each row."""
    rows = [json.loads(l) for l in open(labels) if l.strip()]
    prompts = os.path.join(tmp, "prompts.jsonl")
    with open(prompts, "w") as f:
        for r in rows:
            f.write(json.dumps({"id": r["id"], "prompt": r["prompt"]}) + "\n")
    exe = os.path.join(tmp, "vectors")
    libs = subprocess.run(["pkg-config", "--libs", "libmicrohttpd", "libcurl", "hiredis", "jansson",
                           "libcrypto", "libpcre2-8"], capture_output=True, text=True).stdout.split()
    subprocess.run(["cc", "-std=c11", "-D_GNU_SOURCE", "-O2", "-I" + os.path.join(TOP, "include"),
                    os.path.join(HERE, "vectors.c"), os.path.join(build, "libtiergate.a")] + libs +
                   ["-lpthread", "-lm", "-o", exe], check=True)
    vec, feat = {}, {}
    with open(prompts) as fin:
        out = subprocess.run([exe], stdin=fin, capture_output=True, text=True, check=True).stdout
    for l in out.splitlines():
        d = json.loads(l)
        vec[d["id"]] = d["features"]
    with open(prompts) as fin:
        out = subprocess.run([os.path.join(build, "tiergate"), "classify"], stdin=fin,
                             capture_output=True, text=True, check=True).stdout
    for l in out.splitlines():
        d = json.loads(l)
        feat[d["id"]] = d["features"]
    X = np.array([[vec[r["id"]]["dense"][n] for n in NAMES] for r in rows])
    ind, val, ptr = [], [], [0]
    for r in rows:
        v = vec[r["id"]]
        k = 1 / math.sqrt(v["n"]) if v["n"] else 0
        for b, c in v["h"]:
            ind.append(b)
            val.append(c * k)
        ptr.append(len(ind))
    H = sp.csr_matrix((np.array(val), np.array(ind, dtype=np.int64), np.array(ptr)),
                      shape=(len(rows), 1 << 18))
    for r in rows:
        r["group"] = cv.group_of(r["id"])
        r["bench"] = cv.benchmark_of(r["group"])
        r["feat"] = feat[r["id"]]
    return rows, X, H


class Data:
    def __init__(self, rows, X, H):
        self.rows, self.X, self.H = rows, X, H
        self.w = np.array([r["weak_score"] for r in rows], float)
        self.s = np.array([r["strong_score"] for r in rows], float)
        self.t = np.maximum(0, self.s - self.w)  # train's target: not good enough
        self.groups = sorted({r["group"] for r in rows})
        self.gi = np.array([self.groups.index(r["group"]) for r in rows])
        self.sizes = {g: int((self.gi == g).sum()) for g in range(len(self.groups))}
        Hsq = np.asarray(H.multiply(H).sum(1)).ravel()
        self.Hn = H.multiply(1 / np.sqrt(Hsq + 1e-12)[:, None]).tocsr()

    def extra(self, name):
        """Candidate within terms that are not in the model file (yet)."""
        f = lambda k: np.array([r["feat"][k] for r in self.rows], float)
        size = lambda tok: np.clip(np.log2(1 + tok / 16) / 8, 0, 1)
        col = {n: self.X[:, j] for j, n in enumerate(NAMES)}
        lenq = size(f("tokens_question"))
        return {
            "lenq": lambda: lenq,
            "lenc": lambda: size(f("tokens_final") - f("tokens_question")),
            "lenq_math": lambda: lenq * col["math"],
            "lenq_num": lambda: lenq * col["numbers"],
            "lenq_scen": lambda: lenq * col["scenario"],
        }[name]()


# ---- the fit: train.c's objective ---------------------------------------------

def sigmoid(z):
    return 0.5 * (1 + np.tanh(0.5 * z))


def logit_fit(X, t, lam, prior, H=None, lam_h=0.0, gidx=None, ng=0, offset=None):
    """Mean log-loss + 0.5 sum lam_j (w_j - prior_j)^2 + 0.5 lam_h |v|^2, by
    L-BFGS. With gidx: one free intercept per group (fixed effects) instead
    of one bias. Returns (intercepts, w, v)."""
    n, p = X.shape
    nb = ng if gidx is not None else 1
    nh = H.shape[1] if H is not None else 0
    off = np.zeros(n) if offset is None else offset

    def f(th):
        a, w, v = th[:nb], th[nb:nb + p], th[nb + p:]
        z = off + X @ w + (a[gidx] if gidx is not None else a[0])
        if nh:
            z = z + H @ v
        loss = np.mean(np.logaddexp(0, z) - t * z)
        r = (sigmoid(z) - t) / n
        g = np.empty_like(th)
        g[:nb] = np.bincount(gidx, weights=r, minlength=nb) if gidx is not None else r.sum()
        dw = w - prior
        g[nb:nb + p] = X.T @ r + lam * dw
        loss += 0.5 * np.sum(lam * dw * dw)
        if nh:
            g[nb + p:] = H.T @ r + lam_h * v
            loss += 0.5 * lam_h * v @ v
        return loss, g

    th = np.zeros(nb + p + nh)
    m = np.clip(t.mean(), 1e-3, 1 - 1e-3)
    th[:nb] = math.log(m / (1 - m))
    th[nb:nb + p] = prior
    th = minimize(f, th, jac=True, method="L-BFGS-B", options=dict(maxiter=500, gtol=1e-7)).x
    return th[:nb], th[nb:nb + p], th[nb + p:]


def fit(D, idx, hp, X, prior):
    """One procedure on rows idx. hp: ld (free dense lambda), anchor (hand-set
    terms held to the prior this hard; 0 = free), lh (bucket lambda, 0 = no
    words), fe (fixed effects: weights from variation inside groups only, then
    one bias refitted with them held). Returns a scorer rows -> z."""
    lam = np.where((prior != 0) & (hp["anchor"] > 0), hp["anchor"], hp["ld"])
    Hs = cols = None
    if hp.get("lh"):
        df = np.asarray((D.H[idx] != 0).sum(0)).ravel()
        cols = np.where(df >= 5)[0]  # train's --min-df
        Hs = D.H[idx][:, cols].tocsr()
    if hp.get("fe"):
        gl = np.unique(D.gi[idx])
        remap = -np.ones(len(D.groups), int)
        remap[gl] = np.arange(len(gl))
        _, w, v = logit_fit(X[idx], D.t[idx], lam, prior, Hs, hp.get("lh", 0), remap[D.gi[idx]],
                            len(gl))
        off = X[idx] @ w + (Hs @ v if Hs is not None else 0)
        b, _, _ = logit_fit(np.zeros((len(idx), 0)), D.t[idx], np.zeros(0), np.zeros(0),
                            offset=off)
    else:
        b, w, v = logit_fit(X[idx], D.t[idx], lam, prior, Hs, hp.get("lh", 0))
    vf = None
    if Hs is not None:
        vf = np.zeros(D.H.shape[1])
        vf[cols] = v

    def score(rix):
        z = b[0] + X[rix] @ w
        return z + D.H[rix] @ vf if vf is not None else z
    score.w = w
    return score


# ---- figures --------------------------------------------------------------------

def auc(score, t):
    o = np.argsort(score, kind="stable")
    s, tt = score[o], t[o]
    _, first = np.unique(s, return_index=True)
    bounds = list(first) + [len(s)]
    num = negb = P = N = 0.0
    for a, b in zip(bounds[:-1], bounds[1:]):
        pos, neg = tt[a:b].sum(), (1 - tt[a:b]).sum()
        num += pos * (negb + 0.5 * neg)
        negb += neg
        P += pos
        N += neg
    return num / (P * N)


def apgr(D, z, idx):
    pts = cv.SR.curve(list(z), list(D.w[idx]), list(D.s[idx]))
    return cv.area(pts, D.w[idx].mean(), D.s[idx].mean())


def within_apgr(D, z, idx):
    pct = np.zeros(len(idx))
    for g in set(D.gi[idx].tolist()):
        s = np.where(D.gi[idx] == g)[0]
        pct[s] = (np.argsort(np.argsort(z[s], kind="stable")) + 0.5) / len(s)
    return apgr(D, pct, idx)


def folds(D, idx):
    gl = sorted(set(D.gi[idx].tolist()), key=lambda g: (-D.sizes[g], D.groups[g]))
    load, gf = [0] * K, {}
    for g in gl:  # train.c: largest group first, to the lightest fold
        k = min(range(K), key=lambda q: (load[q], q))
        gf[g] = k
        load[k] += D.sizes[g]
    return np.array([gf[g] for g in D.gi[idx]])


def inner(D, idx, make):
    """make(train_idx) -> scorer; pooled held-out scores of the K grouped folds."""
    fold = folds(D, idx)
    z = np.zeros(len(idx))
    for k in range(K):
        sc = make(idx[fold != k])
        z[fold == k] = sc(idx[fold == k])
    return auc(z, D.t[idx]), apgr(D, z, idx), within_apgr(D, z, idx)


def line(label, r, extra=""):
    print("  %-46s AUC %.4f  APGR %.4f  within %.4f  %s" % (label, r[0], r[1], r[2], extra))
    sys.stdout.flush()


def weights(w, names, keep=("length", "math", "numbers", "analysis", "simple", "domain",
                            "scenario", "jargon", "recall")):
    return " ".join("%s%+.2f" % (n, x) for n, x in zip(names, w) if n in keep or n not in NAMES)


# ---- experiments (inner only) ----------------------------------------------------

def exp_univariate(D, idx):
    print("\nWithin-group AUC of single terms over the training groups, for three targets: "
          "gain (strong right, weak wrong: what train fits), weak wrong, strong wrong:")
    targets = (("gain", D.t), ("weak wrong", 1 - D.w), ("strong wrong", 1 - D.s))
    for j, n in enumerate(NAMES + ["lenq", "lenc"]):
        x = D.X[:, j] if j < len(NAMES) else D.extra(n)
        out = []
        for _, t in targets:
            a = d = 0.0
            for g in set(D.gi[idx].tolist()):
                s = idx[D.gi[idx] == g]
                P, N = t[s].sum(), (1 - t[s]).sum()
                if P and N and x[s].std() > 0:
                    a += auc(x[s], t[s]) * P * N
                    d += P * N
            out.append(a / d if d else float("nan"))
        if not all(math.isnan(v) for v in out):
            print("  %-10s " % n + "  ".join("%s %.3f" % (tn, v) for (tn, _), v in
                                              zip(targets, out)))


def exp_brief(D, idx):
    print("\nThe brief's two parts: within = structural terms only (question length, choice "
          "length, numbers, question marks, sentences, sub-parts) by fixed effects; between = "
          "the anchored cue model (and words) fitted on every row with the within part as an "
          "offset; score = between + within (inner CV):")
    f = lambda k: np.array([r["feat"][k] for r in D.rows], float)
    sents = np.array([len(re.findall(r"[.?!](\s|$)", r["prompt"])) for r in D.rows], float)
    XW = np.column_stack([D.extra("lenq"), D.extra("lenc"), 1 - np.exp(-f("numbers") / 4),
                          np.clip(f("questions") - 1, 0, 4) / 4, 1 - np.exp(-sents / 4),
                          D.X[:, NAMES.index("subparts")]])
    WN = ("lenq", "lenc", "numbers", "questions", "sentences", "subparts")
    for lw in (1e-2, 1e-3, 1e-4):
        for lh in (0, 1e-2):
            def make(tr, lw=lw, lh=lh):
                gl = np.unique(D.gi[tr])
                remap = -np.ones(len(D.groups), int)
                remap[gl] = np.arange(len(gl))
                _, wW, _ = logit_fit(XW[tr], D.t[tr], np.full(XW.shape[1], lw),
                                     np.zeros(XW.shape[1]), gidx=remap[D.gi[tr]], ng=len(gl))
                lam = np.where(PRIOR != 0, 0.01, 1e-4)
                Hs = vf = None
                if lh:
                    df = np.asarray((D.H[tr] != 0).sum(0)).ravel()
                    cols = np.where(df >= 5)[0]
                    Hs = D.H[tr][:, cols].tocsr()
                b, w, v = logit_fit(D.X[tr], D.t[tr], lam, PRIOR, Hs, lh, offset=XW[tr] @ wW)
                if Hs is not None:
                    vf = np.zeros(D.H.shape[1])
                    vf[cols] = v

                def score(rix):
                    z = b[0] + D.X[rix] @ w + XW[rix] @ wW
                    return z + D.H[rix] @ vf if vf is not None else z
                score.txt = ("within " + " ".join("%s%+.2f" % kv for kv in zip(WN, wW)) +
                             " | between numbers%+.2f" % w[NAMES.index("numbers")])
                return score
            line("within lambda %g, words %s" % (lw, lh or "off"), inner(D, idx, make),
                 make(idx).txt)


def exp_fe(D, idx):
    print("\nPooled vs fixed effects, dense terms only (inner CV):")
    for anchor in (0.01, 0.0):
        for fe in (0, 1):
            for ld in (1e-3, 1e-4):
                hp = dict(ld=ld, anchor=anchor, fe=fe)
                r = inner(D, idx, lambda tr: fit(D, tr, hp, D.X, PRIOR))
                w = fit(D, idx, hp, D.X, PRIOR).w
                line("%s %s ld %g" % ("anchored" if anchor else "free", "FE" if fe else "pooled",
                                      ld), r, weights(w, NAMES))


def exp_words(D, idx):
    print("\nPooled vs fixed effects with hashed words, anchored, ld 1e-4 (inner CV):")
    for fe in (0, 1):
        for lh in (1e-2, 3e-3, 1e-3):
            hp = dict(ld=1e-4, anchor=0.01, fe=fe, lh=lh)
            line("%s words %g" % ("FE" if fe else "pooled", lh),
                 inner(D, idx, lambda tr: fit(D, tr, hp, D.X, PRIOR)))


def exp_interact(D, idx):
    print("\nLength interactions as within terms, fixed effects (inner CV; weights on all "
          "training rows):")
    for extra in ([], ["lenq_math"], ["lenq_num"], ["lenq_math", "lenq_num", "lenq_scen"]):
        X = np.hstack([D.X] + [D.extra(e)[:, None] for e in extra])
        prior = np.concatenate([PRIOR, np.zeros(len(extra))])
        for anchor in (0.01, 0.0):
            hp = dict(ld=1e-4, anchor=anchor, fe=1)
            r = inner(D, idx, lambda tr: fit(D, tr, hp, X, prior))
            line("%s %s" % ("+".join(extra) or "no interaction", "anchored" if anchor else "free"),
                 r, weights(fit(D, idx, hp, X, prior).w, NAMES + extra,
                            keep=("length", "math", "numbers", "scenario")))


def exp_centroid(D, idx):
    print("\nBetween part alone: softmax over training-group centroids of the hashed vector, "
          "each group's logit rate (inner CV):")
    for beta in (1, 3, 10, 30, 100):
        def make(tr, beta=beta):
            gl = np.unique(D.gi[tr])
            C, a = [], []
            for g in gl:
                s = tr[D.gi[tr] == g]
                c = np.asarray(D.Hn[s].mean(0)).ravel()
                C.append(c / (np.linalg.norm(c) + 1e-12))
                m = np.clip(D.t[s].mean(), 1e-3, 1 - 1e-3)
                a.append(math.log(m / (1 - m)))
            C, a = np.array(C), np.array(a)

            def score(rix):
                S = beta * (D.Hn[rix] @ C.T)
                S = np.exp(S - S.max(1, keepdims=True))
                return (S / S.sum(1, keepdims=True)) @ a
            return score
        line("beta %g" % beta, inner(D, idx, make))


def exp_knn(D, idx):
    print("\nk nearest training rows by cosine of the hashed vector (logit of their rate of "
          "'not good enough'), alone and added to the anchored dense model (inner CV):")
    fold = folds(D, idx)
    lin = np.zeros(len(idx))
    nn = {k: np.zeros(len(idx)) for k in (10, 50, 200)}
    for f in range(K):
        tr, te = idx[fold != f], idx[fold == f]
        order = np.argsort(-(D.Hn[te] @ D.Hn[tr].T).toarray(), axis=1)
        for k in nn:
            r = np.clip(D.t[tr][order[:, :k]].mean(1), 1e-3, 1 - 1e-3)
            nn[k][fold == f] = np.log(r / (1 - r))
        lin[fold == f] = fit(D, tr, dict(ld=1e-4, anchor=0.01), D.X, PRIOR)(te)
    res = lambda z: (auc(z, D.t[idx]), apgr(D, z, idx), within_apgr(D, z, idx))
    line("anchored dense model", res(lin))
    for k, z in nn.items():
        line("kNN k=%d" % k, res(z))
        for gam in (0.25, 0.5):
            line("  model + %.2f x kNN k=%d" % (gam, k), res(lin + gam * z))


def exp_heads(D, idx):
    print("\nTwo heads, score = P(weak wrong) - P(strong wrong) = expected gain (dense, "
          "inner CV):")
    tw, ts = 1 - D.w, 1 - D.s
    for anchor, prior_s in ((0.01, 0), (0.01, 1), (0.0, 0)):
        for ldw, lds in ((1e-4, 1e-2), (1e-4, 1e-4), (1e-3, 1e-2)):
            def make(tr):
                lam = np.where((PRIOR != 0) & (anchor > 0), anchor, ldw)
                bw, ww, _ = logit_fit(D.X[tr], tw[tr], lam, PRIOR)
                ps = PRIOR if prior_s else np.zeros(len(PRIOR))
                lams = np.where((ps != 0) & (anchor > 0), anchor, lds)
                bs, wsv, _ = logit_fit(D.X[tr], ts[tr], lams, ps)
                return lambda rix: sigmoid(bw[0] + D.X[rix] @ ww) - sigmoid(bs[0] + D.X[rix] @ wsv)
            line("%s, strong head prior %s, ld %g/%g" % ("anchored" if anchor else "free",
                                                        "config" if prior_s else "zero", ldw, lds),
                 inner(D, idx, make))


# ---- the outer look ------------------------------------------------------------

def outer(D):
    """Nested LOGO: per outer group, words lambda (off, 1e-2, 3e-3, 1e-3) chosen by
    inner AUC for pooled and for fixed effects; 'CV chooses' takes whichever
    has the better inner AUC. Prints held-out figures (a look: count it)."""
    LH = (0, 1e-2, 3e-3, 1e-3)
    scores = {p: {} for p in ("pooled", "fixed effects", "CV chooses")}
    for g in range(len(D.groups)):
        idx, te = np.where(D.gi != g)[0], np.where(D.gi == g)[0]
        best = {}
        for fe in (0, 1):
            res = []
            for lh in LH:
                hp = dict(ld=1e-4, anchor=0.01, fe=fe, lh=lh)
                res.append((inner(D, idx, lambda tr: fit(D, tr, hp, D.X, PRIOR))[0], hp))
            a, hp = max(res, key=lambda x: x[0])  # first (strongest) wins a tie
            best[fe] = (a, fit(D, idx, hp, D.X, PRIOR)(te))
        pick = 1 if best[1][0] > best[0][0] + 1e-9 else 0
        for name, z in (("pooled", best[0][1]), ("fixed effects", best[1][1]),
                        ("CV chooses", best[pick][1])):
            for i, zi in zip(te, z):
                scores[name][D.rows[i]["id"]] = zi
        sys.stderr.write(".")
        sys.stderr.flush()
    print("\nHeld-out (outer) figures, leave-one-group-out:")
    for name, s in scores.items():
        f = cv.figures(D.rows, lambda r: s[r["id"]])
        print("  %-14s overall %.3f  gsm8k %.3f  mmlu %.3f  within %.3f  between %.3f" % (
            name, f["overall"][0], f["gsm8k"][0], f["mmlu"][0], f["within"][0], f["between"][0]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("build")
    ap.add_argument("--fold", default="routellm-gsm8k")
    ap.add_argument("--only", default="univariate,fe,words,brief,interact,centroid,knn,heads")
    ap.add_argument("--outer", action="store_true")
    a = ap.parse_args()
    build = a.build if os.path.isabs(a.build) else os.path.join(TOP, a.build)
    labels = os.environ.get("TG_EVAL_SET", os.path.join(TOP, "..", "shared", "eval",
                                                        "routing_dev.jsonl"))
    sys.path.insert(0, os.path.dirname(os.path.abspath(labels)))
    import score_router
    cv.SR = score_router
    with tempfile.TemporaryDirectory(prefix="tg-twopart-") as tmp:
        D = Data(*prepare(build, labels, tmp))
    if a.outer:
        outer(D)
        return
    g = D.groups.index(a.fold)
    idx = np.where(D.gi != g)[0]
    print("Inner CV on the training rows of the %s fold (%d rows, %d groups, %d grouped folds); "
          "the outer group's labels are not read." % (a.fold, len(idx), len(D.groups) - 1, K))
    for e in a.only.split(","):
        globals()["exp_" + e](D, idx)


if __name__ == "__main__":
    main()
