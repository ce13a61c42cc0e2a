# SPDX-License-Identifier: MIT
"""Integration-test harness: starts a real redis-server, the mock OpenAI
upstream and tiergate (the sanitizer build) on free loopback ports, drives
them over real HTTP, and tears everything down on every exit path.

A test is a function decorated with @test; it receives a World (redis + mock
+ gateway, shared by the tests of one file and reset between them) unless it
asks for fresh processes itself. The runner prints one line per test and the
"N passed, N failed" summary CI reads."""
import atexit
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("TG_BUILD", os.path.join(ROOT, "build", "asan"))
TIERGATE = os.path.join(BUILD, "tiergate")
MOCK = os.path.join(BUILD, "mock_upstream")
REDIS = os.environ.get("TG_REDIS_SERVER", "redis-server")
MOCK_KEY = "sk-mock-upstream-key-0123456789"

_procs = []


def _cleanup():
    for p in list(_procs):
        p.kill()


atexit.register(_cleanup)
for _sig in (signal.SIGTERM, signal.SIGHUP):
    signal.signal(_sig, lambda *a: (_cleanup(), os._exit(1)))


class Failure(AssertionError):
    pass


def check(cond, msg="check failed"):
    if not cond:
        raise Failure(msg)


def eq(a, b, msg=""):
    if a != b:
        raise Failure("%s: %r != %r" % (msg or "values differ", a, b))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(pred, timeout=5.0, step=0.02, msg="condition"):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise Failure("timed out waiting for " + msg)


class Proc:
    """A child process whose output is collected by reader threads."""

    def __init__(self, name, argv, env=None, ready=None, timeout=10.0):
        self.name = name
        self.lines = []
        self.lock = threading.Lock()
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=env, start_new_session=True)
        _procs.append(self)
        for stream in (self.p.stdout, self.p.stderr):
            threading.Thread(target=self._read, args=(stream,), daemon=True).start()
        self.match = None
        if ready:
            rx = re.compile(ready)

            def found():
                with self.lock:
                    for line in self.lines:
                        m = rx.search(line)
                        if m:
                            return m
                if self.p.poll() is not None:
                    raise Failure("%s exited early (rc %s):\n%s" % (name, self.p.returncode, self.output()))
                return None
            self.match = wait_for(found, timeout, msg="%s to start" % name)

    def _read(self, stream):
        for raw in iter(stream.readline, b""):
            with self.lock:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def output(self):
        with self.lock:
            return "\n".join(self.lines)

    def signal(self, sig):
        if self.p.poll() is None:
            os.kill(self.p.pid, sig)

    def stop(self, timeout=15.0):
        """SIGTERM, wait; returns the exit code."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise Failure("%s did not exit within %ss of SIGTERM" % (self.name, timeout))
        time.sleep(0.05)  # let the reader threads drain
        if self in _procs:
            _procs.remove(self)
        return self.p.returncode

    def kill(self):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.p.wait()
        if self in _procs:
            _procs.remove(self)


class Redis(Proc):
    def __init__(self, port=None, extra=()):
        self.port = port or free_port()
        # Its own working directory: a replica's full sync writes dump.rdb
        # there even with --save "" (never into the source tree).
        self.dir = tempfile.mkdtemp(prefix="tg-redis-")
        argv = [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning",
                "--dir", self.dir] + list(extra)
        super().__init__("redis", argv, ready=None)
        wait_for(self.ping, 10, msg="redis to answer PING")

    def kill(self):
        super().kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def stop(self, timeout=15.0):
        rc = super().stop(timeout)
        shutil.rmtree(self.dir, ignore_errors=True)
        return rc

    def cmd(self, *args):
        """One RESP command over a fresh socket; returns the decoded reply."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=2)
        try:
            out = b"*%d\r\n" % len(args)
            for a in args:
                a = a if isinstance(a, bytes) else str(a).encode()
                out += b"$%d\r\n%s\r\n" % (len(a), a)
            s.sendall(out)
            f = s.makefile("rb")
            return _resp(f)
        finally:
            s.close()

    def ping(self):
        try:
            return self.cmd("PING") == "PONG"
        except OSError:
            return False


