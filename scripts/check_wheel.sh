#!/usr/bin/env bash
# A built wheel, installed in a fresh virtualenv, can `init`, `check` and `run --no-bot`: what a
# user gets from `pip install fleetbot`, not what an editable checkout happens to have on disk.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
work=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT

"$python" -m pip wheel -q --no-deps -w "$work/dist" . 2>&1 | grep -v '^WARNING: Location' || true
"$python" -m venv "$work/venv"
# The runtime dependencies come from the index as a user's would; the wheel from the build above.
"$work/venv/bin/pip" install -q "$work"/dist/fleetbot-*.whl 2>&1 | grep -v '^WARNING: Location' || true
fleetbot="$work/venv/bin/fleetbot"
cd "$work"  # nowhere near the checkout: nothing can be imported from it by accident

"$fleetbot" --version
# The agent CLI and its skill (package data) come with the wheel.
"$fleetbot" agent skill | grep -q "^name: fleetbot$"
"$fleetbot" init site > init.log
grep -q "config.yaml" init.log
test -s site/config.yaml
# The example config has no bot token and agents nobody runs here: check reports them and
# exits 1, but it must finish with a report, never a traceback.
set +e
FLEETBOT_TELEGRAM_TOKEN= "$fleetbot" check -c site/config.yaml > check.log 2>&1
code=$?
set -e
if [ "$code" -gt 1 ] || grep -q Traceback check.log; then
    cat check.log
    echo "check_wheel: fleetbot check crashed (exit $code)" >&2
    exit 1
fi
grep -q "authenticated" check.log

port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
FLEETBOT_API__LISTEN="127.0.0.1:$port" "$fleetbot" run --no-bot -c site/config.yaml > run.log 2>&1 &
pid=$!
for _ in $(seq 1 100); do
    if "$python" -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/healthz', timeout=1)" 2>/dev/null; then
        break
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
        cat run.log
        echo "check_wheel: fleetbot run --no-bot exited early" >&2
        exit 1
    fi
    sleep 0.2
done
"$python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/healthz', timeout=2)"
kill -TERM "$pid"
wait "$pid"
pid=
if grep -q Traceback run.log; then
    cat run.log
    exit 1
fi
echo "check_wheel: the wheel installs; init, check and run --no-bot work"
echo "wheel: 1 passed, 0 failed"
