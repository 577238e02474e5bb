"""Queues from the phone, on the offline Bot API: /issue's flags, /priority, /backlog and
/promote, /routines with its buttons, /costs AGENT; the roles each needs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from bot_helpers import (
    ALIENS_CHAT,
    OPERATOR,
    OWNER,
    VIEWER,
    Desk,
    button_data,
    buttons,
    running_desk,
)

from core.models import IssueStatus, Priority


@pytest.fixture
async def desk(tmp_path: Path) -> Any:
    async with running_desk(tmp_path) as d:
        yield d
        assert not d.errors.records, [r.getMessage() for r in d.errors.records]


async def _still(desk: Desk, *agents: str) -> None:
    """Pause agents so what is filed for them stays where it was put."""
    for agent in agents:
        await desk.fleet.service.pause(agent, "test")


async def test_issue_takes_a_priority_and_the_backlog(desk: Desk) -> None:
    await _still(desk, "hicks")
    card = await desk.ask(OPERATOR, "/issue hicks !high !backlog Refactor the parser | later")
    assert card["text"].startswith("📝 Filed ALI-1 for hicks in the backlog.")
    assert "🗂 ALI-1" in card["text"] and "priority high" in card["text"]
    assert "⬆️ Promote" in buttons(card)
    issue = await desk.fleet.service.issue("ALI-1")
    assert (issue.status, issue.priority, issue.body) == (
        IssueStatus.BACKLOG,
        Priority.HIGH,
        "later",
    )
    # A `!` word after the title is the title's.
    await desk.ask(OPERATOR, "/issue hicks Fix !important bug")
    assert (await desk.fleet.service.issue("ALI-2")).title == "Fix !important bug"
    bad = await desk.ask(OPERATOR, "/issue hicks !urgent Fix it")
    assert "'!urgent' is not a flag: use !backlog or a priority" in bad["text"]
    assert "Usage: /issue ASSIGNEE" in bad["text"]
    untitled = await desk.ask(OPERATOR, "/issue hicks !low")
    assert "the issue for hicks needs a title" in untitled["text"]
    two = await desk.ask(OPERATOR, "/issue hicks !low !high x")
    assert "give one priority" in two["text"]
    assert len(await desk.fleet.service.issues()) == 2


async def test_priority_changes_and_refuses_what_it_cannot(desk: Desk) -> None:
    await _still(desk, "hicks")
    await desk.ask(OPERATOR, "/issue hicks Check the logs")
    changed = await desk.ask(OPERATOR, "/priority ALI-1 critical")
    assert changed["text"].startswith("Priority of ALI-1: critical.")
    assert (await desk.fleet.service.issue("ALI-1")).priority is Priority.CRITICAL
    bad = await desk.ask(OPERATOR, "/priority ALI-1 urgent")
    assert "'urgent' is not a priority; use critical, high, medium or low" in bad["text"]
    assert "Usage: /priority ISSUE" in bad["text"]
    assert "Usage: /priority" in (await desk.ask(OPERATOR, "/priority ALI-1"))["text"]
    missing = await desk.ask(OPERATOR, "/priority ALI-9 low")
    assert "ALI-9" in missing["text"] and "⚠️" in missing["text"]
    viewer = await desk.ask(VIEWER, "/priority ALI-1 low")
    assert "needs the operator role" in viewer["text"]
    rows = [r for r in await desk.audit() if r["action"] == "issue.priority"]
    assert [(r["actor"], r["target"]) for r in rows] == [(f"tg:{OPERATOR}", "ALI-1")]


async def test_backlog_lists_promotes_and_parks(desk: Desk) -> None:
    svc = desk.fleet.service
    await _still(desk, "hicks", "hudson")
    await desk.ask(OPERATOR, "/issue hicks !backlog Low one")
    await desk.ask(OPERATOR, "/issue hudson !high !backlog High one")
    await desk.ask(OPERATOR, "/issue hicks Now")
    listed = await desk.ask(VIEWER, "/backlog aliens")
    text = listed["text"]
    assert text.startswith("Backlog of aliens · in the order it is promoted")
    assert text.index("ALI-2") < text.index("ALI-1")  # high before medium
    assert "ALI-3" not in text
    assert buttons(listed) == {}  # a viewer reads; promoting is an operator's
    listed = await desk.ask(OPERATOR, "/backlog")
    assert set(buttons(listed)) == {"⬆️ ALI-2", "⬆️ ALI-1"}
    answer = await desk.press(OPERATOR, OPERATOR, listed, button_data(listed, "ALI-2"))
    assert answer == "⬆️ ALI-2 is in hudson's inbox now."
    assert (await svc.issue("ALI-2")).status is IssueStatus.TODO
    redrawn = desk.current(OPERATOR, listed["message_id"])
    assert "ALI-2" not in redrawn["text"] and set(buttons(redrawn)) == {"⬆️ ALI-1"}

    parked = await desk.ask(OPERATOR, "/backlog ALI-3")
    assert parked["text"].startswith("🗂 ALI-3 is in the backlog")
    assert (await svc.issue("ALI-3")).status is IssueStatus.BACKLOG
    shown = await desk.ask(VIEWER, "/issues backlog")
    assert "ALI-3" in shown["text"] and "ALI-1" in shown["text"] and "ALI-2" not in shown["text"]
    promoted = await desk.ask(OPERATOR, "/promote ALI-3")
    assert promoted["text"].startswith("⬆️ ALI-3 is in hicks's inbox now.")
    twice = await desk.ask(OPERATOR, "/promote ALI-3")
    assert "ALI-3 is todo, not in the backlog any more." in twice["text"]
    assert "Usage: /promote ISSUE" in twice["text"]
    viewer = await desk.ask(VIEWER, "/backlog ALI-1")
    assert "needs the operator role; you are a viewer" in viewer["text"]
    assert (await svc.issue("ALI-1")).status is IssueStatus.BACKLOG
    moves = [r for r in await desk.audit() if r["action"] == "issue.move"]
    assert {r["target"] for r in moves} == {"ALI-2", "ALI-3"}


async def test_routines_add_list_and_buttons(desk: Desk) -> None:
    svc = desk.fleet.service
    await _still(desk, "ripley")
    added = await desk.ask(
        OPERATOR,
        "/routines add standup ceo@aliens !high weekdays 09:00 tz Europe/Berlin "
        "| Standup {weekday}",
    )
    assert added["text"].startswith("🔁 Added R1 standup.")
    [routine] = await svc.routines()
    assert (routine.assignee, routine.timezone, routine.priority, routine.source) == (
        "ceo",
        "Europe/Berlin",
        Priority.HIGH,
        "chat",
    )
    listed = await desk.ask(VIEWER, "/routines")
    assert "R1 standup · weekdays 09:00 → ceo · high" in listed["text"]
    assert "next Thu 01 Jan 09:00 Europe/Berlin" in listed["text"]
    assert set(buttons(listed)) == {"↻ Refresh"}  # a viewer may look again, not act
    listed = await desk.ask(OPERATOR, "/routines aliens")
    assert set(buttons(listed)) == {"⏸ Pause R1", "⏩ Run R1", "🗑 R1", "↻ Refresh"}
    mid = listed["message_id"]

    # In the team chat a viewer sees the operator's buttons; pressing one does nothing.
    shared = await desk.ask(OPERATOR, "/routines", chat=ALIENS_CHAT)
    viewer = await desk.press(VIEWER, ALIENS_CHAT, shared, button_data(shared, "Pause"))
    assert viewer == "This button needs the operator role; you are viewer."
    assert not (await svc.routine("R1")).paused

    answer = await desk.press(OPERATOR, OPERATOR, listed, button_data(listed, "Pause"))
    assert answer.startswith("⏸ R1 standup is paused")
    listed = desk.current(OPERATOR, mid)
    assert "⏸ paused" in listed["text"] and "▶️ Resume R1" in buttons(listed)
    answer = await desk.press(OPERATOR, OPERATOR, listed, button_data(listed, "Resume"))
    assert answer.startswith("▶️ R1 standup is back on schedule")

    listed = desk.current(OPERATOR, mid)
    answer = await desk.press(OPERATOR, OPERATOR, listed, button_data(listed, "Run"))
    assert answer == "⏩ Filed ALI-1 now."
    issue = await svc.issue("ALI-1")
    assert (issue.title, issue.created_by, issue.priority) == (
        f"Standup {issue_weekday(desk)}",
        "routine:R1",
        Priority.HIGH,
    )
    listed = desk.current(OPERATOR, mid)
    answer = await desk.press(OPERATOR, OPERATOR, listed, button_data(listed, "Run"))
    assert "ALI-1" in answer and "open" in answer  # one open instance at a time
    assert len(await svc.issues()) == 1

    listed = desk.current(OPERATOR, mid)
    answer = await desk.press(OPERATOR, OPERATOR, listed, button_data(listed, "🗑"))
    assert answer == "Tap again to remove it for good."
    listed = desk.current(OPERATOR, mid)
    assert set(buttons(listed)) >= {"🗑 Yes, remove R1", "◀️ Keep it"}
    answer = await desk.press(OPERATOR, OPERATOR, listed, button_data(listed, "Yes, remove"))
    assert answer.startswith("🗑 R1 standup is removed")
    assert await svc.routines() == []
    assert "None yet" in desk.current(OPERATOR, mid)["text"]
    actions = [r["action"] for r in await desk.audit() if r["action"].startswith("routine.")]
    assert sorted(actions) == sorted(
        ["routine.add", "routine.pause", "routine.resume", "routine.run", "routine.remove"]
    )


def issue_weekday(desk: Desk) -> str:
    now = datetime.fromtimestamp(desk.clock.now(), UTC).astimezone(ZoneInfo("Europe/Berlin"))
    return now.strftime("%A")


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("/routines add standup", "name the routine and its assignee, then its schedule"),
        ("/routines add standup ceo | T", "routine standup needs a schedule"),
        ("/routines add standup ceo daily 09:00", "write the title after a |"),
        ("/routines add standup ripley fortnightly | T", "schedules: every 4h | daily 09:00"),
        ("/routines add standup ceo !backlog daily 09:00 | T", "!backlog does not apply"),
        ("/routines pause", "name the routine"),
    ],
)
async def test_routines_wrong_arguments_get_the_usage(desk: Desk, line: str, problem: str) -> None:
    reply = await desk.ask(OPERATOR, line)
    assert problem in reply["text"], reply["text"]
    assert "Usage: /routines [company]" in reply["text"]
    assert await desk.fleet.service.routines() == []


async def test_routines_errors_from_the_core_are_shown(desk: Desk) -> None:
    zone = await desk.ask(OPERATOR, "/routines add s ripley daily 09:00 tz Mars/Base | T")
    assert "Mars/Base" in zone["text"]
    nobody = await desk.ask(OPERATOR, "/routines add s nobody daily 09:00 | T")
    assert "nobody" in nobody["text"] and "⚠️" in nobody["text"]
    missing = await desk.ask(OPERATOR, "/routines pause R9")
    assert "R9" in missing["text"] and "⚠️" in missing["text"]
    viewer = await desk.ask(VIEWER, "/routines add s ceo daily 09:00 | T")
    assert "needs the operator role" in viewer["text"]
    assert await desk.fleet.service.routines() == []


async def test_costs_for_an_agent_is_its_heartbeat_roi(desk: Desk) -> None:
    roi = await desk.ask(OWNER, "/costs ripley")
    assert roi["text"].startswith("Ripley ripley · heartbeat ROI ·")
    assert "0 LLM calls on work" in roi["text"] and "No issue closed this month" in roi["text"]
    assert "✅ Nothing to change" in roi["text"]
    fleet = await desk.ask(OWNER, "/costs")
    assert "/costs AGENT" in fleet["text"]
