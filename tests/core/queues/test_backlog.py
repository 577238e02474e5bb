"""Priorities and the backlog on a real store: inboxes by priority then age, a backlog no
heartbeat works, and promotion in the beat that finds an inbox empty (no run of its own)."""

from __future__ import annotations

from pathlib import Path

import pytest
from queue_stack import audit_rows, queue_config
from stack_helpers import Stack, heartbeat_counts, open_stack

from core.clock import ManualClock
from core.errors import InvalidInput
from core.models import HeartbeatOutcome, IssueStatus, Priority, RunOutcome
from core.queues.facade import parse_priority

P = Priority


@pytest.mark.parametrize(
    ("word", "expected"),
    [("critical", P.CRITICAL), ("!h", P.HIGH), ("Medium", P.MEDIUM), (" l ", P.LOW)],
)
def test_parse_priority(word: str, expected: Priority) -> None:
    assert parse_priority(word) is expected


def test_parse_priority_names_the_four() -> None:
    with pytest.raises(InvalidInput, match="'urgent' is not a priority; use critical, high"):
        parse_priority("urgent")


async def _file(s: Stack, *specs: tuple[str, Priority], backlog: bool = False) -> list[str]:
    """File one issue per (title, priority) to ali-cto, a second apart (so ages differ)."""
    ids = []
    for title, priority in specs:
        s.clock.advance(1)
        issue = await s.service.file_issue(
            title=title, assignee="ali-cto", actor="alice", priority=priority, backlog=backlog
        )
        ids.append(issue.id)
    return ids


MIXED = [("a", P.LOW), ("b", P.HIGH), ("c", P.MEDIUM), ("d", P.HIGH), ("e", P.CRITICAL)]


