"""The guided /issue: every step by tap (or by typing where that is quicker), cancel at every
step, back, timeout, access re-checked on every step, and an alert's "File issue"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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

from bot.roles import Role
from bot.views.alerts import alert_keyboard, render_alert
from core.alerting.book import AlertKind, Finding


@pytest.fixture
async def desk(tmp_path: Path) -> Any:
    async with running_desk(tmp_path) as d:
        # Filing wakes the agent; pausing everyone keeps the new issue where the test left it.
        for agent in await d.fleet.service.agents():
            await d.fleet.service.pause(agent.id, "test")
        yield d
        assert not d.errors.records, [r.getMessage() for r in d.errors.records]


async def typed(desk: Desk, user: int, text: str, chat: int | None = None) -> dict[str, Any]:
    await desk.api.send_text(user, text, chat_id=chat)
    return await desk.reply(chat or user)


async def tap(desk: Desk, user: int, chat: int, message: dict[str, Any], label: str) -> Any:
    answer = await desk.press(user, chat, message, button_data(message, label))
    return answer, desk.current(chat, message["message_id"])


async def test_the_whole_form_by_thumb(desk: Desk) -> None:
    form = await typed(desk, OWNER, "/issue")
    assert "step 1 of 5" in form["text"] and "Which company" in form["text"]
    assert {"Alex Kerber AB", "StarDust Meet", "✖️ Cancel"} == set(buttons(form))

    _, form = await tap(desk, OWNER, OWNER, form, "Alex Kerber")
    assert "New issue for Alex Kerber AB · step 2 of 5" in form["text"]
    assert {"CEO", "CTO", "QA ×2", "◀️ Back", "✖️ Cancel"} == set(buttons(form))
    _, form = await tap(desk, OWNER, OWNER, form, "QA ×2")
    assert "Several agents have that role" in form["text"]
    assert {"Hicks · qa", "Hudson · qa"} <= set(buttons(form))
    _, form = await tap(desk, OWNER, OWNER, form, "Hudson")
    assert "step 3 of 5" in form["text"] and "Hudson (qa, hudson)" in form["text"]
    assert "Type the title" in form["text"]

    step4 = await typed(desk, OWNER, "Flaky   <login> test")
    assert "step 4 of 5" in step4["text"] and "Flaky <login> test" in step4["text"]
    assert "reply_markup" not in desk.current(OWNER, form["message_id"])  # one live form
    step5 = await typed(desk, OWNER, "It fails 1 run in 5 & only on CI.")
    assert "step 5 of 5" in step5["text"] and "only on CI" in step5["text"]
    answer, filed = await tap(desk, OWNER, OWNER, step5, "File it")
    assert answer == ""
    assert filed["text"].startswith("📝 Filed ALI-1.")
    assert "👤 Assign" in buttons(filed)

    issue = await desk.fleet.service.issue("ALI-1")
    assert (issue.title, issue.assignee_id, issue.created_by) == (
        "Flaky <login> test",
        "hudson",
        "tg:1001",
    )
    assert issue.body == "It fails 1 run in 5 & only on CI."
    steps = [r["action"] for r in reversed(await desk.audit()) if r["action"].startswith("form.")]
    assert steps == ["form.press"] * 3 + ["form.title", "form.details", "form.press"]


@pytest.mark.parametrize("at_step", [1, 2, 3, 4, 5])
async def test_cancel_at_every_step(desk: Desk, at_step: int) -> None:
    form = await typed(desk, OPERATOR, "/issue")
    if at_step > 1:
        _, form = await tap(desk, OPERATOR, OPERATOR, form, "StarDust")
    if at_step > 2:
        _, form = await tap(desk, OPERATOR, OPERATOR, form, "CTO")
    if at_step > 3:
        form = await typed(desk, OPERATOR, "A title")
    if at_step > 4:
        form = await typed(desk, OPERATOR, "Some details")
    assert f"step {at_step} of 5" in form["text"]
    _, closed = await tap(desk, OPERATOR, OPERATOR, form, "Cancel")
    assert closed["text"] == "✖️ New issue cancelled; nothing was filed."
    assert "reply_markup" not in closed
    assert await desk.fleet.service.issues() == []
    # The form is over: typed text is chatter again, and /issue starts afresh.
    fresh = await typed(desk, OPERATOR, "/issue")
    assert "step 1 of 5" in fresh["text"]


async def test_typed_assignee_back_skip_and_cancel_command(desk: Desk) -> None:
    form = await typed(desk, OPERATOR, "/issue")
    _, form = await tap(desk, OPERATOR, OPERATOR, form, "Alex Kerber")
    nobody = await typed(desk, OPERATOR, "cfo")
    assert "no agent or role 'cfo' in aliens" in nobody["text"]
    picked = await typed(desk, OPERATOR, "qa")  # two agents: pick one
    assert {"Hicks · qa", "Hudson · qa"} <= set(buttons(picked))
    _, back = await tap(desk, OPERATOR, OPERATOR, picked, "Back")
    assert "QA ×2" in buttons(back)
    title = await typed(desk, OPERATOR, "bishop")
    assert "step 3 of 5" in title["text"] and "Bishop (cto, bishop)" in title["text"]
    too_long = await typed(desk, OPERATOR, "x" * 201)
    assert "under 200 characters" in too_long["text"]
    body = await typed(desk, OPERATOR, "Rotate the staging keys")
    _, confirm = await tap(desk, OPERATOR, OPERATOR, body, "Skip")
    assert "step 5 of 5" in confirm["text"] and "blockquote" not in str(confirm.get("entities"))
    _, body_again = await tap(desk, OPERATOR, OPERATOR, confirm, "Back")
    assert "step 4 of 5" in body_again["text"]
    bye = await typed(desk, OPERATOR, "/cancel")
    assert bye["text"] == "✖️ New issue cancelled; nothing was filed."
    assert await desk.fleet.service.issues() == []


async def test_an_edited_answer_is_not_the_next_answer(desk: Desk) -> None:
    """Regression (issue 11, item 4): while the form waited for the details, an edit of the
    title message was taken as the details."""
    form = await typed(desk, OPERATOR, "/issue")
    _, form = await tap(desk, OPERATOR, OPERATOR, form, "Alex Kerber")
    await typed(desk, OPERATOR, "bishop")
    title = await desk.api.send_text(OPERATOR, "Rotate the staging keys")
    step4 = await desk.reply(OPERATOR)
    assert "step 4 of 5" in step4["text"]
    await desk.api.edit_text(OPERATOR, OPERATOR, title["message_id"], "Rotate every key")
    step5 = await typed(desk, OPERATOR, "Staging only; prod is next week.")
    assert "step 5 of 5" in step5["text"] and "Staging only" in step5["text"]
    assert "Title: Rotate the staging keys" in step5["text"]
    answer, filed = await tap(desk, OPERATOR, OPERATOR, step5, "File it")
    assert answer == "" and filed["text"].startswith("📝 Filed ALI-1.")
    issue = await desk.fleet.service.issue("ALI-1")
    assert (issue.title, issue.body) == (
        "Rotate the staging keys",
        "Staging only; prod is next week.",
    )


async def test_in_a_team_chat_the_company_is_known(desk: Desk) -> None:
    form = await typed(desk, OPERATOR, "/issue@fleetbot_test_bot", ALIENS_CHAT)
    assert "New issue for Alex Kerber AB · step 2 of 5" in form["text"]
    assert "◀️ Back" not in buttons(form)
    _, form = await tap(desk, OPERATOR, ALIENS_CHAT, form, "CEO")
    # Privacy mode shows a bot only replies to it in groups: the form asks for one.
    assert "Reply to this message with the title" in form["text"]
    # Another member typing in the group does not answer the operator's form.
    await desk.api.send_text(OWNER, "lunch?", chat_id=ALIENS_CHAT)
    step4 = await typed(desk, OPERATOR, "Quarterly plan", ALIENS_CHAT)
    assert "Quarterly plan" in step4["text"]
    _, confirm = await tap(desk, OPERATOR, ALIENS_CHAT, step4, "Skip")
    await tap(desk, OPERATOR, ALIENS_CHAT, confirm, "File it")
    issue = await desk.fleet.service.issue("ALI-1")
    assert (issue.title, issue.assignee_id) == ("Quarterly plan", "ripley")


async def test_form_times_out_cleanly(tmp_path: Path) -> None:
    async with running_desk(tmp_path, form_timeout=0.3) as desk:
        form = await typed(desk, OWNER, "/issue")
        edit = await desk.api.wait_for_call("editMessageText", timeout=3)
        assert str(edit.params["message_id"]) == str(form["message_id"])
        gone = desk.current(OWNER, form["message_id"])
        assert "closed; nothing was filed" in gone["text"] and "reply_markup" not in gone
        # After the goodbye, typed text is not taken as a title.
        await desk.api.send_text(OWNER, "A title too late")
        who = await desk.ask(OWNER, "/whoami")
        assert "1001" in who["text"]
        assert await desk.fleet.service.issues() == []
        assert [r["action"] for r in await desk.audit() if r["action"] == "form.timeout"]
        assert not desk.errors.records


async def test_access_is_checked_on_every_step(desk: Desk) -> None:
    refused = await typed(desk, VIEWER, "/issue")
    assert "/issue needs the operator role; you are a viewer" in refused["text"]
    form = await typed(desk, OPERATOR, "/issue")
    _, form = await tap(desk, OPERATOR, OPERATOR, form, "StarDust")
    # The operator loses the role while the form is open (the config changed).
    access = desk.runner.application.bot_data["fleetbot.desk"].access  # type: ignore[union-attr]
    access._roles[OPERATOR] = Role.VIEWER
    answer, _ = await tap(desk, OPERATOR, OPERATOR, form, "CTO")
    assert answer == "Filing issues needs the operator role; you are viewer."
    access._roles[OPERATOR] = Role.OPERATOR
    # The form was closed by the refusal: its old buttons are stale now.
    answer = await desk.press(OPERATOR, OPERATOR, form, button_data(form, "CEO"))
    assert "This form is closed" in answer
    assert await desk.fleet.service.issues() == []


async def test_file_issue_from_an_empty_queue_alert(desk: Desk) -> None:
    book = desk.fleet.alerts
    await book.raise_(
        Finding(AlertKind.QUEUE_EMPTY, "company:matrix", "matrix", "StarDust Meet", "no work")
    )
    [alert] = await book.firing()
    keyboard = alert_keyboard(alert)
    app = desk.runner.application
    assert app is not None and keyboard is not None
    await app.bot.send_message(
        OWNER, render_alert(alert, None, desk.clock.now()), parse_mode="HTML", reply_markup=keyboard
    )
    message = await desk.reply(OWNER)
    answer = await desk.press(OWNER, OWNER, message, button_data(message, "File issue"))
    assert answer == ""
    form = await desk.reply(OWNER)
    assert "New issue for StarDust Meet · step 2 of 5" in form["text"]
    assert desk.current(OWNER, message["message_id"])["text"] == message["text"]  # alert kept
    _, form = await tap(desk, OWNER, OWNER, form, "CTO")
    body = await typed(desk, OWNER, "Write the launch post")
    _, confirm = await tap(desk, OWNER, OWNER, body, "Skip")
    await tap(desk, OWNER, OWNER, confirm, "File it")
    assert (await desk.fleet.service.issue("MAT-1")).assignee_id == "trinity"
