"""The `simulated` runtime: a built-in agent for the demo and benchmarks.

After `latency` it rolls one seeded die and, by the configured rates, hangs, fails with a 401,
fails outright, finishes saying it is blocked, or works: reports usage and finishes the run
through the same RunReporter calls a real agent makes over the API. One die with stacked bands
(hang, then 401, then failure, then blocked) keeps each rate exactly its probability whenever the
rates add up to at most 1.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

from core.config import SimulatedRuntime
from core.errors import AgentBadStatus, AgentFailure, FleetbotError
from core.models import RunOutcome
from core.runtimes.base import Dispatch, DispatchResult, RunReporter, Runtime

Sleep = Callable[[float], Awaitable[object]]


class SimulatedAgentRuntime(Runtime):
    """An in-process agent whose behaviour is set by rates and a seed."""

    kind = "simulated"

    def __init__(
        self,
        config: SimulatedRuntime,
        reporter: RunReporter,
        *,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._config = config
        self._reporter = reporter
        self._rng = rng if rng is not None else random.Random(config.seed)
        self._sleep = sleep

    async def dispatch(self, job: Dispatch) -> DispatchResult:
        """Act out one run: hang, fail, be refused, or do the work and report it."""
        cfg = self._config
        await self._sleep(cfg.latency)
        roll = self._rng.random()
        if roll < cfg.hang_rate:
            # A fresh future, not the injected sleep: a no-op sleep would turn this into a spin.
            await asyncio.get_running_loop().create_future()
        roll -= cfg.hang_rate
        if roll < cfg.unauthorized_rate:
            raise AgentBadStatus(
                f"the agent's API calls were refused with 401 Unauthorized on run {job.run_id} "
                f"(simulated, unauthorized_rate={cfg.unauthorized_rate:g}); for a real agent "
                "this means its token is expired, revoked or signed with a retired key.",
                code="agent_unauthorized",
            )
        roll -= cfg.unauthorized_rate
        if roll < cfg.failure_rate:
            raise AgentFailure(
                f"simulated failure on run {job.run_id} (failure_rate={cfg.failure_rate:g}); "
                "this is injected by the simulated runtime, not a real fault."
            )
        roll -= cfg.failure_rate
        issue_id = job.issue.get("id", "?")
        outcome = RunOutcome.DONE
        summary = f"Worked on {issue_id}: {job.issue.get('title', '')}"
        if roll < cfg.blocked_rate:
            outcome = RunOutcome.BLOCKED
            summary = f"Blocked on {issue_id}: needs a decision from a human before I go on"
        turns = cfg.turns
        try:
            await self._reporter.report_usage(
                job.run_id,
                job.agent_id,
                turns=turns,
                input_tokens=sum(self._rng.randint(800, 1600) for _ in range(turns)),
                output_tokens=sum(self._rng.randint(100, 400) for _ in range(turns)),
                cost=turns * cfg.cost_per_turn,
                model=job.model,
            )
            await self._reporter.finish_run(job.run_id, job.agent_id, outcome, summary=summary)
        except FleetbotError:
            # The run ended meanwhile (cancelled, reaped, over its cap); a real agent's calls
            # would be refused the same way and it would simply stop.
            return DispatchResult(finished=True)
        return DispatchResult(finished=True, outcome=outcome, summary=summary)
