"""A run's life: opened by a heartbeat, fed by usage reports, ended exactly once.

Every ending goes through `_end`, a compare-and-set on `status = 'running'`: a finish that races a
timeout, a late runtime failure after the agent already finished, or a retry of the same finish
call all leave the first ending in place and change nothing else.

Opening a run is the last line of defence against re-dispatch loops (`guard_dispatch`): an issue
dispatched `recovery_loop_dispatches` times within `recovery_loop_window` is blocked instead of
dispatched again, and recorded so the monitors raise recovery_loop.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace

from core.clock import Clock
from core.config import Defaults, MonitorsConfig
from core.engine.retry import Block, after_failure
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
from core.questions import cancel_open_in, waited_on
from core.runtimes.base import DispatchResult
from core.store import (
    agents as agent_store,
    audit,
    issues as issue_store,
    questions as question_store,
    recovery as recovery_store,
    runs as run_store,
    summaries,
)
from core.store.conn import Conn
from core.store.db import Database

# How an issue blocked by the loop guard starts its reason (the monitors tell the kinds apart).
LOOP_REASON = "recovery loop stopped:"
# What a run ending moves its issue to (None: released for a retry), and from which statuses:
# only the run holding the lease may move the issue, and only along the graph.
_SETTLE_FROM = {
    IssueStatus.DONE: (IssueStatus.TODO, IssueStatus.IN_PROGRESS, IssueStatus.IN_REVIEW),
    IssueStatus.IN_REVIEW: (IssueStatus.IN_PROGRESS,),
    IssueStatus.BLOCKED: (IssueStatus.TODO, IssueStatus.IN_PROGRESS, IssueStatus.IN_REVIEW),
}


async def guard_dispatch(conn: Conn, issue_id: str, now: float, cfg: MonitorsConfig) -> bool:
    """May `issue_id` be dispatched once more? If it already was `recovery_loop_dispatches`
    times within the window, block it (compare-and-set on it being workable), record the
    loop, and answer False. Runs inside the dispatching transaction."""
    count = await run_store.started_since(conn, issue_id, now - cfg.recovery_loop_window)
    if count < cfg.recovery_loop_dispatches:
        return True
    minutes = cfg.recovery_loop_window / 60
    reason = (
        f"{LOOP_REASON} dispatched {count} times within {minutes:.0f} min; "
        "find out why it keeps coming back before moving it to todo"
    )
    if await issue_store.block_loop(conn, issue_id, reason, now):
        await recovery_store.record_loop(conn, issue_id, count, cfg.recovery_loop_window, now)
        await audit.record(conn, now, "fleetbot", "issue.recovery_loop", issue_id, reason)
    return False


@dataclass(frozen=True, slots=True)
class _Ending:
    status: RunStatus
    reason: str
    reason_code: str
    agent_status: AgentStatus  # what a `running` agent becomes
    issue_status: IssueStatus | None  # None: release the lease for a retry
    # The agent's own verdict on the issue (done, failed, blocked): its open questions are moot.
    closes_questions: bool = False
    # Waiting on an answer: the issue keeps its status, the attempt is given back.
    waiting: bool = False
    # The agent's own finish call (not a runtime's report, a timeout or an operator).
    by_agent: bool = False


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
        # This process's replica id (core.cluster): its runs' turns run here, so a replica
        # that finds its id gone from the live ones knows whose runs to interrupt.
        self.replica = ""

    async def open(self, conn: Conn, agent: Agent, issue: Issue, now: float) -> Run | None:
        """Open a run on `issue` inside the caller's transaction, or None if the issue is no
        longer workable (compare-and-set on status, lease and backoff)."""
        # Too many runs of this issue within the window block it instead (see the docstring).
        if self.monitors is not None and not await guard_dispatch(
            conn, issue.id, now, self.monitors
        ):
            return None
        run_id = uuid.uuid4().hex
        deadline = now + agent.run_timeout_seconds
        if not await issue_store.lease(conn, issue.id, run_id, deadline, now):
            return None
        model = issue.model or agent.model
        return await run_store.insert(
            conn, run_id, agent, issue.id, now, deadline, model, self.replica
        )

    async def get(self, run_id: str) -> Run:
        async with self.db.write() as conn:  # the writer sees its own latest state
            run = await run_store.get(conn, run_id)
        if run is None:
            raise RunNotFound(f"no run {run_id!r}; check the run id the runtime gave you")
        return run

    async def _owned_live_run(self, conn: Conn, run_id: str, agent_id: str) -> Run:
        run = await run_store.get(conn, run_id)
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
            issue = await issue_store.get(conn, issue_id)
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
            await issue_store.claim(conn, issue_id, run_id, run.deadline, agent_id, status, now)
            if run.issue_id is None:
                await run_store.attach_issue(conn, run_id, issue_id)
            claimed = await issue_store.get(conn, issue_id)
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
            await run_store.record_usage(
                conn,
                run_id,
                turns=turns,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cost=cost,
                model=model,
                now=now,
            )
            await agent_store.seen(conn, agent_id, now)
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
            if outcome is RunOutcome.WAITING:
                ending = _waiting(await waited_on(conn, run.issue_id), "the agent said so")
            else:
                ending = _ending_for(outcome, summary)
            await self._end(conn, run, replace(ending, by_agent=True), now, events, summary)
        self.events.publish(*events)
        return await self.get(run_id)

    async def note_external_id(self, run_id: str, external_id: str) -> None:
        """The runtime acknowledged the turn under its own id (OpenClaw's runId)."""
        async with self.db.write() as conn:
            await run_store.set_external_id(conn, run_id, external_id)

    async def complete(self, run_id: str, result: DispatchResult) -> None:
        """A runtime saw the turn to its end: record what it measured, and end the run if the
        agent did not already (its own finish wins). No verdict means success, and the work
        goes to review with the turn's last reply as the summary."""
        now = self.clock.now()
        events: list[Event] = []
        async with self.db.write() as conn:
            run = await run_store.get(conn, run_id)
            if run is None:
                return
            if result.external_id and not run.external_id:
                await run_store.set_external_id(conn, run_id, result.external_id)
            if result.usage is not None:
                # The runtime's accounting is the truth about what the turn cost; totals only
                # grow, so an agent's own (smaller) reports change nothing.
                u = result.usage
                await run_store.record_usage(
                    conn,
                    run_id,
                    turns=u.turns,
                    input_tokens=u.input_tokens,
                    output_tokens=u.output_tokens,
                    cost=u.cost,
                    model=u.model,
                    now=now,
                )
            if run.status is not RunStatus.RUNNING:
                return
            asked: list[int] = []
            if result.outcome in (None, RunOutcome.WAITING) and run.issue_id is not None:
                asked = await question_store.open_for_run(
                    conn, run.issue_id, run.id, run.agent_id, run.started_at
                )
            if asked:
                # It ended well with its question still open: it waits, as if it had said so.
                ending = _waiting(asked[0], "the turn ended with its question open")
            elif result.outcome in (None, RunOutcome.WAITING):
                ending = _Ending(
                    RunStatus.SUCCEEDED,
                    result.reason or "the agent exited cleanly without reporting an outcome",
                    result.reason_code or "exited",
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
            run = await run_store.get(conn, run_id)
            if run is not None:
                await self._end(conn, run, ending, now, events)
        self.events.publish(*events)

    async def time_out(self) -> list[str]:
        """End every live run past its deadline; returns their ids."""
        now = self.clock.now()
        events: list[Event] = []
        # Almost every sweep finds nothing overdue: asking the reader first spares those sweeps
        # a write transaction (and the write lock) each.
        if not await run_store.overdue_ids(self.db.reader, now, limit=1):
            return []
        async with self.db.write() as conn:
            ids = await run_store.overdue_ids(conn, now)
            for run_id in ids:
                run = await run_store.get(conn, run_id)
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

    async def ended_among(self, run_ids: Iterable[str]) -> dict[str, RunStatus]:
        """Those of these runs that have ended (on any replica), with how."""
        return await run_store.ended_among(self.db.reader, run_ids)

    async def interrupt_orphans(self, alive: Iterable[str]) -> int:
        """Runs left `running` by a replica not in `alive` (stopped or killed: its turns
        died with it) are `interrupted`."""
        alive = list(alive)
        if not await run_store.orphan_ids(self.db.reader, alive):
            return 0  # the leader asks every few seconds: usually a read, not a write
        now = self.clock.now()
        events: list[Event] = []
        async with self.db.write() as conn:
            ids = await run_store.orphan_ids(conn, alive)
            for run_id in ids:
                run = await run_store.get(conn, run_id)
                assert run is not None
                ending = _Ending(
                    RunStatus.INTERRUPTED,
                    "the fleetbot process running this run stopped (restarted or killed)",
                    "interrupted",
                    AgentStatus.IDLE,
                    None,
                )
                await self._end(conn, run, ending, now, events)
        self.events.publish(*events)
        return len(ids)

    async def _end(
        self,
        conn: Conn,
        run: Run,
        ending: _Ending,
        now: float,
        events: list[Event],
        summary: str = "",
    ) -> bool:
        ended = await run_store.end(
            conn, run.id, ending.status, ending.reason, ending.reason_code, summary, now
        )
        if not ended:
            return False
        agent = await agent_store.get(conn, run.agent_id)
        if agent is not None and agent.status is AgentStatus.RUNNING:
            reason = "" if ending.agent_status is AgentStatus.IDLE else ending.reason
            code = "" if ending.agent_status is AgentStatus.IDLE else ending.reason_code
            changed = await agent_store.set_status(
                conn, agent, ending.agent_status, now, reason, code
            )
            if changed:
                events.append(changed)
        if run.issue_id is not None:
            await self._settle_issue(conn, run, ending, now)
            if ending.closes_questions:
                why = f"run {run.id[:8]} ended {ending.reason_code} before an answer"
                await cancel_open_in(conn, run.issue_id, f"agent:{run.agent_id}", why, now, events)
        if summary.strip():
            summary_id = await summaries.add(
                conn, run.agent_id, run.issue_id, run.id, "run", summary.strip(), now
            )
            events.append(SummaryPosted(summary_id, run.agent_id, run.issue_id, "run"))
        events.append(
            RunEnded(
                run.id,
                run.agent_id,
                run.issue_id,
                ending.status,
                ending.reason,
                ending.reason_code,
                summary,
                ending.by_agent,
            )
        )
        return True

    async def _settle_issue(self, conn: Conn, run: Run, ending: _Ending, now: float) -> None:
        assert run.issue_id is not None
        if ending.waiting:
            await issue_store.give_back(conn, run.issue_id, run.id, now)
            return
        if ending.issue_status is None:
            # An operator's cancel is not the agent failing: it costs no attempt. A runtime
            # that stayed unreachable through the run's own retries does cost one, so a dead
            # endpoint ends in a blocked, escalated issue instead of a loop.
            failed = ending.status is not RunStatus.CANCELLED
            await self.release(conn, run.issue_id, run.id, now, failed=failed)
            return
        # Moves outside the graph (e.g. the issue was cancelled meanwhile) just drop the lease.
        reason = ending.reason if ending.issue_status is IssueStatus.BLOCKED else ""
        await issue_store.settle(
            conn,
            run.issue_id,
            run.id,
            ending.issue_status,
            reason,
            _SETTLE_FROM[ending.issue_status],
            now,
        )

    async def release(
        self,
        conn: Conn,
        issue_id: str,
        run_id: str,
        now: float,
        *,
        failed: bool = True,
    ) -> Issue | None:
        """Drop `run_id`'s lease on the issue, if it still holds it, and decide what comes next.

        Compare-and-set: only the lease of this very run is released, and only an open issue is
        touched, so a run ending late can never reopen finished work. After a failure,
        core.engine.retry decides: retry after a backoff, or block (attempt budget spent). A
        run that did not fail (cancelled by an operator) gives its attempt back and waits for
        no backoff. Returns the issue as it is now, or None if untouched.
        """
        issue = await issue_store.get(conn, issue_id)
        if issue is None or issue.lease_run_id != run_id or issue.status.terminal:
            return None
        if not failed:
            await issue_store.give_back(conn, issue_id, run_id, now)
            return await issue_store.get(conn, issue_id)
        backoff = self.defaults.retry_backoff
        step = after_failure(issue.attempts, issue.max_attempts, issue.status, backoff, now)
        if isinstance(step, Block):
            await issue_store.block(conn, issue_id, run_id, step.reason, now)
        else:
            await issue_store.back_off(conn, issue_id, run_id, step.at, now)
            if issue.assignee_id is not None:
                # The retry is due after the backoff, not at the next (hours away) heartbeat.
                await agent_store.beat_by(conn, issue.assignee_id, step.at)
        return await issue_store.get(conn, issue_id)


def _ending_for(outcome: RunOutcome, summary: str) -> _Ending:
    """The agent's verdict (not `waiting`, which needs an open question: _waiting)."""
    if outcome is RunOutcome.DONE:
        return _Ending(
            RunStatus.SUCCEEDED, "done", "done", AgentStatus.IDLE, IssueStatus.DONE, True
        )
    if outcome is RunOutcome.BLOCKED:
        why = summary.strip() or "the agent reported it is blocked"
        return _Ending(
            RunStatus.SUCCEEDED, why, "blocked", AgentStatus.IDLE, IssueStatus.BLOCKED, True
        )
    why = f"the agent reported failure: {summary.strip() or 'no summary given'}"
    return _Ending(RunStatus.FAILED, why, "agent_failed", AgentStatus.IDLE, None, True)


def _waiting(question_id: int, how: str) -> _Ending:
    why = f"waiting for an answer to Q{question_id} ({how})"
    return _Ending(RunStatus.SUCCEEDED, why, "waiting", AgentStatus.IDLE, None, waiting=True)


def _same_finish(run: Run, outcome: RunOutcome) -> bool:
    expected = {
        RunOutcome.DONE: (RunStatus.SUCCEEDED, "done"),
        RunOutcome.BLOCKED: (RunStatus.SUCCEEDED, "blocked"),
        RunOutcome.FAILED: (RunStatus.FAILED, "agent_failed"),
        RunOutcome.WAITING: (RunStatus.SUCCEEDED, "waiting"),
    }[outcome]
    return (run.status, run.reason_code) == expected
