"""The watchdog: runs the monitors every monitors.interval and straight from core events.

`run()` reads a Snapshot, evaluates every finder of core.alerting.monitors and hands the whole
set to AlertBook.reconcile, which raises what was found and resolves what was not; then it applies
budget pauses and flushes due notifications to the outbox.

The core often knows first: `on_event` raises agent_error / agent_unauthenticated the moment
an agent enters that status (with its reason), issue_blocked (and escalates) when a run's end
blocks its issue, resolves them when the agent recovers, ends queue_empty when work is filed,
and relays summaries to the outbox. `on_auth_failure` (the API guard's listener) raises
agent_unauthenticated when an agent's API calls get 401s. A question an agent asks raises its
`question` alert at once (the card with its choices), and its answer or cancellation resolves
it. Events are handled in order on one worker task, so a listener never blocks the publisher.

Runtimes (given a RuntimeWatch): a run that failed on its runtime (RUNTIME_DOWN_CODES) has the
runtime probed at once, and while the probe fails the agent is a member of its target's
runtime_unreachable alert instead of an agent_error of its own. `check_runtimes` probes the
whole fleet (startup, /authcheck) or some agents ("Check again"); every pass re-probes the
suspects first, so a dead target's alert resolves by itself on the first pass its probe passes.
"""

from __future__ import annotations

import asyncio
import logging

from core.alerting.book import AlertBook, AlertKind, Finding
from core.alerting.monitors import (
    AUTH_SIGNAL_TTL,
    MONITORED,
    AuthSignal,
    Snapshot,
    agent_status_finding,
    evaluate,
    find_auth_signals,
    find_blocked,
    find_runtime_unreachable,
    note_beat,
    question_finding,
)
from core.clock import Clock, month_start, utc
from core.config import Config
from core.engine.recovery import Recovery
from core.engine.runtime_check import RUNTIME_DOWN_CODES, RuntimeReport, RuntimeWatch
from core.events import (
    AgentStatusChanged,
    Event,
    IssueAssigned,
    QuestionAnswered,
    QuestionAsked,
    QuestionCancelled,
    RunEnded,
    SummaryPosted,
)
from core.models import Agent, AgentStatus, HeartbeatOutcome, IssueStatus, RunStatus
from core.queues.breaker import velocities
from core.queues.planner import Planner
from core.reports.costs import CostBook
from core.service import FleetService
from core.store import (
    heartbeats,
    issues as issue_store,
    questions as question_store,
    recovery as recovery_store,
    routines as routine_store,
    runs as run_store,
    velocity as velocity_store,
)

log = logging.getLogger(__name__)


