# SPDX-License-Identifier: MIT
"""Files + Batches API in gateway mode (issue 16, docs/batches.md): uploads
and their refusals, a batch through the whole pipeline with results in
input order, bad lines failing validation with OpenAI's errors object,
lines that fail at run time in the error file, cancel, key isolation,
metrics, and the cache flush leaving batches alone."""
import hashlib
import json
import socket
import threading
import time

from batchlib import (content, create, create_ok, form, get, jsonl, line, marker_counts,
                      upload, upload_ok, wait_status, BOUNDARY)
from harness import World, check, eq, test, wait_for

WORLD = lambda: World(batch={"lease_s": 2})  # noqa: E731


@test
def file_upload_retrieve_list_delete(w):
    text = jsonl(3)
    r = upload(w.gw, text)
    eq(r.status, 200, repr(r))
    f = r.json()
    eq(f["object"], "file")
    eq(f["purpose"], "batch")
    eq(f["bytes"], len(text.encode()))
    eq(f["filename"], "in.jsonl")
    eq(f["status"], "processed")
    check(f["id"].startswith("file-") and f["expires_at"] - f["created_at"] == 30 * 86400)
    eq(w.gw.req("GET", "/v1/files/" + f["id"]).json(), f)
    r = w.gw.req("GET", "/v1/files/%s/content" % f["id"])
    eq(r.status, 200)
    eq(r.body.decode(), text, "content comes back byte for byte")
    ids = [x["id"] for x in w.gw.req("GET", "/v1/files").json()["data"]]
    check(f["id"] in ids, "listed")
    r = w.gw.req("DELETE", "/v1/files/" + f["id"])
    eq(r.json(), {"id": f["id"], "object": "file", "deleted": True})
    for path in ("/v1/files/" + f["id"], "/v1/files/%s/content" % f["id"]):
        r = w.gw.req("GET", path)
        eq(r.status, 404)
        eq(r.json()["error"]["code"], "file_not_found")
    eq(w.gw.req("DELETE", "/v1/files/" + f["id"]).status, 404)
    check(f["id"] not in [x["id"] for x in w.gw.req("GET", "/v1/files").json()["data"]])


@test
def big_upload_in_many_chunks(w):
    # 1.3 MB: six 256 KiB chunks in Redis, and lines cut across them.
    text = "".join(line("big%d" % i, "x" * 1200) + "\n" for i in range(1000))
    fid = upload_ok(w.gw, text)
    eq(w.gw.req("GET", "/v1/files/%s/content" % fid).body.decode(), text)
    chunks = w.redis.cmd("LRANGE", "tiergate:v1:anon:file:%s:data" % fid, 0, -1)
    eq(len(chunks), (len(text) + 262143) // 262144)
    eq(max(len(c) for c in chunks), 262144)


@test
def listings_keep_creation_order_within_a_second(w):
    # created_at is in seconds; the indexes order by microseconds.
    fids = [upload_ok(w.gw, jsonl(1, prefix="o%d-" % i)) for i in range(5)]
    got = [x["id"] for x in w.gw.req("GET", "/v1/files?order=asc").json()["data"]]
    eq([i for i in got if i in fids], fids, "files, oldest first")
    got = [x["id"] for x in w.gw.req("GET", "/v1/files").json()["data"]]
    eq([i for i in got if i in fids], fids[::-1], "files, newest first")
    bids = [create_ok(w.gw, f) for f in fids]
    got = [x["id"] for x in w.gw.req("GET", "/v1/batches?limit=100").json()["data"]]
    eq([i for i in got if i in bids], bids[::-1], "batches, newest first")
    for b in bids:
        wait_status(w.gw, b, "completed")


@test
def download_pages_end_on_a_page_boundary(w):
    # 2 MiB: eight full chunks, two full pages of a download, then an empty one.
    text = ("x" * 1023 + "\n") * 2048
    fid = upload_ok(w.gw, text)
    eq(len(w.redis.cmd("LRANGE", "tiergate:v1:anon:file:%s:data" % fid, 0, -1)), 8)
    r = w.gw.req("GET", "/v1/files/%s/content" % fid)
    eq(r.status, 200)
    check(r.body.decode() == text, "content comes back byte for byte")


def file_keys(w):
    return [k for k in w.redis.cmd("KEYS", "tiergate:v1:*:file:*") if not k.endswith(":index")]


def batch_conn_ids(w):
    out = []
    for l in w.redis.cmd("CLIENT", "LIST").split("\n"):
        f = dict(kv.split("=", 1) for kv in l.split() if "=" in kv)
        if f.get("name") == "tiergate-batch":
            out.append(f["id"])
    return out


def raw_upload(port, text):
    """Sends an upload and returns the socket without reading the answer."""
    body = form([("purpose", "batch"), ("file", "in.jsonl", text)])
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"POST /v1/files HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
              b"boundary=" + BOUNDARY.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
              + body)
    return s


