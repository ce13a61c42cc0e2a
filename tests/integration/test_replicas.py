# SPDX-License-Identifier: MIT
"""More than one replica on one Redis (issue 17, docs/replicas.md): two
gateways share a key's rpm and usd_per_day (one Lua script per check), make
one upstream call for identical cache misses (a Redis lock per key, pub/sub
wake-ups), take over from a lock holder that was killed, and fall back to
their local share (limit / cluster.replicas_hint) while Redis is down, then
share again once it is back."""
import functools
import hashlib
import os
import shutil
import socket
import tempfile
import threading
import time

from harness import (ROOT, Failure, Gateway, Proc, Redis, chat_body, check, eq, free_port, request, test,
                     wait_for)

ADMIN = "tg-replicas-admin-5150"
LARGE_IN, LARGE_OUT = 2.50, 10.00  # harness prices of "large", $ per 1M tokens


def sha(k):
    return "sha256:" + hashlib.sha256(k.encode()).hexdigest()


def bearer(k):
    return {"authorization": "Bearer " + k}


def overrides(key, cluster=None, over=None, **limits):
    """Config overrides with one gateway key (its rpm / usd_per_day) and the
    cluster settings; every replica of a test gets the same config."""
    entry = {"name": "shared-key", "sha256": sha(key)}
    entry.update(limits)
    c = {"replicas_hint": 2}
    c.update(cluster or {})
    o = {"auth": {"keys": [entry]}, "cluster": c}
    o.update(over or {})
    return o


def env():
    return {"TIERGATE_ADMIN_KEY": ADMIN}


def readyz(g):
    r = g.req("GET", "/readyz", headers=bearer(ADMIN))
    return r.json()


def limits_mode(g):
    try:
        return readyz(g)["limits"]["mode"]
    except (OSError, ValueError, KeyError):
        return None


def start_pair(w, key, cluster=None, over=None, **limits):
    """Replica A is the world's gateway, B a second one; both are ready when
    every shard of each is connected to Redis (the limits say "shared")."""
    o = overrides(key, cluster, over, **limits)
    w.start(env=env(), **o)
    b = Gateway(w.config(**o), env=env())
    try:
        for g in (w.gw, b):
            wait_for(lambda g=g: limits_mode(g) == "shared", 10, msg="shared limits")
    except Exception:
        b.kill()
        raise
    return w.gw, b


def with_b(fn):
    """The test gets replica B; B is stopped (leak-checked) afterwards and
    the world's default gateway is back, passed or not."""
    @functools.wraps(fn)
    def run(w):
        box = []
        try:
            fn(w, box)
            if box:
                box[0].stop_clean()
                box.clear()
        finally:
            for b in box:
                b.kill()
            w.start()
    return run


# --- shared limits ---------------------------------------------------------------

@test
@with_b
def rate_limit_is_global(w, box):
    """rpm 6 shared by two replicas: 6 answered across both, not 6 each."""
    key = "tg-replicas-rate-0001"
    a, b = start_pair(w, key, rpm=6)
    box.append(b)
    codes, refused = [], []
    for i in range(12):
        g = (a, b)[i % 2]
        r = g.chat(chat_body("rate %d" % i), headers=bearer(key))
        codes.append(r.status)
        if r.status == 429:
            refused.append(r)
    eq(codes.count(200), 6, "the bucket is the key's, not a replica's: %s" % codes)
    eq(codes[:6], [200] * 6)
    for r in refused:
        eq(r.json()["error"]["code"], "rate_limit_exceeded")
        check(1 <= int(r.header("retry-after")) <= 11, "a token every 10 s: %s" % r.header("retry-after"))
    eq(len(w.mock.requests()), 6)
    for g in (a, b):
        m = g.metrics()
        check(m.get('tiergate_limits_checks_total{mode="shared",result="rate"}', 0) >= 1, "refused in Redis")
        eq(m.get('tiergate_limits_checks_total{mode="local",result="rate"}', 0), 0)
        eq(m.get('tiergate_limits_mode{mode="shared"}'), 1.0)


