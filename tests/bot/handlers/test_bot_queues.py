"""Queues from the phone, on the offline Bot API: /issue's flags, /priority, /backlog and
/promote, /routines with its buttons, /costs AGENT; the roles each needs."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from bot_helpers import (
    ALIENS_CHAT,
    FLEET,
    OPERATOR,
    OWNER,
    VIEWER,
    Desk,
    bot_config,
    button_data,
    buttons,
    running_desk,
)
from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.views import keyboards, routines as routines_view
from core.models import IssueStatus, Priority, Routine


@pytest.fixture
async def desk(tmp_path: Path) -> Any:
    async with running_desk(tmp_path) as d:
        yield d
        assert not d.errors.records, [r.getMessage() for r in d.errors.records]


async def post(desk: Desk, chat: int, label: str, data: str) -> Any:
    """A bot message with a hand-made button, to press what no current screen offers."""
    app = desk.runner.application
    assert app is not None
    markup = InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=data)]])
    await app.bot.send_message(chat, "hand-made", reply_markup=markup)
    return await desk.reply(chat)


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
    assert "R1 standup · weekdays 09:00 → ceo@aliens · high" in listed["text"]
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
    assert answer == "Tap “Yes, remove R1” to remove it for good."
    listed = desk.current(OPERATOR, mid)
    assert set(buttons(listed)) >= {"🗑 Yes, remove R1", "◀️ Keep it"}
    assert button_data(listed, "Yes, remove").startswith("v1:c:")  # kept by the desk
    assert len(await svc.routines()) == 1  # asking removed nothing
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
        ("/routines add standup ripley fortnightly | T", "write one of: every 4h | daily 09:00"),
        ("/routines add standup ripley daily 9am | T", "schedules: every 4h | daily 09:00"),
        ("/routines add standup ripley every 10s | T", "too often for a routine"),
        ("/routines add standup ripley daily 09:00 tz Mars/Base | T", "'Mars/Base' is not a"),
        ("/routines add standup nobody daily 09:00 | T", "no agent or role 'nobody'"),
        ("/routines add Stand.Up! ripley daily 09:00 | T", "a routine's name is 1–32"),
        ("/routines add standup ripley daily 09:00 |   ", "write the title after a |"),
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
    await desk.ask(OPERATOR, "/routines add s ripley daily 09:00 | T")
    taken = await desk.ask(OPERATOR, "/routines add s ripley weekly mon 10:00 | T2")
    assert "aliens already has a routine 's'; pick another name" in taken["text"]
    assert len(await desk.fleet.service.routines()) == 1
    await desk.ask(OPERATOR, "/routines remove s")
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


async def test_routines_by_command(desk: Desk) -> None:
    svc = desk.fleet.service
    await _still(desk, "bishop")
    await desk.ask(OPERATOR, "/routines add review bishop weekly mon 10:00 | Review {week}")
    paused = await desk.ask(OPERATOR, "/routines pause R1")
    assert paused["text"].startswith("⏸ R1 review is paused")
    assert "⏸ paused · UTC" in paused["text"]
    again = await desk.ask(OPERATOR, "/routines pause review")
    assert "R1 (review) is already paused" in again["text"] and "⚠️" in again["text"]
    resumed = await desk.ask(OPERATOR, "/routines resume review@aliens")
    assert resumed["text"].startswith("▶️ R1 review is back on schedule")
    assert "next Mon 05 Jan 10:00 UTC" in resumed["text"]
    ran = await desk.ask(OPERATOR, "/routines run R1")
    assert ran["text"].startswith("⏩ Filed ALI-1 now.")
    assert "Review 2026-W01" in ran["text"] and "✖️ Cancel" in buttons(ran)
    listed = await desk.ask(VIEWER, "/routines")
    assert "last ALI-1" in listed["text"]
    removed = await desk.ask(OPERATOR, "/routines remove R1")
    assert removed["text"] == "🗑 R1 review is removed; its open issues stay."
    assert await svc.routines() == []
    assert (await svc.issue("ALI-1")).status is IssueStatus.TODO
    assert "no routine 'R1'" in (await desk.ask(OPERATOR, "/routines run R1"))["text"]


async def test_a_config_routine_is_removed_in_the_config_only(tmp_path: Path) -> None:
    companies = copy.deepcopy(FLEET["companies"])
    companies[0]["routines"] = [
        {"name": "weekly", "schedule": "weekly mon 09:00", "assignee": "cto", "title": "W"}
    ]
    config = bot_config(tmp_path, companies=companies)
    async with running_desk(tmp_path, config=config) as desk:
        listed = await desk.ask(OPERATOR, "/routines")
        assert "R1 weekly · weekly mon 09:00 → cto@aliens" in listed["text"]
        assert "from config" in listed["text"]
        assert set(buttons(listed)) == {"⏸ Pause R1", "⏩ Run R1", "↻ Refresh"}  # no remove
        refused = await desk.ask(OPERATOR, "/routines remove weekly")
        assert "R1 (weekly) comes from the config: remove it from" in refused["text"]
        assert "companies[aliens].routines there, or pause it here" in refused["text"]
        assert len(await desk.fleet.service.routines()) == 1
        # A hand-made press past the list's offer ends in the same refusal from the core.
        pending = desk.bot_desk.confirmations.ask(
            "remove_routine", OPERATOR, OPERATOR, desk.clock.now(), subject="weekly@aliens"
        )
        made = await post(desk, OPERATOR, "yes", f"v1:c:{pending.id}:yes")
        answer = await desk.press(OPERATOR, OPERATOR, made, f"v1:c:{pending.id}:yes")
        assert "comes from the config" in answer
        assert len(await desk.fleet.service.routines()) == 1
        assert "from config" in desk.current(OPERATOR, made["message_id"])["text"]
        assert not desk.errors.records


async def test_removing_from_the_list_asks_once_and_can_be_kept(desk: Desk) -> None:
    svc = desk.fleet.service
    await desk.ask(OPERATOR, "/routines add digest ripley daily 18:00 | Digest {date}")
    listed = await desk.ask(OPERATOR, "/routines", chat=ALIENS_CHAT)
    mid = listed["message_id"]
    await desk.press(OPERATOR, ALIENS_CHAT, listed, button_data(listed, "🗑"))
    asking = desk.current(ALIENS_CHAT, mid)
    yes, keep = button_data(asking, "Yes, remove"), button_data(asking, "Keep it")
    # Someone who may only look cannot tap it, though it sits in a chat they are in.
    viewer = await desk.press(VIEWER, ALIENS_CHAT, asking, yes)
    assert viewer == "This button needs the operator role; you are viewer."
    answer = await desk.press(OPERATOR, ALIENS_CHAT, asking, keep)
    assert answer == "Kept; nothing was changed."
    assert len(await svc.routines()) == 1
    kept = desk.current(ALIENS_CHAT, mid)
    assert "R1 digest" in kept["text"] and "🗑 R1" in buttons(kept)
    # The confirmation was used up by "Keep it": its "yes" does nothing now.
    made = await post(desk, ALIENS_CHAT, "yes", yes)
    late = await desk.press(OPERATOR, ALIENS_CHAT, made, yes)
    assert late == "This confirmation expired or was never asked; send the command again."
    assert len(await svc.routines()) == 1
    # Asked in one chat, it cannot be tapped from another.
    await desk.press(OPERATOR, ALIENS_CHAT, kept, button_data(kept, "🗑"))
    yes = button_data(desk.current(ALIENS_CHAT, mid), "Yes, remove")
    elsewhere = await post(desk, OPERATOR, "yes", yes)
    answer = await desk.press(OPERATOR, OPERATOR, elsewhere, yes)
    assert answer.startswith("This confirmation expired or was never asked")
    assert len(await svc.routines()) == 1
    refused = [r for r in await desk.audit() if r["action"] == "button.c.yes"]
    assert sorted(r["result"] for r in refused) == ["refused", "stale", "stale"]


async def test_a_viewer_cannot_promote_from_a_shared_list(desk: Desk) -> None:
    await _still(desk, "hicks")
    await desk.ask(OPERATOR, "/issue hicks !backlog Later")
    shared = await desk.ask(OPERATOR, "/backlog", chat=ALIENS_CHAT)
    assert shared["text"].startswith("Backlog of aliens")  # the team chat's company
    answer = await desk.press(VIEWER, ALIENS_CHAT, shared, button_data(shared, "ALI-1"))
    assert answer == "This button needs the operator role; you are viewer."
    assert (await desk.fleet.service.issue("ALI-1")).status is IssueStatus.BACKLOG
    answer = await desk.press(OPERATOR, ALIENS_CHAT, shared, button_data(shared, "ALI-1"))
    assert answer == "⬆️ ALI-1 is in hicks's inbox now."
    assert "Empty." in desk.current(ALIENS_CHAT, shared["message_id"])["text"]


def _routine(n: int, company: str, **changes: Any) -> Routine:
    fields: dict[str, Any] = {
        "id": n,
        "company_id": company,
        "name": f"r{n}",
        "assignee": "cto",
        "schedule": "daily 09:00",
        "timezone": "UTC",
        "title": "T",
        "body": "",
        "priority": Priority.MEDIUM,
        "source": "chat",
        "paused": False,
        "next_at": 1_767_258_000.0,
        "last_at": None,
        "last_issue": None,
        "skipped": 0,
        "streak": 0,
        "missed": 0,
        "late": "",
        "created_by": "tg:1",
        "created_at": 1_767_225_600.0,
    }
    return Routine(**{**fields, **changes})


def test_list_buttons_fit_with_the_longest_company_id() -> None:
    company = "c" * 64
    found = [_routine(123456, company), _routine(7, company, paused=True)]
    rows = keyboards.routines_keyboard(found, company, can_act=True, removing=("R7", "x" * 16))
    assert rows is not None
    data = [b.callback_data for row in rows.inline_keyboard for b in row]
    assert all(isinstance(d, str) and len(d.encode()) <= 64 for d in data), data
    pause = keyboards.decode(str(data[0]))
    assert (pause.ref, pause.verb) == ("R123456", "pause")
    assert keyboards.arg_names(pause.arg, company) and not keyboards.arg_names(pause.arg, "c")
    assert [b.text for b in rows.inline_keyboard[1]] == ["🗑 Yes, remove R7", "◀️ Keep it"]
    assert data[-1] == keyboards.encode(keyboards.Kind.ROUTINE, "R123456", "list", pause.arg)
    issue_rows = keyboards.backlog_keyboard([], company)
    assert issue_rows is None
    assert keyboards.routines_keyboard([], "*", can_act=True) is None
    assert keyboards.routines_keyboard(found, "*", can_act=False) is not None  # refresh


def test_a_routine_line_says_what_slipped() -> None:
    line = routines_view.routine_line(
        _routine(
            3,
            "aliens",
            priority=Priority.LOW,
            last_issue="ALI-9",
            skipped=4,
            streak=2,
            missed=1,
            late="ALI-9, its last instance, is still in_progress: skipped 2 due time(s)",
            timezone="Europe/Berlin",
        )
    )
    assert line.splitlines() == [
        "🔁 <b>R3</b> r3 · <code>daily 09:00</code> → cto · low",
        "    next Thu 01 Jan 10:00 Europe/Berlin · last ALI-9",
        "    skipped 4 (in a row 2) · missed 1 while down",
        "    ⚠️ ALI-9, its last instance, is still in_progress: skipped 2 due time(s)",
    ]
    many = routines_view.routine_list([_routine(1, "aliens")], "aliens", more=25)
    assert many.endswith("… and 25 more: /routines COMPANY shows one company's.")


async def test_a_long_list_fits_one_message_and_one_keyboard(desk: Desk) -> None:
    for n in range(14):
        await desk.fleet.service.add_routine(
            name=f"check-{n:02d}",
            schedule=f"daily {n:02d}:30",
            assignee="hicks",
            title="Check {date}",
            actor="test",
        )
    listed = await desk.ask(OPERATOR, "/routines aliens")
    assert listed["text"].endswith("… and 2 more: /routines COMPANY shows one company's.")
    assert "R12 check-11" in listed["text"] and "R13" not in listed["text"]
    assert len(buttons(listed)) == 12 * 3 + 1
    answer = await desk.press(OPERATOR, OPERATOR, listed, button_data(listed, "Pause R12"))
    assert answer.startswith("⏸ R12 check-11 is paused")
    assert "… and 2 more" in desk.current(OPERATOR, listed["message_id"])["text"]
