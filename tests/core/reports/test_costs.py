"""Monthly cost rollups: per agent and company, tokens even at $0, heartbeats saved."""

from __future__ import annotations

from stack_helpers import Stack

from core.clock import ManualClock
from core.models import HeartbeatOutcome, RunOutcome
from core.reports.costs import CostBook


async def run_with_usage(stack: Stack, agent_id: str, tokens: int, cost: float) -> None:
    await stack.service.file_issue(title="x", assignee=agent_id, actor="t")
    await stack.scheduler.drain()
    [live] = [r for r in await stack.service.recent_runs(agent_id) if r.ended_at is None]
    await stack.service.report_usage(
        live.id, agent_id, turns=1, input_tokens=tokens, output_tokens=tokens // 10, cost=cost
    )
    await stack.service.finish_run(live.id, agent_id, RunOutcome.DONE)


async def test_month_rolls_up_per_agent_and_company(stack: Stack, clock: ManualClock) -> None:
    costs = CostBook(stack.db, clock)
    await run_with_usage(stack, "ali-ceo", 1000, 0.0)  # a free model: tokens still count
    await run_with_usage(stack, "ali-ceo", 2000, 0.25)
    await run_with_usage(stack, "mat-cto", 500, 1.5)
    for _ in range(3):
        await stack.scheduler.heartbeat.beat("ali-cto", forced=True)  # no work: saved
    await stack.service.pause("mat-ceo", "t")
    await stack.scheduler.heartbeat.beat("mat-ceo", forced=True)  # paused: saved too

    month = await costs.month()
    ceo = month.agents["ali-ceo"]
    assert (ceo.runs, ceo.input_tokens, ceo.output_tokens, ceo.cost) == (2, 3000, 300, 0.25)
    assert ceo.tokens == 3300 and ceo.llm_calls == 2 and ceo.saved_calls == 0
    assert month.agents["ali-cto"].saved_by == {HeartbeatOutcome.NO_WORK.value: 3}
    aliens, matrix = month.companies["aliens"], month.companies["matrix"]
    assert (aliens.runs, aliens.cost, aliens.saved_calls) == (2, 0.25, 3)
    assert (matrix.runs, matrix.cost, matrix.saved_calls) == (1, 1.5, 1)
    assert month.total.runs == 3 and month.total.saved_calls == 4
    assert month.spend()["company:matrix"] == 1.5 and month.spend()["agent:ali-ceo"] == 0.25
    assert month.month == "2026-01"

    only = await costs.month("matrix")
    assert set(only.agents) == {"mat-cto", "mat-ceo"} and set(only.companies) == {"matrix"}
    clock.advance(31 * 86400)  # February starts from zero
    assert (await costs.month()).total.runs == 0
    assert (await costs.month(at=clock.now() - 31 * 86400)).total.runs == 3
