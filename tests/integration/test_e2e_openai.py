# SPDX-License-Identifier: MIT
"""Runs tests/e2e/openai_sdk.test.mjs (the official openai npm client) and
tests/e2e/sdk_sweep.test.mjs (LangChain JS, the Vercel AI SDK) against this
world's gateway and mock: the DESIGN models plus an embedding model "emb"
(client.embeddings.create) and the semantic cache on, so a paraphrase is
served through the SDK too. The breakers do not trip here: the retry tests
make every model fail on purpose."""
import os
import subprocess

from harness import ROOT, World, check, test



class E2EWorld(World):
    def config(self, **over):
        cfg = World.config(self, **over)
        cfg["models"]["emb"] = {"base_url": "http://127.0.0.1:%d/v1" % self.mock.port,
                                "upstream_model": "mock-embed", "kind": "embedding",
                                "api_key_env": "MOCK_KEY", "input_per_mtok": 0.02}
        return cfg

E2E = os.path.join(ROOT, "tests", "e2e")
WORLD = lambda: E2EWorld(breaker={"failure_threshold": 0, "failure_ratio": 0},  # noqa: E731
                         cache={"semantic": {"enabled": True, "model": "emb"}})


def run_node(w, script, package):
    check(os.path.isdir(os.path.join(E2E, "node_modules", package)),
          "tests/e2e/node_modules/%s missing: run make deps" % package)
    env = dict(os.environ, TG_URL="http://127.0.0.1:%d" % w.gw.port,
               MOCK_URL="http://127.0.0.1:%d" % w.mock.port)
    p = subprocess.run(["node", script], cwd=E2E, env=env, capture_output=True, text=True,
                       timeout=180)
    print("\n".join("    " + l.strip() for l in p.stdout.strip().split("\n")))
    check(p.returncode == 0, "%s failed:\n%s%s" % (script, p.stdout[-4000:], p.stderr[-2000:]))


@test
def openai_npm_client(w):
    run_node(w, "openai_sdk.test.mjs", "openai")


@test
def langchain_and_vercel_ai_sdk(w):
    run_node(w, "sdk_sweep.test.mjs", "@langchain/openai")
