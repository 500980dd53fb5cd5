#!/usr/bin/env bash
# make test: the test suite on its own embedded Postgres + pgvector and Redis (.run/test), stopped after.
set -euo pipefail
cd "$(dirname "$0")/.."
export ORCH_RUN_DIR="${ORCH_RUN_DIR:-$PWD/.run/test}"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/runtime-$(id -u)}"
mkdir -p "$XDG_RUNTIME_DIR" "$ORCH_RUN_DIR"
trap '.venv/bin/python -m config.services stop >/dev/null 2>&1 || true' EXIT
# The browser tests drive Debian's Chromium through Playwright (which downloads no browser of its own).
command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)
# The README's "Using it" block is run in bash and in zsh (tests/test_readme.py).
command -v zsh >/dev/null || (apt-get update -qq && apt-get install -y -qq zsh >/dev/null) || true
# ops (issue 12): `docker-compose config` validates docker-compose.yml offline (no Docker engine needed).
command -v docker-compose >/dev/null || (apt-get update -qq && apt-get install -y -qq docker-compose >/dev/null)
.venv/bin/python -m pytest "$@"