@test
def client_gone_mid_store(w):
    # Redis holds every write while the client hangs up: the store stops at
    # its next step and deletes what it wrote (ASan: nothing leaks).
    text = ("y" * 1023 + "\n") * 8192  # 8 MiB: eight slices
    w.redis.cmd("CLIENT", "PAUSE", "10000", "WRITE")
    s = raw_upload(w.gw.port, text)
    try:
        # The slice's RPUSH waits on Redis: the blocked command, or queued
        # behind one of the worker's own writes on that connection (shard 0's
        # sweeper may be blocked first), where it sits in the query buffer.
        def slice_waits():
            for l in w.redis.cmd("CLIENT", "LIST").split("\n"):
                f = dict(kv.split("=", 1) for kv in l.split() if "=" in kv)
                if f.get("name") == "tiergate-batch" and "b" in f.get("flags", "") and \
                        (f.get("cmd") == "rpush" or int(f.get("qbuf", 0)) > 512 * 1024):
                    return True
            return False
        wait_for(slice_waits, 10, msg="the first slice to wait on Redis")
        s.close()
        time.sleep(0.5)  # the gateway sees the hang-up
    finally:
        w.redis.cmd("CLIENT", "UNPAUSE")
    time.sleep(0.5)  # the first slice is written, the store's next step stops it
    wait_for(lambda: not file_keys(w), 10, msg="the aborted upload's chunks to be deleted")
    eq(w.gw.req("GET", "/v1/files").json()["data"], [], "no file was created")
    check(w.gw.chat().status == 200, "the daemon keeps serving")
    fid = upload_ok(w.gw, jsonl(2))
    eq(content(w.gw, fid)[1]["custom_id"], "r1")


@test
def redis_refusal_mid_store_answers_503(w):
    # Redis runs out of memory half-way through the chunks: 503, and the
    # chunks already pushed are deleted.
    used = int([l for l in w.redis.cmd("INFO", "memory").split("\r\n")
                if l.startswith("used_memory:")][0].split(":")[1])
    w.redis.cmd("CONFIG", "SET", "maxmemory", str(used + 3 * 1024 * 1024))
    try:
        r = upload(w.gw, ("z" * 1023 + "\n") * 8192)
    finally:
        w.redis.cmd("CONFIG", "SET", "maxmemory", "0")
    eq(r.status, 503, repr(r))
    eq(r.json()["error"]["code"], "storage_unavailable")
    eq(r.header("retry-after"), "1")
    wait_for(lambda: not file_keys(w), 10, msg="the partial upload to be deleted")
    upload_ok(w.gw, jsonl(1))


