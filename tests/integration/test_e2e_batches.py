# SPDX-License-Identifier: MIT
"""Runs tests/e2e/batches.test.mjs (the official openai npm client against
the Files + Batches API) against this world's gateway and mock."""
import os
import subprocess

from harness import ROOT, World, check, test

E2E = os.path.join(ROOT, "tests", "e2e")
WORLD = lambda: World(batch={"lease_s": 2})  # noqa: E731


@test
def openai_npm_client_batches(w):
    check(os.path.isdir(os.path.join(E2E, "node_modules", "openai")),
          "tests/e2e/node_modules/openai missing: run make deps")
    env = dict(os.environ, TG_URL="http://127.0.0.1:%d" % w.gw.port,
               MOCK_URL="http://127.0.0.1:%d" % w.mock.port)
    p = subprocess.run(["node", "batches.test.mjs"], cwd=E2E, env=env, capture_output=True,
                       text=True, timeout=240)
    print("\n".join("    " + l.strip() for l in p.stdout.strip().split("\n")))
    check(p.returncode == 0, "openai npm batches e2e failed:\n" + p.stdout[-4000:] + p.stderr[-2000:])
