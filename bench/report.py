#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""bench/report.py OUT_DIR - turns the raw runs bench/run.sh wrote into
OUT_DIR/results.json (meta, every run, the summary), OUT_DIR/summary.md (the
Markdown tables bench/RESULTS.md quotes) and SVG plots in bench/plots/ (with
gnuplot, when installed). With BENCH_PUBLISH=1 it also replaces the block
between the latest-run markers in bench/RESULTS.md with summary.md. It
measures nothing itself.

Rounds: section 1 and 2 run every target once per round, back to back; each
ratio is taken within a round and the median over rounds is the headline
(each per-round value is listed too). Absolute figures are per-target medians
over rounds."""
import json
import os
import re
import shutil
import subprocess
import sys

OUT = sys.argv[1] if len(sys.argv) > 1 else "bench/out"
HERE = os.path.dirname(os.path.abspath(__file__))
PLOTS = os.path.join(HERE, "plots")
BEGIN, END = "<!-- latest-run:begin -->", "<!-- latest-run:end -->"

# Published figures of peers that cannot be installed here (PyPI and the Go
# module proxy are unreachable from this machine). Quoted, never measured here.
PUBLISHED = {
    "source": "GoModel's June 2026 gateway benchmark (the vendor of one of the four)",
    "urls": ["https://gomodel-feature-failover-management.mintlify.app/about/benchmarks",
             "https://dev.to/s-bandy/benchmarking-ai-gateways-gomodel-vs-litellm-vs-portkey-vs-bifrost-5d98"],
    "setup": "one gateway at a time in Docker on an AWS c7i.large (2 vCPU, 4 GiB), the same instant "
             "mock backend, 8,000 non-streaming chat requests at concurrency 10, two randomized-order "
             "trials (median); retries off; LiteLLM one worker per core. Throughput is the sustained "
             "rate of a separate concurrency sweep.",
    "rows": [  # name, p50 ms, p99 ms, req/s, peak RAM
        ("GoModel", 1.8, 6.9, 4900, "37 MB"),
        ("Bifrost", 2.5, 18.3, 3100, "143 MB"),
        ("Portkey", 9.7, 30.5, 950, "112 MB"),
        ("LiteLLM", 30.6, 39.3, 324, "2.3 GB"),
    ],
    "others": [
        ("Bifrost (its own docs)", "https://docs.getbifrost.ai/benchmarking/t3.medium",
         "5,000 req/s offered on a t3.medium (2 vCPU) against a mocked OpenAI with ~1.5 s latency: "
         "100% success, 59 µs gateway overhead (their own accounting, excluding JSON marshalling and "
         "the HTTP call), peak memory 1.3 GB"),
        ("LiteLLM (its own docs)", "https://docs.litellm.ai/docs/benchmarks",
         "2 instances (4 CPU, 8 GB each) against a fake OpenAI endpoint: 1,036 req/s, median "
         "200 ms, p99 1,200 ms, LiteLLM's own overhead median 12 ms; 4 instances: median 100 ms, "
         "overhead median 2 ms"),
    ],
}

PEERS = ["direct", "nginx", "tiergate", "tiergate-hit", "portkey"]
LABEL = {"direct": "mock direct", "nginx": "nginx proxy_pass", "tiergate": "tiergate pass-through",
         "tiergate-hit": "tiergate cache hit", "portkey": "Portkey OSS"}


def med(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else None


def rps(w):
    return w["requests"] / (w["duration_us"] / 1e6)


def errs(w):
    return w["connect"] + w["read"] + w["write"] + w["status"] + w["timeout"]


def load(name, default=None):
    p = os.path.join(OUT, name)
    if not os.path.exists(p):
        return default
    with open(p) as f:
        return json.load(f)


def fmt(x, nd=0):
    if x is None:
        return "—"
    return ("{:,.%df}" % nd).format(x)


def runs_by(rows, section):
    """{(name, conns): [wrk per round, in round order]}"""
    out = {}
    for r in rows:
        if r.get("section") == section:
            out.setdefault((r["name"], r["conns"]), []).append(r["wrk"])
    return out


def summarize_rounds(runs, names, conns_list, base="nginx"):
    s = {"targets": {}, "ratios": {}}
    for (name, c), ws in runs.items():
        s["targets"].setdefault(name, {})[str(c)] = {
            "rounds": len(ws), "rps": med([rps(w) for w in ws]), "rps_rounds": [rps(w) for w in ws],
            "p50_ms": med([w["p50"] / 1000 for w in ws]), "p99_ms": med([w["p99"] / 1000 for w in ws]),
            "errors": sum(errs(w) for w in ws)}
    for c in conns_list:
        d = runs.get(("direct", c), [])
        for name in names:
            if name in ("direct",) or (name, c) not in runs:
                continue
            t = runs[(name, c)]
            key = "%s_c%d" % (name, c)
            if (base, c) in runs and name != base:
                rs = [rps(a) / rps(b) for a, b in zip(t, runs[(base, c)])]
                s["ratios"]["%s_vs_%s_rps" % (key, base)] = {"median": med(rs), "rounds": rs}
            if d:
                added = [(a["p50"] - b["p50"]) / 1000 for a, b in zip(t, d)]
                s["ratios"]["%s_added_p50_ms" % key] = {"median": med(added), "rounds": added}
                added99 = [(a["p99"] - b["p99"]) / 1000 for a, b in zip(t, d)]
                s["ratios"]["%s_added_p99_ms" % key] = {"median": med(added99), "rounds": added99}
    return s


def ratio_of_added(runs, a, b, c):
    """Per round: (a's p50 - direct's) / (b's p50 - direct's)."""
    d, ta, tb = runs.get(("direct", c)), runs.get((a, c)), runs.get((b, c))
    if not (d and ta and tb):
        return None
    rs = [(x["p50"] - z["p50"]) / max(y["p50"] - z["p50"], 1) for x, y, z in zip(ta, tb, d)]
    return {"median": med(rs), "rounds": rs}


def parse_cost(path):
    if not os.path.exists(path):
        return None
    text = open(path).read()
    m = re.search(r"per request: (\d+) instructions", text)
    top, by_object = [], {}
    for line in text.split("\n"):
        m2 = re.match(r"\s*([\d,]+) \(\s*([\d.]+)%\)\s+(.*)", line)
        if not m2 or "PROGRAM TOTALS" in line:
            continue
        ir, where = int(m2.group(1).replace(",", "")), m2.group(3).strip()
        # "file:function [/path/to/object]" -> object basename, short function
        obj = re.search(r"\[([^\]]+)\]\s*$", where)
        if not obj:
            continue  # an annotated source line, not a function total
        obj = os.path.basename(obj.group(1))
        obj = re.sub(r"\.so[.\d]*$", "", obj)
        fn = re.sub(r"\s*\[[^\]]+\]\s*$", "", where).split(":", 1)[-1]
        by_object[obj] = by_object.get(obj, 0) + ir
        top.append({"ir": ir, "pct": float(m2.group(2)), "object": obj, "function": fn})
    return {"instructions_per_request": int(m.group(1)) if m else None, "top": top,
            "by_object": sorted(by_object.items(), key=lambda kv: -kv[1])}


def main():
    rows = [json.loads(l) for l in open(os.path.join(OUT, "results.jsonl")) if l.strip()]
    meta = load("meta.json", {})
    own = load("own_time.json", {})
    proc = load("process.json", {})
    router = open(os.path.join(OUT, "router.txt")).read() if os.path.exists(os.path.join(OUT, "router.txt")) else ""
    cost = parse_cost(os.path.join(OUT, "cost.txt"))
    sem_txt = os.path.join(OUT, "semantic.txt")
    semantic = {"index": open(sem_txt).read().strip().split("\n") if os.path.exists(sem_txt) else [],
                "gateway": load("semantic_gateway.json", {})}
    batch = load("batch.json", {})

    peers_runs = runs_by(rows, "peers")
    tls_runs = runs_by(rows, "tls")
    held = runs_by(rows, "held")
    streams = [r for r in rows if r.get("section") == "streams"]
    peers = summarize_rounds(peers_runs, PEERS, [1, 10, 64])
    tls = summarize_rounds(tls_runs, PEERS, [10, 64])
    for c in (1, 10, 64):
        for a, b in (("tiergate", "nginx"), ("portkey", "nginx"), ("tiergate", "portkey")):
            r = ratio_of_added(peers_runs, a, b, c)
            if r:
                peers["ratios"]["%s_vs_%s_added_p50_c%d" % (a, b, c)] = r
        t, p = peers_runs.get(("tiergate", c)), peers_runs.get(("portkey", c))
        if t and p:
            rs = [rps(x) / rps(y) for x, y in zip(t, p)]
            peers["ratios"]["tiergate_c%d_vs_portkey_rps" % c] = {"median": med(rs), "rounds": rs}
    direct_ttft = None
    for s in streams:
        if s["name"] == "direct":
            direct_ttft = s["stream"]["ttft_ms"]["p50"]
    st_summary = []
    for s in streams:
        j = s["stream"]
        st_summary.append({"name": s["name"], "mode": s["mode"], "ttft_p50_ms": j["ttft_ms"]["p50"],
                           "ttft_p99_ms": j["ttft_ms"]["p99"],
                           "ttft_added_p50_ms": (j["ttft_ms"]["p50"] - direct_ttft) if direct_ttft is not None else None,
                           "stream_p50_ms": j["total_ms"]["p50"], "chunks_per_s": j["chunks_per_s"],
                           "spread_p50_ms": j["spread_ms"]["p50"], "first_error": j.get("first_error", ""),
                           "stream_chunks_per_s_p50": j["stream_chunks_per_s"]["p50"],
                           "chunks_per_stream": j["chunks"] / max(j["ok"], 1), "errors": j["errors"],
                           "requests": j["requests"]})
    summary = {"peers": peers, "tls": tls, "streams": st_summary, "own_time": own, "process": proc,
               "held": {k[0]: {"conns": k[1], "errors": errs(v[0]), "completed": v[0]["requests"],
                               "p50_ms": v[0]["p50"] / 1000, "p99_ms": v[0]["p99"] / 1000}
                        for k, v in held.items()},
               "cost": cost, "router": router.strip().split("\n") if router else [],
               "semantic": semantic,
               "batch": batch,
               "published_peers": PUBLISHED}
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump({"meta": meta, "summary": summary, "runs": rows}, f, indent=1)
    md = markdown(meta, summary)
    with open(os.path.join(OUT, "summary.md"), "w") as f:
        f.write(md)
    print(md)
    plots(meta, summary)
    if os.environ.get("BENCH_PUBLISH") == "1":
        publish(md)


def publish(md):
    path = os.path.join(HERE, "RESULTS.md")
    text = open(path).read()
    a, b = text.find(BEGIN), text.find(END)
    if a < 0 or b < a:
        print("BENCH_PUBLISH: no latest-run markers in %s; nothing replaced" % path)
        return
    text = text[:a + len(BEGIN)] + "\n" + md.rstrip("\n") + "\n" + text[b:]
    with open(path, "w") as f:
        f.write(text)
    print("BENCH_PUBLISH: %s updated" % os.path.relpath(path))


def rline(r, nd=2, unit=""):
    if not r:
        return "—"
    return "**%s%s** (rounds %s)" % (fmt(r["median"], nd), unit, " ".join(fmt(x, nd) for x in r["rounds"]))


def markdown(meta, s):
    L = []
    k = meta.get("knobs", {})
    stamp = "smoke run (BENCH_QUICK=1)" if meta.get("quick") else "full run"
    la0 = " ".join(meta.get("loadavg_start", [])) or "?"
    try:
        busy = float(meta.get("loadavg_start", ["0"])[0]) >= 1.0
    except ValueError:
        busy = False
    if busy:
        L.append("> **Loaded machine:** the 1-minute load average was already %s when this run started "
                 "(other jobs shared the cores), so these figures are noisy: read them as a check that "
                 "every section works, not as results." % meta["loadavg_start"][0])
        L.append("")
    la1 = " ".join(s["process"].get("loadavg_end", [])) or "?"
    L.append("Run of %s, commit %s, %s: %s, %s cores, Linux %s; load average %s at the start, %s at "
             "the end. %s s per run (%s s at 1 connection, %s s with the TLS upstream), %s rounds; tiergate "
             "and nginx %s workers/shards; mock 1 thread; wrk -t1." % (
                 meta.get("started_utc", "?"), meta.get("commit", "?"), stamp, meta.get("cpu", "?"),
                 meta.get("cores", "?"), meta.get("kernel", "?"), la0, la1, k.get("seconds"),
                 k.get("c1_seconds", k.get("seconds")), k.get("tls_seconds"), k.get("rounds"), k.get("shards")))
    L.append("")
    p = s["peers"]
    if p["targets"]:
        peers_md(L, p)
    tls_md(L, s, k)
    streams_md(L, s, k)
    rest_md(L, s, k)
    return "\n".join(L)


def peers_md(L, p):
    L.append("### 1. Peers, plain-HTTP upstream (median of rounds)")
    L.append("")
    L.append("| target | c=1 req/s | c=1 p50 / p99 | c=10 req/s | c=10 p50 / p99 | c=64 req/s | c=64 p50 / p99 | errors |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for n in PEERS:
        t = p["targets"].get(n)
        if not t:
            continue
        cells = []
        e = 0
        for c in ("1", "10", "64"):
            x = t.get(c)
            if not x:
                cells += ["—", "—"]
                continue
            e += x["errors"]
            cells += [fmt(x["rps"]), "%s / %s ms" % (fmt(x["p50_ms"], 3), fmt(x["p99_ms"], 3))]
        L.append("| %s | %s | %d |" % (LABEL[n], " | ".join(cells), e))
    L.append("")
    R = p["ratios"]
    L.append("| ratio (per round, then the median) | c=10 | c=64 |")
    L.append("|---|---|---|")
    for key, label in (("tiergate_c%d_vs_nginx_rps", "tiergate pass-through / nginx, req/s (target ≥ 0.6)"),
                       ("tiergate-hit_c%d_vs_nginx_rps", "tiergate cache hit / nginx proxying, req/s (target ≥ 1.0)"),
                       ("portkey_c%d_vs_nginx_rps", "Portkey / nginx, req/s"),
                       ("tiergate_c%d_vs_portkey_rps", "tiergate pass-through / Portkey, req/s")):
        if R.get(key % 10) or R.get(key % 64):
            L.append("| %s | %s | %s |" % (label, rline(R.get(key % 10)), rline(R.get(key % 64))))
    L.append("")
    L.append("| latency added over the mock direct, p50 (p99) | c=1 | c=10 | c=64 |")
    L.append("|---|---|---|---|")
    for n in ("nginx", "tiergate", "tiergate-hit", "portkey"):
        cells = []
        for c in (1, 10, 64):
            a, b = R.get("%s_c%d_added_p50_ms" % (n, c)), R.get("%s_c%d_added_p99_ms" % (n, c))
            cells.append("%s (%s) ms" % (fmt(a["median"], 3), fmt(b["median"], 3)) if a and b else "—")
        if any(x != "—" for x in cells):
            L.append("| %s | %s |" % (LABEL[n], " | ".join(cells)))
    r = R.get("tiergate_vs_nginx_added_p50_c1")
    if r:
        L.append("| tiergate's added p50 / nginx's, c=1 | %s | | |" % rline(r))
    L.append("")
    L.append("![Requests/s through each gateway](plots/peers_throughput.svg)")
    L.append("")


def tls_md(L, s, k):
    t = s["tls"]
    if t["targets"]:
        L.append("### 2. HTTPS upstream (the mock serving TLS 1.3; median of rounds)")
        L.append("")
        L.append("| target | c=10 req/s | c=10 p50 / p99 | c=64 req/s | c=64 p50 / p99 | added p50 c=10 / c=64 | errors |")
        L.append("|---|---:|---:|---:|---:|---:|---:|")
        for n in ("direct", "nginx", "tiergate", "portkey"):
            x = t["targets"].get(n)
            if not x:
                continue
            cells, e = [], 0
            for c in ("10", "64"):
                y = x.get(c)
                e += y["errors"] if y else 0
                cells += [fmt(y["rps"]) if y else "—",
                          "%s / %s ms" % (fmt(y["p50_ms"], 3), fmt(y["p99_ms"], 3)) if y else "—"]
            a10, a64 = t["ratios"].get("%s_c10_added_p50_ms" % n), t["ratios"].get("%s_c64_added_p50_ms" % n)
            added = "%s / %s ms" % (fmt(a10["median"], 3), fmt(a64["median"], 3)) if a10 and a64 else "—"
            L.append("| %s (TLS upstream) | %s | %s | %d |" % (LABEL[n], " | ".join(cells), added, e))
        L.append("")
        for c in (10, 64):
            r = t["ratios"].get("tiergate_c%d_vs_nginx_rps" % c)
            if r:
                L.append("- tiergate / nginx req/s with a TLS upstream, c=%d: %s" % (c, rline(r)))
            r = t["ratios"].get("portkey_c%d_vs_nginx_rps" % c)
            if r:
                L.append("- Portkey / nginx req/s with a TLS upstream, c=%d: %s" % (c, rline(r)))
        o = s["own_time"]
        if o.get("pinned_tls"):
            L.append("")
            L.append("![HTTP vs HTTPS upstream](plots/tls_throughput.svg)")
            L.append("")
            L.append("- tiergate's own time (`x-tiergate-overhead-ms`, p50 / p90): %s / %s ms to a TLS "
                     "upstream, %s / %s ms to the plain one" % (
                         fmt(o["pinned_tls"]["p50_ms"], 3), fmt(o["pinned_tls"]["p90_ms"], 3),
                         fmt(o["pinned"]["p50_ms"], 3), fmt(o["pinned"]["p90_ms"], 3)))
        L.append("")


def streams_md(L, s, k):
    if s["streams"]:
        L.append("### 3. Streams (the mock drips %s chunks of 4 characters, one every %s ms; %s streams, "
                 "%s at once)" % (k.get("stream_tokens"), k.get("drip_ms"), k.get("stream_requests"),
                                  k.get("stream_conns")))
        L.append("")
        L.append("| target | stream mode | TTFT p50 | TTFT p99 | TTFT added (p50) | whole stream p50 | first → last chunk (p50) | chunks/s, all streams | failed |")
        L.append("|---|---|---:|---:|---:|---:|---:|---:|---|")
        names = {"direct": "mock direct", "nginx": "nginx proxy_pass", "portkey": "Portkey OSS",
                 "tiergate-live-last-tier": "tiergate, last tier (live)",
                 "tiergate-buffered-cheap": "tiergate, cheap tier (may escalate: held per stream mode)",
                 "tiergate-cache-hit": "tiergate, cache hit replay"}
        for x in s["streams"]:
            name = names.get(x["name"], x["name"])
            failed = "%d of %d" % (x["errors"], x["requests"])
            if x["errors"]:
                failed += " (first: %s)" % x["first_error"]
            if x["errors"] == x["requests"]:
                L.append("| %s | %s | — | — | — | — | — | — | %s |" % (name, x["mode"], failed))
                continue
            L.append("| %s | %s | %s ms | %s ms | %s ms | %s ms | %s ms | %s | %s |" % (
                name, x["mode"], fmt(x["ttft_p50_ms"], 2), fmt(x["ttft_p99_ms"], 2),
                fmt(x["ttft_added_p50_ms"], 2), fmt(x["stream_p50_ms"], 1), fmt(x["spread_p50_ms"], 1),
                fmt(x["chunks_per_s"]), failed))
        L.append("")
        L.append("![Time to first token](plots/ttft.svg)")
        L.append("")


def rest_md(L, s, k):
    p = s["peers"]
    o = s["own_time"]
    if o:
        L.append("### 4. The gateway's own time (`x-tiergate-overhead-ms`)")
        L.append("")
        L.append("| request | p50 | p90 | n |")
        L.append("|---|---:|---:|---:|")
        for key, label in (("pinned", "pinned to the last tier (pass-through)"),
                           ("pinned_tls", "the same to the TLS upstream"),
                           ("first_tier_ok", "accepted on the first (cheap) tier after validation"),
                           ("one_escalation", "one escalation (cheap hedges, medium answers)")):
            if key in o:
                L.append("| %s | %s ms | %s ms | %d |" % (label, fmt(o[key]["p50_ms"], 3), fmt(o[key]["p90_ms"], 3),
                                                          o[key]["n"]))
        L.append("")
    h = s["held"]
    if h:
        pr = s["process"]
        L.append("### 5. %s concurrent streams held 2 s each" % k.get("streams"))
        L.append("")
        L.append("| target | completed | errors | p50 | p99 |")
        L.append("|---|---:|---:|---:|---:|")
        for n in ("tiergate", "nginx"):
            if n in h:
                L.append("| %s | %s | %d | %s ms | %s ms |" % (n, fmt(h[n]["completed"]), h[n]["errors"],
                                                              fmt(h[n]["p50_ms"], 0), fmt(h[n]["p99_ms"], 0)))
        L.append("")
        L.append("tiergate: peak RSS %.1f MB, %d threads (%d before); RSS after section 1: %.1f MB%s." % (
            pr.get("held_hwm_kb", 0) / 1024, pr.get("held_threads", 0), pr.get("threads_before", 0),
            pr.get("pass_rss_kb", 0) / 1024,
            "; Portkey's RSS after section 1: %.1f MB" % (pr["portkey_rss_kb"] / 1024) if pr.get("portkey_rss_kb") else ""))
        L.append("")
    if s["router"]:
        L.append("### 6. The router alone")
        L.append("")
        L.append("```")
        L.extend(s["router"])
        L.append("```")
        L.append("")
    c = s["cost"]
    if c:
        L.append("### 7. Instructions per pass-through request (callgrind, user space)")
        L.append("")
        per = c["instructions_per_request"]
        total = sum(v for _, v in c["by_object"]) or 1
        L.append("**%s instructions per request** (`CALLGRIND=1 bench/cost_per_request.sh`). By library "
                 "(self cost; callgrind counts every iteration of `rep stosb`, so libc's memset, mostly "
                 "MHD's pool reset, looks bigger than it runs):" % fmt(per))
        L.append("")
        L.append("| library | per request | share |")
        L.append("|---|---:|---:|")
        for obj, ir in c["by_object"][:8]:
            if ir < total * 0.005:
                continue
            L.append("| %s | %s | %.0f%% |" % (obj, fmt(per * ir / total), 100.0 * ir / total))
        L.append("")
        L.append("Largest functions: " + "; ".join(
            "`%s` (%s, %.1f%%)" % (x["function"][:60], x["object"], x["pct"]) for x in c["top"][:8]) + ".")
        L.append("")
    semantic_markdown(L, s.get("semantic", {}))
    batch_md(L, s.get("batch") or {})
    pk = p["targets"].get("portkey", {}).get("10")
    pub = PUBLISHED
    L.append("### Peers not measured here (published figures)")
    L.append("")
    L.append("From %s: %s Not measured here: PyPI (LiteLLM) and the Go module proxy (Bifrost, GoModel) "
             "are unreachable from this machine, and the harness, hardware and Docker setup differ, so "
             "only ratios within one table compare." % (pub["source"], pub["setup"]))
    L.append("")
    L.append("| gateway (published, not measured here) | p50 at c=10 | p99 at c=10 | req/s (sweep) | × Portkey req/s | peak RAM |")
    L.append("|---|---:|---:|---:|---:|---:|")
    for name, p50, p99, r, ram in pub["rows"]:
        L.append("| %s | %.1f ms | %.1f ms | %s | %.2f× | %s |" % (name, p50, p99, fmt(r), r / 950.0, ram))
    t10 = p["targets"].get("tiergate", {}).get("10")
    if pk and t10:
        L.append("| *measured here: tiergate pass-through vs Portkey, c=10* | %s ms | %s ms | %s | %.2f× | |" % (
            fmt(t10["p50_ms"], 2), fmt(t10["p99_ms"], 2), fmt(t10["rps"]), t10["rps"] / pk["rps"]))
        L.append("| *measured here: Portkey, c=10* | %s ms | %s ms | %s | 1.00× | |" % (
            fmt(pk["p50_ms"], 2), fmt(pk["p99_ms"], 2), fmt(pk["rps"])))
    L.append("")
    L.append("Sources: " + ", ".join(pub["urls"]) + ".")
    for name, url, text in pub["others"]:
        L.append("- %s, %s: %s." % (name, url, text))
    L.append("")


def semantic_markdown(L, sem):
    """Section 8: the index alone (sem_bench's table, as printed) and the
    gateway with the semantic cache on."""
    if not sem.get("index") and not sem.get("gateway"):
        return
    L.append("### 8. The semantic cache")
    L.append("")
    if sem.get("index"):
        L.append("The index alone (`bench/semantic.sh`, columns in bench/semantic.md):")
        L.append("")
        L.extend(l for l in sem["index"] if not l.startswith("#"))
        L.append("")
    g = sem.get("gateway")
    if g:
        L.append("Through the gateway (`bench/semantic_gateway.py`): %s stored answers in one tenant, "
                 "%s sequential requests of each kind; own time = x-tiergate-overhead-ms (the gateway's "
                 "CPU and Redis round trips, not the embedding call):" % (fmt(g["entries"]), g["requests_each"]))
        L.append("")
        L.append("| request | own time p50 | own time p90 | client p50 | client p90 |")
        L.append("|---|---:|---:|---:|---:|")
        for k in ("exact_hit", "semantic_hit", "semantic_miss"):
            if k in g:
                v = g[k]
                L.append("| %s | %s ms | %s ms | %s ms | %s ms |" % (
                    k.replace("_", " "), fmt(v["own_p50_ms"], 3), fmt(v["own_p90_ms"], 3),
                    fmt(v["total_p50_ms"], 3), fmt(v["total_p90_ms"], 3)))
        L.append("")


def batch_md(L, b):
    if not b:
        return
    L.append("### 9. Batches (`bench/batch_bench.py`: gateway mode, the mock answering at once)")
    L.append("")
    L.append("| %d-line batch, POST /v1/batches to completed | wall | lines/s |" % b["lines"])
    L.append("|---|---:|---:|")
    for c in (4, 32):
        t = b.get("throughput_c%d" % c)
        if t:
            L.append("| batch.max_concurrency %d%s | %.2f s | %s |" % (
                c, " (default)" if c == 4 else "", t["wall_s"], fmt(t["lines_per_s"])))
    L.append("")
    L.append("Live requests (wrk -c%d, %d s, `Cache-Control: no-store`) alone and while a %d-line batch "
             "runs (batch.max_concurrency 4):" % (b["live_conns"], b["live_seconds"], b["lines"]))
    L.append("")
    L.append("| live traffic | req/s | p50 | p99 | batch lines done meanwhile |")
    L.append("|---|---:|---:|---:|---|")
    for key, label in (("live_alone", "alone"), ("live_with_batch_yield64", "with a batch, yield_inflight 64"),
                       ("live_with_batch_yield1", "with a batch, yield_inflight 1 (default)")):
        v = b.get(key)
        if v:
            L.append("| %s | %s | %s ms | %s ms | %s |" % (
                label, fmt(v["rps"]), fmt(v["p50_ms"], 3), fmt(v["p99_ms"], 3),
                "%d (%s after)" % (v["batch_lines_meanwhile"], v["batch_status_after"])
                if "batch_lines_meanwhile" in v else "—"))
    L.append("")
    L.append("Live p99 with a batch running / alone: %.2f× (yield_inflight 64), %.2f× (yield_inflight 1); "
             "load average at the end %s." % (b.get("p99_ratio_yield64", 0), b.get("p99_ratio_yield1", 0),
                                             " ".join(b.get("loadavg_end", []))))
    L.append("")


def plots(meta, s):
    if not shutil.which("gnuplot"):
        print("(gnuplot not installed: no plots)")
        return
    os.makedirs(PLOTS, exist_ok=True)
    tag = "%s, %s%s" % (meta.get("started_utc", ""), meta.get("commit", ""),
                        " — smoke run, loaded machine" if meta.get("quick") else "")
    short = {"direct": "mock direct", "nginx": "nginx", "tiergate": "tiergate", "tiergate-hit": "tiergate hit",
             "portkey": "Portkey"}
    dat = os.path.join(OUT, "plot_peers.dat")
    with open(dat, "w") as f:
        for n in PEERS:
            t = s["peers"]["targets"].get(n)
            if t:
                f.write('"%s" %s\n' % (short[n], " ".join("%.0f" % (t.get(c, {}).get("rps") or 0)
                                                          for c in ("1", "10", "64"))))
    dat2 = os.path.join(OUT, "plot_tls.dat")
    with open(dat2, "w") as f:
        for n in ("direct", "nginx", "tiergate", "portkey"):
            a = s["peers"]["targets"].get(n, {}).get("64")
            b = s["tls"]["targets"].get(n, {}).get("64")
            if a or b:
                f.write('"%s" %.0f %.0f\n' % (short[n], (a or {}).get("rps") or 0, (b or {}).get("rps") or 0))
    dat3 = os.path.join(OUT, "plot_ttft.dat")
    names = {"direct": "mock direct", "nginx": "nginx", "portkey": "Portkey",
             "tiergate-live-last-tier": "tiergate live", "tiergate-buffered-cheap": "tiergate cheap tier",
             "tiergate-cache-hit": "tiergate hit"}
    with open(dat3, "w") as f:
        for x in s["streams"]:
            if x["errors"] == x["requests"]:
                continue
            lab = names.get(x["name"], x["name"]) + ("" if x["mode"] in ("-", "default") else " (%s)" % x["mode"])
            f.write('"%s" %.3f %.3f\n' % (lab, x["ttft_p50_ms"], x["ttft_p99_ms"]))
    common = ('set terminal svg size 860,420 dynamic font "sans,11" background "#ffffff"\n'
              "set style data histograms\nset style histogram clustered gap 1\n"
              "set style fill solid 0.85 border -1\nset grid ytics\nset key top right\n"
              "set yrange [0:*]\nset xtics noenhanced\n")
    scripts = {
        "peers_throughput.svg": common + (
            "set title noenhanced \"Requests/s through each gateway, plain-HTTP upstream (median of rounds)\\n%s\"\n"
            "set ylabel 'requests/s'\n"
            "plot '%s' using 2:xtic(1) title '1 connection', '' using 3 title '10 connections', "
            "'' using 4 title '64 connections'\n") % (tag, dat),
        "tls_throughput.svg": common + (
            "set title noenhanced \"Requests/s at 64 connections: plain-HTTP vs HTTPS upstream\\n%s\"\n"
            "set ylabel 'requests/s'\n"
            "plot '%s' using 2:xtic(1) title 'HTTP upstream', '' using 3 title 'HTTPS upstream'\n") % (tag, dat2),
        "ttft.svg": common + (
            "set title noenhanced \"Time to first token (the mock drips one chunk every %s ms)\\n%s\"\n"
            "set ylabel 'ms'\n"
            "plot '%s' using 2:xtic(1) title 'p50', '' using 3 title 'p99'\n") % (
                meta.get("knobs", {}).get("drip_ms"), tag, dat3),
    }
    for name, script in scripts.items():
        if (name == "ttft.svg" and not s["streams"]) or (name == "tls_throughput.svg" and not s["tls"]["targets"]) \
                or (name == "peers_throughput.svg" and not s["peers"]["targets"]):
            continue  # a BENCH_SECTIONS subset: keep that plot as it was
        dest = os.path.join(PLOTS, name)
        p = subprocess.run(["gnuplot"], input=script.replace("\n", "\nset output '%s'\n" % dest, 1), text=True,
                           capture_output=True)
        if p.returncode != 0:
            print("gnuplot failed for %s: %s" % (name, p.stderr[-500:]))
        else:
            print("plot: %s" % os.path.relpath(dest))


if __name__ == "__main__":
    main()
