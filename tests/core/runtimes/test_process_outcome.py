"""A process that exits 0 without calling `finish` ends its run well, with its last words."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from runtime_fakes import TOKEN, job

from core.config import ProcessRuntime
from core.errors import ProcessFailed
from core.runtimes.process import EXITED, SUMMARY_CHARS, ProcessAgentRuntime

BASE_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8"}


def py(code: str, *args: str, **kw: Any) -> ProcessAgentRuntime:
    cfg = ProcessRuntime(kind="process", command=[sys.executable, "-c", code, *args], **kw)
    return ProcessAgentRuntime(cfg, BASE_ENV)


async def test_exit_zero_keeps_the_last_lines_as_the_summary() -> None:
    code = (
        "import os\n"
        "for n in range(200): print(f'step {n:03d} of the work, all fine')\n"
        "print()\n"
        "print('used token', os.environ['FLEETBOT_TOKEN'])\n"
        "print('\\x1b[32mdone: fixed the login page\\x1b[0m')\n"
        "print('   ')\n"
    )
    async with py(code) as rt:
        result = await rt.dispatch(job())
    assert result.finished and result.outcome is None
    assert (result.reason, result.reason_code) == (EXITED, "exited")
    assert (
        result.reason
        == "the process exited 0 without calling finish; its last output is the summary"
    )
    lines = result.summary.split("\n")
    assert lines[-2:] == ["used token [redacted]", "[32mdone: fixed the login page [0m"]
    assert lines[-3] == "step 199 of the work, all fine"
    assert len(result.summary) <= SUMMARY_CHARS and TOKEN not in result.summary
    assert len(result.summary) > SUMMARY_CHARS - 40  # as many whole lines as fit


async def test_one_long_line_keeps_its_end() -> None:
    async with py("print('x' * 5000 + 'THE END')") as rt:
        result = await rt.dispatch(job())
    assert len(result.summary) == SUMMARY_CHARS
    assert result.summary.startswith("…x") and result.summary.endswith("THE END")


async def test_silent_exit_zero_has_an_empty_summary() -> None:
    async with py("pass") as rt:
        result = await rt.dispatch(job())
    assert result.finished and result.summary == "" and result.reason_code == "exited"


async def test_nonzero_exit_still_fails_with_stderr_not_stdout() -> None:
    code = "import sys; print('all good'); sys.stderr.write('boom\\n'); sys.exit(4)"
    async with py(code) as rt:
        with pytest.raises(ProcessFailed, match=r"exited with code 4: boom$"):
            await rt.dispatch(job())


async def test_the_wake_reason_reaches_the_child(tmp_path: Path) -> None:
    out = tmp_path / "env.json"
    code = "import json, os, sys; open(sys.argv[1], 'w').write(json.dumps(dict(os.environ)))"
    async with py(code, str(out)) as rt:
        await rt.dispatch(job(wake_reason="assigned"))
    env = json.loads(out.read_text())
    assert env["FLEETBOT_WAKE_REASON"] == "assigned"
    assert env["FLEETBOT_ISSUE_ID"] == "ACME-7" and env["FLEETBOT_TOKEN"] == TOKEN
    assert "FLEETBOT_TOKEN_FILE" not in env  # no agent learns where long-lived tokens live
