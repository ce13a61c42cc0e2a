# SPDX-License-Identifier: MIT
"""Runs tests/e2e/openai_sdk.test.mjs (the official openai npm client)
against this world's gateway and mock: the DESIGN models plus an
embedding model "emb" (client.embeddings.create) and the semantic cache
on, so a paraphrase is served through the SDK too."""
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


def WORLD():
    return E2EWorld(cache={"semantic": {"enabled": True, "model": "emb"}})

E2E = os.path.join(ROOT, "tests", "e2e")


@test
def openai_npm_client(w):
    check(os.path.isdir(os.path.join(E2E, "node_modules", "openai")),
          "tests/e2e/node_modules/openai missing: run make deps")
    env = dict(os.environ, TG_URL="http://127.0.0.1:%d" % w.gw.port,
               MOCK_URL="http://127.0.0.1:%d" % w.mock.port)
    p = subprocess.run(["node", "openai_sdk.test.mjs"], cwd=E2E, env=env, capture_output=True,
                       text=True, timeout=180)
    print("\n".join("    " + l.strip() for l in p.stdout.strip().split("\n")))
    check(p.returncode == 0, "openai npm e2e failed:\n" + p.stdout[-4000:] + p.stderr[-2000:])
