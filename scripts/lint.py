#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The checks of `make lint` that a compiler and cppcheck do not make
(STYLE.md, issue 11):

  - every C source and header starts with an SPDX line;
  - no function in src/ is longer than MAX_FUNCTION lines (opening and
    closing braces included), except the ones listed in LONG_FUNCTIONS,
    which predate the rule and are split when next touched;
  - src/chat.c, the request pipeline, stays under MAX_CHAT lines: what it
    grows goes into a module of its own (cascade.c, lookup.c, ...);
  - the module picture has no circle: module A uses B when src/A.c or
    include/tiergate/A.h includes tiergate/B.h, and no module may reach
    itself that way (docs/architecture.md draws the picture).

Functions are found the way the tree is formatted (.clang-format,
BreakBeforeBraces: Linux): a definition's "{" and "}" sit alone in
column 0. Prints one line per problem and exits 1 if there is any."""
import glob
import os
import re
import sys

MAX_FUNCTION = 80
MAX_CHAT = 1000
LONG_FUNCTIONS = {
    "src/jsonparse.c": {"decode_string"},
    "src/main.c": {"main"},
    "src/metrics.c": {"tg_metrics_render"},
    "src/router.c": {"scan_text"},
    "src/router_cli.c": {"tg_router_calibrate_stream"},
}
SOURCES = ["src/*.c", "include/tiergate/*.h", "tests/unit/*.c", "tests/unit/*.h", "tests/mock/*.c",
           "tests/mock/*.h", "tests/fuzz/*.c", "tests/fuzz/*.h", "bench/*.c"]


def functions(lines):
    """(name, first line number, length) of each function definition."""
    out = []
    start = None
    for i, line in enumerate(lines):
        if line == "{" and i > 0:
            j = i - 1
            while j > 0 and (not lines[j] or lines[j][0].isspace()):
                j -= 1  # back over a signature's continuation lines
            m = re.search(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(", lines[j])
            start = (m.group(1) if m else "?", i)
        elif line == "}" and start:
            out.append((start[0], start[1] + 1, i - start[1] + 1))
            start = None
    return out


def module_edges():
    """{module: modules it includes}, from src/*.c and include/tiergate/*.h."""
    edges = {}
    for path in glob.glob("src/*.c") + glob.glob("include/tiergate/*.h"):
        name = os.path.splitext(os.path.basename(path))[0]
        with open(path, encoding="utf-8", errors="replace") as f:
            for dep in re.findall(r'#include "tiergate/([a-z_0-9]+)\.h"', f.read()):
                if dep != name:
                    edges.setdefault(name, set()).add(dep)
    return edges


def find_cycle(edges):
    """One circle as a list of modules, or None (depth-first search)."""
    state = {}

    def visit(n, path):
        state[n] = 1
        for d in sorted(edges.get(n, ())):
            if state.get(d) == 1:
                return path[path.index(d):] + [d]
            if not state.get(d):
                found = visit(d, path + [d])
                if found:
                    return found
        state[n] = 2
        return None

    for n in sorted(edges):
        if not state.get(n):
            found = visit(n, [n])
            if found:
                return found
    return None


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    os.chdir(root)
    problems = []
    for pattern in SOURCES:
        for path in sorted(glob.glob(pattern)):
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
            lines = text.split("\n")
            if "SPDX-License-Identifier:" not in lines[0]:
                problems.append("%s:1: no SPDX-License-Identifier line" % path)
            if not path.startswith("src/"):
                continue
            for name, line, length in functions(lines):
                if length > MAX_FUNCTION and name not in LONG_FUNCTIONS.get(path, ()):
                    problems.append("%s:%d: %s() is %d lines (at most %d: split it)" %
                                    (path, line, name, length, MAX_FUNCTION))
            if path == "src/chat.c" and len(lines) - 1 > MAX_CHAT:
                problems.append("src/chat.c: %d lines (at most %d: move a concern into its own "
                                "module)" % (len(lines) - 1, MAX_CHAT))
    cycle = find_cycle(module_edges())
    if cycle:
        problems.append("modules include each other: " + " -> ".join(cycle))
    for p in problems:
        print("lint: " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
