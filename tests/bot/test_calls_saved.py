"""/status and /costs count "calls saved" by one definition: every heartbeat that woke no model
(no work, or a paused, erroring, unauthenticated or busy agent skipped)."""

from __future__ import annotations

import re

from stack_helpers import Stack

from bot.views import render
from core.clock import ManualClock
from core.reports.board import fleet_board
from core.reports.costs import CostBook


async def test_status_and_costs_agree_on_calls_saved(stack: Stack, clock: ManualClock) -> None:
    for _ in range(3):
        await stack.scheduler.heartbeat.beat("ali-cto", forced=True)  # no work
    await stack.service.pause("mat-ceo", "t")
    for _ in range(2):
        await stack.scheduler.heartbeat.beat("mat-ceo", forced=True)  # paused: skipped

    boards = {b.company.id: b for b in await fleet_board(stack.db, clock.now())}
    month = await CostBook(stack.db, clock).month()
    for company_id in ("aliens", "matrix"):
        assert boards[company_id].saved_calls == month.companies[company_id].saved_calls
    assert (boards["aliens"].saved_calls, boards["matrix"].saved_calls) == (3, 2)

    # And as a user reads them: the same numbers in both answers.
    companies = await stack.service.companies()
    status = render.status_board(list(boards.values()), {}, clock.now())
    costs = render.costs(month, companies, await stack.service.agents(), {})
    in_status = [int(n) for n in re.findall(r"(\d+) saved by skipped heartbeats", status)]
    in_costs = [int(n) for n in re.findall(r"(\d+) calls saved by skipped heartbeats", costs)]
    assert sorted(in_status) == sorted(in_costs) == [2, 3]
