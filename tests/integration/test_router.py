# SPDX-License-Identifier: MIT
"""The learned router (issue 12): router.model loads a model file written by
`tiergate train`, the route header and decision line explain a decision,
SIGHUP swaps models while requests are in flight, and a bad model file is
refused with the old one kept (on reload) or a file:line error (at start)."""
import json
import os
import subprocess
import tempfile
import threading
import time

from harness import TIERGATE, Gateway, check, eq, test, wait_for

FNV_OFFSET = 0xcbf29ce484222325
FNV_PRIME = 0x100000001b3
SEED = 0x746731726f757465
M64 = (1 << 64) - 1


def bucket(word):
    """tg_router_bucket(FNV-1a(word)): a word's hash bucket (router.h)."""
    h = FNV_OFFSET
    for b in word.encode():
        h = ((h ^ b) * FNV_PRIME) & M64
    h ^= SEED
    h ^= h >> 33
    h = (h * 0xff51afd7ed558ccd) & M64
    h ^= h >> 33
    h = (h * 0xc4ceb9fe1a85ec53) & M64
    h ^= h >> 33
    return h >> (64 - 18)


_base = {}


def base_model():
    """A real model file from the binary under test (so the cue fingerprint
    and hashing are this build's), trained on a few synthetic lines."""
    if "m" not in _base:
        lines = []
        for i in range(60):
            hard = i % 3 == 0
            lines.append(json.dumps({"id": "g%d-%d" % (i % 3, i), "label": 0 if hard else 1,
                                     "prompt": "%s item %d for the team" % (
                                         "zebra" if hard else "plain", i)}))
        p = subprocess.run([TIERGATE, "train", "-q", "--min-df", "1"], input="\n".join(lines),
                           capture_output=True, text=True, timeout=120)
        check(p.returncode == 0, "train: " + p.stderr)
        _base["m"] = json.loads(p.stdout)
    return json.loads(json.dumps(_base["m"]))


def write_model(path, bias, words=None):
    """The base model with its weights replaced: bias, and {word: weight}."""
    m = base_model()
    m["bias"] = bias
    m["dense"] = {k: 0.0 for k in m["dense"]}
    m["weights"] = sorted([bucket(w), v] for w, v in (words or {}).items())
    m["nweights"] = len(m["weights"])
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(m, f)
    os.rename(tmp, path)  # atomically, as an operator's deploy would


def auto(w, content="please look at this", **fields):
    return w.gw.chat(model="auto", messages=[{"role": "user", "content": content}], **fields)


@test
def model_routes_and_explains(w):
    # The gateway's config file lives in the temp directory: a bare file name
    # in router.model is read from there, not from our working directory.
    fd, path = tempfile.mkstemp(prefix="tg-model-", suffix=".json")
    os.close(fd)
    write_model(path, -4.0, {"zebra": 60.0})
    w.start(router={"model": os.path.basename(path)})

    r = auto(w, "a zebra question")
    eq(r.status, 200, "routed request")
    eq(r.header("x-tiergate-tier"), "expensive")
    h = r.header("x-tiergate-route")
    check(h.startswith("expensive;score=1.00;top=word#%d+" % bucket("zebra")), h)
    check(h.endswith(",bias-4.00"), h)
    d1 = w.gw.decision(r)["route"]
    eq(d1["scorer"], "model")
    check("word#%d" % bucket("zebra") in d1["top"], d1)
    check("zebra" not in json.dumps(d1), "no prompt words in the decision line")
    r = auto(w, "olá")
    eq(r.header("x-tiergate-tier"), "cheap")
    check(r.header("x-tiergate-route").startswith("cheap;score=0.02;top=bias-4.00")
          or ",bias-4.00" in r.header("x-tiergate-route"), r.header("x-tiergate-route"))
    # the dry run names the caller's own words
    r = w.gw.req("POST", "/v1/route", {"model": "auto", "messages": [
        {"role": "user", "content": "one zebra"}]})
    eq(r.status, 200)
    check("word:zebra" in r.json()["top"], r.json())
    os.unlink(path)
    w.start()


