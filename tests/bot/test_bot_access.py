"""Who may do what, as owner, operator, viewer and stranger; and that every attempt is audited."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from bot_helpers import (
    ALIENS_CHAT,
    OPERATOR,
    OWNER,
    STRANGER,
    VIEWER,
    Desk,
    button_data,
    buttons,
    running_desk,
)
from stack_helpers import force_status
from telegram.constants import ChatID

from bot.roles import COMMANDS, Access, Role, button_need
from core.config import TelegramConfig
from core.models import AgentStatus

# A command line that is valid for each command, so only the role decides the answer.
VALID = {
    "start": "/start",
    "help": "/help",
    "whoami": "/whoami",
    "status": "/status",
    "agents": "/agents",
    "agent": "/agent ripley",
    "issues": "/issues",
    "issue": "/issue ripley Plan Q3",
    "assign": "/assign ALI-1 bishop",
    "priority": "/priority ALI-1 high",
    "backlog": "/backlog",
    "promote": "/promote ALI-1",
    "routines": "/routines",
    "role": "/role hicks lead",
    "reset": "/reset hicks",
    "pause": "/pause hudson",
    "resume": "/resume hudson",
    "wake": "/wake ripley",
    "rotate": "/rotate hicks",
    "authcheck": "/authcheck",
    "mute": "/mute hicks 1h",
    "unmute": "/unmute hicks",
    "alerts": "/alerts",
    "waiting": "/waiting",
    "costs": "/costs",
    "digest": "/digest",
}


@pytest.fixture
async def desk(tmp_path: Path) -> Any:
    async with running_desk(tmp_path) as d:
        yield d
        assert not d.errors.records, [r.getMessage() for r in d.errors.records]


def test_roles_from_config() -> None:
    access = Access(TelegramConfig(owners=[1], operators=[2, 1], viewers=[3, 2]))
    assert [access.role(u) for u in (1, 2, 3, 4, None)] == [
        Role.OWNER,
        Role.OPERATOR,
        Role.VIEWER,
        Role.STRANGER,
        Role.STRANGER,
    ]
    assert set(VALID) == {c.name for c in COMMANDS}
    assert button_need("g", "rotate") is Role.OWNER
    assert button_need("a", "fix", "rotate") is Role.OWNER
    assert button_need("a", "fix", "reset") is Role.OPERATOR
    assert button_need("c", "yes", "1", "rotate_all") is Role.OWNER
    assert button_need("c", "yes", "1", "reset_all") is Role.OPERATOR
    assert button_need("zz", "anything") is Role.OWNER  # unknown buttons fail closed


async def test_stranger_is_refused_with_their_id_and_audited(desk: Desk) -> None:
    for name, line in VALID.items():
        reply = await desk.ask(STRANGER, line)
        assert "1004" in reply["text"], (name, reply["text"])
        if name != "whoami":
            assert "not on this fleet's desk" in reply["text"], name
    who = await desk.ask(STRANGER, "/whoami")
    assert "Telegram user id 1004" in who["text"] and "not on this desk yet" in who["text"]
    rows = [r for r in await desk.audit() if r["actor"] == "tg:1004"]
    results = {r["action"]: r["result"] for r in rows}
    assert results["/whoami"] == "ok"
    assert {a for a, res in results.items() if res == "refused"} == {
        f"/{n}" for n in VALID if n != "whoami"
    }
    # A stranger in a team chat is refused the same way; nothing changed in the fleet.
    group = await desk.ask(STRANGER, "/reset@fleetbot_test_bot ripley", ALIENS_CHAT)
    assert "1004" in group["text"]
    assert await desk.fleet.service.issues() == []


async def test_an_anonymous_admin_is_told_telegram_hides_who_they_are(desk: Desk) -> None:
    """Regression (issue 11): an owner who is an anonymous admin of a group got "your Telegram
    user id is 1087968824" from /whoami there, GroupAnonymousBot's id, shared by every
    anonymous admin; added to owners, it would have let any of them run the fleet."""
    hq = -1009998887777
    desk.api.add_group(hq, "Aliens HQ", members=[OWNER, STRANGER])
    desk.api.set_anonymous_admin(hq, OWNER)

    async def in_hq(text: str) -> str:
        """Send as the anonymous owner; the answer, once the bot audited the command."""
        before = await desk.command_rows(ChatID.ANONYMOUS_ADMIN)
        sent = await desk.api.send_text(OWNER, text, chat_id=hq)
        reply = await desk.reply(hq, quoting=sent["message_id"])
        async with asyncio.timeout(2):
            while await desk.command_rows(ChatID.ANONYMOUS_ADMIN) == before:  # noqa: ASYNC110
                await asyncio.sleep(0.002)
        return str(reply["text"])

    who = await in_hq("/whoami")
    assert str(ChatID.ANONYMOUS_ADMIN) not in who and "user id" in who
    assert "anonymous group admin, so Telegram hides who sent it" in who
    assert "Message me privately and send /whoami there" in who
    assert f"This chat's id: {hq}" in who
    for line in ("/pause hudson", "/rotate all", "/frobnicate"):
        refused = await in_hq(line)
        assert refused.startswith("⛔ This message came from an anonymous group admin"), line
        assert str(ChatID.ANONYMOUS_ADMIN) not in refused
    assert (await desk.fleet.service.agent("hudson")).status is AgentStatus.IDLE
    rows = [r for r in await desk.audit() if r["actor"] == f"tg:{ChatID.ANONYMOUS_ADMIN}"]
    assert sorted((r["action"], r["result"]) for r in rows) == [
        ("/pause", "refused"),
        ("/rotate", "refused"),
        ("/whoami", "ok"),
        ("unknown", "refused"),
    ]
    # The same person in private is themselves, with their role.
    private = await desk.ask(OWNER, "/whoami")
    assert "Telegram user id 1001" in private["text"] and "Role here: owner" in private["text"]
    # Even a config that slipped the id past validation gives it no role.
    slipped = TelegramConfig.model_construct(owners=[ChatID.ANONYMOUS_ADMIN])
    assert Access(slipped).role(ChatID.ANONYMOUS_ADMIN) is Role.STRANGER


async def test_viewer_reads_but_cannot_act(desk: Desk) -> None:
    allowed = {c.name for c in COMMANDS if c.need <= Role.VIEWER}
    assert allowed == {
        "start",
        "help",
        "whoami",
        "status",
        "agents",
        "agent",
        "issues",
        "alerts",
        "waiting",
        "costs",
        "digest",
        "backlog",
        "routines",
    }
    for name, line in VALID.items():
        reply = await desk.ask(VIEWER, line)
        refused = "needs the" in reply["text"]
        assert refused == (name not in allowed), (name, reply["text"])
        if refused:
            need = "owner" if name in ("rotate", "role") else "operator"
            assert f"needs the {need} role; you are a viewer" in reply["text"]
    card = await desk.ask(VIEWER, "/agent ripley")
    assert set(buttons(card)) == {"📜 Recent runs", "↻ Refresh"}  # no actions offered
    helped = await desk.ask(VIEWER, "/help")
    assert "/status" in helped["text"] and "/reset" not in helped["text"]
    # The lists are a viewer's; their writing forms are the operator's.
    for line in ("/routines add x ripley daily 09:00 | T", "/routines pause R1", "/backlog ALI-1"):
        reply = await desk.ask(VIEWER, line)
        assert "needs the operator role; you are a viewer" in reply["text"], (line, reply)


async def test_operator_cannot_rotate_or_change_roles(desk: Desk) -> None:
    rotate = await desk.ask(OPERATOR, "/rotate ripley")
    assert "/rotate needs the owner role; you are an operator" in rotate["text"]
    role = await desk.ask(OPERATOR, "/role ripley boss")
    assert "needs the owner role" in role["text"]
    assert (await desk.fleet.service.agent("ripley")).role == "ceo"
    card = await desk.ask(OPERATOR, "/agent ripley")
    assert "🔑 Rotate token" not in buttons(card) and "♻️ Reset" in buttons(card)
    owner_card = await desk.ask(OWNER, "/agent ripley")
    assert "🔑 Rotate token" in buttons(owner_card)


async def test_buttons_are_reauthorised_on_every_press(desk: Desk) -> None:
    """A card in a group can be pressed by anyone there: the press decides, not the card."""
    svc = desk.fleet.service
    await force_status(svc, "ripley", AgentStatus.ERROR)
    card = await desk.ask(OWNER, "/agent@fleetbot_test_bot ripley", ALIENS_CHAT)
    reset, rotate = button_data(card, "Reset"), button_data(card, "Rotate")

    answer = await desk.press(STRANGER, ALIENS_CHAT, card, reset)
    assert "not on this fleet's desk" in answer and "1004" in answer
    answer = await desk.press(VIEWER, ALIENS_CHAT, card, reset)
    assert answer == "This button needs the operator role; you are viewer."
    answer = await desk.press(OPERATOR, ALIENS_CHAT, card, rotate)
    assert "needs the owner role" in answer
    assert (await svc.agent("ripley")).status is AgentStatus.ERROR

    answer = await desk.press(OPERATOR, ALIENS_CHAT, card, reset)
    assert "ripley is idle again" in answer
    assert (await svc.agent("ripley")).status is AgentStatus.IDLE

    rows = [r for r in await desk.audit() if r["action"] == "button.g.reset"]
    assert [(r["actor"], r["result"]) for r in reversed(rows)] == [
        ("tg:1004", "refused"),
        ("tg:1003", "refused"),
        ("tg:1002", "ok"),
    ]
    assert [r["result"] for r in await desk.audit() if r["action"] == "button.g.rotate"] == [
        "refused"
    ]


async def test_every_command_is_audited_with_who_what_and_result(desk: Desk) -> None:
    await desk.ask(OPERATOR, "/pause hudson on leave")
    await desk.ask(OPERATOR, "/pause")
    await desk.ask(OPERATOR, "/pause nobody")
    rows = [r for r in await desk.audit() if r["action"] == "/pause"]
    assert [(r["target"], r["result"]) for r in reversed(rows)] == [
        ("hudson on leave", "ok"),
        ("", "usage"),
        ("nobody", "error:agent_not_found"),
    ]
    assert all(r["actor"] == "tg:1002" for r in rows)
    # The service's own audit row names the same person.
    [core_row] = [r for r in await desk.audit() if r["action"] == "agent.pause"]
    assert core_row["actor"] == "tg:1002"
