# SPDX-License-Identifier: MIT
"""make eval-cascade's harness (eval/cascade.py) on the sanitizer build: 40
rows of the cascade eval set through a real gateway with oracle verifier
scores (9 for a right cheap answer, 3 for a wrong one). At min_score 7 every
wrong answer must be escalated and no right one, the served answers must be
the recorded ones (the script checks each), structural checks alone catch
nothing, and the gateway's decision lines must carry the scores given."""
import json
import os
import subprocess
import tempfile

from harness import BUILD, ROOT, World, check, eq, test

# The workspace's full set when it is there, else its first 40 rows,
# committed (tests/data/README.md): a fresh clone runs this test too.
DATA = os.path.join(ROOT, "..", "shared", "eval", "cascade_dev.jsonl")
if not os.path.exists(DATA):
    DATA = os.path.join(ROOT, "tests", "data", "cascade_dev_40.jsonl")


def WORLD():
    return World()


@test
def self_check_on_40_rows(w):
    out = os.path.join(tempfile.mkdtemp(prefix="tg-evalc-"), "r.json")
    p = subprocess.run(["python3", os.path.join(ROOT, "eval", "cascade.py"), BUILD, "--limit", "40",
                        "--self-check", "--json", out], capture_output=True, timeout=600,
                       env=dict(os.environ, TG_EVAL_CASCADE=DATA))
    text = p.stdout.decode() + p.stderr.decode()
    eq(p.returncode, 0, text)
    check("self-check: ok" in text, text)
    r = json.load(open(out))
    by = {x["validator"]: x for x in r["results"]}
    eq(by["structural only"]["escalated"], 0)
    eq(by["always strong"]["escalated"], 40)
    eq(by["verifier min_score 7"]["caught_wrong"], r["wrong"])
    check(by["verifier min_score 7"]["x_strong"] < 1, by["verifier min_score 7"])
    # The shadow pass: a label for every row, agreement counted against the grades.
    sh = r["shadow"]
    eq(sh["compared"], 40)
    eq(sh["agree_right"] + sh["agree_wrong"] + sh["disagree_right"] + sh["disagree_wrong"], 40)