@test
def redis_drop_mid_store_answers_503(w):
    # The connection to Redis dies while a store waits on it: 503, and the
    # gateway reconnects and stores the next upload.
    w.redis.cmd("CLIENT", "PAUSE", "10000", "WRITE")
    res = {}
    t = threading.Thread(target=lambda: res.update(r=upload(w.gw, ("q" * 1023 + "\n") * 4096)))
    t.start()
    try:
        # The slice's RPUSH waits on Redis: the blocked command, or queued
        # behind one of the worker's own writes on that connection (shard 0's
        # sweeper may be blocked first), where it sits in the query buffer.
        def slice_waits():
            for l in w.redis.cmd("CLIENT", "LIST").split("\n"):
                f = dict(kv.split("=", 1) for kv in l.split() if "=" in kv)
                if f.get("name") == "tiergate-batch" and "b" in f.get("flags", "") and \
                        (f.get("cmd") == "rpush" or int(f.get("qbuf", 0)) > 512 * 1024):
                    return True
            return False
        wait_for(slice_waits, 10, msg="the first slice to wait on Redis")
        for cid in batch_conn_ids(w):
            w.redis.cmd("CLIENT", "KILL", "ID", cid)
        t.join(20)
    finally:
        w.redis.cmd("CLIENT", "UNPAUSE")
    eq(res["r"].status, 503, repr(res.get("r")))
    eq(res["r"].json()["error"]["code"], "storage_unavailable")
    wait_for(lambda: upload(w.gw, jsonl(1)).status == 200, 15, msg="uploads to work again")


@test
def upload_refusals(w):
    def refused(status, r, code=None, param=None):
        eq(r.status, status, repr(r))
        e = r.json()["error"]
        check(set(e) == {"message", "type", "param", "code"}, "OpenAI error shape")
        if code:
            eq(e["code"], code)
        if param:
            eq(e["param"], param)
    refused(400, w.gw.req("POST", "/v1/files", jsonl(1), {"content-type": "application/jsonl"}),
            "invalid_content_type")
    refused(400, upload(w.gw, jsonl(1), purpose="fine-tune"), "invalid_purpose", "purpose")
    h = {"content-type": "multipart/form-data; boundary=" + BOUNDARY}
    refused(400, w.gw.req("POST", "/v1/files", form([("file", "a.jsonl", jsonl(1))]), h),
            "missing_required_parameter", "purpose")
    refused(400, w.gw.req("POST", "/v1/files", form([("purpose", "batch")]), h),
            "missing_required_parameter", "file")
    refused(400, upload(w.gw, "\n  \n"), "empty_file")
    refused(400, w.gw.req("POST", "/v1/files", b"--" + BOUNDARY.encode() + b"\r\nno-colon\r\n\r\n", h),
            "invalid_multipart")
    refused(400, w.gw.req("POST", "/v1/files", form([("purpose", "batch")])[:-10], h),
            "invalid_multipart")
    eq(w.gw.req("PUT", "/v1/files").status, 405)
    eq(w.gw.req("PUT", "/v1/files").header("allow"), "GET, POST")
    eq(w.gw.req("POST", "/v1/files/file-x/content").header("allow"), "GET")
    eq(w.gw.req("GET", "/v1/files/no*such").status, 404)
    # caps: lines and bytes, with a clear message
    w.start(batch={"lease_s": 2, "max_lines": 3, "max_file_bytes": 4096})
    r = upload(w.gw, jsonl(4))
    refused(400, r, "too_many_lines")
    check("batch.max_lines is 3" in r.json()["error"]["message"])
    r = upload(w.gw, "x" * 5000)
    refused(413, r, "file_too_large")
    check("batch.max_file_bytes (4096 bytes)" in r.json()["error"]["message"])
    eq(w.gw.chat().status, 200, "the daemon keeps serving")
    w.start()