@test
@with_b
def spend_cap_is_global(w, box):
    """usd_per_day shared: what one replica spent counts on the other."""
    key = "tg-replicas-spend-0002"
    a, b = start_pair(w, key, usd_per_day=0.05)
    box.append(b)
    w.mock.script({"usage": {"prompt_tokens": 1000, "completion_tokens": 1000}}, model="gpt-large", times=-1)
    # Each request reserves ~$0.0101 (max_tokens 1000 at $10/M out) and is billed
    # 1000 * 2.5 / 1e6 + 1000 * 10 / 1e6 = $0.0125: four fit in $0.05 (the fourth
    # reserves with $0.0375 spent), then the day is spent for both replicas.
    codes = []
    for i in range(8):
        g = (a, b)[i % 2]
        r = g.chat(chat_body("spend %d" % i, model="large", max_tokens=1000), headers=bearer(key))
        codes.append(r.status)
        if r.status == 429:
            eq(r.json()["error"]["code"], "spend_limit_exceeded")
            check(int(r.header("retry-after")) >= 1, r.header("retry-after"))
    eq(codes, [200] * 4 + [429] * 4)
    day = int(time.time()) // 86400
    spent = float(w.redis.cmd("GET", "tiergate:v1:lim:%s:spent:%d" % (sha(key)[7:39], day)))
    check(abs(spent - 4 * 0.0125) < 1e-9, "the day's spend in Redis: %r" % spent)
    ttl = w.redis.cmd("TTL", "tiergate:v1:lim:%s:spent:%d" % (sha(key)[7:39], day))
    check(0 < ttl <= 86400 + 3600, "the day's key expires after the day: %r" % ttl)
    eq(w.redis.cmd("ZCARD", "tiergate:v1:lim:%s:held" % sha(key)[7:39]), 0, "every hold settled")


@test
@with_b
def concurrent_requests_on_both_replicas_cannot_overshoot(w, box):
    """12 concurrent large requests split over two replicas under a $0.03
    cap: the holds are in Redis, so at most floor(0.03 / 0.0101) = 2 run."""
    key = "tg-replicas-spend-0003"
    a, b = start_pair(w, key, usd_per_day=0.03)
    box.append(b)
    w.mock.script({"delay_ms": 800, "usage": {"prompt_tokens": 1000, "completion_tokens": 1000}},
                  model="gpt-large", times=-1)
    results = [None] * 12

    def one(i):
        g = (a, b)[i % 2]
        results[i] = g.chat(chat_body("burst %d" % i, model="large", max_tokens=1000), headers=bearer(key))
    ts = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    ok = [r for r in results if r.status == 200]
    check(1 <= len(ok) <= 2, "holds bound the concurrency: %s" % [r.status for r in results])
    for r in results:
        if r.status != 200:
            eq(r.status, 429)
            eq(r.json()["error"]["code"], "spend_limit_exceeded")
    eq(len(w.mock.requests()), len(ok), "refused requests never went upstream")


# --- single-flight across replicas -------------------------------------------------

@test
@with_b
def identical_misses_on_two_replicas_make_one_call(w, box):
    key = "tg-replicas-flight-0004"
    a, b = start_pair(w, key)
    box.append(b)
    w.mock.script({"delay_ms": 1500, "content": "the one answer"}, times=-1)
    body = chat_body("one call for both replicas")
    out = {}

    def call(name, g, delay, stream=False):
        time.sleep(delay)
        t0 = time.time()
        out[name] = (g.chat(dict(body, stream=stream), headers=bearer(key)), time.time() - t0)
    ts = [threading.Thread(target=call, args=("a", a, 0)),
          threading.Thread(target=call, args=("b", b, 0.4)),
          threading.Thread(target=call, args=("b2", b, 0.5, True))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    eq(len(w.mock.requests()), 1, "one upstream call for the three requests: %s" %
       ([(k, v[0].status, v[0].header("x-tiergate-cache"), v[1]) for k, v in out.items()] +
        a.decisions() + b.decisions()))
    ra, rb, rs = out["a"][0], out["b"][0], out["b2"][0]
    for r in (ra, rb, rs):
        eq(r.status, 200)
    eq(ra.json()["choices"][0]["message"]["content"], "the one answer")
    eq(rb.json()["choices"][0]["message"]["content"], "the one answer")
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in rs.events()
                   if e != "[DONE]" and e.get("choices"))
    eq(text, "the one answer", "the stream waiting on B replays A's answer")
    eq(ra.header("x-tiergate-cache"), "miss")
    eq(rb.header("x-tiergate-cache"), "hit", "B served A's answer")
    check(out["b"][1] < 3.0, "woken when A stored it, not at a poll's backoff: %.2fs" % out["b"][1])
    mb = b.metrics()
    eq(mb.get('tiergate_cluster_flight_total{result="served"}'), 1.0)
    eq(a.metrics().get('tiergate_cluster_flight_total{result="lead"}'), 1.0)
    lock = w.redis.cmd("KEYS", "tiergate:v1:*:lock")
    eq(lock, [], "the lock was released by its holder")


