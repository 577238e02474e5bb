"""Questions, approvals and replies end to end: an agent (a scripted runtime that calls the real
agent API with its run token) asks; the card reaches the owner's DM and the team chat on the
offline Bot API; a tap or a text reply answers it; the agent's next wake carries the answer;
a reply to a summary or an issue card talks to the agent. Forged, stale and unauthorised taps
do nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from bot_helpers import (
    ALIENS_CHAT,
    MATRIX_CHAT,
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

from core.config import Config
from core.models import Agent, IssueStatus, QuestionStatus
from core.runtimes.base import Dispatch, DispatchResult, Runtime

Script = Callable[["Agents", Dispatch], Awaitable[DispatchResult]]


class _Scripted(Runtime):
    kind = "scripted"

    def __init__(self, farm: Agents) -> None:
        self.farm = farm

    async def dispatch(self, job: Dispatch) -> DispatchResult:
        self.farm.jobs.append(job)
        return await self.farm.script(self.farm, job)


@dataclass
class Agents:
    """Every agent of the fleet, played by `script` through the agent API."""

    client: httpx.AsyncClient
    script: Script
    jobs: list[Dispatch] = field(default_factory=list)

    def __call__(self, agent: Agent) -> Runtime:
        return _Scripted(self)

    async def call(self, job: Dispatch, method: str, path: str, **body: Any) -> Any:
        headers = {"Authorization": f"Bearer {job.token}"}
        r = await self.client.request(method, f"/api/v1{path}", headers=headers, json=body or None)
        assert r.status_code < 300, r.text
        return r.json()

    async def finish(self, job: Dispatch, outcome: str, summary: str = "") -> DispatchResult:
        await self.call(job, "POST", f"/runs/{job.run_id}/finish", outcome=outcome, summary=summary)
        return DispatchResult(finished=True)


def asks(**question: Any) -> Script:
    """First wake: ask, and end the run waiting. Any later wake: finish the issue."""

    async def play(farm: Agents, job: Dispatch) -> DispatchResult:
        if len(farm.jobs) == 1:
            await farm.call(job, "POST", f"/issues/{job.issue_id}/questions", **question)
            return await farm.finish(job, "waiting", "asked the owner")
        return await farm.finish(job, "done", f"went on with: {job.wake_note}")

    return play


@dataclass
class Phone:
    desk: Desk
    agents: Agents

    @property
    def api(self) -> Any:
        return self.desk.api

    async def card(self, chat: int, qid: int = 1) -> dict[str, Any]:
        """The question card as it reaches `chat` (the pinned card is not it)."""
        ref = f"Q{qid}"

        def is_card(m: dict[str, Any]) -> bool:
            return ref in m["text"] and "asks" in m["text"] and not m["text"].startswith("📌")

        return await self.api.wait_for_message(chat, is_card)

    async def ask_and_deliver(self, **question: Any) -> tuple[str, dict[str, Any]]:
        """File work for ripley, let it ask, and deliver the card (past group_wait)."""
        self.agents.script = asks(**question)
        issue = await self.desk.fleet.service.file_issue(
            title="Launch the site", assignee="ripley", actor="tg:1001"
        )
        await self.settle()
        self.desk.clock.advance(31)
        await self.desk.fleet.alerts.flush()
        return issue.id, await self.card(OWNER)

    async def settle(self) -> None:
        await self.desk.settle()
        await self.desk.fleet.monitors.settle()
        await self.desk.settle()

    async def reply(self, user: int, chat: int, to: dict[str, Any], text: str) -> dict[str, Any]:
        """`user` replies `text` to the bot's message `to`; the bot's answer, once audited."""
        # A person reads before replying: the link the sender records right after the message
        # went out is there by then.
        await eventually(lambda: _linked(self, chat, to))
        rows = len(await self.replies(user))
        sent = await self.api.send_text(user, text, chat_id=chat, reply_to=to["message_id"])
        # The bot quotes what it answers in groups (not in private chats, as PTB does).
        quoting = sent["message_id"] if chat < 0 else None
        answer = await self.desk.reply(chat, quoting=quoting)
        await eventually(lambda: self._more(user, rows))
        return answer

    async def _more(self, user: int, rows: int) -> bool:
        return len(await self.replies(user)) > rows

    async def replies(self, user: int) -> list[dict[str, Any]]:
        return [
            r
            for r in await self.desk.audit()
            if r["actor"] == f"tg:{user}" and r["action"] == "reply"
        ]


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 - polls what other tasks write
            await asyncio.sleep(0.01)


async def open_phone(tmp_path: Path, config: Config | None = None) -> AsyncIterator[Phone]:
    async with running_desk(tmp_path, config=config) as desk:
        transport = httpx.ASGITransport(app=desk.fleet.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://fleet.test") as client:
            agents = Agents(client, asks(text="?"))
            # Before any work is filed: every agent is played by the script.
            desk.fleet.scheduler.runtimes = agents
            yield Phone(desk, agents)
            await desk.fleet.scheduler.drain()
        assert not desk.errors.records, [r.getMessage() for r in desk.errors.records]


@pytest.fixture
async def phone(tmp_path: Path) -> AsyncIterator[Phone]:
    async for p in open_phone(tmp_path):
        yield p


async def post(desk: Desk, chat: int, text: str, rows: list[list[tuple[str, str]]]) -> Any:
    """A bot message with hand-made buttons: what a modified client could send taps for."""
    app = desk.runner.application
    assert app is not None
    markup = InlineKeyboardMarkup(
        [[InlineKeyboardButton(t, callback_data=d) for t, d in row] for row in rows]
    )
    await app.bot.send_message(chat, text, reply_markup=markup)
    return await desk.api.wait_for_message(chat, lambda m: m["text"] == text)


def audit_of(rows: list[dict[str, Any]], action: str) -> list[tuple[str, str, str]]:
    return [(r["actor"], r["target"], r["result"]) for r in rows if r["action"] == action]


# -- the loop, from asking to done --------------------------------------------------------------


async def test_an_agent_asks_the_owner_taps_and_the_agent_goes_on(phone: Phone) -> None:
    desk, fleet = phone.desk, phone.desk.fleet
    issue_id, card = await phone.ask_and_deliver(
        text="Which region should the site run in?", choices=["eu-north", "us-east"]
    )
    assert "Ripley (ceo) asks" in card["text"] and issue_id in card["text"]
    assert "Which region should the site run in?" in card["text"]
    assert list(buttons(card)) == ["eu-north", "us-east", "👍 Seen: no reminders"]
    team_card = await phone.card(ALIENS_CHAT)  # the company's chat gets it too
    assert buttons(team_card) == buttons(card)
    (first,) = phone.agents.jobs
    assert first.wake_reason == "assigned"
    issue = await fleet.service.issue(issue_id)
    assert (issue.status, issue.attempts) == (IssueStatus.IN_PROGRESS, 0)

    answer = await desk.press(OWNER, OWNER, card, button_data(card, "eu-north"))
    assert answer == "✅ Q1: eu-north"
    await phone.settle()
    second = phone.agents.jobs[-1]
    assert (second.issue_id, second.wake_reason) == (issue_id, "answer")
    assert second.wake_note == (
        'Q1 "Which region should the site run in?" answered by Olga (tg:1001): eu-north'
    )
    assert (await fleet.service.issue(issue_id)).status is IssueStatus.DONE
    shown = desk.current(OWNER, card["message_id"])
    assert shown["text"].startswith("✅ Q1 · question answered by Olga (tg:1001): eu-north")
    assert buttons(shown) == {}
    # The notifier edits the team chat's copy into the answered form too.
    await eventually(lambda: _starts(desk.current(ALIENS_CHAT, team_card["message_id"]), "✅ Q1"))
    rows = await desk.audit()
    assert ("tg:1001", "1", "ok") in audit_of(rows, "button.q.ans")
    assert ("tg:1001", "Q1", "ok") in audit_of(rows, "question.answer")
    comments = await fleet.service.comments(issue_id)
    assert (comments[0].author, comments[0].body) == (
        "tg:1001",
        'Answer to Q1 ("Which region should the site run in?"): eu-north',
    )


async def _starts(message: dict[str, Any], prefix: str) -> bool:
    return str(message["text"]).startswith(prefix)


async def test_an_approval_rejected_from_the_phone_is_recorded_and_delivered(
    phone: Phone,
) -> None:
    desk, fleet = phone.desk, phone.desk.fleet
    issue_id, card = await phone.ask_and_deliver(text="Deploy to prod now?", approval=True)
    assert "asks for approval" in card["text"]
    team_card = await phone.card(ALIENS_CHAT)
    reject = button_data(team_card, "Reject")
    assert set(buttons(team_card)) >= {"✅ Approve", "❌ Reject"}

    # An operator may not approve (telegram.approvers: owners, the default): nothing happens.
    refused = await desk.press(OPERATOR, ALIENS_CHAT, team_card, reject)
    assert "needs the owner role" in refused
    assert (await fleet.service.question(1)).status is QuestionStatus.OPEN
    assert len(phone.agents.jobs) == 1

    assert await desk.press(OWNER, ALIENS_CHAT, team_card, reject) == "✅ Q1: Reject"
    await phone.settle()
    job = phone.agents.jobs[-1]
    assert (job.issue_id, job.wake_reason) == (issue_id, "approval")
    assert job.wake_note.endswith("answered by Olga (tg:1001): Reject")
    comments = await fleet.service.comments(issue_id)
    assert comments[0].body == 'Answer to Q1 ("Deploy to prod now?"): Reject'
    rows = await desk.audit()
    assert ("tg:1002", "1", "refused") in audit_of(rows, "button.q.ans")
    assert ("tg:1001", "Q1", "ok") in audit_of(rows, "question.answer")
    await eventually(lambda: _starts(desk.current(OWNER, card["message_id"]), "✅ Q1"))

    # A stale tap (a copy of the card from before the answer) says who answered; no change.
    stale = await post(
        desk, OWNER, "an old copy of the card", [[("✅ Approve", reject[:-1] + "0")]]
    )
    said = await desk.press(OWNER, OWNER, stale, reject[:-1] + "0")
    assert said == "Q1 was already answered by Olga (tg:1001): Reject"
    assert len(await fleet.service.comments(issue_id)) == 1
    assert (await fleet.service.question(1)).answer == "Reject"
    assert ("tg:1001", "1", "stale") in audit_of(await desk.audit(), "button.q.ans")


async def test_operators_approve_when_the_config_says_so(tmp_path: Path) -> None:
    config = bot_config(tmp_path, telegram={"approvers": "operators"})
    async for phone in open_phone(tmp_path, config):
        _, _ = await phone.ask_and_deliver(text="Spend $50 on ads?", approval=True)
        team_card = await phone.card(ALIENS_CHAT)
        said = await phone.desk.press(
            OPERATOR, ALIENS_CHAT, team_card, button_data(team_card, "Approve")
        )
        assert said == "✅ Q1: Approve"
        await phone.settle()
        assert phone.agents.jobs[-1].wake_reason == "approval"
        # Viewers never answer, whatever the config.
        help_ = await phone.desk.ask(OPERATOR, "/help")
        assert "Approvals (Approve/Reject) are answered by owners and operators" in help_["text"]


async def test_forged_taps_are_refused_and_change_nothing(phone: Phone) -> None:
    desk, fleet = phone.desk, phone.desk.fleet
    issue_id, card = await phone.ask_and_deliver(text="Pick a colour", choices=["Red", "Blue"])
    forged = ["v1:q:999:ans:0", "v1:q:1:ans:2", "v1:q:1:ans:-1", "v1:q:x1:ans:0", "v1:q:1:frob"]
    for data in forged:
        message = await post(desk, OWNER, f"forged {data}", [[("Red", data)]])
        said = await desk.press(OWNER, OWNER, message, data)
        assert "not one fleetbot" in said or "no question" in said, (data, said)
    # A real card's button, tapped in another company's chat: refused too.
    red = button_data(card, "Red")
    elsewhere = await post(desk, MATRIX_CHAT, "moved to another team", [[("Red", red)]])
    said = await desk.press(OWNER, MATRIX_CHAT, elsewhere, red)
    assert said == "Q1 is aliens's; answer it in its own team chat or in private."
    q = await fleet.service.question(1)
    assert q.status is QuestionStatus.OPEN and q.answer is None
    assert await fleet.service.comments(issue_id) == []
    assert len(phone.agents.jobs) == 1, "nobody was woken"
    taps = [r for r in await desk.audit() if r["action"].startswith("button.q.")]
    assert [r["result"] for r in taps] == ["refused"] * 6


async def test_a_viewer_cannot_answer_by_tap_or_reply(phone: Phone) -> None:
    desk, fleet = phone.desk, phone.desk.fleet
    _, _ = await phone.ask_and_deliver(text="Ship it?", choices=["Yes", "No"])
    team_card = await phone.card(ALIENS_CHAT)
    said = await desk.press(VIEWER, ALIENS_CHAT, team_card, button_data(team_card, "Yes"))
    assert said == "This button needs the operator role; you are viewer."
    answer = await phone.reply(VIEWER, ALIENS_CHAT, team_card, "Yes, ship it")
    assert "needs the operator role; you are a viewer" in answer["text"]
    assert (await fleet.service.question(1)).status is QuestionStatus.OPEN
    assert audit_of(await desk.audit(), "reply") == [("tg:1003", "Q1", "refused")]


async def test_a_text_reply_to_the_card_answers_it(phone: Phone) -> None:
    desk, fleet = phone.desk, phone.desk.fleet
    issue_id, card = await phone.ask_and_deliver(text="What should the tagline say?")
    assert buttons(card) == {"👍 Seen: no reminders": button_data(card, "Seen")}
    team_card = await phone.card(ALIENS_CHAT)
    answer = await phone.reply(OPERATOR, ALIENS_CHAT, team_card, "Ships in a day, not a quarter")
    assert answer["text"].startswith("✅ Q1 answered: Ships in a day, not a quarter")
    await phone.settle()
    job = phone.agents.jobs[-1]
    assert (job.issue_id, job.wake_reason) == (issue_id, "answer")
    assert job.wake_note.endswith("answered by Omar (tg:1002): Ships in a day, not a quarter")
    edited = desk.current(ALIENS_CHAT, team_card["message_id"])
    assert edited["text"].startswith("✅ Q1 · question answered by Omar (tg:1002)")
    assert (await fleet.service.issue(issue_id)).status is IssueStatus.DONE
    assert audit_of(await desk.audit(), "reply") == [("tg:1002", "Q1", "ok")]


# -- reply to talk ------------------------------------------------------------------------------


def reports(summary: str) -> Script:
    """First wake: post a summary through the API, then end the turn without a verdict (its
    last words are the run's summary; the issue goes to review). Later: finish done."""

    async def play(farm: Agents, job: Dispatch) -> DispatchResult:
        if len(farm.jobs) == 1:
            await farm.call(job, "POST", "/summaries", body=summary, issue_id=job.issue_id)
            return DispatchResult(finished=True, summary="Drafted it; see the summary.")
        return await farm.finish(job, "done", "added the tests")

    return play


async def test_a_reply_to_a_summary_is_a_comment_that_wakes_the_assignee(phone: Phone) -> None:
    desk, fleet = phone.desk, phone.desk.fleet
    phone.agents.script = reports("Launch plan drafted: three steps.")
    issue = await fleet.service.file_issue(title="Plan", assignee="ripley", actor="tg:1001")
    await phone.settle()
    summary = await desk.api.wait_for_message(ALIENS_CHAT, lambda m: "three steps" in m["text"])
    run_card = await desk.api.wait_for_message(ALIENS_CHAT, lambda m: "Drafted it" in m["text"])
    assert (await fleet.service.issue(issue.id)).status is IssueStatus.IN_REVIEW

    answer = await phone.reply(OPERATOR, ALIENS_CHAT, summary, "Please also add tests")
    assert answer["text"] == (
        f"💬 Comment added to {issue.id}. ripley is woken with it (back in progress)."
    )
    await phone.settle()
    job = phone.agents.jobs[-1]
    assert (job.issue_id, job.wake_reason) == (issue.id, "comment")
    assert job.wake_note == "Comment from Omar (tg:1002): Please also add tests"
    comments = await fleet.service.comments(issue.id)
    assert [(c.author, c.body) for c in comments] == [("tg:1002", "Please also add tests")]
    assert (await fleet.service.issue(issue.id)).status is IssueStatus.DONE

    # The run's own summary is a "run card": a reply to it after the issue is done is kept,
    # wakes nobody, and says so.
    late = await phone.reply(OWNER, ALIENS_CHAT, run_card, "Nice work")
    assert "is done: the comment is recorded, nobody woken" in late["text"]
    await phone.settle()
    assert len(phone.agents.jobs) == 2
    assert audit_of(await desk.audit(), "reply") == [  # newest first
        ("tg:1001", issue.id, "ok"),
        ("tg:1002", issue.id, "ok"),
    ]


async def _linked(phone: Phone, chat: int, message: dict[str, Any]) -> bool:
    found = await phone.desk.fleet.service.message_link(chat, message["message_id"])
    return found is not None


async def test_a_reply_to_an_issue_card_and_chatter(phone: Phone) -> None:
    desk, fleet = phone.desk, phone.desk.fleet
    phone.agents.script = reports("Half done.")
    issue = await fleet.service.file_issue(title="Plan", assignee="bishop", actor="tg:1001")
    await phone.settle()
    card = await desk.ask(OWNER, f"/issues {issue.id}")
    answer = await phone.reply(OWNER, OWNER, card, "Use the new logo")
    assert "bishop is woken with it" in answer["text"]
    await phone.settle()
    assert phone.agents.jobs[-1].wake_reason == "comment"
    # A reply to a message that shows no issue (the /status board) is chatter: no answer.
    board = await desk.ask(OWNER, "/status")
    before = len(await fleet.service.comments(issue.id))
    await desk.api.send_text(OWNER, "hm", reply_to=board["message_id"])
    await desk.api.send_text(OWNER, "/whoami")
    said = await desk.reply(OWNER)
    assert "Telegram user id" in said["text"], "the next answer is /whoami's: 'hm' got none"
    assert len(await fleet.service.comments(issue.id)) == before


# -- /waiting and the pinned card ---------------------------------------------------------------


async def test_waiting_lists_and_the_pinned_card_follows(phone: Phone) -> None:
    desk = phone.desk
    _, card = await phone.ask_and_deliver(text="Which day?", choices=["Mon", "Tue"])
    pinned_cards = desk.runner.application.bot_data["fleetbot.pinned"]  # type: ignore[union-attr]
    await pinned_cards.settle()
    sent_pin = await desk.api.wait_for_message(OWNER, lambda m: m["text"].startswith("📌"))
    (pin,) = desk.api.pinned(OWNER)
    assert pin["message_id"] == sent_pin["message_id"]
    assert pin["text"].startswith("📌 Waiting on you: 1") and "Q1" in pin["text"]
    assert desk.api.calls("pinChatMessage")[0].params["disable_notification"] in (True, "true")

    listing = await desk.ask(VIEWER, "/waiting")
    assert listing["text"].startswith("Waiting on you: 1 question(s), 0 approval(s)")
    viewer_card = await desk.reply(VIEWER)
    assert "Which day?" in viewer_card["text"] and buttons(viewer_card) == {}, (
        "a viewer: no buttons"
    )
    own = await desk.ask(OWNER, "/waiting")
    assert "Q1" in own["text"]
    owner_card = await phone.card(OWNER)
    assert {"Mon", "Tue"} <= set(buttons(owner_card))

    # The pinned card's button opens the card; answering edits the pin in place.
    opened = await desk.press(OWNER, OWNER, pin, button_data(pin, "Q1"))
    assert opened == ""
    shown = await phone.card(OWNER)
    assert await desk.press(OWNER, OWNER, shown, button_data(shown, "Tue")) == "✅ Q1: Tue"
    await phone.settle()
    await pinned_cards.settle()
    (pin_now,) = desk.api.pinned(OWNER)
    assert pin_now["message_id"] == pin["message_id"], "edited in place, not sent again"
    assert "nothing" in pin_now["text"]
    assert len(desk.api.calls("pinChatMessage")) == 1
    done = await desk.ask(OWNER, "/waiting")
    assert done["text"].startswith("✅ Nothing is waiting on you")
    assert ("tg:1003", "", "ok") in audit_of(await desk.audit(), "/waiting")
    assert card  # the alert card stays; it was edited by the answer
