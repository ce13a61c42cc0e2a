# SPDX-License-Identifier: MIT
"""Provider mode (batch.mode "provider", issue 16 item 4): the batch is
forwarded to the providers' own Batch API — one provider batch per pinned
model, bodies byte for byte with the model renamed — polled with backoff,
and the provider's output and error files mapped back, costed at
batch_discount. The mock plays the provider (tests/mock/batches.c)."""
import json

from batchlib import check_exactly_once, content, create_ok, jsonl, line, upload_ok, wait_status
from harness import Gateway, World, check, eq, test, wait_for

PROVIDER = {"mode": "provider", "lease_s": 2, "poll_min_s": 1, "poll_max_s": 1}
PRICES = {"gpt-cheap": (0.15, 0.60), "gpt-mid": (0.40, 1.60), "gpt-large": (2.50, 10.00)}
WORLD = lambda: World(batch=PROVIDER)  # noqa: E731


def provider_batches(w):
    return w.mock.ctl("GET", "/_mock/batches")


def files(gw, b):
    out = content(gw, b["output_file_id"]) if b["output_file_id"] else []
    err = content(gw, b["error_file_id"]) if b["error_file_id"] else []
    return out, err


@test
def forwarded_to_the_provider_and_mapped_back(w):
    w.mock.script({"status": 500}, body_contains="marker-boom", times=-1)
    text = "".join([
        line("c1", model="cheap", temperature=0.7) + "\n",
        line("c2", model="cheap") + "\n",
        line("e1", model="expensive") + "\n",
        line("m1", model="mid") + "\n",
        line("nope", model="gpt-unknown") + "\n",
        line("boom", model="cheap") + "\n",
    ])
    fid = upload_ok(w.gw, text)
    bid = create_ok(w.gw, fid)
    b = wait_status(w.gw, bid, "completed", 60)
    eq(b["tiergate"]["mode"], "provider")
    out, err = files(w.gw, b)
    check_exactly_once(b, out, err, ["c1", "c2", "e1", "m1", "nope", "boom"])
    eq(sorted(l["custom_id"] for l in out), ["c1", "c2", "e1", "m1"])
    errs = {l["custom_id"]: l for l in err}
    eq(errs["nope"]["error"]["code"], "model_not_found")
    eq(errs["boom"]["response"]["status_code"], 500)
    # one provider batch per model, every line sent once, models renamed
    pbs = provider_batches(w)
    eq(len(pbs), 3, repr(pbs))
    check(all(p["status"] == "completed" for p in pbs))
    recs = w.mock.requests()
    check(all("/batches/" in r["path"] for r in recs), "no chat calls: the provider ran the lines")
    eq(sorted(r["model"] for r in recs), ["gpt-cheap", "gpt-cheap", "gpt-cheap", "gpt-large",
                                          "gpt-mid"])
    # what the provider was given: the client's bytes, model renamed
    from harness import request
    sent = "".join(request(w.mock.port, "GET", "/v1/files/%s/content" % p["input_file_id"]).body.decode()
                   for p in pbs)
    c1 = [json.loads(l) for l in sent.split("\n") if '"c1"' in l][0]
    eq(c1["body"]["model"], "gpt-cheap")
    eq(c1["url"], "/v1/chat/completions")
    raw = [l for l in sent.split("\n") if '"c1"' in l][0]
    check('"temperature": 0.7}' in raw, "numbers forwarded byte for byte: " + raw)
    # cost at the batch price: half the configured price
    want = 0.0
    for l in out + [errs["boom"]]:
        u = l["response"]["body"].get("usage")
        if u:
            pin, pout = PRICES[l["response"]["body"].get("model", "gpt-cheap")]
            want += (u["prompt_tokens"] * pin + u["completion_tokens"] * pout) / 1e6 * 0.5
    check(abs(b["tiergate"]["cost_usd"] - want) < 1e-8, "cost %r vs %r" % (b["tiergate"]["cost_usd"], want))
    eq([l["custom_id"] for l in out], [c for c in ["c1", "c2", "e1", "m1"]], "input order")


@test
def cancel_is_forwarded(w):
    w.mock.ctl("POST", "/_mock/batches", {"polls": 1000})
    try:
        bid = create_ok(w.gw, upload_ok(w.gw, jsonl(4)))
        wait_for(lambda: len(provider_batches(w)) >= 1 and
                 wait_status(w.gw, bid, "in_progress") and
                 json.loads(w.redis.cmd("HGET", "tiergate:v1:anon:batch:" + bid, "pv") or "{}").get("all"),
                 20, msg="the batch submitted to the provider")
        eq(w.gw.req("POST", "/v1/batches/%s/cancel" % bid).status, 200)
        b = wait_status(w.gw, bid, "cancelled", 30)
        check(any(p["cancel"] for p in provider_batches(w)), "the provider was asked to cancel")
        eq(b["request_counts"]["completed"], 0)
    finally:
        w.mock.ctl("POST", "/_mock/batches", {"polls": 3})


@test
def restart_resumes_without_resubmitting(w):
    w.mock.ctl("POST", "/_mock/batches", {"polls": 6})
    try:
        before = len(provider_batches(w))
        bid = create_ok(w.gw, upload_ok(w.gw, jsonl(5)))
        wait_for(lambda: json.loads(w.redis.cmd("HGET", "tiergate:v1:anon:batch:" + bid, "pv") or
                                    "{}").get("all"), 20, msg="submitted")
        w.gw.kill()
        w.gw = Gateway(w.config())
        b = wait_status(w.gw, bid, "completed", 60)
        eq(len(provider_batches(w)) - before, 1, "one provider batch, not two")
        out, err = files(w.gw, b)
        check_exactly_once(b, out, err, ["r%d" % i for i in range(5)])
    finally:
        w.mock.ctl("POST", "/_mock/batches", {"polls": 3})
    w.start()
