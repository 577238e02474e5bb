"""A run's life: opened by a heartbeat, fed by usage reports, ended exactly once.

Every ending goes through `_end`, a compare-and-set on `status = 'running'`: a finish that races a
timeout, a late runtime failure after the agent already finished, or a retry of the same finish
call all leave the first ending in place and change nothing else.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import aiosqlite

from core.clock import Clock
from core.config import Defaults, MonitorsConfig
from core.engine.recovery import guard_dispatch
from core.errors import (
    AgentFailure,
    Conflict,
    IssueNotFound,
    LeaseConflict,
    NotYourRun,
    RunNotActive,
    RunNotFound,
    TurnCapExceeded,
)
from core.events import Event, EventBus, RunEnded, SummaryPosted
from core.models import Agent, AgentStatus, Issue, IssueStatus, Run, RunOutcome, RunStatus
from core.runtimes.base import DispatchResult
from core.store import ops
from core.store.db import Database


@dataclass(frozen=True, slots=True)
class _Ending:
    status: RunStatus
    reason: str
    reason_code: str
    agent_status: AgentStatus  # what a `running` agent becomes
    issue_status: IssueStatus | None  # None: release the lease for a retry


class RunBook:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        events: EventBus,
        defaults: Defaults,
        monitors: MonitorsConfig | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.events = events
        self.defaults = defaults
        self.monitors = monitors  # None: no recovery-loop guard (unit tests of runs alone)

    async def open(
        self, conn: aiosqlite.Connection, agent: Agent, issue: Issue, now: float
    ) -> Run | None:
        """Open a run on `issue` inside the caller's transaction, or None if the issue is no
        longer workable (compare-and-set on status, lease and backoff)."""
        # Last line of defence against re-dispatch loops: too many runs of this issue within
        # the window block it instead (core.engine.recovery).
        if self.monitors is not None and not await guard_dispatch(
            conn, issue.id, now, self.monitors
        ):
            return None
        run_id = uuid.uuid4().hex
        deadline = now + agent.run_timeout_seconds
        model = issue.model or agent.model
        cur = await conn.execute(
            "UPDATE issues SET status = 'in_progress', lease_run_id = ?, lease_until = ?, "
            "attempts = attempts + 1, updated_at = ? "
            "WHERE id = ? AND status IN ('todo', 'in_progress') "
            "AND (lease_run_id IS NULL OR lease_until < ?) "
            "AND (not_before IS NULL OR not_before <= ?)",
            (run_id, deadline, now, issue.id, now, now),
        )
        if cur.rowcount != 1:
            return None
        await conn.execute(
            "INSERT INTO runs (id, agent_id, company_id, issue_id, status, started_at, deadline, "
            "max_turns, model, last_progress_at) VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?, ?)",
            (
                run_id,
                agent.id,
                agent.company_id,
                issue.id,
                now,
                deadline,
                agent.max_turns,
                model,
                now,
            ),
        )
        run = await ops.fetch_run(conn, run_id)
        assert run is not None
        return run

    async def get(self, run_id: str) -> Run:
        async with self.db.write() as conn:  # the writer sees its own latest state
            run = await ops.fetch_run(conn, run_id)
        if run is None:
            raise RunNotFound(f"no run {run_id!r}; check the run id the runtime gave you")
        return run

    async def _owned_live_run(self, conn: aiosqlite.Connection, run_id: str, agent_id: str) -> Run:
        run = await ops.fetch_run(conn, run_id)
        if run is None:
            raise RunNotFound(f"no run {run_id!r}; check the run id the runtime gave you")
        if run.agent_id != agent_id:
            raise NotYourRun(f"run {run_id} belongs to another agent")
        return run

    async def claim(self, issue_id: str, run_id: str, agent_id: str) -> Issue:
        """Take `issue_id` for the live run `run_id`; 409 when another live run holds it."""
        now = self.clock.now()
        async with self.db.write() as conn:
            run = await self._owned_live_run(conn, run_id, agent_id)
            if run.status is not RunStatus.RUNNING:
                raise RunNotActive(f"run {run_id} already ended ({run.status.value})")
            issue = await ops.fetch_issue(conn, issue_id)
            if issue is None:
                raise IssueNotFound(f"no issue {issue_id}")
            if issue.status.terminal or issue.status is IssueStatus.BLOCKED:
                raise Conflict(f"{issue_id} is {issue.status.value}; it cannot be claimed")
            held = issue.lease_run_id and issue.lease_until and issue.lease_until >= now
            if held and issue.lease_run_id != run_id:
                raise LeaseConflict(
                    f"{issue_id} is held by run {issue.lease_run_id} until it ends; pick "
                    "another issue"
                )
            if issue.assignee_id not in (None, agent_id):
                raise LeaseConflict(f"{issue_id} is assigned to {issue.assignee_id}")
            status = IssueStatus.IN_PROGRESS if issue.status is IssueStatus.TODO else issue.status
            await conn.execute(
                "UPDATE issues SET lease_run_id = ?, lease_until = ?, assignee_id = ?, status = ?, "
                "updated_at = ? WHERE id = ?",
                (run_id, run.deadline, agent_id, status.value, now, issue_id),
            )
            if run.issue_id is None:
                await conn.execute("UPDATE runs SET issue_id = ? WHERE id = ?", (issue_id, run_id))
            claimed = await ops.fetch_issue(conn, issue_id)
        assert claimed is not None
        return claimed

    async def report_usage(
        self,
        run_id: str,
        agent_id: str,
        *,
        turns: int,
        input_tokens: int,
        output_tokens: int,
        cost: float,
        model: str | None = None,
    ) -> Run:
        """Record the run's usage so far (cumulative totals, so a retried report is harmless).
        Past the turn cap the run is stopped and TurnCapExceeded tells the agent to stop."""
        now = self.clock.now()
        events: list[Event] = []
        async with self.db.write() as conn:
            run = await self._owned_live_run(conn, run_id, agent_id)
            if run.status is not RunStatus.RUNNING:
                raise RunNotActive(f"run {run_id} already ended ({run.status.value})")
            await conn.execute(
                "UPDATE runs SET turns = MAX(turns, ?), input_tokens = MAX(input_tokens, ?), "
                "output_tokens = MAX(output_tokens, ?), cost = MAX(cost, ?), "
                "model = COALESCE(?, model), last_progress_at = ? WHERE id = ?",
                (turns, input_tokens, output_tokens, cost, model, now, run_id),
            )
            await conn.execute("UPDATE agents SET last_seen_at = ? WHERE id = ?", (now, agent_id))
            if turns > run.max_turns:
                reason = f"stopped after {turns} turns: the cap is {run.max_turns}"
                ending = _Ending(
                    RunStatus.FAILED, reason, "max_turns_exceeded", AgentStatus.IDLE, None
                )
                await self._end(conn, run, ending, now, events)
        self.events.publish(*events)
        if turns > run.max_turns:
            raise TurnCapExceeded(
                f"run {run_id} went past max_turns_per_run ({run.max_turns}) and was stopped; "
                "stop working on it"
            )
        return await self.get(run_id)

    async def finish(
        self, run_id: str, agent_id: str, outcome: RunOutcome, summary: str = ""
    ) -> Run:
        """The agent ends its run. Repeating the same finish returns the run unchanged."""
        now = self.clock.now()
        events: list[Event] = []
        async with self.db.write() as conn:
            run = await self._owned_live_run(conn, run_id, agent_id)
            if run.status is not RunStatus.RUNNING:
                if _same_finish(run, outcome):
                    return run
                raise RunNotActive(
                    f"run {run_id} already ended ({run.status.value}: {run.reason or 'no reason'})"
                )
            await self._end(conn, run, _ending_for(outcome, summary), now, events, summary)
        self.events.publish(*events)
        return await self.get(run_id)

    async def complete(self, run_id: str, result: DispatchResult) -> None:
        """A runtime that sees runs through (process, simulated) returned: end the run if the
        agent did not already. No verdict means success, and the work goes to review."""
        now = self.clock.now()
        events: list[Event] = []
        async with self.db.write() as conn:
            run = await ops.fetch_run(conn, run_id)
            if run is None or run.status is not RunStatus.RUNNING:
                return
            if result.outcome is None:
                ending = _Ending(
                    RunStatus.SUCCEEDED,
                    "the agent exited cleanly without reporting an outcome",
                    "exited",
                    AgentStatus.IDLE,
                    IssueStatus.IN_REVIEW,
                )
            else:
                ending = _ending_for(result.outcome, result.summary)
            await self._end(conn, run, ending, now, events, result.summary)
        self.events.publish(*events)

    async def fail(self, run_id: str, failure: AgentFailure) -> None:
        """The runtime failed: the run fails with its precise reason and the agent errors."""
        await self._end_by_core(
            run_id,
            _Ending(RunStatus.FAILED, failure.message, failure.code, AgentStatus.ERROR, None),
        )

    async def cancel(self, run_id: str, reason: str, code: str = "cancelled") -> None:
        await self._end_by_core(
            run_id, _Ending(RunStatus.CANCELLED, reason, code, AgentStatus.IDLE, None)
        )

    async def _end_by_core(self, run_id: str, ending: _Ending) -> None:
        now = self.clock.now()
        events: list[Event] = []
        async with self.db.write() as conn:
            run = await ops.fetch_run(conn, run_id)
            if run is not None:
                await self._end(conn, run, ending, now, events)
        self.events.publish(*events)

    async def time_out(self) -> list[str]:
        """End every live run past its deadline; returns their ids."""
        now = self.clock.now()
        events: list[Event] = []
        overdue = "SELECT id FROM runs WHERE status = 'running' AND deadline < ?"
        # Almost every sweep finds nothing overdue: asking the reader first spares those sweeps
        # a write transaction (and the write lock) each.
        if not await self.db.fetchall(overdue + " LIMIT 1", (now,)):
            return []
        async with self.db.write() as conn:
            ids = [r[0] for r in await conn.execute_fetchall(overdue, (now,))]
            for run_id in ids:
                run = await ops.fetch_run(conn, run_id)
                assert run is not None
                minutes = (run.deadline - run.started_at) / 60
                ending = _Ending(
                    RunStatus.TIMED_OUT,
                    f"run {run_id[:8]} passed its deadline ({minutes:.0f} min) without finishing",
                    "run_timed_out",
                    AgentStatus.ERROR,
                    None,
                )
                await self._end(conn, run, ending, now, events)
        self.events.publish(*events)
        return ids

    async def interrupt_all(self) -> int:
        """On start: runs left `running` by a previous process are `interrupted`."""
        now = self.clock.now()
        events: list[Event] = []
        async with self.db.write() as conn:
            async with conn.execute("SELECT id FROM runs WHERE status = 'running'") as cur:
                ids = [r[0] for r in await cur.fetchall()]
            for run_id in ids:
                run = await ops.fetch_run(conn, run_id)
                assert run is not None
                ending = _Ending(
                    RunStatus.INTERRUPTED,
                    "fleetbot restarted while this run was live",
                    "interrupted",
                    AgentStatus.IDLE,
                    None,
                )
                await self._end(conn, run, ending, now, events)
        self.events.publish(*events)
        return len(ids)

    async def _end(
        self,
        conn: aiosqlite.Connection,
        run: Run,
        ending: _Ending,
        now: float,
        events: list[Event],
        summary: str = "",
    ) -> bool:
        cur = await conn.execute(
            "UPDATE runs SET status = ?, reason = ?, reason_code = ?, ended_at = ?, summary = ? "
            "WHERE id = ? AND status = 'running'",
            (ending.status.value, ending.reason, ending.reason_code, now, summary, run.id),
        )
        if cur.rowcount != 1:
            return False
        agent = await ops.fetch_agent(conn, run.agent_id)
        if agent is not None and agent.status is AgentStatus.RUNNING:
            reason = "" if ending.agent_status is AgentStatus.IDLE else ending.reason
            code = "" if ending.agent_status is AgentStatus.IDLE else ending.reason_code
            changed = await ops.set_agent_status(
                conn, agent, ending.agent_status, now, reason, code
            )
            if changed:
                events.append(changed)
        if run.issue_id is not None:
            await self._settle_issue(conn, run, ending, now)
        if summary.strip():
            cur = await conn.execute(
                "INSERT INTO summaries (agent_id, issue_id, run_id, source, body, created_at) "
                "VALUES (?, ?, ?, 'run', ?, ?)",
                (run.agent_id, run.issue_id, run.id, summary.strip(), now),
            )
            assert cur.lastrowid is not None
            events.append(SummaryPosted(cur.lastrowid, run.agent_id, run.issue_id, "run"))
        events.append(
            RunEnded(
                run.id,
                run.agent_id,
                run.issue_id,
                ending.status,
                ending.reason,
                ending.reason_code,
                summary,
            )
        )
        return True

    async def _settle_issue(
        self, conn: aiosqlite.Connection, run: Run, ending: _Ending, now: float
    ) -> None:
        assert run.issue_id is not None
        if ending.issue_status is None:
            # An operator's cancel is not the agent failing: it costs no attempt.
            failed = ending.status is not RunStatus.CANCELLED
            await ops.release_issue(
                conn, run.issue_id, run.id, now, self.defaults.retry_backoff, failed=failed
            )
            return
        # Only the run holding the lease may move the issue, and only along the graph.
        allowed = {
            IssueStatus.DONE: ("todo", "in_progress", "in_review"),
            IssueStatus.IN_REVIEW: ("in_progress",),
            IssueStatus.BLOCKED: ("todo", "in_progress", "in_review"),
        }[ending.issue_status]
        marks = ", ".join("?" for _ in allowed)
        await conn.execute(
            "UPDATE issues SET status = ?, reason = ?, lease_run_id = NULL, lease_until = NULL, "
            f"updated_at = ? WHERE id = ? AND lease_run_id = ? AND status IN ({marks})",
            (
                ending.issue_status.value,
                ending.reason if ending.issue_status is IssueStatus.BLOCKED else "",
                now,
                run.issue_id,
                run.id,
                *allowed,
            ),
        )
        # Moves outside the graph (e.g. the issue was cancelled meanwhile) just drop the lease.
        await conn.execute(
            "UPDATE issues SET lease_run_id = NULL, lease_until = NULL WHERE id = ? AND "
            "lease_run_id = ?",
            (run.issue_id, run.id),
        )


def _ending_for(outcome: RunOutcome, summary: str) -> _Ending:
    if outcome is RunOutcome.DONE:
        return _Ending(RunStatus.SUCCEEDED, "done", "done", AgentStatus.IDLE, IssueStatus.DONE)
    if outcome is RunOutcome.BLOCKED:
        why = summary.strip() or "the agent reported it is blocked"
        return _Ending(RunStatus.SUCCEEDED, why, "blocked", AgentStatus.IDLE, IssueStatus.BLOCKED)
    why = f"the agent reported failure: {summary.strip() or 'no summary given'}"
    return _Ending(RunStatus.FAILED, why, "agent_failed", AgentStatus.IDLE, None)


def _same_finish(run: Run, outcome: RunOutcome) -> bool:
    expected = {
        RunOutcome.DONE: (RunStatus.SUCCEEDED, "done"),
        RunOutcome.BLOCKED: (RunStatus.SUCCEEDED, "blocked"),
        RunOutcome.FAILED: (RunStatus.FAILED, "agent_failed"),
    }[outcome]
    return (run.status, run.reason_code) == expected
