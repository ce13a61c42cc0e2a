# SPDX-License-Identifier: MIT
"""Redis Sentinel (issue 17, docs/replicas.md): with
redis.url = redis+sentinel://host:port/master/db the gateway asks a sentinel
where the master is before every connect, and follows a fail-over, whether
an operator asks for one (SENTINEL FAILOVER) or the master dies. Real
redis-server processes: a master, a replica and a sentinel
(redis-server --sentinel)."""
import os
import tempfile
import time

from harness import REDIS, Gateway, Proc, Redis, chat_body, check, eq, free_port, test, wait_for

ADMIN = "tg-sentinel-admin-4242"
MASTER = "tgmaster"


class Sentinel(Proc):
    def __init__(self, master_port):
        self.port = free_port()
        fd, self.conf = tempfile.mkstemp(prefix="tg-sentinel-", suffix=".conf")
        with os.fdopen(fd, "w") as f:
            f.write("port %d\nbind 127.0.0.1\ndaemonize no\nloglevel warning\n"
                    "dir %s\n"
                    "sentinel monitor %s 127.0.0.1 %d 1\n"
                    "sentinel down-after-milliseconds %s 1000\n"
                    "sentinel failover-timeout %s 10000\n"
                    % (self.port, tempfile.gettempdir(), MASTER, master_port, MASTER, MASTER))
        super().__init__("sentinel", [REDIS, self.conf, "--sentinel"])
        self.cli = Redis.__new__(Redis)  # only its RESP client, on our port
        self.cli.port = self.port
        wait_for(self.cli.ping, 10, msg="sentinel to answer PING")

    def cmd(self, *args):
        return self.cli.cmd(*args)

    def master_port(self):
        r = self.cmd("SENTINEL", "get-master-addr-by-name", MASTER)
        return int(r[1]) if isinstance(r, list) else None

    def close(self):
        self.kill()
        try:
            os.unlink(self.conf)
        except OSError:
            pass


class Topology:
    """A master, a replica of it and one sentinel watching them."""

    def __init__(self):
        self.master = Redis()
        self.replica = Redis(extra=["--replicaof", "127.0.0.1", str(self.master.port)])
        wait_for(lambda: "master_link_status:up" in self.replica.cmd("INFO", "replication"), 10,
                 msg="the replica in sync")
        self.sentinel = Sentinel(self.master.port)
        wait_for(lambda: self.sentinel.cmd("SENTINEL", "replicas", MASTER), 15,
                 msg="the sentinel to know the replica")

    def url(self):
        return "redis+sentinel://127.0.0.1:%d/%s/0" % (self.sentinel.port, MASTER)

    def close(self):
        for p in (self.sentinel, self.replica, self.master):
            p.kill()
        self.sentinel.close()


def start_gateway(w, topo):
    cfg = w.config(redis={"url": topo.url(), "reconnect_min_ms": 50, "reconnect_max_ms": 500})
    g = Gateway(cfg, env={"TIERGATE_ADMIN_KEY": ADMIN})

    def connected():
        r = g.req("GET", "/readyz", headers={"authorization": "Bearer " + ADMIN})
        return r.status == 200 and r.json()["limits"]["mode"] == "shared"
    wait_for(connected, 15, msg="every shard connected through the sentinel")
    return g


def stored_on(redis, n=1):
    return len(redis.cmd("KEYS", "tiergate:v1:anon:*") or []) >= n


def writes_to(g, redis):
    """A new answer is stored on `redis` (the master now: no one else
    writes to it)."""
    before = len(redis.cmd("KEYS", "tiergate:v1:anon:*") or [])
    eq(g.chat(chat_body("stored where? %f" % time.time())).status, 200)
    wait_for(lambda: len(redis.cmd("KEYS", "tiergate:v1:anon:*") or []) > before, 5,
             msg="the answer stored on port %d" % redis.port)


@test
def sentinel_finds_the_master_and_follows_a_failover(w):
    topo = Topology()
    g = None
    try:
        g = start_gateway(w, topo)
        eq(g.chat(chat_body("through the sentinel")).header("x-tiergate-cache"), "miss")
        wait_for(lambda: stored_on(topo.master), 5, msg="the entry on the master")
        eq(g.chat(chat_body("through the sentinel")).header("x-tiergate-cache"), "hit")
        # The operator moves the master (SENTINEL FAILOVER): the sentinel
        # promotes the replica and kills the clients of both; every
        # reconnect asks the sentinel again.
        eq(topo.sentinel.cmd("SENTINEL", "FAILOVER", MASTER), "OK")
        wait_for(lambda: topo.sentinel.master_port() == topo.replica.port, 15, msg="the fail-over")
        wait_for(lambda: "role:master" in topo.replica.cmd("INFO", "replication"), 10,
                 msg="the replica promoted")

        def follows():
            body = chat_body("after the fail-over %f" % time.time())
            if g.chat(body).status != 200:
                return False
            time.sleep(0.1)
            return g.chat(body).header("x-tiergate-cache") == "hit"
        wait_for(follows, 20, step=0.3, msg="hits served by the new master")
        writes_to(g, topo.replica)
        check("the sentinels moved master %s" % MASTER in g.output(),
              "+switch-master was heard:\n" + g.output()[-3000:])
        g.stop_clean()
        g = None
    finally:
        if g:
            g.kill()
        topo.close()


@test
def sentinel_failover_after_the_master_dies(w):
    topo = Topology()
    g = None
    try:
        g = start_gateway(w, topo)
        eq(g.chat(chat_body("before the crash")).status, 200)
        topo.master.kill()  # SIGKILL: down after 1 s, then the sentinel promotes the replica
        t0 = time.time()
        # Meanwhile the cache fails open: requests are still answered.
        eq(g.chat(chat_body("during the crash")).status, 200)
        wait_for(lambda: topo.sentinel.master_port() == topo.replica.port, 30, msg="the fail-over")

        def follows():
            body = chat_body("after the crash %f" % time.time())
            if g.chat(body).status != 200:
                return False
            time.sleep(0.1)
            return g.chat(body).header("x-tiergate-cache") == "hit"
        wait_for(follows, 20, step=0.3, msg="hits served by the promoted replica")
        writes_to(g, topo.replica)
        check(time.time() - t0 < 40)
        r = g.req("GET", "/readyz", headers={"authorization": "Bearer " + ADMIN})
        eq(r.status, 200, "ready again: %r" % r)
        g.stop_clean()
        g = None
    finally:
        if g:
            g.kill()
        topo.close()


@test
def sentinel_that_does_not_know_the_master(w):
    """A wrong master name: no connection, the cache fails open, requests
    are answered, and the log says why."""
    topo = Topology()
    g = None
    try:
        cfg = w.config(redis={"url": "redis+sentinel://127.0.0.1:%d/nosuchmaster/0" % topo.sentinel.port})
        g = Gateway(cfg)
        r = g.chat(chat_body("no master"))
        eq(r.status, 200)
        eq(r.header("x-tiergate-cache"), "error")
        wait_for(lambda: "does not know master: nosuchmaster" in g.output(), 5, msg="the reason logged")
        g.stop_clean()
        g = None
    finally:
        if g:
            g.kill()
        topo.close()
