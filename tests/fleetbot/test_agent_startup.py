"""`fleetbot agent` starts in a fraction of a second: an agent pays its start-up on every LLM tool
call, so it must never load the core, FastAPI, pydantic, telegram or aiosqlite (measured with
`python -X importtime`, on the installed console script)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from agent_cli_fleet import FLEETBOT

from fleetbot import cli

HEAVY = ("core", "fastapi", "starlette", "pydantic", "uvicorn", "telegram", "aiosqlite", "bot")


def imported(*args: str, env: dict[str, str] | None = None) -> tuple[set[str], str]:
    """The top-level packages `fleetbot ARGS` imports, and what it printed."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", str(FLEETBOT), *args],
        capture_output=True,
        text=True,
        env=env or {"PATH": "/usr/bin:/bin"},
        timeout=30,
    )
    names = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names, done.stdout


def test_help_and_skill_load_nothing_heavy_not_even_httpx() -> None:
    for args in (["agent", "--help"], ["agent", "skill"], ["agent", "finish", "--help"]):
        names, out = imported(*args)
        assert out, args
        assert not names & {*HEAVY, "httpx"}, (args, sorted(names & {*HEAVY, "httpx"}))


@contextmanager
def fake_api() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"agent_id": "bishop", "name": "Bishop", "role": "cto"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_command_that_calls_the_api_loads_httpx_and_nothing_heavier() -> None:
    with fake_api() as url:
        env = {"PATH": "/usr/bin:/bin", "FLEETBOT_API_URL": url, "FLEETBOT_TOKEN": "t"}
        names, out = imported("agent", "me", env=env)
    assert out.startswith("bishop (Bishop), cto"), out
    assert "httpx" in names and not names & set(HEAVY), sorted(names & set(HEAVY))


def test_fleetbot_help_lists_agent_and_the_in_process_main_hands_it_over(
    capsys: Any,
) -> None:
    assert "agent" in cli.build_parser().format_help()
    assert cli.main(["agent", "skill"]) == 0
    assert capsys.readouterr().out.startswith("---\nname: fleetbot\n")