@test
@with_b
def killed_lock_holder_is_taken_over(w, box):
    """A holds the lock and dies mid-call (SIGKILL): the lock expires
    (cluster.lock_ttl_ms), B takes it within its wait bound and calls."""
    key = "tg-replicas-flight-0005"
    a, b = start_pair(w, key, cluster={"lock_ttl_ms": 1000}, over={"cache": {"single_flight_wait_ms": 20000}})
    box.append(b)
    w.mock.script({"delay_ms": 6000, "content": "from the dead holder"}, times=1)
    body = chat_body("holder dies")
    out = {}

    def call_a():
        try:
            out["a"] = a.chat(body, headers=bearer(key), timeout=20)
        except OSError as e:
            out["a"] = e

    def call_b():
        t0 = time.time()
        out["b"] = b.chat(body, headers=bearer(key), timeout=30)
        out["b_s"] = time.time() - t0
    ta = threading.Thread(target=call_a)
    ta.start()
    wait_for(lambda: len(w.mock.requests()) == 1, 5, msg="A's call upstream")
    tb = threading.Thread(target=call_b)
    tb.start()
    time.sleep(0.6)  # B is waiting on A's lock
    a.kill()
    w.gw = None  # (dead: the world starts a fresh one)
    tb.join()
    ta.join()
    rb = out["b"]
    eq(rb.status, 200)
    eq(rb.header("x-tiergate-cache"), "miss", "B called upstream itself")
    check(out["b_s"] < 6.0, "taken over within about the lock's life, not the wait bound: %.2fs" % out["b_s"])
    eq(len(w.mock.requests()), 2)
    eq(b.metrics().get('tiergate_cluster_flight_total{result="took_over"}'), 1.0)


# --- Redis down ----------------------------------------------------------------------

@test
@with_b
def redis_down_means_local_shares_then_shared_again(w, box):
    """rpm 6, replicas_hint 3: with Redis down each replica allows 6 / 3 = 2
    and says "local" (/readyz, /metrics); when Redis is back the bucket is
    Redis's again: 6 across both."""
    key = "tg-replicas-down-0006"
    a, b = start_pair(w, key, cluster={"replicas_hint": 3},
                      over={"redis": {"reconnect_min_ms": 50, "reconnect_max_ms": 200}}, rpm=6)
    box.append(b)
    port = w.redis.port
    w.redis.kill()
    try:
        codes = [a.chat(chat_body("down %d" % i), headers=bearer(key)).status for i in range(5)]
        eq(codes, [200, 200, 429, 429, 429], "the local share: 6 / 3")
        r = a.chat(chat_body("down again"), headers=bearer(key))
        eq(r.status, 429)
        check(int(r.header("retry-after")) >= 1)
        rz = readyz(a)
        eq(rz["limits"]["mode"], "local")
        eq(rz["limits"]["degraded"], True)
        m = a.metrics()
        eq(m.get('tiergate_limits_mode{mode="local"}'), 1.0)
        check(m.get('tiergate_limits_checks_total{mode="local",result="rate"}', 0) >= 3)
        check(m.get("tiergate_limits_fallbacks_total", 0) >= 1)
    finally:
        w.redis = Redis(port=port)
    for g in (a, b):
        wait_for(lambda g=g: limits_mode(g) == "shared", 15, msg="shared limits again")
    codes = []
    for i in range(10):
        codes.append((a, b)[i % 2].chat(chat_body("back %d" % i), headers=bearer(key)).status)
    eq(codes.count(200), 6, "one bucket in Redis again, not 2 per replica: %s" % codes)


@test
@with_b
def settles_made_while_redis_was_down_reach_it_later(w, box):
    """Spend on a replica while Redis is down counts on its share, is queued,
    and is sent to Redis with a later check: the day's total is whole."""
    key = "tg-replicas-queue-0007"
    a, b = start_pair(w, key, over={"redis": {"reconnect_min_ms": 50, "reconnect_max_ms": 200}},
                      usd_per_day=1.0)
    box.append(b)
    w.mock.script({"usage": {"prompt_tokens": 1000, "completion_tokens": 1000}}, model="gpt-large", times=-1)
    port = w.redis.port
    w.redis.kill()
    try:
        for i in range(2):
            eq(a.chat(chat_body("offline %d" % i, model="large", max_tokens=100), headers=bearer(key)).status, 200)
        check(a.metrics().get("tiergate_limits_settle_queue", 0) >= 2, "queued for Redis")
    finally:
        w.redis = Redis(port=port)
    wait_for(lambda: limits_mode(a) == "shared", 15, msg="shared limits again")
    eq(a.chat(chat_body("online", model="large", max_tokens=100), headers=bearer(key)).status, 200)
    day = int(time.time()) // 86400
    k = "tiergate:v1:lim:%s:spent:%d" % (sha(key)[7:39], day)
    wait_for(lambda: w.redis.cmd("GET", k) and abs(float(w.redis.cmd("GET", k)) - 3 * 0.0125) < 1e-9, 5,
             msg="three requests' spend in Redis (two replayed)")
    eq(a.metrics().get("tiergate_limits_settle_queue"), 0.0)


