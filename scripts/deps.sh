#!/usr/bin/env bash
# Installs what tiergate needs to build, test and benchmark on Debian 12,
# only what is missing. Runs as root or through sudo; never asks questions.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
for p in build-essential pkg-config libmicrohttpd-dev libcurl4-openssl-dev libhiredis-dev \
         libjansson-dev libssl-dev libjemalloc-dev libpcre2-dev redis-server; do
    have_pkg "$p" || need_pkgs+=("$p")
done
# Commands that may come from elsewhere than Debian (e.g. NodeSource's nodejs
# bundles npm and conflicts with Debian's npm package): check the command.
command -v curl >/dev/null || need_pkgs+=(curl)
command -v python3 >/dev/null || need_pkgs+=(python3)
if [ "${TG_DEPS_NODE:-1}" = 1 ]; then
    command -v node >/dev/null || need_pkgs+=(nodejs)
    command -v npm >/dev/null || need_pkgs+=(npm)
fi
# Benchmarks and compose validation: only when asked (make bench / make test).
# (gnuplot draws bench/plots/; node runs the Portkey peer.)
if [ "${TG_DEPS_BENCH:-0}" = 1 ]; then
    for p in wrk nginx-light gnuplot-nox; do have_pkg "$p" || need_pkgs+=("$p"); done
    command -v node >/dev/null || need_pkgs+=(nodejs)
    command -v npm >/dev/null || need_pkgs+=(npm)
fi
# Tests: compose validation, clang + libclang-rt-14-dev for the libFuzzer
# harnesses (make fuzz; make test replays their corpus), clang-format and
# cppcheck for make fmt-check and make lint, and Debian's chromium, which the
# /dashboard test drives headless through playwright-core.
if [ "${TG_DEPS_TEST:-1}" = 1 ]; then
    for p in docker-compose clang libclang-rt-14-dev clang-format cppcheck chromium; do
        have_pkg "$p" || need_pkgs+=("$p")
    done
fi

if [ ${#need_pkgs[@]} -gt 0 ]; then
    echo "deps: installing ${need_pkgs[*]}"
    SUDO=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null || { echo "deps: need root or sudo to install ${need_pkgs[*]}" >&2; exit 1; }
        SUDO="sudo -n"
    fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    # Package scripts must not start services on the host (redis, nginx): tests start their own.
    if [ ! -e /usr/sbin/policy-rc.d ] && [ -z "$SUDO" ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

# make bench's peer: Portkey's open-source gateway, pinned by bench/peers/portkey's lock
# file, installed under build/ (never committed). A failed install is not fatal:
# the bench then reports Portkey as not measured.
if [ "${TG_DEPS_BENCH:-0}" = 1 ]; then
    pk=build/bench-peers/portkey
    if ! cmp -s bench/peers/portkey/package-lock.json "$pk/package-lock.json" 2>/dev/null ||
       [ ! -f "$pk/node_modules/@portkey-ai/gateway/package.json" ]; then
        echo "deps: npm ci in $pk (Portkey gateway for make bench)"
        mkdir -p "$pk" && cp bench/peers/portkey/package.json bench/peers/portkey/package-lock.json "$pk/"
        (cd "$pk" && npm ci --no-audit --no-fund --loglevel=error) ||
            { echo "deps: Portkey install failed; make bench will skip it" >&2; rm -f "$pk/package-lock.json"; }
    fi
fi

# The end-to-end tests drive the gateway with the official openai npm client,
# LangChain JS and the Vercel AI SDK (tests/e2e/package-lock.json pins them),
# and the dashboard in Chromium with playwright-core (no browser download).
if [ "${TG_DEPS_NODE:-1}" = 1 ] && { [ ! -d tests/e2e/node_modules/openai ] ||
                                     [ ! -d tests/e2e/node_modules/playwright-core ] ||
                                     [ ! -d tests/e2e/node_modules/@langchain/openai ] ||
                                     [ ! -d tests/e2e/node_modules/ai ]; }; then
    echo "deps: npm ci in tests/e2e"
    (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
fi
