# SPDX-License-Identifier: MIT
"""Batches survive what replicas go through (issue 16 "Durability with
Redis"): a gateway killed with SIGKILL mid-batch and restarted, two
replicas on one Redis with one of them killed, a Redis that freezes
mid-batch, and a batch whose 24 h window runs out. Each checks that every
custom_id lands in the files exactly once and that no line whose result
was recorded is ever sent upstream again (the mock counts calls per line
by a marker in its prompt)."""
import signal
import time

from batchlib import (check_exactly_once, content, create_ok, get, jsonl, marker_counts, upload_ok,
                      wait_status)
from harness import Gateway, World, check, eq, test, wait_for

WORLD = lambda: World(batch={"lease_s": 2})  # noqa: E731


def recorded(w, bid):
    """custom_ids whose result is in Redis (recorded before now)."""
    ids = w.redis.cmd("HKEYS", "tiergate:v1:anon:batch:%s:out" % bid)
    return set(ids or [])


def files(gw, b):
    out = content(gw, b["output_file_id"]) if b["output_file_id"] else []
    err = content(gw, b["error_file_id"]) if b["error_file_id"] else []
    return out, err


def never_resent(w, done_before):
    counts = marker_counts(w.mock)
    again = sorted(c for c in done_before if counts.get(c, 0) != 1)
    eq(again, [], "lines finished before the failure were called once, never again")
    return counts


@test
def sigkill_mid_batch_then_restart(w):
    n = 40
    w.start(batch={"lease_s": 2, "max_concurrency": 4})
    w.mock.script({"delay_ms": 100}, times=-1)
    bid = create_ok(w.gw, upload_ok(w.gw, jsonl(n)))
    wait_for(lambda: len(recorded(w, bid)) >= 8, 30, msg="some lines recorded")
    w.gw.kill()  # SIGKILL: no drain, claims left pending in Redis
    done_before = recorded(w, bid)
    check(len(done_before) < n, "killed mid-batch (%d of %d done)" % (len(done_before), n))
    w.gw = Gateway(w.config(batch={"lease_s": 2, "max_concurrency": 4}))
    b = wait_status(w.gw, bid, "completed", 60)
    out, err = files(w.gw, b)
    check_exactly_once(b, out, err, ["r%d" % i for i in range(n)])
    eq(len(err), 0)
    counts = never_resent(w, done_before)
    eq(sorted(counts), sorted("r%d" % i for i in range(n)), "every line ran")
    check(max(counts.values()) <= 2, "a line in flight at the kill ran at most twice")
    w.start()


@test
def two_replicas_one_dies(w):
    n = 60
    cfg = w.config(batch={"lease_s": 2, "max_concurrency": 2})
    w.start(batch={"lease_s": 2, "max_concurrency": 2})
    other = Gateway(cfg)
    try:
        w.mock.script({"delay_ms": 100}, times=-1)
        bid = create_ok(w.gw, upload_ok(w.gw, jsonl(n)))

        def both_worked():
            return any(d["request_id"].startswith("int_") for d in w.gw.decisions()) and \
                any(d["request_id"].startswith("int_") for d in other.decisions())
        wait_for(both_worked, 30, msg="both replicas running lines")
        other.kill()
        done_before = recorded(w, bid)
        check(len(done_before) < n, "killed mid-batch")
        b = wait_status(w.gw, bid, "completed", 60)
        out, err = files(w.gw, b)
        check_exactly_once(b, out, err, ["r%d" % i for i in range(n)])
        never_resent(w, done_before)
        # the files are the same whichever replica is asked
        eq(get(w.gw, bid)["output_file_id"], b["output_file_id"])
    finally:
        other.kill()
    w.start()


@test
def redis_freezes_mid_batch(w):
    n = 20
    w.start(batch={"lease_s": 5, "max_concurrency": 2, "redis_timeout_ms": 300})
    w.mock.script({"delay_ms": 150}, times=-1)
    bid = create_ok(w.gw, upload_ok(w.gw, jsonl(n)))
    wait_for(lambda: len(recorded(w, bid)) >= 3, 30, msg="some lines recorded")
    w.redis.signal(signal.SIGSTOP)
    time.sleep(1.5)
    w.redis.signal(signal.SIGCONT)
    b = wait_status(w.gw, bid, "completed", 60)
    out, err = files(w.gw, b)
    check_exactly_once(b, out, err, ["r%d" % i for i in range(n)])
    eq(sorted(marker_counts(w.mock).values()), [1] * n, "results kept across the freeze, none re-run")
    eq(w.gw.chat().status, 200, "live traffic unaffected afterwards")
    w.start()


@test
def window_expires(w):
    n = 10
    w.start(batch={"lease_s": 2, "max_concurrency": 1})
    w.mock.script({"delay_ms": 300}, times=-1)
    bid = create_ok(w.gw, upload_ok(w.gw, jsonl(n)))
    wait_for(lambda: len(recorded(w, bid)) >= 2, 30, msg="some lines recorded")
    # As if 24 hours had passed.
    w.redis.cmd("HSET", "tiergate:v1:anon:batch:" + bid, "expires_at", "1")
    b = wait_status(w.gw, bid, "expired", 20)
    check(b["expired_at"] and b["finalizing_at"])
    out, err = files(w.gw, b)
    check_exactly_once(b, out, err, ["r%d" % i for i in range(n)])
    done = b["request_counts"]["completed"]
    eq(len(out), done)
    eq(b["request_counts"]["failed"], n - done)
    expired = [l for l in err if l["error"] and l["error"]["code"] == "batch_expired"]
    eq(len(expired), n - done, "unrun lines get OpenAI's batch_expired line")
    check(all(l["response"] is None for l in expired))
    sent = len(w.mock.requests())
    time.sleep(0.7)
    eq(len(w.mock.requests()), sent, "nothing runs after expiry")
    w.start()
