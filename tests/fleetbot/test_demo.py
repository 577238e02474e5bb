"""`fleetbot demo` end to end: the real fleet, bot and offline Bot API, driven like a script
piping commands into the terminal chat."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator
from pathlib import Path

from fleetbot.demo import run_demo


async def test_demo_answers_commands_and_buttons(tmp_path: Path) -> None:
    out = io.StringIO()

    async def script() -> AsyncIterator[str]:
        yield "/status\n"
        yield "/agent ripley\n"
        # Press the card's Wake button by the number the terminal printed for it.
        wake = re.findall(r"\[(\d+)\] [^\[\n]*Wake", out.getvalue())
        assert wake, out.getvalue()
        yield f"{wake[-1]}\n"
        yield "999\n"
        yield "/pause\n"
        yield "quit\n"
        yield "/never-sent\n"

    status = await run_demo(tmp_path / "demo.db", lines=script(), out=out)
    text = out.getvalue()
    assert status == 0
    assert "Fleet status" in text and "Aliens" in text and "Matrix" in text
    assert "Ripley" in text
    assert "(there is no button [999])" in text
    assert "Usage" in text or "usage" in text  # /pause without an agent answers with usage
    assert "never-sent" not in text
    assert (tmp_path / "demo.log").exists()
    assert (tmp_path / "demo.db").exists()
