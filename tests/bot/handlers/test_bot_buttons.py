"""Every button: agent and issue cards, bulk confirmations, alert buttons, stale and foreign
presses; and the field-notes outage replayed from the phone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from bot_helpers import (
    ALIENS_CHAT,
    MATRIX_CHAT,
    OPERATOR,
    OWNER,
    Desk,
    button_data,
    buttons,
    running_desk,
)
from hypothesis import given, strategies as st
from stack_helpers import force_status
from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.views import keyboards
from bot.views.alerts import alert_keyboard, render_alert
from bot.views.keyboards import Kind
from core.alerting.book import AlertKind, AlertState, Finding
from core.auth.keyring import KeyRing
from core.auth.tokens import TokenAuthority, write_token_file
from core.models import AgentStatus, IssueStatus

# The answer to a tap on a confirmation the bot is not keeping (any more).
GONE = "This confirmation expired or was never asked; send the command again."


@pytest.fixture
async def desk(tmp_path: Path) -> Any:
    async with running_desk(tmp_path) as d:
        yield d
        assert not d.errors.records, [r.getMessage() for r in d.errors.records]


async def post(desk: Desk, chat: int, text: str, rows: list[list[tuple[str, str]]]) -> Any:
    """A bot message with hand-made buttons, to press buttons no current screen offers."""
    app = desk.runner.application
    assert app is not None
    markup = InlineKeyboardMarkup(
        [[InlineKeyboardButton(t, callback_data=d) for t, d in row] for row in rows]
    )
    await app.bot.send_message(chat, text, reply_markup=markup, parse_mode="HTML")
    return await desk.reply(chat)


async def test_agent_card_buttons(desk: Desk) -> None:
    svc = desk.fleet.service
    card = await desk.ask(OWNER, "/agent hicks")
    mid = card["message_id"]

    assert await desk.press(OWNER, OWNER, card, button_data(card, "Pause")) == "⏸ hicks is paused."
    card = desk.current(OWNER, mid)
    assert "Status: paused" in card["text"] and "▶️ Resume" in buttons(card)
    stale_card = card

    answer = await desk.press(OWNER, OWNER, card, button_data(card, "Resume"))
    assert answer == "▶️ hicks is back on its heartbeat."
    card = desk.current(OWNER, mid)
    assert "Status: idle" in card["text"] and "⏸ Pause" in buttons(card)

    answer = await desk.press(OWNER, OWNER, card, button_data(card, "Wake"))
    assert answer == "⏰ Woke hicks."

    runs = await desk.press(OWNER, OWNER, card, button_data(card, "Recent runs"))
    assert runs == ""
    card = desk.current(OWNER, mid)
    assert "Recent runs of Hicks" in card["text"] and "No runs yet" in card["text"]
    await desk.press(OWNER, OWNER, card, button_data(card, "Agent card"))
    card = desk.current(OWNER, mid)
    assert card["text"].startswith("🟢 Hicks hicks")

    answer = await desk.press(OWNER, OWNER, card, button_data(card, "Rotate token"))
    assert answer == "🔑 New token for hicks; the old one is revoked."
    assert (await svc.agent("hicks")).token_version == 2

    await force_status(svc, "hicks", AgentStatus.ERROR)
    card = desk.current(OWNER, mid)
    answer = await desk.press(OWNER, OWNER, card, button_data(card, "Reset"))
    assert answer == "♻️ hicks is idle again and woken."
    assert (await svc.agent("hicks")).status is AgentStatus.IDLE

    # A button from an older state of the card: refused politely, and the card catches up.
    stale = await post(desk, OWNER, "old card", [[("Resume", button_data(stale_card, "Resume"))]])
    answer = await desk.press(OWNER, OWNER, stale, button_data(stale, "Resume"))
    assert answer == "hicks is idle, not paused; nothing to resume"
    assert "⏸ Pause" in buttons(desk.current(OWNER, stale["message_id"]))


async def test_issue_card_buttons(desk: Desk) -> None:
    svc = desk.fleet.service
    for agent in ("hicks", "hudson"):
        await svc.pause(agent, "test")
    card = await desk.ask(OPERATOR, "/issue hicks Check the logs")
    mid = card["message_id"]
    assert set(buttons(card)) == {"👤 Assign", "✖️ Cancel", "↻ Refresh"}

    assert await desk.press(OPERATOR, OPERATOR, card, button_data(card, "Assign")) == ""
    picker = desk.current(OPERATOR, mid)
    assert "Who should take it?" in picker["text"]
    assert {"Ripley · ceo", "Bishop · cto", "Hicks · qa", "Hudson · qa", "◀️ Back"} == set(
        buttons(picker)
    )
    answer = await desk.press(OPERATOR, OPERATOR, picker, button_data(picker, "Hudson"))
    assert answer == "👤 ALI-1 now goes to hudson."
    assert (await svc.issue("ALI-1")).assignee_id == "hudson"
    card = desk.current(OPERATOR, mid)
    assert "Assignee: hudson" in card["text"]

    await svc.move("ALI-1", IssueStatus.BLOCKED, "test", "needs a human")
    await desk.press(OPERATOR, OPERATOR, card, button_data(card, "Refresh"))
    card = desk.current(OPERATOR, mid)
    assert "Status: blocked — needs a human" in card["text"] and "🔁 Retry" in buttons(card)
    answer = await desk.press(OPERATOR, OPERATOR, card, button_data(card, "Retry"))
    assert answer == "🔁 ALI-1 is back in hudson's inbox."
    assert (await svc.issue("ALI-1")).status is IssueStatus.TODO

    card = desk.current(OPERATOR, mid)
    answer = await desk.press(OPERATOR, OPERATOR, card, button_data(card, "Cancel"))
    assert answer == "✖️ ALI-1 is cancelled."
    card = desk.current(OPERATOR, mid)
    assert "Status: cancelled" in card["text"] and set(buttons(card)) == {"↻ Refresh"}


async def test_reset_all_asks_then_resets_what_is_broken_now(desk: Desk) -> None:
    svc, auth = desk.fleet.service, desk.fleet.auth
    await force_status(svc, "ripley", AgentStatus.ERROR)
    await force_status(svc, "bishop", AgentStatus.ERROR)
    await force_status(svc, "trinity", AgentStatus.UNAUTHENTICATED, "malformed")
    auth.token_file("trinity").write_text("garbage")
    ask = await desk.ask(OPERATOR, "/reset all")
    assert "Reset 3 agents?" in ask["text"] and "trinity (unauthenticated)" in ask["text"]
    assert (await svc.agent("ripley")).status is AgentStatus.ERROR  # nothing happens yet

    answer = await desk.press(OPERATOR, OPERATOR, ask, button_data(ask, "Reset 3"))
    assert answer == "Reset 2 of 3"
    done = desk.current(OPERATOR, ask["message_id"])
    assert "Reset 2 of 3 agents." in done["text"] and "Back to idle: bishop, ripley" in done["text"]
    assert "trinity: trinity's token still fails (malformed)" in done["text"]
    assert "reply_markup" not in done  # a confirmation is used once
    assert (await svc.agent("ripley")).status is AgentStatus.IDLE

    again = await desk.ask(OPERATOR, "/reset all")
    answer = await desk.press(OPERATOR, OPERATOR, again, button_data(again, "Cancel"))
    assert answer == "Cancelled"
    assert desk.current(OPERATOR, again["message_id"])["text"] == "Cancelled; nothing was changed."

    late = await desk.ask(OPERATOR, "/reset all")
    desk.clock.advance(601)
    answer = await desk.press(OPERATOR, OPERATOR, late, button_data(late, "Reset 1"))
    assert answer == GONE
    assert (await svc.agent("trinity")).status is AgentStatus.UNAUTHENTICATED


async def test_rotate_all_needs_the_owner_even_on_the_confirm_button(desk: Desk) -> None:
    auth = desk.fleet.auth
    kid = auth.keyring.ring.active.kid
    ask = await desk.ask(OWNER, "/rotate all")
    yes = button_data(ask, "Rotate all")
    # A DM's buttons can only be pressed by its owner; in a group anyone could try:
    group_ask = await desk.ask(OWNER, "/rotate@fleetbot_test_bot all", ALIENS_CHAT)
    refused = await desk.press(OPERATOR, ALIENS_CHAT, group_ask, button_data(group_ask, "Rotate"))
    assert refused == "This button needs the owner role; you are operator."
    assert auth.keyring.ring.active.kid == kid

    answer = await desk.press(OWNER, OWNER, ask, yes)
    assert answer == "Rotated all tokens"
    done = desk.current(OWNER, ask["message_id"])
    assert "Rotated all tokens: 6/6 agents authenticated" in done["text"]
    assert auth.keyring.ring.active.kid != kid


async def test_a_made_up_confirmation_does_nothing(desk: Desk) -> None:
    """Regression (issue 11): the button carried the action and a timestamp and the handler
    believed them, so a client that sent `v1:c:rotate_all:yes:<now>` rotated every key
    without anyone having asked. Now a tap must name a confirmation the bot is keeping."""
    svc, ring = desk.fleet.service, desk.fleet.auth.keyring
    keys = len(ring.ring.keys)
    await force_status(svc, "ripley", AgentStatus.ERROR)
    now = int(desk.clock.now())
    forged = {
        OWNER: [f"v1:c:rotate_all:yes:{now}", "v1:c:Zm9yZ2VkLWlkLTEy:yes"],
        OPERATOR: [f"v1:c:reset_all:yes:{now}", "v1:c:reset_all:yes", "v1:c:reset_all:no"],
    }
    for user, datas in forged.items():
        for data in datas:
            message = await post(desk, user, "a made-up confirmation", [[("Yes", data)]])
            assert await desk.press(user, user, message, data) == GONE, data
            assert desk.current(user, message["message_id"])["text"] == "a made-up confirmation"
    assert len(ring.ring.keys) == keys
    assert (await svc.agent("ripley")).status is AgentStatus.ERROR
    stale = [r for r in await desk.audit() if r["action"].startswith("button.c.")]
    assert [r["result"] for r in stale] == ["stale"] * 5


async def test_a_confirmation_acts_once_where_it_was_asked_until_it_expires(desk: Desk) -> None:
    """Regression (issue 11): a used confirmation was remembered by message, so the same
    button on another message (a copy, a replayed tap) acted again while its stamp was young.
    Now the confirmation is kept by the bot and used up by its first tap."""
    svc, ring = desk.fleet.service, desk.fleet.auth.keyring
    keys = len(ring.ring.keys)
    ask = await desk.ask(OWNER, "/rotate all")
    yes = button_data(ask, "Rotate all")
    assert len(yes.encode()) <= 64 and "rotate" not in yes  # only an id
    # Tapped twice in quick succession: one rotation.
    first = await desk.api.press_button(OWNER, OWNER, ask["message_id"], yes)
    second = await desk.api.press_button(OWNER, OWNER, ask["message_id"], yes)
    for query_id in (first, second):
        await desk.api.wait_for_call(
            "answerCallbackQuery", lambda c, q=query_id: c.params["callback_query_id"] == q
        )
    answers = {a["callback_query_id"]: a["text"] for a in desk.api.callback_answers}
    assert (answers[first], answers[second]) == ("Rotated all tokens", GONE)
    assert len(ring.ring.keys) == keys + 1
    # The same button on another message: nothing.
    copy = await post(desk, OWNER, "a copy", [[("Rotate all", yes)]])
    assert await desk.press(OWNER, OWNER, copy, yes) == GONE
    assert len(ring.ring.keys) == keys + 1

    # Asked in the team chat, tapped from a DM: it counts only where it was asked.
    await force_status(svc, "ripley", AgentStatus.ERROR)
    group_ask = await desk.ask(OPERATOR, "/reset@fleetbot_test_bot all", ALIENS_CHAT)
    reset = button_data(group_ask, "Reset 1")
    elsewhere = await post(desk, OPERATOR, "moved", [[("Reset", reset)]])
    assert await desk.press(OPERATOR, OPERATOR, elsewhere, reset) == GONE
    assert (await svc.agent("ripley")).status is AgentStatus.ERROR
    assert await desk.press(OPERATOR, ALIENS_CHAT, group_ask, reset) == "Reset 1 of 1"
    assert (await svc.agent("ripley")).status is AgentStatus.IDLE

    # Ten minutes on the desk's clock: nothing, and the record is pruned.
    await force_status(svc, "ripley", AgentStatus.ERROR)
    late = await desk.ask(OPERATOR, "/reset all")
    assert len(desk.bot_desk.confirmations) == 1
    desk.clock.advance(600)
    assert await desk.press(OPERATOR, OPERATOR, late, button_data(late, "Reset 1")) == GONE
    assert (await svc.agent("ripley")).status is AgentStatus.ERROR
    assert len(desk.bot_desk.confirmations) == 0
    taps = [r["result"] for r in await desk.audit() if r["action"] == "button.c.yes"]
    assert sorted(taps) == ["ok", "ok", "stale", "stale", "stale", "stale"]


async def test_stale_and_foreign_buttons_get_polite_answers(desk: Desk) -> None:
    svc = desk.fleet.service
    cases = {
        "v2:g:ripley:show": "from another fleetbot version",
        "v1:z:ripley:show": "a kind this fleetbot no longer has",
        "hello": "not one of fleetbot's",
        "v1:g:ghost:show": "no longer in the fleet",
        "v1:g:ripley:explode": "from another fleetbot version",
        "v1:i:ALI-99:show": "That issue no longer exists",
        "v1:f:-:file": "This form is closed",
        "v1:a:999:ack": "That alert is gone",
        "v1:c:launch:yes:0": "expired",
    }
    for data, expected in cases.items():
        message = await post(desk, OWNER, "a button", [[("press me", data)]])
        answer = await desk.press(OWNER, OWNER, message, data)
        assert expected in answer, (data, answer)
    stale = [r for r in await desk.audit() if r["result"] == "stale"]
    assert len(stale) == len(cases)

    # An agent removed from the fleet after its card was sent.
    card = await desk.ask(OWNER, "/agent hudson")
    async with svc.db.write() as conn:
        await conn.execute("UPDATE agents SET deleted_at = 1 WHERE id = 'hudson'")
    answer = await desk.press(OWNER, OWNER, card, button_data(card, "Wake"))
    assert answer == "That agent is no longer in the fleet. /agents lists the current ones."


async def alert_message(desk: Desk, chat: int, finding: Finding) -> Any:
    book = desk.fleet.alerts
    await book.raise_(finding)
    alert = next(a for a in await book.firing() if a.kind is finding.kind)
    keyboard = alert_keyboard(alert)
    assert keyboard is not None
    app = desk.runner.application
    assert app is not None
    await app.bot.send_message(
        chat, render_alert(alert, None, desk.clock.now()), parse_mode="HTML", reply_markup=keyboard
    )
    return alert, await desk.reply(chat)


async def test_alert_ack_mute_and_fixes(desk: Desk) -> None:
    svc, book = desk.fleet.service, desk.fleet.alerts
    await force_status(svc, "bishop", AgentStatus.ERROR)
    alert, message = await alert_message(
        desk,
        OWNER,
        Finding(AlertKind.AGENT_ERROR, "agent:bishop", "aliens", "Bishop (cto)", "run failed"),
    )
    assert await desk.press(OWNER, OWNER, message, button_data(message, "Acknowledge")) == (
        f"👍 Acknowledged #{alert.id}: no more reminders."
    )
    assert (await book.get(alert.id)).state is AlertState.ACKNOWLEDGED
    answer = await desk.press(OWNER, OWNER, message, button_data(message, "1h"))
    assert answer.startswith(f"🔕 Muted #{alert.id} for 1h.")
    assert (await book.get(alert.id)).state is AlertState.MUTED
    answer = await desk.press(OWNER, OWNER, message, button_data(message, "Reset"))
    assert answer == "Reset 1 of 1."
    report = await desk.reply(OWNER)
    assert "Back to idle: bishop" in report["text"]
    assert (await svc.agent("bishop")).status is AgentStatus.IDLE
    answer = await desk.press(OWNER, OWNER, message, button_data(message, "Reset"))
    # Bishop's reset resolved the alert: its buttons now answer instead of acting.
    assert answer == f"Alert #{alert.id} is already resolved; nothing to fix."

    # Queue empty in matrix: "Pause heartbeats" pauses that company's agents.
    _, queue = await alert_message(
        desk,
        MATRIX_CHAT,
        Finding(AlertKind.QUEUE_EMPTY, "company:matrix", "matrix", "StarDust Meet", "no work"),
    )
    answer = await desk.press(OPERATOR, MATRIX_CHAT, queue, button_data(queue, "Pause"))
    assert answer == "Paused 2."
    assert {a.status for a in await svc.agents("matrix")} == {AgentStatus.PAUSED}
    assert "Paused 2 agents: morpheus, trinity" in (await desk.reply(MATRIX_CHAT))["text"]

    # A blocked issue: "Reassign" posts its card with the agents to pick from.
    await svc.pause("ripley", "test")
    issue = await svc.file_issue(title="Stuck work", assignee="ripley", actor="test")
    await svc.move(issue.id, IssueStatus.BLOCKED, "test", "attempt budget spent")
    _, blocked = await alert_message(
        desk,
        OWNER,
        Finding(AlertKind.ISSUE_BLOCKED, f"issue:{issue.id}", "aliens", issue.id, "blocked"),
    )
    assert await desk.press(OWNER, OWNER, blocked, button_data(blocked, "Reassign")) == (
        "Pick new assignees below."
    )
    picker = await desk.reply(OWNER)
    assert "Who should take it?" in picker["text"] and "Bishop · cto" in buttons(picker)
    await desk.press(OWNER, OWNER, picker, button_data(picker, "Bishop"))
    assert (await svc.issue(issue.id)).assignee_id == "bishop"


async def test_outage_replay_from_the_phone(tmp_path: Path) -> None:
    """Field notes, outage #1: tokens re-signed with the wrong secret, every agent gets 401s.

    fleetbot: one grouped alert to the owner and each team chat, a "Rotate tokens" tap, a
    confirming tap, every agent back, and the alerts edited to resolved.
    """
    async with running_desk(tmp_path) as desk:
        fleet, clock = desk.fleet, desk.clock
        # Someone regenerates every token with another key ring (the wrong secret).
        stranger_ring = tmp_path / "other" / "keyring.json"
        wrong = TokenAuthority(
            KeyRing.create(stranger_ring, clock.now()),
            issuer=fleet.config.auth.issuer,
            audience=fleet.config.auth.audience,
        )
        agents = await fleet.service.agents()
        for agent in agents:
            write_token_file(
                fleet.config.auth.token_dir,
                agent.id,
                wrong.issue(agent, clock.now(), 86400),
            )
        # The next heartbeats find every token refused.
        clock.advance(4 * 3600 + 1)
        await fleet.scheduler.tick()
        await fleet.monitors.settle()
        assert {a.status for a in await fleet.service.agents()} == {AgentStatus.UNAUTHENTICATED}
        clock.advance(fleet.config.alerts.group_wait + 1)
        await fleet.alerts.flush()

        owner_alert = await desk.reply(OWNER)
        aliens_alert = await desk.reply(ALIENS_CHAT)
        matrix_alert = await desk.reply(MATRIX_CHAT)
        assert "Agents unauthenticated" in owner_alert["text"]
        assert owner_alert["text"].count("\n") < 40  # one message, not twelve
        assert "6 agents" in owner_alert["text"]
        assert "4 agents" in aliens_alert["text"] and "Trinity" not in aliens_alert["text"]
        assert "2 agents" in matrix_alert["text"] and "Ripley" not in matrix_alert["text"]
        assert len(desk.api.messages(OWNER)) == 1
        [alert] = await fleet.alerts.firing()

        answer = await desk.press(OWNER, OWNER, owner_alert, button_data(owner_alert, "Rotate"))
        assert answer == "Confirm the rotation below."
        confirm = await desk.reply(OWNER)
        assert "Rotate every key and token?" in confirm["text"]
        answer = await desk.press(OWNER, OWNER, confirm, button_data(confirm, "Rotate all"))
        assert answer == "Rotated all tokens"
        result = desk.current(OWNER, confirm["message_id"])["text"]
        assert "6/6 agents authenticated" in result and "Every agent is back" in result
        assert {a.status for a in await fleet.service.agents()} == {AgentStatus.IDLE}

        await fleet.monitors.settle()
        await fleet.alerts.flush()
        assert (await fleet.alerts.get(alert.id)).state is AlertState.RESOLVED
        for chat, message in (
            (OWNER, owner_alert),
            (ALIENS_CHAT, aliens_alert),
            (MATRIX_CHAT, matrix_alert),
        ):
            await desk.api.wait_for_call(
                "editMessageText",
                lambda c, chat=chat, m=message: (
                    str(c.params.get("chat_id")) == str(chat)
                    and str(c.params.get("message_id")) == str(m["message_id"])
                    and "Resolved" in str(c.params.get("text"))
                ),
            )
            now = desk.current(chat, message["message_id"])
            assert "Resolved" in now["text"] and "reply_markup" not in now
        assert not desk.errors.records


@given(
    st.sampled_from(list(Kind)),
    st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,63}", fullmatch=True),
    st.sampled_from(["show", "reset", "to", "mute", "fix"]),
    st.sampled_from(["", "4h", "rotate", "1767225600"]),
)
def test_callback_data_fits_and_round_trips(kind: Kind, ident: str, verb: str, arg: str) -> None:
    data = keyboards.encode(kind, ident, verb, arg)
    assert len(data.encode()) <= 64 and data.startswith("v1:")
    press = keyboards.decode(data)
    assert (press.kind, press.verb, press.arg) == (kind, verb, arg)
    assert press.names(ident)
    assert not press.names(ident + "x")


def test_assign_buttons_name_long_agent_ids() -> None:
    long_id = "a" * 64
    data = keyboards.encode(keyboards.Kind.ISSUE, "ALIENS12-123456", "to", long_id[:20])
    assert len(data.encode()) <= 64
    arg = keyboards._agent_arg("ALIENS12-123456", long_id)
    assert arg != long_id and keyboards.arg_names(arg, long_id)
    assert not keyboards.arg_names(arg, "b" * 64)
    with pytest.raises(keyboards.StaleButton, match="another fleetbot version"):
        keyboards.decode("v9:g:ripley:show")
