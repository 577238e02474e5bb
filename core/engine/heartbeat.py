"""One agent's heartbeat: decide, in one transaction, whether it has work, and open its run.

A heartbeat never calls a runtime itself. It checks the agent's status and token, reads the inbox
from the store, and either records a skipped heartbeat (no work: zero LLM calls, counted as saved)
or opens a run and hands it back for dispatch. An empty inbox first promotes the agent's top
backlog item (core.queues.backlog), which this same beat then dispatches. Outside the agent's
active hours (core.queues.hours) only critical work is dispatched; other work waits (outcome
`off_hours`) and the next beat is moved up to when the hours begin.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.alerting.monitors import note_beat
from core.auth.agent_auth import AgentAuth
from core.clock import Clock
from core.errors import TokenInvalid
from core.events import Event
from core.models import Agent, AgentStatus, HeartbeatOutcome, Issue, Priority, Run
from core.queues.backlog import has_promotable, promote_for
from core.queues.hours import HoursBook
from core.service import FleetService
from core.store import agents as agent_store, heartbeats, issues as issue_store
from core.store.conn import Conn

# Statuses a heartbeat skips without looking at the inbox, with the outcome it records.
_SKIPPED = {
    AgentStatus.PAUSED: HeartbeatOutcome.PAUSED,
    AgentStatus.ERROR: HeartbeatOutcome.ERROR,
    AgentStatus.RUNNING: HeartbeatOutcome.BUSY,
}


@dataclass(frozen=True, slots=True)
class Beat:
    agent: Agent
    outcome: HeartbeatOutcome
    run: Run | None = None
    issue: Issue | None = None


class Heartbeat:
    def __init__(self, service: FleetService, auth: AgentAuth | None, clock: Clock) -> None:
        self.service = service
        self.db = service.db
        self.auth = auth
        self.clock = clock
        self.hours = HoursBook(service.config)
        self.promote = service.config.defaults.backlog_promote

    async def has_work(self, agent_id: str) -> bool:
        """Could a beat now start a run (a workable issue, or a backlog item to promote)?"""
        reader = self.db.reader
        if await issue_store.has_workable(reader, agent_id, self.clock.now()):
            return True
        return self.promote > 0 and await has_promotable(reader, agent_id)

    async def due(self, now: float, limit: int = 1000) -> list[str]:
        """Agents whose heartbeat is due, most overdue first (an index range scan)."""
        return await agent_store.due(self.db.reader, now, limit)

    async def next_due_at(self) -> float | None:
        return await agent_store.next_due_at(self.db.reader)

    async def beat(
        self, agent_id: str, *, forced: bool = False, prefer: str | None = None
    ) -> Beat | None:
        """Run the heartbeat if it is due (or `forced`); None if there was nothing to do.
        `prefer` names the issue to work on if it is workable (a wake for an answer or a
        comment on it); otherwise the oldest workable issue is."""
        now = self.clock.now()
        agent = await self.service.maybe_agent(agent_id)
        if agent is None or (not forced and agent.next_heartbeat_at > now):
            return None
        problem: TokenInvalid | None = None
        if self.auth is not None and agent.status in (
            AgentStatus.IDLE,
            AgentStatus.UNAUTHENTICATED,
        ):
            problem = self.auth.check_file(agent)
        events: list[Event] = []
        run = issue = None
        async with self.db.write() as conn:
            current = await agent_store.get(conn, agent_id)
            if current is None:
                return None
            agent = current
            outcome = _SKIPPED.get(agent.status)
            if outcome is None and problem is not None:
                changed = await agent_store.set_status(
                    conn, agent, AgentStatus.UNAUTHENTICATED, now, problem.message, problem.code
                )
                events.extend([changed] if changed else [])
                outcome = HeartbeatOutcome.UNAUTHENTICATED
            elif outcome is None:
                if agent.status is AgentStatus.UNAUTHENTICATED:
                    # The token verifies again: back to work with no manual reset.
                    changed = await agent_store.set_status(conn, agent, AgentStatus.IDLE, now)
                    events.extend([changed] if changed else [])
                active = self.hours.active(agent.id, now)
                issue = await self._pick(conn, agent, prefer, active, now)
                if issue is not None:
                    run = await self.service.runs.open(conn, agent, issue, now)
                if run is None:
                    outcome = HeartbeatOutcome.NO_WORK
                    if not active and await issue_store.has_workable(conn, agent.id, now):
                        outcome = HeartbeatOutcome.OFF_HOURS
                else:
                    outcome = HeartbeatOutcome.DISPATCHED
                    idle = await agent_store.get(conn, agent.id)
                    assert idle is not None
                    changed = await agent_store.set_status(conn, idle, AgentStatus.RUNNING, now)
                    events.extend([changed] if changed else [])
            next_beat = now + agent.heartbeat_seconds
            if outcome is HeartbeatOutcome.OFF_HOURS:  # waiting work starts when hours begin
                next_beat = min(next_beat, self.hours.next_start(agent.id, now))
            await agent_store.beat_at(conn, agent.id, next_beat)
            await heartbeats.count(conn, agent.id, now, outcome.value)
            await note_beat(conn, agent.company_id, outcome, now)  # the queue_empty monitor
        self.service.events.publish(*events)
        return Beat(agent, outcome, run, issue if run is not None else None)

    async def _pick(
        self, conn: Conn, agent: Agent, prefer: str | None, active: bool, now: float
    ) -> Issue | None:
        """The issue to work: `prefer` if workable, else the inbox's first; outside active
        hours critical ones only; an empty inbox promotes the backlog's first first."""
        issue = None
        if prefer is not None:
            issue = await issue_store.workable_one(conn, prefer, agent.id, now)
            if issue is not None and not active and issue.priority is not Priority.CRITICAL:
                issue = None
        if issue is None:
            issue = await issue_store.next_workable(conn, agent.id, now, urgent_only=not active)
        if issue is not None or not active or self.promote == 0:
            return issue
        if not await issue_store.has_inbox(conn, agent.id) and await promote_for(
            conn, agent, self.promote, now
        ):
            issue = await issue_store.next_workable(conn, agent.id, now)
        return issue