@test
def batch_runs_through_the_pipeline(w):
    n = 12
    text = jsonl(n)
    fid = upload_ok(w.gw, text)
    bid = create_ok(w.gw, fid, metadata={"job": "nightly"})
    b = wait_status(w.gw, bid, "completed")
    eq(b["request_counts"], {"total": n, "completed": n, "failed": 0})
    eq(b["metadata"], {"job": "nightly"})
    check(b["error_file_id"] is None, "no error file when nothing failed")
    check(b["in_progress_at"] and b["finalizing_at"] and b["completed_at"])
    out = content(w.gw, b["output_file_id"])
    eq([l["custom_id"] for l in out], ["r%d" % i for i in range(n)], "output in input order")
    for l in out:
        eq(l["response"]["status_code"], 200)
        eq(l["response"]["body"]["object"], "chat.completion")
        check(l["error"] is None and l["id"].startswith("batch_req_"))
        check(l["response"]["request_id"].startswith("int_"))
    eq(sorted(marker_counts(w.mock).values()), [1] * n, "one upstream call per line")
    check(b["usage"]["total_tokens"] > 0 and b["tiergate"]["cost_usd"] > 0, repr(b))
    eq(b["tiergate"]["mode"], "gateway")
    f = w.gw.req("GET", "/v1/files/" + b["output_file_id"]).json()
    eq(f["purpose"], "batch_output")
    eq(f["filename"], bid + "_output.jsonl")
    m = w.gw.metrics()
    check(m.get('tiergate_batch_lines_total{result="completed"}', 0) >= n, "lines counted")
    # the same file again: every line is a cache hit, nothing goes upstream
    w.mock.reset()
    b2 = wait_status(w.gw, create_ok(w.gw, fid), "completed")
    eq(b2["tiergate"]["cache_hits"], n)
    eq(b2["tiergate"]["cost_usd"], 0)
    eq(len(w.mock.requests()), 0, "cache hits")
    # listing, newest first, paginated with after/limit
    page = w.gw.req("GET", "/v1/batches?limit=1").json()
    eq([x["id"] for x in page["data"]], [b2["id"]])
    check(page["has_more"] is True)
    page = w.gw.req("GET", "/v1/batches?limit=1&after=" + b2["id"]).json()
    eq([x["id"] for x in page["data"]], [bid])


@test
def bad_lines_fail_validation(w):
    text = "\n".join([
        line("a"),
        "{not json",
        json.dumps({"method": "POST", "url": "/v1/chat/completions", "body": {}}),
        line("a"),
        line("b", url="/v1/embeddings"),
        json.dumps({"custom_id": "c", "method": "GET", "url": "/v1/chat/completions", "body": {}}),
    ]) + "\n"
    bid = create_ok(w.gw, upload_ok(w.gw, text))
    b = wait_status(w.gw, bid, "failed")
    check(b["failed_at"] and b["output_file_id"] is None)
    errs = b["errors"]
    eq(errs["object"], "list")
    got = [(e["line"], e["code"], e["param"]) for e in errs["data"]]
    eq(got, [(2, "invalid_json_line", None), (3, "missing_required_parameter", "custom_id"),
             (4, "duplicate_custom_id", "custom_id"), (5, "invalid_url", "url"),
             (6, "invalid_method", "method")])
    eq(len(w.mock.requests()), 0, "a batch that failed validation runs nothing")


@test
def runtime_failures_land_in_the_error_file(w):
    w.mock.script({"status": 500}, body_contains="marker-boom", times=-1)
    text = "".join([
        line("ok1") + "\n",
        json.dumps({"custom_id": "nomsg", "method": "POST", "url": "/v1/chat/completions",
                    "body": {"model": "cheap"}}) + "\n",
        line("nomodel", model="gpt-nope") + "\n",
        line("boom", model="expensive") + "\n",
        line("ok2") + "\n",
    ])
    b = wait_status(w.gw, create_ok(w.gw, upload_ok(w.gw, text)), "completed")
    eq(b["request_counts"], {"total": 5, "completed": 2, "failed": 3})
    out = content(w.gw, b["output_file_id"])
    eq([l["custom_id"] for l in out], ["ok1", "ok2"])
    errs = {l["custom_id"]: l for l in content(w.gw, b["error_file_id"])}
    eq(sorted(errs), ["boom", "nomodel", "nomsg"])
    eq(errs["nomsg"]["response"]["status_code"], 400)
    eq(errs["nomsg"]["response"]["body"]["error"]["param"], "messages")
    eq(errs["nomodel"]["response"]["status_code"], 404)
    eq(errs["nomodel"]["response"]["body"]["error"]["code"], "model_not_found")
    eq(errs["boom"]["response"]["status_code"], 502)
    check(all(l["error"] is None for l in errs.values()), "answers carry response, not error")
    m = w.gw.metrics()
    check(m.get('tiergate_batch_lines_total{result="failed"}', 0) >= 3)


