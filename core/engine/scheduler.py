"""The loop that drives the fleet: sweeps for due heartbeats, wakes on events, times runs out.

The logic lives in `tick()` and the heartbeat; APScheduler only calls `tick()` every
`sweep_interval` seconds of real time. Benchmarks and tests call `tick()` themselves with a
ManualClock, so a simulated month takes seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from pydantic import TypeAdapter

from core.auth.agent_auth import AgentAuth
from core.clock import Clock
from core.config import RuntimeConfig
from core.engine.heartbeat import Beat, Heartbeat
from core.errors import AgentFailure, FleetbotError
from core.events import Event, IssueAssigned, RunEnded, WakeRequested
from core.models import Agent, HeartbeatOutcome, RunStatus
from core.runtimes import build_runtime
from core.runtimes.base import Dispatch, RunReporter, Runtime
from core.service import FleetService
from core.store.lease import unfenced

log = logging.getLogger(__name__)
Job = Callable[[], Coroutine[Any, Any, Any]]

RuntimeFactory = Callable[[Agent], Runtime]
MAX_PENDING = 20  # wakes with news kept per busy agent (one per issue)
# Seconds a runtime may go on after the agent's own finish call: a CLI says its last reply and
# prints its usage after the call, and stopping it at once would lose what the turn cost.
WRAP_UP = 30.0
_RUNTIME_CONFIG: TypeAdapter[RuntimeConfig] = TypeAdapter(RuntimeConfig)


class RuntimePool:
    """One runtime per agent, built on first use from the agent's runtime config."""

    def __init__(self, env: Mapping[str, str], reporter: RunReporter) -> None:
        self.env = env
        self.reporter = reporter
        self._by_agent: dict[str, tuple[str, Runtime]] = {}

    def __call__(self, agent: Agent) -> Runtime:
        key = repr(sorted(agent.runtime.items()))
        cached = self._by_agent.get(agent.id)
        if cached is not None and cached[0] == key:
            return cached[1]
        cfg = _RUNTIME_CONFIG.validate_python(agent.runtime)
        runtime = build_runtime(cfg, self.env, self.reporter)
        self._by_agent[agent.id] = (key, runtime)
        return runtime

    async def aclose(self) -> None:
        for _, runtime in self._by_agent.values():
            await runtime.aclose()
        self._by_agent.clear()


@dataclass(frozen=True, slots=True)
class _Wake:
    """Why an agent is woken, and on which issue (a wake that found it busy keeps this)."""

    reason: str = "heartbeat"
    issue_id: str | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class TickReport:
    timed_out: int
    beats: dict[HeartbeatOutcome, int]


