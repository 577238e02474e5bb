"""Questions and approvals: an agent asks about its issue, someone answers from the phone.

A question is free text or a pick from up to six choices; an approval is a question whose
choices are Approve and Reject. While one is open its issue is not workable (the one rule in
core.store.issues), so no heartbeat wakes the agent for it and no monitor calls it stuck. The
answer is recorded as a comment on the issue (its author the answering actor, `tg:123`) and in
the audit log in one transaction, then the issue's assignee is woken at once on that issue with
wake reason `answer` (`approval`) and a one-line `wake_note` saying who answered what.

A reply in Telegram to a message about an issue (`talk`) is a comment that wakes the assignee
the same way, with reason `comment`; an issue in review goes back to in progress, a finished one
takes the comment and wakes nobody.

Who may answer (owners, operators) is the adapter's rule: the bot checks the role before it
calls `answer`, as it does for every command.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from core.clock import Clock
from core.errors import Conflict, InvalidInput, NotFound
from core.events import (
    Event,
    EventBus,
    QuestionAnswered,
    QuestionAsked,
    QuestionCancelled,
    WakeRequested,
)
from core.models import (
    APPROVAL_CHOICES,
    ISSUE_TRANSITIONS,
    Agent,
    Comment,
    Issue,
    IssueStatus,
    Question,
    QuestionKind,
    QuestionStatus,
)
from core.store import (
    agents as agent_store,
    audit,
    issues as issue_store,
    questions as question_store,
)
from core.store.conn import Conn
from core.store.db import Database

MAX_TEXT = 2000  # a question
MAX_CHOICES = 6
MAX_CHOICE = 40  # one choice: it is a button label
MAX_NOTE = 500  # Dispatch.wake_note
MAX_ANSWER = 2000  # a free-text answer
# What a typed answer to an approval may start with, and the choice it picks.
_APPROVE_WORDS = ("approve", "approved", "yes", "ok", "👍")
_REJECT_WORDS = ("reject", "rejected", "no", "deny", "👎")


def question_id(text: str | int) -> int:
    """`Q7`, `q7`, `7` or 7 as the number 7; NotFound for anything else."""
    raw = str(text).strip().upper().removeprefix("Q")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12 or int(raw) < 1:
        raise NotFound(
            f"no question {str(text)[:40]!r}; question ids look like Q7",
            code="question_not_found",
        )
    return int(raw)


def clip(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def closed_message(q: Question) -> str:
    """Why `q` cannot be answered any more, with who answered it."""
    if q.answer is not None and q.status is QuestionStatus.ANSWERED:
        return f"{q.ref} was already answered by {q.answerer}: {clip(q.answer, 120)}"
    why = f" ({clip(q.answer, 120)})" if q.answer else ""
    return f"{q.ref} was cancelled{why}; nothing is waiting on it"


def check_question(text: str, choices: list[str], approval: bool) -> tuple[str, tuple[str, ...]]:
    """The question's text and choices, cleaned; InvalidInput naming what is wrong."""
    body = text.strip()
    if not body:
        raise InvalidInput("a question needs some text")
    if len(body) > MAX_TEXT:
        raise InvalidInput(f"keep a question under {MAX_TEXT} characters (it has {len(body)})")
    if approval:
        if choices:
            raise InvalidInput("an approval's choices are Approve and Reject; give no choices")
        return body, APPROVAL_CHOICES
    cleaned = tuple(" ".join(c.split()) for c in choices)
    if len(cleaned) > MAX_CHOICES:
        raise InvalidInput(f"give at most {MAX_CHOICES} choices (there are {len(cleaned)})")
    for c in cleaned:
        if not c or len(c) > MAX_CHOICE:
            raise InvalidInput(f"each choice is 1 to {MAX_CHOICE} characters, not {c!r}")
    return body, cleaned


def typed_answer(q: Question, text: str) -> str:
    """A typed answer to `q`: free text, or for an approval a word that picks Approve or
    Reject (`reject: not before Friday` keeps the rest as the reason)."""
    body = text.strip()
    if not body:
        raise InvalidInput("an answer needs some text")
    if len(body) > MAX_ANSWER:
        raise InvalidInput(f"keep an answer under {MAX_ANSWER} characters")
    if q.kind is not QuestionKind.APPROVAL:
        return body
    first, _, rest = body.partition(" ")
    word = first.lower().rstrip(".,:;!-—")
    for words, choice in ((_APPROVE_WORDS, "Approve"), (_REJECT_WORDS, "Reject")):
        if word in words:
            why = rest.strip(" .,:;-—")
            return f"{choice}: {why}" if why else choice
    raise InvalidInput(
        f"{q.ref} is an approval: tap Approve or Reject, or reply with approve or reject "
        "(and a reason after it, if you like)"
    )


