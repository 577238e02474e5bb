"""The one "workable" rule, as a table: an issue's status, lease and backoff in; whether an agent
may start on it now out, asked the way each caller asks (pick, check, dispatch, loop guard)."""

from __future__ import annotations

import pytest

from core.clock import ManualClock
from core.models import IssueStatus
from core.service import FleetService
from core.store import issues

NOW = ManualClock().now()
BEFORE, LATER = NOW - 60, NOW + 60


@pytest.mark.parametrize(
    "status,lease_until,not_before,workable",
    [
        (IssueStatus.TODO, None, None, True),
        (IssueStatus.IN_PROGRESS, None, None, True),
        (IssueStatus.IN_PROGRESS, BEFORE, None, True),  # its run's lease ran out
        (IssueStatus.IN_PROGRESS, LATER, None, False),  # a live run holds it
        (IssueStatus.TODO, None, BEFORE, True),  # the backoff is over
        (IssueStatus.TODO, None, NOW, True),
        (IssueStatus.TODO, None, LATER, False),  # still backing off
        (IssueStatus.TODO, BEFORE, LATER, False),
        (IssueStatus.IN_REVIEW, None, None, False),  # a person's turn
        (IssueStatus.BLOCKED, None, None, False),
        (IssueStatus.DONE, BEFORE, BEFORE, False),  # finished work, whatever its lease says
        (IssueStatus.CANCELLED, None, None, False),
    ],
)
async def test_workable(
    service: FleetService,
    status: IssueStatus,
    lease_until: float | None,
    not_before: float | None,
    workable: bool,
) -> None:
    issue = await service.file_issue(title="x", assignee="ali-ceo", actor="t")

    async def put() -> None:
        async with service.db.write() as conn:
            await conn.execute(
                "UPDATE issues SET status = ?, lease_run_id = ?, lease_until = ?, "
                "not_before = ? WHERE id = ?",
                (status.value, lease_until and "a-run", lease_until, not_before, issue.id),
            )

    await put()
    reader = service.db.reader
    picked = await issues.next_workable(reader, "ali-ceo", NOW)
    assert (picked is not None and picked.id == issue.id) is workable
    assert await issues.has_workable(reader, "ali-ceo", NOW) is workable
    async with service.db.write() as conn:
        assert await issues.lease(conn, issue.id, "b-run", LATER, NOW) is workable
    await put()
    async with service.db.write() as conn:
        assert await issues.block_loop(conn, issue.id, "loop", NOW) is workable
    # The inbox shows todo and in_progress issues whatever their lease or backoff.
    await put()
    shown = [i.id for i in await service.inbox("ali-ceo")]
    assert shown == ([issue.id] if status in (IssueStatus.TODO, IssueStatus.IN_PROGRESS) else [])