@test
def cancel_stops_new_lines(w):
    w.start(batch={"lease_s": 2, "max_concurrency": 1})
    w.mock.script({"delay_ms": 300}, times=-1)
    n = 30
    bid = create_ok(w.gw, upload_ok(w.gw, jsonl(n)))
    wait_for(lambda: get(w.gw, bid)["request_counts"]["completed"] >= 2, 20, msg="some lines done")
    r = w.gw.req("POST", "/v1/batches/%s/cancel" % bid)
    eq(r.status, 200, repr(r))
    check(r.json()["status"] in ("cancelling", "cancelled") and r.json()["cancelling_at"])
    b = wait_status(w.gw, bid, "cancelled", 20)
    sent = len(w.mock.requests())
    time.sleep(1.0)
    eq(len(w.mock.requests()), sent, "no line starts after cancel")
    check(sent < n, "cancel stopped the batch (%d of %d sent)" % (sent, n))
    done = b["request_counts"]["completed"]
    check(done >= 2 and done < n)
    eq(len(content(w.gw, b["output_file_id"])), done, "partial results kept")
    eq(w.gw.req("POST", "/v1/batches/%s/cancel" % bid).json()["status"], "cancelled",
       "cancelling twice answers the batch")
    # a finished batch cannot be cancelled
    w.mock.reset()
    done_bid = create_ok(w.gw, upload_ok(w.gw, jsonl(1)))
    wait_status(w.gw, done_bid, "completed")
    r = w.gw.req("POST", "/v1/batches/%s/cancel" % done_bid)
    eq(r.status, 400)
    eq(r.json()["error"]["code"], "batch_not_cancellable")
    w.start()


@test
def cancel_while_validating(w):
    w.start(batch={"lease_s": 2, "max_concurrency": 0})  # this replica runs no lines
    bid = create_ok(w.gw, upload_ok(w.gw, jsonl(3)))
    eq(w.gw.req("POST", "/v1/batches/%s/cancel" % bid).status, 200)
    b = wait_status(w.gw, bid, "cancelled", 10)
    eq(b["request_counts"]["completed"], 0)
    check(b["output_file_id"] is None)
    eq(len(w.mock.requests()), 0)
    w.start()


KEY_A = "tg-batch-key-alpha-1"
KEY_B = "tg-batch-key-bravo-2"


def bearer(k):
    return {"authorization": "Bearer " + k}


@test
def another_key_sees_nothing(w):
    w.start(auth={"keys": ["sha256:" + hashlib.sha256(k.encode()).hexdigest() for k in (KEY_A, KEY_B)]})
    a, b = bearer(KEY_A), bearer(KEY_B)
    eq(upload(w.gw, jsonl(1)).status, 401, "no key, no upload")
    fid = upload_ok(w.gw, jsonl(2), headers=a)
    bid = create_ok(w.gw, fid, headers=a)
    done = wait_status(w.gw, bid, "completed", headers=a)
    for method, path in (("GET", "/v1/files/" + fid), ("GET", "/v1/files/%s/content" % fid),
                         ("DELETE", "/v1/files/" + fid), ("GET", "/v1/batches/" + bid),
                         ("POST", "/v1/batches/%s/cancel" % bid),
                         ("GET", "/v1/files/%s/content" % done["output_file_id"])):
        r = w.gw.req(method, path, headers=b)
        eq(r.status, 404, "%s %s with another key: %r" % (method, path, r))
    eq(create(w.gw, fid, headers=b).status, 404, "another key cannot run my file")
    eq(w.gw.req("GET", "/v1/batches", headers=b).json()["data"], [])
    eq(w.gw.req("GET", "/v1/files", headers=b).json()["data"], [])
    eq(len(w.gw.req("GET", "/v1/batches", headers=a).json()["data"]), 1)
    eq(w.gw.req("GET", "/v1/files/" + fid, headers=a).status, 200, "still there for its owner")
    w.start()


