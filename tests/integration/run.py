#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Runs tests/integration/test_*.py (or those matching argv[1]) and prints
"N passed, N failed"."""
import glob
import importlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def main():
    pattern = sys.argv[1] if len(sys.argv) > 1 else ""
    only = sys.argv[2] if len(sys.argv) > 2 else None
    files = sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "test_*.py")))
    total_p = total_f = 0
    t0 = time.time()
    for f in files:
        name = os.path.splitext(os.path.basename(f))[0]
        if pattern and pattern not in name:
            continue
        print("%s:" % name, flush=True)
        mod = importlib.import_module(name)
        p, fl = harness.run(name, getattr(mod, "WORLD", None), only)
        total_p += p
        total_f += fl
    print("integration (%.0fs): %d passed, %d failed" % (time.time() - t0, total_p, total_f), flush=True)
    sys.exit(1 if total_f else 0)


if __name__ == "__main__":
    main()
