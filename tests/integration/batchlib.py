# SPDX-License-Identifier: MIT
"""Helpers the batch tests share: build a JSONL input, upload it as
multipart/form-data (as the openai SDKs do), create a batch, wait for a
status, read a file back, count what the mock was asked per line."""
import json
import time

from harness import Failure, check, eq

BOUNDARY = "----tg-test-boundary-7MA4YWxkTrZu0gW"


def line(cid, content=None, model="cheap", url="/v1/chat/completions", **body):
    b = {"model": model, "messages": [{"role": "user", "content": content or ("marker-%s" % cid)}]}
    b.update(body)
    return json.dumps({"custom_id": cid, "method": "POST", "url": url, "body": b})


def jsonl(n, prefix="r", **kw):
    return "".join(line("%s%d" % (prefix, i), **kw) + "\n" for i in range(n))


def form(fields, boundary=BOUNDARY):
    """fields: list of (name, value) or (name, filename, value)."""
    out = b""
    for f in fields:
        name, value = f[0], f[-1]
        value = value.encode() if isinstance(value, str) else value
        disp = 'form-data; name="%s"' % name
        if len(f) == 3:
            disp += '; filename="%s"' % f[1]
        out += b"--" + boundary.encode() + b"\r\nContent-Disposition: " + disp.encode() + b"\r\n"
        if len(f) == 3:
            out += b"Content-Type: application/jsonl\r\n"
        out += b"\r\n" + value + b"\r\n"
    return out + b"--" + boundary.encode() + b"--\r\n"


def upload(gw, content, purpose="batch", headers=None, filename="in.jsonl"):
    h = {"content-type": "multipart/form-data; boundary=" + BOUNDARY}
    h.update(headers or {})
    body = form([("purpose", purpose), ("file", filename, content)])
    return gw.req("POST", "/v1/files", body, h)


def upload_ok(gw, content, headers=None):
    r = upload(gw, content, headers=headers)
    eq(r.status, 200, "upload: %r" % r)
    return r.json()["id"]


def create(gw, file_id, headers=None, **over):
    b = {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    b.update(over)
    return gw.req("POST", "/v1/batches", b, headers)


def create_ok(gw, file_id, headers=None, **over):
    r = create(gw, file_id, headers, **over)
    eq(r.status, 200, "create: %r" % r)
    eq(r.json()["status"], "validating")
    return r.json()["id"]


def get(gw, bid, headers=None):
    r = gw.req("GET", "/v1/batches/" + bid, headers=headers)
    eq(r.status, 200, "get batch: %r" % r)
    return r.json()


def wait_status(gw_fn, bid, statuses, timeout=60, headers=None):
    """Polls until the batch reaches one of statuses. gw_fn: the gateway, or
    a function returning the gateway to ask (it may be restarted)."""
    statuses = (statuses,) if isinstance(statuses, str) else statuses
    end = time.time() + timeout
    last = None
    while time.time() < end:
        gw = gw_fn() if callable(gw_fn) else gw_fn
        try:
            last = get(gw, bid, headers)
        except (OSError, Failure):
            last = None
        if last and last["status"] in statuses:
            return last
        time.sleep(0.1)
    raise Failure("batch %s never reached %s (last: %r)" % (bid, statuses, last))


def content(gw, file_id, headers=None):
    r = gw.req("GET", "/v1/files/%s/content" % file_id, headers=headers)
    eq(r.status, 200, "file content: %r" % r)
    return [json.loads(l) for l in r.body.decode().split("\n") if l.strip()]


def marker_counts(mock):
    """{custom_id: upstream calls} from the mock's records (prompt markers)."""
    counts = {}
    for rec in mock.requests():
        body = rec.get("body") or ""
        i = body.find("marker-")
        if i < 0:
            continue
        j = i + len("marker-")
        k = j
        while k < len(body) and (body[k].isalnum() or body[k] in "_-"):
            k += 1
        cid = body[j:k]
        counts[cid] = counts.get(cid, 0) + 1
    return counts


def check_exactly_once(batch, out_lines, err_lines, cids):
    got = [l["custom_id"] for l in out_lines + err_lines]
    eq(sorted(got), sorted(cids), "every custom_id exactly once in the files")
    eq(batch["request_counts"]["total"], len(cids))
    eq(batch["request_counts"]["completed"] + batch["request_counts"]["failed"], len(cids))
    check(len(set(l["id"] for l in out_lines + err_lines)) == len(cids), "line ids are unique")
