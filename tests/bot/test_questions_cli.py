"""The whole loop with real processes: an agent run by the `process` runtime asks through
`fleetbot agent ask` against the agent API on a loopback port and ends its run `waiting`; the
owner taps a choice on the offline Bot API; the agent's next process is started with
FLEETBOT_WAKE_REASON=answer and the answer in FLEETBOT_WAKE_NOTE, and finishes the issue."""

from __future__ import annotations

import asyncio
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from bot_helpers import ALIENS_CHAT, FLEET, OWNER, button_data, buttons
from store_helpers import storage

from bot.runner import BotRunner
from core.auth.keyring import KeyRing
from core.clock import ManualClock
from core.config import parse_config
from core.fleet import Fleet
from core.models import IssueStatus, QuestionStatus
from offline_botapi.server import OfflineBotAPI

pytestmark = pytest.mark.timeout(90)
FLEETBOT = Path(sys.executable).with_name("fleetbot")

AGENT = """\
import json, os, subprocess, sys
fleetbot, log = sys.argv[1], sys.argv[2]
reason, note = os.environ["FLEETBOT_WAKE_REASON"], os.environ.get("FLEETBOT_WAKE_NOTE", "")
issue = os.environ["FLEETBOT_ISSUE_ID"]
with open(log, "a") as f:
    f.write(json.dumps({"reason": reason, "note": note, "issue": issue}) + "\\n")

def agent(*args):
    subprocess.run([fleetbot, "agent", *args], check=True, timeout=30)

if reason in ("answer", "approval"):
    agent("finish", "--outcome", "done", "--summary", "went with: " + note)
else:
    question = "Which region should the site run in?"
    agent("ask", question, "--choice", "eu-north", "--choice", "us-east")
    agent("finish", "--outcome", "waiting", "--summary", "asked the owner")
"""


def _config(tmp_path: Path, script: Path, log: Path) -> Any:
    data: dict[str, Any] = copy.deepcopy(FLEET)
    command = [sys.executable, str(script), str(FLEETBOT), str(log)]
    data["companies"][0]["agents"][0]["runtime"] = {"kind": "process", "command": command}
    data["storage"] = storage(tmp_path)
    data["auth"] = {
        "keyring": str(tmp_path / "secrets" / "keyring.json"),
        "token_dir": str(tmp_path / "secrets" / "tokens"),
    }
    data["api"] = {"listen": "127.0.0.1:0"}
    return parse_config(data, "questions e2e")


async def _until(check: Any, timeout: float = 30.0) -> None:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 - polls what processes and tasks write
            await asyncio.sleep(0.05)


@pytest.mark.skipif(not FLEETBOT.is_file(), reason="the fleetbot console script is not installed")
async def test_fleetbot_agent_ask_then_a_tap_wakes_the_process_with_the_answer(
    tmp_path: Path,
) -> None:
    script, log = tmp_path / "agent.py", tmp_path / "wakes.jsonl"
    script.write_text(AGENT)
    config = _config(tmp_path, script, log)
    # The process runtime times its children by the real clock: the fleet's starts at now.
    clock = ManualClock(time.time())
    KeyRing.create(config.auth.keyring, clock.now())
    api = OfflineBotAPI()
    api.add_user(OWNER, "Olga", "olga")
    api.add_group(ALIENS_CHAT, "Aliens team", members=[OWNER])
    env = {"FLEETBOT_TELEGRAM_TOKEN": api.token}
    async with (
        Fleet(config, env, clock, serve_api=True, periodic=False) as fleet,
        BotRunner(
            fleet,
            env,
            request=api.make_request(),
            get_updates_request=api.make_request(),
            daily_digest=False,
        ),
    ):
        issue = await fleet.service.file_issue(
            title="Launch the site", assignee="ripley", actor="tg:1001"
        )

        async def asked() -> bool:
            await fleet.scheduler.drain()
            (latest,) = await fleet.service.recent_runs("ripley", limit=1)
            return bool(await fleet.service.open_questions()) and latest.status.value != "running"

        await _until(asked)
        (q,) = await fleet.service.open_questions()
        assert (q.agent_id, q.issue_id, q.choices) == ("ripley", issue.id, ("eu-north", "us-east"))
        (run,) = await fleet.service.recent_runs("ripley")
        assert (run.status.value, run.reason_code, q.run_id) == ("succeeded", "waiting", run.id)

        await fleet.monitors.settle()
        clock.advance(31)  # the alert's group_wait
        await fleet.alerts.flush()
        card = await api.wait_for_message(
            OWNER, lambda m: "asks" in m["text"] and "Q1" in m["text"], timeout=10
        )
        assert {"eu-north", "us-east"} <= set(buttons(card))
        query = await api.press_button(
            OWNER, OWNER, card["message_id"], button_data(card, "us-east")
        )
        await api.wait_for_call(
            "answerCallbackQuery", lambda c: c.params["callback_query_id"] == query, timeout=10
        )

        async def done() -> bool:
            await fleet.scheduler.drain()
            return (await fleet.service.issue(issue.id)).status is IssueStatus.DONE

        await _until(done)
        wakes = [json.loads(line) for line in log.read_text().splitlines()]
        assert [w["reason"] for w in wakes] == ["assigned", "answer"]
        assert wakes[1]["issue"] == issue.id
        assert wakes[1]["note"] == (
            'Q1 "Which region should the site run in?" answered by Olga (tg:1001): us-east'
        )
        assert (await fleet.service.question(q.id)).status is QuestionStatus.ANSWERED
        (last, _) = await fleet.service.recent_runs("ripley", limit=2)
        assert last.summary.startswith("went with: Q1")