def _resp(f):
    line = f.readline()
    if not line:
        raise OSError("redis closed")
    t, rest = line[:1], line[1:-2]
    if t == b"+":
        return rest.decode()
    if t == b"-":
        return Exception(rest.decode())
    if t == b":":
        return int(rest)
    if t == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        return data.decode("utf-8", "replace")
    if t == b"*":
        n = int(rest)
        return None if n < 0 else [_resp(f) for _ in range(n)]
    raise OSError("bad RESP")


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body

    def json(self):
        return json.loads(self.body)

    def header(self, name):
        return self.headers.get(name.lower())

    def meta(self, name):
        """An x-tiergate-* value: the response header, or for a stream whose
        head left before the answer, the last SSE comment named like it
        (": x-tiergate-model: mid")."""
        name = name.lower()
        found = None
        if self.headers.get("content-type", "").startswith("text/event-stream"):
            for line in self.body.decode("utf-8", "replace").replace("\r\n", "\n").split("\n"):
                if line.startswith(": " + name + ": "):
                    found = line[len(name) + 4:]
        return found if found is not None else self.headers.get(name)

    def events(self):
        """SSE data payloads in order ("[DONE]" kept as a string)."""
        out = []
        for block in self.body.decode().replace("\r\n", "\n").split("\n\n"):
            data = [l[5:].lstrip() for l in block.split("\n") if l.startswith("data:")]
            if data:
                d = "\n".join(data)
                out.append(d if d == "[DONE]" else json.loads(d))
        return out

    def __repr__(self):
        return "<%d %s>" % (self.status, self.body[:300])


def request(port, method, path, body=None, headers=None, timeout=30):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        h = {"content-type": "application/json"} if body is not None else {}
        h.update(headers or {})
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        return Response(r.status, r.getheaders(), r.read())
    finally:
        c.close()


class Mock(Proc):
    def __init__(self, extra=()):
        super().__init__("mock", [MOCK, "--port", "0"] + list(extra), ready=r"listening on 127\.0\.0\.1:(\d+)")
        self.port = int(self.match.group(1))

    def ctl(self, method, path, body=None):
        r = request(self.port, method, path, body)
        check(r.status == 200, "mock control %s %s: %r" % (method, path, r))
        return r.json()

    def script(self, action=None, model=None, times=1, path_prefix=None, body_contains=None):
        rule = {"times": times, "action": action or {}}
        if model:
            rule["model"] = model
        if path_prefix:
            rule["path_prefix"] = path_prefix
        if body_contains:
            rule["body_contains"] = body_contains
        return self.ctl("POST", "/_mock/script", rule)

    def reset(self):
        self.ctl("POST", "/_mock/reset")

    def requests(self):
        return self.ctl("GET", "/_mock/requests")

    def stats(self):
        return self.ctl("GET", "/_mock/stats")


def base_config(mock_port, redis_port, **over):
    """The DESIGN minimal config pointed at the mock, plus overrides."""
    def model(name, inp, out):
        return {"base_url": "http://127.0.0.1:%d/v1" % mock_port, "upstream_model": name,
                "api_key_env": "MOCK_KEY", "input_per_mtok": inp, "output_per_mtok": out,
                "connect_timeout_ms": 2000, "first_byte_timeout_ms": 5000,
                "idle_timeout_ms": 5000, "total_timeout_ms": 20000}
    cfg = {
        "listen": "127.0.0.1:0",
        "shards": 2,
        "redis": {"url": "redis://127.0.0.1:%d/0" % redis_port},
        "models": {"mini": model("gpt-cheap", 0.15, 0.60),
                   "mid": model("gpt-mid", 0.40, 1.60),
                   "large": model("gpt-large", 2.50, 10.00)},
        "tiers": {"cheap": ["mini"], "medium": ["mid"], "expensive": ["large"]},
        "drain_timeout_s": 5,
    }
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            merged = dict(cfg[k])
            merged.update(v)
            cfg[k] = merged
        else:
            cfg[k] = v
    return cfg