class Monitors:
    """Runs the monitors on a snapshot, raises from events, and applies budget pauses."""

    def __init__(
        self,
        service: FleetService,
        alerts: AlertBook,
        costs: CostBook,
        recovery: Recovery,
        config: Config,
        clock: Clock,
        runtimes: RuntimeWatch | None = None,
        planner: Planner | None = None,
    ) -> None:
        self.service = service
        self.db = service.db
        self.alerts = alerts
        self.costs = costs
        self.recovery = recovery
        self.config = config
        self.clock = clock
        self.runtimes = runtimes
        self.planner = planner
        self.auth_signals: dict[str, AuthSignal] = {}
        self._queue: asyncio.Queue[Event | tuple[str, str]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._closed = False

    async def snapshot(self, agents: tuple[Agent, ...] | None = None) -> Snapshot:
        now = self.clock.now()
        reader = self.db.reader
        agents = agents if agents is not None else tuple(await self.service.agents())
        live = await run_store.live(reader)
        empty = await heartbeats.empty_queues(reader)
        esc = await recovery_store.escalations(reader)
        sv = self.config.monitors.spend_velocity
        costs = await self.costs.month(at=month_start(now))
        self.auth_signals = {
            k: v for k, v in self.auth_signals.items() if now - v.at <= AUTH_SIGNAL_TTL
        }
        return Snapshot(
            now=now,
            agents=agents,
            live_runs=tuple(live),
            blocked=tuple(await issue_store.blocked(reader)),
            empty_queues={c: (beats, since or now) for c, (beats, since) in empty.items()},
            spend=costs.spend(),
            escalations={i: f"{to} ({filed})" if filed else to for i, (to, filed) in esc.items()},
            auto_resets=await self.recovery.schedule(),
            auth_signals=dict(self.auth_signals),
            runtime_failures=self.runtimes.failing() if self.runtimes else {},
            open_questions=tuple(await question_store.open_ones(reader, limit=10_000)),
            late_routines=tuple(await routine_store.late(reader)),
            runaways=tuple(await velocities(self.db, sv, now)) if sv is not None else (),
            queue_notes=await self._queue_notes(empty),
        )

    async def _queue_notes(self, empty: dict[str, tuple[int, float | None]]) -> dict[str, str]:
        """What fleetbot did about each empty queue, for its queue_empty alert."""
        if self.planner is None:
            return {}
        n = self.config.monitors.queue_empty_heartbeats
        return {
            c.id: (await self.planner.state(c)).note()
            for c in self.config.companies
            if empty.get(c.id, (0, None))[0] >= n
        }

    async def run(self) -> list[Finding]:
        """One monitor pass: auto-resets due, the suspect runtimes probed again, then
        findings reconciled with the alerts."""
        try:
            await self.recovery.auto_reset_due()
            agents = tuple(await self.service.agents())
            if self.runtimes is not None:
                await self.runtimes.recheck(agents)
            snap = await self.snapshot(agents)
            findings = evaluate(snap, self.config)
            await self.alerts.reconcile(findings, MONITORED, snap.now)
            await self._stop_over_budget(findings)
            await self._brake(snap)
            await self.alerts.flush()
            return findings
        except Exception:
            log.exception("monitor pass failed; the next one retries")
            return []

    async def _stop_over_budget(self, findings: list[Finding]) -> None:
        """At 100 % of a budget, pause the agent (or every agent of the company), once a month:
        an owner who resumes it after that has decided to spend more."""
        month = utc(self.clock.now()).strftime("%Y-%m")
        for f in findings:
            if f.kind is not AlertKind.BUDGET or f.reason_code != "stop":
                continue
            async with self.db.write() as conn:
                first = await recovery_store.take_budget_action(
                    conn, f.subject, month, "pause", self.clock.now()
                )
            if not first:
                continue
            kind, _, ident = f.subject.partition(":")
            targets = (
                [ident] if kind == "agent" else [a.id for a in await self.service.agents(ident)]
            )
            for agent_id in targets:
                try:
                    await self.service.pause(
                        agent_id, "fleetbot:budget", f"{f.label}: {f.detail}", code="budget"
                    )
                except Exception:
                    log.exception("could not pause %s for its budget", agent_id)

    async def _brake(self, snap: Snapshot) -> None:
        """A spend-velocity trip: recorded (at most once an hour per agent) and, with
        monitors.spend_velocity.pause, the agent paused with the reason."""
        cfg = self.config.monitors.spend_velocity
        if cfg is None:
            return
        agents = {a.id: a for a in snap.agents}
        for v in snap.runaways:
            agent = agents.get(v.agent_id)
            if agent is None:
                continue
            last = await velocity_store.last_trip(self.db.reader, v.agent_id)
            if last is not None and snap.now - last < 3600:
                continue
            pause = cfg.pause and agent.status is not AgentStatus.PAUSED
            async with self.db.write() as conn:
                await velocity_store.record_trip(
                    conn, v.agent_id, snap.now, v.cost, v.tokens, v.baseline_cost, pause
                )
            log.warning("%s: spend-velocity breaker: %s", v.agent_id, v.describe())
            if pause:
                try:
                    await self.service.pause(
                        v.agent_id,
                        "fleetbot:breaker",
                        f"spend-velocity breaker: {v.describe()}",
                        code="spend_velocity",
                    )
                except Exception:
                    log.exception("could not pause %s for its spend velocity", v.agent_id)

    # -- runtimes ---------------------------------------------------------------------------------

    async def check_runtimes(
        self, agent_ids: set[str] | None = None, *, why: str = "on request"
    ) -> RuntimeReport:
        """Probe every agent's runtime (logged, like the startup self-test), or only these
        agents', then make the runtime_unreachable alerts match: raised for each failing
        target, resolved where the probe passes. Without a RuntimeWatch, an empty report."""
        if self.runtimes is None:
            return RuntimeReport()
        agents = tuple(await self.service.agents())
        if agent_ids is None:
            report = await self.runtimes.self_test(why, agents)
        else:
            report = await self.runtimes.probe([a for a in agents if a.id in agent_ids])
        snap = Snapshot(self.clock.now(), agents, runtime_failures=self.runtimes.failing())
        kinds = frozenset({AlertKind.RUNTIME_UNREACHABLE})
        await self.alerts.reconcile(find_runtime_unreachable(snap, self.config), kinds, snap.now)
        await self.alerts.flush()
        return report

    async def _runtime_down(self, agent_id: str) -> bool:
        """A run of this agent failed on its runtime: probe it now (or reuse a probe just
        made) and raise its target's alert. True while the probe fails."""
        agent = await self.service.maybe_agent(agent_id)
        if self.runtimes is None or agent is None:
            return False
        self.runtimes.suspect(agent.id)
        check = await self.runtimes.probe_fresh(agent)
        if check.ok:
            return False
        agents = tuple(await self.service.agents())
        snap = Snapshot(self.clock.now(), agents, runtime_failures=self.runtimes.failing())
        await self.alerts.raise_(
            *(f for f in find_runtime_unreachable(snap, self.config) if f.cause_key == check.target)
        )
        return True

    # -- events -----------------------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        """EventBus listener: queue the event for the worker (never blocks the publisher)."""
        if isinstance(
            event,
            AgentStatusChanged
            | RunEnded
            | IssueAssigned
            | SummaryPosted
            | QuestionAsked
            | QuestionAnswered
            | QuestionCancelled,
        ):
            self._put(event)

    def on_auth_failure(self, agent_id: str, code: str) -> None:
        """Guard listener: an API call claiming `agent_id` was refused with `code`."""
        if agent_id == "unknown":
            return  # nobody to name: the metrics count it
        now = self.clock.now()
        last = self.auth_signals.get(agent_id)
        if last is not None and last.code == code and now - last.at < 5:
            # A burst of refusals (an agent retrying) is one signal, not one write each.
            self.auth_signals[agent_id] = AuthSignal(code, now)
            return
        self.auth_signals[agent_id] = AuthSignal(code, now)
        self._put((agent_id, code))

    def _put(self, item: Event | tuple[str, str]) -> None:
        if self._closed:
            return
        self._queue.put_nowait(item)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._work(), name="monitors")

    async def settle(self) -> None:
        """Wait until every queued event was handled (tests, benchmarks)."""
        await self._queue.join()

    async def aclose(self) -> None:
        self._closed = True
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None

    async def _work(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                await self._handle(item)
            except Exception:
                log.exception("monitor event handler failed on %r", item)
            finally:
                self._queue.task_done()

    async def _handle(self, item: Event | tuple[str, str]) -> None:
        if isinstance(item, tuple):
            agent_id, _code = item
            agent = await self.service.maybe_agent(agent_id)
            snap = Snapshot(
                self.clock.now(), (agent,) if agent else (), auth_signals=self.auth_signals
            )
            await self.alerts.raise_(*find_auth_signals(snap, self.config))
        elif isinstance(item, AgentStatusChanged):
            await self._status_changed(item)
        elif isinstance(item, RunEnded):
            await self._run_ended(item)
        elif isinstance(item, SummaryPosted):
            await self._relay_summary(item)
        elif isinstance(item, IssueAssigned):
            await self._assigned(item)
        elif isinstance(item, QuestionAsked):
            await self._asked(item)
        elif isinstance(item, QuestionAnswered | QuestionCancelled):
            await self.alerts.resolve(f"{AlertKind.QUESTION.value}:question:{item.question_id}")
            await self.alerts.flush()

    async def _asked(self, e: QuestionAsked) -> None:
        """An agent waits on a human: its question alert is raised now, not at the next pass."""
        q = await question_store.get(self.db.reader, e.question_id)
        if q is None or not q.open:
            return
        agent = await self.service.maybe_agent(q.agent_id)
        await self.alerts.raise_(question_finding(q, {agent.id: agent} if agent else {}))
        await self.alerts.flush()

    async def _relay_summary(self, e: SummaryPosted) -> None:
        """Summaries go to the agent's team chat; run summaries wait for the digest when
        telegram.run_summaries is `digest`."""
        if e.source == "run" and self.config.telegram.run_summaries == "digest":
            return
        agent = await self.service.maybe_agent(e.agent_id)
        if agent is not None:
            await self.alerts.outbox.enqueue_summary(e.summary_id, agent.company_id)

    async def _status_changed(self, e: AgentStatusChanged) -> None:
        agent = await self.service.maybe_agent(e.agent_id)
        if agent is None:
            return
        bad = (AgentStatus.ERROR, AgentStatus.UNAUTHENTICATED)
        if e.new is AgentStatus.ERROR:
            await self.recovery.note_error(agent.id)
        if (
            e.new is AgentStatus.ERROR
            and e.reason_code in RUNTIME_DOWN_CODES
            and await self._runtime_down(agent.id)
        ):
            return  # its target's runtime_unreachable alert names it
        if e.new in bad:
            schedule = (await self.recovery.schedule()).get(agent.id)
            finding = agent_status_finding(agent, schedule)
            if finding is not None:
                await self.alerts.raise_(finding)
        if e.old in bad and e.new not in bad:
            subject = f"agent:{agent.id}"
            await self.alerts.resolve(
                *(f"{k.value}:{subject}" for k in _STATUS_KINDS),
            )

    async def _run_ended(self, e: RunEnded) -> None:
        subject = f"agent:{e.agent_id}"
        await self.alerts.resolve(f"{AlertKind.AGENT_STUCK.value}:{subject}")
        await self.alerts.resolve(f"{AlertKind.AGENT_SILENT.value}:{subject}")
        if e.status is RunStatus.SUCCEEDED:
            await self.recovery.note_success(e.agent_id)
        elif e.status is RunStatus.FAILED and e.reason_code in RUNTIME_DOWN_CODES:
            await self._runtime_down(e.agent_id)
        if e.issue_id is None:
            return
        issue = await self.service.issue(e.issue_id)
        if issue.status is not IssueStatus.BLOCKED:
            return
        escalated = await self.recovery.escalate(issue.id)
        snap = Snapshot(
            self.clock.now(),
            (),
            blocked=(issue,),
            escalations=await self._escalations(issue.id, escalated),
        )
        await self.alerts.raise_(*find_blocked(snap, self.config))

    async def _escalations(self, issue_id: str, filed: str | None) -> dict[str, str]:
        found = (await recovery_store.escalations(self.db.reader, issue_id)).get(issue_id)
        if found is None:
            return {}
        to, issue = found
        return {issue_id: f"{to} ({issue or filed})" if (issue or filed) else to}

    async def _assigned(self, e: IssueAssigned) -> None:
        """New work: the company's queue is no longer empty."""
        issue = await self.service.issue(e.issue_id)
        async with self.db.write() as conn:
            await note_beat(conn, issue.company_id, HeartbeatOutcome.DISPATCHED, 0.0)
        await self.alerts.resolve(f"{AlertKind.QUEUE_EMPTY.value}:company:{issue.company_id}")


# DELIVERY: raised by older versions; an agent that recovers resolves those too.
_STATUS_KINDS = (AlertKind.AGENT_ERROR, AlertKind.AGENT_UNAUTHENTICATED, AlertKind.DELIVERY)