class Scheduler:
    def __init__(
        self,
        service: FleetService,
        runtimes: RuntimeFactory,
        clock: Clock,
        *,
        auth: AgentAuth | None,
        api_url: str,
        sweep_interval: float = 10.0,
        wake_on_assign: bool = True,
        singleton: Callable[[Job, str], Job] | None = None,
    ) -> None:
        self.service = service
        # Periodic jobs are the leader's alone among replicas (core.cluster.leadership).
        self.singleton = singleton or (lambda job, _name: job)
        self.heartbeat = Heartbeat(service, auth, clock)
        self.runtimes = runtimes
        self.clock = clock
        self.auth = auth
        self.api_url = api_url
        self.sweep_interval = sweep_interval
        self.wake_on_assign = wake_on_assign
        self._tasks: set[asyncio.Task[Any]] = set()
        self._dispatches: dict[str, asyncio.Task[Any]] = {}
        # Wakes with news (an answer, a comment) that found the agent in a run: they are
        # delivered when that run ends instead of being lost to a busy heartbeat.
        self._pending: dict[str, list[_Wake]] = {}
        # Dispatches of runs their agent finished, still winding down (WRAP_UP), by agent.
        self._winding: dict[str, asyncio.Task[Any]] = {}
        self._aps: AsyncIOScheduler | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._closed = False

    async def start(self, *, periodic: bool = True, alive: Iterable[str] = ()) -> None:
        """Interrupt runs a stopped process left behind (any replica's but those `alive`),
        listen to events, start sweeping."""
        interrupted = await self.service.runs.interrupt_orphans(alive)
        if interrupted:
            log.warning(
                "marked %d run(s) left running by a previous process as interrupted", interrupted
            )
        self._unsubscribe = self.service.events.subscribe(self._on_event)
        if periodic:
            self._aps = AsyncIOScheduler(timezone="UTC")
            self._aps.add_job(
                self.singleton(self.tick, "sweep"),
                "interval",
                seconds=self.sweep_interval,
                id="sweep",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )
            self._aps.start()

    def add_job(
        self,
        func: Callable[[], Coroutine[Any, Any, Any]],
        seconds: float,
        name: str,
        *,
        leader_only: bool = True,
    ) -> None:
        """Run `func` every `seconds` on the same scheduler (monitors, outbox, digests): on the
        leader alone unless not `leader_only`."""
        if self._aps is not None:
            self._aps.add_job(
                self.singleton(func, name) if leader_only else func,
                "interval",
                seconds=seconds,
                id=name,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._aps is not None:
            self._aps.shutdown(wait=False)
            self._aps = None
        if self._unsubscribe is not None:
            self._unsubscribe()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def tick(self) -> TickReport:
        """One sweep: time out overdue runs, then beat every agent whose heartbeat is due."""
        timed_out = await self.service.runs.time_out()
        beats: dict[HeartbeatOutcome, int] = {}
        for agent_id in await self.heartbeat.due(self.clock.now()):
            beat = await self._beat(agent_id, forced=False)
            if beat is not None:
                beats[beat.outcome] = beats.get(beat.outcome, 0) + 1
        return TickReport(len(timed_out), beats)

    async def stop_ended_elsewhere(self) -> int:
        """Stop the turns of runs this replica dispatched that ended on another one (timed out
        by the leader, cancelled or finished through another replica's API), as the RunEnded
        event does for those that end here: WRAP_UP seconds to end on their own (the agent may
        have finished itself), then cancelled. The polling side of wake-ups between replicas:
        every few seconds, one read of this replica's live dispatches."""
        ended = await self.service.runs.ended_among(list(self._dispatches))
        for run_id, status in ended.items():
            task = self._dispatches.pop(run_id, None)
            if task is not None and not task.done():
                # Only a success or a failure can be the agent's own finish; a timeout, a
                # cancel or an interruption never is: those stop at once.
                grace = WRAP_UP if status in (RunStatus.SUCCEEDED, RunStatus.FAILED) else 0.0
                self._spawn(self._wrap_up(task, grace), f"wrap-up:{run_id[:8]}")
        return len(ended)

    @staticmethod
    async def _wrap_up(task: asyncio.Task[Any], grace: float) -> None:
        if grace > 0:
            await asyncio.wait([task], timeout=grace)
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def drain(self) -> None:
        """Wait until every wake-up and dispatch started so far has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def wake(
        self,
        agent_id: str,
        reason: str = "heartbeat",
        *,
        issue_id: str | None = None,
        note: str = "",
    ) -> None:
        why = _Wake(reason, issue_id, note)
        self._spawn(self._beat(agent_id, forced=True, why=why), f"wake:{agent_id}")

    def _on_event(self, event: Event) -> None:
        if self._closed:
            return
        if isinstance(event, WakeRequested):
            self.wake(event.agent_id, event.reason, issue_id=event.issue_id, note=event.note)
        elif isinstance(event, IssueAssigned) and self.wake_on_assign:
            self.wake(event.agent_id, event.reason)
        elif isinstance(event, RunEnded) and event.status is not RunStatus.RUNNING:
            task = self._dispatches.pop(event.run_id, None)
            if task is asyncio.current_task():
                task = None
            if task is not None and not event.by_agent:
                task.cancel()  # the run is over (timeout, cap, cancel): stop its runtime
                task = None
            if task is not None:
                self._winding[event.agent_id] = task
            # Work queued behind this run should not wait for the next interval (nor overlap
            # the turn of a run the agent finished while that turn winds down).
            self._spawn(self._wake_if_work(event.agent_id, after=task), f"next:{event.agent_id}")

    async def _wake_if_work(self, agent_id: str, *, after: asyncio.Task[Any] | None = None) -> None:
        """Beat the agent now if it has work it could start now; otherwise do nothing (a
        beat with no work would be counted as a heartbeat that never was scheduled). A wake
        with news that found it busy goes first. `after`: the dispatch of a run the agent
        finished itself, given WRAP_UP seconds to end on its own before it is stopped."""
        if after is not None:
            await asyncio.wait([after], timeout=WRAP_UP)
            if not after.done():
                log.info(
                    "%s finished its run but its turn went on for %g s; stopped", agent_id, WRAP_UP
                )
                after.cancel()
                await asyncio.gather(after, return_exceptions=True)
            if self._winding.get(agent_id) is after:
                del self._winding[agent_id]
        pending = self._pending.pop(agent_id, [])
        if await self.heartbeat.has_work(agent_id):
            why = pending.pop(0) if pending else _Wake()
            if pending:
                self._pending[agent_id] = pending
            await self._beat(agent_id, forced=True, why=why)

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        # Not the leader's work even when a sweep starts it: a run's writes must land after
        # the lease moved on, so the task does not inherit the sweep's fence.
        task = asyncio.get_running_loop().create_task(coro, name=name, context=unfenced())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _beat(self, agent_id: str, *, forced: bool, why: _Wake | None = None) -> Beat | None:
        why = why or _Wake()
        winding = self._winding.get(agent_id)
        if winding is not None and not winding.done():
            # One turn of an agent at a time: its finished run's turn is still winding down.
            if not forced:
                return None  # the sweep moves on; the wake after the wrap-up beats it
            await asyncio.wait([winding], timeout=WRAP_UP + 1)
        try:
            beat = await self.heartbeat.beat(agent_id, forced=forced, prefer=why.issue_id)
        except Exception:
            log.exception("heartbeat of %s failed", agent_id)
            return None
        if beat is not None and beat.outcome is HeartbeatOutcome.BUSY and why.note:
            waiting = self._pending.setdefault(agent_id, [])
            waiting[:] = [w for w in waiting if w.issue_id != why.issue_id][-(MAX_PENDING - 1) :]
            waiting.append(why)  # the newest news about an issue replaces the older
        if beat is not None and beat.run is not None:
            assert beat.issue is not None
            if why.issue_id is not None and beat.issue.id != why.issue_id:
                # Its issue could not be worked now: this run is an ordinary one.
                why = _Wake()
            run_id = beat.run.id
            task = self._spawn(self._dispatch(beat, why), f"dispatch:{run_id[:8]}")
            self._dispatches[run_id] = task
            task.add_done_callback(lambda _t: self._dispatches.pop(run_id, None))
        return beat

    async def _dispatch(self, beat: Beat, why: _Wake) -> None:
        assert beat.run is not None and beat.issue is not None
        agent, run, issue = beat.agent, beat.run, beat.issue
        try:
            token = self.auth.run_token(agent, run.id, run.deadline) if self.auth else ""
        except FleetbotError as exc:  # e.g. a key ring that became unsafe: sign nothing
            log.error("run %s of %s: no run token: %s", run.id[:8], agent.id, exc.message)
            await self.service.runs.fail(
                run.id,
                AgentFailure(
                    f"fleetbot could not sign a run token: {exc.message}", code="run_token_refused"
                ),
            )
            return
        job = Dispatch(
            run_id=run.id,
            agent_id=agent.id,
            agent_name=agent.name,
            company_id=agent.company_id,
            issue={
                "id": issue.id,
                "title": issue.title,
                "body": issue.body,
                "status": "in_progress",
            },
            api_url=self.api_url,
            token=token,
            token_file=self.auth.token_file(agent.id) if self.auth else None,
            model=run.model,
            max_turns=run.max_turns,
            skills=agent.skills,
            deadline=run.deadline,
            wake_reason=why.reason,
            wake_note=why.note,
            on_accepted=lambda external_id: self.service.runs.note_external_id(run.id, external_id),
        )
        try:
            runtime = self.runtimes(agent)
            result = await runtime.dispatch(job)
        except AgentFailure as exc:
            log.warning("run %s of %s failed: %s", run.id[:8], agent.id, exc.message)
            await self.service.runs.fail(run.id, exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("dispatching run %s of %s crashed", run.id[:8], agent.id)
            await self.service.runs.fail(
                run.id,
                AgentFailure(
                    f"fleetbot could not dispatch the run ({type(exc).__name__})",
                    code="dispatch_crashed",
                ),
            )
        else:
            if result.finished:
                await self.service.runs.complete(run.id, result)