class Gateway(Proc):
    def __init__(self, config, env=None, extra_args=(), expect_fail=False):
        fd, self.config_path = tempfile.mkstemp(prefix="tg-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            f.write(config if isinstance(config, str) else json.dumps(config, indent=2))
        e = dict(os.environ)
        e.update({"MOCK_KEY": MOCK_KEY, "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:exitcode=86",
                  "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1:exitcode=87"})
        for k in ("TIERGATE_API_KEYS", "TIERGATE_ADMIN_KEY", "TIERGATE_METRICS_KEY", "TIERGATE_LISTEN",
                  "TIERGATE_REDIS_URL"):
            e.pop(k, None)
        e.update(env or {})
        super().__init__("tiergate", [TIERGATE, "-c", self.config_path] + list(extra_args), env=e,
                         ready=None if expect_fail else r"listening on [^ ]*:(\d+)")
        self.port = int(self.match.group(1)) if self.match else None

    def req(self, method, path, body=None, headers=None, timeout=30):
        return request(self.port, method, path, body, headers, timeout)

    def chat(self, body=None, headers=None, timeout=30, **fields):
        b = {"model": "cheap", "messages": [{"role": "user", "content": "hello"}]}
        if body:
            b = body
        b.update(fields)
        return self.req("POST", "/v1/chat/completions", b, headers, timeout)

    def decisions(self):
        out = []
        for line in self.output().split("\n"):
            if line.startswith("{") and '"request_id"' in line:
                out.append(json.loads(line))
        return out

    def decision(self, r, timeout=3):
        """The decision line of response r, waiting for it: the log reaches
        us through a pipe reader thread, maybe after the response."""
        rid = r.header("x-request-id")
        check(rid, "response carries x-request-id")

        def find():
            for d in self.decisions():
                if d["request_id"] == rid:
                    return d
            return None
        return wait_for(find, timeout, msg="decision line for %s" % rid)

    def metrics(self):
        r = self.req("GET", "/metrics")
        check(r.status == 200, "metrics: %r" % r)
        vals = {}
        for line in r.body.decode().split("\n"):
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                vals[k] = float(v)
        return vals

    def reload(self, config):
        with open(self.config_path, "w") as f:
            f.write(config if isinstance(config, str) else json.dumps(config))
        self.signal(signal.SIGHUP)

    def stop_clean(self, timeout=15.0):
        """Stops and fails the test on a non-zero exit or a sanitizer report."""
        rc = self.stop(timeout)
        out = self.output()
        for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehaviorSanitizer"):
            if marker in out:
                raise Failure("sanitizer report in tiergate output:\n" + out[-6000:])
        check(rc == 0, "tiergate exited with %s:\n%s" % (rc, out[-3000:]))
        try:
            os.unlink(self.config_path)
        except OSError:
            pass


class World:
    """Redis + mock + gateway, shared by the tests of one file."""

    def __init__(self, **config_over):
        self.redis = Redis()
        self.mock = Mock()
        self.config_over = config_over
        self.gw = None
        self.env = {}
        self.start()

    def config(self, **over):
        merged = dict(self.config_over)
        merged.update(over)
        return base_config(self.mock.port, self.redis.port, **merged)

    def start(self, env=None, **over):
        if self.gw:
            self.gw.stop_clean()
        self.env = env or {}
        cfg = self.config(**over)
        since = self._last_client_id()
        self.gw = Gateway(cfg, env=self.env)
        self.wait_redis_clients(cfg, since)
        return self.gw

    def _redis_clients(self):
        """CLIENT LIST as a list of dicts (None when Redis is down)."""
        try:
            clients = self.redis.cmd("CLIENT", "LIST")
        except OSError:
            return None
        return [dict(kv.split("=", 1) for kv in l.split() if "=" in kv)
                for l in (clients or "").split("\n") if l]

    def _last_client_id(self):
        return max((int(c.get("id", 0)) for c in self._redis_clients() or []), default=0)

    def wait_redis_clients(self, cfg, since=0):
        """"listening" is logged before each shard's Redis connection has
        answered its first PING; a request in that window is (rightly) a
        cache error, or a 503 from the Files API. Tests that expect hits
        wait for every shard's clients (only those opened after `since`: a
        stopped gateway's may still be listed), the batch ones past their
        handshake's CLIENT SETNAME."""
        if cfg.get("cache", {}).get("enabled") is False or \
                cfg.get("redis", {}).get("url") != "redis://127.0.0.1:%d/0" % self.redis.port:
            return
        shards = cfg.get("shards", 1)

        def shards_connected():
            clients = self._redis_clients()
            if clients is None:
                return True  # Redis is down on purpose in this test
            # This gateway's connections (ids after `since`: Redis may still
            # list an earlier gateway's), not this CLIENT LIST, not the
            # process's pub/sub subscriber (it may connect first). Per shard:
            # the cache's, past its handshake (SCRIPT LOAD once PING answered),
            # and the one for files and batches (rconn.c) past CLIENT SETNAME.
            new = [c for c in clients if int(c.get("id", 0)) > since and c.get("sub") == "0"
                   and not c.get("cmd", "").startswith("client")]
            cache = [c for c in new if c.get("name") != "tiergate-batch"
                     and c.get("cmd") not in ("NULL", "auth", "select", "role", "ping")]
            batch = [c for c in new if c.get("name") == "tiergate-batch"
                     and c.get("cmd") not in ("auth", "select", "NULL")]
            return len(cache) >= shards and len(batch) >= shards
        wait_for(shards_connected, 5, msg="every shard's Redis connection")

    def reset(self):
        self.mock.reset()
        self.flush_cache()

    def flush_cache(self):
        """Cache stores are fire-and-forget, written after the answer went
        out: one from the last answer can still be on its way. Let it land,
        then flush."""
        time.sleep(0.05)
        self.redis.cmd("FLUSHALL")

    def close(self):
        err = None
        if self.gw:
            try:
                self.gw.stop_clean()
            except Failure as e:
                err = e
        self.mock.kill()
        self.redis.kill()
        if err:
            raise err


_tests = []


def test(fn):
    _tests.append(fn)
    return fn


def chat_body(content="hello", model="cheap", **fields):
    b = {"model": model, "messages": [{"role": "user", "content": content}]}
    b.update(fields)
    return b


def run(module_name, world_factory=None, only=None):
    """Runs the module's tests; returns (passed, failed)."""
    passed = failed = 0
    world = None
    tests = [t for t in _tests if t.__module__ == module_name and (not only or only in t.__name__)]
    if not tests:
        return 0, 0
    try:
        world = world_factory() if world_factory else World()
    except Exception:
        print("  FAIL %s: setup\n%s" % (module_name, traceback.format_exc()), flush=True)
        return 0, len(tests)
    for t in tests:
        t0 = time.time()
        try:
            world.reset()
            t(world)
            # A test that killed or restarted the gateway leaves a live one behind.
            check(world.gw.p.poll() is None, "gateway died:\n" + world.gw.output()[-3000:])
            passed += 1
            print("  ok   %-48s %6.2fs" % (t.__name__, time.time() - t0), flush=True)
        except Exception as e:
            failed += 1
            print("  FAIL %-48s %6.2fs\n%s" % (t.__name__, time.time() - t0,
                  "".join(traceback.format_exception(type(e), e, e.__traceback__))[-4000:]), flush=True)
            if world.mock.p.poll() is not None:
                print("  (the mock exited with %s:\n%s)" % (world.mock.p.returncode, world.mock.output()[-4000:]),
                      flush=True)
            try:
                if world.gw.p.poll() is not None:
                    world.start()
            except Exception:
                pass
    try:
        world.close()
    except Exception as e:
        failed += 1
        print("  FAIL %s: teardown: %s" % (module_name, e), flush=True)
    return passed, failed
