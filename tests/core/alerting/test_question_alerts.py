"""The `question` alert, and the monitors' silence about agents that wait on a human: one alert
per open question, through the AlertBook and the outbox, reminded per repeat_interval,
resolved when answered; no stuck or silent alert for a run whose issue waits on a question."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from stack_helpers import Stack, open_stack
from test_monitors import CONFIG, T0, agent, cfg, kinds, run

from core.alerting.book import AlertBook, AlertKind, AlertState
from core.alerting.monitors import Snapshot, evaluate, find_silent, find_stuck
from core.alerting.outbox import Outbox, OutboxKind
from core.alerting.watchdog import Monitors
from core.clock import ManualClock
from core.engine.recovery import Recovery
from core.models import AgentStatus, Question, QuestionKind, QuestionStatus, RunOutcome
from core.reports.costs import CostBook


def question(issue_id: str = "ALI-1", **kw: object) -> Question:
    base = Question(
        id=7,
        company_id="aliens",
        issue_id=issue_id,
        agent_id="ali-ceo",
        run_id=None,
        kind=QuestionKind.QUESTION,
        text="Deploy to prod?",
        choices=(),
        status=QuestionStatus.OPEN,
        answer=None,
        answered_by=None,
        asked_at=T0,
        answered_at=None,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def test_a_run_waiting_on_a_question_is_neither_stuck_nor_silent() -> None:
    busy = (agent(status=AgentStatus.RUNNING, last_seen_at=T0),)
    runs = (run(deadline=T0 + 7200),)
    late = T0 + 3 * 3600  # past stuck_after (30m), silent_after (2h) and the deadline
    without = Snapshot(late, busy, live_runs=runs)
    assert kinds(find_stuck(without, CONFIG)) == [("agent_stuck", "agent:ali-ceo", "deadline")]
    with_q = replace(without, open_questions=(question("ALI-1"),))
    assert find_stuck(with_q, CONFIG) == [] and find_silent(with_q, CONFIG) == []
    assert [f.kind for f in evaluate(with_q, CONFIG)] == [AlertKind.QUESTION]
    # A question on another issue does not excuse this run.
    other = replace(without, open_questions=(question("ALI-9"),))
    assert ("agent_stuck", "agent:ali-ceo", "deadline") in kinds(find_stuck(other, CONFIG))
    silent = replace(without, live_runs=(run(deadline=late + 3600, last_progress_at=T0),))
    assert kinds(find_silent(replace(silent, now=late), CONFIG)) == []  # stuck says it first
    assert find_silent(replace(silent, open_questions=(question(),)), CONFIG) == []


def test_every_open_question_is_its_own_alert() -> None:
    two = (question(id=7), question(id=8, issue_id="ALI-2", kind=QuestionKind.APPROVAL))
    found = evaluate(Snapshot(T0, (agent(),), open_questions=two), CONFIG)
    assert [(f.subject, f.cause) for f in found] == [
        ("question:7", "question:Q7"),
        ("question:8", "question:Q8"),
    ]
    assert found[0].label == "Q7 · ALI-1 · Ali-Ceo (ceo)"
    assert found[1].detail == "approval: Deploy to prod?"


async def deliver(outbox: Outbox) -> None:
    """What the notifier does with due rows, minus Telegram."""
    for r in await outbox.due(10):
        await outbox.start(r.id)
        await outbox.sent(r.id, 100 + r.id, r.chat)


@pytest.fixture
async def watched(tmp_path: Path) -> AsyncIterator[tuple[Stack, Monitors, AlertBook, Outbox]]:
    config = cfg(tmp_path)
    clock = ManualClock(T0)
    async with open_stack(tmp_path, clock, config=config) as stack:
        outbox = Outbox(stack.db, clock, config)
        book = AlertBook(stack.db, clock, config, outbox)
        recovery = Recovery(stack.service, config)
        monitors = Monitors(stack.service, book, CostBook(stack.db, clock), recovery, config, clock)
        stack.service.events.subscribe(monitors.on_event)
        try:
            yield stack, monitors, book, outbox
        finally:
            await monitors.aclose()


async def test_the_question_alert_fires_reminds_and_resolves(
    watched: tuple[Stack, Monitors, AlertBook, Outbox],
) -> None:
    s, monitors, book, outbox = watched
    clock = s.clock
    issue = await s.service.file_issue(title="Launch", assignee="ali-ceo", actor="o")
    await s.scheduler.drain()
    (live,) = await s.service.recent_runs("ali-ceo")
    ceo = await s.service.agent("ali-ceo")
    q = await s.service.ask(ceo, issue.id, "Deploy to prod?", approval=True, run_id=live.id)
    await s.service.finish_run(live.id, "ali-ceo", RunOutcome.WAITING)
    await monitors.settle()
    [alert] = await book.firing()
    assert (alert.kind, [m.subject for m in alert.members]) == (
        AlertKind.QUESTION,
        [f"question:{q.id}"],
    )

    def rows(kind: OutboxKind) -> list[tuple[str, object]]:
        return [(r.chat, r.payload.get("seq")) for r in sent if r.kind is kind]

    clock.advance(31)  # group_wait
    assert await book.flush() == {"new": 1}
    sent = await outbox.rows()
    # Owners by DM, and the company's chat: the existing routing.
    assert sorted(rows(OutboxKind.ALERT)) == [("-1001", 1), ("1001", 1)]
    await deliver(outbox)

    # The monitor pass keeps it while the question is open, and the reminder comes on time.
    clock.advance(3 * 3600)
    await monitors.run()
    assert await book.flush() == {}
    clock.advance(3600)
    await monitors.run()
    assert (await book.get(alert.id)).state is AlertState.FIRING
    sent = await outbox.rows()
    assert sorted(rows(OutboxKind.ALERT)) == [("-1001", 1), ("-1001", 2), ("1001", 1), ("1001", 2)]
    await deliver(outbox)

    await s.service.answer(q.id, "tg:1001", choice=0, name="Olga")
    await monitors.settle()
    resolved = await book.get(alert.id)
    assert resolved.state is AlertState.RESOLVED
    sent = await outbox.rows()
    assert {r.chat for r in sent if r.kind is OutboxKind.ALERT_EDIT} == {"1001", "-1001"}
    await monitors.run()  # a later pass does not raise it again
    assert await book.firing() == []


async def test_a_cancelled_question_resolves_its_alert(
    watched: tuple[Stack, Monitors, AlertBook, Outbox],
) -> None:
    s, monitors, book, _ = watched
    issue = await s.service.file_issue(title="Launch", assignee="ali-ceo", actor="o")
    await s.scheduler.drain()
    ceo = await s.service.agent("ali-ceo")
    await s.service.ask(ceo, issue.id, "Which day?", choices=["Mon", "Tue"])
    await monitors.settle()
    assert [a.kind for a in await book.firing()] == [AlertKind.QUESTION]
    await s.service.move(issue.id, issue.status.CANCELLED, "tg:1001")
    await monitors.settle()
    assert await book.firing() == []


async def test_a_run_waiting_in_its_turn_is_not_called_stuck(
    watched: tuple[Stack, Monitors, AlertBook, Outbox],
) -> None:
    """An agent that asks and waits for the answer inside its run (the CLI's --wait) makes
    no progress reports meanwhile: no stuck or silent alert."""
    s, monitors, book, _ = watched
    issue = await s.service.file_issue(title="Launch", assignee="ali-ceo", actor="o")
    await s.scheduler.drain()
    (live,) = await s.service.recent_runs("ali-ceo")
    ceo = await s.service.agent("ali-ceo")
    await s.service.ask(ceo, issue.id, "Ready?", run_id=live.id)
    s.clock.advance(35 * 60)  # past stuck_after (30m without progress) and the 30m deadline
    found = await monitors.run()
    assert [f.kind for f in found] == [AlertKind.QUESTION]
    assert [a.kind for a in await book.firing()] == [AlertKind.QUESTION]
