"""Heartbeat ROI: what each agent's calls bought this month, and the flags with their fixes."""

from __future__ import annotations

from pathlib import Path

from stack_helpers import Stack, config_data, open_stack

from bot.views.render import company_digest  # the digest's words for what the core found
from core.clock import ManualClock
from core.config import parse_config
from core.models import PLANNER, IssueStatus, RunOutcome
from core.reports.roi import Roi


async def work(
    stack: Stack, agent_id: str, cost: float, outcome: RunOutcome, actor: str = "t"
) -> None:
    await stack.service.file_issue(title="x", assignee=agent_id, actor=actor)
    await stack.scheduler.drain()
    [live] = [r for r in await stack.service.recent_runs(agent_id) if r.ended_at is None]
    await stack.service.report_usage(
        live.id, agent_id, turns=1, input_tokens=1000, output_tokens=100, cost=cost
    )
    await stack.service.finish_run(live.id, agent_id, outcome)


def by_agent(found: list[Roi]) -> dict[str, Roi]:
    return {r.agent.id: r for r in found}


async def test_roi_counts_and_flags_with_suggestions(tmp_path: Path, clock: ManualClock) -> None:
    data = config_data(tmp_path)
    data["companies"][0]["agents"][1]["model"] = "strong-model"  # ali-cto
    async with open_stack(tmp_path, clock, config=parse_config(data, "test")) as stack:
        for _ in range(4):
            await work(stack, "ali-ceo", 0.10, RunOutcome.DONE)
            await work(stack, "ali-qa-1", 0.15, RunOutcome.DONE)
        # ali-cto: 8 calls for 2 issues closed, at $0.50 a call: churn, and expensive.
        for n in range(8):
            await work(stack, "ali-cto", 0.5, RunOutcome.DONE if n < 2 else RunOutcome.BLOCKED)
        for _ in range(3):
            await work(stack, "ali-qa-2", 0.2, RunOutcome.FAILED)  # spends, all failing
            await work(stack, "ali-cmo", 0.2, RunOutcome.BLOCKED)  # spends, nothing closed
        await work(stack, "mat-ceo", 0.3, RunOutcome.DONE, actor=PLANNER)  # one planning run
        await work(stack, "mat-ceo", 0.1, RunOutcome.DONE)
        for _ in range(3):
            await stack.scheduler.heartbeat.beat("mat-cto", forced=True)  # no work: free

        found = await stack.service.roi()
        rois = by_agent(found)
        assert [r.agent.id for r in found[:3]] == ["ali-cto", "ali-cmo", "ali-qa-2"]
        assert all(not r.flags for r in found[3:])

        ceo = rois["ali-ceo"]
        assert (ceo.usage.runs, ceo.closed, round(ceo.usage.cost, 2)) == (4, 4, 0.4)
        assert ceo.cost_per_closed is not None and round(ceo.cost_per_closed, 2) == 0.1

        cto = rois["ali-cto"]
        assert (cto.work_calls, cto.closed, cto.cost_per_closed) == (8, 2, 2.0)
        churn, pricey = cto.flags
        assert churn.problem == "4 LLM calls per issue closed"
        assert churn.suggestion.startswith("a longer heartbeat interval: `heartbeat: 8h`")
        assert "(now 4h)" in churn.suggestion
        # The other closers' median per issue closed is $0.125 (0.10, 0.15): 16× that.
        assert pricey.problem == (
            "$2.00 per issue closed, 16× the median of the company's other agents ($0.12)"
        )
        assert pricey.suggestion == (
            "a cheaper model: ali-ceo closes issues for $0.10 each on cheap-model"
        )

        [failing] = rois["ali-qa-2"].flags
        assert rois["ali-qa-2"].usage.failed_runs == 3
        assert failing.problem.endswith("no issue closed; 3 of the runs failed")
        assert failing.suggestion.startswith("read why with /agent ali-qa-2")
        [idle] = rois["ali-cmo"].flags
        assert idle.problem == "3 LLM calls and $0.60 this month, no issue closed"
        assert idle.suggestion.startswith("pause it (/pause ali-cmo)")

        mat = rois["mat-ceo"]
        assert (mat.usage.runs, mat.usage.planning_runs, mat.work_calls) == (2, 1, 1)
        assert round(mat.usage.planning_cost, 2) == 0.3 and mat.closed == 2
        assert rois["mat-cto"].usage.saved_calls == 3 and rois["mat-cto"].usage.runs == 0

        only = by_agent(await stack.service.roi("matrix"))
        assert set(only) == {"mat-ceo", "mat-cto"}
        clock.advance(31 * 86400)  # a new month judges afresh
        assert all(not r.flags and r.usage.runs == 0 for r in await stack.service.roi())


async def test_the_digest_lists_promotions_and_flagged_agents(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with open_stack(tmp_path, clock) as stack:
        since = clock.now()
        for _ in range(3):
            await work(stack, "ali-cmo", 0.2, RunOutcome.BLOCKED)  # spends, nothing closed
        parked = await stack.service.file_issue(
            title="later", assignee="ali-qa-2", actor="t", backlog=True
        )
        await stack.scheduler.drain()  # ali-qa-2 is idle: its beat promotes and works it
        assert (await stack.service.issue(parked.id)).status is not IssueStatus.BACKLOG
        aliens, matrix = await stack.service.activity(since)
        assert aliens.promoted == [parked.id] and matrix.promoted == []
        assert [r.agent.id for r in aliens.flagged] == ["ali-cmo"] and matrix.flagged == []
        text = "\n".join(company_digest(aliens, clock.now()))
        assert f"⬆️ Promoted from the backlog: <code>{parked.id}</code>" in text
        assert "💸 <code>ali-cmo</code> 3 LLM calls and $0.60 this month, no issue closed" in text
        assert "→ pause it (/pause ali-cmo)" in text