def answer_note(q: Question, answer: str, actor: str, name: str) -> str:
    """`Q7 "Deploy to prod?" answered by Ann (tg:123): Approve`, at most MAX_NOTE characters."""
    who = f"{name} ({actor})" if name else actor
    return clip(f'{q.ref} "{clip(q.text, 120)}" answered by {who}: {answer}', MAX_NOTE)


def comment_note(body: str, actor: str, name: str) -> str:
    who = f"{name} ({actor})" if name else actor
    return clip(f"Comment from {who}: {body}", MAX_NOTE)


async def cancel_open_in(
    conn: Conn,
    issue_id: str,
    actor: str,
    why: str,
    now: float,
    events: list[Event],
) -> list[int]:
    """Cancel the issue's open questions inside the caller's transaction (its run finished, or
    it was closed); their QuestionCancelled events go into `events`."""
    ids = await question_store.cancel_open(conn, issue_id, actor, why, now)
    for qid in ids:
        await audit.record(conn, now, actor, "question.cancel", f"Q{qid}", {"issue": issue_id})
        events.append(QuestionCancelled(qid, issue_id))
    return ids


async def waited_on(conn: Conn, issue_id: str | None) -> int:
    """The open question a run on `issue_id` may end `waiting` on (the newest); Conflict
    `no_open_question` saying what to do instead when there is none."""
    asked = [] if issue_id is None else await question_store.for_issue(conn, issue_id)
    open_ones = [q for q in asked if q.open]
    if open_ones:
        return open_ones[-1].id
    where = f"{issue_id} has" if issue_id else "the run has no issue, so it has"
    answered = [q for q in asked if q.status is QuestionStatus.ANSWERED]
    hint = (
        f"; {answered[-1].ref} was answered meanwhile ({clip(answered[-1].answer or '', 200)!r}):"
        f" read it with GET /api/v1/questions/{answered[-1].id} and go on"
        if answered
        else "; ask one first (POST /api/v1/issues/ID/questions), or finish done, failed or blocked"
    )
    raise Conflict(f"{where} no open question to wait on{hint}", code="no_open_question")


async def _back_to_work(conn: Conn, issue: Issue, actor: str, now: float) -> bool:
    """An issue in review that someone talks to goes back to in progress (the graph's "sent
    back"); True if it moved."""
    if issue.status is not IssueStatus.IN_REVIEW:
        return False
    assert IssueStatus.IN_PROGRESS in ISSUE_TRANSITIONS[issue.status]
    await issue_store.move(conn, issue.id, IssueStatus.IN_PROGRESS, "", now, retry=False)
    await audit.record(
        conn, now, actor, "issue.move", issue.id, {"from": issue.status, "to": "in_progress"}
    )
    return True


@dataclass(frozen=True, slots=True)
class Talk:
    """What a reply to an issue came to: the comment, and whom it woke (or why nobody)."""

    comment: Comment
    issue: Issue
    woke: str | None  # the agent woken, or None
    why: str  # one sentence for the person who replied


