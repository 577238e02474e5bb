#!/usr/bin/env bash
# The whole test run, from a clean clone with nothing but Python (and npm, for the real-OpenClaw
# and agent CLI suites) installed: what `.ci/run` runs and the README's test command. The unit
# suite runs twice: on SQLite, then on a throwaway PostgreSQL server it starts itself. Each step
# prints a header; the first one that fails stops the run. The last line is the real-OpenClaw suite's
# pytest summary.
set -euo pipefail
cd "$(dirname "$0")/.."

step() {
    printf '\n=== %s\n' "$*"
}

# pip's output without the machine's notes on find-links folders that do not exist.
quiet_pip() {
    local out code=0
    out=$("$@" 2>&1) || code=$?
    if [ -n "$out" ]; then
        grep -v '^WARNING: Location' <<< "$out" || true
    fi
    return "$code"
}

step "virtualenv and test tools (.venv, pip install -e '.[test]')"
python3 -m venv .venv
quiet_pip .venv/bin/pip install -q -e '.[test]'

step "ruff format --check"
.venv/bin/ruff format --check .

step "ruff check"
.venv/bin/ruff check .

step "mypy"
.venv/bin/mypy

step "unit suite (pytest -n 2)"
.venv/bin/pytest -n 2

step "PostgreSQL server for the suite on PostgreSQL (scripts/pg.sh start)"
# The image's PostgreSQL 15 server binaries; a machine without them gets PostgreSQL 16 from a
# pip wheel (pgserver) into the venv, so no system package is needed.
if [ -z "${PG_BIN:-}" ] && [ ! -x /usr/lib/postgresql/15/bin/initdb ]; then
    quiet_pip .venv/bin/pip install -q 'pgserver==0.1.4'
    PG_BIN=$(echo "$PWD"/.venv/lib/python3*/site-packages/pgserver/pginstall/bin)
    export PG_BIN
fi
PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/fleetbot-ci-pg.XXXXXX")
trap 'bash scripts/pg.sh stop "$PG_DIR" > /dev/null 2>&1 || true' EXIT
bash scripts/pg.sh start "$PG_DIR" > /dev/null
eval "$(bash scripts/pg.sh env "$PG_DIR")"

step "unit suite on PostgreSQL (FLEETBOT_TEST_PG_URL, pytest -n 2)"
FLEETBOT_TEST_PG_URL=$FLEETBOT_PG_URL .venv/bin/pytest -n 2
bash scripts/pg.sh stop "$PG_DIR" > /dev/null
trap - EXIT

step "wheel (scripts/check_wheel.sh)"
bash scripts/check_wheel.sh

step "Claude Code and Codex from npm (scripts/install_agent_clis.sh)"
bash scripts/install_agent_clis.sh

step "real agent CLI suite (pytest -m e2e tests/agents)"
code=0
.venv/bin/pytest -m e2e tests/agents -p no:randomly || code=$?
if [ "$code" -ne 0 ]; then
    [ "$code" -eq 5 ] && echo "test.sh: the agent CLI suite collected no tests; that is a failure" >&2
    exit 1
fi

step "OpenClaw gateway from npm (scripts/install_openclaw.sh)"
bash scripts/install_openclaw.sh

step "real-OpenClaw suite (pytest -m e2e tests/e2e)"
code=0
.venv/bin/pytest -m e2e tests/e2e -p no:randomly || code=$?
if [ "$code" -eq 5 ]; then
    echo "test.sh: the real-OpenClaw suite collected no tests; that is a failure, not a pass" >&2
    exit 1
fi
exit "$code"