@test
def sighup_swaps_the_model_with_requests_in_flight(w):
    d = tempfile.mkdtemp(prefix="tg-model-")
    a, b = os.path.join(d, "a.json"), os.path.join(d, "b.json")
    write_model(a, 5.0)   # every request expensive
    write_model(b, -5.0)  # every request cheap
    w.start(router={"model": a})
    eq(auto(w).header("x-tiergate-tier"), "expensive")
    # requests that are still waiting on the upstream while the model changes
    w.mock.script({"delay_ms": 400}, times=1000)
    results, stop = [], threading.Event()

    def client(k):
        n = 0
        while not stop.is_set():
            n += 1  # distinct prompts: no cache hits, no single-flight
            try:
                r = auto(w, "request %d of client %d" % (n, k))
            except OSError as e:
                results.append((time.time(), str(e), ""))
                return
            results.append((time.time(), r.status, r.header("x-tiergate-route") or ""))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    try:
        swap_under_load(w, d, b, results)
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    check(len(results) >= 12, "enough requests: %d" % len(results))
    eq([s for _, s, _ in results if s != 200], [], "every request answered")
    # some were routed by a, the rest by b: no request failed across the swap
    check(any(h.startswith("expensive") for _, _, h in results), "old model served")
    check(any(h.startswith("cheap") for _, _, h in results), "new model served")
    w.mock.reset()
    w.start()
    for f in os.listdir(d):
        os.unlink(os.path.join(d, f))
    os.rmdir(d)


def swap_under_load(w, d, b, results):
    wait_for(lambda: w.mock.stats()["active"] >= 3, 5, msg="requests in flight")
    t_swap = time.time()
    w.gw.reload(w.config(router={"model": b}))
    wait_for(lambda: "config reloaded" in w.gw.output(), 5, msg="reload")
    wait_for(lambda: any(x[2].startswith("cheap") for x in results), 10, msg="the new model routes")
    # a damaged model file: refused, the running model stays
    with open(os.path.join(d, "bad.json"), "w") as f:
        f.write('{"format": "tiergate-router-model", "version": 1, "features": ')
    w.gw.reload(w.config(router={"model": os.path.join(d, "bad.json")}))
    wait_for(lambda: "reload refused" in w.gw.output(), 5, msg="refusal")
    line = [l for l in w.gw.output().split("\n") if "reload refused" in l][-1]
    check("router.model" in line and "bad.json" in line and "not valid JSON" in line, line)
    t_refused = time.time()
    # after the refusal, requests still route with b (started after it and
    # answered: a delay of 0.4 s, so give them 2 s)
    wait_for(lambda: len([1 for ts, _, _ in results if ts > t_refused + 0.6]) >= 6, 10,
             msg="requests after the refusal")
    late = [h for ts, _, h in results if ts > t_refused + 0.6]
    check(all(h.startswith("cheap") for h in late), "kept b after the refusal: %r" % late)
    check(t_swap < t_refused)


@test
def bad_model_at_start_is_a_config_error(w):
    d = tempfile.mkdtemp(prefix="tg-model-")
    p = os.path.join(d, "m.json")
    m = base_model()
    m["version"] = 7
    with open(p, "w") as f:
        json.dump(m, f)
    cfg = w.config(router={"model": p})
    fd, cpath = tempfile.mkstemp(prefix="tg-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(cfg, f, indent=2)
    r = subprocess.run([TIERGATE, "-c", cpath, "--check-config"], capture_output=True, text=True,
                       env=dict(os.environ, MOCK_KEY="x"), timeout=30)
    check(r.returncode != 0, "refused")
    msg = r.stderr.strip()
    check(msg.startswith(cpath + ":") and "router.model" in msg and
          "version 7 is not supported" in msg, msg)
    os.unlink(cpath)
    os.unlink(p)
    os.rmdir(d)