class Questions:
    """The write side of questions, and the long-poll an agent waits on for an answer."""

    def __init__(self, db: Database, clock: Clock, events: EventBus) -> None:
        self.db = db
        self.clock = clock
        self.events = events
        self._waiters: dict[int, set[asyncio.Event]] = {}
        events.subscribe(self._on_event)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, QuestionAnswered | QuestionCancelled):
            for waiter in self._waiters.get(event.question_id, ()):
                waiter.set()

    async def get(self, qid: int | str) -> Question:
        key = question_id(qid)
        found = await question_store.get(self.db.reader, key)
        if found is None:
            raise NotFound(f"no question Q{key}", code="question_not_found")
        return found

    async def ask(
        self,
        *,
        issue: Issue,
        agent: Agent,
        text: str,
        choices: list[str] | None = None,
        approval: bool = False,
        run_id: str | None = None,
    ) -> Question:
        body, picks = check_question(text, list(choices or ()), approval)
        kind = QuestionKind.APPROVAL if approval else QuestionKind.QUESTION
        now = self.clock.now()
        async with self.db.write() as conn:
            current = await issue_store.get(conn, issue.id)
            assert current is not None
            if current.status.terminal:
                raise Conflict(
                    f"{issue.id} is {current.status.value}; there is nobody left to ask about it",
                    code="issue_closed",
                )
            q = await question_store.insert(
                conn,
                company_id=current.company_id,
                issue_id=current.id,
                agent_id=agent.id,
                run_id=run_id,
                kind=kind,
                text=body,
                choices=picks,
                now=now,
            )
            await audit.record(
                conn, now, f"agent:{agent.id}", "question.ask", q.ref, {"issue": issue.id}
            )
            await agent_store.seen(conn, agent.id, now)
        self.events.publish(QuestionAsked(q.id, q.issue_id, q.company_id))
        return q

    async def answer(
        self,
        qid: int | str,
        actor: str,
        *,
        choice: int | None = None,
        text: str | None = None,
        name: str = "",
    ) -> Question:
        """Answer with choice number `choice` (from 0) or typed `text`. Conflict naming who
        answered if it is no longer open (a stale tap); InvalidInput for a choice it lacks."""
        q = await self.get(qid)
        if not q.open:
            raise Conflict(closed_message(q), code="question_closed")
        if choice is not None:
            if not 0 <= choice < len(q.choices):
                raise InvalidInput(f"{q.ref} has no choice {choice + 1}", code="no_such_choice")
            answer = q.choices[choice]
        elif text is not None:
            answer = typed_answer(q, text)
        else:
            raise InvalidInput("answer with a choice or some text")
        name = clip(name, 64)
        now = self.clock.now()
        async with self.db.write() as conn:
            if not await question_store.answer(conn, q.id, answer, actor, name, now):
                fresh = await question_store.get(conn, q.id)
                assert fresh is not None
                raise Conflict(closed_message(fresh), code="question_closed")
            issue = await issue_store.get(conn, q.issue_id)
            assert issue is not None
            body = f'Answer to {q.ref} ("{clip(q.text, 200)}"): {answer}'
            comment_id = await issue_store.add_comment(conn, issue.id, actor, body, now)
            await audit.record(
                conn,
                now,
                actor,
                "question.answer",
                q.ref,
                {"issue": issue.id, "answer": clip(answer, 200), "comment": comment_id},
            )
            await _back_to_work(conn, issue, actor, now)
            if issue.assignee_id is not None and not issue.status.terminal:
                # Due now in the store too: should the event's wake be lost (a restart), the
                # next sweep still beats the agent.
                await agent_store.beat_at(conn, issue.assignee_id, now)
            answered = await question_store.get(conn, q.id)
        assert answered is not None
        events: list[Event] = [QuestionAnswered(q.id, q.issue_id, actor)]
        if issue.assignee_id is not None and not issue.status.terminal:
            reason = "approval" if q.kind is QuestionKind.APPROVAL else "answer"
            note = answer_note(q, answer, actor, name)
            events.append(WakeRequested(issue.assignee_id, reason, issue.id, note))
        self.events.publish(*events)
        return answered

    async def wait(self, qid: int | str, timeout: float) -> Question:  # noqa: ASYNC109
        """The question as soon as it is not open, or as it is when `timeout` seconds pass."""
        q = await self.get(qid)
        if not q.open or timeout <= 0:
            return q
        waiter = asyncio.Event()
        self._waiters.setdefault(q.id, set()).add(waiter)
        try:
            q = await self.get(q.id)  # answered between the read and the registration?
            if q.open:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await waiter.wait()
        finally:
            waiting = self._waiters.get(q.id, set())
            waiting.discard(waiter)
            if not waiting:
                self._waiters.pop(q.id, None)
        return await self.get(q.id)

    async def talk(self, issue_id: str, text: str, actor: str, *, name: str = "") -> Talk:
        """A reply to a message about the issue: a comment that wakes its assignee with reason
        `comment`, unless the issue is finished, blocked or waiting on a question."""
        body = text.strip()
        if not body:
            raise InvalidInput("a comment needs some text")
        if len(body) > 20_000:
            raise InvalidInput("keep comments under 20,000 characters")
        now = self.clock.now()
        wake: str | None = None
        async with self.db.write() as conn:
            issue = await issue_store.get(conn, issue_id)
            if issue is None:
                raise NotFound(f"no issue {issue_id!r}", code="issue_not_found")
            comment_id = await issue_store.add_comment(conn, issue.id, actor, body, now)
            detail: dict[str, Any] = {"comment": comment_id, "via": "reply"}
            await audit.record(conn, now, actor, "issue.comment", issue.id, detail)
            asked = [q for q in await question_store.for_issue(conn, issue.id) if q.open]
            if issue.status.terminal:
                why = f"{issue.id} is {issue.status.value}: the comment is recorded, nobody woken."
            elif issue.assignee_id is None:
                why = f"{issue.id} has no assignee: the comment is recorded, nobody woken."
            elif issue.status is IssueStatus.BLOCKED:
                why = (
                    f"{issue.id} is blocked: the comment is recorded; retry the issue to wake "
                    f"{issue.assignee_id}."
                )
            elif asked:
                why = (
                    f"{issue.id} waits on {asked[0].ref}: the comment is recorded, and "
                    f"{issue.assignee_id} reads it when it is woken with the answer."
                )
            else:
                moved = await _back_to_work(conn, issue, actor, now)
                await agent_store.beat_at(conn, issue.assignee_id, now)
                wake = issue.assignee_id
                why = f"{wake} is woken with it" + (" (back in progress)." if moved else ".")
            fresh = await issue_store.get(conn, issue.id)
        assert fresh is not None
        if wake is not None:
            note = comment_note(body, actor, name)
            self.events.publish(WakeRequested(wake, "comment", issue.id, note))
        return Talk(Comment(comment_id, issue.id, actor, body, now), fresh, wake, why)
