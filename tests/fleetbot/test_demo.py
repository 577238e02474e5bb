"""`fleetbot demo` end to end: the real fleet, bot and offline Bot API, driven like a script
piping commands into the terminal chat."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator
from pathlib import Path

from fleetbot.demo import INTRO, OWNER_ID, run_demo
from offline_botapi.server import OfflineBotAPI


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


def suggested_commands() -> list[str]:
    """The commands the demo's welcome text and the README's demo section suggest, as a user
    would type them."""
    found = []
    for line in INTRO.splitlines():
        if line.startswith("  /"):
            found.extend(re.split(r"\s{2,}", line.strip()))
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### What the demo shows", 1)[1].split("\n## ", 1)[0]
    found.extend(re.findall(r"`(/[^`|]+)`", section))
    return list(dict.fromkeys(c.removesuffix(" (guided)") for c in found))


async def test_the_suggested_commands_work_as_written(tmp_path: Path) -> None:
    commands = suggested_commands()
    assert "/issue cto@aliens Fix the login page" in commands and "/agent ash" in commands
    api = OfflineBotAPI(bot_username="fleetbot_demo_bot")

    async def script() -> AsyncIterator[str]:
        for command in commands:
            yield f"{command}\n"
            if command == "/issue":  # the guided form waits for an answer
                yield "/cancel\n"
        yield "quit\n"

    out = io.StringIO()
    assert await run_demo(tmp_path / "demo.db", lines=script(), out=out, api=api) == 0
    # Every refusal (bad arguments, an ambiguous role, an unknown agent) starts with ⚠️;
    # alerts carry their kind's icon instead.
    refused = [m["text"] for m in api.messages(OWNER_ID) if m.get("text", "").startswith("⚠️")]
    assert refused == [], out.getvalue()
    assert "Filed ALI-" in out.getvalue()
