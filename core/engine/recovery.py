"""Recovery that never re-runs finished work, escalation of blocked issues, auto-reset.

Three lines of defence against the field notes' loop (84 re-runs of closed issues):
1. Every re-dispatch is a compare-and-set on the issue being workable (core.store.issues) in
   the very transaction that opens the run (core.runs.RunBook.open); recovery's own writes are
   compare-and-sets too, never decisions taken on an earlier read.
2. Each issue has an attempt budget (core.engine.retry); a spent budget blocks it, and
   `escalate` files the blocker with the nearest working manager up the reports_to chain (the
   owners always get the issue_blocked alert).
3. The loop guard (core.runs.guard_dispatch): an issue dispatched `recovery_loop_dispatches`
   times within `recovery_loop_window` is blocked instead of dispatched again, and recorded so
   the monitors raise recovery_loop.

Auto-reset (alerts.auto_reset_after, off by default) retries an agent stuck in error after a
delay that doubles with each attempt up to alerts.auto_reset_max; a successful run starts the
count again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from core.clock import Clock
from core.config import Config
from core.errors import FleetbotError
from core.models import Agent, AgentStatus, Issue, IssueStatus
from core.store import issues as issue_store, recovery as recovery_store
from core.store.db import Database

log = logging.getLogger(__name__)

ESCALATION_ACTOR = "fleetbot:escalation"
AUTO_RESET_ACTOR = "fleetbot:auto-reset"


class Facade(Protocol):
    """What recovery asks of the service facade (core.service.FleetService is one)."""

    db: Database
    clock: Clock

    async def issue(self, issue_id: str) -> Issue: ...

    async def agents(self, company_id: str | None = None) -> list[Agent]: ...

    async def file_issue(
        self,
        *,
        title: str,
        assignee: str,
        actor: str,
        company: str | None = None,
        body: str = "",
        model: str | None = None,
    ) -> Issue: ...

    async def wake(self, agent_id: str, actor: str, *, audited: bool = True) -> Agent: ...

    async def reset(self, agent_id: str, actor: str) -> Agent: ...


def reports_chain(agent_id: str | None, agents: Mapping[str, Agent]) -> list[Agent]:
    """The managers above `agent_id`, nearest first; a reports_to cycle ends the chain."""
    chain: list[Agent] = []
    seen = {agent_id}
    current = agents.get(agent_id) if agent_id else None
    while current is not None and current.reports_to and current.reports_to not in seen:
        seen.add(current.reports_to)
        current = agents.get(current.reports_to)
        if current is not None:
            chain.append(current)
    return chain


def auto_reset_delay(attempts: int, after: float, cap: float) -> float:
    """Wait before auto-reset number `attempts + 1`: `after`, doubled per attempt, capped."""
    return float(min(cap, after * (2 ** min(attempts, 30))))


@dataclass(frozen=True, slots=True)
class SweepReport:
    leases_cleared: int
    woken: tuple[str, ...]  # issue ids whose agent was woken for a retry
    reset: tuple[str, ...]  # agents auto-reset


@dataclass(frozen=True, slots=True)
class RetryCandidate:
    issue_id: str
    agent_id: str
    not_before: float


class Recovery:
    def __init__(self, service: Facade, config: Config) -> None:
        self.service = service
        self.db = service.db
        self.clock = service.clock
        self.config = config

    async def sweep(self) -> SweepReport:
        """Clear leases no live run holds, wake agents whose retry backoff is over, and
        auto-reset agents whose turn has come."""
        now = self.clock.now()
        cleared = await self.clear_stale_leases(now)
        woken = await self.requeue(await self.retry_candidates(now))
        reset = await self.auto_reset_due()
        return SweepReport(cleared, tuple(woken), tuple(reset))

    async def clear_stale_leases(self, now: float) -> int:
        """Leases past their time whose run is not live. Only the lease is dropped: a done or
        cancelled issue stays done or cancelled."""
        async with self.db.write() as conn:
            return await issue_store.clear_stale_leases(conn, now)

    async def retry_candidates(self, now: float) -> list[RetryCandidate]:
        """Open issues whose backoff after a failed run is over (a read; `requeue` re-checks)."""
        found = await issue_store.retry_candidates(self.db.reader, now)
        return [RetryCandidate(*r) for r in found]

    async def requeue(self, candidates: list[RetryCandidate]) -> list[str]:
        """Wake each candidate's agent, if the issue is *still* open, unleased and due: the
        check and the write are one compare-and-set, so a status change after the read wins."""
        now = self.clock.now()
        woken: list[str] = []
        for c in candidates:
            async with self.db.write() as conn:
                due = await issue_store.end_backoff(conn, c.issue_id, c.agent_id, c.not_before, now)
            if due:
                woken.append(c.issue_id)
                await self.service.wake(c.agent_id, "fleetbot:recovery", audited=False)
        return woken

    # -- escalation -----------------------------------------------------------------------------

    async def escalate(self, issue_id: str) -> str | None:
        """File a blocked issue with the nearest working manager above its assignee, once.
        Returns the escalation issue id, or None (already escalated, not blocked, or nobody
        above: then the owners' issue_blocked alert is the escalation)."""
        issue = await self.service.issue(issue_id)
        if issue.status is not IssueStatus.BLOCKED:
            return None
        agents = {a.id: a for a in await self.service.agents()}
        chain = reports_chain(issue.assignee_id, agents)
        target = next(
            (a for a in chain if a.status in (AgentStatus.IDLE, AgentStatus.RUNNING)), None
        )
        now = self.clock.now()
        async with self.db.write() as conn:
            first = await recovery_store.escalate(
                conn, issue.id, [a.id for a in chain], target.id if target else "owner", now
            )
        if not first:
            return None
        if target is None:
            return None
        filed = await self.service.file_issue(
            title=f"Blocked: {issue.id} {issue.title}"[:200],
            assignee=target.id,
            actor=ESCALATION_ACTOR,
            company=issue.company_id,
            body=_escalation_body(issue, chain, agents),
        )
        async with self.db.write() as conn:
            await recovery_store.escalated_as(conn, issue.id, filed.id)
        log.info("%s is blocked; escalated to %s as %s", issue.id, target.id, filed.id)
        return filed.id

    # -- auto-reset -----------------------------------------------------------------------------

    async def note_error(self, agent_id: str) -> float | None:
        """An agent entered error: when will it be auto-reset (None: auto-reset is off)."""
        after = self.config.alerts.auto_reset_after
        if not after:
            return None
        now = self.clock.now()
        async with self.db.write() as conn:
            attempts = await recovery_store.auto_reset_attempts(conn, agent_id)
            at = now + auto_reset_delay(attempts, after, self.config.alerts.auto_reset_max)
            await recovery_store.schedule_auto_reset(conn, agent_id, attempts, at)
        return at

    async def note_success(self, agent_id: str) -> None:
        """A run succeeded: the next error starts the backoff from the beginning."""
        async with self.db.write() as conn:
            await recovery_store.forget_auto_resets(conn, agent_id)

    async def auto_reset_due(self) -> list[str]:
        if not self.config.alerts.auto_reset_after:
            return []
        now = self.clock.now()
        done = []
        for agent_id in await recovery_store.auto_resets_due(self.db.reader, now):
            async with self.db.write() as conn:
                taken = await recovery_store.take_auto_reset(conn, agent_id, now)
            if not taken:
                continue
            try:
                await self.service.reset(agent_id, AUTO_RESET_ACTOR)
            except FleetbotError as exc:  # e.g. its token fails now: the alert says so
                log.warning("auto-reset of %s refused: %s", agent_id, exc.message)
                continue
            done.append(agent_id)
        return done

    async def schedule(self) -> dict[str, tuple[int, float | None]]:
        """agent id -> (auto-resets so far, next one at), for the alerts' text."""
        return await recovery_store.auto_reset_schedule(self.db.reader)


def _escalation_body(issue: Issue, chain: list[Agent], agents: Mapping[str, Agent]) -> str:
    who = agents.get(issue.assignee_id or "")
    assignee = f"{who.name} ({who.role})" if who else (issue.assignee_id or "nobody")
    path = " → ".join([assignee, *(f"{a.name} ({a.role})" for a in chain), "owner"])
    return (
        f"{issue.id} “{issue.title}” is blocked: {issue.reason or 'no reason given'}.\n"
        f"Assigned to {assignee}. Escalation path: {path}.\n"
        f"Decide: reassign it (/assign {issue.id} …), split it into smaller issues, or cancel "
        "it. Moving it back to todo gives it a fresh attempt budget."
    )