@test
def create_refusals(w):
    fid = upload_ok(w.gw, jsonl(1))

    def refused(status, r, param=None, code=None):
        eq(r.status, status, repr(r))
        if param:
            eq(r.json()["error"]["param"], param)
        if code:
            eq(r.json()["error"]["code"], code)
    refused(404, create(w.gw, "file-doesnotexist"), "input_file_id", "file_not_found")
    refused(400, create(w.gw, fid, endpoint="/v1/completions"), "endpoint", "unsupported_endpoint")
    refused(400, create(w.gw, fid, completion_window="48h"), "completion_window")
    refused(400, create(w.gw, fid, metadata={"k": 1}), "metadata")
    refused(400, create(w.gw, fid, metadata={"k%d" % i: "v" for i in range(17)}), "metadata")
    refused(400, create(w.gw, "../etc"), "input_file_id")
    refused(400, w.gw.req("POST", "/v1/batches", "not json"))
    refused(404, w.gw.req("GET", "/v1/batches/batch_nope"), "id", "batch_not_found")
    refused(404, w.gw.req("POST", "/v1/batches/batch_nope/cancel"))
    eq(w.gw.req("DELETE", "/v1/batches").header("allow"), "GET, POST")
    eq(w.gw.req("GET", "/v1/batches/batch_x/cancel").status, 405)
    eq(len(w.mock.requests()), 0)


@test
def cache_flush_leaves_batches(w):
    w.start(env={"TIERGATE_ADMIN_KEY": "adm-1"})
    fid = upload_ok(w.gw, jsonl(2))
    b = wait_status(w.gw, create_ok(w.gw, fid), "completed")
    r = w.gw.req("DELETE", "/admin/cache", headers=bearer("adm-1"))
    eq(r.status, 200, repr(r))
    eq(w.gw.req("GET", "/v1/files/%s/content" % fid).status, 200)
    eq(len(content(w.gw, b["output_file_id"])), 2)
    eq(get(w.gw, b["id"])["status"], "completed")
    w.start()


@test
def batches_yield_to_live_requests(w):
    # One shard; a live request held open upstream keeps the shard at
    # batch.yield_inflight, so no line starts until it is answered.
    w.start(shards=1, batch={"lease_s": 2, "yield_inflight": 1})
    w.mock.script({"delay_ms": 2500}, body_contains="live-hold")
    import threading
    t = threading.Thread(target=lambda: w.gw.chat(messages=[{"role": "user", "content": "live-hold"}]))
    t.start()
    wait_for(lambda: len(w.mock.requests()) == 1, 5, msg="the live request upstream")
    bid = create_ok(w.gw, upload_ok(w.gw, jsonl(3)))
    time.sleep(1.5)
    eq(len(w.mock.requests()), 1, "no batch line while the live request is in flight")
    t.join()
    b = wait_status(w.gw, bid, "completed", 20)
    eq(b["request_counts"]["completed"], 3)
    w.start()


@test
def status_gauge_and_admin_views(w):
    bid = create_ok(w.gw, upload_ok(w.gw, jsonl(2)))
    wait_status(w.gw, bid, "completed")

    def gauge():
        m = w.gw.metrics()
        return m.get('tiergate_batches{status="completed"}', 0) >= 1 and m
    m = wait_for(gauge, 12, msg="tiergate_batches gauge")
    check('tiergate_batches{status="in_progress"}' in m)


@test
def cli_lists_progress(w):
    import os
    import subprocess
    from harness import TIERGATE
    bid = create_ok(w.gw, upload_ok(w.gw, jsonl(3)))
    wait_status(w.gw, bid, "completed")
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1")
    p = subprocess.run([TIERGATE, "batches", "http://127.0.0.1:%d/" % w.gw.port, "--limit", "5"],
                       capture_output=True, text=True, timeout=30, env=env)
    eq(p.returncode, 0, p.stderr)
    row = [l for l in p.stdout.split("\n") if l.startswith(bid)]
    eq(len(row), 1, p.stdout)
    check("completed" in row[0] and "[####################] 100%" in row[0] and "3/3" in row[0],
          row[0])
    p = subprocess.run([TIERGATE, "batches", "http://127.0.0.1:%d" % w.gw.port, "--key", "other"],
                       capture_output=True, text=True, timeout=30, env=env)
    eq(p.stdout.strip(), "no batches", "another key sees none")
    p = subprocess.run([TIERGATE, "batches", "http://127.0.0.1:1"], capture_output=True, text=True,
                       timeout=30, env=env)
    check(p.returncode == 1 and "tiergate batches" in p.stderr, p.stderr)
