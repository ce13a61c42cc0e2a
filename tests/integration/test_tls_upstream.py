# SPDX-License-Identifier: MIT
"""HTTPS upstreams (issue 18): the mock serves TLS with a certificate from a
CA of our own (tests/mock/gen_certs.sh). A model whose ca_file names that CA
talks to it (plain and streamed answers, kept-alive connections); a model
without ca_file verifies against the system store, fails, and the client
gets an OpenAI-shaped 502 while the gateway keeps serving. --check-config
refuses a ca_file that is unreadable, holds no certificate, or sits on an
http:// model."""
import atexit
import http.client
import json
import os
import shutil
import ssl
import subprocess
import tempfile

from harness import MOCK, ROOT, TIERGATE, Proc, World, chat_body, check, eq, test, wait_for

PKI = tempfile.mkdtemp(prefix="tg-pki-")
atexit.register(shutil.rmtree, PKI, True)
subprocess.run([os.path.join(ROOT, "tests", "mock", "gen_certs.sh"), PKI], check=True)
CA = os.path.join(PKI, "ca.pem")
NO_TRIP = {"failure_threshold": 0, "failure_ratio": 0}


class TlsMock(Proc):
    """The mock in TLS mode; its control API is reached over HTTPS too."""

    def __init__(self):
        super().__init__("mock-tls", [MOCK, "--port", "0", "--tls-cert", os.path.join(PKI, "server.pem"),
                                      "--tls-key", os.path.join(PKI, "server.key")],
                         ready=r"listening on 127\.0\.0\.1:(\d+)")
        self.port = int(self.match.group(1))
        self.ctx = ssl.create_default_context(cafile=CA)

    def ctl(self, method, path, body=None):
        c = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=10)
        try:
            c.request(method, path, body=json.dumps(body) if body is not None else None)
            r = c.getresponse()
            data = r.read()
            check(r.status == 200, "mock-tls control %s %s: %d %r" % (method, path, r.status, data))
            return json.loads(data)
        finally:
            c.close()


class TlsWorld(World):
    def __init__(self):
        self.tls = TlsMock()
        super().__init__(breaker=NO_TRIP)

    def config(self, **over):
        cfg = super().config(**over)
        base = "https://127.0.0.1:%d/v1" % self.tls.port
        cfg["models"]["large"] = dict(cfg["models"]["large"], base_url=base, ca_file=CA)
        # The same upstream, trusted through the system store only.
        cfg["models"]["large-noca"] = dict(cfg["models"]["large"], base_url=base)
        del cfg["models"]["large-noca"]["ca_file"]
        return cfg

    def reset(self):
        super().reset()
        self.tls.ctl("POST", "/_mock/reset")

    def close(self):
        try:
            super().close()
        finally:
            self.tls.kill()


WORLD = TlsWorld


def ask(w, model, content="hello over TLS", **fields):
    """Every call goes upstream: no-store keeps the cache out of it."""
    return w.gw.req("POST", "/v1/chat/completions", chat_body(content, model=model, **fields),
                    {"cache-control": "no-store"})


@test
def ca_file_model_answers_over_tls(w):
    r = ask(w, "large")
    eq(r.status, 200, "answer over TLS (%r)" % r)
    eq(r.json()["choices"][0]["message"]["content"], "Hello from gpt-large")
    eq(r.header("x-tiergate-model"), "large")
    recs = w.tls.ctl("GET", "/_mock/requests")
    eq(len(recs), 1, "the TLS mock saw the request")
    eq(recs[0]["headers"]["authorization"], "Bearer sk-mock-upstream-key-0123456789")
    eq(recs[0]["path"], "/v1/chat/completions")
    eq(w.mock.stats()["requests"], 0, "nothing went to the plain-HTTP mock")


@test
def ca_file_model_streams_over_tls(w):
    w.tls.ctl("POST", "/_mock/script", {"action": {"content": "one two three four", "chunk_chars": 4,
                                                    "drip_ms": 5}})
    r = ask(w, "large", stream=True)
    eq(r.status, 200, "stream over TLS (%r)" % r)
    ev = r.events()
    eq(ev[-1], "[DONE]")
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in ev[:-1] if e.get("choices"))
    eq(text, "one two three four")


@test
def tls_connections_are_kept_alive(w):
    for i in range(12):
        eq(ask(w, "large", content="keep-alive %d" % i).status, 200)
    st = w.tls.ctl("GET", "/_mock/stats")
    eq(st["requests"], 12)
    # One connection per shard at most (the stats call itself adds one).
    check(st["connections"] <= w.config()["shards"] + 1,
          "connections reused across requests: %r" % st)


@test
def without_ca_file_verification_fails_502(w):
    r = ask(w, "large-noca")
    eq(r.status, 502, "an untrusted certificate is an upstream failure (%r)" % r)
    err = r.json()["error"]
    eq(sorted(err), ["code", "message", "param", "type"])
    check("sk-mock" not in r.body.decode(), "no provider key in the error")
    eq(w.tls.ctl("GET", "/_mock/stats")["requests"], 0, "no request was sent over the failed handshake")
    d = w.gw.decision(r)
    check(json.dumps(d).find("sk-mock") < 0, "no key in the decision line")
    # The gateway keeps serving, over TLS too.
    eq(ask(w, "large").status, 200)


def check_config(w, model_over):
    cfg = w.config()
    cfg["models"]["large"] = dict(cfg["models"]["large"], **model_over)
    fd, path = tempfile.mkstemp(prefix="tg-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(cfg, f)
    try:
        p = subprocess.run([TIERGATE, "-c", path, "--check-config"], capture_output=True, text=True,
                           env=dict(os.environ, MOCK_KEY="x"), timeout=20)
    finally:
        os.unlink(path)
    return p.returncode, p.stdout + p.stderr


@test
def check_config_refuses_bad_ca_file(w):
    rc, out = check_config(w, {})
    eq(rc, 0, "the world's own config is valid: " + out)
    rc, out = check_config(w, {"ca_file": os.path.join(PKI, "missing.pem")})
    check(rc != 0 and "models.large.ca_file" in out and "cannot read" in out, out)
    rc, out = check_config(w, {"ca_file": os.path.join(PKI, "server.key")})
    check(rc != 0 and "no PEM certificate" in out, out)
    rc, out = check_config(w, {"ca_file": CA, "base_url": "http://127.0.0.1:%d/v1" % w.mock.port})
    check(rc != 0 and "only applies to an https:// base_url" in out, out)
    rc, out = check_config(w, {"ca_file": 7})
    check(rc != 0 and "models.large.ca_file" in out, out)


@test
def reload_swaps_trust(w):
    """SIGHUP with ca_file removed: the next call verifies against the
    system store and fails; put back, it answers again."""
    cfg = w.config()
    del cfg["models"]["large"]["ca_file"]
    w.gw.reload(cfg)
    wait_for(lambda: ask(w, "large").status == 502, 5, msg="reload without ca_file to apply")
    w.gw.reload(w.config())
    wait_for(lambda: ask(w, "large").status == 200, 5, msg="reload with ca_file to apply")