@test
def flush_keeps_the_limits(w):
    """DELETE /admin/cache flushes cache keys, never a key's rate or spend."""
    w.start(env=env())
    w.redis.cmd("SET", "tiergate:v1:lim:" + "ab" * 16 + ":spent:1", "0.5")
    w.redis.cmd("SET", "tiergate:v1:anon:" + "0" * 64, "{}")
    r = w.gw.req("DELETE", "/admin/cache", headers=bearer(ADMIN))
    eq(r.status, 200)
    eq(w.redis.cmd("EXISTS", "tiergate:v1:anon:" + "0" * 64), 0)
    eq(w.redis.cmd("GET", "tiergate:v1:lim:" + "ab" * 16 + ":spent:1"), "0.5")
    r = w.gw.req("DELETE", "/admin/cache?namespace=lim", headers=bearer(ADMIN))
    eq(r.status, 200)
    eq(w.redis.cmd("GET", "tiergate:v1:lim:" + "ab" * 16 + ":spent:1"), "0.5", "not even by name")
    w.start()


# --- the compose profile's load balancer ------------------------------------------

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


class Nginx(Proc):
    """deploy/nginx-replicas.conf as committed, with the compose service
    names swapped for the replicas' loopback ports."""

    def __init__(self, ports):
        self.dir = tempfile.mkdtemp(prefix="tg-nginx-")
        self.port = free_port()
        with open(os.path.join(ROOT, "deploy", "nginx-replicas.conf")) as f:
            conf = f.read()
        for name, port in zip(("tiergate-a:8080", "tiergate-b:8080"), ports):
            check(name in conf, "the committed conf names " + name)
            conf = conf.replace(name, "127.0.0.1:%d" % port)
        check("listen 8080;" in conf)
        conf = conf.replace("listen 8080;", "listen 127.0.0.1:%d;" % self.port)
        conf = conf.replace("worker_processes auto;", "worker_processes 1;")
        path = os.path.join(self.dir, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        super().__init__("nginx", [NGINX, "-p", self.dir, "-e", "stderr", "-c", path, "-g",
                                   "daemon off; pid %s/nginx.pid;" % self.dir])

        def up():
            if self.p.poll() is not None:
                raise Failure("nginx exited:\n" + self.output())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_for(up, 10, msg="nginx to listen")

    def close(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@test
@with_b
def nginx_in_front_of_two_replicas(w, box):
    """The compose profile's nginx conf in front of A and B: requests reach
    both replicas, the key's rpm holds across them, x-request-id passes
    through, and a stream arrives whole."""
    if not os.access(NGINX, os.X_OK):
        print("  SKIPPED nginx_in_front_of_two_replicas: nginx is not installed (%s), "
              "deploy/nginx-replicas.conf is not exercised" % NGINX, flush=True)
        return
    key = "tg-replicas-nginx-0009"
    a, b = start_pair(w, key, rpm=6)
    box.append(b)
    lb = Nginx((a.port, b.port))
    try:
        codes = []
        for i in range(10):
            r = request(lb.port, "POST", "/v1/chat/completions", chat_body("via nginx %d" % i),
                        dict(bearer(key), **{"x-request-id": "nginx-rid-%d" % i}))
            codes.append(r.status)
            eq(r.header("x-request-id"), "nginx-rid-%d" % i, "the client's id passes through")
            if r.status == 429:
                eq(r.json()["error"]["code"], "rate_limit_exceeded")
                check(r.header("retry-after"), "Retry-After through nginx")
        eq(codes, [200] * 6 + [429] * 4, "one bucket for both replicas behind nginx")
        ids = {g: {d["request_id"] for d in g.decisions()} for g in (a, b)}
        check(ids[a] and ids[b], "both replicas served: %s" % ids)
        r = request(lb.port, "GET", "/readyz", None, bearer(ADMIN))
        eq(r.status, 200)
        eq(r.json()["limits"]["mode"], "shared")
        # The bucket is spent: refill it (the rate key is the whole bucket).
        w.redis.cmd("DEL", "tiergate:v1:lim:%s:rate" % sha(key)[7:39])
        s = request(lb.port, "POST", "/v1/chat/completions",
                    chat_body("a stream via nginx", stream=True), bearer(key))
        eq(s.status, 200)
        check((s.header("content-type") or "").startswith("text/event-stream"), s.headers)
        body = s.body.decode() if isinstance(s.body, bytes) else s.body
        check(body.rstrip().endswith("data: [DONE]"), body[-300:])
    finally:
        lb.close()