async def test_inbox_by_priority_then_age_and_set_priority(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with open_stack(tmp_path, clock, wake_on_assign=False) as s:
        await _file(s, *MIXED)
        assert [i.title for i in await s.service.inbox("ali-cto")] == ["e", "b", "d", "c", "a"]
        updated = await s.service.set_priority("ALI-1", P.CRITICAL, "alice")
        assert updated.priority is P.CRITICAL
        # a is as critical as e and older: first now.
        assert [i.title for i in await s.service.inbox("ali-cto")] == ["a", "e", "b", "d", "c"]
        [row] = [r for r in await s.service.audit_log() if r["action"] == "issue.priority"]
        assert (row["actor"], row["target"], row["detail"]) == (
            "alice",
            "ALI-1",
            '{"from": "low", "to": "critical"}',
        )
        beat = await s.scheduler.heartbeat.beat("ali-cto", forced=True)
        assert beat is not None and beat.issue is not None and beat.issue.title == "a"
        await s.service.move("ALI-2", IssueStatus.CANCELLED, "alice")
        with pytest.raises(InvalidInput, match="ALI-2 is cancelled; its priority no longer"):
            await s.service.set_priority("ALI-2", P.HIGH, "alice")


async def test_backlog_is_never_worked_by_a_heartbeat(tmp_path: Path, clock: ManualClock) -> None:
    config = queue_config(tmp_path, defaults={"backlog_promote": 0})
    async with open_stack(tmp_path, clock, config=config) as s:
        ids = await _file(s, ("later", P.CRITICAL), ("much later", P.LOW), backlog=True)
        for _ in range(3):
            clock.advance(4 * 3600)
            await s.scheduler.tick()
            await s.scheduler.drain()
        assert s.runtimes.calls == []
        assert await heartbeat_counts(s.service, "ali-cto") == {"no_work": 3}
        assert [(await s.service.issue(i)).status for i in ids] == [IssueStatus.BACKLOG] * 2
        assert await s.service.inbox("ali-cto") == []
        assert [i.title for i in await s.service.backlog("aliens")] == ["later", "much later"]


@pytest.mark.parametrize("promote", [1, 2])
async def test_an_empty_inbox_promotes_the_top_of_the_backlog(
    tmp_path: Path, clock: ManualClock, promote: int
) -> None:
    config = queue_config(tmp_path, defaults={"backlog_promote": promote})
    async with open_stack(tmp_path, clock, config=config) as s:
        [now] = await _file(s, ("now", P.LOW))  # in the inbox: the backlog waits behind it
        backlog = await _file(s, *MIXED[:4], backlog=True)  # a low, b high, c medium, d high
        await s.service.file_issue(title="busy", assignee="ali-qa-1", actor="alice")
        await s.service.file_issue(title="qa's", assignee="ali-qa-1", actor="alice", backlog=True)
        await s.scheduler.drain()
        assert [j.issue["id"] for j in s.runtimes.calls if j.agent_id == "ali-cto"] == [now]
        assert [(await s.service.issue(i)).status for i in backlog] == [IssueStatus.BACKLOG] * 4
        worked = []
        for _ in range(4):  # each run's end empties the inbox; the wake that follows promotes
            [run] = [r for r in await s.service.recent_runs("ali-cto") if r.ended_at is None]
            await s.service.finish_run(run.id, "ali-cto", RunOutcome.DONE)
            await s.scheduler.drain()
            worked.append(s.runtimes.calls[-1].issue["id"])
        assert worked == [backlog[i] for i in (1, 3, 2, 0)]  # b, d (high, by age), c, a
        promoted = [t for _, a, t in await audit_rows(s.service, "issue.promote")]
        assert promoted == worked  # one issue.promote row each, in promotion order
        assert {a for a, _, _ in await audit_rows(s.service, "issue.promote")} == {"fleetbot"}
        # Promotion itself costs nothing: one run per issue worked, none to find the work.
        assert s.runtimes.calls_for(agent_id="ali-cto") == 5
        assert await s.db.scalar("SELECT count(*) FROM runs WHERE agent_id = 'ali-cto'") == 5
        assert (await heartbeat_counts(s.service, "ali-cto")) == {"dispatched": 5}
        qa = await s.service.backlog("aliens")
        assert [(i.title, i.status) for i in qa] == [("qa's", IssueStatus.BACKLOG)]


@pytest.mark.parametrize("promote", [1, 2])
async def test_a_beat_promotes_backlog_promote_items(
    tmp_path: Path, clock: ManualClock, promote: int
) -> None:
    config = queue_config(tmp_path, defaults={"backlog_promote": promote})
    async with open_stack(tmp_path, clock, config=config, wake_on_assign=False) as s:
        ids = await _file(s, *MIXED[:3], backlog=True)  # a low, b high, c medium
        beat = await s.scheduler.heartbeat.beat("ali-cto", forced=True)
        assert beat is not None and beat.outcome is HeartbeatOutcome.DISPATCHED
        assert beat.issue is not None and beat.issue.id == ids[1]  # b: promoted and dispatched
        statuses = [(await s.service.issue(i)).status for i in ids]
        expected = {
            1: [IssueStatus.BACKLOG, IssueStatus.IN_PROGRESS, IssueStatus.BACKLOG],
            2: [IssueStatus.BACKLOG, IssueStatus.IN_PROGRESS, IssueStatus.TODO],
        }
        assert statuses == expected[promote]
        assert (await s.service.issue(ids[1])).reason == "promoted from the backlog"
        assert len(await audit_rows(s.service, "issue.promote")) == promote


async def test_moving_backlog_to_todo_wakes_the_assignee(stack: Stack) -> None:
    s = stack
    issue = await s.service.file_issue(
        title="later", assignee="ali-qa-1", actor="alice", backlog=True
    )
    await s.service.file_issue(title="busy", assignee="ali-qa-1", actor="alice")
    await s.scheduler.drain()
    assert [j.issue["title"] for j in s.runtimes.calls] == ["busy"]
    [run] = await s.service.recent_runs("ali-qa-1")
    await s.service.move(issue.id, IssueStatus.TODO, "alice")  # while qa-1 is busy: waits
    await s.scheduler.drain()
    assert (await s.service.issue(issue.id)).status is IssueStatus.TODO
    assert ("alice", "issue.move", issue.id) in await audit_rows(s.service, "issue.move")
    assert await audit_rows(s.service, "issue.promote") == []  # the owner moved it, not fleetbot
    await s.service.finish_run(run.id, "ali-qa-1", RunOutcome.DONE)
    await s.scheduler.drain()
    assert [j.issue["title"] for j in s.runtimes.calls] == ["busy", "later"]


async def test_moving_backlog_to_todo_wakes_an_idle_assignee(
    tmp_path: Path, clock: ManualClock
) -> None:
    config = queue_config(tmp_path, defaults={"backlog_promote": 0})
    async with open_stack(tmp_path, clock, config=config) as s:
        issue = await s.service.file_issue(title="x", assignee="ali-cmo", actor="al", backlog=True)
        await s.scheduler.drain()
        assert s.runtimes.calls == []  # filed to the backlog, no promotion: nobody woken
        await s.service.move(issue.id, IssueStatus.TODO, "alice")
        await s.scheduler.drain()
        assert [(j.agent_id, j.issue["id"]) for j in s.runtimes.calls] == [("ali-cmo", issue.id)]


async def test_a_backlog_item_for_an_idle_agent_is_worked_at_once(stack: Stack) -> None:
    # An agent with nothing to do must not sit on new backlog work until its next beat
    # (bench/queues.py counted 270 such agent-hours a month before this wake existed).
    s = stack
    issue = await s.service.file_issue(title="x", assignee="ali-cmo", actor="al", backlog=True)
    await s.scheduler.drain()
    assert [(j.agent_id, j.issue["id"]) for j in s.runtimes.calls] == [("ali-cmo", issue.id)]
    assert [t for _, _, t in await audit_rows(s.service, "issue.promote")] == [issue.id]
    # A busy agent's backlog item waits: it is not woken for it.
    busy = await s.service.file_issue(title="now", assignee="ali-qa-1", actor="al")
    later = await s.service.file_issue(title="later", assignee="ali-qa-1", actor="al", backlog=True)
    await s.scheduler.drain()
    assert [j.issue["id"] for j in s.runtimes.calls if j.agent_id == "ali-qa-1"] == [busy.id]
    assert (await s.service.issue(later.id)).status is IssueStatus.BACKLOG
